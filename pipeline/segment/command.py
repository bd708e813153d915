"""Segment liver and tumour in a CT with a MONAI model bundle.

Writes a label map (UInt8: 0 background, 1 liver, 2 tumour) on exactly the
input's grid and, beside it, a provenance JSON (the label map's name with
.json instead of .nii.gz): bundle name, version and weights' SHA-256, device,
versions, input geometry, timings, flags and probability statistics. Both
files are written atomically; on any error neither is left behind. Reruns give
a byte-identical label map and the same provenance except ``timings_s`` (the
wall-clock seconds of each step, the one field that differs between reruns).

examples:
  liverburden segment ct.nii.gz -o results/segmentation.nii.gz
  liverburden segment dicom/series/ -o seg.nii.gz --model models/liverburden-ct --fast
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

from pipeline import SCHEMA_VERSION, __version__
from pipeline.errors import InputError
from pipeline.settings import load_settings, override

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


@dataclasses.dataclass(frozen=True)
class SegmentSettings:
    """Settings of ``liverburden segment`` (section ``segment:`` of the workflow config).

    Attributes
    ----------
    model
        Model bundle folder; empty for the default (``models/liverburden-ct``).
    device
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    fast
        Use the bundle's fast mode (no test-time flips, less window overlap).
    threads
        CPU threads; ``None`` for all CPUs allotted to the process.
    """

    model: str | None = None
    device: str = "auto"
    fast: bool = False
    threads: int | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "image",
        metavar="IMAGE",
        help="CT image file (NIfTI, NRRD, MetaImage) or DICOM series folder",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="SEG",
        required=True,
        help="label map to write (.nii.gz, .nii, .nrrd or .mha)",
    )
    parser.add_argument(
        "--model",
        metavar="DIR",
        default=None,
        help="model bundle folder (default: models/liverburden-ct)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="auto (CUDA with mixed precision when present, else CPU), cpu, cuda or cuda:N",
    )
    parser.add_argument(
        "--fast",
        action="store_const",
        const=True,
        default=None,
        help="no test-time flips, less window overlap",
    )
    parser.add_argument(
        "--series",
        metavar="UID",
        default=None,
        help="SeriesInstanceUID when the DICOM folder holds several",
    )
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N", help="CPU threads (default: all allotted)"
    )
    parser.add_argument(
        "--settings",
        metavar="FILE.yaml",
        default=None,
        help="settings file (whole workflow config or its segment section)",
    )


def provenance_path(output: Path) -> Path:
    """``segmentation.nii.gz`` -> ``segmentation.json`` (same folder)."""
    name = output.name
    for suffix in OUTPUT_SUFFIXES:
        if name.lower().endswith(suffix):
            return output.with_name(name[: -len(suffix)] + ".json")
    return output.with_name(name + ".json")


def _check_output(output: Path) -> None:
    if not output.name.lower().endswith(OUTPUT_SUFFIXES):
        raise InputError(output, "unsupported label-map file type", ", ".join(OUTPUT_SUFFIXES))
    if output.exists() and output.is_dir():
        raise InputError(output, "is a folder", "a label-map file name")


def provenance_record(
    result: Any, segmenter: Any, image: Any, settings: SegmentSettings, timings: dict[str, float]
) -> dict[str, Any]:
    """The provenance JSON of one segmentation (no patient identifiers, no input path)."""
    import monai
    import numpy
    import SimpleITK as sitk
    import torch

    from pipeline.io import image_geometry
    from pipeline.segment.bundle import stage_summaries
    from pipeline.segment.predictor import FLAG_DESCRIPTIONS

    bundle = segmenter.bundle
    return {
        "schema_version": SCHEMA_VERSION,
        "liverburden_version": __version__,
        "kind": "segmentation",
        "labels": {"0": "background", "1": "liver", "2": "tumour"},
        "model": {
            "name": bundle.name,
            "version": bundle.version,
            "weights_sha256": dict(bundle.weights_sha256),
            "stages": stage_summaries(bundle),
        },
        "device": result.device,
        "mixed_precision": bool(segmenter.mixed_precision),
        "threads": segmenter.threads,
        "software": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "simpleitk": sitk.Version.VersionString(),
            "numpy": numpy.__version__,
        },
        "input_geometry": image_geometry(image),
        "options": {"fast": settings.fast, "device": settings.device, "threads": settings.threads},
        "stages": result.stages,
        "statistics": result.statistics,
        "flags": list(result.flags),
        "flag_descriptions": {flag: FLAG_DESCRIPTIONS[flag] for flag in result.flags},
        "timings_s": timings,
    }


def run(args: argparse.Namespace) -> int:
    import SimpleITK as sitk
    import torch

    threads = torch.get_num_threads(), sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    try:
        return _run(args)
    finally:  # leave the process as it was (the command may run inside a longer-lived process)
        torch.set_num_threads(threads[0])
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads[1])


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(SegmentSettings, args.settings, "segment")
    settings = override(
        settings, model=args.model, device=args.device, fast=args.fast, threads=args.threads
    )
    image_path = Path(args.image)
    output = Path(args.output)
    record_path = provenance_path(output)
    _check_output(output)

    from pipeline.io import read_ct, refuse_overwriting_inputs

    refuse_overwriting_inputs([output, record_path], [image_path, settings.model or None])
    started = time.perf_counter()
    timings: dict[str, float] = {}

    from pipeline.segment.predictor import LiverTumourSegmenter

    step = time.perf_counter()
    segmenter = LiverTumourSegmenter(
        settings.model or None, device=settings.device, fast=settings.fast, threads=settings.threads
    )
    timings["load_model"] = round(time.perf_counter() - step, 4)
    step = time.perf_counter()
    scan = read_ct(image_path, series_uid=args.series)
    timings["read"] = round(time.perf_counter() - step, 4)
    log.info(
        "segmenting %s with %s %s on %s%s",
        image_path.name,
        segmenter.bundle.name,
        segmenter.bundle.version,
        segmenter.device,
        " (fast mode)" if settings.fast else "",
    )
    result = segmenter.predict(scan.image)
    timings.update(result.timings_s)
    step = time.perf_counter()
    write_segmentation(
        result,
        output,
        record_path,
        lambda: provenance_record(result, segmenter, scan.image, settings, timings),
        timings,
    )
    for flag in result.flags:
        log.warning("%s: %s", flag, _describe(flag))
    log.info(
        "wrote %s (liver %.0f mL, tumour %.1f mL) in %.1f s",
        output,
        result.statistics["liver_volume_ml"],
        result.statistics["tumour_volume_ml"],
        time.perf_counter() - started,
    )
    return 0


def _describe(flag: str) -> str:
    from pipeline.segment.predictor import FLAG_DESCRIPTIONS

    return FLAG_DESCRIPTIONS.get(flag, flag)


def write_segmentation(
    result: Any, output: Path, record_path: Path, record: Any, timings: dict[str, float]
) -> None:
    """Write the label map and its provenance JSON; both or neither.

    ``record`` is called after the label map is written (so that the write
    time is in the record's timings).
    """
    import SimpleITK as sitk

    from pipeline.io import atomic_path, dumps_json

    step = time.perf_counter()
    renamed = False
    try:
        with atomic_path(record_path) as temporary_record:
            with atomic_path(output) as temporary_output:
                labels = result.labels
                for key in labels.GetMetaDataKeys():
                    labels.EraseMetaData(key)
                sitk.WriteImage(labels, str(temporary_output), useCompression=True)
                timings["write"] = round(time.perf_counter() - step, 4)
                temporary_record.write_text(dumps_json(record()), encoding="utf-8")
            renamed = True
    except BaseException:
        if renamed:  # the label map is in place but its record is not: remove it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(output)
        raise
