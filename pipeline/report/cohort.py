"""The cohort table (one row per subject and time point) and cohort figures.

``cohort.csv`` columns (units in the names; empty cells where a value does not
apply, e.g. responses at baseline):

subject, timepoint, date, days_from_baseline, liver_volume_ml,
liver_parenchyma_volume_ml, tumor_volume_ml, involvement_percent,
involvement_band, lesion_count, target_sum_mm, baseline_sum_mm, nadir_sum_mm,
change_from_baseline_percent, change_from_nadir_percent,
viable_target_sum_mm, viable_change_from_baseline_percent,
tumor_volume_change_from_baseline_percent, recist_response, mrecist_response,
choi_response, volumetric_response, new_lesions (keys of the RECIST new
lesions, ``;``-separated), best_recist, best_mrecist,
best_choi, best_volumetric, flags (``severity:code`` items joined by ``;``:
the time point's flags from ``measurements.json`` and from ``response.json``,
i.e. its top-level ``flags`` naming this time point, such as
``matching_unreliable``, its time-point entry's and its matching's flags;
top-level response flags without a time point concern the whole assessment
and are in the report, not in the rows).

Figures: ``waterfall.png`` (best % change of the sum of diameters per subject,
bars coloured by best RECIST 1.1 response), ``spider.png`` (% change over days
since baseline), ``involvement.png`` (distribution of hepatic involvement at
baseline and at the last time point).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from pipeline.report import figures
from pipeline.report.inputs import (
    CRITERIA,
    MeasuredScan,
    best_overall,
    days_between,
    flag_list,
    number,
    response_flags,
    response_timepoint,
    response_word,
    sort_by_date,
)
from pipeline.report.settings import ReportSettings

COLUMNS = (
    "subject",
    "timepoint",
    "date",
    "days_from_baseline",
    "liver_volume_ml",
    "liver_parenchyma_volume_ml",
    "tumor_volume_ml",
    "involvement_percent",
    "involvement_band",
    "lesion_count",
    "target_sum_mm",
    "baseline_sum_mm",
    "nadir_sum_mm",
    "change_from_baseline_percent",
    "change_from_nadir_percent",
    "viable_target_sum_mm",
    "viable_change_from_baseline_percent",
    "tumor_volume_change_from_baseline_percent",
    "recist_response",
    "mrecist_response",
    "choi_response",
    "volumetric_response",
    "new_lesions",
    "best_recist",
    "best_mrecist",
    "best_choi",
    "best_volumetric",
    "flags",
)


def _block(entry: dict[str, Any] | None, criterion: str) -> dict[str, Any]:
    block = entry.get(criterion) if isinstance(entry, dict) else None
    return block if isinstance(block, dict) else {}


def _flags_text(
    scan: MeasuredScan, entry: dict[str, Any] | None, response: dict[str, Any] | None
) -> str:
    flags = flag_list(scan.measurements.get("flags"))
    flags += flag_list(response_flags(response, scan))
    if isinstance(entry, dict):
        flags += flag_list(entry.get("flags"))
        matching = entry.get("matching")
        if isinstance(matching, dict):
            flags += flag_list(matching.get("flags"))
    items = [f"{f['severity']}:{f['code'] or f['message']}" for f in flags]
    return ";".join(dict.fromkeys(items))


def _new_lesions(value: Any) -> str | None:
    """New lesion keys (``N1;N2``), ``""`` for none; ``None`` when unknown."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, list):
        keys = [
            str(item.get("key", "?")) if isinstance(item, dict) else str(item) for item in value
        ]
        return ";".join(keys)
    return str(value)


def subject_rows(
    scans: Sequence[MeasuredScan], response: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Rows of one subject, in date order."""
    scans = sort_by_date(list(scans))
    best = best_overall(response)
    baseline_date = scans[0].date if scans else None
    baseline_volume = number(scans[0].measurements.get("tumor_volume_ml")) if scans else None
    rows = []
    for index, scan in enumerate(scans):
        m = scan.measurements
        entry = response_timepoint(response, scan)
        recist = _block(entry, "recist")
        mrecist = _block(entry, "mrecist")
        volumetric = _block(entry, "volumetric")
        volume = number(m.get("tumor_volume_ml"))
        target_sum = number(recist.get("target_sum_mm"))
        if index == 0 and target_sum is None and response:
            target_sum = number((response.get("baseline") or {}).get("sum_mm"))
        volume_change = number(volumetric.get("change_from_baseline_percent"))
        if volume_change is None and index > 0 and volume is not None and baseline_volume:
            volume_change = (volume - baseline_volume) / baseline_volume * 100.0
        row: dict[str, Any] = {
            "subject": scan.subject,
            "timepoint": scan.timepoint,
            "date": scan.date,
            "days_from_baseline": days_between(baseline_date, scan.date),
            "liver_volume_ml": number(m.get("liver_volume_ml")),
            "liver_parenchyma_volume_ml": number(m.get("liver_parenchyma_volume_ml")),
            "tumor_volume_ml": volume,
            "involvement_percent": number(m.get("involvement_percent")),
            "involvement_band": m.get("involvement_band"),
            "lesion_count": m.get("lesion_count"),
            "target_sum_mm": target_sum,
            "baseline_sum_mm": number(recist.get("baseline_sum_mm")),
            "nadir_sum_mm": number(recist.get("nadir_sum_mm")),
            "change_from_baseline_percent": number(recist.get("change_from_baseline_percent")),
            "change_from_nadir_percent": number(recist.get("change_from_nadir_percent")),
            "viable_target_sum_mm": number(mrecist.get("target_sum_mm")),
            "viable_change_from_baseline_percent": number(
                mrecist.get("change_from_baseline_percent")
            ),
            "tumor_volume_change_from_baseline_percent": volume_change if index > 0 else None,
            "new_lesions": _new_lesions(recist.get("new_lesions")) if index > 0 else None,
            "flags": _flags_text(scan, entry, response),
        }
        for key in CRITERIA:
            row[f"{key}_response"] = (
                response_word(entry.get(key)) if (index > 0 and isinstance(entry, dict)) else None
            )
            row[f"best_{key}"] = best[key]
        rows.append(row)
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if value == value else ""
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    return str(value)


def table_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The CSV text of cohort rows (header included)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in COLUMNS])
    return buffer.getvalue()


def cohort_figures(
    rows: Sequence[dict[str, Any]],
    responses: dict[str, dict[str, Any]],
    settings: ReportSettings,
    bands: Sequence[float] = (25.0, 50.0, 75.0),
) -> dict[str, bytes]:
    """PNG bytes of ``waterfall``, ``spider`` and ``involvement``."""
    by_subject: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_subject.setdefault(row["subject"], []).append(row)
    response_settings: dict[str, Any] = {}
    for response in responses.values():
        response_settings = response.get("settings") or {}
        break
    pr = number(response_settings.get("partial_response_percent")) or -30.0
    pd = number(response_settings.get("progression_percent")) or 20.0
    names, best_changes, best_words = [], [], []
    curves: dict[str, tuple[list[float], list[float]]] = {}
    best_by_subject: dict[str, str | None] = {}
    baseline_involvement, last_involvement = [], []
    for subject, subject_rows_ in by_subject.items():
        follow_ups = [r for r in subject_rows_[1:] if r["change_from_baseline_percent"] is not None]
        best_by_subject[subject] = subject_rows_[0]["best_recist"]
        if follow_ups:
            names.append(subject)
            best_changes.append(min(r["change_from_baseline_percent"] for r in follow_ups))
            best_words.append(subject_rows_[0]["best_recist"])
            days = [0.0] + [float(r["days_from_baseline"] or 0) for r in follow_ups]
            change = [0.0] + [float(r["change_from_baseline_percent"]) for r in follow_ups]
            curves[subject] = (days, change)
        if subject_rows_[0]["involvement_percent"] is not None:
            baseline_involvement.append(subject_rows_[0]["involvement_percent"])
        if len(subject_rows_) > 1 and subject_rows_[-1]["involvement_percent"] is not None:
            last_involvement.append(subject_rows_[-1]["involvement_percent"])
    dpi = max(settings.figure_dpi, 110)
    return {
        "waterfall": figures.waterfall_png(
            names,
            best_changes,
            best_words,
            partial_response_percent=pr,
            progression_percent=pd,
            dpi=dpi,
        ),
        "spider": figures.spider_png(
            curves, best_by_subject, partial_response_percent=pr, progression_percent=pd, dpi=dpi
        ),
        "involvement": figures.involvement_png(
            baseline_involvement,
            last_involvement,
            bands=bands,
            dpi=dpi,
        ),
    }
