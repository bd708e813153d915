"""Custom MONAI transforms of the segmentation engine: array transforms beside
their dictionary wrappers, MONAI style.

Pre-processing: :class:`BlockAverage` (anti-aliasing block mean before a
coarse resampling) and :func:`stage_image_transform`, the chain that turns a CT
into what a stage's network sees (shared by inference and training
preparation).

Post-processing of a label map (0 background, 1 liver parenchyma, 2 tumour),
each step switched on or off by the model bundle's ``postprocessing`` settings:

* :class:`KeepLargestLiverComponent` -- keep the largest connected component
  of liver plus tumour;
* :class:`KeepTumourInsideLiver` -- drop tumour components touching no liver
  parenchyma;
* :class:`FillLiverHoles` -- fill enclosed holes of the liver (as liver) and
  of tumours (as tumour);
* :class:`RemoveSmallTumours` -- tumour components below a volume (mm3)
  become liver parenchyma.

The array transforms take a label array of any axis order (an optional leading
channel of size 1 is kept) and work inside the bounding box of the foreground
only, so that a full-resolution CT costs little. They need numpy, scipy and
MONAI, not SimpleITK.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform, Transform
from scipy import ndimage

BACKGROUND, LIVER, TUMOUR = 0, 1, 2
#: Neighbourhood of connected components: 26-connectivity in 3-D (faces, edges and corners).
CONNECTIVITY_26 = np.ones((3, 3, 3), dtype=bool)


def _as_numpy(labels: Any) -> tuple[np.ndarray, Any]:
    """A numpy view/copy of ``labels`` plus a function converting back to its type."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        torch = None
    if torch is not None and isinstance(labels, torch.Tensor):
        device, dtype = labels.device, labels.dtype
        array = labels.detach().cpu().numpy()

        def back(result: np.ndarray) -> Any:
            out = torch.as_tensor(result, dtype=dtype, device=device)
            meta = getattr(labels, "meta", None)
            if meta is not None:  # a MetaTensor keeps its metadata
                from monai.data import MetaTensor

                out = MetaTensor(out, meta=meta, applied_operations=labels.applied_operations)
            return out

        return array, back
    return np.asarray(labels), lambda result: result


def _squeeze_channel(array: np.ndarray) -> tuple[np.ndarray, bool]:
    if array.ndim == 4 and array.shape[0] == 1:
        return array[0], True
    if array.ndim != 3:
        raise ValueError(
            "expected a 3-D label array (optionally with one leading channel), "
            f"got shape {array.shape}"
        )
    return array, False


def foreground_box(mask: np.ndarray, pad: int = 1) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``mask`` (padded by ``pad`` voxels), or ``None`` when empty."""
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(
            slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + 1 + pad, mask.shape[axis]))
        )
    return tuple(box)


class _LabelTransform(Transform):
    """Base of the label-map transforms: channel handling, foreground box, type round trip."""

    def __call__(self, labels: Any) -> Any:
        array, back = _as_numpy(labels)
        volume, had_channel = _squeeze_channel(array)
        result = volume.copy()
        box = foreground_box(result > 0)
        if box is not None:
            result[box] = self.apply(result[box])
        if had_channel:
            result = result[None]
        return back(result)

    def apply(self, labels: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class KeepLargestLiverComponent(_LabelTransform):
    """Keep the largest 26-connected component of the liver (liver parenchyma plus tumour).

    Everything outside it becomes background: stray islands in the spleen,
    heart or kidneys are removed with their tumour labels.
    """

    def apply(self, labels: np.ndarray) -> np.ndarray:
        components, count = ndimage.label(labels > 0, structure=CONNECTIVITY_26)
        if count <= 1:
            return labels
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        keep = components == int(np.argmax(sizes))
        return np.where(keep, labels, BACKGROUND).astype(labels.dtype)


class KeepTumourInsideLiver(_LabelTransform):
    """Remove tumour components that touch no liver parenchyma (26-neighbourhood).

    A tumour is a liver tumour only where it lies in or on the liver; a
    "tumour" floating outside it is a false positive and becomes background.
    """

    def apply(self, labels: np.ndarray) -> np.ndarray:
        tumour = labels == TUMOUR
        if not tumour.any():
            return labels
        box = foreground_box(tumour, pad=1)  # tumours and their neighbours only
        assert box is not None
        components, _count = ndimage.label(tumour[box], structure=CONNECTIVITY_26)
        near_liver = ndimage.binary_dilation(labels[box] == LIVER, structure=CONNECTIVITY_26)
        touching = np.unique(components[near_liver & (components > 0)])
        keep = np.isin(components, touching)
        result = labels.copy()
        result[box][(components > 0) & ~keep] = BACKGROUND
        return result


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its enclosed holes filled (3-D, 6-connected background).

    A hole is a background component that does not reach the array's border.
    Labelling the background once is linear in the array size, unlike
    ``scipy.ndimage.binary_fill_holes`` (iterated dilation).
    """
    background, count = ndimage.label(~mask)
    if count == 0:
        return mask.copy()
    border = np.zeros(count + 1, dtype=bool)
    for axis in range(mask.ndim):
        for index in (0, mask.shape[axis] - 1):
            border[np.unique(np.take(background, index, axis=axis))] = True
    holes = ~border[background]
    holes[background == 0] = False
    return mask | holes


class FillLiverHoles(_LabelTransform):
    """Fill enclosed holes (3-D): holes inside a tumour become tumour, other holes
    inside the liver become liver parenchyma."""

    def apply(self, labels: np.ndarray) -> np.ndarray:
        foreground = labels > 0
        filled = fill_holes(foreground)
        new = filled & ~foreground
        if not new.any():
            return labels
        result = labels.copy()
        result[new] = LIVER
        tumour = labels == TUMOUR
        box = foreground_box(tumour, pad=1)
        if box is not None:  # holes enclosed by tumour alone become tumour
            inside_tumour = fill_holes(tumour[box]) & new[box]
            result[box][inside_tumour] = TUMOUR
        return result


class RemoveSmallTumours(_LabelTransform):
    """Tumour components smaller than ``min_volume_mm3`` become liver parenchyma.

    Parameters
    ----------
    min_volume_mm3
        Smallest tumour component kept, in mm3.
    voxel_volume_mm3
        Volume of one voxel of the label array, in mm3.
    """

    def __init__(self, min_volume_mm3: float, voxel_volume_mm3: float) -> None:
        if voxel_volume_mm3 <= 0:
            raise ValueError("voxel_volume_mm3 must be positive")
        self.min_volume_mm3 = float(min_volume_mm3)
        self.voxel_volume_mm3 = float(voxel_volume_mm3)

    def apply(self, labels: np.ndarray) -> np.ndarray:
        tumour = labels == TUMOUR
        if self.min_volume_mm3 <= 0 or not tumour.any():
            return labels
        components, _count = ndimage.label(tumour, structure=CONNECTIVITY_26)
        volumes_mm3 = np.bincount(components.ravel()) * self.voxel_volume_mm3
        small = volumes_mm3 < self.min_volume_mm3
        small[0] = False
        result = labels.copy()
        result[small[components]] = LIVER
        return result


class _LabelMapTransformd(MapTransform):
    """Dictionary wrapper applying an array label transform to ``keys``."""

    transform: _LabelTransform

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class KeepLargestLiverComponentd(_LabelMapTransformd):
    """Dictionary wrapper of :class:`KeepLargestLiverComponent`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = KeepLargestLiverComponent()


class KeepTumourInsideLiverd(_LabelMapTransformd):
    """Dictionary wrapper of :class:`KeepTumourInsideLiver`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = KeepTumourInsideLiver()


class FillLiverHolesd(_LabelMapTransformd):
    """Dictionary wrapper of :class:`FillLiverHoles`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = FillLiverHoles()


class RemoveSmallTumoursd(_LabelMapTransformd):
    """Dictionary wrapper of :class:`RemoveSmallTumours`."""

    def __init__(
        self,
        keys: KeysCollection,
        min_volume_mm3: float,
        voxel_volume_mm3: float,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = RemoveSmallTumours(min_volume_mm3, voxel_volume_mm3)


# -------------------------------------------------------------- pre-processing


class BlockAverage(Transform):
    """Average non-overlapping blocks of voxels: anti-aliasing before a coarse resampling.

    Along each array axis whose spacing is at most half the target spacing of
    the RAS axis it runs along, blocks of ``floor(target / spacing)`` voxels
    are averaged (a box filter, then subsampling), and the affine follows
    (each block's centre). Blocks are anchored at the RAS-lowest voxel of each
    axis, so the same voxels stored in any axis order or direction give the
    same blocks. Voxels that do not fill a last block are dropped (less than
    one target voxel at the RAS-highest end).

    Works on a channel-first MetaTensor of any axis order; the result is a new
    float32 MetaTensor (the input is never written to). Sums run in float64, in
    which sums of float32 values are exact, so the result does not depend on
    the order of the voxels in memory.

    Parameters
    ----------
    target_spacing_mm
        Spacing ``(x, y, z)`` in mm of the RAS axes that will follow (the
        ``pixdim`` of the ``Spacingd`` after ``Orientationd``).
    """

    def __init__(self, target_spacing_mm: Sequence[float]) -> None:
        self.target_spacing_mm = tuple(float(s) for s in target_spacing_mm)

    def plan(self, affine: np.ndarray, shape: Sequence[int]) -> list[tuple[int, int, int]]:
        """Per array axis: ``(factor, first voxel used, blocks)``."""
        linear = np.asarray(affine, dtype=float)[:3, :3]
        spacing = np.linalg.norm(linear, axis=0)
        result = []
        for axis, count in enumerate(shape):
            ras_axis = int(np.argmax(np.abs(linear[:, axis])))
            factor = max(1, math.floor(self.target_spacing_mm[ras_axis] / spacing[axis] + 1e-6))
            blocks = count // factor
            if blocks < 1:
                factor, blocks = 1, count
            reversed_axis = linear[ras_axis, axis] < 0  # RAS-lowest voxel at the array's end
            start = count - blocks * factor if reversed_axis else 0
            result.append((factor, start, blocks))
        return result

    def __call__(self, img: Any) -> Any:
        import torch
        from monai.data import MetaTensor

        affine = np.asarray(img.affine, dtype=float)
        plan = self.plan(affine, tuple(img.shape[1:]))
        if all(factor == 1 for factor, _start, _blocks in plan):
            return img
        data = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
        window = (slice(None), *(slice(s, s + b * f) for f, s, b in plan))
        # float64 sums of float32 voxels are exact, so the storage order cannot change the result
        data = data[window].to(torch.float64)
        factors = [f for f, _s, _b in plan]
        pooled = torch.nn.functional.avg_pool3d(data[None], kernel_size=factors, stride=factors)[0]
        pooled = pooled.to(torch.float32)
        new_affine = affine.copy()
        new_affine[:3, :3] = affine[:3, :3] * np.asarray(factors, dtype=float)
        first_centre = [s + (f - 1) / 2.0 for f, s, _b in plan]
        new_affine[:3, 3] = (affine @ np.append(first_centre, 1.0))[:3]
        return MetaTensor(pooled, affine=torch.as_tensor(new_affine, dtype=torch.float64))


class BlockAveraged(MapTransform):
    """Dictionary wrapper of :class:`BlockAverage`."""

    def __init__(
        self,
        keys: KeysCollection,
        target_spacing_mm: Sequence[float],
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = BlockAverage(target_spacing_mm)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


#: Axis labels of MONAI's RAS convention, given explicitly to ``Orientationd``.
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))


def stage_image_transform(
    spacing_mm: Sequence[float],
    hu_window: Sequence[float] | None,
    *,
    antialias: bool,
    keys: KeysCollection = "image",
) -> Compose:
    """What a stage's network sees of a CT: optional :class:`BlockAveraged`,
    ``Orientationd`` (RAS), ``Spacingd`` (bilinear, ``spacing_mm`` as ``(x, y, z)``
    of the RAS axes) and, with ``hu_window``, ``ScaleIntensityRanged`` (HU window
    to 0..1, clipped). Inference and training preparation share it.
    """
    import torch
    from monai.transforms import Orientationd, ScaleIntensityRanged, Spacingd

    steps: list[Any] = []
    if antialias:
        steps.append(BlockAveraged(keys, spacing_mm))
    steps += [
        Orientationd(keys=keys, axcodes="RAS", labels=RAS_LABELS),
        Spacingd(
            keys=keys,
            pixdim=tuple(spacing_mm),
            mode="bilinear",
            padding_mode="border",
            dtype=torch.float32,
        ),
    ]
    if hu_window is not None:
        low, high = (float(v) for v in hu_window)
        steps.append(
            ScaleIntensityRanged(keys=keys, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
        )
    return Compose(steps)


# ------------------------------------------------------------- post-processing


def postprocessing_transform(
    settings: Any, voxel_volume_mm3: float, keys: KeysCollection = "labels"
) -> Compose:
    """The post-processing chain chosen by a bundle's ``postprocessing`` settings.

    Parameters
    ----------
    settings
        A :class:`pipeline.segment.bundle.PostprocessingSettings`.
    voxel_volume_mm3
        Volume of one voxel of the label maps it will process, in mm3.
    keys
        Dictionary keys of the label maps.

    Order: largest liver component, tumour inside liver, holes filled, small
    tumours removed (the last so that filled tumour holes count to the volume).
    """
    steps: list[MapTransform] = []
    if settings.largest_liver_component:
        steps.append(KeepLargestLiverComponentd(keys))
    if settings.tumour_inside_liver:
        steps.append(KeepTumourInsideLiverd(keys))
    if settings.fill_holes:
        steps.append(FillLiverHolesd(keys))
    if settings.min_tumour_volume_mm3 > 0:
        steps.append(RemoveSmallTumoursd(keys, settings.min_tumour_volume_mm3, voxel_volume_mm3))
    return Compose(steps)
