"""Plain data of the response assessment: lesions, scans, lesion identity over time.

The criteria modules (:mod:`recist`, :mod:`mrecist`, :mod:`choi`,
:mod:`volumetric`) work only on these records, whether they came from
``liverburden measure`` folders (mask mode, identity from lesion matching) or
from a reader's table (table mode, identity from the lesion alias).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Sequence
from typing import Any

#: Response words, in order from best to worst for the best overall response.
CR, PR, SD, PD, NE = "CR", "PR", "SD", "PD", "NE"
#: Non-target response words.
NON_TARGET_CR, NON_CR_NON_PD, NON_TARGET_PD = "CR", "Non-CR/Non-PD", "PD"

#: Status of a lesion key at one time point.
BASELINE = "baseline"
MATCHED = "matched"
NEW = "new"
DISAPPEARED = "disappeared"
SPLIT = "split"
MERGED = "merged"
NOT_ASSESSED = "not_assessed"
PRESENT_STATUSES = frozenset({BASELINE, MATCHED, NEW, SPLIT, MERGED})

#: Relative tolerance of threshold comparisons (a sum exactly at -30 % is PR even when
#: floating point rounding puts it a hair above).
RELATIVE_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True)
class LesionRecord:
    """One lesion as measured on one scan.

    ``id`` is the lesion id of the scan (1..N in mask mode, the reader's alias
    in table mode). Lengths in mm, volumes in mL, attenuation in HU,
    ``centroid_mm`` in LPS. ``None`` where not measured.
    """

    id: int | str
    longest_axial_diameter_mm: float | None
    volume_ml: float | None = None
    short_axis_diameter_mm: float | None = None
    centroid_mm: tuple[float, float, float] | None = None
    mean_hu: float | None = None
    measurable: bool | None = None
    viable_longest_axial_diameter_mm: float | None = None
    viable_volume_ml: float | None = None
    arterial_mean_hu: float | None = None
    lipiodol_volume_ml: float | None = None
    viable_fraction: float | None = None


@dataclasses.dataclass
class ScanRecord:
    """One time point as measured (one ``measurements.json``, or one date of a table).

    Attributes
    ----------
    label
        Time point label (``baseline``, ``fu1`` ..., or the date).
    date
        Study date.
    lesions
        Lesions by id.
    tumor_volume_ml, liver_volume_ml
        Total tumour volume and liver volume including tumour (``None`` in table mode).
    involvement_percent
        Tumour volume / liver volume x 100 (``None`` in table mode).
    has_arterial
        Whether arterial-phase (viable tumour) measurements exist.
    slice_thickness_mm
        For the measurability rule (``None``: assume thin slices).
    flags
        Flags of the measurement (``code``, ``severity``, ``message``).
    """

    label: str
    date: dt.date
    lesions: dict[int | str, LesionRecord]
    tumor_volume_ml: float | None = None
    liver_volume_ml: float | None = None
    involvement_percent: float | None = None
    has_arterial: bool = False
    slice_thickness_mm: float | None = None
    flags: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    source: str | None = None

    @property
    def lesion_count(self) -> int:
        return len(self.lesions)


@dataclasses.dataclass(frozen=True)
class Observation:
    """What one lesion key looks like at one time point.

    ``status`` is one of :data:`BASELINE`, :data:`MATCHED`, :data:`NEW`,
    :data:`DISAPPEARED`, :data:`SPLIT` (the key's lesion is now several
    lesions, ``lesions`` are its fragments), :data:`MERGED` (the key's lesion
    and those of ``merged_with`` are now one lesion) or :data:`NOT_ASSESSED`
    (table mode: no measurement recorded).
    """

    key: str
    status: str
    lesions: tuple[LesionRecord, ...] = ()
    merged_with: tuple[str, ...] = ()
    reappeared: bool = False
    match: dict[str, Any] | None = None

    @property
    def ids(self) -> list[int | str]:
        return [lesion.id for lesion in self.lesions]

    @property
    def present(self) -> bool:
        return self.status in PRESENT_STATUSES


@dataclasses.dataclass
class TrackedTimePoint:
    """One time point with the status of every lesion key known so far.

    ``non_target_statuses`` holds the reader's non-target status per key in table
    mode (``None`` in mask mode, where non-target response comes from volumes).
    """

    scan: ScanRecord
    observations: dict[str, Observation]
    matching: dict[str, Any] | None = None
    matching_reliable: bool = True
    non_target_statuses: dict[str, str] | None = None


@dataclasses.dataclass(frozen=True)
class LesionKey:
    """Identity of a lesion over time.

    ``baseline_id`` is its id at baseline (``None`` for a new lesion),
    ``first_seen`` the index of the time point where it first appears
    (0 = baseline).
    """

    key: str
    baseline_id: int | str | None
    first_seen: int
    excluded: bool = False
    exclusion_reason: str | None = None


@dataclasses.dataclass
class Tracking:
    """Lesion identity over all time points of one subject (baseline first)."""

    subject: str
    timepoints: list[TrackedTimePoint]
    keys: dict[str, LesionKey]
    mode: str = "masks"

    @property
    def baseline(self) -> TrackedTimePoint:
        return self.timepoints[0]

    @property
    def follow_ups(self) -> list[TrackedTimePoint]:
        return self.timepoints[1:]

    def active_keys(self) -> list[str]:
        """Keys not excluded by the reader, in order."""
        return [k for k, info in self.keys.items() if not info.excluded]


@dataclasses.dataclass(frozen=True)
class KeyValues:
    """Effective quantities of one lesion key at one time point.

    A split lesion sums its fragments; of lesions that merged into one, the
    first key in the priority order carries the merged lesion and the others
    count 0 (RECIST 1.1 coalescence rule). ``assessed`` is false where
    nothing was recorded (table mode).
    """

    present: bool
    assessed: bool
    diameter_mm: float | None
    viable_diameter_mm: float | None
    volume_ml: float | None
    viable_volume_ml: float | None
    mean_hu: float | None
    ids: tuple[int | str, ...] = ()


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    items = list(values)
    if not items or any(v is None for v in items):
        return None
    return float(sum(items))  # type: ignore[arg-type]


def _weighted_mean_hu(lesions: Sequence[LesionRecord]) -> float | None:
    """Volume-weighted mean attenuation (plain mean where volumes are missing), in HU."""
    with_hu = [lesion for lesion in lesions if lesion.mean_hu is not None]
    if not with_hu:
        return None
    if all(lesion.volume_ml is not None for lesion in with_hu):
        total = sum(lesion.volume_ml for lesion in with_hu)  # type: ignore[misc]
        if total > 0:
            return float(sum(lesion.mean_hu * lesion.volume_ml for lesion in with_hu) / total)  # type: ignore[operator]
    return float(sum(lesion.mean_hu for lesion in with_hu) / len(with_hu))  # type: ignore[misc]


def _values_of(lesions: Sequence[LesionRecord]) -> KeyValues:
    return KeyValues(
        present=True,
        assessed=True,
        diameter_mm=_sum_or_none(lesion.longest_axial_diameter_mm for lesion in lesions),
        viable_diameter_mm=_sum_or_none(
            lesion.viable_longest_axial_diameter_mm for lesion in lesions
        ),
        volume_ml=_sum_or_none(lesion.volume_ml for lesion in lesions),
        viable_volume_ml=_sum_or_none(lesion.viable_volume_ml for lesion in lesions),
        mean_hu=_weighted_mean_hu(lesions),
        ids=tuple(lesion.id for lesion in lesions),
    )


ZERO_VALUES = KeyValues(True, True, 0.0, 0.0, 0.0, 0.0, None)
GONE_VALUES = KeyValues(False, True, 0.0, 0.0, 0.0, 0.0, None)
NOT_ASSESSED_VALUES = KeyValues(False, False, None, None, None, None, None)


def key_values(timepoint: TrackedTimePoint, priority: Sequence[str]) -> dict[str, KeyValues]:
    """Effective quantities of every key at ``timepoint``.

    Parameters
    ----------
    priority
        Keys in the order in which they claim a merged lesion (targets first):
        the first key of a merged group in this order carries the merged
        lesion's diameter and volume, the others 0.
    """
    rank = {key: index for index, key in enumerate(priority)}
    order = {key: index for index, key in enumerate(timepoint.observations)}
    last = len(rank) + len(order)
    result: dict[str, KeyValues] = {}
    for key, observation in timepoint.observations.items():
        if observation.status == NOT_ASSESSED:
            result[key] = NOT_ASSESSED_VALUES
        elif not observation.present or not observation.lesions:
            result[key] = GONE_VALUES
        elif observation.status == MERGED:
            group = [key, *observation.merged_with]
            owner = min(group, key=lambda k: (rank.get(k, last), order.get(k, last)))
            result[key] = _values_of(observation.lesions) if owner == key else ZERO_VALUES
        else:
            result[key] = _values_of(observation.lesions)
    return result


# ----------------------------------------------------------------------- numbers


def percent_change(value: float | None, reference: float | None) -> float | None:
    """``(value - reference) / reference x 100``; ``None`` when undefined."""
    if value is None or reference is None or reference <= 0:
        return None
    return (value - reference) / reference * 100.0


def at_most(value: float, limit: float) -> bool:
    """``value <= limit`` with a relative tolerance for floating point rounding."""
    return value <= limit + RELATIVE_TOLERANCE * max(1.0, abs(limit))


def at_least(value: float, limit: float) -> bool:
    """``value >= limit`` with a relative tolerance for floating point rounding."""
    return value >= limit - RELATIVE_TOLERANCE * max(1.0, abs(limit))


def volume_progressed(
    volume_ml: float, reference_ml: float, percent: float, minimum_increase_ml: float
) -> bool:
    """Whether ``volume_ml`` has grown over ``reference_ml`` (a nadir) by at least
    ``percent`` % and by at least ``minimum_increase_ml`` mL (from 0 mL any growth counts)."""
    increase = volume_ml - reference_ml
    return (
        increase > 0
        and at_least(volume_ml, reference_ml * (1 + percent / 100.0))
        and at_least(increase, minimum_increase_ml)
    )


def increase_text(volume_ml: float, reference_ml: float) -> str:
    """A volume increase for a reason: ``+80.0 %``, or ``up from 0 mL``."""
    change = percent_change(volume_ml, reference_ml)
    return f"{signed(change)} %" if change is not None else "up from 0 mL"


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a human-readable reason (``n/a`` for ``None``)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def signed(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}"


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)
