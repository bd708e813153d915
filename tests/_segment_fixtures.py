"""Fixtures of the segmentation, evaluation and training tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

TINY_BUNDLE = Path(__file__).resolve().parent / "data" / "tiny_bundle"
#: Phantom seed never used to train the tiny bundle (it was trained on seeds 0-29).
TEST_PHANTOM_SEED = 1000


def image_from_array(
    array_zyx: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None
) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    if direction is not None:
        image.SetDirection(tuple(float(d) for d in direction))
    return image


def synthetic_ct(
    shape_zyx=(40, 64, 64), spacing=(4.0, 4.0, 5.0), seed: int = 0
) -> tuple[sitk.Image, sitk.Image]:
    """A quick abdomen-like CT (HU) and its label map: body, liver with one lesion."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape_zyx], indexing="ij")
    nz, ny, nx = shape_zyx
    ct = np.full(shape_zyx, -1000.0)
    body = ((x - nx / 2) / (0.45 * nx)) ** 2 + ((y - ny / 2) / (0.35 * ny)) ** 2 < 1
    ct[body] = -100.0
    liver = ((x - 0.35 * nx) / (0.2 * nx)) ** 2 + ((y - 0.45 * ny) / (0.2 * ny)) ** 2 + (
        (z - nz / 2) / (0.3 * nz)
    ) ** 2 < 1
    lesion = ((x - 0.35 * nx) / 3) ** 2 + ((y - 0.45 * ny) / 3) ** 2 + ((z - nz / 2) / 2.5) ** 2 < 1
    ct[liver] = 110.0
    ct[lesion] = 40.0
    ct += rng.normal(0.0, 10.0, shape_zyx)
    labels = np.zeros(shape_zyx, np.uint8)
    labels[liver] = 1
    labels[lesion] = 2
    return image_from_array(ct.astype(np.float32), spacing), image_from_array(labels, spacing)


def write_dicom_series(image: sitk.Image, folder: Path) -> Path:
    """Write a CT image as a DICOM series (int16 with a HU rescale) with SimpleITK's writer."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = sitk.Cast(sitk.Round(image), sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series_uid = "1.2.826.0.1.3680043.8.498.1"
    direction = image.GetDirection()
    orientation = "\\".join(
        f"{v:.6f}"
        for v in (
            direction[0],
            direction[3],
            direction[6],
            direction[1],
            direction[4],
            direction[7],
        )
    )
    for k in range(image.GetDepth()):
        slice_image = pixels[:, :, k]
        origin = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000e": series_uid,
            "0020|000d": "1.2.826.0.1.3680043.8.498.2",
            "0020|0052": "1.2.826.0.1.3680043.8.498.3",
            "0008|0020": "20240102",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in origin),
            "0020|0037": orientation,
            "0028|1052": "0",
            "0028|1053": "1",
            "0028|1054": "HU",
            "0018|0050": f"{image.GetSpacing()[2]:.6f}",
        }
        for key, value in tags.items():
            slice_image.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"slice{k:04d}.dcm"))
        writer.Execute(slice_image)
    return folder


@pytest.fixture(scope="session")
def phantom_scan(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A small phantom the tiny bundle never saw: ``ct`` and ``labels`` images and their files."""
    from pipeline.phantom.scan import generate_scan

    scan = generate_scan(TEST_PHANTOM_SEED, "small")
    ct, _arterial, labels = scan.to_sitk()
    folder = tmp_path_factory.mktemp("phantom")
    sitk.WriteImage(ct, str(folder / "ct.nii.gz"))
    sitk.WriteImage(labels, str(folder / "labels.nii.gz"))
    return {
        "ct": ct,
        "labels": labels,
        "ct_path": folder / "ct.nii.gz",
        "labels_path": folder / "labels.nii.gz",
    }


def copy_bundle(target: Path) -> Path:
    shutil.copytree(TINY_BUNDLE, target)
    return target


def edit_inference(bundle: Path, change) -> None:
    path = bundle / "configs" / "inference.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data))
