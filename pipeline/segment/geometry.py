"""Bridges between SimpleITK images (LPS, arrays ``[z, y, x]``) and MONAI
MetaTensors (RAS affine, channel-first arrays ``[c, x, y, z]``), and the boxes
that carry a cascade stage's result onto the input grid.

MONAI's affine maps voxel indices ``(i, j, k)`` of an array ``[c, i, j, k]`` to
RAS millimetres; SimpleITK's geometry maps ``(x, y, z)`` indices to LPS
millimetres. The two differ by the sign of the first two world axes and by the
order of the array axes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

#: Changes the sign of the first two world axes (LPS <-> RAS); its own inverse.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def index_to_lps_matrix(image: sitk.Image) -> np.ndarray:
    """4 x 4 matrix mapping ``(x, y, z, 1)`` voxel indices of ``image`` to LPS mm."""
    matrix = np.eye(4)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    matrix[:3, :3] = direction @ np.diag(np.asarray(image.GetSpacing(), dtype=float))
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def ras_affine(image: sitk.Image) -> np.ndarray:
    """MONAI-style affine (voxel index ``(x, y, z)`` to RAS mm) of a SimpleITK image."""
    return LPS_TO_RAS @ index_to_lps_matrix(image)


#: Maps an index ``(z, y, x)`` of SimpleITK's array order to ``(x, y, z)``.
ZYX_TO_XYZ = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def image_to_metatensor(image: sitk.Image, *, copy: bool = True, dtype: Any = np.float32) -> Any:
    """A MetaTensor ``[1, z, y, x]`` of an image, in SimpleITK's memory order, with
    the matching RAS affine (index ``(z, y, x)`` to RAS mm).

    The array is not transposed: ``Orientationd`` puts its axes in RAS order,
    and every later transform works on a much smaller grid. With ``copy=False``
    the tensor shares the image's buffer (read-only: only for transforms that
    make new arrays, and the image must outlive the tensor).
    """
    import warnings

    import torch
    from monai.data import MetaTensor

    if copy:
        array = sitk.GetArrayFromImage(image).astype(dtype, copy=False)
    else:
        array = sitk.GetArrayViewFromImage(image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a read-only view; never written to
        tensor = torch.from_numpy(array)[None]
    affine = torch.as_tensor(ras_affine(image) @ ZYX_TO_XYZ, dtype=torch.float64)
    return MetaTensor(tensor, affine=affine)


def geometry_from_ras_affine(
    affine: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(origin, spacing, direction)`` in SimpleITK's LPS terms of a RAS affine."""
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
    columns = lps[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    direction = columns / spacing
    return tuple(lps[:3, 3].tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


def channels_to_image(channels: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A SimpleITK (vector) image from channel-first ``[c, x, y, z]`` float data on a RAS affine."""
    array = np.ascontiguousarray(
        np.transpose(channels, (3, 2, 1, 0)), dtype=np.float32
    )  # [z, y, x, c]
    image = sitk.GetImageFromArray(array, isVector=True)
    origin, spacing, direction = geometry_from_ras_affine(affine)
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)
    return image


def _axis_mapping(
    affine: np.ndarray, reference: sitk.Image, tolerance: float = 1e-4
) -> list[tuple[int, float, float]] | None:
    """For each ``(x, y, z)`` axis of ``reference``: the axis of the grid on ``affine``
    it runs along, and the scale and offset from its index to that grid's index.

    ``None`` when the two grids are not axis-parallel (no such separable mapping).
    """
    mapping = np.linalg.inv(np.asarray(affine, dtype=float)) @ ras_affine(reference)
    linear = mapping[:3, :3]
    result = []
    for axis in range(3):
        column = linear[:, axis]
        target = int(np.argmax(np.abs(column)))
        others = np.delete(column, target)
        if np.any(np.abs(others) > tolerance * max(abs(column[target]), 1.0)):
            return None
        result.append((target, float(column[target]), float(mapping[target, 3])))
    if sorted(t for t, _, _ in result) != [0, 1, 2]:
        return None
    return result


def _interpolate_axis(array: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``array`` along ``axis`` at fractional ``positions``
    (clamped to the array: values beyond its edge repeat the edge voxel)."""
    count = array.shape[axis]
    positions = np.clip(positions, 0.0, count - 1.0)
    low = np.floor(positions).astype(np.intp)
    high = np.minimum(low + 1, count - 1)
    weight_shape = [1] * array.ndim
    weight_shape[axis] = len(positions)
    weight = (positions - low).astype(np.float32).reshape(weight_shape)
    lower = np.take(array, low, axis=axis)
    upper = np.take(array, high, axis=axis)
    upper -= lower
    upper *= weight
    lower += upper
    return lower


def resample_channels_onto(
    channels: np.ndarray, affine: np.ndarray, reference: sitk.Image
) -> np.ndarray:
    """Trilinear resampling of ``[c, x, y, z]`` maps on ``affine`` onto ``reference``'s grid.

    Physical positions are kept exactly. When the two grids are axis-parallel
    (always the case after ``Orientationd`` and ``Spacingd``, which permute,
    flip and rescale axes but never rotate them) the interpolation runs as three
    separable 1-D passes (fast); otherwise SimpleITK resamples the maps, giving 0
    outside the source grid. Returns ``[c, z, y, x]`` float32 on ``reference``'s grid.
    """
    channels = np.asarray(channels, dtype=np.float32)
    mapping = _axis_mapping(affine, reference)
    if mapping is None:
        source = channels_to_image(channels, affine)
        resampled = sitk.Resample(
            source, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat32
        )
        array = sitk.GetArrayFromImage(resampled)  # [z, y, x, c]
        return np.ascontiguousarray(np.moveaxis(array, -1, 0))
    size = reference.GetSize()
    steps = []
    for axis, (target, scale, offset) in enumerate(mapping):
        positions = scale * np.arange(size[axis], dtype=float) + offset
        steps.append((size[axis] / channels.shape[target + 1], target, positions))
    array = channels
    for _ratio, target, positions in sorted(
        steps, key=lambda item: item[0]
    ):  # shrinking axes first
        array = _interpolate_axis(array, target + 1, positions)
    order = (0, mapping[2][0] + 1, mapping[1][0] + 1, mapping[0][0] + 1)
    return np.ascontiguousarray(np.transpose(array, order))


def box_of_mask(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Lowest and highest index (inclusive) of each axis holding ``mask``, or ``None``."""
    if not mask.any():
        return None
    low, high = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        low.append(int(hits[0]))
        high.append(int(hits[-1]))
    return np.asarray(low), np.asarray(high)


def physical_box_corners(mask_xyz: np.ndarray, affine: np.ndarray) -> np.ndarray | None:
    """LPS mm of the 8 corners of the voxel-edge box of ``mask`` ``[x, y, z]`` on a RAS affine."""
    box = box_of_mask(mask_xyz)
    if box is None:
        return None
    low, high = box[0] - 0.5, box[1] + 0.5
    corners = np.array(
        [[(low, high)[(c >> a) & 1][a] for a in range(3)] for c in range(8)], dtype=float
    )
    homogeneous = np.c_[corners, np.ones(8)]
    lps = (LPS_TO_RAS @ np.asarray(affine, dtype=float) @ homogeneous.T).T
    return lps[:, :3]


def index_region_of_corners(
    corners_lps: np.ndarray, reference: sitk.Image, margin_mm: float
) -> tuple[tuple[int, int, int], tuple[int, int, int]] | None:
    """The voxel region ``(start, size)`` in ``(x, y, z)`` of ``reference`` covering
    physical corners plus a margin in mm on each side, clipped to the image.

    Returns ``None`` when the region misses the image.
    """
    matrix = index_to_lps_matrix(reference)
    inverse = np.linalg.inv(matrix)
    indices = (inverse @ np.c_[corners_lps, np.ones(len(corners_lps))].T).T[:, :3]
    spacing = np.asarray(reference.GetSpacing(), dtype=float)
    size = np.asarray(reference.GetSize(), dtype=int)
    margin = margin_mm / spacing
    low = np.floor(indices.min(axis=0) - margin).astype(int)  # every voxel the box touches
    high = np.ceil(indices.max(axis=0) + margin).astype(int)
    low = np.maximum(low, 0)
    high = np.minimum(high, size - 1)
    if np.any(high < low):
        return None
    start = tuple(int(v) for v in low)
    extent = tuple(int(v) for v in high - low + 1)
    return start, extent  # type: ignore[return-value]


def crop_image(image: sitk.Image, start: Sequence[int], size: Sequence[int]) -> sitk.Image:
    """The sub-image ``start .. start + size`` (``(x, y, z)`` voxels), geometry kept."""
    return sitk.RegionOfInterest(image, [int(s) for s in size], [int(s) for s in start])


def voxel_volume_mm3(image: sitk.Image) -> float:
    """Volume of one voxel in mm3."""
    return float(math.prod(image.GetSpacing()))
