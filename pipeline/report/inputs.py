"""Reading what the reports are made from: measure folders and response files.

Only the documented fields of ``measurements.json`` and ``response.json`` are
used; a missing optional field shows as "n/a" in the report rather than
failing it. Measure folders are read and checked by
:func:`pipeline.measure.records.read_measurements`: missing required fields,
wrong types and impossible values (a negative volume, an involvement outside
0-100 %) are an :class:`InputError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
from pathlib import Path
from typing import Any

from pipeline.errors import InputError
from pipeline.io import read_json

#: The criteria of ``response.json``, in report order, with display names.
CRITERIA = {
    "recist": "RECIST 1.1",
    "mrecist": "mRECIST",
    "choi": "Choi",
    "volumetric": "Volumetric",
}
RESPONSE_WORDS = ("CR", "PR", "SD", "PD", "NE")


@dataclasses.dataclass
class MeasuredScan:
    """One time point: its measure folder, measurements and (optionally) CT."""

    folder: Path
    measurements: dict[str, Any]
    image: Path | None = None
    treatment: str = ""

    @property
    def timepoint(self) -> str:
        return str(self.measurements.get("timepoint") or self.folder.parent.name)

    @property
    def subject(self) -> str:
        return str(self.measurements.get("subject") or "")

    @property
    def date(self) -> str | None:
        return self.measurements.get("study_date")

    @property
    def lesions(self) -> list[dict[str, Any]]:
        return list(self.measurements.get("lesions") or [])

    def lesion(self, lesion_id: Any) -> dict[str, Any] | None:
        for lesion in self.lesions:
            if str(lesion.get("id")) == str(lesion_id):
                return lesion
        return None


def read_response(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``response.json``, checked for the fields reports need."""
    path = Path(path)
    data = read_json(path, "response file")
    if not isinstance(data, dict) or not isinstance(data.get("timepoints"), list):
        raise InputError(
            path, "lacks the list 'timepoints'", "a response.json written by liverburden respond"
        )
    return data


def sort_by_date(scans: list[MeasuredScan]) -> list[MeasuredScan]:
    """Scans ordered by study date (scans without a date keep their order, last)."""
    return sorted(scans, key=lambda s: (s.date is None, s.date or ""))


def days_between(first: str | None, second: str | None) -> int | None:
    """Days from ISO date ``first`` to ``second``."""
    if not first or not second:
        return None
    return (dt.date.fromisoformat(second) - dt.date.fromisoformat(first)).days


def number(value: Any) -> float | None:
    """A finite float, or ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def response_word(block: Any) -> str | None:
    """The overall response of one criterion's block at one time point."""
    if isinstance(block, str):
        return block
    if isinstance(block, dict):
        word = block.get("overall_response") or block.get("response")
        return str(word) if word else None
    return None


def response_timepoint(
    response: dict[str, Any] | None, scan: MeasuredScan
) -> dict[str, Any] | None:
    """The entry of ``response['timepoints']`` for ``scan`` (by time point name, then date)."""
    if not response:
        return None
    entries = [e for e in response.get("timepoints", []) if isinstance(e, dict)]
    for entry in entries:
        if entry.get("timepoint") is not None and str(entry.get("timepoint")) == scan.timepoint:
            return entry
    for entry in entries:
        if scan.date and entry.get("date") == scan.date:
            return entry
    return None


def response_flags(response: dict[str, Any] | None, scan: MeasuredScan) -> list[Any]:
    """The top-level ``flags`` of ``response.json`` that name ``scan``'s time point.

    A flag names its time point in ``timepoint`` (the label, or the date for
    measurements without one). Flags without ``timepoint`` concern the whole
    assessment, not one time point, and are not returned.
    """
    found = []
    for item in (response or {}).get("flags") or []:
        where = item.get("timepoint") if isinstance(item, dict) else None
        if where not in (None, "") and str(where) in (scan.timepoint, scan.date):
            found.append(item)
    return found


def best_overall(response: dict[str, Any] | None) -> dict[str, str | None]:
    """Best overall response per criterion key (``recist`` ...)."""
    best = (response or {}).get("best_overall_response") or {}
    result: dict[str, str | None] = {}
    for key in CRITERIA:
        value = best.get(key) if isinstance(best, dict) else None
        result[key] = response_word(value) if value is not None else None
    return result


def flag_list(value: Any) -> list[dict[str, str]]:
    """Flags as ``{code, severity, message}`` dicts (strings become warnings)."""
    flags: list[dict[str, str]] = []
    for item in value or []:
        if isinstance(item, dict):
            flags.append(
                {
                    "code": str(item.get("code", "")),
                    "severity": str(item.get("severity", "warning")),
                    "message": str(item.get("message", item.get("code", ""))),
                }
            )
        elif item:
            flags.append({"code": "", "severity": "warning", "message": str(item)})
    return flags
