"""Write a label map as a DICOM SEG that references its source CT series.

The label map (0 background, 1 liver, 2 tumour; NIfTI, NRRD or MetaImage) must
lie on the grid of the DICOM series. The SEG has two segments, Liver (labels 1
and 2) and Tumour (label 2), with SNOMED CT codes, and shares the series' frame
of reference, so it opens on the original images in 3D Slicer or OHIF.

The SEG carries the patient and study modules of the source series (required
to file it with the images): the one output of liverburden that holds DICOM
patient identifiers.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "segmentation", type=Path, help="label map on the CT's grid (.nii.gz, .nrrd, .mha)"
    )
    parser.add_argument("dicom", type=Path, help="folder of the source DICOM CT series")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="DICOM SEG file to write (.dcm)"
    )
    parser.add_argument(
        "--series",
        metavar="UID",
        help="SeriesInstanceUID of the CT when the folder holds several series",
    )
    parser.add_argument(
        "--algorithm",
        metavar="NAME",
        help="name of the algorithm that made the label map (default: the model named in the "
        "provenance JSON beside the label map; none: a manual segmentation)",
    )


def run(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from pipeline import __version__
    from pipeline.errors import InputError
    from pipeline.io import atomic_path, read_ct, read_label_map, refuse_overwriting_inputs
    from pipeline.report.dicom_seg import algorithm_of, build_segmentation, read_source_datasets

    output: Path = args.output
    if output.suffix.lower() != ".dcm":
        raise InputError(
            output, "DICOM SEG file name must end in .dcm", "a file name ending in .dcm"
        )
    if output.is_dir():
        raise InputError(output, "is a folder", "a .dcm file name")
    if not args.dicom.is_dir():
        raise InputError(args.dicom, "not a folder", "the folder of the source DICOM series")
    refuse_overwriting_inputs([output], [args.segmentation, args.dicom])
    scan = read_ct(args.dicom, args.series)
    assert scan.dicom is not None
    labels = read_label_map(args.segmentation, scan.image, require_liver=True)
    labels_zyx = sitk.GetArrayFromImage(labels)
    if args.algorithm:
        algorithm_name, algorithm_version = args.algorithm, __version__
    else:
        algorithm_name, algorithm_version = algorithm_of(args.segmentation)
    sources = read_source_datasets(scan.dicom.files)
    segmentation = build_segmentation(
        labels_zyx, sources, algorithm_name=algorithm_name, algorithm_version=algorithm_version
    )
    with atomic_path(output) as temporary:
        segmentation.save_as(temporary)
    frames = int(segmentation.NumberOfFrames)
    log.info(
        "wrote %s: %d frames, segments Liver and Tumour on %d CT slices",
        output,
        frames,
        len(sources),
    )
    return 0
