"""Segmentation and evaluation on real CT (../shared/data; skipped without it).

The tiny test bundle was trained on phantoms, so these tests check the
machinery on real files (grids, DICOM, metrics), not accuracy on real anatomy.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import SimpleITK as sitk

from pipeline.io import read_ct, same_grid
from tests._segment_fixtures import TINY_BUNDLE
from tests.conftest import run_cli, shared_data

pytestmark = pytest.mark.realdata


@pytest.mark.parametrize("relative", ["ircad-1.17/ct.nii.gz", "totalseg-example/ct_dicom"])
def test_segment_real_ct_on_its_own_grid(relative: str, tmp_path: Path) -> None:
    source = shared_data(relative)
    output = tmp_path / "segmentation.nii.gz"
    result = run_cli(
        "segment", source, "-o", output, "--model", TINY_BUNDLE, "--device", "cpu", "--fast"
    )
    assert result.exit_code == 0, result.stderr
    labels = sitk.ReadImage(str(output))
    assert same_grid(labels, read_ct(source).image, tolerance_voxels=1e-6)
    record = json.loads((tmp_path / "segmentation.json").read_text(encoding="utf-8"))
    assert record["input_geometry"]["size"] == list(labels.GetSize())
    assert str(source) not in json.dumps(record)


def test_evaluate_real_reference_against_itself(tmp_path: Path) -> None:
    labels = shared_data("ircad-1.17/labels.nii.gz")
    result = run_cli("evaluate", labels, labels, "-o", tmp_path / "metrics.json")
    assert result.exit_code == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))["global"]
    assert metrics["liver_dice_mean"] == 1.0 and metrics["tumour_dice_global"] == 1.0
    assert metrics["liver_hausdorff_95_mm_mean"] == 0.0
    detection = metrics["lesion_detection"]
    assert detection["reference_lesions"] == 2  # the two expert-annotated lesions of patient 17
    assert detection["recall"] == 1.0 and detection["precision"] == 1.0
    assert metrics["longest_axial_diameter_mean_absolute_error_mm"] == 0.0
