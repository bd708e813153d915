"""Choi criteria (Choi et al., J Clin Oncol 2007;25:1753-1759), portal-venous phase.

Same targets as RECIST 1.1. PR: sum of longest diameters -10 % or more from
baseline, or mean target attenuation -15 % or more. PD: sum +10 % or more (over
the nadir by default) and not PR by attenuation, or new lesions, or
progression of non-target disease. CR: every lesion gone.

Mean attenuation is the volume-weighted mean portal-venous HU of the target
lesions present (the plain mean of the recorded values in table mode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.response.model import (
    CR,
    NE,
    NON_TARGET_PD,
    PD,
    PR,
    SD,
    KeyValues,
    Tracking,
    at_least,
    at_most,
    fmt,
    key_values,
    percent_change,
    rounded,
    signed,
)
from pipeline.response.recist import (
    NO_MEASURABLE_LESION,
    NewLesion,
    TargetSelection,
    nadir,
    new_lesions_at,
    target_sum,
)
from pipeline.response.settings import ResponseSettings


def mean_attenuation_hu(values: dict[str, KeyValues], keys: list[str]) -> float | None:
    """Volume-weighted mean attenuation (HU) of the lesions of ``keys`` that are present."""
    items = [values[k] for k in keys if values[k].present and values[k].mean_hu is not None]
    if not items:
        return None
    if all(v.volume_ml is not None for v in items):
        total = sum(v.volume_ml for v in items)  # type: ignore[misc]
        if total > 0:
            return float(sum(v.mean_hu * v.volume_ml for v in items) / total)  # type: ignore[operator]
    return float(sum(v.mean_hu for v in items) / len(items))  # type: ignore[misc]


def assess_choi(
    tracking: Tracking,
    settings: ResponseSettings,
    selection: TargetSelection,
    new_lesions: dict[str, NewLesion],
    non_target_responses: list[str | None],
    unavailable: Callable[[int], str | None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Baseline summary and time-point Choi results.

    ``non_target_responses`` are RECIST's non-target responses per follow-up
    (PD there is "obvious progression of non-measurable disease").
    """
    targets = selection.targets
    priority = [*targets, *selection.non_targets]
    baseline_values = key_values(tracking.baseline, priority)
    baseline_sum = selection.baseline_sum_mm
    baseline_hu = mean_attenuation_hu(baseline_values, targets)
    baseline = {
        "targets": list(targets),
        "sum_mm": rounded(baseline_sum, 2),
        "mean_attenuation_hu": rounded(baseline_hu, 1),
    }
    sums: list[float | None] = [baseline_sum]
    apply_too_small = tracking.mode == "masks"
    results: list[dict[str, Any]] = []
    for index in range(1, len(tracking.timepoints)):
        timepoint = tracking.timepoints[index]
        why_not = unavailable(index) if unavailable else None
        entries, new_progression, new_reasons = new_lesions_at(tracking, index, new_lesions)
        if why_not:
            results.append(
                _result(
                    None,
                    baseline_sum,
                    None,
                    None,
                    None,
                    baseline_hu,
                    None,
                    entries,
                    NE,
                    [f"{why_not}: NE"],
                )
            )
            continue
        values = key_values(timepoint, priority)
        statuses = {k: o.status for k, o in timepoint.observations.items()}
        current = target_sum(
            values,
            statuses,
            targets,
            quantity="diameter_mm",
            settings=settings,
            apply_too_small=apply_too_small,
        )
        nadir_sum = nadir(sums)
        hu = mean_attenuation_hu(values, targets)
        size_change = percent_change(current.total_mm, baseline_sum)
        reference = nadir_sum if settings.choi_progression_reference == "nadir" else baseline_sum
        size_change_reference = percent_change(current.total_mm, reference)
        hu_change = (
            percent_change(hu, baseline_hu) if baseline_hu is not None and baseline_hu > 0 else None
        )
        reasons: list[str] = []
        attenuation_pr = hu_change is not None and at_most(
            hu_change, settings.choi_attenuation_partial_response_percent
        )
        size_pr = size_change is not None and at_most(
            size_change, settings.choi_size_partial_response_percent
        )
        size_pd = (
            current.total_mm is not None
            and reference is not None
            and current.total_mm > reference
            and (
                (
                    size_change_reference is not None
                    and at_least(size_change_reference, settings.choi_size_progression_percent)
                )
                or reference == 0
            )
        )
        all_lesions_gone = not any(values[k].present for k in priority) and not entries
        non_target = (
            non_target_responses[index - 1] if index - 1 < len(non_target_responses) else None
        )
        if baseline_hu is not None and baseline_hu <= 0:
            reasons.append(
                f"baseline mean attenuation {fmt(baseline_hu)} HU ≤ 0: attenuation change not "
                "defined"
            )
        if new_progression:
            response = PD
            reasons.extend(new_reasons)
        elif not targets:
            response = NE
            reasons.append(NO_MEASURABLE_LESION)
        elif current.total_mm is None:
            response = NE
            reasons.append(f"target(s) not assessed: {', '.join(current.missing)}")
        elif all_lesions_gone:
            response = CR
            reasons.append("all lesions disappeared: CR")
        elif size_pd and not attenuation_pr:
            response = PD
            reasons.append(
                f"sum of diameters {fmt(current.total_mm)} mm {signed(size_change_reference)} "
                "% from the "
                f"{settings.choi_progression_reference} ≥ "
                f"+{fmt(settings.choi_size_progression_percent, 0)} % "
                "and no attenuation response: PD"
            )
        elif non_target == NON_TARGET_PD:
            response = PD
            reasons.append("non-target progression (see RECIST): PD")
        elif size_pr or attenuation_pr:
            response = PR
            if size_pr:
                reasons.append(
                    f"sum of diameters {signed(size_change)} % from baseline ≤ "
                    f"{signed(settings.choi_size_partial_response_percent, 0)} %: PR"
                )
            if attenuation_pr:
                reasons.append(
                    f"mean attenuation {fmt(hu)} HU, {signed(hu_change)} % from baseline "
                    f"{fmt(baseline_hu)} HU ≤ "
                    f"{signed(settings.choi_attenuation_partial_response_percent, 0)} %: PR"
                )
            if size_pd:
                reasons.append("size increase outweighed by the attenuation response (Choi)")
        else:
            response = SD
            reasons.append(
                f"sum of diameters {signed(size_change)} % from baseline, mean attenuation "
                f"{signed(hu_change)} %: SD"
            )
        if not new_progression:
            reasons.extend(r for r in new_reasons if "equivocal" in r)
        results.append(
            _result(
                current.total_mm,
                baseline_sum,
                nadir_sum,
                size_change,
                hu,
                baseline_hu,
                hu_change,
                entries,
                response,
                reasons,
                size_change_reference,
            )
        )
        if current.total_mm is not None:
            sums.append(current.total_mm)
    return baseline, results


def _result(
    total: float | None,
    baseline_sum: float | None,
    nadir_sum: float | None,
    size_change: float | None,
    hu: float | None,
    baseline_hu: float | None,
    hu_change: float | None,
    entries: list[dict[str, Any]],
    response: str,
    reasons: list[str],
    size_change_reference: float | None = None,
) -> dict[str, Any]:
    return {
        "target_sum_mm": rounded(total, 2),
        "baseline_sum_mm": rounded(baseline_sum, 2),
        "nadir_sum_mm": rounded(nadir_sum, 2),
        "change_from_baseline_percent": rounded(size_change, 2),
        "change_for_progression_percent": rounded(size_change_reference, 2),
        "mean_attenuation_hu": rounded(hu, 1),
        "baseline_mean_attenuation_hu": rounded(baseline_hu, 1),
        "attenuation_change_percent": rounded(hu_change, 2),
        "new_lesions": entries,
        "overall_response": response,
        "reasons": reasons,
    }
