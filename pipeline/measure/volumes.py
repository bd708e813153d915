"""Liver and tumour volumes, hepatic involvement and RECIST measurability."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

#: Default involvement bands (%): see docs/response-criteria.md.
INVOLVEMENT_BAND_THRESHOLDS_PERCENT = (25.0, 50.0, 75.0)


def involvement_percent(tumor_volume_ml: float, liver_volume_ml: float) -> float | None:
    """Hepatic involvement: tumour volume / (liver volume including tumour) x 100.

    Parameters
    ----------
    tumor_volume_ml
        Tumour volume in mL.
    liver_volume_ml
        Liver volume in mL, tumour included (parenchyma + tumour).

    Returns
    -------
    float or None
        Percentage 0..100, ``None`` when the liver volume is 0.
    """
    if tumor_volume_ml < 0 or liver_volume_ml < 0:
        raise ValueError("volumes must not be negative")
    if tumor_volume_ml > liver_volume_ml:
        raise ValueError("the tumour volume cannot exceed the liver volume that includes it")
    if liver_volume_ml == 0:
        return None
    return 100.0 * tumor_volume_ml / liver_volume_ml


def band_labels(
    thresholds_percent: Sequence[float] = INVOLVEMENT_BAND_THRESHOLDS_PERCENT,
) -> list[str]:
    """Names of the involvement bands: ``["<25", "25-50", "50-75", ">=75"]`` by default."""
    values = [f"{float(t):g}" for t in thresholds_percent]
    if not values:
        return ["all"]
    middle = [f"{low}-{high}" for low, high in itertools.pairwise(values)]
    return [f"<{values[0]}", *middle, f">={values[-1]}"]


def involvement_band(
    percent: float | None,
    thresholds_percent: Sequence[float] = INVOLVEMENT_BAND_THRESHOLDS_PERCENT,
) -> str | None:
    """Band of an involvement percentage; a value on a threshold belongs to the
    band above it (25 % is ``"25-50"``). ``None`` for ``None``."""
    if percent is None:
        return None
    labels = band_labels(thresholds_percent)
    index = sum(1 for t in thresholds_percent if percent >= float(t))
    return labels[index]


def measurable_threshold_mm(
    slice_thickness_mm: float,
    *,
    min_diameter_mm: float = 10.0,
    thick_slice_mm: float = 5.0,
) -> float:
    """Smallest longest-axial diameter (mm) of a measurable lesion (RECIST 1.1).

    ``min_diameter_mm`` (10 mm) on CT with slices up to ``thick_slice_mm``
    (5 mm) thick; with thicker slices, twice the slice thickness.
    """
    if slice_thickness_mm > thick_slice_mm:
        return max(min_diameter_mm, 2.0 * slice_thickness_mm)
    return min_diameter_mm


def is_measurable(
    longest_axial_diameter_mm: float,
    slice_thickness_mm: float,
    *,
    min_diameter_mm: float = 10.0,
    thick_slice_mm: float = 5.0,
) -> bool:
    """RECIST 1.1 measurability of a non-nodal lesion (see :func:`measurable_threshold_mm`)."""
    threshold = measurable_threshold_mm(
        slice_thickness_mm, min_diameter_mm=min_diameter_mm, thick_slice_mm=thick_slice_mm
    )
    return bool(math.isfinite(longest_axial_diameter_mm) and longest_axial_diameter_mm >= threshold)
