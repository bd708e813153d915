"""Volumetric response: total tumour volume over time (and viable tumour volume).

Thresholds are the sphere equivalents of RECIST's (settings): PR at a total
volume change from baseline of -65 % or less (0.7^3), PD at +73 % or more over
the nadir (1.2^3); CR when no tumour is left. Where arterial-phase
measurements exist the same rules are applied to the viable tumour volume
(the qEASL idea), reported as ``viable_response``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from pipeline.response.model import (
    CR,
    NE,
    PD,
    PR,
    SD,
    at_most,
    fmt,
    increase_text,
    percent_change,
    rounded,
    signed,
    volume_progressed,
)
from pipeline.response.recist import nadir
from pipeline.response.settings import ResponseSettings


@dataclasses.dataclass(frozen=True)
class Burden:
    """Tumour burden of one time point (mL, %; ``None`` where not measured)."""

    total_tumor_volume_ml: float | None
    viable_tumor_volume_ml: float | None
    involvement_percent: float | None
    lesion_count: int


def classify_volume(
    volume_ml: float | None,
    baseline_ml: float | None,
    nadir_ml: float | None,
    settings: ResponseSettings,
    *,
    name: str = "total tumour volume",
) -> tuple[str, list[str]]:
    """Volumetric response of one quantity (without new lesions)."""
    if volume_ml is None or baseline_ml is None:
        return NE, [f"{name} not measured: NE"]
    if baseline_ml <= 0:
        return NE, [f"no tumour at baseline: {name} change not defined: NE"]
    if volume_ml <= 0:
        return CR, [f"no tumour left ({name} 0 mL): CR"]
    reference = nadir_ml if nadir_ml is not None else baseline_ml
    if volume_progressed(
        volume_ml,
        reference,
        settings.volumetric_progression_percent,
        settings.volumetric_progression_minimum_increase_ml,
    ):
        shown = increase_text(volume_ml, reference)
        return PD, [
            f"{name} {fmt(volume_ml, 2)} mL is {shown} over the nadir {fmt(reference, 2)} mL "
            f"≥ +{fmt(settings.volumetric_progression_percent, 0)} %: PD"
        ]
    change = percent_change(volume_ml, baseline_ml)
    if change is not None and at_most(change, settings.volumetric_partial_response_percent):
        return PR, [
            f"{name} {fmt(volume_ml, 2)} mL is {signed(change)} % from baseline "
            f"{fmt(baseline_ml, 2)} mL ≤ "
            f"{signed(settings.volumetric_partial_response_percent, 0)} %: PR"
        ]
    return SD, [
        f"{name} {fmt(volume_ml, 2)} mL: {signed(change)} % from baseline, "
        f"{signed(percent_change(volume_ml, reference))} % from nadir: SD"
    ]


def assess_volumetric(
    burdens: Sequence[Burden],
    new_lesion_progression: Sequence[bool],
    settings: ResponseSettings,
    unavailable: Sequence[str | None] | None = None,
) -> list[dict[str, Any]]:
    """Time-point volumetric results for ``burdens[1:]`` (``burdens[0]`` is baseline).

    ``new_lesion_progression[i]`` tells whether follow-up ``i + 1`` has an
    unequivocal (or confirmed) new lesion (RECIST's judgement).
    """
    baseline = burdens[0]
    totals: list[float | None] = [baseline.total_tumor_volume_ml]
    viables: list[float | None] = [baseline.viable_tumor_volume_ml]
    results: list[dict[str, Any]] = []
    for index in range(1, len(burdens)):
        burden = burdens[index]
        why_not = unavailable[index - 1] if unavailable else None
        nadir_total = nadir(totals)
        nadir_viable = nadir(viables)
        if why_not:
            response, reasons = NE, [f"{why_not}: NE"]
            viable_response, viable_reasons = NE, [f"{why_not}: NE"]
        else:
            response, reasons = classify_volume(
                burden.total_tumor_volume_ml, baseline.total_tumor_volume_ml, nadir_total, settings
            )
            if baseline.viable_tumor_volume_ml is None or burden.viable_tumor_volume_ml is None:
                viable_response, viable_reasons = (
                    None,
                    ["no arterial phase: viable volume not measured"],
                )
            else:
                viable_response, viable_reasons = classify_volume(
                    burden.viable_tumor_volume_ml,
                    baseline.viable_tumor_volume_ml,
                    nadir_viable,
                    settings,
                    name="viable tumour volume",
                )
            new_progression = (
                index - 1 < len(new_lesion_progression) and new_lesion_progression[index - 1]
            )
            if new_progression and settings.volumetric_new_lesion_is_progression:
                if response != PD:
                    reasons.append("unequivocal new lesion: PD")
                response = PD
                if viable_response is not None and viable_response != PD:
                    viable_reasons.append("unequivocal new lesion: PD")
                    viable_response = PD
        total = burden.total_tumor_volume_ml
        viable = burden.viable_tumor_volume_ml
        results.append(
            {
                "total_tumor_volume_ml": rounded(total, 3),
                "baseline_volume_ml": rounded(baseline.total_tumor_volume_ml, 3),
                "nadir_volume_ml": rounded(nadir_total, 3),
                "change_from_baseline_percent": rounded(
                    percent_change(total, baseline.total_tumor_volume_ml), 2
                ),
                "change_from_nadir_percent": rounded(percent_change(total, nadir_total), 2),
                "viable_tumor_volume_ml": rounded(viable, 3),
                "viable_baseline_volume_ml": rounded(baseline.viable_tumor_volume_ml, 3),
                "viable_nadir_volume_ml": rounded(nadir_viable, 3),
                "viable_change_from_baseline_percent": rounded(
                    percent_change(viable, baseline.viable_tumor_volume_ml), 2
                ),
                "viable_change_from_nadir_percent": rounded(
                    percent_change(viable, nadir_viable), 2
                ),
                "viable_response": viable_response,
                "viable_reasons": viable_reasons,
                "overall_response": response,
                "reasons": reasons,
            }
        )
        if not why_not:
            totals.append(total)
            viables.append(viable)
    return results
