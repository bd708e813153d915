"""Label maps as DICOM Segmentation objects that reference their source CT series.

A liverburden label map (0 background, 1 liver parenchyma, 2 tumour) on the
grid of a DICOM CT series becomes a BINARY DICOM SEG with two segments:

1. ``Liver`` (SNOMED CT 91723000 "Anatomical Structure" / 10200004 "Liver"):
   the whole liver, parenchyma and tumour (labels 1 and 2), as measured by
   ``liver_volume_ml``;
2. ``Tumour`` (SNOMED CT 49755003 "Morphologically Abnormal Structure" /
   108369006 "Neoplasm", anatomic region 10200004 "Liver"): label 2.

The segments overlap (tumour lies inside the liver), which BINARY SEG allows.
Frames reference the source CT instances one to one and share their frame of
reference, so viewers (3D Slicer, OHIF) overlay the SEG on the original images.

Privacy: a DICOM SEG must carry the patient and study modules of its source
series to be filed with it (highdicom copies them from the source images).
That is the one output of the project that holds DICOM patient identifiers,
on purpose; nothing else from the source headers is copied.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import __version__
from pipeline.errors import InputError

#: Segment numbers of the SEG objects this module writes.
LIVER_SEGMENT = 1
TUMOUR_SEGMENT = 2
#: Recommended display colours (CIELab, as DICOM stores them after scaling by highdicom).
LIVER_COLOUR_RGB = (221, 130, 101)
TUMOUR_COLOUR_RGB = (255, 255, 0)


#: Type 2 patient and study attributes a SEG copies from its source images.
SOURCE_TYPE2_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "ReferringPhysicianName",
    "AccessionNumber",
)


@dataclasses.dataclass(frozen=True)
class SegmentCodes:
    """SNOMED CT codes of one segment: (value, meaning) pairs."""

    label: str
    category: tuple[str, str]
    property_type: tuple[str, str]
    anatomic_region: tuple[str, str] | None


SEGMENTS: dict[int, SegmentCodes] = {
    LIVER_SEGMENT: SegmentCodes(
        label="Liver",
        category=("91723000", "Anatomical Structure"),
        property_type=("10200004", "Liver"),
        anatomic_region=None,
    ),
    TUMOUR_SEGMENT: SegmentCodes(
        label="Tumour",
        category=("49755003", "Morphologically Abnormal Structure"),
        property_type=("108369006", "Neoplasm"),
        anatomic_region=("10200004", "Liver"),
    ),
}


def segment_masks(labels_zyx: np.ndarray) -> np.ndarray:
    """Per-segment binary masks of a label map.

    Parameters
    ----------
    labels_zyx
        Label map indexed ``[z, y, x]`` (0 background, 1 liver, 2 tumour).

    Returns
    -------
    numpy.ndarray
        Boolean array ``[z, y, x, segment]`` with segment 0 the whole liver
        (labels 1 and 2) and segment 1 the tumour (label 2).
    """
    labels_zyx = np.asarray(labels_zyx)
    return np.stack([labels_zyx > 0, labels_zyx == 2], axis=-1)


def labels_from_masks(masks_zyxs: np.ndarray) -> np.ndarray:
    """Label map (uint8, ``[z, y, x]``) from the masks of :func:`segment_masks`."""
    masks_zyxs = np.asarray(masks_zyxs, dtype=bool)
    labels = np.zeros(masks_zyxs.shape[:3], dtype=np.uint8)
    labels[masks_zyxs[..., 0]] = 1
    labels[masks_zyxs[..., 1]] = 2
    return labels


def _code(value: tuple[str, str]) -> Any:
    from pydicom.sr.coding import Code

    return Code(value[0], "SCT", value[1])


def _segment_descriptions(algorithm_name: str | None, algorithm_version: str) -> list[Any]:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = []
    for number, codes_of_segment in SEGMENTS.items():
        colour = LIVER_COLOUR_RGB if number == LIVER_SEGMENT else TUMOUR_COLOUR_RGB
        keyword: dict[str, Any] = {}
        if algorithm_name:
            keyword["algorithm_identification"] = hd.AlgorithmIdentificationSequence(
                name=algorithm_name,
                family=codes.cid7162.ArtificialIntelligence,
                version=algorithm_version,
            )
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=codes_of_segment.label,
                segmented_property_category=_code(codes_of_segment.category),
                segmented_property_type=_code(codes_of_segment.property_type),
                algorithm_type=(
                    hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
                    if algorithm_name
                    else hd.seg.SegmentAlgorithmTypeValues.MANUAL
                ),
                anatomic_regions=(
                    [_code(codes_of_segment.anatomic_region)]
                    if codes_of_segment.anatomic_region
                    else None
                ),
                display_color=hd.color.CIELabColor.from_rgb(*colour),
                **keyword,
            )
        )
    return descriptions


def read_source_datasets(files: Sequence[os.PathLike[str] | str]) -> list[Any]:
    """Headers (no pixel data) of the source CT instances, in the given order."""
    import pydicom

    datasets = []
    for path in files:
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types for broken files
            raise InputError(
                path,
                f"cannot read this DICOM file ({type(exc).__name__})",
                "the DICOM files of the CT series",
            ) from None
        # an empty SpecificCharacterSet means the default repertoire: highdicom wants it absent
        if "SpecificCharacterSet" in dataset and not dataset.SpecificCharacterSet:
            del dataset.SpecificCharacterSet
        # Type 2 attributes of the patient and study modules that the SEG copies:
        # present but empty when the source leaves them out
        for keyword in SOURCE_TYPE2_KEYWORDS:
            if keyword not in dataset:
                setattr(dataset, keyword, "")
        datasets.append(dataset)
    return datasets


def build_segmentation(
    labels_zyx: np.ndarray,
    source_datasets: Sequence[Any],
    *,
    algorithm_name: str | None = None,
    algorithm_version: str = __version__,
    series_description: str = "liverburden liver and tumour segmentation",
    series_number: int = 901,
) -> Any:
    """A highdicom ``Segmentation`` of a label map on a CT series.

    Parameters
    ----------
    labels_zyx
        Label map ``[z, y, x]`` on the CT's grid; slice ``z`` lies on
        ``source_datasets[z]``, rows ``y`` and columns ``x`` are the DICOM
        frame's rows and columns.
    source_datasets
        Headers of the CT instances, sorted as the label map's slices.
    algorithm_name
        Name of the model that produced the label map (segment algorithm
        type AUTOMATIC); ``None`` for a label map of unknown, human origin
        (MANUAL).
    algorithm_version
        Version of that model.
    series_description, series_number
        Of the new SEG series.

    Returns
    -------
    highdicom.seg.Segmentation
    """
    import highdicom as hd

    labels_zyx = np.asarray(labels_zyx)
    if labels_zyx.ndim != 3 or labels_zyx.shape[0] != len(source_datasets):
        raise InputError(
            None,
            f"label map has {labels_zyx.shape[0] if labels_zyx.ndim == 3 else '?'} slices, "
            f"the DICOM series {len(source_datasets)}",
            "a label map on the series' grid",
        )
    rows, columns = int(source_datasets[0].Rows), int(source_datasets[0].Columns)
    if labels_zyx.shape[1:] != (rows, columns):
        raise InputError(
            None,
            f"label map slices are {labels_zyx.shape[1]} x {labels_zyx.shape[2]}, "
            f"the DICOM frames {rows} x {columns}",
            "a label map on the series' grid",
        )
    masks = segment_masks(labels_zyx)
    if not masks.any():
        # highdicom needs one non-empty frame to write; an empty SEG is not useful anyway
        raise InputError(
            None,
            "label map is empty (no liver, no tumour): nothing to write as DICOM SEG",
            "a label map with liver (1) or tumour (2)",
        )
    # highdicom warns about odd values in the copied patient module, quoting them:
    # silenced, so that no patient identifier reaches a log
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _segmentation(
            hd,
            masks,
            source_datasets,
            algorithm_name,
            algorithm_version,
            series_description,
            series_number,
        )


#: The UIDs a SEG gets, each derived from its content (:func:`derived_uids`).
DERIVED_UID_KINDS = ("series", "instance", "dimension_organization")


def derived_uids(
    masks: np.ndarray, source_datasets: Sequence[Any], *details: str
) -> dict[str, str]:
    """The UIDs of a SEG (series, SOP instance, dimension organization), from its content.

    The same label map on the same source instances, written by the same
    liverburden version with the same ``details`` (algorithm, series
    description ...), gets the same UIDs; any difference gives other UIDs.

    Parameters
    ----------
    masks
        The SEG's masks ``[z, y, x, segment]`` (:func:`segment_masks`).
    source_datasets
        Headers of the source CT instances (their SOPInstanceUIDs enter the hash).
    details
        Further text that distinguishes SEGs of the same masks.

    Returns
    -------
    dict
        ``{kind: uid}`` for each of :data:`DERIVED_UID_KINDS`.
    """
    from pydicom.uid import generate_uid

    masks = np.asarray(masks, dtype=bool)
    digest = hashlib.sha256(repr(masks.shape).encode() + np.packbits(masks).tobytes())
    sources = [str(ds.SOPInstanceUID) for ds in source_datasets]
    entropy = [*sources, digest.hexdigest(), f"liverburden {__version__}", *details]
    return {kind: str(generate_uid(entropy_srcs=[kind, *entropy])) for kind in DERIVED_UID_KINDS}


#: Content date and time of a SEG whose source instances carry no date at all.
UNDATED = ("19000101", "000000")
#: Date and time attributes of a source instance, in order of preference.
SOURCE_DATE_TIMES = (
    ("SeriesDate", "SeriesTime"),
    ("StudyDate", "StudyTime"),
    ("ContentDate", "ContentTime"),
    ("AcquisitionDate", "AcquisitionTime"),
)


def content_date_time(source_datasets: Sequence[Any]) -> tuple[str, str]:
    """Content date and time of a SEG, taken from its source series (not the clock).

    Per instance the first valid pair of SeriesDate/Time, StudyDate/Time,
    ContentDate/Time or AcquisitionDate/Time (a missing or invalid time counts
    as 000000); the SEG takes the latest over the instances. So reruns give the
    same bytes, and the SEG carries no date its source does not. A source
    without any date gives 19000101 000000.

    Returns
    -------
    (date, time)
        DICOM DA ``YYYYMMDD`` and TM ``HHMMSS[.FFFFFF]`` strings.
    """
    from pydicom.valuerep import DA, TM

    latest: tuple[str, str] | None = None
    for dataset in source_datasets:
        for date_keyword, time_keyword in SOURCE_DATE_TIMES:
            date_text = str(dataset.get(date_keyword, "") or "").strip()
            try:
                date = DA(date_text) if date_text else None
            except ValueError:
                date = None
            if date is None:
                continue
            time_text = str(dataset.get(time_keyword, "") or "").strip()
            try:
                time = TM(time_text) if time_text else None
            except ValueError:
                time = None
            pair = (
                date.strftime("%Y%m%d"),
                time.isoformat().replace(":", "") if time else "000000",
            )
            latest = pair if latest is None or pair > latest else latest
            break
    return latest or UNDATED


def _segmentation(
    hd: Any,
    masks: np.ndarray,
    source_datasets: Sequence[Any],
    algorithm_name: str | None,
    algorithm_version: str,
    series_description: str,
    series_number: int,
) -> Any:
    uids = derived_uids(
        masks,
        source_datasets,
        algorithm_name or "manual",
        algorithm_version,
        series_description,
        str(series_number),
    )
    date, time = content_date_time(source_datasets)
    segmentation = hd.seg.Segmentation(
        source_images=list(source_datasets),
        pixel_array=masks,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_segment_descriptions(algorithm_name, algorithm_version),
        series_instance_uid=uids["series"],
        series_number=series_number,
        sop_instance_uid=uids["instance"],
        instance_number=1,
        manufacturer="liverburden",
        manufacturer_model_name=algorithm_name or "liverburden",
        software_versions=f"liverburden {__version__}",
        device_serial_number="0",
        series_description=series_description,
        content_label="LIVERBURDEN",
        content_description="Liver and tumour segmentation",
        omit_empty_frames=True,
        content_date=date,
        content_time=time,
    )
    # highdicom stamps the instance's creation and its own contribution with the clock,
    # and draws a random dimension organization UID: the content's date and a derived UID
    segmentation.InstanceCreationDate = date
    segmentation.InstanceCreationTime = time
    for item in segmentation.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time
    for keyword in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in segmentation.get(keyword, []):
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = uids["dimension_organization"]
    return segmentation


def labels_on_source(segmentation: Any, source_datasets: Sequence[Any]) -> np.ndarray:
    """Read a liverburden DICOM SEG back onto its source series.

    Returns
    -------
    numpy.ndarray
        uint8 label map ``[z, y, x]`` (slice ``z`` on ``source_datasets[z]``);
        0 background, 1 liver, 2 tumour.
    """
    uids = [str(ds.SOPInstanceUID) for ds in source_datasets]
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for series in segmentation.ReferencedSeriesSequence
        for item in series.ReferencedInstanceSequence
    }
    rows, columns = int(source_datasets[0].Rows), int(source_datasets[0].Columns)
    masks = np.zeros((len(uids), rows, columns, len(SEGMENTS)), dtype=bool)
    present = [i for i, uid in enumerate(uids) if uid in referenced]
    if present:
        pixels = segmentation.get_pixels_by_source_instance(
            source_sop_instance_uids=[uids[i] for i in present],
            segment_numbers=sorted(SEGMENTS),
            assert_missing_frames_are_empty=True,
        )
        masks[present] = pixels.astype(bool)
    return labels_from_masks(masks)


def algorithm_of(segmentation_path: Path) -> tuple[str | None, str]:
    """Model name and version from the provenance JSON beside a segmentation, if any.

    The segment stage writes ``SEG.json`` beside ``SEG.nii.gz``; a user's own
    mask has none (the SEG then says MANUAL).
    """
    name = segmentation_path.name
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else segmentation_path.stem
    provenance = segmentation_path.with_name(stem + ".json")
    if not provenance.is_file():
        return None, __version__
    from pipeline.io import read_json

    data = read_json(provenance, "segmentation provenance")
    model = data.get("model") if isinstance(data, dict) else None
    if isinstance(model, dict):
        model_name = model.get("name") or model.get("bundle") or "liverburden model"
        version = model.get("version") or __version__
    else:
        model_name = str(model) if model else "liverburden model"
        version = (
            str(data.get("model_version") or __version__) if isinstance(data, dict) else __version__
        )
    return str(Path(str(model_name)).name), str(version)
