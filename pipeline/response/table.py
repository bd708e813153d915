"""A reader's measurement table (pyrecist layout) as lesion tracks.

Columns: ``patient_id``, ``study_date`` (``YYYYMMDD`` or ISO),
``measurement`` (longest diameter, mm), ``lesion_label_alias`` (the lesion's
identity over time), ``lesion_category`` (``target`` or ``non-target``);
optional ``new_lesion`` (true/false), ``non_target_status`` (``CR``,
``non-CR/non-PD``, ``PD``), ``viable_measurement`` (viable diameter, mm, for
mRECIST), ``mean_hu`` (portal-venous attenuation, for Choi), ``organ``.

The earliest date of a patient is the baseline. A lesion alias first seen at
a follow-up is a new lesion; a measurement of 0 mm means the lesion has
disappeared; a target with no row (or no measurement) at a follow-up is not
assessed.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.io import iso_date
from pipeline.response.model import (
    BASELINE,
    DISAPPEARED,
    MATCHED,
    NEW,
    NON_CR_NON_PD,
    NON_TARGET_CR,
    NON_TARGET_PD,
    NOT_ASSESSED,
    LesionKey,
    LesionRecord,
    Observation,
    ScanRecord,
    TrackedTimePoint,
    Tracking,
)

REQUIRED_COLUMNS = (
    "patient_id",
    "study_date",
    "measurement",
    "lesion_label_alias",
    "lesion_category",
)
OPTIONAL_COLUMNS = ("new_lesion", "non_target_status", "viable_measurement", "mean_hu", "organ")
TARGET, NON_TARGET = "target", "non-target"
_STATUS_WORDS = {
    "cr": NON_TARGET_CR,
    "non-cr/non-pd": NON_CR_NON_PD,
    "noncr/nonpd": NON_CR_NON_PD,
    "non-cr / non-pd": NON_CR_NON_PD,
    "pd": NON_TARGET_PD,
}
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f", ""}


@dataclasses.dataclass(frozen=True)
class TableRow:
    line: int
    patient_id: str
    date: dt.date
    alias: str
    category: str | None
    measurement_mm: float | None
    new_lesion: bool | None
    non_target_status: str | None
    viable_measurement_mm: float | None
    mean_hu: float | None
    organ: str | None


@dataclasses.dataclass
class PatientTable:
    """One patient's tracking plus what the reader chose."""

    tracking: Tracking
    targets: list[str]
    non_targets: list[str]
    organs: dict[str, str | None]
    flags: list[dict[str, Any]]


def _float(value: str, where: str, column: str, *, minimum: float | None = 0.0) -> float | None:
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        raise InputError(
            where, f"{column} {text!r} is not a number", f"{column} in mm as a number"
        ) from None
    if not math.isfinite(number):
        raise InputError(where, f"{column} {text!r} is not a finite number")
    if minimum is not None and number < minimum:
        raise InputError(where, f"{column} {text!r} is negative", f"{column} ≥ 0")
    return number


def _category(value: str, where: str) -> str | None:
    text = value.strip().lower().replace("_", "-").replace(" ", "-")
    if text in ("target", "target-lesion"):
        return TARGET
    if text in ("non-target", "nontarget", "non-target-lesion"):
        return NON_TARGET
    if text in ("", "new"):
        return None
    raise InputError(where, f"lesion_category {value!r} not recognised", "target or non-target")


def _bool(value: str, where: str) -> bool | None:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False if text else None
    raise InputError(
        where, f"new_lesion {value!r} is not true or false", "true/false, yes/no or 1/0"
    )


def _status(value: str, where: str) -> str | None:
    text = value.strip().lower()
    if not text:
        return None
    if text in _STATUS_WORDS:
        return _STATUS_WORDS[text]
    compact = text.replace(" ", "")
    if compact in _STATUS_WORDS:
        return _STATUS_WORDS[compact]
    raise InputError(
        where, f"non_target_status {value!r} not recognised", "CR, non-CR/non-PD or PD"
    )


def read_table(path: str | os.PathLike[str]) -> list[TableRow]:
    """Read and validate the table; every problem names its line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "measurement table not found" if not path.exists() else "not a file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file", "a CSV table") from None
    lines = text.splitlines()
    if not lines or not lines[0].strip():
        raise InputError(path, "empty table", "a CSV header line and rows")
    sample = lines[0]
    delimiter = (
        ";"
        if sample.count(";") > sample.count(",")
        else ("\t" if "\t" in sample and "," not in sample else ",")
    )
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except csv.Error as exc:
        raise InputError(f"{path} line 1", f"malformed CSV ({exc})") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(
            path,
            f"missing column(s) {', '.join(missing)}",
            "columns " + ", ".join(REQUIRED_COLUMNS),
        )
    duplicated = sorted({h for h in header if header.count(h) > 1 and h})
    if duplicated:
        raise InputError(path, f"column(s) {', '.join(duplicated)} appear twice")
    position = {name: header.index(name) for name in header if name}
    rows: list[TableRow] = []
    seen: dict[tuple[str, dt.date, str], int] = {}
    try:
        records = list(enumerate(reader, start=2))
    except csv.Error as exc:
        raise InputError(path, f"malformed CSV ({exc})") from None
    for line, cells in records:
        if not any(c.strip() for c in cells):
            continue
        where = f"{path} line {line}"
        if len(cells) < len(header) and all(
            name in OPTIONAL_COLUMNS or name not in REQUIRED_COLUMNS
            for name in header[len(cells) :]
        ):
            cells = cells + [""] * (len(header) - len(cells))  # trailing optional cells left out
        if len(cells) != len(header):
            raise InputError(where, f"has {len(cells)} fields, the header has {len(header)}")

        def cell(name: str, cells: list[str] = cells) -> str:
            return cells[position[name]] if name in position else ""

        patient = cell("patient_id").strip()
        alias = cell("lesion_label_alias").strip()
        if not patient:
            raise InputError(where, "patient_id is empty")
        if not alias:
            raise InputError(where, "lesion_label_alias is empty")
        date_text = cell("study_date").strip()
        if not date_text:
            raise InputError(where, "study_date is empty", "YYYYMMDD or YYYY-MM-DD")
        date = dt.date.fromisoformat(iso_date(date_text, where))  # type: ignore[arg-type]
        new_lesion = _bool(cell("new_lesion"), where) if "new_lesion" in position else None
        category = _category(cell("lesion_category"), where)
        row = TableRow(
            line=line,
            patient_id=patient,
            date=date,
            alias=alias,
            category=category,
            measurement_mm=_float(cell("measurement"), where, "measurement"),
            new_lesion=new_lesion,
            non_target_status=_status(cell("non_target_status"), where),
            viable_measurement_mm=_float(cell("viable_measurement"), where, "viable_measurement"),
            mean_hu=_float(cell("mean_hu"), where, "mean_hu", minimum=None),
            organ=cell("organ").strip() or None,
        )
        identity = (patient, date, alias)
        if identity in seen:
            raise InputError(
                where,
                f"duplicate row: patient {patient}, date {date.isoformat()}, lesion {alias} "
                f"already on line {seen[identity]}",
                "one row per patient, date and lesion",
            )
        seen[identity] = line
        rows.append(row)
    if not rows:
        raise InputError(path, "the table has a header but no rows")
    return rows


def patient_tables(rows: list[TableRow], source: str) -> dict[str, PatientTable]:
    """Group rows by patient and build each patient's lesion tracks."""
    by_patient: dict[str, list[TableRow]] = {}
    for row in rows:
        by_patient.setdefault(row.patient_id, []).append(row)
    return {
        patient: _patient(patient, patient_rows, source)
        for patient, patient_rows in by_patient.items()
    }


def _patient(patient: str, rows: list[TableRow], source: str) -> PatientTable:
    dates = sorted({row.date for row in rows})
    baseline_date = dates[0]
    keys: dict[str, LesionKey] = {}
    categories: dict[str, str | None] = {}
    organs: dict[str, str | None] = {}
    flags: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: (r.date, r.line)):
        where = f"{source} line {row.line}"
        index = dates.index(row.date)
        if row.alias not in keys:
            if index == 0 and row.new_lesion:
                raise InputError(
                    where,
                    f"lesion {row.alias} is marked new at the baseline ({baseline_date})",
                    "new lesions only at follow-up dates",
                )
            if index == 0 and row.category is None:
                raise InputError(
                    where, "lesion_category is empty at baseline", "target or non-target"
                )
            if index > 0 and row.new_lesion is False:
                raise InputError(
                    where,
                    f"lesion {row.alias} first appears on {row.date} (after the baseline) but "
                    "is not "
                    "marked as a new lesion",
                    "new_lesion true, or the same alias as at baseline",
                )
            keys[row.alias] = LesionKey(row.alias, row.alias if index == 0 else None, index)
            categories[row.alias] = row.category if index == 0 else None
            organs[row.alias] = row.organ
            if index == 0 and row.category == TARGET and row.measurement_mm is None:
                raise InputError(where, f"target lesion {row.alias} has no measurement at baseline")
            if index == 0 and row.category == TARGET and row.measurement_mm == 0:
                raise InputError(where, f"target lesion {row.alias} measures 0 mm at baseline")
        else:
            if row.new_lesion and keys[row.alias].first_seen != index:
                raise InputError(
                    where, f"lesion {row.alias} is marked new but was recorded on an earlier date"
                )
            baseline_category = categories[row.alias]
            if (
                baseline_category is not None
                and row.category is not None
                and row.category != baseline_category
            ):
                raise InputError(
                    where,
                    f"lesion {row.alias} is {baseline_category} at baseline but {row.category} "
                    f"on {row.date}",
                    "the baseline category at every date",
                )
    targets = [k for k, c in categories.items() if c == TARGET]
    non_targets = [k for k, c in categories.items() if c == NON_TARGET]
    organ_counts: dict[str, int] = {}
    for key in targets:
        organ_counts[organs[key] or "unspecified"] = (
            organ_counts.get(organs[key] or "unspecified", 0) + 1
        )
    if len(targets) > 5 or any(n > 2 for n in organ_counts.values()):
        flags.append(
            {
                "code": "target_count_exceeds_recist",
                "severity": "warning",
                "message": f"the reader chose {len(targets)} target(s) ({organ_counts}); "
                "RECIST 1.1 allows at most 5 "
                "in total and 2 per organ",
            }
        )
    timepoints: list[TrackedTimePoint] = []
    for index, date in enumerate(dates):
        day_rows = {row.alias: row for row in rows if row.date == date}
        lesions: dict[int | str, LesionRecord] = {}
        observations: dict[str, Observation] = {}
        statuses: dict[str, str] = {}
        for alias, key_info in keys.items():
            if key_info.first_seen > index:
                continue
            row = day_rows.get(alias)
            if row is None:
                observations[alias] = Observation(alias, NOT_ASSESSED)
                continue
            record = LesionRecord(
                id=alias,
                longest_axial_diameter_mm=row.measurement_mm,
                viable_longest_axial_diameter_mm=row.viable_measurement_mm,
                mean_hu=row.mean_hu,
                measurable=categories.get(alias) == TARGET,
            )
            gone = row.measurement_mm == 0 or (
                row.measurement_mm is None and row.non_target_status == NON_TARGET_CR
            )
            if index > 0 and gone and key_info.first_seen < index:
                observations[alias] = Observation(alias, DISAPPEARED)
            else:
                status = (
                    BASELINE if index == 0 else NEW if key_info.first_seen == index else MATCHED
                )
                observations[alias] = Observation(alias, status, (record,))
                lesions[alias] = record
            if categories.get(alias) == NON_TARGET:
                if row.non_target_status is not None:
                    statuses[alias] = row.non_target_status
                else:
                    statuses[alias] = NON_TARGET_CR if gone else NON_CR_NON_PD
        label = "baseline" if index == 0 else f"follow-up {index}"
        scan = ScanRecord(
            label=label,
            date=date,
            lesions=lesions,
            has_arterial=any(row.viable_measurement_mm is not None for row in day_rows.values()),
            source=source,
        )
        timepoints.append(
            TrackedTimePoint(
                scan, observations, non_target_statuses=statuses if index > 0 else None
            )
        )
    tracking = Tracking(patient, timepoints, keys, mode="table")
    return PatientTable(tracking, targets, non_targets, organs, flags)
