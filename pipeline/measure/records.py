"""Reading a measure folder's ``measurements.json`` back: the one reader and validator.

``liverburden measure`` writes ``measurements.json`` (its format is documented
in ``docs/cli/measure.md``); ``respond``, ``report`` and ``cohort`` read it
through :func:`read_measurements`, which refuses a file that ``measure`` could
not have written (hand-edited, damaged or from another program) with an
:class:`~pipeline.errors.InputError` naming the file, the field and what would
be accepted. It checks:

* the folder and the file exist, the file is a JSON object;
* ``schema_version`` is a version of this format (same major number);
* the required fields are present, with the right types;
* every number is finite; volumes, diameters and counts are not negative
  (voxel volume and slice thickness above 0), ``involvement_percent`` lies in
  0-100, ``viable_fraction`` in 0-1;
* ``study_date`` is a calendar date (returned as ISO ``YYYY-MM-DD``);
* the lesions are objects with ids 1..N, each once (N lesions listed).

Optional fields may be missing or ``null`` (``measure`` writes ``null`` where
a value does not exist, e.g. the attenuation of a liver without parenchyma).
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path
from typing import Any

from pipeline import SCHEMA_VERSION
from pipeline.errors import InputError
from pipeline.io import iso_date, read_json

MEASUREMENTS_FILE = "measurements.json"
#: What a refused folder or file should have been.
EXPECTED_FOLDER = "a folder written by liverburden measure"
EXPECTED_FILE = "a measurements.json written by liverburden measure"

#: Fields every ``measurements.json`` has.
REQUIRED_FIELDS = (
    "schema_version",
    "subject",
    "timepoint",
    "study_date",
    "liver_volume_ml",
    "tumor_volume_ml",
    "involvement_percent",
    "lesion_count",
    "lesions",
)
#: Fields every lesion has.
LESION_REQUIRED_FIELDS = ("id", "volume_ml", "longest_axial_diameter_mm")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The values a numeric field accepts.

    Attributes
    ----------
    expected
        What is accepted, in words (the ``expected`` part of the error).
    low, high
        Inclusive bounds (``None``: unbounded).
    above_low
        ``low`` itself is refused (strictly above).
    whole
        A whole number (an integer in JSON).
    nullable
        ``null`` is accepted (a value that does not exist).
    """

    expected: str
    low: float | None = None
    high: float | None = None
    above_low: bool = False
    whole: bool = False
    nullable: bool = True

    def accepts(self, number: float) -> bool:
        if not math.isfinite(number):
            return False
        if self.low is not None and (number < self.low or (self.above_low and number == self.low)):
            return False
        return self.high is None or number <= self.high


VOLUME = Bounds("a volume in mL >= 0", low=0.0)
LENGTH = Bounds("a length in mm >= 0", low=0.0)
ATTENUATION = Bounds("a finite attenuation in HU")
COUNT = Bounds("a whole number >= 0", low=0.0, whole=True)

#: Numeric fields of the measurements (top level).
NUMBERS: dict[str, Bounds] = {
    "liver_volume_ml": dataclasses.replace(VOLUME, nullable=False),
    "liver_parenchyma_volume_ml": VOLUME,
    "tumor_volume_ml": dataclasses.replace(VOLUME, nullable=False),
    "involvement_percent": Bounds("a percentage from 0 to 100", low=0.0, high=100.0),
    "lesion_count": dataclasses.replace(COUNT, nullable=False),
    "lesion_volume_ml": VOLUME,
    "noise_component_count": COUNT,
    "noise_volume_ml": VOLUME,
    "measurable_lesion_count": COUNT,
    "slice_thickness_mm": Bounds("a thickness in mm > 0", low=0.0, above_low=True),
    "voxel_volume_ml": Bounds("a voxel volume in mL > 0", low=0.0, above_low=True),
    "liver_mean_hu": ATTENUATION,
    "tumor_mean_hu": ATTENUATION,
}
#: Numeric fields of each lesion.
LESION_NUMBERS: dict[str, Bounds] = {
    "volume_ml": dataclasses.replace(VOLUME, nullable=False),
    "voxel_count": COUNT,
    "longest_axial_diameter_mm": LENGTH,
    "short_axis_diameter_mm": LENGTH,
    "mean_hu": ATTENUATION,
    "portal_mean_hu": ATTENUATION,
    "viable_volume_ml": VOLUME,
    "viable_longest_axial_diameter_mm": LENGTH,
    "viable_short_axis_diameter_mm": LENGTH,
    "viable_fraction": Bounds("a fraction from 0 to 1", low=0.0, high=1.0),
    "arterial_mean_hu": ATTENUATION,
    "arterial_reference_hu": ATTENUATION,
    "lipiodol_volume_ml": VOLUME,
}
#: Point fields ``[x, y, z]`` in mm (LPS).
POINTS = ("liver_centroid_mm",)
LESION_POINTS = ("centroid_mm",)


def read_measurements(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked content of a measure folder's ``measurements.json``.

    Parameters
    ----------
    folder
        A ``liverburden measure`` output folder.

    Returns
    -------
    dict
        The measurements as written, with ``study_date`` as ISO ``YYYY-MM-DD``
        (or ``None``).

    Raises
    ------
    InputError
        The folder or file is missing, the file is not JSON, or a field is
        missing, of the wrong type or out of range.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            folder,
            "is not a folder" if folder.exists() else "measure folder not found",
            EXPECTED_FOLDER,
        )
    path = folder / MEASUREMENTS_FILE
    if not path.is_file():
        raise InputError(folder, f"holds no {MEASUREMENTS_FILE}", EXPECTED_FOLDER)
    return check_measurements(read_json(path, MEASUREMENTS_FILE), path)


def check_measurements(data: Any, source: str | os.PathLike[str]) -> dict[str, Any]:
    """Check the content of a ``measurements.json`` (see the module's description).

    ``source`` names the file in errors. Returns ``data`` with ``study_date``
    normalised to ISO ``YYYY-MM-DD``.
    """
    if not isinstance(data, dict):
        raise InputError(source, "does not hold a JSON object", EXPECTED_FILE)
    missing = [name for name in REQUIRED_FIELDS if name not in data]
    if missing:
        raise InputError(source, f"lacks field(s) {', '.join(missing)}", EXPECTED_FILE)
    _check_schema_version(data["schema_version"], source)
    for name in ("subject", "timepoint"):
        if data[name] is not None and not isinstance(data[name], str):
            raise InputError(source, f"{name} is {data[name]!r}", "text or null")
    date = data["study_date"]
    if date is not None and not isinstance(date, str):
        raise InputError(source, f"study_date is {date!r}", "a date as YYYY-MM-DD or null")
    data["study_date"] = iso_date(date, f"{source}: study_date")
    _check_fields(data, NUMBERS, POINTS, source)
    spacing = data.get("spacing_mm")
    if spacing is not None and not (
        isinstance(spacing, list)
        and len(spacing) == 3
        and all(_is_number(s) and math.isfinite(s) and s > 0 for s in spacing)
    ):
        raise InputError(source, f"spacing_mm is {spacing!r}", "[x, y, z] spacings in mm > 0")
    _check_flags(data.get("flags"), source)
    if not isinstance(data["lesions"], list):
        raise InputError(source, "lesions must be a list", "a list of lesion objects")
    for item in data["lesions"]:
        _check_lesion(item, source)
    ids = sorted(item["id"] for item in data["lesions"])
    if ids != list(range(1, len(ids) + 1)):
        raise InputError(
            source,
            f"lesion ids are {ids[:10]}{' ...' if len(ids) > 10 else ''}",
            f"the ids 1..{len(ids)}, each once" if ids else "lesion ids 1..N",
        )
    return data


def check_number(value: Any, bounds: Bounds, source: str | os.PathLike[str], name: str) -> None:
    """Raise :class:`InputError` unless ``value`` is a number ``bounds`` accepts."""
    if value is None and bounds.nullable:
        return
    if (
        not _is_number(value)
        or (bounds.whole and not isinstance(value, int))
        or not bounds.accepts(float(value))
    ):
        raise InputError(source, f"{name} is {value!r}", bounds.expected)


def check_point(value: Any, source: str | os.PathLike[str], name: str) -> None:
    """Raise :class:`InputError` unless ``value`` is ``null`` or ``[x, y, z]`` finite mm."""
    if value is None:
        return
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(_is_number(v) and math.isfinite(v) for v in value)
    ):
        raise InputError(source, f"{name} is {value!r}", "[x, y, z] in mm (finite numbers)")


def _check_fields(
    record: dict[str, Any],
    numbers: dict[str, Bounds],
    points: tuple[str, ...],
    source: str | os.PathLike[str],
) -> None:
    """Check the numeric and point fields of ``record`` that are present."""
    for name, bounds in numbers.items():
        if name in record:
            check_number(record[name], bounds, source, name)
    for name in points:
        if name in record:
            check_point(record[name], source, name)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_schema_version(value: Any, source: str | os.PathLike[str]) -> None:
    major = SCHEMA_VERSION.split(".")[0]
    if not isinstance(value, str) or value.split(".")[0] != major:
        raise InputError(
            source,
            f"schema_version is {value!r}",
            f"schema version {major}.x (measurements of liverburden measure {SCHEMA_VERSION})",
        )


def _check_flags(flags: Any, source: str | os.PathLike[str]) -> None:
    if flags is None:
        return
    if not isinstance(flags, list) or not all(
        isinstance(f, dict) and isinstance(f.get("code"), str) for f in flags
    ):
        raise InputError(
            source,
            f"flags is {str(flags)[:80]!r}",
            'a list of {"code": ..., "severity": ..., "message": ...} objects',
        )


def _check_lesion(item: Any, source: str | os.PathLike[str]) -> None:
    if not isinstance(item, dict):
        raise InputError(source, f"a lesion is {str(item)[:80]!r}", "each lesion an object")
    lesion_id = item.get("id")
    if lesion_id is None or isinstance(lesion_id, bool) or not isinstance(lesion_id, int):
        raise InputError(source, f"a lesion's id is {lesion_id!r}", "whole numbers 1..N")
    where = f"{source}: lesion {lesion_id}"
    missing = [name for name in LESION_REQUIRED_FIELDS if name not in item]
    if missing:
        raise InputError(where, f"lacks field(s) {', '.join(missing)}", EXPECTED_FILE)
    _check_fields(item, LESION_NUMBERS, LESION_POINTS, where)
    measurable = item.get("measurable")
    if measurable is not None and not isinstance(measurable, bool):
        raise InputError(where, f"measurable is {measurable!r}", "true, false or null")
