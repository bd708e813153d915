"""Lesion identity across time points from lesion instance maps and liver masks.

Every follow-up is aligned to the baseline (its liver mask registered to the
baseline liver mask: signed distance maps, mean squares, rigid then affine,
started from the liver centroids), its lesion map is brought into the baseline
frame, and its lesions are assigned to every lesion known so far (baseline
lesions and the new lesions of earlier follow-ups, each at the place where it
was last seen) by an optimal assignment on overlap and centroid distance.
Lesions left over become fragments of a split (lying mostly inside a matched
lesion's footprint, or, for a lesion that found no match, two or more lesions
around the place where it was), parts of a merge, new lesions or disappeared
lesions.

Physical space is SimpleITK's (LPS, mm); arrays are ``[z, y, x]``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy.optimize import linear_sum_assignment

from pipeline.response.model import (
    BASELINE,
    DISAPPEARED,
    MATCHED,
    MERGED,
    NEW,
    SPLIT,
    LesionKey,
    LesionRecord,
    Observation,
    ScanRecord,
    TrackedTimePoint,
    Tracking,
)
from pipeline.response.settings import ResponseSettings

log = logging.getLogger(__name__)

#: Margin around the liver of the grids used for registration and overlap, in mm.
GRID_MARGIN_MM = 30.0
#: Spacing of the grid on which the alignment quality is measured, in mm.
QUALITY_SPACING_MM = 2.0
#: Fraction of the registration grid's voxels sampled by the metric (fixed seed: repeatable).
METRIC_SAMPLING_FRACTION = 0.2
SAMPLING_SEED = 20240101
#: Cost of a forbidden pair in the assignment (larger than any allowed total).
FORBIDDEN_COST = 1.0e6


@dataclasses.dataclass
class ScanMasks:
    """The images of one time point that matching needs.

    Attributes
    ----------
    lesion_map
        Lesion instance map (0 background, lesion ids as in the measurements).
    liver_mask
        Liver including tumour (any value > 0), on any grid.
    """

    lesion_map: sitk.Image
    liver_mask: sitk.Image


@dataclasses.dataclass
class Alignment:
    """How a follow-up is brought onto the baseline.

    ``transform`` maps baseline physical points to follow-up physical points
    (the direction SimpleITK resampling needs), ``inverse`` the other way.
    """

    transform: sitk.Transform
    inverse: sitk.Transform
    method: str
    liver_dice: float | None
    mean_surface_distance_mm: float | None
    reliable: bool
    reasons: list[str]

    def as_dict(self) -> dict[str, Any]:
        params = _transform_summary(self.transform)
        return {
            "method": self.method,
            "liver_dice": None if self.liver_dice is None else round(self.liver_dice, 4),
            "mean_surface_distance_mm": None
            if self.mean_surface_distance_mm is None
            else round(self.mean_surface_distance_mm, 2),
            "reliable": self.reliable,
            "reasons": list(self.reasons),
            **params,
        }


# ------------------------------------------------------------------ registration


def _binary(mask: sitk.Image) -> sitk.Image:
    """UInt8 0/1 image of the voxels > 0.5 of ``mask``."""
    return sitk.Cast(mask > 0.5, sitk.sitkUInt8)


@dataclasses.dataclass
class PreparedMask:
    """A binary liver mask with its centroid and bounding box (LPS, mm), computed once.

    ``quality_grid`` caches the baseline's resampled mask, distance map and
    contour for :func:`alignment_quality` (filled on first use).
    """

    binary: sitk.Image
    centroid_mm: np.ndarray | None
    low_mm: np.ndarray | None
    high_mm: np.ndarray | None
    quality_grid: tuple[sitk.Image, np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def of(cls, mask: sitk.Image | PreparedMask) -> PreparedMask:
        """The prepared form of a mask (a mask already prepared is returned as it is)."""
        if isinstance(mask, PreparedMask):
            return mask
        binary = _binary(mask)
        stats = sitk.LabelShapeStatisticsImageFilter()
        stats.Execute(binary)
        if not stats.HasLabel(1):
            return cls(binary, None, None, None)
        x, y, z, size_x, size_y, size_z = stats.GetBoundingBox(1)
        corners = np.asarray(
            [
                binary.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k)))
                for i in (x - 0.5, x + size_x - 0.5)
                for j in (y - 0.5, y + size_y - 0.5)
                for k in (z - 0.5, z + size_z - 0.5)
            ]
        )
        centroid = np.asarray(stats.GetCentroid(1), dtype=float)
        return cls(binary, centroid, corners.min(axis=0), corners.max(axis=0))

    @property
    def empty(self) -> bool:
        return self.centroid_mm is None

    def grid(self, spacing_mm: float, margin_mm: float) -> sitk.Image:
        assert self.low_mm is not None and self.high_mm is not None
        return _axis_aligned_grid(self.low_mm, self.high_mm, spacing_mm, margin_mm)


def _axis_aligned_grid(
    low: np.ndarray, high: np.ndarray, spacing_mm: float, margin_mm: float
) -> sitk.Image:
    """An empty image with identity direction covering ``[low, high]`` plus a margin."""
    origin = low - margin_mm
    size = np.ceil((high - low + 2 * margin_mm) / spacing_mm).astype(int) + 1
    grid = sitk.Image([int(s) for s in size], sitk.sitkUInt8)
    grid.SetSpacing((spacing_mm,) * 3)
    grid.SetOrigin(tuple(float(o) for o in origin))
    return grid


def _mask_on(
    binary: sitk.Image, grid: sitk.Image, transform: sitk.Transform | None = None
) -> sitk.Image:
    """A 0/1 mask resampled onto ``grid`` by linear interpolation, then > 0.5."""
    resampled = sitk.Resample(
        binary,
        grid,
        transform if transform is not None else sitk.Transform(),
        sitk.sitkLinear,
        0.0,
        sitk.sitkFloat32,
    )
    return sitk.Cast(resampled > 0.5, sitk.sitkUInt8)


def _signed_distance(mask: sitk.Image) -> sitk.Image:
    """Signed distance to the mask surface in mm (negative inside)."""
    return sitk.Cast(
        sitk.SignedMaurerDistanceMap(
            mask, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        ),
        sitk.sitkFloat32,
    )


def _contour(mask: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.BinaryContour(mask, fullyConnected=False)).astype(bool)


def _transform_summary(transform: sitk.Transform) -> dict[str, Any]:
    """Translation (mm), rotation angle (degrees) and scale of a linear transform."""
    try:
        matrix = np.asarray(transform.GetMatrix(), dtype=float).reshape(3, 3)  # type: ignore[attr-defined]
        translation = np.asarray(transform.GetTranslation(), dtype=float)  # type: ignore[attr-defined]
    except AttributeError:
        return {}
    u, singular, vt = np.linalg.svd(matrix)
    rotation = u @ vt
    cosine = float(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))
    return {
        "translation_mm": [round(float(t), 2) for t in translation],
        "rotation_degrees": round(math.degrees(math.acos(cosine)), 2),
        "scale_factors": [round(float(s), 4) for s in singular],
    }


def _register(
    fixed: sitk.Image, moving: sitk.Image, initial: sitk.Transform, iterations: int = 150
) -> sitk.Transform:
    """Optimise ``initial`` (in place) so that ``moving`` sampled through it matches ``fixed``."""
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(METRIC_SAMPLING_FRACTION, seed=SAMPLING_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0,
        minStep=1e-2,
        numberOfIterations=iterations,
        relaxationFactor=0.5,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([1.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(initial, inPlace=True)
    method.Execute(fixed, moving)
    return initial


def alignment_quality(
    baseline_liver: sitk.Image | PreparedMask,
    follow_up_liver: sitk.Image | PreparedMask,
    transform: sitk.Transform,
) -> tuple[float, float]:
    """Dice and symmetric mean surface distance (mm) of the aligned liver masks.

    Both are measured on an axis-aligned grid around the baseline liver with
    :data:`QUALITY_SPACING_MM` spacing (or the mask's, when coarser).
    """
    fixed = PreparedMask.of(baseline_liver)
    moving = PreparedMask.of(follow_up_liver)
    if fixed.empty:
        return 0.0, float("inf")
    if fixed.quality_grid is None:
        spacing = max(QUALITY_SPACING_MM, min(fixed.binary.GetSpacing()))
        grid_mask = _mask_on(fixed.binary, fixed.grid(spacing, GRID_MARGIN_MM / 2))
        fixed.quality_grid = (
            grid_mask,
            sitk.GetArrayFromImage(grid_mask).astype(bool),
            np.abs(sitk.GetArrayFromImage(_signed_distance(grid_mask))),
            _contour(grid_mask),
        )
    grid_mask, a, distance_fixed, contour_fixed = fixed.quality_grid
    moved = _mask_on(moving.binary, grid_mask, transform)
    b = sitk.GetArrayFromImage(moved).astype(bool)
    total = int(a.sum() + b.sum())
    dice = 2.0 * float(np.logical_and(a, b).sum()) / total if total else 0.0
    if not b.any():
        return dice, float("inf")
    distance_moved = np.abs(sitk.GetArrayFromImage(_signed_distance(moved)))
    distances = np.concatenate([distance_moved[contour_fixed], distance_fixed[_contour(moved)]])
    return dice, float(distances.mean()) if distances.size else float("inf")


def align_livers(
    baseline_liver: sitk.Image | PreparedMask,
    follow_up_liver: sitk.Image | PreparedMask,
    settings: ResponseSettings,
) -> Alignment:
    """Register the follow-up liver mask onto the baseline liver mask.

    Starts from the translation between the liver centroids; with
    ``matching_registration`` ``rigid`` or ``affine`` it then optimises a
    rigid (and an affine) transform of signed distance maps on an isotropic
    ``matching_registration_spacing_mm`` grid, and keeps whichever stage
    aligns the livers best (Dice). Flags the result unreliable below
    ``matching_minimum_liver_dice`` or above
    ``matching_maximum_mean_surface_distance_mm``.
    """
    fixed = PreparedMask.of(baseline_liver)
    moving = PreparedMask.of(follow_up_liver)
    reasons: list[str] = []
    fixed_centroid, moving_centroid = fixed.centroid_mm, moving.centroid_mm
    if fixed_centroid is None or moving_centroid is None:
        identity = sitk.AffineTransform(3)
        return Alignment(
            identity,
            identity.GetInverse(),
            "none",
            None,
            None,
            False,
            ["a liver mask is empty: lesions matched without alignment"],
        )
    start = sitk.Euler3DTransform()
    start.SetCenter(tuple(float(c) for c in fixed_centroid))
    start.SetTranslation(tuple(float(t) for t in moving_centroid - fixed_centroid))
    candidates: list[tuple[str, sitk.Transform]] = [("centroid", sitk.Euler3DTransform(start))]
    if settings.matching_registration in ("rigid", "affine"):
        spacing = settings.matching_registration_spacing_mm
        fixed_sdm = _signed_distance(_mask_on(fixed.binary, fixed.grid(spacing, GRID_MARGIN_MM)))
        moving_sdm = _signed_distance(_mask_on(moving.binary, moving.grid(spacing, GRID_MARGIN_MM)))
        try:
            rigid = _register(fixed_sdm, moving_sdm, sitk.Euler3DTransform(start))
            candidates.append(("rigid", rigid))
            if settings.matching_registration == "affine":
                affine = sitk.AffineTransform(3)
                affine.SetCenter(rigid.GetCenter())
                affine.SetMatrix(rigid.GetMatrix())
                affine.SetTranslation(rigid.GetTranslation())
                candidates.append(("affine", _register(fixed_sdm, moving_sdm, affine)))
        except RuntimeError as error:  # optimiser failure: keep the centroid alignment
            reasons.append(
                f"registration failed ({' '.join(str(error).split())[:120]}); centroid "
                "alignment used"
            )
    if len(candidates) > 1:
        candidates = candidates[1:]  # the optimised stages start from the centroid alignment
    best: tuple[float, float, str, sitk.Transform] | None = None
    for name, transform in candidates:
        dice, surface = alignment_quality(fixed, moving, transform)
        log.debug(
            "alignment %s: liver Dice %.3f, mean surface distance %.2f mm", name, dice, surface
        )
        if best is None or dice > best[0] + 1e-3:
            best = (dice, surface, name, transform)
    assert best is not None
    dice, surface, name, transform = best
    reliable = True
    if dice < settings.matching_minimum_liver_dice:
        reliable = False
        reasons.append(f"aligned liver Dice {dice:.3f} < {settings.matching_minimum_liver_dice}")
    if not surface <= settings.matching_maximum_mean_surface_distance_mm:
        reliable = False
        reasons.append(
            f"aligned liver mean surface distance {surface:.1f} mm > "
            f"{settings.matching_maximum_mean_surface_distance_mm} mm"
        )
    return Alignment(
        transform,
        transform.GetInverse(),
        name,
        dice,
        None if math.isinf(surface) else surface,
        reliable,
        reasons,
    )


# -------------------------------------------------------------------- assignment


@dataclasses.dataclass
class _KnownLesion:
    """A lesion key where it was last seen, in the baseline frame."""

    key: str
    voxels: np.ndarray  # flat indices into the reference grid array
    centroid_mm: np.ndarray | None
    last_status: str
    volume_ml: float = 0.0


def _voxels_by_label(array: np.ndarray) -> dict[int, np.ndarray]:
    """Flat indices of the voxels of each non-zero label of ``array``."""
    flat = array.ravel()
    indices = np.flatnonzero(flat)
    if indices.size == 0:
        return {}
    labels = flat[indices]
    order = np.argsort(labels, kind="stable")
    labels, indices = labels[order], indices[order]
    values, starts = np.unique(labels, return_index=True)
    groups = np.split(indices, starts[1:])
    return {int(v): g for v, g in zip(values, groups, strict=True)}


def _reference_grid(baseline: ScanMasks) -> sitk.Image:
    """The baseline lesion map's grid, cropped to liver and lesions plus a margin."""
    lesion_map = baseline.lesion_map
    liver = sitk.Resample(
        _binary(baseline.liver_mask), lesion_map, sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    union = sitk.Or(liver, _binary(lesion_map))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(union)
    if not stats.HasLabel(1):
        return lesion_map
    box = stats.GetBoundingBox(1)  # (x, y, z) start, then (x, y, z) size
    size = lesion_map.GetSize()
    spacing = lesion_map.GetSpacing()
    low, high = [], []
    for axis in range(3):
        margin = math.ceil(GRID_MARGIN_MM / spacing[axis])
        low.append(max(box[axis] - margin, 0))
        high.append(min(box[axis] + box[axis + 3] + margin, size[axis]))
    return lesion_map[low[0] : high[0], low[1] : high[1], low[2] : high[2]]


def _lesion_centroid(
    record: LesionRecord, lesion_map: sitk.Image, voxels: dict[int, np.ndarray]
) -> np.ndarray | None:
    if record.centroid_mm is not None:
        return np.asarray(record.centroid_mm, dtype=float)
    indices = voxels.get(int(record.id))
    if indices is None or indices.size == 0:
        return None
    zyx = np.column_stack(
        np.unravel_index(indices, sitk.GetArrayViewFromImage(lesion_map).shape)
    ).mean(axis=0)
    return np.asarray(
        lesion_map.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in zyx[::-1]))
    )


def _weighted_centroid(
    points: Sequence[np.ndarray | None], weights: Sequence[float]
) -> np.ndarray | None:
    pairs = [(p, max(w, 1e-9)) for p, w in zip(points, weights, strict=True) if p is not None]
    if not pairs:
        return None
    total = sum(w for _, w in pairs)
    return sum(p * w for p, w in pairs) / total  # type: ignore[return-value]


def _match_info(dice: float, distance: float | None) -> dict[str, Any]:
    return {
        "overlap_dice": round(float(dice), 4),
        "centroid_distance_mm": None
        if distance is None or not math.isfinite(distance)
        else round(float(distance), 2),
    }


def track_lesions(
    scans: Sequence[ScanRecord],
    masks: Sequence[ScanMasks] | Callable[[int], ScanMasks],
    settings: ResponseSettings,
    *,
    subject: str,
    excluded_baseline_ids: dict[int, str] | None = None,
) -> Tracking:
    """Follow every lesion through time points ``scans`` (baseline first).

    Parameters
    ----------
    scans, masks
        Measurements and images of each time point in date order; lesion ids
        of ``scans[i].lesions`` are the labels of ``masks[i].lesion_map``.
        ``masks`` may be a function of the index that loads them when needed
        (only the baseline's stay in memory).
    excluded_baseline_ids
        Baseline lesion ids the reader excluded (id -> reason): they are still
        matched (so what they become is not a new lesion) but marked excluded.

    Returns
    -------
    Tracking
        Keys ``L<id>`` for baseline lesions and ``N1``, ``N2`` ... for new
        lesions in order of appearance; per time point the status of every key
        known by then.
    """
    if not scans:
        raise ValueError("at least one time point")
    load: Callable[[int], ScanMasks] = masks if callable(masks) else masks.__getitem__
    excluded_baseline_ids = dict(excluded_baseline_ids or {})
    baseline_scan, baseline_masks = scans[0], load(0)
    baseline_liver = PreparedMask.of(baseline_masks.liver_mask)
    reference = _reference_grid(baseline_masks)
    reference_array = sitk.GetArrayFromImage(reference).astype(np.int64)
    baseline_voxels = _voxels_by_label(reference_array)

    keys: dict[str, LesionKey] = {}
    known: dict[str, _KnownLesion] = {}
    baseline_observations: dict[str, Observation] = {}
    for lesion_id, record in baseline_scan.lesions.items():
        key = f"L{lesion_id}"
        reason = excluded_baseline_ids.get(int(lesion_id))
        keys[key] = LesionKey(
            key, lesion_id, 0, excluded=reason is not None, exclusion_reason=reason
        )
        known[key] = _KnownLesion(
            key,
            baseline_voxels.get(int(lesion_id), np.empty(0, dtype=np.int64)),
            _lesion_centroid(record, reference, baseline_voxels),
            BASELINE,
            record.volume_ml or 0.0,
        )
        baseline_observations[key] = Observation(key, BASELINE, (record,))
    timepoints = [TrackedTimePoint(baseline_scan, baseline_observations)]
    new_count = 0

    for index in range(1, len(scans)):
        scan, scan_masks = scans[index], load(index)
        alignment = align_livers(baseline_liver, scan_masks.liver_mask, settings)
        moved = sitk.Resample(
            scan_masks.lesion_map,
            reference,
            alignment.transform,
            sitk.sitkNearestNeighbor,
            0,
            sitk.sitkUInt32,
        )
        moved_array = sitk.GetArrayFromImage(moved).astype(np.int64)
        present_ids = [int(i) for i in scan.lesions]
        keep = np.isin(moved_array, present_ids)
        moved_array[~keep] = 0  # ids removed from the measurements (excluded by the reader)
        follow_voxels = _voxels_by_label(moved_array)
        native_voxels = _voxels_by_label(sitk.GetArrayViewFromImage(scan_masks.lesion_map))

        ids = present_ids
        records = [scan.lesions[i] for i in scan.lesions]
        centroids: list[np.ndarray | None] = []
        for record in records:
            native = _lesion_centroid(record, scan_masks.lesion_map, native_voxels)
            centroids.append(
                None
                if native is None
                else np.asarray(alignment.inverse.TransformPoint(tuple(float(c) for c in native)))
            )
        sizes = np.array([follow_voxels.get(i, np.empty(0)).size for i in ids], dtype=float)
        known_keys = list(known)
        known_sizes = np.array([known[k].voxels.size for k in known_keys], dtype=float)
        overlap = np.zeros((len(ids), len(known_keys)))
        if ids and known_keys:
            lookup = np.zeros(int(moved_array.max()) + 1 if moved_array.size else 1, dtype=np.int64)
            lookup[:] = -1
            for row, lesion_id in enumerate(ids):
                if lesion_id < lookup.size:
                    lookup[lesion_id] = row
            flat = moved_array.ravel()
            for column, key in enumerate(known_keys):
                labels = flat[known[key].voxels]
                labels = labels[labels > 0]
                if labels.size:
                    rows = lookup[labels]
                    rows = rows[rows >= 0]
                    overlap[:, column] = np.bincount(rows, minlength=len(ids))[: len(ids)]
        distance = np.full((len(ids), len(known_keys)), np.inf)
        for row, centroid in enumerate(centroids):
            for column, key in enumerate(known_keys):
                other = known[key].centroid_mm
                if centroid is not None and other is not None:
                    distance[row, column] = float(np.linalg.norm(centroid - other))
        denominator = sizes[:, None] + known_sizes[None, :]
        dice = np.divide(
            2 * overlap, denominator, out=np.zeros_like(overlap), where=denominator > 0
        )
        allowed = (overlap > 0) | (distance <= settings.matching_maximum_distance_mm)
        scale = max(settings.matching_maximum_distance_mm, 1e-6)
        cost = np.where(
            allowed,
            (1.0 - dice) + np.minimum(np.nan_to_num(distance, posinf=1e3) / scale, 1e3),
            FORBIDDEN_COST,
        )

        assigned_key: dict[int, str] = {}  # row -> key
        assigned_rows: dict[str, list[int]] = {}  # key -> rows
        if ids and known_keys:
            rows, columns = linear_sum_assignment(cost)
            for row, column in zip(rows, columns, strict=True):
                if cost[row, column] < FORBIDDEN_COST:
                    assigned_key[int(row)] = known_keys[column]
                    assigned_rows[known_keys[column]] = [int(row)]
        minimum = settings.matching_split_merge_minimum_overlap
        # split: a left-over lesion lying mostly inside a known lesion that is already matched
        for row in range(len(ids)):
            if row in assigned_key or sizes[row] == 0:
                continue
            fractions = overlap[row] / sizes[row]
            for column in np.argsort(-fractions):
                key = known_keys[column]
                if fractions[column] < minimum:
                    break
                if key in assigned_rows:
                    assigned_rows[key].append(row)
                    assigned_key[row] = key
                    break
        # merge: a left-over known lesion covered mostly by a lesion that is already matched
        merged_into: dict[str, int] = {}
        for column, key in enumerate(known_keys):
            if key in assigned_rows or known_sizes[column] == 0:
                continue
            fractions = overlap[:, column] / known_sizes[column]
            for row in np.argsort(-fractions):
                if fractions[row] < minimum:
                    break
                if int(row) in assigned_key and len(assigned_rows[assigned_key[int(row)]]) == 1:
                    merged_into[key] = int(row)
                    break
        # split apart: a known lesion that found no match, with two or more left-over lesions
        # around it whose common centre is where it was (fragments that drifted apart)
        for column in np.argsort(np.min(distance, axis=0) if ids else np.zeros(len(known_keys))):
            key = known_keys[int(column)]
            if key in assigned_rows or key in merged_into:
                continue
            own = known[key]
            radius = (3.0 * own.volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
            reach = settings.matching_maximum_distance_mm + radius
            rows = [
                r
                for r in range(len(ids))
                if r not in assigned_key
                and distance[r, column] <= reach
                and centroids[r] is not None
            ]
            if len(rows) < 2:
                continue
            weights = [max(records[r].volume_ml or 0.0, 1e-6) for r in rows]
            centre = _weighted_centroid([centroids[r] for r in rows], weights)
            if (
                own.centroid_mm is None
                or centre is None
                or np.linalg.norm(centre - own.centroid_mm) > settings.matching_maximum_distance_mm
            ):
                continue
            assigned_rows[key] = rows
            for r in rows:
                assigned_key[r] = key
        row_keys: dict[int, list[str]] = {}
        for key, rows_of_key in assigned_rows.items():
            if len(rows_of_key) == 1:
                row_keys.setdefault(rows_of_key[0], []).append(key)
        for key, row in merged_into.items():
            row_keys.setdefault(row, []).append(key)

        observations: dict[str, Observation] = {}
        previous = timepoints[-1].observations
        for column, key in enumerate(known_keys):
            was_gone = key in previous and not previous[key].present
            if key in assigned_rows:
                rows_of_key = assigned_rows[key]
                lesions = tuple(records[r] for r in rows_of_key)
                if len(rows_of_key) > 1:
                    status = SPLIT
                elif len(row_keys.get(rows_of_key[0], [])) > 1:
                    status = MERGED
                else:
                    status = MATCHED
                best = max(rows_of_key, key=lambda r: dice[r, column])
                match = _match_info(dice[best, column], distance[best, column])
                if status == SPLIT:
                    match["fragments"] = [
                        {"id": ids[r], **_match_info(dice[r, column], distance[r, column])}
                        for r in rows_of_key
                    ]
                others = (
                    tuple(k for k in row_keys.get(rows_of_key[0], []) if k != key)
                    if status == MERGED
                    else ()
                )
                observations[key] = Observation(
                    key, status, lesions, others, reappeared=was_gone, match=match
                )
            elif key in merged_into:
                row = merged_into[key]
                others = tuple(k for k in row_keys[row] if k != key)
                observations[key] = Observation(
                    key,
                    MERGED,
                    (records[row],),
                    others,
                    reappeared=was_gone,
                    match=_match_info(dice[row, column], distance[row, column]),
                )
            else:
                observations[key] = Observation(key, DISAPPEARED)
        for row in range(len(ids)):
            if row in assigned_key or row in merged_into.values():
                continue
            new_count += 1
            key = f"N{new_count}"
            keys[key] = LesionKey(key, None, index)
            observations[key] = Observation(key, NEW, (records[row],))
            assigned_rows[key] = [row]
            known[key] = _KnownLesion(key, np.empty(0, dtype=np.int64), None, NEW)

        # where each key was seen now becomes where it is looked for next time
        for key, observation in observations.items():
            if not observation.present:
                continue
            rows_of_key = [ids.index(int(lesion.id)) for lesion in observation.lesions]
            voxel_sets = [
                follow_voxels.get(ids[r], np.empty(0, dtype=np.int64)) for r in rows_of_key
            ]
            voxels = np.concatenate(voxel_sets) if voxel_sets else np.empty(0, dtype=np.int64)
            centroid = _weighted_centroid(
                [centroids[r] for r in rows_of_key], [max(sizes[r], 1.0) for r in rows_of_key]
            )
            if voxels.size:
                known[key].voxels = voxels
            if centroid is not None:
                known[key].centroid_mm = centroid
            known[key].last_status = observation.status
            known[key].volume_ml = float(
                sum(lesion.volume_ml or 0.0 for lesion in observation.lesions)
            )
        timepoint = TrackedTimePoint(scan, observations, alignment.as_dict(), alignment.reliable)
        timepoints.append(timepoint)
        log.info(
            "%s: aligned to baseline (%s, liver Dice %s), %d lesion(s): %s",
            scan.label,
            alignment.method,
            "n/a" if alignment.liver_dice is None else f"{alignment.liver_dice:.3f}",
            len(ids),
            ", ".join(f"{k} {o.status}" for k, o in observations.items()) or "none",
        )
    return Tracking(subject, timepoints, keys, mode="masks")
