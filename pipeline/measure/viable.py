"""Viable (arterially enhancing) tumour for mRECIST, and lipiodol deposits.

Rules (docs/response-criteria.md, after Lencioni & Llovet, Semin Liver Dis 2010):

* the reference of a lesion is the mean arterial-phase attenuation of the liver
  parenchyma in a ring around it: parenchyma voxels within
  ``peri_tumoral_ring_mm`` of the lesion (Euclidean distance in mm), leaving
  out lipiodol and voxels the arterial scan does not cover. When that ring
  holds less than ``peri_tumoral_ring_min_volume_ml`` of parenchyma (a lesion
  surrounded by other tumour, or at the liver's edge), the mean of the whole
  liver parenchyma is the reference instead;
* a tumour voxel is viable when its arterial attenuation is at least the
  reference plus ``viable_margin_hu``, and it is not lipiodol;
* lipiodol: attenuation above ``lipiodol_min_hu`` in both the portal-venous and
  the arterial phase (it is dense in every phase; enhancing tumour is not);
* viable specks smaller than ``viable_min_component_ml`` (3-D connected
  components, 26-connectivity) are image noise, not viable tumour;
* the viable diameter is the longest axial diameter of the largest connected
  viable part: mRECIST measures viable tumour "not including any major
  intervening areas of necrosis" (Lencioni & Llovet 2010), so two enhancing
  nodules on either side of a necrotic core are not measured as one.

All arrays are indexed ``[z, y, x]``; spacing is ``(x, y, z)`` in mm.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def lipiodol_mask(
    portal_hu: np.ndarray, arterial_hu: np.ndarray, lipiodol_min_hu: float
) -> np.ndarray:
    """Voxels denser than ``lipiodol_min_hu`` (HU) in both phases: lipiodol deposits."""
    return (np.asarray(portal_hu) > lipiodol_min_hu) & (np.asarray(arterial_hu) > lipiodol_min_hu)


def ring_margin_voxels(spacing_mm: Sequence[float], ring_mm: float) -> tuple[int, int, int]:
    """Voxels to add on each side of a lesion's bounding box, in array order
    ``(z, y, x)``, so that the box holds its ring of ``ring_mm``."""
    x, y, z = (float(s) for s in spacing_mm)
    return tuple(math.ceil(ring_mm / s) + 1 for s in (z, y, x))  # type: ignore[return-value]


def peri_tumoral_ring(
    lesion: np.ndarray, candidates: np.ndarray, spacing_mm: Sequence[float], ring_mm: float
) -> np.ndarray:
    """Voxels of ``candidates`` within ``ring_mm`` (mm) of ``lesion``, outside it.

    Parameters
    ----------
    lesion
        Boolean array ``[z, y, x]`` (the lesion; the array should reach at
        least ``ring_mm`` beyond it, see :func:`ring_margin_voxels`).
    candidates
        Boolean array of the same shape: the voxels that may belong to the
        ring (liver parenchyma without lipiodol, covered by the arterial scan).
    spacing_mm
        Voxel spacing ``(x, y, z)`` in mm.
    ring_mm
        Ring width in mm.
    """
    lesion = np.asarray(lesion, dtype=bool)
    if not lesion.any():
        return np.zeros(lesion.shape, dtype=bool)
    sampling = [float(s) for s in spacing_mm][::-1]
    distance = ndimage.distance_transform_edt(~lesion, sampling=sampling)
    return (distance <= ring_mm) & ~lesion & np.asarray(candidates, dtype=bool)


def viable_mask(
    tumor: np.ndarray,
    arterial_hu: np.ndarray,
    reference_hu: float,
    *,
    margin_hu: float = 0.0,
    lipiodol: np.ndarray | None = None,
) -> np.ndarray:
    """Viable tumour: tumour voxels with arterial attenuation >= reference + margin
    (HU), lipiodol excluded."""
    viable = np.asarray(tumor, dtype=bool) & (np.asarray(arterial_hu) >= reference_hu + margin_hu)
    if lipiodol is not None:
        viable &= ~np.asarray(lipiodol, dtype=bool)
    return viable


def remove_viable_specks(
    viable: np.ndarray, spacing_mm: Sequence[float], min_component_ml: float
) -> tuple[np.ndarray, np.ndarray]:
    """Drop viable components below ``min_component_ml`` (mL).

    Returns
    -------
    (cleaned, largest)
        The viable voxels that remain, and the largest connected viable part
        (empty when nothing remains), both boolean ``[z, y, x]``.
    """
    viable = np.asarray(viable, dtype=bool)
    labels, count = ndimage.label(viable, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return viable, viable
    x, y, z = (float(s) for s in spacing_mm)
    sizes = np.bincount(labels.ravel())[1:]
    keep = sizes * (x * y * z / 1000.0) >= min_component_ml
    cleaned = keep[labels - 1] & viable
    if not keep.any():
        return cleaned, cleaned
    largest = labels == (int(np.argmax(np.where(keep, sizes, 0))) + 1)
    return cleaned, largest
