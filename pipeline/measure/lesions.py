"""Lesions as connected components of the tumour label.

A lesion is a 3-D connected component of the tumour voxels, 26-connected by
default (voxels touching by a face, an edge or a corner belong to one lesion,
the convention of the segmentation post-processing); 18 and 6 are available.
Components smaller than the noise limit (0.05 mL by default) are noise: they
are counted (``noise_component_count``, ``noise_voxel_count``) and remain part
of the tumour volume, but get no lesion id. Lesion ids are ``1..N`` ordered
by volume, largest first; lesions of exactly equal volume are ordered by the
position of their centroid (LPS ``z``, then ``y``, then ``x`` when an
index-to-LPS matrix is given, so the order does not depend on how the volume
is stored; else by array position).

Optionally, a component holding several touching lesions is split by a
watershed of its distance map (:func:`split_touching`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: Default neighbourhood of lesion voxels (faces, edges and corners).
LESION_CONNECTIVITY = 26

_RANKS = {6: 1, 18: 2, 26: 3}


def connectivity_structure(connectivity: int = LESION_CONNECTIVITY) -> np.ndarray:
    """3 x 3 x 3 neighbourhood for 6-, 18- or 26-connectivity."""
    if connectivity not in _RANKS:
        raise ValueError(f"connectivity must be 6, 18 or 26, not {connectivity!r}")
    return ndimage.generate_binary_structure(3, _RANKS[connectivity])


def voxel_volume_ml(spacing_mm: Sequence[float]) -> float:
    """Volume of one voxel in mL from its spacing ``(x, y, z)`` in mm.

    The spacings are multiplied in increasing order, so that the same voxels
    stored with permuted axes give the same number to the last bit.
    """
    small, middle, large = sorted(float(s) for s in spacing_mm)
    return small * middle * large / 1000.0


@dataclasses.dataclass
class LesionLabels:
    """Lesion instance map of a tumour mask.

    Attributes
    ----------
    labels
        Array indexed ``[z, y, x]`` (uint16, or uint32 beyond 65535
        lesions): 0 outside lesions, lesion ids ``1..N`` ordered by volume
        (largest first). Noise voxels are 0.
    voxel_counts
        Voxels of lesion ``i + 1`` at position ``i``.
    regions
        Bounding box of lesion ``i + 1`` at position ``i``, as slices of
        ``labels`` (``[z, y, x]``).
    component_ids
        Connected component (numbered from 1 in the order of
        ``scipy.ndimage.label``) that lesion ``i + 1`` was cut from; lesions
        share a component only when ``split_touching_lesions`` split it.
    noise_component_count
        Tumour components below the noise limit.
    noise_voxel_count
        Their voxels, in total.
    split_component_count
        Components split into several lesions (with ``split_touching``).
    """

    labels: np.ndarray
    voxel_counts: np.ndarray
    regions: list[tuple[slice, ...]]
    component_ids: np.ndarray
    noise_component_count: int
    noise_voxel_count: int
    split_component_count: int = 0

    @property
    def lesion_count(self) -> int:
        return len(self.voxel_counts)


def bounding_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every true voxel of ``mask`` (``None`` if empty)."""
    spans = []
    for axis in range(mask.ndim):
        present = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        if present.size == 0:
            return None
        spans.append(slice(int(present[0]), int(present[-1]) + 1))
    return tuple(spans)


def split_touching(
    component: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    min_depth_mm: float = 2.0,
    min_voxels: int = 1,
    connectivity: int = LESION_CONNECTIVITY,
) -> np.ndarray:
    """Split one component into touching lesions by a watershed of its distance map.

    Markers are the maxima of the Euclidean distance to the background (mm)
    that stand at least ``min_depth_mm`` above the saddles joining them
    (h-maxima); the watershed of the negated distance from those markers,
    inside the component, gives the pieces. If a piece would hold fewer than
    ``min_voxels`` voxels, the component is left whole.

    Parameters
    ----------
    component
        Boolean array ``[z, y, x]`` holding one connected component.
    spacing_mm
        Voxel spacing ``(x, y, z)`` in mm.

    Returns
    -------
    numpy.ndarray
        int32 array ``[z, y, x]``: 0 outside, pieces ``1..K`` (``K = 1`` when
        not split).
    """
    from skimage.morphology import h_maxima
    from skimage.segmentation import watershed

    component = np.asarray(component, dtype=bool)
    sampling = [float(s) for s in spacing_mm][::-1]
    padded = np.pad(component, 1)
    distance = ndimage.distance_transform_edt(padded, sampling=sampling)
    structure = connectivity_structure(connectivity)
    maxima = h_maxima(distance, float(min_depth_mm), footprint=structure)
    markers, count = ndimage.label(maxima & padded, structure=structure)
    if count <= 1:
        return component.astype(np.int32)
    pieces = watershed(-distance, markers, mask=padded, connectivity=structure)
    pieces = pieces[1:-1, 1:-1, 1:-1].astype(np.int32)
    sizes = np.bincount(pieces.ravel(), minlength=count + 1)[1:]
    if np.any(sizes < max(int(min_voxels), 1)):
        return component.astype(np.int32)
    return pieces


def label_lesions(
    tumor: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    min_volume_ml: float = 0.05,
    connectivity: int = LESION_CONNECTIVITY,
    split_touching_lesions: bool = False,
    split_min_depth_mm: float = 2.0,
    index_to_lps: np.ndarray | None = None,
) -> LesionLabels:
    """Lesion instance map of a tumour mask.

    Parameters
    ----------
    tumor
        Boolean array ``[z, y, x]``: tumour voxels.
    spacing_mm
        Voxel spacing ``(x, y, z)`` in mm.
    min_volume_ml
        Components smaller than this (mL) are noise.
    connectivity
        6, 18 or 26.
    split_touching_lesions
        Split components holding touching lesions (:func:`split_touching`).
    split_min_depth_mm
        Marker depth of the split (mm).
    index_to_lps
        Optional 3 x 4 matrix mapping ``(x, y, z, 1)`` voxel indices to LPS mm;
        orders lesions of equal volume by physical position.

    Returns
    -------
    LesionLabels
    """
    tumor = np.asarray(tumor, dtype=bool)
    if tumor.ndim != 3:
        raise ValueError(f"tumour mask must be 3-D, not {tumor.ndim}-D")
    structure = connectivity_structure(connectivity)
    voxel_ml = voxel_volume_ml(spacing_mm)
    min_voxels = int(np.ceil(min_volume_ml / voxel_ml - 1e-9)) if min_volume_ml > 0 else 0
    box = bounding_box(tumor)
    if box is None:
        empty = np.zeros(0, dtype=np.int64)
        return LesionLabels(np.zeros(tumor.shape, np.uint16), empty, [], empty, 0, 0)
    offset = np.array([s.start for s in box])
    components, count = ndimage.label(tumor[box], structure=structure)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    sizes[0] = 0
    noise = (sizes > 0) & (sizes < min_voxels)
    noise_count = int(np.count_nonzero(noise))
    noise_voxels = int(sizes[noise].sum())

    # lesions as (component, region in the full array, local mask) before ordering
    pieces: list[tuple[int, tuple[slice, ...], np.ndarray]] = []
    split_count = 0
    for label, region in enumerate(ndimage.find_objects(components), start=1):
        if region is None or noise[label] or sizes[label] == 0:
            continue
        local = components[region] == label
        full_region = tuple(
            slice(s.start + o, s.stop + o) for s, o in zip(region, offset, strict=True)
        )
        if split_touching_lesions:
            parts = split_touching(
                local,
                spacing_mm,
                min_depth_mm=split_min_depth_mm,
                min_voxels=min_voxels,
                connectivity=connectivity,
            )
            part_count = int(parts.max())
            if part_count > 1:
                split_count += 1
                for part in range(1, part_count + 1):
                    piece = parts == part
                    tight = bounding_box(piece)
                    assert tight is not None
                    piece_region = tuple(
                        slice(f.start + t.start, f.start + t.stop)
                        for f, t in zip(full_region, tight, strict=True)
                    )
                    pieces.append((label, piece_region, piece[tight]))
                continue
        pieces.append((label, full_region, local))

    keys = []
    for index, (_label, region, local) in enumerate(pieces):
        voxels = np.count_nonzero(local)
        coordinates = np.stack(np.nonzero(local), axis=1).mean(axis=0)
        centroid_zyx = coordinates + np.array([s.start for s in region])
        if index_to_lps is not None:
            point = np.asarray(index_to_lps, float) @ np.append(centroid_zyx[::-1], 1.0)
            position = tuple(np.round(point[::-1], 6))  # LPS z, y, x
        else:
            position = tuple(np.round(centroid_zyx, 6))
        keys.append((-voxels, *position, index))
    keys.sort()
    counts = np.zeros(len(pieces), dtype=np.int64)
    component_ids = np.zeros(len(pieces), dtype=np.int64)
    regions: list[tuple[slice, ...]] = []
    output = np.zeros(tumor.shape, dtype=np.uint16 if len(pieces) <= 65535 else np.uint32)
    for new_id, key in enumerate(keys, start=1):
        label, region, local = pieces[key[-1]]
        target = output[region]
        target[local] = new_id
        counts[new_id - 1] = -key[0]
        component_ids[new_id - 1] = label
        regions.append(region)
    return LesionLabels(
        output, counts, regions, component_ids, noise_count, noise_voxels, split_count
    )
