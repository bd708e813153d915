"""Synthetic scans with analytic shapes for the measurement tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

AIR_HU = -1000.0
FAT_HU = -100.0
LIVER_HU = 100.0
TUMOR_HU = 60.0


def rotation_z(degrees: float) -> np.ndarray:
    """Rotation about the LPS head-foot (z) axis."""
    t = np.deg2rad(degrees)
    return np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])


def blank_image(
    size_xyz: Sequence[int],
    spacing_mm: Sequence[float],
    origin_mm: Sequence[float] = (0.0, 0.0, 0.0),
    direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
    value: float = FAT_HU,
) -> sitk.Image:
    """Float32 CT of ``value`` HU with an air border (so it reads as HU)."""
    array = np.full(tuple(size_xyz)[::-1], value, dtype=np.float32)
    array[:, :, 0] = AIR_HU
    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing_mm])
    image.SetOrigin([float(o) for o in origin_mm])
    image.SetDirection([float(d) for d in direction])
    return image


def physical_points(image: sitk.Image) -> np.ndarray:
    """LPS coordinates (mm) of every voxel centre, shape ``[z, y, x, 3]``."""
    size = image.GetSize()
    index = np.stack(
        np.meshgrid(*(np.arange(n, dtype=float) for n in size), indexing="ij"), axis=-1
    )  # [x, y, z, 3]
    matrix = np.asarray(image.GetDirection(), float).reshape(3, 3) @ np.diag(image.GetSpacing())
    points = index @ matrix.T + np.asarray(image.GetOrigin(), float)
    return np.transpose(points, (2, 1, 0, 3))


def ellipsoid(
    image: sitk.Image,
    centre_mm: Sequence[float],
    semi_axes_mm: Sequence[float],
    rotation: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean ``[z, y, x]`` mask of the voxels whose centre lies in the ellipsoid.

    ``rotation`` (3 x 3) turns the ellipsoid's own axes into LPS; identity:
    semi-axes along LPS x, y, z.
    """
    rotation = np.eye(3) if rotation is None else np.asarray(rotation, float)
    local = (physical_points(image) - np.asarray(centre_mm, float)) @ rotation
    return np.sum((local / np.asarray(semi_axes_mm, float)) ** 2, axis=-1) <= 1.0


def labels_image(labels: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(labels.astype(np.uint8))
    image.CopyInformation(reference)
    return image


def ct_with_labels(
    reference: sitk.Image,
    labels: np.ndarray,
    liver_hu: float = LIVER_HU,
    tumor_hu: float = TUMOR_HU,
) -> sitk.Image:
    """CT of ``reference``'s grid: fat, an air column, liver and tumour attenuations."""
    array = sitk.GetArrayFromImage(reference)
    array[labels == 1] = liver_hu
    array[labels == 2] = tumor_hu
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(reference)
    return image


@dataclasses.dataclass
class SyntheticScan:
    ct: sitk.Image
    labels: sitk.Image

    def write(self, folder: Path, stem: str = "case") -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        ct_path, label_path = folder / f"{stem}_ct.nii.gz", folder / f"{stem}_labels.nii.gz"
        sitk.WriteImage(self.ct, str(ct_path), useCompression=True)
        sitk.WriteImage(self.labels, str(label_path), useCompression=True)
        return ct_path, label_path


def liver_with_lesions(
    size_xyz: Sequence[int] = (128, 128, 40),
    spacing_mm: Sequence[float] = (1.0, 1.0, 2.5),
    lesions: Sequence[tuple[Sequence[float], Sequence[float]]] = (
        ((0.0, 0.0, 0.0), (12.0, 8.0, 10.0)),
    ),
    liver_semi_axes_mm: Sequence[float] = (50.0, 45.0, 40.0),
    origin_mm: Sequence[float] | None = None,
    direction: Sequence[float] = (1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> SyntheticScan:
    """A liver ellipsoid centred in the image with ellipsoidal lesions.

    ``lesions`` are ``(offset_from_liver_centre_mm, semi_axes_mm)`` pairs,
    axis-aligned in LPS.
    """
    if origin_mm is None:
        origin_mm = [-0.5 * (n - 1) * s for n, s in zip(size_xyz, spacing_mm, strict=True)]
    reference = blank_image(size_xyz, spacing_mm, origin_mm, direction)
    centre = physical_points(reference)[
        tuple(n // 2 for n in tuple(size_xyz)[::-1])
    ]  # a voxel centre near the middle
    labels = np.zeros(tuple(size_xyz)[::-1], dtype=np.uint8)
    labels[ellipsoid(reference, centre, liver_semi_axes_mm)] = 1
    for offset, axes in lesions:
        labels[ellipsoid(reference, centre + np.asarray(offset, float), axes)] = 2
    return SyntheticScan(ct_with_labels(reference, labels), labels_image(labels, reference))
