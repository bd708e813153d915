"""Unit tests of the segmentation engine's parts: post-processing transforms,
grid bridges and resampling, bundle configuration checks."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from pipeline.errors import DeviceError, InputError
from pipeline.segment import geometry
from pipeline.segment.bundle import PostprocessingSettings, parse_inference_settings
from pipeline.segment.recipes import inference_settings, stage_recipe, stage_settings
from pipeline.segment.transforms import (
    FillLiverHoles,
    FillLiverHolesd,
    KeepLargestLiverComponent,
    KeepLargestLiverComponentd,
    KeepTumourInsideLiver,
    RemoveSmallTumours,
    fill_holes,
    postprocessing_transform,
)

# ------------------------------------------------------------ post-processing


def _two_livers() -> np.ndarray:
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:12, 2:12, 2:12] = 1  # 1000 voxels
    labels[4:6, 4:6, 4:6] = 2
    labels[15:18, 15:18, 15:18] = 1  # 27 voxels, separate
    labels[16, 16, 16] = 2
    return labels


def test_keep_largest_liver_component_removes_islands_with_their_tumour() -> None:
    result = KeepLargestLiverComponent()(_two_livers())
    assert np.count_nonzero(result) == 1000
    assert np.count_nonzero(result == 2) == 8
    assert result[16, 16, 16] == 0


def test_keep_largest_liver_component_counts_tumour_as_liver() -> None:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[0:3, 0:3, 0:3] = 1
    labels[5:10, 5:10, 5:10] = 2  # the largest component is all tumour
    result = KeepLargestLiverComponent()(labels)
    assert np.count_nonzero(result == 2) == 125 and np.count_nonzero(result == 1) == 0


def test_tumour_touching_no_liver_is_removed() -> None:
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:10, 2:10, 2:10] = 1
    labels[4:6, 4:6, 4:6] = 2  # inside
    labels[9:12, 9:12, 9:12] = 2  # on the liver's edge: touches it
    labels[15:18, 15:18, 15:18] = 2  # floating
    result = KeepTumourInsideLiver()(labels)
    assert result[16, 16, 16] == 0
    assert result[5, 5, 5] == 2 and result[11, 11, 11] == 2


def test_fill_holes_liver_and_tumour() -> None:
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:18, 2:18, 2:18] = 1
    labels[4:7, 4:7, 4:7] = 0  # hole in the liver -> liver
    labels[10:15, 10:15, 10:15] = 2
    labels[12, 12, 12] = 0  # hole in a tumour -> tumour
    result = FillLiverHoles()(labels)
    assert np.all(result[4:7, 4:7, 4:7] == 1)
    assert result[12, 12, 12] == 2
    assert np.count_nonzero(result == 0) == 20**3 - 16**3


def test_fill_holes_keeps_open_cavities() -> None:
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    mask[4:6, 4:6, 4:8] = False  # a channel open to the outside
    assert np.array_equal(fill_holes(mask), mask)
    mask[4:6, 4:6, 7] = True  # now closed
    assert fill_holes(mask)[5, 5, 5]


@pytest.mark.parametrize(("min_volume_mm3", "kept"), [(0.0, 2), (7.0, 1), (27.5, 0)])
def test_remove_small_tumours_by_volume(min_volume_mm3: float, kept: int) -> None:
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[1:19, 1:19, 1:19] = 1
    labels[3:6, 3:6, 3:6] = 2  # 27 voxels = 27 mm3
    labels[10, 10, 10] = 2  # 1 voxel = 1 mm3 (spacing 1 mm)
    result = RemoveSmallTumours(min_volume_mm3, voxel_volume_mm3=1.0)(labels)
    from scipy import ndimage

    assert ndimage.label(result == 2)[1] == kept
    assert np.count_nonzero(result) == np.count_nonzero(labels)  # small tumours become liver


def test_transforms_keep_tensor_type_and_channel() -> None:
    labels = torch.as_tensor(_two_livers())[None]
    result = KeepLargestLiverComponentd(keys="labels")({"labels": labels})["labels"]
    assert isinstance(result, torch.Tensor) and result.shape == labels.shape
    assert int((result > 0).sum()) == 1000
    filled = FillLiverHolesd(keys="labels")({"labels": _two_livers()})["labels"]
    assert isinstance(filled, np.ndarray)


def test_postprocessing_switches() -> None:
    labels = _two_livers()
    none = postprocessing_transform(PostprocessingSettings(False, False, False, 0.0), 1.0)
    assert np.array_equal(none({"labels": labels})["labels"], labels)
    everything = postprocessing_transform(PostprocessingSettings(True, True, True, 10.0), 1.0)
    assert np.count_nonzero(everything({"labels": labels})["labels"]) == 1000


# ------------------------------------------------------------------ geometry


@pytest.mark.parametrize(
    "direction",
    [
        (1, 0, 0, 0, 1, 0, 0, 0, 1),
        (-1, 0, 0, 0, -1, 0, 0, 0, 1),
        (0, 0, 1, 1, 0, 0, 0, 1, 0),
        (-1, 0, 0, 0, 0, 1, 0, -1, 0),
    ],
)
def test_separable_resampling_matches_simpleitk(direction) -> None:
    reference = sitk.Image(30, 25, 20, sitk.sitkFloat32)
    reference.SetSpacing((0.8, 0.9, 2.5))
    reference.SetOrigin((3.0, -7.0, 11.0))
    reference.SetDirection(direction)
    mapping = np.eye(4)
    mapping[:3, :3] = [[0, 2.1, 0], [1.9, 0, 0], [0, 0, -1.3]]  # grid index -> reference index
    mapping[:3, 3] = (-0.4, 0.7, 19.2)
    affine = geometry.ras_affine(reference) @ mapping
    channels = np.random.default_rng(1).random((2, 16, 14, 17)).astype(np.float32)
    fast = geometry.resample_channels_onto(channels, affine, reference)
    source = geometry.channels_to_image(channels, affine)
    slow = sitk.GetArrayFromImage(
        sitk.Resample(
            source, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkVectorFloat32
        )
    )
    slow = np.moveaxis(slow, -1, 0)
    inside = slow.sum(axis=0) > 0
    assert fast.shape == slow.shape == (2, 20, 25, 30)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(fast[:, inside], slow[:, inside], atol=1e-5)


def test_metatensor_geometry() -> None:
    image = sitk.Image(4, 5, 6, sitk.sitkFloat32)
    image.SetSpacing((0.7, 0.8, 2.0))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    tensor = geometry.image_to_metatensor(image)
    assert tuple(tensor.shape) == (1, 6, 5, 4)  # SimpleITK's memory order [z, y, x]
    affine = np.asarray(tensor.affine)
    for index_xyz in [(0, 0, 0), (3, 1, 5), (2, 4, 1)]:
        ras = affine @ np.array([*index_xyz[::-1], 1.0])
        lps = image.TransformIndexToPhysicalPoint(index_xyz)
        np.testing.assert_allclose(ras[:3], (-lps[0], -lps[1], lps[2]), atol=1e-9)


def _linear_ct(direction, flip=(False, False, False)) -> tuple[sitk.Image, np.ndarray]:
    """An image whose value is a linear function of the RAS position of each voxel."""
    image = sitk.Image(37, 23, 11, sitk.sitkFloat32)
    image.SetSpacing((0.7, 0.9, 1.5))
    image.SetOrigin((-5.0, 12.0, 40.0))
    image.SetDirection(direction)
    image = sitk.Flip(image, list(flip))
    weights = np.array([1.0, -2.0, 3.0])
    z, y, x = np.meshgrid(*[np.arange(n) for n in image.GetSize()[::-1]], indexing="ij")
    ras = (geometry.ras_affine(image) @ np.stack([x, y, z, np.ones_like(x)]).reshape(4, -1))[:3]
    values = (weights @ ras).reshape(x.shape).astype(np.float32)
    result = sitk.GetImageFromArray(values)
    result.CopyInformation(image)
    return result, weights


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (0, 0, 1, 1, 0, 0, 0, 1, 0)])
def test_block_average_is_anchored_in_ras_whatever_the_storage(direction) -> None:
    from monai.transforms import Orientation

    from pipeline.segment.transforms import RAS_LABELS, BlockAverage

    results = []
    for flip in [(False, False, False), (True, False, True), (False, True, False)]:
        image, weights = _linear_ct(direction, flip)
        pooled = BlockAverage((2.0, 2.0, 3.0))(geometry.image_to_metatensor(image))
        oriented = Orientation(axcodes="RAS", labels=RAS_LABELS)(pooled)
        # a linear function averages to its value at the block centre: the new affine is right
        affine = np.asarray(oriented.affine)
        grid = np.meshgrid(*[np.arange(n) for n in oriented.shape[1:]], indexing="ij")
        positions = affine @ np.stack([*grid, np.ones_like(grid[0])]).reshape(4, -1)
        expected = (weights @ positions[:3]).reshape(oriented.shape[1:])
        np.testing.assert_allclose(oriented[0].numpy(), expected, atol=1e-3)
        results.append((oriented[0].numpy(), affine))
    for array, affine in results[1:]:
        assert np.array_equal(array, results[0][0])
        np.testing.assert_allclose(affine, results[0][1], atol=1e-9)
    spacing = np.linalg.norm(results[0][1][:3, :3], axis=0)
    assert min(spacing) > 1.3  # every axis averaged at least twice


def test_crop_region_of_a_box_with_margin() -> None:
    image = sitk.Image(100, 100, 50, sitk.sitkFloat32)
    image.SetSpacing((1.0, 1.0, 2.0))
    mask = np.zeros((100, 100, 50), bool)  # [x, y, z] on the same grid
    mask[20:30, 40:60, 10:20] = True
    corners = geometry.physical_box_corners(mask, geometry.ras_affine(image))
    start, size = geometry.index_region_of_corners(corners, image, margin_mm=4.0)
    assert start == (15, 35, 7)
    assert size == (20, 30, 16)
    assert geometry.index_region_of_corners(corners + 1e4, image, 0.0) is None


# -------------------------------------------------------------------- bundles


def _valid_config() -> dict:
    stages = [stage_settings(stage_recipe("liver")), stage_settings(stage_recipe("lesion"))]
    return inference_settings(stages).to_json()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda c: c.pop("stages"), "has no stages"),
        (lambda c: c["stages"][0].pop("weights"), "lacks weights"),
        (lambda c: c["stages"][0].update(classes=["liver", "background"]), "classes"),
        (lambda c: c["stages"][0].update(spacing_mm=[1, 2]), "spacing_mm"),
        (lambda c: c["stages"][0].update(hu_window=[300, -100]), "hu_window"),
        (lambda c: c["stages"][0].update(overlap=1.5), "overlap"),
        (lambda c: c["stages"][0].update(roi_size=[100, 100, 100]), "multiple of size_divisible"),
        (
            lambda c: c["stages"][1].update(crop={"from_stage": "kidney", "margin_mm": 5}),
            "does not run before it",
        ),
        (lambda c: c["stages"][0].update(weights="../elsewhere.pt"), "inside the bundle"),
        (lambda c: c["stages"][0]["network"].update(channels="$__import__('os')"), "expression"),
        (lambda c: c["postprocessing"].update(fill_holes="yes"), "true or false"),
        (lambda c: c["postprocessing"].update(colour="red"), "unknown setting"),
        (lambda c: c["fast"].update(speed=3), "unknown setting"),
        (lambda c: c["stages"][0].update(tta_flips=[[5]]), "tta_flips"),
    ],
)
def test_bad_inference_config_is_refused(change, fragment: str) -> None:
    config = copy.deepcopy(_valid_config())
    change(config)
    with pytest.raises(InputError, match=fragment.replace("(", r"\(").replace("$", r"\$")):
        parse_inference_settings(json.loads(json.dumps(config)))


def test_fast_mode_overrides() -> None:
    settings = parse_inference_settings(_valid_config())
    assert settings.stage("lesion").tta_flips == ((0,),)
    fast = settings.for_fast_mode()
    assert fast.stage("lesion").tta_flips == ()
    assert fast.stage("lesion").overlap == pytest.approx(0.1)


def test_device_choice() -> None:
    from pipeline.segment.predictor import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA GPU"):
            resolve_device("cuda")
