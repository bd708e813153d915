"""Broken and awkward label maps for the base CT (0 background, 1 liver, 2 tumour).

Each builder takes ``(workspace, folder)`` and returns ``(path, fragments)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from tests.corpus.base import Workspace, image_like, sphere, write_image

LabelBuilder = Callable[[Workspace, Path], tuple[Path, tuple[str, ...]]]


def _write(ws: Workspace, array: np.ndarray, path: Path) -> Path:
    return write_image(image_like(array, ws.base.ct), path)


def missing(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    return folder / "absent-labels.nii.gz", ("absent-labels.nii.gz", "not found")


def truncated(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = write_image(ws.base.labels, folder / "cut-labels.nii")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20000])
    return path, ("cut-labels.nii", "truncated")


def other_grid(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """The labels resampled to twice the voxel size (a mask of another series)."""
    reference = ws.base.labels
    size = [max(1, s // 2) for s in reference.GetSize()]
    spacing = [2 * s for s in reference.GetSpacing()]
    coarse = sitk.Resample(
        reference,
        size,
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        reference.GetOrigin(),
        spacing,
        reference.GetDirection(),
        0,
        sitk.sitkUInt8,
    )
    path = write_image(coarse, folder / "coarse-labels.nii.gz")
    return path, ("coarse-labels.nii.gz", "different grid")


def shifted_origin(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """The same array half a voxel off: not the CT's grid."""
    image = sitk.Image(ws.base.labels)
    origin = list(image.GetOrigin())
    origin[0] += image.GetSpacing()[0] / 2
    image.SetOrigin(origin)
    path = write_image(image, folder / "shifted-labels.nii.gz")
    return path, ("shifted-labels.nii.gz", "different grid")


def flipped_storage(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """The same voxels stored with the x axis reversed (RAS-style): handled exactly."""
    image = sitk.Flip(ws.base.labels, [True, False, False], flipAboutOrigin=False)
    assert image.GetDirection()[0] < 0
    path = write_image(image, folder / "flipped-labels.nii.gz")
    return path, ()


def label_three(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    array = ws.base.labels_zyx.copy()
    array[array == 2] = 3  # a multi-class map (e.g. vessels) given by mistake
    return _write(ws, array, folder / "classes.nii.gz"), ("classes.nii.gz", "3", "0/1/2")


def label_255(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    array = (ws.base.labels_zyx > 0).astype(np.uint8) * 255
    return _write(ws, array, folder / "binary255.nii.gz"), ("binary255.nii.gz", "255")


def negative_labels(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    array = ws.base.labels_zyx.astype(np.int16)
    array[array == 0] = -1
    return _write(ws, array, folder / "negative.nii.gz"), ("negative.nii.gz", "-1")


def fractional_labels(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """A probability map instead of labels."""
    array = ws.base.labels_zyx.astype(np.float32) * 0.45
    return _write(ws, array, folder / "probabilities.nii.gz"), (
        "probabilities.nii.gz",
        "non-integer",
    )


def no_liver(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    array = np.zeros_like(ws.base.labels_zyx)
    return _write(ws, array, folder / "empty-labels.nii.gz"), ("empty-labels.nii.gz", "no liver")


def tumour_outside_liver(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """A lesion-sized tumour component far from the liver (in the spleen, say)."""
    array = ws.base.labels_zyx.copy()
    liver = array > 0
    near = ndimage.binary_dilation(liver, iterations=3)
    body = ws.base.hu_zyx > -500
    candidates = np.argwhere(body & ~near)
    centre = candidates[len(candidates) // 2]
    ball = sphere(array.shape, centre, 2.0) & body & ~near
    array[ball] = 2
    path = _write(ws, array, folder / "outside.nii.gz")
    return path, ("outside.nii.gz", "touches no liver parenchyma")


def tumour_fills_liver(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """Every liver voxel is tumour: handled, involvement 100 % and a flag."""
    array = np.where(ws.base.labels_zyx > 0, 2, 0).astype(np.uint8)
    return _write(ws, array, folder / "all-tumour.nii.gz"), ()


def four_dimensional(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    image = sitk.JoinSeries([ws.base.labels, ws.base.labels])
    path = write_image(image, folder / "labels-4d.nii.gz")
    return path, ("labels-4d.nii.gz", "4-D")
