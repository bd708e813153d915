"""Synthetic liver lesions inserted into real CT, to multiply the few labelled livers.

The idea follows Hu et al., "Label-Free Liver Tumor Synthesis" (CVPR 2023):
lesions with realistic shape, texture, contrast, margin and mass effect are
painted into real livers, and the painted voxels become tumour labels. A
model trained on such cases learns what a lesion looks like against real
parenchyma, real vessels and real noise.

What a painted lesion is made of (all in a crop around the lesion):

* shape: an ellipsoid with random axes and orientation whose radius is
  perturbed by smooth noise (lobulated, not a sphere), kept inside the liver;
* mass effect: the surrounding tissue is pushed radially outward
  (a smooth displacement that fades within about one radius);
* attenuation: a target contrast to the surrounding parenchyma (mostly
  hypodense in the portal-venous phase, sometimes iso- or hyperdense), smooth
  internal texture, optional necrotic (non-enhancing) centre and enhancing
  rim; the original image's high-frequency noise is kept, so the lesion has
  the scan's own noise texture; vessels inside the lesion are removed;
* margin: a blurred boundary (partial volume), the label being the voxels
  where the lesion weight is above one half.

Arrays are ``[z, y, x]``; spacing tuples are ``(x, y, z)`` in mm. Only numpy
and scipy are used, so the training machine needs nothing more.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import ndimage

LIVER, TUMOUR = 1, 2


@dataclasses.dataclass(frozen=True)
class LesionStyle:
    """Ranges from which each painted lesion's appearance is drawn.

    Attributes
    ----------
    diameter_mm
        Range of lesion diameters in mm (drawn log-uniformly).
    contrast_hu
        Choices of (low, high) contrast to the parenchyma in HU with their
        probabilities in ``contrast_weights``: hypodense, near-isodense,
        hyperdense.
    texture_hu
        Range of the amplitude (HU) of the smooth internal texture.
    necrosis_probability
        Chance that a lesion above 20 mm has a non-enhancing centre.
    rim_probability
        Chance of an enhancing rim.
    mass_effect
        Range of the outward push of surrounding tissue, as a fraction of the
        lesion radius.
    margin_blur_mm
        Range of the Gaussian blur (sigma, mm) of the lesion margin.
    """

    diameter_mm: tuple[float, float] = (6.0, 70.0)
    contrast_hu: tuple[tuple[float, float], ...] = ((-80.0, -20.0), (-20.0, -8.0), (12.0, 45.0))
    contrast_weights: tuple[float, ...] = (0.7, 0.2, 0.1)
    texture_hu: tuple[float, float] = (2.0, 14.0)
    necrosis_probability: float = 0.3
    rim_probability: float = 0.25
    mass_effect: tuple[float, float] = (0.0, 0.25)
    margin_blur_mm: tuple[float, float] = (0.4, 1.6)


def _smooth_noise(
    shape: tuple[int, ...], sigma_voxels: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma_voxels, mode="reflect")
    scale = field.std()
    return field / scale if scale > 0 else field


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def parenchyma_statistics(ct_hu: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Median HU and robust noise level (HU) of the liver parenchyma.

    The noise level is the median absolute deviation of the high-frequency
    residual (image minus its 1-voxel Gaussian smoothing), scaled to a
    standard deviation.
    """
    liver = labels == LIVER
    if not liver.any():
        raise ValueError("no liver parenchyma to insert lesions into")
    values = ct_hu[liver]
    residual = (ct_hu - ndimage.gaussian_filter(ct_hu.astype(np.float32), 1.0))[liver]
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    return float(np.median(values)), noise


def insert_lesion(
    ct_hu: np.ndarray,
    labels: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    style: LesionStyle = LesionStyle(),
    diameter_mm: float | None = None,
    parenchyma_hu: float | None = None,
    depth_mm: np.ndarray | None = None,
) -> bool:
    """Paint one synthetic lesion into ``ct_hu`` and ``labels`` in place.

    Parameters
    ----------
    ct_hu
        CT in HU, ``[z, y, x]``, float32 (modified in place).
    labels
        0 background, 1 liver, 2 tumour, same shape (modified in place).
    spacing_xyz
        Voxel spacing ``(x, y, z)`` in mm.
    rng
        Random generator (the lesion is a deterministic function of it).
    style
        Ranges of the lesion's appearance.
    diameter_mm
        Lesion diameter; drawn from ``style.diameter_mm`` when ``None``.
    parenchyma_hu
        Reference parenchyma attenuation; measured when ``None``.
    depth_mm
        Distance (mm) of each voxel to the liver's outside; computed when
        ``None`` (pass it when painting several lesions).

    Returns
    -------
    bool
        ``False`` when no place in the liver could hold the lesion.
    """
    spacing_zyx = np.asarray(spacing_xyz, dtype=float)[::-1]
    liver = labels == LIVER
    if liver.sum() < 50:
        return False
    if diameter_mm is None:
        low, high = style.diameter_mm
        diameter_mm = float(math.exp(rng.uniform(math.log(low), math.log(high))))
    radius_mm = diameter_mm / 2
    axes_mm = radius_mm * rng.uniform(0.8, 1.2, size=3)
    # centre: a parenchyma voxel deep enough in the liver for most of the lesion
    if depth_mm is None:
        depth_mm = ndimage.distance_transform_edt(labels > 0, sampling=spacing_zyx)
    wanted_depth = min(0.6 * radius_mm, float(depth_mm.max()) * 0.8)
    candidates = np.argwhere(liver & (depth_mm >= wanted_depth))
    if len(candidates) == 0:
        return False
    centre = candidates[rng.integers(len(candidates))].astype(float)
    reference_hu = (
        parenchyma_hu if parenchyma_hu is not None else parenchyma_statistics(ct_hu, labels)[0]
    )

    # crop around the lesion, with room for margin blur and mass effect
    reach_mm = 2.2 * float(axes_mm.max()) + 4.0
    reach = np.ceil(reach_mm / spacing_zyx).astype(int)
    low_index = np.maximum(centre.astype(int) - reach, 0)
    high_index = np.minimum(centre.astype(int) + reach + 1, ct_hu.shape)
    window = tuple(slice(a, b) for a, b in zip(low_index, high_index, strict=True))
    crop_ct = ct_hu[window].astype(np.float32)
    crop_labels = labels[window]
    grid = np.indices(crop_ct.shape, dtype=np.float32)
    offset_mm = (grid - (centre - low_index)[:, None, None, None]) * spacing_zyx[
        :, None, None, None
    ]

    # shape: rotated ellipsoid with a smoothly perturbed radius
    rotation = _random_rotation(rng)
    local = np.tensordot(rotation.T, offset_mm, axes=1)
    rho = np.sqrt(sum((local[i] / axes_mm[i]) ** 2 for i in range(3)))
    lobulation = rng.uniform(0.05, 0.2)
    rho = rho * (1 + lobulation * _smooth_noise(rho.shape, radius_mm / 2.5 / spacing_zyx, rng))

    # mass effect: sample tissue from closer to the centre (pushes it outward)
    push = rng.uniform(*style.mass_effect) * radius_mm
    if push > 0.3 * float(spacing_zyx.min()):
        distance = np.sqrt((offset_mm**2).sum(axis=0)) + 1e-6
        shift_mm = (
            push
            * np.exp(-np.maximum(distance - radius_mm, 0) / radius_mm)
            * np.minimum(distance / radius_mm, 1.0)
        )
        source = grid - (offset_mm / distance) * (shift_mm / spacing_zyx[:, None, None, None])
        crop_ct = ndimage.map_coordinates(crop_ct, source, order=1, mode="nearest").astype(
            np.float32
        )
        crop_labels = ndimage.map_coordinates(crop_labels, source, order=0, mode="nearest")

    # margin: blurred lesion weight, kept inside the liver (incl. existing tumour)
    blur_mm = rng.uniform(*style.margin_blur_mm)
    inside = np.clip(1.0 - rho, -1, 1)
    weight = ndimage.gaussian_filter((inside > 0).astype(np.float32), blur_mm / spacing_zyx)
    weight *= (crop_labels > 0).astype(np.float32)
    lesion = weight > 0.5
    if lesion.sum() < 3:
        return False

    # attenuation: contrast + texture + necrotic centre + rim, keeping the scan's noise
    choice = rng.choice(
        len(style.contrast_hu), p=np.asarray(style.contrast_weights) / sum(style.contrast_weights)
    )
    contrast = rng.uniform(*style.contrast_hu[choice])
    texture = rng.uniform(*style.texture_hu) * _smooth_noise(
        crop_ct.shape, 1.2 / spacing_zyx * 2.0, rng
    )
    target = reference_hu + contrast + texture
    if diameter_mm > 20 and rng.random() < style.necrosis_probability:
        necrotic_weight = np.clip((0.55 - rho) / 0.15, 0, 1)
        necrotic_hu = rng.uniform(5.0, 35.0)
        target = target * (1 - necrotic_weight) + necrotic_hu * necrotic_weight
    if rng.random() < style.rim_probability:
        rim = np.exp(-(((rho - 0.85) / 0.1) ** 2))
        target = target + rng.uniform(15.0, 50.0) * rim
    high_frequency = crop_ct - ndimage.gaussian_filter(crop_ct, 1.0)
    painted = target + high_frequency
    crop_ct = crop_ct * (1 - weight) + painted * weight

    ct_hu[window] = crop_ct
    new_labels = crop_labels.copy()
    new_labels[lesion] = TUMOUR
    labels[window] = new_labels
    return True


def insert_lesions(
    ct_hu: np.ndarray,
    labels: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    rng: np.random.Generator,
    *,
    count: int | None = None,
    style: LesionStyle = LesionStyle(),
) -> int:
    """Paint ``count`` lesions (1-10 random when ``None``) in place; returns how many fit."""
    if count is None:
        count = int(rng.integers(1, 11))
    if not (labels == LIVER).any():
        return 0
    reference_hu, _ = parenchyma_statistics(ct_hu, labels)
    depth_mm = ndimage.distance_transform_edt(labels > 0, sampling=np.asarray(spacing_xyz)[::-1])
    painted = 0
    for _ in range(count):
        painted += insert_lesion(
            ct_hu,
            labels,
            spacing_xyz,
            rng,
            style=style,
            parenchyma_hu=reference_hu,
            depth_mm=depth_mm,
        )
    return painted
