"""Settings of ``liverburden respond`` (the ``response:`` section of ``config/config.yaml``).

Every judgement call that RECIST 1.1, mRECIST, Choi and the volumetric criteria
leave to the reader, or that an automated reading has to make explicit, is a
field here with its default and source. The values used are written into
every ``response.json`` (``settings``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pipeline.errors import InputError

EQUIVOCAL_PROGRESSION_CHOICES = ("at_confirmation", "backdated")
EQUIVOCAL_CONFIRMATION_CHOICES = ("persistence", "growth_to_unequivocal")
CHOI_REFERENCE_CHOICES = ("nadir", "baseline")
REGISTRATION_CHOICES = ("affine", "rigid", "centroid")


@dataclasses.dataclass(frozen=True)
class ResponseSettings:
    """Thresholds and choices of the response assessment.

    Percentages are changes relative to the reference sum or volume
    (``-30.0`` means a decrease by 30 %). Lengths in mm, volumes in mL,
    intervals in days.
    """

    # ---- RECIST 1.1 (Eisenhauer et al. 2009) -----------------------------------------
    #: Most target lesions per organ; a liver-only analysis has one organ (RECIST: 2).
    max_targets_per_organ: int = 2
    #: Most target lesions in total (RECIST: 5).
    max_targets_total: int = 5
    #: Smallest longest axial diameter of a measurable lesion with slices <= 5 mm.
    measurable_minimum_diameter_mm: float = 10.0
    #: With slices thicker than ``thin_slice_limit_mm`` a measurable lesion must reach
    #: ``thick_slice_factor`` x slice thickness (RECIST: 2 x).
    thin_slice_limit_mm: float = 5.0
    thick_slice_factor: float = 2.0
    #: A target present but measured below this diameter counts ``too_small_counts_mm``
    #: (RECIST "too small to measure": 5 mm). 0 uses every automated measurement as it is.
    #: Not applied in table mode, where the reader's recorded value is used.
    too_small_below_mm: float = 5.0
    too_small_counts_mm: float = 5.0
    #: Target PR: sum of diameters change from baseline at or below this percentage.
    partial_response_percent: float = -30.0
    #: Target PD: sum of diameters change from the nadir at or above this percentage ...
    progression_percent: float = 20.0
    #: ... and an absolute increase over the nadir of at least this many mm.
    progression_minimum_increase_mm: float = 5.0
    #: A new lesion with a longest axial diameter at or above this is unequivocal.
    new_lesion_unequivocal_diameter_mm: float = 10.0
    #: When a confirmed equivocal new lesion makes PD: ``at_confirmation`` (the time point
    #: that confirms it) or ``backdated`` (its first appearance; RECIST 1.1 dates the
    #: progression to the initial scan).
    equivocal_new_lesion_progression: str = "at_confirmation"
    #: What confirms an equivocal new lesion: ``persistence`` (still present at a later
    #: time point) or ``growth_to_unequivocal`` (later reaches the unequivocal diameter).
    equivocal_new_lesion_confirmation: str = "persistence"
    #: Automated stand-in for non-target "unequivocal progression": total non-target
    #: volume increase over its nadir at or above this percentage (1.2^3 = +73 %) ...
    non_target_progression_volume_percent: float = 73.0
    #: ... and by at least this many mL (0: no absolute minimum).
    non_target_progression_minimum_increase_ml: float = 0.0
    #: A lesion present again after a time point whose overall response was CR makes PD
    #: (RECIST 1.1, lesions that disappear and reappear).
    reappearance_after_complete_response_is_progression: bool = True
    #: Best overall response: CR and PR need a repeat assessment at least
    #: ``confirmation_minimum_days`` later (RECIST: when the study says so).
    confirmation_required: bool = False
    confirmation_minimum_days: int = 28
    #: Best overall response SD needs a time point at least this many days after baseline
    #: (RECIST: protocol-defined, typically 42-56 days; 0 = any follow-up).
    stable_disease_minimum_days: int = 0

    # ---- mRECIST (Lencioni & Llovet 2010) --------------------------------------------
    #: A mRECIST target must be measurable and its viable (arterially enhancing) part
    #: must reach this longest axial diameter at baseline.
    mrecist_minimum_viable_diameter_mm: float = 10.0
    #: mRECIST PD: absolute increase of the viable sum over its nadir (mRECIST: none).
    mrecist_progression_minimum_increase_mm: float = 0.0

    # ---- Choi (Choi et al. 2007) -----------------------------------------------------
    choi_size_partial_response_percent: float = -10.0
    choi_attenuation_partial_response_percent: float = -15.0
    choi_size_progression_percent: float = 10.0
    #: Reference of the Choi size increase: ``nadir`` (smallest sum so far, as RECIST)
    #: or ``baseline``.
    choi_progression_reference: str = "nadir"

    # ---- volumetric ------------------------------------------------------------------
    #: PR: total tumour volume change from baseline at or below this (0.7^3 -> -65 %).
    volumetric_partial_response_percent: float = -65.0
    #: PD: total tumour volume change from its nadir at or above this (1.2^3 -> +73 %) ...
    volumetric_progression_percent: float = 73.0
    #: ... and by at least this many mL (0: no absolute minimum).
    volumetric_progression_minimum_increase_ml: float = 0.0
    #: An unequivocal new lesion makes volumetric PD.
    volumetric_new_lesion_is_progression: bool = True

    # ---- lesion matching across time points ------------------------------------------
    #: How follow-up livers are aligned to the baseline liver: ``affine`` (rigid, then
    #: affine), ``rigid``, or ``centroid`` (translation of the liver centroids only).
    matching_registration: str = "affine"
    #: Isotropic grid on which the liver masks are registered, in mm.
    matching_registration_spacing_mm: float = 4.0
    #: Largest distance between lesion centroids (after alignment) for two lesions that
    #: do not overlap to be the same lesion, in mm.
    matching_maximum_distance_mm: float = 15.0
    #: Fraction of a lesion's volume that must overlap another time point's lesion to
    #: count as a fragment of it (split) or as merged into it.
    matching_split_merge_minimum_overlap: float = 0.2
    #: The alignment is unreliable below this Dice of the aligned liver masks ...
    matching_minimum_liver_dice: float = 0.85
    #: ... or above this mean surface distance of the aligned liver masks, in mm.
    matching_maximum_mean_surface_distance_mm: float = 5.0
    #: With an unreliable alignment every response of that time point is NE (true) or
    #: only flagged (false).
    unreliable_matching_not_evaluable: bool = False

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"setting {field.name}", f"is {value!r}", "a finite number")
        choices = {
            "equivocal_new_lesion_progression": EQUIVOCAL_PROGRESSION_CHOICES,
            "equivocal_new_lesion_confirmation": EQUIVOCAL_CONFIRMATION_CHOICES,
            "choi_progression_reference": CHOI_REFERENCE_CHOICES,
            "matching_registration": REGISTRATION_CHOICES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise InputError(
                    f"setting {name}", f"unknown choice {value!r}", " or ".join(allowed)
                )
        if self.max_targets_per_organ < 1 or self.max_targets_total < 1:
            raise InputError("setting max_targets_per_organ", "target limits must be at least 1")
        for name in (
            "partial_response_percent",
            "choi_size_partial_response_percent",
            "choi_attenuation_partial_response_percent",
            "volumetric_partial_response_percent",
        ):
            if not -100.0 <= getattr(self, name) < 0.0:
                raise InputError(
                    f"setting {name}", f"must lie in [-100, 0), not {getattr(self, name)}"
                )
        for name in (
            "progression_percent",
            "choi_size_progression_percent",
            "volumetric_progression_percent",
            "non_target_progression_volume_percent",
        ):
            if getattr(self, name) <= 0.0:
                raise InputError(f"setting {name}", f"must be above 0, not {getattr(self, name)}")
        for name in (
            "measurable_minimum_diameter_mm",
            "thin_slice_limit_mm",
            "thick_slice_factor",
            "too_small_below_mm",
            "too_small_counts_mm",
            "progression_minimum_increase_mm",
            "new_lesion_unequivocal_diameter_mm",
            "non_target_progression_minimum_increase_ml",
            "confirmation_minimum_days",
            "stable_disease_minimum_days",
            "mrecist_minimum_viable_diameter_mm",
            "mrecist_progression_minimum_increase_mm",
            "volumetric_progression_minimum_increase_ml",
            "matching_maximum_distance_mm",
            "matching_maximum_mean_surface_distance_mm",
        ):
            if getattr(self, name) < 0:
                raise InputError(
                    f"setting {name}", f"must not be negative, not {getattr(self, name)}"
                )
        if self.matching_registration_spacing_mm <= 0:
            raise InputError("setting matching_registration_spacing_mm", "must be above 0")
        if not 0.0 < self.matching_split_merge_minimum_overlap <= 1.0:
            raise InputError("setting matching_split_merge_minimum_overlap", "must lie in (0, 1]")
        if not 0.0 <= self.matching_minimum_liver_dice <= 1.0:
            raise InputError("setting matching_minimum_liver_dice", "must lie in [0, 1]")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
