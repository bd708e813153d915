"""mRECIST for the liver (Lencioni & Llovet, Semin Liver Dis 2010;30:52-60).

RECIST 1.1's structure on the viable (arterially enhancing) part of each
lesion: the longest axial diameter of the viable tumour
(``viable_longest_axial_diameter_mm`` of the measurements, which already
leaves out necrosis and lipiodol). Without arterial-phase measurements a time
point is NE with a reason, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pipeline.response.model import KeyValues, LesionRecord, Tracking, fmt
from pipeline.response.recist import (
    CriterionInputs,
    NewLesion,
    TargetSelection,
    assess_diameter_criterion,
    assess_new_lesions,
    measurable_minimum_mm,
    select_targets,
)
from pipeline.response.settings import ResponseSettings

NO_ARTERIAL_BASELINE = "no arterial phase at baseline: viable tumour cannot be measured"
NO_ARTERIAL = "no arterial phase at this time point: viable tumour cannot be measured"


def select_mrecist_targets(
    tracking: Tracking,
    settings: ResponseSettings,
    *,
    pinned: Sequence[str] | None = None,
    treated: frozenset[str] = frozenset(),
    reader_targets: Sequence[str] | None = None,
) -> TargetSelection:
    """mRECIST targets: measurable and arterially enhancing at baseline, largest viable first.

    ``reader_targets`` (table mode) are the reader's RECIST targets: those with
    a viable measurement become the mRECIST targets.
    """
    baseline = tracking.baseline.scan
    candidates = {
        k: baseline.lesions[tracking.keys[k].baseline_id]
        for k in tracking.active_keys()
        if tracking.keys[k].first_seen == 0
    }
    if not baseline.has_arterial:
        return TargetSelection([], list(candidates), {}, [NO_ARTERIAL_BASELINE], available=False)
    if reader_targets is not None:
        targets = [
            k for k in reader_targets if candidates[k].viable_longest_axial_diameter_mm is not None
        ]
        reasons = [f"reader's targets with a viable measurement: {', '.join(targets) or 'none'}"]
        if not targets:
            reasons.append("no target with a viable measurement at baseline")
        diameters = {
            k: float(candidates[k].viable_longest_axial_diameter_mm or 0.0) for k in targets
        }
        return TargetSelection(
            targets, [k for k in candidates if k not in targets], diameters, reasons
        )
    minimum = measurable_minimum_mm(baseline.slice_thickness_mm, settings)

    def eligible(record: LesionRecord) -> str | None:
        if (record.longest_axial_diameter_mm or 0.0) < minimum:
            return (
                f"not measurable (longest diameter {fmt(record.longest_axial_diameter_mm)} "
                f"mm < {fmt(minimum)} mm)"
            )
        viable = record.viable_longest_axial_diameter_mm
        if viable is None or viable < settings.mrecist_minimum_viable_diameter_mm:
            return (
                f"not arterially enhancing enough (viable diameter {fmt(viable)} mm < "
                f"{fmt(settings.mrecist_minimum_viable_diameter_mm)} mm)"
            )
        return None

    return select_targets(
        candidates,
        settings,
        diameter=lambda record: record.viable_longest_axial_diameter_mm,
        eligible=eligible,
        pinned=pinned,
        treated=treated,
        what="arterially enhancing lesion",
    )


def mrecist_new_lesions(
    tracking: Tracking, settings: ResponseSettings, decisions: dict[str, str] | None = None
) -> dict[str, NewLesion]:
    """New lesions under mRECIST: unequivocal when >= the unequivocal diameter and enhancing."""

    def unequivocal(values: KeyValues, index: int) -> str | None:
        diameter = values.diameter_mm
        if diameter is None or diameter < settings.new_lesion_unequivocal_diameter_mm:
            return None
        viable = values.viable_diameter_mm
        if viable is not None and viable <= 0:
            return None
        if viable is None and tracking.mode == "masks":
            return None
        enhancing = "arterially enhancing" if viable is not None else "enhancement not recorded"
        limit = fmt(settings.new_lesion_unequivocal_diameter_mm)
        return f"{fmt(diameter)} mm ≥ {limit} mm, {enhancing}"

    def enhancing(values: KeyValues, index: int) -> bool:
        viable = values.viable_diameter_mm
        return (viable is None and tracking.mode == "table") or (viable is not None and viable > 0)

    return assess_new_lesions(
        tracking, settings, unequivocal=unequivocal, decisions=decisions, persists=enhancing
    )


def assess_mrecist(
    tracking: Tracking,
    settings: ResponseSettings,
    selection: TargetSelection,
    new_lesions: dict[str, NewLesion],
    unavailable: Callable[[int], str | None] | None = None,
) -> list[dict[str, Any]]:
    """Time-point mRECIST results (follow-ups only).

    ``unavailable(index)`` gives a reason why a time point cannot be assessed
    at all (besides a missing arterial phase), else ``None``.
    """

    def available(index: int) -> str | None:
        why = unavailable(index) if unavailable else None
        if why:
            return why
        return None if tracking.timepoints[index].scan.has_arterial else NO_ARTERIAL

    inputs = CriterionInputs(
        name="mRECIST",
        quantity="viable_diameter_mm",
        volume_quantity="viable_volume_ml",
        selection=selection,
        new_lesions=new_lesions,
        progression_minimum_increase_mm=settings.mrecist_progression_minimum_increase_mm,
        apply_too_small=tracking.mode == "masks",
        available=available,
    )
    results = assess_diameter_criterion(tracking, inputs, settings)
    for result in results:
        result["quantity"] = "viable_longest_axial_diameter_mm"
    return results
