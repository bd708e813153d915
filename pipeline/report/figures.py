"""Figures of the reports, drawn with matplotlib (Agg backend) into PNG bytes.

Lesion slices are shown in radiological convention: the volume is reoriented
to LPS, so that on screen the patient's right is on the left and anterior is
at the top. Geometry in these functions names its order every time: points in
LPS mm are ``(x, y, z)``; slices are numpy arrays ``[y, x]``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

#: Colours (matplotlib names / hex) used consistently in every figure.
LIVER_COLOUR = "#39d353"
TUMOUR_COLOUR = "#ff5a36"
HIGHLIGHT_COLOUR = "#ffd400"
SHORT_AXIS_COLOUR = "#33c3ff"
RESPONSE_COLOURS = {
    "CR": "#1a9850",
    "PR": "#91cf60",
    "SD": "#bdbdbd",
    "PD": "#d73027",
    "NE": "#7f7f7f",
    None: "#dddddd",
}


def _placeholder(axes: Any, text: str, **options: Any) -> None:
    """Grey text in the middle of an empty plot."""
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", color="#808080", **options)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def figure_png(figure: Any, dpi: int) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed)."""
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(
        buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor=figure.get_facecolor()
    )
    plt.close(figure)
    return buffer.getvalue()


# ------------------------------------------------------------------ lesion slices


@dataclasses.dataclass
class OrientedScan:
    """CT, liver and lesion maps of one time point, reoriented to LPS.

    ``ct_zyx`` is in HU; ``liver_zyx`` is true inside the liver (tumour
    included); ``lesions_zyx`` holds lesion ids 1..N (0 elsewhere). ``image``
    is the reoriented CT (for point-to-index conversion).
    """

    image: sitk.Image
    ct_zyx: np.ndarray
    liver_zyx: np.ndarray
    lesions_zyx: np.ndarray

    @property
    def spacing_xyz_mm(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in self.image.GetSpacing())  # type: ignore[return-value]

    def index_of(self, point_xyz_mm: Sequence[float]) -> tuple[float, float, float]:
        """Continuous voxel index ``(x, y, z)`` of an LPS point in mm."""
        return tuple(
            self.image.TransformPhysicalPointToContinuousIndex([float(v) for v in point_xyz_mm])
        )  # type: ignore[return-value]

    def in_plane_crop(self, margin_mm: float) -> tuple[slice, slice]:
        """``(rows, columns)`` slices around the liver (the whole slice when there is none)."""
        ny, nx = self.ct_zyx.shape[1:]
        if not self.liver_zyx.any():
            return slice(0, ny), slice(0, nx)
        rows = np.flatnonzero(self.liver_zyx.any(axis=(0, 2)))
        columns = np.flatnonzero(self.liver_zyx.any(axis=(0, 1)))
        sx, sy, _ = self.spacing_xyz_mm
        my, mx = round(margin_mm / sy), round(margin_mm / sx)
        return (
            slice(max(0, rows[0] - my), min(ny, rows[-1] + my + 1)),
            slice(max(0, columns[0] - mx), min(nx, columns[-1] + mx + 1)),
        )


def orient_lps(image: sitk.Image) -> sitk.Image:
    """The image with its axes permuted / flipped to LPS (no resampling)."""
    return sitk.DICOMOrient(image, "LPS")


def oriented_scan(ct: sitk.Image, liver: sitk.Image, lesions: sitk.Image) -> OrientedScan:
    """Reorient a CT and its liver and lesion maps (on the CT's grid) to LPS."""
    ct_lps = orient_lps(ct)
    liver_lps = orient_lps(liver)
    lesions_lps = orient_lps(lesions)
    return OrientedScan(
        image=ct_lps,
        ct_zyx=sitk.GetArrayFromImage(ct_lps),
        liver_zyx=sitk.GetArrayFromImage(liver_lps) > 0,
        lesions_zyx=sitk.GetArrayFromImage(lesions_lps).astype(np.int32),
    )


@dataclasses.dataclass
class LesionView:
    """What to draw for one lesion: where, its calipers (LPS mm) and a title."""

    lesion_id: int
    title: str
    slice_point_xyz_mm: Sequence[float]
    longest_endpoints_xyz_mm: Sequence[Sequence[float]] | None = None
    short_axis_endpoints_xyz_mm: Sequence[Sequence[float]] | None = None


def lesion_slice_png(
    scan: OrientedScan,
    view: LesionView,
    *,
    window_width_hu: float,
    window_level_hu: float,
    crop_margin_mm: float,
    dpi: int,
) -> bytes:
    """Axial slice through a lesion with liver and tumour contours and RECIST calipers.

    The slice is the one holding ``view.slice_point_xyz_mm``; the longest
    axial diameter is drawn in yellow, the short axis in blue; the lesion
    itself is outlined thicker than the other lesions.
    """
    plt = _pyplot()
    _, _, z = scan.index_of(view.slice_point_xyz_mm)
    k = int(np.clip(round(z), 0, scan.ct_zyx.shape[0] - 1))
    rows, columns = scan.in_plane_crop(crop_margin_mm)
    ct = scan.ct_zyx[k][rows, columns]
    liver = scan.liver_zyx[k][rows, columns]
    lesions = scan.lesions_zyx[k][rows, columns]
    sx, sy, _ = scan.spacing_xyz_mm
    low = window_level_hu - window_width_hu / 2
    high = window_level_hu + window_width_hu / 2
    height_in = 4.2
    width_in = float(
        np.clip(height_in * (ct.shape[1] * sx) / max(ct.shape[0] * sy, 1e-6), 2.5, 7.0)
    )
    figure, axes = plt.subplots(figsize=(width_in, height_in))
    figure.patch.set_facecolor("black")
    axes.imshow(ct, cmap="gray", vmin=low, vmax=high, interpolation="bilinear", aspect=sy / sx)
    if liver.any():
        axes.contour(liver.astype(float), levels=[0.5], colors=LIVER_COLOUR, linewidths=1.0)
    others = (lesions > 0) & (lesions != view.lesion_id)
    if others.any():
        axes.contour(others.astype(float), levels=[0.5], colors=TUMOUR_COLOUR, linewidths=0.8)
    this = lesions == view.lesion_id
    if this.any():
        axes.contour(this.astype(float), levels=[0.5], colors=TUMOUR_COLOUR, linewidths=1.8)
    offset = np.array([columns.start, rows.start], dtype=float)
    for endpoints, colour in (
        (view.longest_endpoints_xyz_mm, HIGHLIGHT_COLOUR),
        (view.short_axis_endpoints_xyz_mm, SHORT_AXIS_COLOUR),
    ):
        if not endpoints or len(endpoints) != 2:
            continue
        points = np.array([scan.index_of(p)[:2] for p in endpoints]) - offset
        axes.plot(points[:, 0], points[:, 1], color=colour, linewidth=1.6, solid_capstyle="butt")
        axes.plot(
            points[:, 0], points[:, 1], linestyle="none", marker="+", markersize=9, color=colour
        )
    axes.set_title(view.title, color="white", fontsize=9)
    # labels inside the image (data coordinates), so the saved figure hugs the image
    rows_px, columns_px = ct.shape
    margin = 0.02 * max(rows_px, columns_px)
    for x, text, align in ((margin, "R", "left"), (columns_px - 1 - margin, "L", "right")):
        axes.text(x, rows_px - 1 - margin, text, color="white", fontsize=9, va="bottom", ha=align)
    axes.text(
        columns_px - 1 - margin,
        margin,
        f"slice {k + 1}/{scan.ct_zyx.shape[0]}  W{window_width_hu:g} L{window_level_hu:g}",
        color="white",
        fontsize=7,
        va="top",
        ha="right",
    )
    _scale_bar(axes, ct.shape, sx)
    axes.set_axis_off()
    return figure_png(figure, dpi)


def _scale_bar(axes: Any, shape_yx: tuple[int, ...], spacing_x_mm: float) -> None:
    length_mm = 50.0 if shape_yx[1] * spacing_x_mm > 150 else 20.0
    pixels = length_mm / spacing_x_mm
    y = shape_yx[0] * 0.94
    x0 = shape_yx[1] * 0.06
    axes.plot([x0, x0 + pixels], [y, y], color="white", linewidth=2)
    axes.text(
        x0 + pixels / 2,
        y - shape_yx[0] * 0.015,
        f"{length_mm:g} mm",
        color="white",
        fontsize=7,
        ha="center",
        va="bottom",
    )


# -------------------------------------------------------------- time courses


def _dates(values: Sequence[str]) -> list[dt.date]:
    return [dt.date.fromisoformat(v) for v in values]


@dataclasses.dataclass
class Series:
    """A named line of a time-course plot (``None`` values are gaps)."""

    label: str
    values: Sequence[float | None]
    colour: str = "#1f4e79"
    style: str = "-"


@dataclasses.dataclass
class ThresholdLine:
    """A dashed reference line: constant (``values`` of one item) or per date."""

    label: str
    values: Sequence[float | None]
    colour: str = "#7f7f7f"


def timecourse_png(
    dates: Sequence[str],
    series: Sequence[Series],
    thresholds: Sequence[ThresholdLine],
    *,
    title: str,
    ylabel: str,
    dpi: int,
    annotations: Sequence[str | None] = (),
    bands: Sequence[float] = (),
) -> bytes:
    """A value over study dates with dashed threshold lines.

    ``annotations`` (one per date, e.g. the response word) are written above
    the first series' points; ``bands`` draws horizontal shaded thresholds
    (hepatic involvement bands).
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.2, 3.2))
    when = _dates(dates)
    for band in bands:
        axes.axhline(band, color="#b0b0b0", linewidth=0.8, linestyle=":")
        axes.text(
            when[0], band, f" {band:g} %", color="#808080", fontsize=7, va="bottom", clip_on=True
        )
    plotted_any = False
    for line in thresholds:
        if len(line.values) == 1 and line.values[0] is not None:
            axes.axhline(
                line.values[0], color=line.colour, linestyle="--", linewidth=1.0, label=line.label
            )
            plotted_any = True
        elif len(line.values) == len(when):
            # a threshold per date (e.g. nadir-based PD): a dashed bar at each date
            pairs = [(d, v) for d, v in zip(when, line.values, strict=True) if v is not None]
            if pairs:
                axes.plot(
                    [p[0] for p in pairs],
                    [p[1] for p in pairs],
                    linestyle="none",
                    marker="_",
                    markersize=18,
                    markeredgewidth=2.5,
                    color=line.colour,
                    label=line.label,
                )
                plotted_any = True
    for index, line in enumerate(series):
        pairs = [(d, v) for d, v in zip(when, line.values, strict=True) if v is not None]
        if not pairs:
            continue
        axes.plot(
            [p[0] for p in pairs],
            [p[1] for p in pairs],
            line.style,
            marker="o",
            color=line.colour,
            label=line.label,
            linewidth=1.6,
            markersize=5,
        )
        plotted_any = True
        if index == 0:
            for d, v, note in zip(when, line.values, annotations, strict=False):
                if note and v is not None:
                    axes.annotate(
                        note,
                        (d, v),
                        textcoords="offset points",
                        xytext=(0, 7),
                        ha="center",
                        fontsize=8,
                    )
    if not plotted_any:
        _placeholder(axes, "no values", va="center")
    axes.set_title(title, fontsize=10)
    axes.set_ylabel(ylabel, fontsize=9)
    axes.set_ylim(bottom=0)
    if bands:
        # show the bands up to the first one above the highest value
        highest = max([v for line in series for v in line.values if v is not None] or [0.0])
        above = [b for b in bands if b > highest]
        axes.set_ylim(0, (above[0] if above else 100.0) * 1.08)
    axes.grid(alpha=0.3)
    axes.tick_params(labelsize=8)
    if len(when) == 1:
        axes.set_xlim(when[0] - dt.timedelta(days=30), when[0] + dt.timedelta(days=30))
    figure.autofmt_xdate()
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7, loc="best")
    return figure_png(figure, dpi)


# -------------------------------------------------------------------- cohort


def waterfall_png(
    subjects: Sequence[str],
    best_change_percent: Sequence[float],
    responses: Sequence[str | None],
    *,
    partial_response_percent: float,
    progression_percent: float,
    dpi: int,
) -> bytes:
    """Bars of each subject's best % change of the sum of diameters, coloured by best response."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(max(4.0, 0.35 * len(subjects) + 2.0), 3.6))
    if subjects:
        order = np.argsort(-np.asarray(best_change_percent, dtype=float), kind="stable")
        x = np.arange(len(order))
        heights = [best_change_percent[i] for i in order]
        colours = [RESPONSE_COLOURS.get(responses[i], RESPONSE_COLOURS[None]) for i in order]
        axes.bar(x, heights, color=colours, edgecolor="#404040", linewidth=0.5)
        axes.set_xticks(x, [subjects[i] for i in order], rotation=60, ha="right", fontsize=7)
        used = [r for r in dict.fromkeys(responses[i] for i in order)]
        handles = [
            plt.Rectangle((0, 0), 1, 1, color=RESPONSE_COLOURS.get(r, RESPONSE_COLOURS[None]))
            for r in used
        ]
        axes.legend(
            handles, [r or "n/a" for r in used], title="best response", fontsize=7, title_fontsize=7
        )
    else:
        _placeholder(axes, "no subject with a follow-up")
        axes.set_xticks([])
    axes.axhline(0, color="black", linewidth=0.8)
    axes.axhline(partial_response_percent, color="#1a9850", linestyle="--", linewidth=1)
    axes.axhline(progression_percent, color="#d73027", linestyle="--", linewidth=1)
    axes.set_ylabel("best change of sum of diameters (%)", fontsize=8)
    axes.set_title("Waterfall: best change from baseline (RECIST 1.1)", fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    return figure_png(figure, dpi)


def spider_png(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    responses: dict[str, str | None],
    *,
    partial_response_percent: float,
    progression_percent: float,
    dpi: int,
) -> bytes:
    """% change of the sum of diameters from baseline over days since baseline, per subject."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.6, 3.6))
    for subject, (days, change) in curves.items():
        colour = RESPONSE_COLOURS.get(responses.get(subject), RESPONSE_COLOURS[None])
        axes.plot(
            days, change, marker="o", markersize=3, linewidth=1.2, color=colour, label=subject
        )
        if len(days):
            axes.annotate(
                subject,
                (days[-1], change[-1]),
                fontsize=6,
                xytext=(3, 0),
                textcoords="offset points",
            )
    if not curves:
        _placeholder(axes, "no subject with a follow-up")
    axes.axhline(0, color="black", linewidth=0.8)
    axes.axhline(partial_response_percent, color="#1a9850", linestyle="--", linewidth=1)
    axes.axhline(progression_percent, color="#d73027", linestyle="--", linewidth=1)
    axes.set_xlabel("days since baseline", fontsize=8)
    axes.set_ylabel("change of sum of diameters (%)", fontsize=8)
    axes.set_title("Spider plot: change from baseline over time", fontsize=10)
    axes.grid(alpha=0.3)
    return figure_png(figure, dpi)


def involvement_png(
    baseline_percent: Sequence[float],
    last_percent: Sequence[float],
    *,
    bands: Sequence[float],
    dpi: int,
) -> bytes:
    """Distribution of hepatic involvement at baseline and at the last time point."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.6, 3.4))
    edges = np.arange(0.0, 105.0, 5.0)
    if len(baseline_percent):
        axes.hist(
            baseline_percent,
            bins=edges,
            color="#4c78a8",
            alpha=0.75,
            label="baseline",
            edgecolor="white",
        )
    if len(last_percent):
        axes.hist(
            last_percent,
            bins=edges,
            histtype="step",
            color="#e45756",
            linewidth=1.8,
            label="last time point",
        )
    for band in bands:
        axes.axvline(band, color="#808080", linestyle=":", linewidth=1)
        axes.text(
            band, axes.get_ylim()[1] * 0.95, f" {band:g} %", fontsize=7, color="#606060", va="top"
        )
    if not len(baseline_percent):
        axes.text(
            0.5, 0.5, "no measurements", transform=axes.transAxes, ha="center", color="#808080"
        )
    axes.set_xlim(0, 100)
    axes.set_xlabel("hepatic involvement (% of liver volume)", fontsize=8)
    axes.set_ylabel("subjects", fontsize=8)
    axes.set_title("Hepatic tumour involvement", fontsize=10)
    axes.yaxis.get_major_locator().set_params(integer=True)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=7)
    return figure_png(figure, dpi)
