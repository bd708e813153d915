"""Settings of ``liverburden report`` and ``liverburden cohort`` (the ``report:`` section)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from pipeline.errors import InputError


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """How reports and cohort figures are drawn.

    Attributes
    ----------
    window_width_hu, window_level_hu
        CT display window of the lesion slices, in HU (soft-tissue window
        W400 / L40 by default).
    lesions_per_timepoint
        Most lesion slices shown per time point: the target lesions first,
        then the largest other lesions. Subjects with one time point (no
        response assessment) show their largest measurable lesions.
    crop_margin_mm
        Margin around the liver's bounding box of the lesion slices, in mm.
    figure_dpi
        Resolution of the embedded figures, in dots per inch.

    The hepatic involvement bands drawn on the plots are those the
    measurements used (``measure: involvement_band_thresholds_percent``):
    see :func:`involvement_bands`.
    """

    window_width_hu: float = 400.0
    window_level_hu: float = 40.0
    lesions_per_timepoint: int = 4
    crop_margin_mm: float = 15.0
    figure_dpi: int = 96

    def __post_init__(self) -> None:
        for name in ("window_width_hu", "window_level_hu", "crop_margin_mm"):
            value = getattr(self, name)
            if not math.isfinite(value):
                raise InputError(f"setting {name}", f"is {value!r}", "a finite number")
        if not self.window_width_hu > 0:
            raise InputError(
                "setting window_width_hu",
                f"must be above 0, not {self.window_width_hu}",
                "a window width in HU > 0 (e.g. 400)",
            )
        if self.lesions_per_timepoint < 0:
            raise InputError(
                "setting lesions_per_timepoint",
                f"must not be negative, not {self.lesions_per_timepoint}",
                "a whole number >= 0",
            )
        if not self.crop_margin_mm >= 0:
            raise InputError(
                "setting crop_margin_mm",
                f"must not be negative, not {self.crop_margin_mm}",
                "a margin in mm >= 0",
            )
        if not 30 <= self.figure_dpi <= 600:
            raise InputError(
                "setting figure_dpi", f"must lie in 30..600, not {self.figure_dpi}", "30 to 600"
            )


def involvement_bands(measurements: Sequence[dict[str, Any]]) -> tuple[float, ...]:
    """Involvement band thresholds (%) the measurements were made with.

    ``measurements.json`` records its settings; the first one that has
    ``involvement_band_thresholds_percent`` gives the bands drawn on the plots,
    else the measurement's defaults.
    """
    from pipeline.measure.settings import MeasureSettings

    for data in measurements:
        bands = (data.get("settings") or {}).get("involvement_band_thresholds_percent")
        if (
            isinstance(bands, list | tuple)
            and bands
            and all(isinstance(b, int | float) for b in bands)
        ):
            return tuple(float(b) for b in bands)
    return tuple(MeasureSettings().involvement_band_thresholds_percent)
