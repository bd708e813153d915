"""Treatment scenarios: how each subject's lesions change over time, and the expected response.

Every scenario is designed far from the response thresholds (see
``../shared/docs/response-criteria.md``), so that the expected category is
unambiguous even with small segmentation or measurement errors:

=========================== ============================================ ===========================
scenario                    change at follow-up                           expected (RECIST, mRECIST,
                                                                          Choi, volumetric)
=========================== ============================================ ===========================
partial_response            all lesions to ~50 % diameter (-87 % volume), PR, PR, PR, PR
                            a small non-target lesion vanishes, lipiodol
                            in the targets (conventional TACE)
progression                 all lesions +40 % diameter (+174 % volume),   PD, PD, PD, PD
                            a non-target lesion splits in two
new_lesion                  sizes unchanged, one new lesion of 22-30 mm   PD, PD, PD, PD
necrosis                    sizes unchanged, lesions non-enhancing but    SD, PR, PR, SD
                            for a small viable nodule (~1/3 diameter);
                            portal attenuation drops ~75 %
complete_response           every lesion gone                             CR, CR, CR, CR
response_then_progression   ~50 % diameter, then regrowth to ~85 % of     PR then PD (by nadir)
                            baseline (+70 % over the nadir)
stable_disease              diameters +0..+4 %                            SD, SD, SD, SD
=========================== ============================================ ===========================

:func:`expected_response` derives the categories from the truth itself
(measured volumes and analytic diameters) with the project's default rules,
independently of ``pipeline.response``; the cohort generator checks that they
equal the scenario's intended ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.phantom.anatomy import Anatomy
from pipeline.phantom.lesions import (
    LesionLook,
    LesionState,
    liver_map,
    place_centres,
    random_look,
    random_star,
    viable_nodule,
)
from pipeline.phantom.shapes import Shape, StarShape

SCENARIOS: tuple[str, ...] = (
    "partial_response",
    "progression",
    "new_lesion",
    "necrosis",
    "complete_response",
    "response_then_progression",
    "stable_disease",
)
TIMEPOINT_NAMES = ("baseline", "followup-1", "followup-2")
DEFAULT_TIMEPOINTS = {name: 2 for name in SCENARIOS} | {"response_then_progression": 3}
TREATMENTS = {
    "partial_response": "conventional TACE (lipiodol)",
    "progression": "somatostatin analogue (lanreotide)",
    "new_lesion": "somatostatin analogue (octreotide LAR)",
    "necrosis": "DEB-TACE (drug-eluting beads)",
    "complete_response": "PRRT 177Lu-DOTATATE",
    "response_then_progression": "PRRT 177Lu-DOTATATE",
    "stable_disease": "somatostatin analogue (lanreotide)",
}
CRITERIA = ("recist", "mrecist", "choi", "volumetric")


def _all(category: str) -> dict[str, str]:
    return dict.fromkeys(CRITERIA, category)


#: The response each scenario is designed to produce at follow-up 1 and 2.
INTENDED: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "partial_response": (_all("PR"), _all("PR")),
    "progression": (_all("PD"), _all("PD")),
    "new_lesion": (_all("PD"), _all("PD")),
    "necrosis": (
        {"recist": "SD", "mrecist": "PR", "choi": "PR", "volumetric": "SD"},
        {"recist": "SD", "mrecist": "PR", "choi": "PR", "volumetric": "SD"},
    ),
    "complete_response": (_all("CR"), _all("CR")),
    "response_then_progression": (_all("PR"), _all("PD")),
    "stable_disease": (_all("SD"), _all("SD")),
}

#: Default rule parameters (``../shared/docs/response-criteria.md``).
MEASURABLE_MM = 10.0
TARGETS = 2
RECIST_PR, RECIST_PD, RECIST_PD_MM = -30.0, 20.0, 5.0
CHOI_SIZE, CHOI_ATTENUATION = 10.0, -15.0
VOLUME_PR, VOLUME_PD = -65.0, 73.0
NEW_LESION_MM = 10.0


@dataclasses.dataclass
class LesionPlan:
    """A baseline lesion (or one appearing later) and what happens to it."""

    key: str
    shape: StarShape  # at scale 1, centred where it lies
    look: LesionLook
    scales: list[float | None]  # radius factor per time point; None: absent
    split_at: int | None = None  # time point index from which it is two fragments
    fragment_shapes: tuple[StarShape, StarShape] | None = None
    treated_from: int | None = None
    nodule_fraction: float = 0.33
    nodule: Shape | None = None
    lipiodol_from: int | None = None
    lipiodol_fraction: float = 0.4
    lipiodol_hu: float = 700.0


def _measurable(diameter_mm: float, slice_mm: float) -> bool:
    return diameter_mm >= max(MEASURABLE_MM, 2.0 * slice_mm if slice_mm > 5.0 else MEASURABLE_MM)


def design_lesions(
    rng: np.random.Generator, anatomy: Anatomy, scenario: str, timepoints: int
) -> list[LesionPlan]:
    """The lesions of a subject following ``scenario`` over ``timepoints`` time points."""
    u = lambda a, b: float(rng.uniform(a, b))  # noqa: E731
    extra = {
        "partial_response": (3, 5),
        "progression": (2, 4),
        "new_lesion": (1, 4),
        "necrosis": (1, 3),
        "complete_response": (1, 4),
        "response_then_progression": (2, 4),
        "stable_disease": (2, 5),
    }[scenario]
    # growing scenarios start smaller: room to grow inside the liver
    d1 = u(32, 42) if scenario in ("progression", "response_then_progression") else u(36, 52)
    d2 = u(24, min(30, 0.8 * d1))
    diameters = [d1, d2]
    others = int(rng.integers(extra[0], extra[1] + 1))
    for i in range(others):
        if scenario == "partial_response" and i == 0:
            diameters.append(u(6, 8))  # the small non-target lesion that vanishes
        elif scenario == "progression" and i == 0:
            diameters.append(u(14, 0.65 * d2))  # the non-target lesion that splits
        else:
            diameters.append(u(6, 0.65 * d2))
    mild = scenario in ("progression", "new_lesion", "response_then_progression", "stable_disease")
    plans: list[LesionPlan] = []
    for i, diameter in enumerate(diameters):
        shape = random_star(rng, (0.0, 0.0, 0.0), diameter, u(0.0, 1.0))
        look = random_look(
            rng,
            diameter,
            mild_portal=mild or scenario == "necrosis",
            allow_core=scenario not in ("necrosis",),
        )
        plans.append(LesionPlan(f"L{i + 1:02d}", shape, look, [1.0] * timepoints))

    scales = {
        "partial_response": [1.0, 0.5, 0.42],
        "progression": [1.0, 1.4, 1.8],
        "response_then_progression": [1.0, 0.5, 0.85],
    }
    for plan in plans:
        if scenario in scales:
            plan.scales = [
                s * (1.0 + u(-0.02, 0.02)) if k else s
                for k, s in enumerate(scales[scenario][:timepoints])
            ]
        elif scenario == "stable_disease":
            plan.scales = [1.0] + [1.0 + u(0.0, 0.02) * k for k in range(1, timepoints)]
        elif scenario == "complete_response":
            plan.scales = [1.0] + [None] * (timepoints - 1)
        elif scenario == "necrosis":
            plan.treated_from = 1
            plan.nodule_fraction = u(0.3, 0.36)
    if scenario == "partial_response":
        plans[2].scales = [1.0] + [None] * (timepoints - 1)  # the small lesion vanishes
        for plan in plans[:2]:
            plan.lipiodol_from = 1
            plan.lipiodol_fraction = u(0.3, 0.45)
            plan.lipiodol_hu = u(450, 1100)
    new_plan = None
    if scenario == "new_lesion" and timepoints > 1:
        diameter = u(22, 30)
        shape = random_star(rng, (0.0, 0.0, 0.0), diameter, u(0.0, 0.6))
        look = random_look(rng, diameter, mild_portal=True, allow_core=False)
        scales_new: list[float | None] = [None, 1.0] + [1.25] * (timepoints - 2)
        new_plan = LesionPlan(f"L{len(plans) + 1:02d}", shape, look, scales_new)

    # place every lesion where its largest extent over time fits
    liver = liver_map(anatomy.liver, anatomy.carved_from_liver())
    everything = plans + ([new_plan] if new_plan else [])
    reaches = []
    for plan in everything:
        largest = max(s for s in plan.scales if s is not None)
        reach = plan.shape.reach_mm * largest
        if scenario == "progression" and plan.key == "L03" and timepoints > 1:
            reach = plan.shape.reach_mm * 1.2 * 2 * 0.7 + 10.0  # two fragments side by side
        reaches.append(reach)
    order = np.argsort(reaches)[::-1]
    centres = [None] * len(everything)
    placed = place_centres(rng, liver, [reaches[i] for i in order], gap_mm=14.0, depth_fraction=0.8)
    for i, centre in zip(order, placed, strict=True):
        centres[i] = centre
    for plan, centre in zip(everything, centres, strict=True):
        plan.shape = plan.shape.scaled(1.0, centre)

    if scenario == "progression" and timepoints > 1:
        plan = plans[2]
        axis = rng.normal(size=3)
        axis[2] *= 0.2
        axis /= np.linalg.norm(axis)
        fragment = 0.7
        offset = plan.shape.reach_mm * fragment + 9.0
        plan.split_at = 1
        plan.fragment_shapes = (
            plan.shape.scaled(fragment, plan.shape.centre + axis * offset),
            plan.shape.scaled(fragment, plan.shape.centre - axis * offset),
        )
        plan.scales = [1.0] + [1.0 + 0.2 * (k - 1) for k in range(1, timepoints)]
    for plan in plans:
        if plan.treated_from is not None:
            plan.nodule = viable_nodule(rng, plan.shape, plan.nodule_fraction)
    if new_plan is not None:
        plans.append(new_plan)
    return plans


def states_at(plans: Sequence[LesionPlan], index: int) -> tuple[list[LesionState], list[str]]:
    """The lesions present at time point ``index`` and the keys of those that vanished."""
    states: list[LesionState] = []
    vanished: list[str] = []
    for plan in plans:
        scale = plan.scales[index]
        if scale is None:
            if any(s is not None for s in plan.scales[:index]):
                vanished.append(plan.key)
            continue
        seen_before = any(s is not None for s in plan.scales[:index])
        if (
            plan.split_at is not None
            and index >= plan.split_at
            and plan.fragment_shapes is not None
        ):
            for suffix, fragment in zip("ab", plan.fragment_shapes, strict=True):
                states.append(
                    LesionState(
                        f"{plan.key}{suffix}",
                        fragment.scaled(scale),
                        plan.look,
                        status="split" if index == plan.split_at else "present",
                        split_from=plan.key,
                    )
                )
            continue
        shape = plan.shape.scaled(scale)
        state = LesionState(
            plan.key, shape, plan.look, status="present" if seen_before or index == 0 else "new"
        )
        if plan.treated_from is not None and index >= plan.treated_from:
            state.treated = True
            state.viable_nodule = plan.nodule
        if plan.lipiodol_from is not None and index >= plan.lipiodol_from:
            state.lipiodol = shape.scaled(plan.lipiodol_fraction)
            state.lipiodol_hu = plan.lipiodol_hu
        states.append(state)
    return states, vanished


# ------------------------------------------------------------------ expected response


def _origin(lesion: dict[str, Any]) -> str:
    return lesion.get("split_from") or lesion["lesion_key"]


def _percent(value: float, reference: float) -> float:
    if reference <= 0:
        return math.inf if value > 0 else 0.0
    return 100.0 * (value - reference) / reference


def expected_response(
    timepoints: Sequence[dict[str, Any]], slice_mm: float
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Response per follow-up and best overall response from truth time points.

    ``timepoints`` are the truth entries (baseline first) with their
    ``lesions``; returns the per-follow-up categories (with the sums and
    changes they rest on) and the best overall response, using the default
    rules: liver-only RECIST 1.1 with 2 targets (the largest measurable), PR
    <= -30 % from baseline, PD >= +20 % and >= 5 mm over the nadir,
    unequivocal new lesion (>= 10 mm) PD, non-target PD at +73 % volume over
    the nadir; mRECIST the same on viable diameters; Choi PR at -10 % size or
    -15 % portal attenuation, PD at +10 % size over the nadir unless PR by
    attenuation; volumetric PR <= -65 %, PD >= +73 % over the nadir.
    """
    baseline = timepoints[0]["lesions"]
    measurable = [
        les for les in baseline if _measurable(les["longest_axial_diameter_mm"], slice_mm)
    ]
    targets = [
        les["lesion_key"]
        for les in sorted(measurable, key=lambda les: -les["longest_axial_diameter_mm"])[:TARGETS]
    ]
    viable_measurable = [
        les for les in baseline if _measurable(les["viable_longest_axial_diameter_mm"], slice_mm)
    ]
    viable_targets = [
        les["lesion_key"]
        for les in sorted(
            viable_measurable, key=lambda les: -les["viable_longest_axial_diameter_mm"]
        )[:TARGETS]
    ]
    baseline_keys = {les["lesion_key"] for les in baseline}

    def sums(lesions: list[dict[str, Any]]) -> dict[str, float]:
        by_origin: dict[str, list[dict[str, Any]]] = {}
        for les in lesions:
            by_origin.setdefault(_origin(les), []).append(les)
        target_sum = sum(
            les["longest_axial_diameter_mm"] for k in targets for les in by_origin.get(k, [])
        )
        viable_sum = sum(
            les["viable_longest_axial_diameter_mm"]
            for k in viable_targets
            for les in by_origin.get(k, [])
        )
        target_lesions = [les for k in targets for les in by_origin.get(k, [])]
        voxels = sum(les["voxel_count"] for les in target_lesions)
        attenuation = (
            sum(les["mean_portal_venous_hu"] * les["voxel_count"] for les in target_lesions)
            / voxels
            if voxels
            else None
        )
        non_target = sum(
            les["volume_ml"]
            for les in lesions
            if _origin(les) in baseline_keys and _origin(les) not in targets
        )
        non_target_viable = sum(
            les["viable_volume_ml"]
            for les in lesions
            if _origin(les) in baseline_keys and _origin(les) not in viable_targets
        )
        new = [les for les in lesions if _origin(les) not in baseline_keys]
        return {
            "sum_mm": target_sum,
            "viable_sum_mm": viable_sum,
            "attenuation_hu": attenuation,
            "non_target_ml": non_target,
            "non_target_viable_ml": non_target_viable,
            "total_ml": sum(les["volume_ml"] for les in lesions),
            "new_mm": max((les["longest_axial_diameter_mm"] for les in new), default=0.0),
            "new_viable_mm": max(
                (les["viable_longest_axial_diameter_mm"] for les in new), default=0.0
            ),
            "count": len(lesions),
            "viable_count": sum(1 for les in lesions if les["viable_volume_ml"] > 0),
        }

    history = [sums(tp["lesions"]) for tp in timepoints]
    first = history[0]
    results: list[dict[str, Any]] = []
    for index in range(1, len(history)):
        now = history[index]
        before = history[: index + 1]
        nadir = {
            key: min(h[key] for h in before[:-1])
            for key in (
                "sum_mm",
                "viable_sum_mm",
                "total_ml",
                "non_target_ml",
                "non_target_viable_ml",
            )
        }

        def recist_like(
            sum_key: str,
            non_target_key: str,
            new_key: str,
            count_key: str,
            now: dict[str, Any] = now,
            nadir: dict[str, float] = nadir,
        ) -> str:
            total, base, low = now[sum_key], first[sum_key], nadir[sum_key]
            if now[new_key] >= NEW_LESION_MM:
                return "PD"
            if total - low >= RECIST_PD_MM and _percent(total, low) >= RECIST_PD:
                return "PD"
            if (
                first[non_target_key] > 0
                and _percent(now[non_target_key], nadir[non_target_key]) >= VOLUME_PD
            ):
                return "PD"
            if now[count_key] == 0:
                return "CR"
            if total == 0 or _percent(total, base) <= RECIST_PR:
                return "PR"
            return "SD"

        recist = recist_like("sum_mm", "non_target_ml", "new_mm", "count")
        mrecist = recist_like(
            "viable_sum_mm", "non_target_viable_ml", "new_viable_mm", "viable_count"
        )
        attenuation_change = (
            _percent(now["attenuation_hu"], first["attenuation_hu"])
            if now["attenuation_hu"] is not None and first["attenuation_hu"]
            else None
        )
        pr_by_attenuation = (
            attenuation_change is not None and attenuation_change <= CHOI_ATTENUATION
        )
        if now["count"] == 0:
            choi = "CR"
        elif now["new_mm"] >= NEW_LESION_MM or (
            _percent(now["sum_mm"], nadir["sum_mm"]) >= CHOI_SIZE and not pr_by_attenuation
        ):
            choi = "PD"
        elif _percent(now["sum_mm"], first["sum_mm"]) <= -CHOI_SIZE or pr_by_attenuation:
            choi = "PR"
        else:
            choi = "SD"
        if now["count"] == 0:
            volumetric = "CR"
        elif (
            now["new_mm"] >= NEW_LESION_MM
            or _percent(now["total_ml"], nadir["total_ml"]) >= VOLUME_PD
        ):
            volumetric = "PD"
        elif _percent(now["total_ml"], first["total_ml"]) <= VOLUME_PR:
            volumetric = "PR"
        else:
            volumetric = "SD"
        results.append(
            {
                "timepoint": timepoints[index]["timepoint"],
                "recist": recist,
                "mrecist": mrecist,
                "choi": choi,
                "volumetric": volumetric,
                "basis": {
                    "target_lesion_keys": targets,
                    "viable_target_lesion_keys": viable_targets,
                    "sum_of_diameters_mm": round(now["sum_mm"], 3),
                    "sum_change_from_baseline_percent": round(
                        _percent(now["sum_mm"], first["sum_mm"]), 2
                    ),
                    "sum_change_from_nadir_percent": _finite(
                        _percent(now["sum_mm"], nadir["sum_mm"])
                    ),
                    "viable_sum_of_diameters_mm": round(now["viable_sum_mm"], 3),
                    "viable_sum_change_from_baseline_percent": round(
                        _percent(now["viable_sum_mm"], first["viable_sum_mm"]), 2
                    ),
                    "viable_sum_change_from_nadir_percent": _finite(
                        _percent(now["viable_sum_mm"], nadir["viable_sum_mm"])
                    ),
                    "target_attenuation_change_percent": None
                    if attenuation_change is None
                    else round(attenuation_change, 2),
                    "tumor_volume_change_from_baseline_percent": round(
                        _percent(now["total_ml"], first["total_ml"]), 2
                    ),
                    "tumor_volume_change_from_nadir_percent": _finite(
                        _percent(now["total_ml"], nadir["total_ml"])
                    ),
                    "largest_new_lesion_mm": round(now["new_mm"], 3),
                },
            }
        )
    order = {"CR": 0, "PR": 1, "SD": 2, "PD": 3}
    best = {
        criterion: min((r[criterion] for r in results), key=lambda c: order[c]) if results else "NE"
        for criterion in CRITERIA
    }
    return results, best


def _finite(value: float) -> float | None:
    return round(value, 2) if math.isfinite(value) else None
