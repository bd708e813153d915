"""One subject's response assessment: every criterion over every time point.

Takes a :class:`~pipeline.response.model.Tracking` (from lesion matching or
from a reader's table) and returns the subject's object of ``response.json``.
Pure: no files are read or written here.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import InputError
from pipeline.response.choi import assess_choi
from pipeline.response.model import (
    NEW,
    KeyValues,
    LesionRecord,
    Tracking,
    fmt,
    key_values,
    rounded,
)
from pipeline.response.mrecist import assess_mrecist, mrecist_new_lesions, select_mrecist_targets
from pipeline.response.overrides import ResolvedOverrides
from pipeline.response.recist import (
    CriterionInputs,
    TargetSelection,
    assess_diameter_criterion,
    assess_new_lesions,
    best_overall_response,
    measurable_minimum_mm,
    select_targets,
)
from pipeline.response.settings import ResponseSettings
from pipeline.response.volumetric import Burden, assess_volumetric

CRITERIA = ("recist", "mrecist", "choi", "volumetric")


def _key_of_baseline_id(tracking: Tracking, lesion_id: int | str) -> str:
    for key, info in tracking.keys.items():
        if info.first_seen == 0 and info.baseline_id == lesion_id:
            return key
    raise KeyError(lesion_id)


def new_lesion_decisions(
    tracking: Tracking, resolved: ResolvedOverrides | None, source: str
) -> dict[str, str]:
    """Reader decisions on new lesions, by lesion key; refuses lesions that are not new."""
    decisions: dict[str, str] = {}
    if resolved is None:
        return decisions
    for (index, lesion_id), reference in resolved.new_lesion_decisions.items():
        timepoint = tracking.timepoints[index]
        owner = next((k for k, o in timepoint.observations.items() if lesion_id in o.ids), None)
        if owner is None or timepoint.observations[owner].status != NEW:
            what = (
                "is excluded"
                if owner is None
                else (
                    f"is lesion {owner} ({timepoint.observations[owner].status}), not a new lesion"
                )
            )
            raise InputError(
                f"{source}: new_lesions",
                f"lesion {lesion_id} at {timepoint.scan.label} {what}",
                "a lesion that first appears at that time point",
            )
        decisions[owner] = str(reference.decision)
    return decisions


def burden_of(tracking: Tracking, index: int) -> Burden:
    """Tumour burden of a time point without the lesions the reader excluded."""
    timepoint = tracking.timepoints[index]
    scan = timepoint.scan
    if tracking.mode != "masks":
        present = sum(1 for o in timepoint.observations.values() if o.present)
        return Burden(None, None, None, present)
    kept_ids: set[int | str] = set()
    excluded_ids: set[int | str] = set()
    for key, observation in timepoint.observations.items():
        target = excluded_ids if tracking.keys[key].excluded else kept_ids
        target.update(observation.ids)
    excluded_only = excluded_ids - kept_ids
    excluded_volume = sum(
        scan.lesions[i].volume_ml or 0.0 for i in excluded_only if i in scan.lesions
    )
    total = (
        None if scan.tumor_volume_ml is None else max(scan.tumor_volume_ml - excluded_volume, 0.0)
    )
    viable = None
    if scan.has_arterial:
        viable = float(
            sum(
                scan.lesions[i].viable_volume_ml or 0.0
                for i in scan.lesions
                if i not in excluded_only
            )
        )
    involvement = scan.involvement_percent
    if excluded_only and total is not None and scan.liver_volume_ml:
        involvement = total / scan.liver_volume_ml * 100.0
    return Burden(total, viable, involvement, len(scan.lesions) - len(excluded_only))


def _lesion_summary(record: LesionRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "longest_axial_diameter_mm": rounded(record.longest_axial_diameter_mm, 2),
        "viable_longest_axial_diameter_mm": rounded(record.viable_longest_axial_diameter_mm, 2),
        "volume_ml": rounded(record.volume_ml, 3),
    }


def _lesions_at(
    tracking: Tracking, index: int, roles: dict[str, str], values: dict[str, KeyValues]
) -> dict[str, Any]:
    timepoint = tracking.timepoints[index]
    result: dict[str, Any] = {}
    for key, observation in timepoint.observations.items():
        value = values[key]
        entry: dict[str, Any] = {
            "status": observation.status,
            "role": roles.get(key, "new" if tracking.keys[key].first_seen > 0 else "non-target"),
            "ids": observation.ids,
            "longest_axial_diameter_mm": rounded(value.diameter_mm, 2),
            "viable_longest_axial_diameter_mm": rounded(value.viable_diameter_mm, 2),
            "volume_ml": rounded(value.volume_ml, 3),
        }
        if tracking.keys[key].excluded:
            entry["role"] = "excluded"
            entry["exclusion_reason"] = tracking.keys[key].exclusion_reason
        if observation.merged_with:
            entry["merged_with"] = list(observation.merged_with)
        if observation.reappeared:
            entry["reappeared"] = True
        match = dict(observation.match or {})
        fragment_matches = {f["id"]: f for f in match.pop("fragments", [])}
        entry.update(match)
        if len(observation.lesions) > 1:
            entry["fragments"] = [
                {**fragment_matches.get(r.id, {}), **_lesion_summary(r)}
                for r in observation.lesions
            ]
        result[key] = entry
    return result


def _selection_dict(
    selection: TargetSelection, tracking: Tracking, quantity: str
) -> dict[str, Any]:
    baseline = tracking.baseline.scan

    def item(key: str) -> dict[str, Any]:
        record = baseline.lesions[tracking.keys[key].baseline_id]  # type: ignore[index]
        return {
            "key": key,
            "id": record.id,
            "longest_axial_diameter_mm": rounded(record.longest_axial_diameter_mm, 2),
            "viable_longest_axial_diameter_mm": rounded(record.viable_longest_axial_diameter_mm, 2),
            "volume_ml": rounded(record.volume_ml, 3),
            "measurable": record.measurable,
        }

    return {
        "available": selection.available,
        "quantity": quantity,
        "targets": [item(k) for k in selection.targets],
        "non_targets": [item(k) for k in selection.non_targets],
        "sum_mm": rounded(selection.baseline_sum_mm, 2),
        "reasons": list(selection.reasons),
    }


def assess_subject(
    tracking: Tracking,
    settings: ResponseSettings,
    *,
    resolved: ResolvedOverrides | None = None,
    overrides_record: dict[str, Any] | None = None,
    reader_targets: list[str] | None = None,
    flags: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The subject's ``response.json`` object.

    Parameters
    ----------
    tracking
        Lesion identity over the time points (baseline first).
    resolved
        Reader overrides mapped onto the measurements (mask mode).
    overrides_record
        What to record under ``overrides`` in the output.
    reader_targets
        Table mode: the reader's target aliases (the others are non-targets).
    flags
        Flags gathered so far (measurements, input); matching flags are added.
    """
    flags = list(flags or [])
    table_mode = tracking.mode == "table"
    baseline = tracking.baseline
    candidates = {
        key: baseline.scan.lesions[info.baseline_id]  # type: ignore[index]
        for key, info in tracking.keys.items()
        if info.first_seen == 0 and not info.excluded
    }
    source = str((overrides_record or {}).get("source", "overrides"))
    treated_keys: frozenset[str] = frozenset()
    pinned = pinned_mrecist = None
    if resolved is not None:
        treated_keys = frozenset(_key_of_baseline_id(tracking, i) for i in resolved.treated)
        if resolved.targets:
            pinned = [_key_of_baseline_id(tracking, i) for i in resolved.targets]
        if resolved.mrecist_targets:
            pinned_mrecist = [_key_of_baseline_id(tracking, i) for i in resolved.mrecist_targets]
        for name, keys in (("targets", pinned), ("mrecist_targets", pinned_mrecist)):
            if keys and len(keys) > settings.max_targets_total:
                raise InputError(
                    f"{source}: {name}",
                    f"{len(keys)} targets chosen, more than max_targets_total "
                    f"({settings.max_targets_total})",
                    "fewer targets, or a larger max_targets_total setting",
                )

    # ---- target selection
    minimum = measurable_minimum_mm(baseline.scan.slice_thickness_mm, settings)
    if table_mode:
        targets = list(reader_targets or [])
        selection = TargetSelection(
            targets,
            [k for k in candidates if k not in targets],
            {k: float(candidates[k].longest_axial_diameter_mm or 0.0) for k in targets},
            [
                f"targets chosen by the reader: {', '.join(targets)}"
                if targets
                else "no target lesion in the table"
            ],
        )
        if not targets:
            selection.reasons.append("no measurable lesion at baseline")
    else:

        def eligible(record: LesionRecord) -> str | None:
            diameter = record.longest_axial_diameter_mm
            if diameter is None or diameter < minimum:
                return f"not measurable (longest diameter {fmt(diameter)} mm < {fmt(minimum)} mm)"
            return None

        selection = select_targets(
            candidates,
            settings,
            diameter=lambda r: r.longest_axial_diameter_mm,
            eligible=eligible,
            pinned=pinned,
            treated=treated_keys,
            what="measurable lesion",
        )
    for name, keys in (("targets", pinned), ("mrecist_targets", pinned_mrecist)):
        if keys and len(keys) > settings.max_targets_per_organ:
            flags.append(
                {
                    "code": "targets_exceed_organ_limit",
                    "severity": "warning",
                    "message": f"the reader chose {len(keys)} {name.replace('_', ' ')} in the "
                    "liver; "
                    f"RECIST 1.1 allows {settings.max_targets_per_organ} per organ",
                }
            )
    mrecist_selection = select_mrecist_targets(
        tracking,
        settings,
        pinned=pinned_mrecist,
        treated=treated_keys,
        reader_targets=targets if table_mode else None,
    )
    for selected in (selection, mrecist_selection):
        for reason in selected.reasons:
            if "pinned as target although" in reason:
                flags.append(
                    {"code": "pinned_target_not_eligible", "severity": "warning", "message": reason}
                )

    # ---- new lesions
    decisions = new_lesion_decisions(tracking, resolved, source)
    threshold = settings.new_lesion_unequivocal_diameter_mm

    def unequivocal(values: KeyValues, index: int) -> str | None:
        if values.diameter_mm is None:
            return "no size recorded (new lesion marked by the reader)" if table_mode else None
        if values.diameter_mm >= threshold:
            return f"{fmt(values.diameter_mm)} mm ≥ {fmt(threshold)} mm"
        return None

    new_lesions = assess_new_lesions(
        tracking, settings, unequivocal=unequivocal, decisions=decisions
    )
    mrecist_new = mrecist_new_lesions(tracking, settings, decisions)

    # ---- time points that cannot be assessed at all
    def unreliable(index: int) -> str | None:
        timepoint = tracking.timepoints[index]
        if settings.unreliable_matching_not_evaluable and not timepoint.matching_reliable:
            return (
                "lesion matching to baseline unreliable ("
                + "; ".join((timepoint.matching or {}).get("reasons", []))
                + ")"
            )
        return None

    recist_results = assess_diameter_criterion(
        tracking,
        CriterionInputs(
            name="RECIST 1.1",
            quantity="diameter_mm",
            volume_quantity="volume_ml",
            selection=selection,
            new_lesions=new_lesions,
            progression_minimum_increase_mm=settings.progression_minimum_increase_mm,
            apply_too_small=not table_mode,
            available=unreliable,
        ),
        settings,
    )
    mrecist_results = assess_mrecist(tracking, settings, mrecist_selection, mrecist_new, unreliable)
    choi_baseline, choi_results = assess_choi(
        tracking,
        settings,
        selection,
        new_lesions,
        [r["non_target_response"] for r in recist_results],
        unavailable=unreliable,
    )
    burdens = [burden_of(tracking, i) for i in range(len(tracking.timepoints))]
    volumetric_results = assess_volumetric(
        burdens,
        [r["new_lesion_progression"] for r in recist_results],
        settings,
        unavailable=[
            (unreliable(i) or ("table mode holds no volumes" if table_mode else None))
            for i in range(1, len(tracking.timepoints))
        ],
    )

    # ---- assemble
    roles = {k: "target" for k in selection.targets}
    roles.update({k: "non-target" for k in selection.non_targets})
    baseline_values = key_values(baseline, [*selection.targets, *selection.non_targets])
    baseline_date = baseline.scan.date
    timepoints: list[dict[str, Any]] = []
    for index in range(1, len(tracking.timepoints)):
        timepoint = tracking.timepoints[index]
        burden = burdens[index]
        values = key_values(timepoint, [*selection.targets, *selection.non_targets])
        involvement_change = (
            None
            if burden.involvement_percent is None or burdens[0].involvement_percent is None
            else burden.involvement_percent - burdens[0].involvement_percent
        )
        entry: dict[str, Any] = {
            "timepoint": timepoint.scan.label,
            "date": timepoint.scan.date.isoformat(),
            "days_from_baseline": (timepoint.scan.date - baseline_date).days,
            "recist": recist_results[index - 1],
            "mrecist": mrecist_results[index - 1],
            "choi": choi_results[index - 1],
            "volumetric": volumetric_results[index - 1],
            "involvement_percent": rounded(burden.involvement_percent, 3),
            "involvement_change_percentage_points": rounded(involvement_change, 3),
            "total_tumor_volume_ml": rounded(burden.total_tumor_volume_ml, 3),
            "lesion_count": burden.lesion_count,
            "lesion_count_change": burden.lesion_count - burdens[0].lesion_count,
            "lesions": _lesions_at(tracking, index, roles, values),
            "matching": timepoint.matching,
        }
        timepoints.append(entry)
        if timepoint.matching is not None and not timepoint.matching_reliable:
            flags.append(
                {
                    "code": "matching_unreliable",
                    "severity": "warning",
                    "timepoint": timepoint.scan.label,
                    "message": f"lesion matching of {timepoint.scan.label} to baseline is "
                    "unreliable: " + "; ".join(timepoint.matching.get("reasons", [])),
                }
            )

    best: dict[str, str | None] = {}
    best_reasons: dict[str, list[str]] = {}
    for criterion in CRITERIA:
        responses = [
            (t["days_from_baseline"], t[criterion]["overall_response"]) for t in timepoints
        ]
        best[criterion], best_reasons[criterion] = best_overall_response(responses, settings)

    baseline_burden = burdens[0]
    baseline_dict: dict[str, Any] = {
        "timepoint": baseline.scan.label,
        "date": baseline.scan.date.isoformat(),
        **_selection_dict(selection, tracking, "longest_axial_diameter_mm"),
        "measurable_minimum_diameter_mm": None if table_mode else round(minimum, 2),
        "mrecist": _selection_dict(mrecist_selection, tracking, "viable_longest_axial_diameter_mm"),
        "choi": choi_baseline,
        "total_tumor_volume_ml": rounded(baseline_burden.total_tumor_volume_ml, 3),
        "viable_tumor_volume_ml": rounded(baseline_burden.viable_tumor_volume_ml, 3),
        "involvement_percent": rounded(baseline_burden.involvement_percent, 3),
        "lesion_count": baseline_burden.lesion_count,
        "lesions": _lesions_at(tracking, 0, roles, baseline_values),
        "excluded": [
            {"key": k, "id": info.baseline_id, "reason": info.exclusion_reason}
            for k, info in tracking.keys.items()
            if info.excluded
        ],
        "treated": sorted(treated_keys),
    }
    return {
        "subject": tracking.subject,
        "mode": tracking.mode,
        "settings": settings.as_dict(),
        "overrides": overrides_record,
        "baseline": baseline_dict,
        "timepoints": timepoints,
        "best_overall_response": best,
        "best_overall_response_reasons": best_reasons,
        "flags": flags,
    }
