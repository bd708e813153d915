"""Reading ``liverburden measure`` output folders for the response assessment."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.io import grid_description, iso_date, read_image_file, read_json, same_grid
from pipeline.response.matching import ScanMasks
from pipeline.response.model import LesionRecord, ScanRecord

MEASUREMENTS_FILE = "measurements.json"
LESION_MAP_FILE = "lesions.nii.gz"
LIVER_MASK_FILE = "liver.nii.gz"

REQUIRED_KEYS = (
    "subject",
    "timepoint",
    "study_date",
    "liver_volume_ml",
    "tumor_volume_ml",
    "involvement_percent",
    "lesions",
)
LESION_REQUIRED_KEYS = ("id", "volume_ml", "longest_axial_diameter_mm")


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


def _number(
    value: Any, where: str, key: str, *, optional: bool = True, minimum: float | None = None
) -> float | None:
    if value is None and optional:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(float(value))
    ):
        raise InputError(where, f"{key} must be a number, not {value!r}")
    if minimum is not None and float(value) < minimum:
        raise InputError(where, f"{key} must be ≥ {minimum:g}, not {value!r}")
    return float(value)


def _point(value: Any, where: str, key: str) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise InputError(where, f"{key} must be [x, y, z] in mm, not {value!r}")
    return tuple(_number(v, where, key, optional=False) for v in value)  # type: ignore[return-value]


def _lesion(item: Any, where: str) -> LesionRecord:
    if not isinstance(item, dict):
        raise InputError(where, f"each lesion must be an object, not {item!r}")
    missing = [k for k in LESION_REQUIRED_KEYS if k not in item]
    if missing:
        raise InputError(where, f"lesion {item.get('id', '?')} lacks {', '.join(missing)}")
    lesion_id = item["id"]
    if isinstance(lesion_id, bool) or not isinstance(lesion_id, int) or lesion_id < 1:
        raise InputError(where, f"lesion id must be a whole number ≥ 1, not {lesion_id!r}")
    here = f"{where}: lesion {lesion_id}"
    measurable = item.get("measurable")
    return LesionRecord(
        id=int(lesion_id),
        longest_axial_diameter_mm=_number(
            item.get("longest_axial_diameter_mm"), here, "longest_axial_diameter_mm", minimum=0
        ),
        volume_ml=_number(item.get("volume_ml"), here, "volume_ml", minimum=0),
        short_axis_diameter_mm=_number(
            item.get("short_axis_diameter_mm"), here, "short_axis_diameter_mm", minimum=0
        ),
        centroid_mm=_point(item.get("centroid_mm"), here, "centroid_mm"),
        mean_hu=_number(item.get("mean_hu"), here, "mean_hu"),
        measurable=measurable if isinstance(measurable, bool) else None,
        viable_longest_axial_diameter_mm=_number(
            item.get("viable_longest_axial_diameter_mm"),
            here,
            "viable_longest_axial_diameter_mm",
            minimum=0,
        ),
        viable_volume_ml=_number(item.get("viable_volume_ml"), here, "viable_volume_ml", minimum=0),
        arterial_mean_hu=_number(item.get("arterial_mean_hu"), here, "arterial_mean_hu"),
        lipiodol_volume_ml=_number(
            item.get("lipiodol_volume_ml"), here, "lipiodol_volume_ml", minimum=0
        ),
        viable_fraction=_number(item.get("viable_fraction"), here, "viable_fraction", minimum=0),
    )


def scan_from_measurements(data: Any, where: str) -> tuple[str | None, ScanRecord]:
    """Subject and :class:`ScanRecord` from the content of a ``measurements.json``."""
    if not isinstance(data, dict):
        raise InputError(where, "measurements must be a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise InputError(
            where, f"lacks {', '.join(missing)}", "the measurements.json of liverburden measure"
        )
    date_text = data.get("study_date")
    if date_text in (None, ""):
        raise InputError(
            where,
            "has no study_date: the time points cannot be ordered",
            "measurements with a study date (give measure --date)",
        )
    date = dt.date.fromisoformat(iso_date(str(date_text), where))  # type: ignore[arg-type]
    if not isinstance(data["lesions"], list):
        raise InputError(where, "lesions must be a list")
    lesions = [_lesion(item, where) for item in data["lesions"]]
    ids = [lesion.id for lesion in lesions]
    if len(set(ids)) != len(ids):
        raise InputError(where, f"lesion ids repeat ({sorted(ids)})", "unique lesion ids 1..N")
    arterial = data.get("arterial")
    has_arterial = arterial is not None and all(
        lesion.viable_longest_axial_diameter_mm is not None and lesion.viable_volume_ml is not None
        for lesion in lesions
    )
    thickness = data.get("slice_thickness_mm")
    if (
        thickness is None
        and isinstance(data.get("spacing_mm"), list)
        and len(data["spacing_mm"]) == 3
    ):
        thickness = data["spacing_mm"][2]
    flags = [f for f in data.get("flags") or [] if isinstance(f, dict)]
    label = data.get("timepoint")
    subject = data.get("subject")
    scan = ScanRecord(
        label=str(label) if label not in (None, "") else date.isoformat(),
        date=date,
        lesions={lesion.id: lesion for lesion in lesions},
        tumor_volume_ml=_number(data.get("tumor_volume_ml"), where, "tumor_volume_ml", minimum=0),
        liver_volume_ml=_number(data.get("liver_volume_ml"), where, "liver_volume_ml", minimum=0),
        involvement_percent=_number(
            data.get("involvement_percent"), where, "involvement_percent", minimum=0
        ),
        has_arterial=has_arterial,
        slice_thickness_mm=_number(thickness, where, "slice_thickness_mm", minimum=0),
        flags=flags,
        source=where,
    )
    return (None if subject in (None, "") else str(subject)), scan


def read_measure_folder(path: str | os.PathLike[str]) -> MeasureFolder:
    """Read the ``measurements.json`` of a ``liverburden measure`` output folder."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(
            path,
            "not a folder" if path.exists() else "folder not found",
            "a liverburden measure output folder",
        )
    file = path / MEASUREMENTS_FILE
    if not file.is_file():
        raise InputError(
            path, f"holds no {MEASUREMENTS_FILE}", "a liverburden measure output folder"
        )
    data = read_json(file, "measurements")
    subject, scan = scan_from_measurements(data, str(file))
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
