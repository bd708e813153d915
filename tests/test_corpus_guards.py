"""Silent-error guards: each flag is raised and travels end to end on a tiny case.

Subject G1, two time points of the base phantom:

* baseline: segmented by ``liverburden segment`` with the test bundle whose
  confidence threshold is raised above any mean probability: the segmentation
  flag ``low_liver_confidence``;
* follow-up: a label map holding only a slab of the liver (below 500 mL): the
  measure flag ``liver_volume_implausible``; its liver cannot be aligned with
  the baseline's: the response flag ``matching_unreliable``.

Each flag must appear in ``measurements.json`` (the first two), ``response.json``,
``cohort.csv`` and the HTML report. Guards of values that cannot occur
(involvement outside 0-100 %) are checked where the numbers are made and where
they are read back.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.measure.volumes import involvement_percent
from tests._corpus_fixtures import corpus_workspace
from tests.conftest import assert_clean_error, run_cli
from tests.corpus import Workspace
from tests.corpus.base import (
    BASE_DATE,
    FOLLOW_UP_DATE,
    fast_segment_args,
    image_like,
    write_image,
)
from tests.corpus.measurements import copy_measure

__all__ = ["corpus_workspace"]

#: The thresholds of the guards (documented in docs/robustness.md).
LIVER_VOLUME_PLAUSIBLE_ML = (500.0, 5000.0)


def _ok(*args: object) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr


def _strict_bundle(source: Path, target: Path) -> Path:
    """A copy of the test bundle whose confidence threshold no segmentation reaches."""
    shutil.copytree(source, target)
    path = target / "configs" / "inference.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["quality"]["min_mean_liver_probability"] = 0.9999
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def guarded(
    corpus_workspace: Workspace, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    ws = corpus_workspace
    root = tmp_path_factory.mktemp("guards")
    bundle = _strict_bundle(ws.bundle, root / "bundle")
    segmentation = root / "baseline" / "segmentation.nii.gz"
    _ok(*fast_segment_args(ws.ct_path, segmentation, bundle), "-q")
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(segmentation)))
    if not np.any(labels == 1):  # pragma: no cover - an untrained bundle may find nothing
        pytest.skip("the bundle found no liver in the test scan (no trained test bundle)")
    # follow-up: a slab of the true liver (about 400 mL) around the first lesion, shrunk
    follow = sitk.GetArrayFromImage(ws.base.follow_up_labels)
    voxel_ml = float(np.prod(ws.base.ct.GetSpacing())) / 1000.0
    centre = ws.base.lesion_centres_zyx[0][0]
    low, high = centre, centre + 1
    while np.count_nonzero(follow[low - 1 : high + 1]) * voxel_ml < 400.0:
        low, high = low - 1, high + 1
    slab = np.zeros_like(follow)
    slab[low:high] = follow[low:high]
    small = write_image(image_like(slab, ws.base.ct), root / "follow-up-labels.nii.gz")
    measured = [root / "baseline" / "measure", root / "fu1" / "measure"]
    _ok(
        "measure",
        ws.ct_path,
        segmentation,
        "-o",
        measured[0],
        "--subject",
        "G1",
        "--timepoint",
        "baseline",
        "--date",
        BASE_DATE,
        "-q",
    )
    _ok(
        "measure",
        ws.ct_path,
        small,
        "-o",
        measured[1],
        "--subject",
        "G1",
        "--timepoint",
        "fu1",
        "--date",
        FOLLOW_UP_DATE,
        "-q",
    )
    response = root / "response.json"
    _ok("respond", *measured, "-o", response, "-q")
    _ok(
        "report",
        *measured,
        "--images",
        ws.ct_path,
        ws.ct_path,
        "--response",
        response,
        "-o",
        root / "report.html",
        "-q",
    )
    _ok("cohort", *measured, "--responses", response, "-o", root / "cohort.csv", "-q")
    with (root / "cohort.csv").open(encoding="utf-8") as handle:
        rows = {row["timepoint"]: row for row in csv.DictReader(handle)}
    return {
        "measurements": [
            json.loads((m / "measurements.json").read_text(encoding="utf-8")) for m in measured
        ],
        "response": json.loads(response.read_text(encoding="utf-8")),
        "html": (root / "report.html").read_text(encoding="utf-8"),
        "cohort": rows,
        "measured": measured,
    }


def _codes(flags: list[dict[str, Any]], timepoint: str | None = None) -> set[str]:
    return {f["code"] for f in flags if timepoint is None or f.get("timepoint") == timepoint}


def _response_codes(response: dict[str, Any], timepoint: str) -> set[str]:
    codes = _codes(response["flags"], timepoint)
    for entry in response["timepoints"]:
        if entry["timepoint"] == timepoint:
            codes |= _codes(entry.get("flags") or [])
            codes |= _codes((entry.get("matching") or {}).get("flags") or [])
    return codes


def test_low_segmentation_confidence_travels(guarded: dict[str, Any]) -> None:
    code = "segmentation_low_liver_confidence"
    baseline = guarded["measurements"][0]
    assert code in _codes(baseline["flags"])
    assert "low_liver_confidence" in baseline["segmentation"]["flags"]
    assert code in _response_codes(guarded["response"], "baseline")
    assert code in guarded["cohort"]["baseline"]["flags"]
    assert code in guarded["html"] or "unsure of the liver" in guarded["html"]


def test_implausible_liver_volume_travels(guarded: dict[str, Any]) -> None:
    follow_up = guarded["measurements"][1]
    low, high = LIVER_VOLUME_PLAUSIBLE_ML
    assert not low <= follow_up["liver_volume_ml"] <= high
    assert "liver_volume_implausible" in _codes(follow_up["flags"])
    assert follow_up["segmentation"] is None  # a hand-made label map: no model, no model flags
    assert "liver_volume_implausible" in _response_codes(guarded["response"], "fu1")
    assert "liver_volume_implausible" in guarded["cohort"]["fu1"]["flags"]
    assert "liver_volume_implausible" in guarded["html"] or "plausible" in guarded["html"]


def test_unreliable_matching_travels_into_response_and_report(guarded: dict[str, Any]) -> None:
    assert "matching_unreliable" in _response_codes(guarded["response"], "fu1")
    matching = guarded["response"]["timepoints"][0]["matching"]
    assert matching["reliable"] is False and matching["liver_dice"] < 0.85
    assert "matching_unreliable" in guarded["html"]


def test_unreliable_matching_travels_into_cohort(guarded: dict[str, Any]) -> None:
    """respond writes it into the top-level flags with its time point: on fu1's row only."""
    assert "warning:matching_unreliable" in guarded["cohort"]["fu1"]["flags"].split(";")
    assert "matching_unreliable" not in guarded["cohort"]["baseline"]["flags"]


def test_edited_segmentation_is_flagged(
    guarded: dict[str, Any], corpus_workspace: Workspace, tmp_path: Path
) -> None:
    """A label map changed after the model made it keeps the model's flags, and says so."""
    folder = guarded["measured"][0].parent
    edited = tmp_path / "segmentation.nii.gz"
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "segmentation.nii.gz")))
    reference = sitk.ReadImage(str(folder / "segmentation.nii.gz"))
    array[array == 0] = (
        np.where(np.arange(array[array == 0].size) < 50, 1, 0).astype(array.dtype) * 0
    )
    liver = np.argwhere(array == 1)
    array[tuple(liver[:40].T)] = 0  # a reader erased 40 voxels
    write_image(image_like(array, reference), edited)
    shutil.copyfile(folder / "segmentation.json", tmp_path / "segmentation.json")
    out = tmp_path / "measure"
    _ok(
        "measure",
        corpus_workspace.ct_path,
        edited,
        "-o",
        out,
        "--subject",
        "G1",
        "--timepoint",
        "baseline",
        "--date",
        BASE_DATE,
        "-q",
    )
    codes = _codes(json.loads((out / "measurements.json").read_text(encoding="utf-8"))["flags"])
    assert {"segmentation_edited", "segmentation_low_liver_confidence"} <= codes


def test_a_foreign_json_beside_the_label_map_is_ignored(
    corpus_workspace: Workspace, tmp_path: Path
) -> None:
    labels = tmp_path / "mask.nii.gz"
    shutil.copyfile(corpus_workspace.labels_path, labels)
    (tmp_path / "mask.json").write_text(
        '{"kind": "something else", "flags": ["x"]}', encoding="utf-8"
    )
    out = tmp_path / "measure"
    _ok("measure", corpus_workspace.ct_path, labels, "-o", out, "--date", BASE_DATE, "-q")
    data = json.loads((out / "measurements.json").read_text(encoding="utf-8"))
    assert data["segmentation"] is None and not any(
        f["code"].startswith("segmentation") for f in data["flags"]
    )


@pytest.mark.parametrize(("tumour", "liver"), [(2.0, 1.0), (-1.0, 5.0), (1.0, -1.0)])
def test_involvement_outside_0_to_100_cannot_be_computed(tumour: float, liver: float) -> None:
    with pytest.raises(ValueError):
        involvement_percent(tumour, liver)


@pytest.mark.parametrize("command", ["respond", "report", "cohort"])
@pytest.mark.parametrize("value", [150.0, -5.0, 100.5, float("nan")])
def test_involvement_outside_0_to_100_is_refused_when_read(
    command: str, value: float, corpus_workspace: Workspace, tmp_path: Path
) -> None:
    ws = corpus_workspace
    edited = copy_measure(ws.follow_up_measure, tmp_path / "fu1-edited", involvement_percent=value)
    out = tmp_path / "out"
    if command == "respond":
        args: list[object] = ["respond", ws.baseline_measure, edited, "-o", out / "response.json"]
    elif command == "report":
        args = ["report", ws.baseline_measure, edited, "-o", out / "report.html"]
    else:
        args = ["cohort", ws.baseline_measure, edited, "-o", out / "cohort.csv"]
    result = run_cli(*args)
    assert_clean_error(result, "involvement_percent", "fu1-edited", "expected a percentage")
    assert not out.exists() or not any(out.iterdir())
