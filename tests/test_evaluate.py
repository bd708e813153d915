"""``liverburden evaluate`` and the metrics behind it, against hand-computed values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.measure.diameters import axial_diameters
from pipeline.segment.evaluation import (
    dice,
    evaluate_case,
    hausdorff_distance_95,
    involvement_percent,
    summarise_cases,
)
from tests._segment_fixtures import image_from_array
from tests.conftest import assert_clean_error, run_cli


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([1, 1, 0, 0], [1, 0, 0, 0], 2 * 1 / 3),
        ([1, 1, 1, 1], [1, 1, 1, 1], 1.0),
        ([1, 1, 0, 0], [0, 0, 1, 1], 0.0),
        ([0, 0, 0, 0], [0, 0, 0, 0], None),
    ],
)
def test_dice(a, b, expected) -> None:
    result = dice(np.array(a, bool), np.array(b, bool))
    assert result == (None if expected is None else pytest.approx(expected))


def test_hausdorff_95_of_single_voxels_is_their_distance() -> None:
    a = np.zeros((12, 10, 10), bool)
    b = np.zeros((12, 10, 10), bool)
    a[2, 5, 5] = True
    b[9, 5, 6] = True  # 7 slices (z) and 1 column (x) apart
    spacing_xyz = (0.5, 0.7, 2.0)
    assert hausdorff_distance_95(a, b, spacing_xyz) == pytest.approx(np.hypot(7 * 2.0, 1 * 0.5))
    assert hausdorff_distance_95(a, a, spacing_xyz) == 0.0
    assert hausdorff_distance_95(a, np.zeros_like(a), spacing_xyz) is None


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hausdorff_95_agrees_with_monai() -> None:
    from monai.metrics import compute_hausdorff_distance

    z, y, x = np.meshgrid(np.arange(30), np.arange(32), np.arange(34), indexing="ij")
    a = ((x - 16) / 10.0) ** 2 + ((y - 15) / 8.0) ** 2 + ((z - 14) / 9.0) ** 2 < 1
    b = ((x - 18) / 9.0) ** 2 + ((y - 16) / 9.0) ** 2 + ((z - 15) / 8.0) ** 2 < 1
    spacing_xyz = (0.8, 1.1, 2.5)
    ours = hausdorff_distance_95(a, b, spacing_xyz)
    theirs = compute_hausdorff_distance(
        np.asarray(a, np.float32)[None, None],
        np.asarray(b, np.float32)[None, None],
        percentile=95,
        spacing=spacing_xyz[::-1],
        include_background=True,
    )
    assert ours == pytest.approx(float(theirs), rel=1e-4)


def test_involvement_percent() -> None:
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[:, :, :5] = 1
    labels[:2, :, :5] = 2
    assert involvement_percent(labels) == pytest.approx(20.0)
    assert involvement_percent(np.zeros((2, 2, 2), np.uint8)) is None


def _lesion_case() -> tuple[np.ndarray, np.ndarray]:
    """Reference: liver with 3 lesions (one small); prediction finds 2 of them, adds 1 false one."""
    reference = np.zeros((20, 60, 60), np.uint8)
    reference[:, 5:55, 5:55] = 1
    prediction = reference.copy()
    reference[5:10, 10:25, 10:25] = 2  # A: 15 x 15 voxels in-plane (1 mm): measurable
    reference[5:10, 35:50, 10:25] = 2  # B: measurable, missed
    reference[12:15, 40:43, 40:43] = 2  # C: 3 x 3 voxels: below 10 mm
    prediction[5:10, 10:25, 10:29] = 2  # A found, 4 voxels wider
    prediction[12:15, 41:44, 41:44] = 2  # C found
    prediction[15:18, 10:25, 35:50] = 2  # false positive, measurable
    return prediction, reference


def test_lesion_detection_and_diameter_error() -> None:
    prediction, reference = _lesion_case()
    spacing_xyz = (1.0, 1.0, 2.0)
    result = evaluate_case(prediction, reference, spacing_xyz)
    detection = result["lesion_detection"]
    assert (detection["reference_lesions"], detection["detected_reference_lesions"]) == (3, 2)
    assert (detection["predicted_lesions"], detection["true_positive_predicted_lesions"]) == (3, 2)
    assert detection["recall"] == pytest.approx(2 / 3)
    assert detection["precision"] == pytest.approx(2 / 3)
    assert detection["f1"] == pytest.approx(2 / 3)
    measurable = result["lesion_detection_10mm"]
    assert (measurable["reference_lesions"], measurable["detected_reference_lesions"]) == (2, 1)
    assert (measurable["predicted_lesions"], measurable["true_positive_predicted_lesions"]) == (
        2,
        1,
    )
    assert measurable["recall"] == pytest.approx(0.5)
    # matched: A with the wider A, C with the shifted C (same size: no error)
    wide = axial_diameters(prediction[5:10, 10:25, 10:29] == 2, spacing_xyz).longest_mm
    narrow = axial_diameters(reference[5:10, 10:25, 10:25] == 2, spacing_xyz).longest_mm
    assert 2.0 < wide - narrow < 4.5
    assert result["matched_lesions"] == 2
    assert result["longest_axial_diameter_absolute_errors_mm"] == pytest.approx(
        sorted([wide - narrow, 0.0], reverse=True)
    )
    assert result["longest_axial_diameter_mean_absolute_error_mm"] == pytest.approx(
        (wide - narrow) / 2
    )


def test_volumes_involvement_and_tumour_dice_of_a_case() -> None:
    prediction, reference = _lesion_case()
    result = evaluate_case(prediction, reference, (1.0, 1.0, 2.0))
    tumour_reference = 2 * 5 * 15 * 15 + 27
    tumour_prediction = 5 * 15 * 19 + 27 + 3 * 15 * 15
    shared = 5 * 15 * 15 + 2 * 2 * 3
    assert result["tumour_dice"] == pytest.approx(
        2 * shared / (tumour_reference + tumour_prediction)
    )
    assert result["liver_dice"] == pytest.approx(1.0)
    liver_voxels = 20 * 50 * 50
    assert result["involvement_absolute_error_percentage_points"] == pytest.approx(
        100 * abs(tumour_prediction - tumour_reference) / liver_voxels
    )
    assert result["tumour_volume_ml_reference"] == pytest.approx(tumour_reference * 2.0 / 1000)
    assert result["liver_hausdorff_95_mm"] == 0.0


def test_global_tumour_dice_pools_voxels() -> None:
    liver = np.zeros((10, 10, 10), np.uint8)
    liver[1:9, 1:9, 1:9] = 1
    small_ref, small_pred = liver.copy(), liver.copy()
    small_ref[2:4, 2:4, 2:4] = 2  # 8 voxels, missed
    large_ref, large_pred = liver.copy(), liver.copy()
    large_ref[2:8, 2:8, 2:8] = 2  # 216 voxels, found
    large_pred[2:8, 2:8, 2:8] = 2
    cases = {
        "small": evaluate_case(small_pred, small_ref, (1, 1, 1), min_lesion_volume_ml=0),
        "large": evaluate_case(large_pred, large_ref, (1, 1, 1), min_lesion_volume_ml=0),
        "none": evaluate_case(liver, liver, (1, 1, 1)),
    }
    summary = summarise_cases(cases)
    assert cases["small"]["tumour_dice"] == 0.0 and cases["none"]["tumour_dice"] is None
    assert summary["tumour_dice_mean"] == pytest.approx(0.5)
    assert summary["tumour_dice_global"] == pytest.approx(2 * 216 / (216 + 8 + 216))
    assert summary["lesion_detection"]["recall"] == pytest.approx(0.5)
    assert summary["lesion_detection"]["precision"] == pytest.approx(1.0)
    assert summary["cases"] == 3


# ------------------------------------------------------------------- command


def _write(labels: np.ndarray, path: Path, spacing=(1.0, 1.0, 2.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image_from_array(labels, spacing), str(path))
    return path


def test_evaluate_files(tmp_path: Path) -> None:
    prediction, reference = _lesion_case()
    result = run_cli(
        "evaluate",
        _write(prediction, tmp_path / "p.nii.gz"),
        _write(reference, tmp_path / "t.nii.gz"),
        "-o",
        tmp_path / "m.json",
    )
    assert result.exit_code == 0, result.stderr
    assert "liver Dice" in result.stdout and "lesions >= 10 mm" in result.stdout
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert metrics["schema_version"] and metrics["liverburden_version"]
    assert metrics["global"]["lesion_detection"]["recall"] == pytest.approx(2 / 3)
    assert list(metrics["cases"]) == ["t"]


@pytest.mark.parametrize("layout", ["same_names", "case_folders"])
def test_evaluate_folders(tmp_path: Path, layout: str) -> None:
    prediction, reference = _lesion_case()
    for case in ("a", "b"):
        if layout == "same_names":
            _write(prediction, tmp_path / "pred" / f"{case}.nii.gz")
            _write(reference, tmp_path / "truth" / f"{case}.nii.gz")
        else:
            # a phantom cohort's layout: the CT beside the labels
            _write(prediction, tmp_path / "pred" / case / "baseline" / "segmentation.nii.gz")
            _write(reference, tmp_path / "truth" / case / "baseline" / "labels.nii.gz")
            _write(np.zeros_like(reference), tmp_path / "truth" / case / "baseline" / "ct.nii.gz")
    result = run_cli("evaluate", tmp_path / "pred", tmp_path / "truth", "-o", tmp_path / "m.json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert sorted(metrics["cases"]) == (
        ["a", "b"] if layout == "same_names" else ["a/baseline", "b/baseline"]
    )
    assert metrics["global"]["lesion_detection"]["reference_lesions"] == 6


def test_evaluate_missing_prediction_is_an_error(tmp_path: Path) -> None:
    prediction, reference = _lesion_case()
    _write(prediction, tmp_path / "pred" / "a.nii.gz")
    _write(reference, tmp_path / "truth" / "a.nii.gz")
    _write(reference, tmp_path / "truth" / "b.nii.gz")
    result = run_cli("evaluate", tmp_path / "pred", tmp_path / "truth", "-o", tmp_path / "m.json")
    assert_clean_error(result, "no prediction for 1 reference case(s): b")
    assert not (tmp_path / "m.json").exists()


def test_evaluate_different_grids_is_an_error(tmp_path: Path) -> None:
    prediction, reference = _lesion_case()
    result = run_cli(
        "evaluate",
        _write(prediction, tmp_path / "p.nii.gz", spacing=(1.0, 1.0, 3.0)),
        _write(reference, tmp_path / "t.nii.gz"),
        "-o",
        tmp_path / "m.json",
    )
    assert_clean_error(result, "different grid")
    assert not (tmp_path / "m.json").exists()
