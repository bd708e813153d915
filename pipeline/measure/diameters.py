"""Longest axial diameter and perpendicular short axis of a lesion (RECIST 1.1).

Definitions
-----------
*Axial plane.* The plane of the storage grid whose normal is the image axis
closest to the patient's head-foot axis (:func:`pipeline.io.axial_axis`). For
the usual axial CT this is the ``(x, y)`` plane; a volume stored sagittally or
coronally is measured in its own grid plane nearest to axial, so the result
does not depend on how the volume is stored. Distances in that plane are
physical (mm, anisotropic spacing), whatever the direction matrix: the direction
matrix is orthonormal, so it changes positions, never lengths.

*Voxel model.* A voxel is represented by its centre; a caliper line reaches half
a voxel beyond the centres of its two end voxels, measured along the line (the
chord, through its centre, of the ellipse inscribed in the in-plane voxel
rectangle; half the pixel spacing for square pixels). RECIST calipers sit on the
lesion's edge, which lies about half a voxel outside the outermost voxel
centres. On 300 random ellipses (semi-axes 4 to 30 mm, axis ratio 0.3 to 1, any
angle, pixels 0.6 to 1.3 mm) this rule measured the long axis with an error of
-0.64 to +0.95 voxel (mean +0.49), against -1.64 to -0.05 (mean -0.47) for
centre-to-centre and -0.47 to +1.31 (mean +0.77) for the hull of the voxel
corners, which overestimates diagonal lesions by up to sqrt(2) voxels
(``benchmarks/bench_measure.py`` prints this comparison).

*Longest axial diameter.* The largest distance, over every axial cross-section
of the lesion, between two of its voxels (plus the half-voxel allowance at each
end): the in-plane Feret diameter. Only the voxels that are first or last in
their row can be ends of the longest diameter (they contain the convex hull of
the cross-section), so pairs of those are searched exhaustively; slices whose
bounding box cannot beat the best diameter so far are skipped.

*Ties.* When several slices or pixel pairs reach the longest diameter (common
on a voxel grid: the slices of a cylinder-like lesion, symmetric pairs in one
slice), the one with the longest short axis is taken, so that neither number
depends on the order in which the volume's slices and pixels are stored.

*Short axis.* In the slice of the longest diameter, the longest line
perpendicular to the long axis across the lesion, as a radiologist measures
it: the lesion is cut by lines perpendicular to the long axis (spaced a quarter
voxel apart) and each line's extent is the spread of the voxels it crosses
(voxels whose centre lies within half a voxel of the line, measured along the
long axis) plus the half-voxel allowance at each end. For an ellipse it is the
minor axis; for a kidney-shaped lesion it is the widest perpendicular cut, not
the width of the bounding strip.

All functions take boolean masks indexed ``[z, y, x]`` (SimpleITK's array
order) and spacing ``(x, y, z)`` in mm, and return mm and continuous voxel
indices in ``(x, y, z)`` order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

#: Lines perpendicular to the long axis are this fraction of the smallest
#: in-plane spacing apart when searching for the short axis.
SHORT_AXIS_LINE_STEP_VOXELS = 0.25


@dataclasses.dataclass(frozen=True)
class AxialDiameters:
    """Longest axial diameter and short axis of one mask.

    Attributes
    ----------
    longest_mm
        Longest axial (in-plane) diameter in mm; 0 for an empty mask.
    short_axis_mm
        Longest diameter perpendicular to it in the same slice, in mm.
    slice_index
        Index, along the axial axis of the mask's grid, of the slice holding
        the longest diameter; ``None`` for an empty mask.
    longest_endpoints_index
        2 x 3 array: the two ends of the longest diameter as continuous voxel
        indices ``(x, y, z)`` of the mask (on the lesion's edge).
    short_axis_endpoints_index
        2 x 3 array: the two ends of the short axis, likewise.
    """

    longest_mm: float
    short_axis_mm: float
    slice_index: int | None
    longest_endpoints_index: np.ndarray | None
    short_axis_endpoints_index: np.ndarray | None

    @classmethod
    def empty(cls) -> AxialDiameters:
        return cls(0.0, 0.0, None, None, None)


def _in_plane_layout(axial_axis: int) -> tuple[int, int, int]:
    """Array axes (of a ``[z, y, x]`` array): axial, first and second in-plane."""
    if axial_axis not in (0, 1, 2):
        raise ValueError(f"axial_axis must be 0, 1 or 2 (x, y, z order), not {axial_axis!r}")
    axial = 2 - axial_axis
    first, second = (a for a in (0, 1, 2) if a != axial)
    return axial, first, second


def _chord_mm(direction: np.ndarray, spacing_p: float, spacing_q: float) -> np.ndarray:
    """Chord through the centre of the ellipse inscribed in a ``spacing_p x spacing_q``
    pixel along unit vectors ``direction[..., (p, q)]``, in mm."""
    up, uq = direction[..., 0], direction[..., 1]
    return 1.0 / np.sqrt((up / spacing_p) ** 2 + (uq / spacing_q) ** 2)


#: Relative tolerance within which two caliper lengths are equal (ties).
TIE_TOLERANCE = 1e-9


def _slice_longest(
    points: np.ndarray, spacing_p: float, spacing_q: float
) -> tuple[float, list[tuple[int, int]]]:
    """Longest caliper length between two of ``points`` (pixel indices, n x 2) and
    every pair ``(i, j)``, ``i < j``, that reaches it (ties)."""
    if len(points) == 1:
        return max(spacing_p, spacing_q), [(0, 0)]
    physical = points * np.array([spacing_p, spacing_q])
    difference = physical[:, None, :] - physical[None, :, :]
    length = np.sqrt(np.einsum("ijk,ijk->ij", difference, difference))
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = difference / length[..., None]
        total = length + _chord_mm(unit, spacing_p, spacing_q)
    total[length == 0] = max(spacing_p, spacing_q)
    best = float(total.max())
    tied = np.argwhere(np.triu(total >= best * (1.0 - TIE_TOLERANCE)))
    if len(tied) == 0:  # a single point repeated: the diagonal holds the maximum
        i, j = divmod(int(np.argmax(total)), len(points))
        return best, [(i, j)]
    return best, [(int(i), int(j)) for i, j in tied]


def axial_diameters(
    mask: np.ndarray, spacing_mm: Sequence[float], axial_axis: int = 2
) -> AxialDiameters:
    """Longest axial diameter and perpendicular short axis of ``mask`` (RECIST).

    Parameters
    ----------
    mask
        Boolean array indexed ``[z, y, x]`` (one lesion, or its viable part:
        several pieces are measured together).
    spacing_mm
        Voxel spacing ``(x, y, z)`` in mm.
    axial_axis
        Image axis (``0, 1, 2`` for ``x, y, z``) closest to the head-foot axis;
        see :func:`pipeline.io.axial_axis`.

    Returns
    -------
    AxialDiameters
        Lengths in mm, the slice index along ``axial_axis`` and the endpoints as
        continuous voxel indices ``(x, y, z)`` of ``mask``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be 3-D, not {mask.ndim}-D")
    spacing_xyz = [float(s) for s in spacing_mm]
    axial, first, second = _in_plane_layout(axial_axis)
    if not mask.any():
        return AxialDiameters.empty()
    # crop to the bounding box; work in (slice, p, q) order
    bounds = []
    for axis in range(3):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        bounds.append((int(present[0]), int(present[-1]) + 1))
    cropped = mask[tuple(slice(lo, hi) for lo, hi in bounds)]
    stack = np.transpose(cropped, (axial, first, second))
    spacing_p, spacing_q = spacing_xyz[2 - first], spacing_xyz[2 - second]
    largest_voxel = max(spacing_p, spacing_q)

    rows_present = stack.any(axis=2)  # (slice, p)
    size_q = stack.shape[2]
    row_first = np.argmax(stack, axis=2)
    row_last = size_q - 1 - np.argmax(stack[:, :, ::-1], axis=2)
    columns_present = stack.any(axis=1)  # (slice, q)
    slices = np.flatnonzero(rows_present.any(axis=1))

    def extent(present: np.ndarray) -> np.ndarray:
        first_index = np.argmax(present, axis=1)
        last_index = present.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
        return (last_index - first_index).astype(float)

    bound_p = extent(rows_present[slices]) * spacing_p
    bound_q = extent(columns_present[slices]) * spacing_q
    upper_bound = np.hypot(bound_p, bound_q) + largest_voxel
    order = np.lexsort((slices, -upper_bound))

    # every (slice, pair of pixels) reaching the longest length: ties are common on a
    # voxel grid (several slices of a cylinder-like lesion, symmetric pairs in a slice)
    best_length = -1.0
    candidates: list[tuple[int, np.ndarray, np.ndarray]] = []
    for position in order:
        if upper_bound[position] < best_length * (1.0 - TIE_TOLERANCE):
            break
        k = int(slices[position])
        rows = np.flatnonzero(rows_present[k])
        starts, ends = row_first[k, rows], row_last[k, rows]
        points = np.concatenate(
            [np.stack([rows, starts], axis=1), np.stack([rows, ends], axis=1)[starts != ends]]
        ).astype(float)
        length, pairs = _slice_longest(points, spacing_p, spacing_q)
        if length > best_length * (1.0 + TIE_TOLERANCE):
            best_length, candidates = length, []
        if length >= best_length * (1.0 - TIE_TOLERANCE):
            candidates += [(k, points[i], points[j]) for i, j in pairs]

    # of tied long axes, the one with the longest short axis (so that the result does
    # not depend on the order in which slices and pixels are stored)
    scale = np.array([spacing_p, spacing_q])
    best: tuple[float, int, np.ndarray, np.ndarray, np.ndarray] | None = None
    for k, first_point, second_point in candidates:
        # ends of the long axis on the lesion's edge (pixel coordinates p, q of the slice)
        a_mm, b_mm = first_point * scale, second_point * scale
        centre_gap = float(np.linalg.norm(b_mm - a_mm))
        if centre_gap > 0:
            unit = (b_mm - a_mm) / centre_gap
        else:  # a single pixel: along the longer pixel side
            unit = np.array([1.0, 0.0]) if spacing_p >= spacing_q else np.array([0.0, 1.0])
        half = 0.5 * (best_length - centre_gap)
        long_ends = np.stack([a_mm - half * unit, b_mm + half * unit])
        short, short_ends = _short_axis(stack[k], spacing_p, spacing_q, unit)
        if best is None or short > best[0] * (1.0 + TIE_TOLERANCE):
            best = (short, k, long_ends, short_ends, unit)
    assert best is not None
    short_mm, best_slice, long_ends_mm, short_ends_mm, _unit = best

    def to_index(ends_mm: np.ndarray) -> np.ndarray:
        ends = np.zeros((2, 3))
        offsets = [lo for lo, _ in bounds]  # array order z, y, x
        for row, point in enumerate(ends_mm):
            array_index = [0.0, 0.0, 0.0]
            array_index[axial] = best_slice + offsets[axial]
            array_index[first] = point[0] / spacing_p + offsets[first]
            array_index[second] = point[1] / spacing_q + offsets[second]
            ends[row] = array_index[::-1]  # (x, y, z)
        return ends

    return AxialDiameters(
        longest_mm=float(best_length),
        short_axis_mm=float(short_mm),
        slice_index=int(best_slice + bounds[axial][0]),
        longest_endpoints_index=to_index(long_ends_mm),
        short_axis_endpoints_index=to_index(short_ends_mm),
    )


def _short_axis(
    section: np.ndarray, spacing_p: float, spacing_q: float, long_unit: np.ndarray
) -> tuple[float, np.ndarray]:
    """Longest extent across ``section`` (2-D boolean ``[p, q]``) perpendicular to
    ``long_unit``; returns the length (mm) and its two ends (mm in the ``p, q``
    frame of ``section``)."""
    p, q = np.nonzero(section)
    points = np.stack([p * spacing_p, q * spacing_q], axis=1)
    normal = np.array([-long_unit[1], long_unit[0]])
    along = points @ long_unit
    across = points @ normal
    chord_across = float(_chord_mm(normal, spacing_p, spacing_q))
    # a voxel meets a perpendicular line when its centre lies within half its
    # width (measured along the long axis) of the line
    reach = 0.5 * float(np.hypot(spacing_p * long_unit[0], spacing_q * long_unit[1]))
    step = SHORT_AXIS_LINE_STEP_VOXELS * min(spacing_p, spacing_q)
    middle = 0.5 * (float(along.min()) + float(along.max()))
    half_count = int(np.ceil((0.5 * (float(along.max()) - float(along.min())) + reach) / step))
    count = 2 * half_count + 1
    origin = middle - half_count * step
    low = np.ceil((along - reach - origin) / step - 1e-9).astype(np.int64)
    high = np.floor((along + reach - origin) / step + 1e-9).astype(np.int64)
    low, high = np.clip(low, 0, count - 1), np.clip(high, 0, count - 1)
    lowest = np.full(count, np.inf)
    highest = np.full(count, -np.inf)
    for offset in range(int((high - low).max()) + 1):
        line = low + offset
        valid = line <= high
        np.minimum.at(lowest, line[valid], across[valid])
        np.maximum.at(highest, line[valid], across[valid])
    spread = np.where(np.isfinite(lowest), highest - lowest, -np.inf)
    best = int(np.argmax(spread))
    length = float(spread[best]) + chord_across
    position = origin + best * step
    ends = np.stack(
        [
            position * long_unit + (lowest[best] - 0.5 * chord_across) * normal,
            position * long_unit + (highest[best] + 0.5 * chord_across) * normal,
        ]
    )
    return length, ends
