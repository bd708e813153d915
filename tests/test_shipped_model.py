"""The shipped model bundle: loads, and segments a phantom and real CT at least as
well as its model card says, minus a small margin (a regression fails CI).

The thresholds sit a little below the numbers of ``models/liverburden-ct/README.md``
(measured with ``benchmarks/evaluate_model.py``); fast mode keeps this within a
couple of minutes on two CPU cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.io import read_ct, read_label_map
from pipeline.segment.bundle import default_bundle_dir, load_bundle
from pipeline.segment.evaluation import evaluate_case
from tests.conftest import shared_data

#: (liver Dice, tumour Dice, recall of lesions >= 10 mm, involvement error in points)
IRCAD_MINIMUM = (0.84, 0.40, 1.0, 4.0)
PHANTOM_MINIMUM_LIVER_DICE = 0.93


@pytest.fixture(scope="module")
def segmenter():
    from pipeline.segment.predictor import LiverTumourSegmenter

    return LiverTumourSegmenter(default_bundle_dir(), device="cpu", fast=True)


def test_shipped_bundle_is_complete_and_small() -> None:
    folder = default_bundle_dir()
    bundle = load_bundle(folder)
    assert [stage.name for stage in bundle.inference.stages] == ["liver", "lesion"]
    size_mb = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 2**20
    assert size_mb <= 50
    metrics = bundle.metadata["metrics"]["evaluation"]
    assert metrics["real_ct_not_used_for_training"]["cases"] >= 1
    assert (Path(folder) / "README.md").read_text(encoding="utf-8").lower().count("ircad") >= 1


@pytest.mark.slow
def test_shipped_model_segments_a_phantom(segmenter, tmp_path: Path) -> None:
    from pipeline.phantom import generate_scan

    scan = generate_scan(4242, "small")  # a seed no training run used
    portal, _arterial, truth = scan.to_sitk()
    result = segmenter.predict(portal)
    metrics = evaluate_case(
        sitk.GetArrayViewFromImage(result.labels),
        sitk.GetArrayViewFromImage(truth),
        portal.GetSpacing(),
    )
    assert metrics["liver_dice"] >= PHANTOM_MINIMUM_LIVER_DICE, metrics


@pytest.mark.slow
@pytest.mark.realdata
def test_shipped_model_segments_real_ct(segmenter) -> None:
    ct = read_ct(shared_data("ircad-1.17/ct.nii.gz")).image
    truth = read_label_map(shared_data("ircad-1.17/labels.nii.gz"), ct)
    result = segmenter.predict(ct)
    assert result.labels.GetSize() == ct.GetSize()
    metrics = evaluate_case(
        sitk.GetArrayViewFromImage(result.labels),
        sitk.GetArrayViewFromImage(truth),
        ct.GetSpacing(),
    )
    liver, tumour, recall, involvement = IRCAD_MINIMUM
    assert metrics["liver_dice"] >= liver, metrics
    assert (metrics["tumour_dice"] or 0.0) >= tumour, metrics
    assert (metrics["lesion_detection_10mm"]["recall"] or 0.0) >= recall, metrics
    assert metrics["involvement_absolute_error_percentage_points"] <= involvement, metrics
    assert np.isfinite(metrics["liver_hausdorff_95_mm"])
