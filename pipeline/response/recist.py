"""RECIST 1.1 (Eisenhauer et al., Eur J Cancer 2009;45:228-247), liver only.

The pieces here (target selection, the target-sum classification, the
new-lesion bookkeeping, the overall-response table and the best overall
response) are shared by mRECIST, which applies them to viable diameters, and
partly by Choi and the volumetric criteria.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.response.model import (
    CR,
    NE,
    NON_CR_NON_PD,
    NON_TARGET_CR,
    NON_TARGET_PD,
    NOT_ASSESSED,
    PD,
    PR,
    SD,
    KeyValues,
    LesionRecord,
    Tracking,
    at_least,
    at_most,
    fmt,
    increase_text,
    key_values,
    percent_change,
    rounded,
    signed,
    volume_progressed,
)
from pipeline.response.settings import ResponseSettings

NO_MEASURABLE_LESION = "no measurable lesion at baseline"
UNEQUIVOCAL, EQUIVOCAL = "unequivocal", "equivocal"


# ------------------------------------------------------------------- measurability


def measurable_minimum_mm(slice_thickness_mm: float | None, settings: ResponseSettings) -> float:
    """Smallest measurable longest diameter (mm): 10 mm, or 2 x slice thickness for thick slices."""
    minimum = settings.measurable_minimum_diameter_mm
    if slice_thickness_mm is not None and slice_thickness_mm > settings.thin_slice_limit_mm:
        minimum = max(minimum, settings.thick_slice_factor * slice_thickness_mm)
    return minimum


@dataclasses.dataclass
class TargetSelection:
    """Baseline target and non-target lesion keys of one criterion.

    ``diameters_mm`` holds the baseline diameter of each target (longest
    axial diameter for RECIST and Choi, viable diameter for mRECIST).
    """

    targets: list[str]
    non_targets: list[str]
    diameters_mm: dict[str, float]
    reasons: list[str] = dataclasses.field(default_factory=list)
    available: bool = True

    @property
    def baseline_sum_mm(self) -> float | None:
        if not self.targets:
            return None
        return float(sum(self.diameters_mm[k] for k in self.targets))


def select_targets(
    candidates: dict[str, LesionRecord],
    settings: ResponseSettings,
    *,
    diameter: Callable[[LesionRecord], float | None],
    eligible: Callable[[LesionRecord], str | None],
    pinned: Sequence[str] | None = None,
    treated: frozenset[str] = frozenset(),
    what: str = "lesion",
) -> TargetSelection:
    """Choose baseline targets: the largest eligible lesions, up to the target limits.

    Parameters
    ----------
    candidates
        Baseline lesions by key (excluded lesions already removed).
    diameter
        The diameter (mm) that ranks lesions and is summed.
    eligible
        ``None`` when a lesion may be a target, else the reason why not.
    pinned
        Keys the reader chose as targets (replaces the automatic choice).
    treated
        Keys treated locoregionally: not chosen automatically.
    """
    limit = min(settings.max_targets_per_organ, settings.max_targets_total)
    reasons: list[str] = []
    if pinned:
        targets = list(pinned)
        reasons.append(f"targets chosen by the reader: {', '.join(targets)}")
        for key in targets:
            why_not = eligible(candidates[key])
            if why_not:
                reasons.append(f"{key} pinned as target although {why_not}")
    else:
        ranked = []
        for key, record in candidates.items():
            why_not = eligible(record)
            if why_not is None and key in treated:
                why_not = "treated locoregionally"
            if why_not is None:
                ranked.append((-(diameter(record) or 0.0), key))
        ranked.sort()
        targets = [key for _, key in ranked[:limit]]
        if targets:
            reasons.append(
                f"the {len(targets)} largest {what}(s) of {len(ranked)} eligible chosen as "
                "target(s) "
                f"(at most {limit} in the liver)"
            )
        else:
            reasons.append(NO_MEASURABLE_LESION)
    diameters = {key: float(diameter(candidates[key]) or 0.0) for key in targets}
    non_targets = [key for key in candidates if key not in targets]
    return TargetSelection(targets, non_targets, diameters, reasons)


# -------------------------------------------------------------- new lesions


@dataclasses.dataclass
class NewLesion:
    """A lesion key that was not there at baseline.

    ``counts_from`` is the index of the first time point at which it makes
    progression (``None``: never, for an unconfirmed equivocal or rejected one).
    """

    key: str
    first_seen: int
    diameter_mm: float | None
    category: str
    confirmed_at: int | None
    counts_from: int | None
    reasons: list[str]


def assess_new_lesions(
    tracking: Tracking,
    settings: ResponseSettings,
    *,
    unequivocal: Callable[[KeyValues, int], str | None],
    decisions: dict[str, str] | None = None,
    persists: Callable[[KeyValues, int], bool] | None = None,
) -> dict[str, NewLesion]:
    """Classify each new lesion as unequivocal or equivocal and find its confirmation.

    Parameters
    ----------
    unequivocal
        ``(values, timepoint_index) -> reason`` (text) when the lesion is
        unequivocal there, else ``None``.
    decisions
        Reader decisions by key: ``confirm`` (counts as progression from its
        first appearance) or ``reject`` (never counts).
    persists
        ``(values, timepoint_index) -> bool``: whether a lesion still present
        at a later time point confirms it under ``persistence`` (mRECIST: only
        while it enhances); default: being present.
    """
    decisions = decisions or {}
    labels = [tp.scan.label for tp in tracking.timepoints]
    result: dict[str, NewLesion] = {}
    for key, info in tracking.keys.items():
        if info.first_seen == 0 or info.excluded:
            continue
        first = info.first_seen
        values_first = key_values(tracking.timepoints[first], [])[key]
        diameter = values_first.diameter_mm
        reasons: list[str] = []
        decision = decisions.get(key)
        if decision == "reject":
            reasons.append(f"{key} rejected as a new lesion by the reader")
            result[key] = NewLesion(key, first, diameter, "rejected", None, None, reasons)
            continue
        if decision == "confirm":
            reasons.append(f"{key} confirmed as a new lesion by the reader at {labels[first]}")
            result[key] = NewLesion(key, first, diameter, UNEQUIVOCAL, first, first, reasons)
            continue
        why = unequivocal(values_first, first)
        if why is not None:
            reasons.append(f"{key} at {labels[first]}: {why}: unequivocal new lesion")
            result[key] = NewLesion(key, first, diameter, UNEQUIVOCAL, first, first, reasons)
            continue
        reasons.append(
            f"{key} at {labels[first]}: equivocal new lesion (longest diameter {fmt(diameter)} mm)"
        )
        confirmed_at = None
        for index in range(first + 1, len(tracking.timepoints)):
            observation = tracking.timepoints[index].observations.get(key)
            if observation is None or not observation.present:
                continue
            values = key_values(tracking.timepoints[index], [])[key]
            if settings.equivocal_new_lesion_confirmation == "persistence":
                if persists is not None and not persists(values, index):
                    continue
                confirmed_at = index
                reasons.append(f"{key} still present at {labels[index]}: confirmed")
                break
            why = unequivocal(values, index)
            if why is not None:
                confirmed_at = index
                reasons.append(f"{key} at {labels[index]}: {why}: confirmed")
                break
        counts_from = None
        if confirmed_at is not None:
            counts_from = (
                first if settings.equivocal_new_lesion_progression == "backdated" else confirmed_at
            )
            when = (
                "backdated to its first appearance" if counts_from == first else "at confirmation"
            )
            reasons.append(f"progression from {labels[counts_from]} ({when})")
        result[key] = NewLesion(key, first, diameter, EQUIVOCAL, confirmed_at, counts_from, reasons)
    return result


def new_lesions_at(
    tracking: Tracking, index: int, new_lesions: dict[str, NewLesion]
) -> tuple[list[dict[str, Any]], bool, list[str]]:
    """New lesions present at time point ``index``: entries, whether any makes PD, reasons."""
    timepoint = tracking.timepoints[index]
    values = key_values(timepoint, [])
    labels = [tp.scan.label for tp in tracking.timepoints]
    entries: list[dict[str, Any]] = []
    progression = False
    reasons: list[str] = []
    for key, lesion in new_lesions.items():
        observation = timepoint.observations.get(key)
        if lesion.first_seen > index or observation is None:
            continue
        if not observation.present:
            continue
        makes_progression = lesion.counts_from is not None and lesion.counts_from <= index
        category = lesion.category
        if (
            category == EQUIVOCAL
            and lesion.confirmed_at is not None
            and lesion.confirmed_at <= index
        ):
            category = "confirmed equivocal"
        entries.append(
            {
                "key": key,
                "ids": observation.ids,
                "first_seen": labels[lesion.first_seen],
                "first_appearance": lesion.first_seen == index,
                "longest_axial_diameter_mm": rounded(values[key].diameter_mm, 2),
                "category": category,
                "confirmed_at": None
                if lesion.confirmed_at is None
                else labels[lesion.confirmed_at],
                "makes_progression": makes_progression,
            }
        )
        if makes_progression:
            progression = True
            if lesion.first_seen == index and lesion.category == UNEQUIVOCAL:
                reasons.append(f"new lesion {key} ({fmt(values[key].diameter_mm)} mm): PD")
            elif lesion.confirmed_at == index:
                reasons.append(
                    f"equivocal new lesion {key} (first seen {labels[lesion.first_seen]}) "
                    "confirmed: PD"
                )
            elif lesion.first_seen == index:
                reasons.append(
                    f"equivocal new lesion {key} confirmed at "
                    f"{labels[lesion.confirmed_at or index]}, "
                    "progression backdated to its first appearance: PD"
                )
            else:
                reasons.append(
                    f"new lesion {key} (since {labels[lesion.first_seen]}) still present: PD"
                )
        elif lesion.category == EQUIVOCAL and observation.present:
            reasons.append(
                f"equivocal new lesion {key} ({fmt(values[key].diameter_mm)} mm): not PD "
                "unless confirmed"
            )
    return entries, progression, reasons


# --------------------------------------------------------------- target response


@dataclasses.dataclass
class TargetSum:
    """Sum of target diameters at one time point.

    ``total_mm`` is ``None`` when a target was not assessed; ``available_mm``
    then sums the assessed ones.
    """

    total_mm: float | None
    available_mm: float
    missing: list[str]
    all_gone: bool
    details: list[dict[str, Any]]


def target_sum(
    values: dict[str, KeyValues],
    statuses: dict[str, str],
    targets: Sequence[str],
    *,
    quantity: str,
    settings: ResponseSettings,
    apply_too_small: bool,
) -> TargetSum:
    """Sum the targets' ``quantity`` (``diameter_mm`` or ``viable_diameter_mm``) in mm.

    Disappeared targets count 0; with ``apply_too_small`` a target measured
    between 0 and ``too_small_below_mm`` counts ``too_small_counts_mm``.
    """
    available = 0.0
    missing: list[str] = []
    details: list[dict[str, Any]] = []
    all_gone = True
    for key in targets:
        value = values[key]
        measured = getattr(value, quantity)
        entry: dict[str, Any] = {
            "key": key,
            "status": statuses.get(key, NOT_ASSESSED),
            "ids": list(value.ids),
            "measured_mm": rounded(measured, 2),
        }
        if not value.assessed or measured is None:
            missing.append(key)
            entry["counted_mm"] = None
            entry["note"] = "not assessed"
            details.append(entry)
            all_gone = False
            continue
        counted = float(measured)
        if value.present and counted > 0:
            all_gone = False
        if apply_too_small and 0 < counted < settings.too_small_below_mm:
            counted = settings.too_small_counts_mm
            entry["note"] = (
                f"present but below {fmt(settings.too_small_below_mm)} mm: counts {fmt(counted)} mm"
            )
        elif value.present and counted == 0 and entry["status"] != "merged":
            entry["note"] = "present, 0 mm counted"
        entry["counted_mm"] = rounded(counted, 2)
        available += counted
        details.append(entry)
    total = None if missing else available
    return TargetSum(total, available, missing, all_gone and not missing, details)


def classify_target_sum(
    current: TargetSum,
    baseline_sum_mm: float | None,
    nadir_mm: float | None,
    *,
    partial_response_percent: float,
    progression_percent: float,
    progression_minimum_increase_mm: float,
    name: str = "target sum",
) -> tuple[str, list[str]]:
    """Target response (CR, PR, SD, PD or NE) from the sum, baseline and nadir (mm)."""
    if baseline_sum_mm is None:
        return NE, [NO_MEASURABLE_LESION]
    reference = nadir_mm if nadir_mm is not None else baseline_sum_mm
    limit = reference * (1 + progression_percent / 100.0)
    if current.total_mm is None:
        increase = current.available_mm - reference
        if (
            at_least(current.available_mm, limit)
            and at_least(increase, progression_minimum_increase_mm)
            and increase > 0
        ):
            return PD, [
                f"{name} of the assessed targets alone {fmt(current.available_mm)} mm is "
                f"{signed(percent_change(current.available_mm, reference))} % "
                f"(+{fmt(increase)} mm) over the nadir "
                f"{fmt(reference)} mm; targets not assessed ({', '.join(current.missing)}) "
                "cannot change that: PD"
            ]
        return NE, [f"target(s) not assessed: {', '.join(current.missing)}: NE"]
    total = current.total_mm
    if current.all_gone:
        if "viable" in name:
            return CR, [f"no viable tumour left in any target ({name} 0 mm): CR"]
        return CR, [f"all targets disappeared ({name} 0 mm): CR"]
    increase = total - reference
    change_nadir = percent_change(total, reference)
    if (
        increase > 0
        and at_least(total, limit)
        and at_least(increase, progression_minimum_increase_mm)
    ):
        shown = f"{signed(change_nadir)} %" if change_nadir is not None else "up from 0 mm"
        return PD, [
            f"{name} {fmt(total)} mm is {shown} (+{fmt(increase)} mm) over the nadir "
            f"{fmt(reference)} mm "
            f"(≥ +{fmt(progression_percent, 0)} % and ≥ {fmt(progression_minimum_increase_mm)} "
            "mm): PD"
        ]
    change = percent_change(total, baseline_sum_mm)
    reasons = []
    if increase > 0 and at_least(total, limit):
        reasons.append(
            f"{name} {signed(change_nadir)} % over the nadir but only +{fmt(increase, 2)} mm "
            f"(< {fmt(progression_minimum_increase_mm)} mm): not PD"
        )
    if change is not None and at_most(change, partial_response_percent):
        return PR, [
            *reasons,
            f"{name} {fmt(total)} mm is {signed(change)} % from baseline {fmt(baseline_sum_mm)} mm "
            f"≤ {signed(partial_response_percent, 0)} %: PR",
        ]
    return SD, [
        *reasons,
        f"{name} {fmt(total)} mm: {signed(change)} % from baseline, "
        f"{signed(change_nadir) if change_nadir is not None else 'n/a'} % from nadir: SD",
    ]


def combine_non_target_statuses(statuses: Sequence[str | None]) -> str | None:
    """Group response from per-lesion reader statuses (table mode)."""
    if not statuses:
        return None
    if any(s == NON_TARGET_PD for s in statuses):
        return NON_TARGET_PD
    if any(s is None for s in statuses):
        return NE
    if all(s == NON_TARGET_CR for s in statuses):
        return NON_TARGET_CR
    return NON_CR_NON_PD


def classify_non_target_volume(
    values: dict[str, KeyValues],
    non_targets: Sequence[str],
    nadir_volume_ml: float | None,
    *,
    quantity: str,
    settings: ResponseSettings,
    name: str = "non-target volume",
) -> tuple[str | None, float | None, list[str]]:
    """Non-target response from the total non-target volume (automated stand-in).

    Returns the response (``None`` without non-targets), the total volume (mL)
    and reasons. PD: total volume at least
    ``non_target_progression_volume_percent`` over its nadir (and by
    ``non_target_progression_minimum_increase_ml``); CR: every non-target gone.
    """
    if not non_targets:
        return None, None, ["no non-target lesions at baseline"]
    items = [values[k] for k in non_targets]
    if any(not v.assessed or getattr(v, quantity) is None for v in items):
        return NE, None, [f"{name} not assessed: NE"]
    total = float(sum(getattr(v, quantity) for v in items))
    if not any(v.present and (getattr(v, quantity) or 0) > 0 for v in items):
        if quantity == "viable_volume_ml":
            return NON_TARGET_CR, total, ["no enhancement left in any non-target lesion: CR"]
        return NON_TARGET_CR, total, ["all non-target lesions disappeared: CR"]
    if nadir_volume_ml is not None and volume_progressed(
        total,
        nadir_volume_ml,
        settings.non_target_progression_volume_percent,
        settings.non_target_progression_minimum_increase_ml,
    ):
        shown = increase_text(total, nadir_volume_ml)
        return (
            NON_TARGET_PD,
            total,
            [
                f"{name} {fmt(total, 2)} mL is {shown} over its nadir "
                f"{fmt(nadir_volume_ml, 2)} mL "
                f"(≥ +{fmt(settings.non_target_progression_volume_percent, 0)} %, "
                "automated stand-in for "
                "unequivocal progression): PD"
            ],
        )
    return (
        NON_CR_NON_PD,
        total,
        [f"non-target lesions persist ({name} {fmt(total, 2)} mL): Non-CR/Non-PD"],
    )


# ------------------------------------------------------------ overall response


def overall_response(
    target: str, non_target: str | None, new_lesion: bool, *, has_targets: bool
) -> tuple[str, str]:
    """Time-point overall response by the RECIST 1.1 tables, with the row applied.

    ``target`` is the target response (``NE`` when there were no targets at
    baseline, ``has_targets`` false); ``non_target`` the non-target response
    or ``None`` when there are no non-targets. Without targets (RECIST table 2)
    the overall "non-CR/non-PD" is reported as ``SD``.
    """
    nt = "none" if non_target is None else non_target
    row = (
        f"target {target if has_targets else 'none'}, non-target {nt}, "
        f"new lesion {'yes' if new_lesion else 'no'}"
    )
    if new_lesion:
        return PD, f"{row} -> PD"
    if target == PD:
        return PD, f"{row} -> PD"
    if non_target == NON_TARGET_PD:
        return PD, f"{row} -> PD"
    if not has_targets:
        if non_target is None:
            return NE, f"{row} -> NE (no disease at baseline)"
        if non_target == NON_TARGET_CR:
            return CR, f"{row} -> CR (RECIST table 2)"
        if non_target == NON_CR_NON_PD:
            return SD, f"{row} -> non-CR/non-PD (RECIST table 2), reported as SD"
        return NE, f"{row} -> NE"
    if target == CR:
        if non_target in (NON_TARGET_CR, None):
            return CR, f"{row} -> CR"
        return PR, f"{row} -> PR"
    if target == PR:
        return PR, f"{row} -> PR"
    if target == SD:
        return SD, f"{row} -> SD"
    return NE, f"{row} -> NE"


# ------------------------------------------------------- best overall response

_RANK = {CR: 0, PR: 1, SD: 2}


def best_overall_response(
    responses: Sequence[tuple[int, str]], settings: ResponseSettings
) -> tuple[str | None, list[str]]:
    """Best overall response from time-point responses ``(days from baseline, response)``.

    Counts time points up to the first PD. Without confirmation the best of
    CR > PR > SD (SD only at ``stable_disease_minimum_days`` or later) wins;
    otherwise PD if progression was seen, else NE. With
    ``confirmation_required`` a CR (PR) counts only when the first time point
    at least ``confirmation_minimum_days`` later is CR (CR or PR); an
    unconfirmed one counts as SD (RECIST 1.1 table 3).
    """
    if not responses:
        return None, ["baseline only: no follow-up to assess"]
    considered: list[tuple[int, str]] = []
    for days, response in responses:
        considered.append((days, response))
        if response == PD:
            break
    reasons: list[str] = []
    if len(considered) < len(responses):
        reasons.append(f"time points after the first PD (day {considered[-1][0]}) not considered")
    eligible: list[tuple[str, int]] = []
    for index, (days, response) in enumerate(considered):
        if response in (CR, PR) and settings.confirmation_required:
            confirming = next(
                (
                    (d, r)
                    for d, r in considered[index + 1 :]
                    if d - days >= settings.confirmation_minimum_days
                ),
                None,
            )
            if (
                confirming is not None
                and confirming[1] in (CR, PR)
                and (response == PR or confirming[1] == CR)
            ):
                eligible.append((response, days))
                reasons.append(
                    f"{response} on day {days} confirmed by {confirming[1]} on day {confirming[0]}"
                )
                continue
            if confirming is not None and response == CR and confirming[1] == PR:
                eligible.append((PR, days))
                reasons.append(
                    f"CR on day {days} followed by PR on day {confirming[0]}: PR (RECIST table 3)"
                )
                continue
            reasons.append(
                f"{response} on day {days} not confirmed ≥ "
                f"{settings.confirmation_minimum_days} days later: "
                "counts as SD"
            )
            response = SD
        if response == SD:
            if days >= settings.stable_disease_minimum_days:
                eligible.append((SD, days))
            else:
                reasons.append(
                    f"SD on day {days} is earlier than the minimum "
                    f"{settings.stable_disease_minimum_days} days"
                )
        elif response in (CR, PR):
            eligible.append((response, days))
    if eligible:
        best, days = min(eligible, key=lambda item: (_RANK[item[0]], item[1]))
        reasons.append(f"best response {best} (first on day {days})")
        return best, reasons
    if any(r == PD for _, r in considered):
        reasons.append(
            f"progression on day {considered[-1][0]} without an earlier qualifying response: PD"
        )
        return PD, reasons
    reasons.append("no time point qualifies as CR, PR, SD or PD: NE")
    return NE, reasons


def nadir(previous: Sequence[float | None]) -> float | None:
    """Smallest of the values so far (``None`` entries skipped)."""
    values = [v for v in previous if v is not None]
    return min(values) if values else None


# ------------------------------------------------------------------ the criterion


@dataclasses.dataclass
class CriterionInputs:
    """What a diameter-based criterion (RECIST, mRECIST) needs besides the tracking."""

    name: str
    quantity: str  # KeyValues field summed over targets
    volume_quantity: str  # KeyValues field summed over non-targets
    selection: TargetSelection
    new_lesions: dict[str, NewLesion]
    progression_minimum_increase_mm: float
    apply_too_small: bool
    available: Callable[[int], str | None]  # reason a time point cannot be assessed


def assess_diameter_criterion(
    tracking: Tracking, inputs: CriterionInputs, settings: ResponseSettings
) -> list[dict[str, Any]]:
    """Time-point results of RECIST 1.1 (or mRECIST on viable diameters), follow-ups only."""
    selection = inputs.selection
    targets = selection.targets
    priority = [*targets, *selection.non_targets]
    baseline_values = key_values(tracking.baseline, priority)
    baseline_sum = selection.baseline_sum_mm
    sums: list[float | None] = [baseline_sum]
    non_target_volumes: list[float | None] = []
    if selection.non_targets and all(
        getattr(baseline_values[k], inputs.volume_quantity) is not None
        for k in selection.non_targets
    ):
        non_target_volumes.append(
            float(
                sum(
                    getattr(baseline_values[k], inputs.volume_quantity)
                    for k in selection.non_targets
                )
            )
        )
    previous_overall: str | None = None
    results: list[dict[str, Any]] = []
    for index in range(1, len(tracking.timepoints)):
        timepoint = tracking.timepoints[index]
        unavailable = inputs.available(index)
        if not selection.available or unavailable:
            reason = unavailable or "; ".join(selection.reasons)
            results.append(not_evaluable(reason, baseline_sum))
            previous_overall = NE
            continue
        values = key_values(timepoint, priority)
        statuses = {k: o.status for k, o in timepoint.observations.items()}
        current = target_sum(
            values,
            statuses,
            targets,
            quantity=inputs.quantity,
            settings=settings,
            apply_too_small=inputs.apply_too_small,
        )
        nadir_sum = nadir(sums)
        target_response, target_reasons = classify_target_sum(
            current,
            baseline_sum,
            nadir_sum,
            partial_response_percent=settings.partial_response_percent,
            progression_percent=settings.progression_percent,
            progression_minimum_increase_mm=inputs.progression_minimum_increase_mm,
            name="viable target sum" if inputs.quantity == "viable_diameter_mm" else "target sum",
        )
        if timepoint.non_target_statuses is not None:
            per_lesion = [timepoint.non_target_statuses.get(k) for k in selection.non_targets]
            non_target_response = combine_non_target_statuses(per_lesion)
            non_target_volume = None
            non_target_reasons = (
                [f"non-target statuses recorded by the reader: {non_target_response}"]
                if selection.non_targets
                else ["no non-target lesions at baseline"]
            )
        else:
            non_target_response, non_target_volume, non_target_reasons = classify_non_target_volume(
                values,
                selection.non_targets,
                nadir(non_target_volumes),
                quantity=inputs.volume_quantity,
                settings=settings,
                name="non-target viable volume"
                if inputs.volume_quantity == "viable_volume_ml"
                else "non-target volume",
            )
        entries, new_progression, new_reasons = new_lesions_at(tracking, index, inputs.new_lesions)
        overall, rule = overall_response(
            target_response, non_target_response, new_progression, has_targets=bool(targets)
        )
        reasons = [*target_reasons, *non_target_reasons, *new_reasons]
        if (
            settings.reappearance_after_complete_response_is_progression
            and previous_overall == CR
            and overall != PD
        ):
            back = [
                k
                for k in priority
                if values[k].present and (getattr(values[k], inputs.quantity) or 0) > 0
            ]
            if back:
                overall = PD
                rule = f"{rule}; lesion(s) {', '.join(back)} reappeared after CR -> PD"
                reasons.append(
                    f"lesion(s) {', '.join(back)} present again after a complete response: PD"
                )
        reasons.append(f"overall: {rule}")
        if timepoint.matching is not None and not timepoint.matching_reliable:
            reasons.append(
                "lesion matching to baseline is unreliable at this time point (see matching)"
            )
        change_nadir = percent_change(current.total_mm, nadir_sum)
        results.append(
            {
                "target_sum_mm": rounded(current.total_mm, 2),
                "baseline_sum_mm": rounded(baseline_sum, 2),
                "nadir_sum_mm": rounded(nadir_sum, 2),
                "change_from_baseline_percent": rounded(
                    percent_change(current.total_mm, baseline_sum), 2
                ),
                "change_from_nadir_percent": rounded(change_nadir, 2),
                "change_from_nadir_mm": rounded(
                    None
                    if current.total_mm is None or nadir_sum is None
                    else current.total_mm - nadir_sum,
                    2,
                ),
                "targets": current.details,
                "target_response": target_response,
                "non_target_response": non_target_response,
                "non_target_volume_ml": rounded(non_target_volume, 3),
                "non_target_nadir_volume_ml": rounded(nadir(non_target_volumes), 3),
                "new_lesions": entries,
                "new_lesion_progression": new_progression,
                "overall_response": overall,
                "overall_rule": rule,
                "reasons": reasons,
            }
        )
        if current.total_mm is not None:
            sums.append(current.total_mm)
        if non_target_volume is not None:
            non_target_volumes.append(non_target_volume)
        previous_overall = overall
    return results


def not_evaluable(reason: str, baseline_sum_mm: float | None = None) -> dict[str, Any]:
    """A time-point result in which nothing could be assessed."""
    return {
        "target_sum_mm": None,
        "baseline_sum_mm": rounded(baseline_sum_mm, 2),
        "nadir_sum_mm": None,
        "change_from_baseline_percent": None,
        "change_from_nadir_percent": None,
        "change_from_nadir_mm": None,
        "targets": [],
        "target_response": NE,
        "non_target_response": NE,
        "non_target_volume_ml": None,
        "non_target_nadir_volume_ml": None,
        "new_lesions": [],
        "new_lesion_progression": False,
        "overall_response": NE,
        "overall_rule": "not evaluable",
        "reasons": [f"{reason}: NE"],
    }
