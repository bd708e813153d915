"""Reading ``liverburden measure`` output folders for the response assessment."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.io import grid_description, read_image_file, same_grid
from pipeline.measure.records import MEASUREMENTS_FILE, read_measurements
from pipeline.response.matching import ScanMasks
from pipeline.response.model import LesionRecord, ScanRecord

LESION_MAP_FILE = "lesions.nii.gz"
LIVER_MASK_FILE = "liver.nii.gz"


@dataclasses.dataclass
class MeasureFolder:
    """One ``liverburden measure`` folder: its scan record and where its images are."""

    path: Path
    subject: str | None
    scan: ScanRecord
    raw: dict[str, Any]

    @property
    def lesion_map_path(self) -> Path:
        return self.path / LESION_MAP_FILE

    @property
    def liver_mask_path(self) -> Path:
        return self.path / LIVER_MASK_FILE


def _float(value: Any) -> float | None:
    """A number of checked measurements as float (``None`` stays ``None``)."""
    return None if value is None else float(value)


def _point(value: Any) -> tuple[float, float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]), float(value[2]))


def _lesion(item: dict[str, Any]) -> LesionRecord:
    measurable = item.get("measurable")
    return LesionRecord(
        id=int(item["id"]),
        longest_axial_diameter_mm=_float(item.get("longest_axial_diameter_mm")),
        volume_ml=_float(item.get("volume_ml")),
        short_axis_diameter_mm=_float(item.get("short_axis_diameter_mm")),
        centroid_mm=_point(item.get("centroid_mm")),
        mean_hu=_float(item.get("mean_hu")),
        measurable=measurable if isinstance(measurable, bool) else None,
        viable_longest_axial_diameter_mm=_float(item.get("viable_longest_axial_diameter_mm")),
        viable_volume_ml=_float(item.get("viable_volume_ml")),
        arterial_mean_hu=_float(item.get("arterial_mean_hu")),
        lipiodol_volume_ml=_float(item.get("lipiodol_volume_ml")),
        viable_fraction=_float(item.get("viable_fraction")),
    )


def scan_from_measurements(data: dict[str, Any], where: str) -> tuple[str | None, ScanRecord]:
    """Subject and :class:`ScanRecord` from the content of a ``measurements.json``.

    ``data`` has been checked by :func:`pipeline.measure.records.check_measurements`
    (types, ranges, lesion ids); here only what the response needs beyond it:
    a study date to order the time points by.
    """
    date_text = data.get("study_date")
    if date_text in (None, ""):
        raise InputError(
            where,
            "has no study_date: the time points cannot be ordered",
            "measurements with a study date (give measure --date)",
        )
    date = dt.date.fromisoformat(str(date_text))  # ISO after check_measurements
    lesions = [_lesion(item) for item in data["lesions"]]
    arterial = data.get("arterial")
    has_arterial = arterial is not None and all(
        lesion.viable_longest_axial_diameter_mm is not None and lesion.viable_volume_ml is not None
        for lesion in lesions
    )
    thickness = data.get("slice_thickness_mm")
    if thickness is None and data.get("spacing_mm") is not None:
        thickness = data["spacing_mm"][2]
    flags = list(data.get("flags") or [])
    label = data.get("timepoint")
    subject = data.get("subject")
    scan = ScanRecord(
        label=str(label) if label not in (None, "") else date.isoformat(),
        date=date,
        lesions={lesion.id: lesion for lesion in lesions},
        tumor_volume_ml=_float(data.get("tumor_volume_ml")),
        liver_volume_ml=_float(data.get("liver_volume_ml")),
        involvement_percent=_float(data.get("involvement_percent")),
        has_arterial=has_arterial,
        slice_thickness_mm=_float(thickness),
        flags=flags,
        source=where,
    )
    return (None if subject in (None, "") else str(subject)), scan


def read_measure_folder(path: str | os.PathLike[str]) -> MeasureFolder:
    """Read and check the ``measurements.json`` of a ``liverburden measure`` output folder."""
    path = Path(path)
    data = read_measurements(path)
    subject, scan = scan_from_measurements(data, str(path / MEASUREMENTS_FILE))
    return MeasureFolder(path, subject, scan, data)


def read_scan_masks(folder: MeasureFolder) -> ScanMasks:
    """Lesion instance map and liver mask of a measure folder, checked against its lesions."""
    lesion_map = read_image_file(folder.lesion_map_path, what="lesion map")
    liver = read_image_file(folder.liver_mask_path, what="liver mask")
    for image, path in ((lesion_map, folder.lesion_map_path), (liver, folder.liver_mask_path)):
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(path, "not a 3-D scalar image")
    if not same_grid(lesion_map, liver):
        raise InputError(
            folder.liver_mask_path,
            f"is on a different grid than {LESION_MAP_FILE} ({grid_description(liver)} vs "
            f"{grid_description(lesion_map)})",
        )
    array = sitk.GetArrayViewFromImage(lesion_map)
    if np.issubdtype(array.dtype, np.floating) and not np.all(array == np.round(array)):
        raise InputError(folder.lesion_map_path, "holds non-integer values", "lesion ids 0..N")
    values = set(np.unique(array).astype(np.int64).tolist()) - {0}
    listed = {int(item["id"]) for item in folder.raw["lesions"]}  # before any reader exclusion
    unknown = sorted(values - listed)
    if unknown:
        raise InputError(
            folder.lesion_map_path,
            f"holds lesion id(s) {unknown[:5]} that {MEASUREMENTS_FILE} does not list",
            "the lesion map written with these measurements",
        )
    if lesion_map.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32):
        lesion_map = sitk.Cast(lesion_map, sitk.sitkUInt32)
    liver.CopyInformation(lesion_map)
    return ScanMasks(lesion_map, liver)
