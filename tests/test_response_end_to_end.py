"""End to end: CT scans and label maps -> ``liverburden measure`` -> ``liverburden respond``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from tests._response_fixtures import (
    Motion,
    measure_phantom_cohort_with_truth,
    read_response,
    sphere,
    write_ct_scene,
)
from tests.conftest import assert_clean_error, run_cli, shared_data

A_CENTRE = (30.0, -15.0, 0.0)
B_CENTRE = (-55.0, 35.0, -15.0)
C_CENTRE = (5.0, 25.0, 20.0)


def _measure(paths: dict[str, Path], output: Path, date: str, timepoint: str) -> Path:
    args: list[str | Path] = [
        "measure",
        paths["ct"],
        paths["labels"],
        "-o",
        output,
        "--date",
        date,
        "--timepoint",
        timepoint,
        "--subject",
        "NET-01",
    ]
    if "arterial" in paths:
        args += ["--arterial", paths["arterial"]]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    return output


@pytest.mark.slow
def test_tace_follow_up_with_motion_through_measure_and_respond(tmp_path: Path) -> None:
    """After TACE, lesion A is lipiodol with a small viable nodule, lesion B necrotic; the
    patient lies 2 cm off and rotated at follow-up. RECIST sees no shrinkage, mRECIST a
    partial and then a complete response."""
    baseline = {
        1: [sphere(A_CENTRE, 30.0)],
        2: [sphere(B_CENTRE, 22.0)],
        3: [sphere(C_CENTRE, 8.0)],
    }
    nodule_centre = (A_CENTRE[0] + 16.0, A_CENTRE[1], A_CENTRE[2])
    after = {
        1: [sphere(A_CENTRE, 30.0), sphere(nodule_centre, 12.0)],
        2: [sphere(B_CENTRE, 22.0)],
        3: [sphere(C_CENTRE, 8.0)],
    }
    scans = [
        write_ct_scene(tmp_path / "ct0", baseline, arterial=True),
        write_ct_scene(
            tmp_path / "ct1",
            after,
            arterial=True,
            motion=Motion((20.0, -12.0, 6.0), 4.0),
            lipiodol=[sphere(A_CENTRE, 30.5)],
            necrosis=[sphere(B_CENTRE, 22.5)],
        ),
        write_ct_scene(
            tmp_path / "ct2",
            baseline,
            arterial=True,
            motion=Motion((-10.0, 15.0, 0.0), -3.0),
            lipiodol=[sphere(A_CENTRE, 30.5)],
            necrosis=[sphere(B_CENTRE, 22.5), sphere(C_CENTRE, 8.5)],
        ),
    ]
    folders = [
        _measure(scans[0], tmp_path / "m0", "2024-01-15", "baseline"),
        _measure(scans[1], tmp_path / "m1", "2024-03-20", "fu1"),
        _measure(scans[2], tmp_path / "m2", "2024-06-05", "fu2"),
    ]
    output = tmp_path / "response.json"
    result = run_cli("respond", *folders[::-1], "-o", output)
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = read_response(output)
    assert data["subject"] == "NET-01"
    assert [t["key"] for t in data["baseline"]["targets"]] == ["L1", "L2"]
    assert [t["key"] for t in data["baseline"]["mrecist"]["targets"]] == ["L1", "L2"]
    first, second = data["timepoints"]
    for timepoint in (first, second):
        assert timepoint["matching"]["reliable"], timepoint["matching"]
        assert {k: v["status"] for k, v in timepoint["lesions"].items()} == {
            "L1": "matched",
            "L2": "matched",
            "L3": "matched",
        }
    assert first["matching"]["rotation_degrees"] == pytest.approx(4.0, abs=1.5)
    # RECIST: lesion A grew a nodule, B unchanged: no shrinkage
    assert first["recist"]["overall_response"] == "SD"
    assert first["recist"]["change_from_baseline_percent"] > 0
    # mRECIST: only A's nodule is viable
    mrecist = first["mrecist"]
    viable_a = next(t for t in mrecist["targets"] if t["key"] == "L1")["measured_mm"]
    assert 5.0 < viable_a < 20.0
    assert next(t for t in mrecist["targets"] if t["key"] == "L2")["measured_mm"] == 0.0
    assert mrecist["target_response"] == "PR"
    assert mrecist["overall_response"] == "PR"
    assert second["mrecist"]["target_response"] == "CR"
    assert second["mrecist"]["overall_response"] == "CR"
    assert first["volumetric"]["viable_response"] == "PR"
    assert data["best_overall_response"]["mrecist"] == "CR"
    assert data["best_overall_response"]["recist"] == "SD"
    # lipiodol is dense: attenuation rises, no Choi response by attenuation
    assert first["choi"]["attenuation_change_percent"] > 0


def _truth_origin(
    truth_timepoints: list[dict[str, Any]],
    measured: dict[str, dict[str, Any]],
    timepoint: str,
    lesion_id: int,
) -> str:
    """The truth lesion a measured lesion is (nearest centroid on the same scan); for a
    fragment, the lesion it split from."""
    lesion = next(item for item in measured[timepoint]["lesions"] if item["id"] == lesion_id)
    entry = next(item for item in truth_timepoints if item["timepoint"] == timepoint)

    def distance(truth: dict[str, Any]) -> float:
        pairs = zip(lesion["centroid_mm"], truth["centroid_mm"], strict=True)
        return sum((a - b) ** 2 for a, b in pairs)

    nearest = min(entry["lesions"], key=distance)
    return nearest.get("split_from") or nearest["lesion_key"]


@pytest.mark.slow
def test_phantom_cohort_responses_and_lesion_identity_match_the_truth(tmp_path: Path) -> None:
    """``liverburden phantom`` -> ``measure`` (truth masks, arterial images) -> ``respond``.

    Four subjects: partial response after conventional TACE (lipiodol, a vanished
    non-target), progression (a non-target splits in two), a new lesion, necrosis after
    treatment (same size, no enhancement left: RECIST SD, mRECIST and Choi PR); each
    follow-up in a different patient position.
    """
    cohort = tmp_path / "cohort"
    result = run_cli("phantom", cohort, "--size", "tiny", "--subjects", "4", "-q")
    assert result.exit_code == 0, result.stderr
    truth = json.loads((cohort / "truth.json").read_text(encoding="utf-8"))
    by_subject = measure_phantom_cohort_with_truth(cohort, tmp_path / "measure")
    assert len(by_subject) == 4
    assert truth["subjects"]["demo-04"]["scenario"] == "necrosis"
    for subject, folders in by_subject.items():
        output = tmp_path / f"{subject}.json"
        result = run_cli("respond", *folders, "-o", output, "-q")
        assert result.exit_code == 0, result.stderr
        data = read_response(output)
        expected = truth["subjects"][subject]
        scenario = expected["scenario"]
        for timepoint, wanted in zip(
            data["timepoints"], expected["expected_response"], strict=True
        ):
            assert timepoint["timepoint"] == wanted["timepoint"]
            assert timepoint["matching"]["reliable"], (subject, timepoint["matching"])
            for criterion in ("recist", "mrecist", "choi", "volumetric"):
                assert timepoint[criterion]["overall_response"] == wanted[criterion], (
                    subject,
                    scenario,
                    criterion,
                    timepoint[criterion]["reasons"],
                )
        assert data["best_overall_response"] == expected["expected_best_overall_response"]

        # lesion identity: every key follows one truth lesion (or its fragments) over time
        measured = {
            folder.name: json.loads((folder / "measurements.json").read_text(encoding="utf-8"))
            for folder in folders
        }
        followed: dict[str, str] = {}
        listed = [(data["baseline"]["timepoint"], data["baseline"]["lesions"])]
        listed += [(t["timepoint"], t["lesions"]) for t in data["timepoints"]]
        for label, lesions in listed:
            for key, entry in lesions.items():
                for lesion_id in entry["ids"]:
                    origin = _truth_origin(expected["timepoints"], measured, label, lesion_id)
                    assert followed.setdefault(key, origin) == origin, (
                        subject,
                        label,
                        key,
                        lesion_id,
                    )
        for timepoint in data["timepoints"]:
            if scenario == "progression":
                assert any(e["status"] == "split" for e in timepoint["lesions"].values())
            if scenario == "new_lesion":
                assert [k for k, e in timepoint["lesions"].items() if e["status"] == "new"]


@pytest.mark.slow
def test_measure_folders_of_two_subjects_are_refused(tmp_path: Path) -> None:
    lesions = {1: [sphere(A_CENTRE, 20.0)]}
    first = _measure(
        write_ct_scene(tmp_path / "a", lesions), tmp_path / "m0", "2024-01-15", "baseline"
    )
    second_paths = write_ct_scene(tmp_path / "b", lesions)
    second = tmp_path / "m1"
    result = run_cli(
        "measure",
        second_paths["ct"],
        second_paths["labels"],
        "-o",
        second,
        "--date",
        "2024-03-01",
        "--subject",
        "NET-02",
    )
    assert result.exit_code == 0, result.stderr
    output = tmp_path / "response.json"
    assert_clean_error(run_cli("respond", first, second, "-o", output), "different subjects")
    assert not output.exists()


@pytest.mark.slow
@pytest.mark.realdata
def test_real_liver_follow_up_moved_and_one_lesion_shrunk(tmp_path: Path) -> None:
    """3D-IRCADb patient 17 (expert liver and tumour masks): the follow-up is the same
    scan with the patient rotated by 5 degrees about the liver and shifted by 2.6 cm, and
    lesion 2 shrunk by 3 voxels all round. Matching must pair both lesions on the real
    512 x 512 grid."""
    ct_path = shared_data("ircad-1.17/ct.nii.gz")
    labels_path = shared_data("ircad-1.17/labels.nii.gz")
    baseline = tmp_path / "m0"
    result = run_cli(
        "measure",
        ct_path,
        labels_path,
        "-o",
        baseline,
        "--date",
        "2020-01-01",
        "--subject",
        "IRCAD-17",
        "--timepoint",
        "baseline",
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    measured = json.loads((baseline / "measurements.json").read_text(encoding="utf-8"))
    assert measured["lesion_count"] == 2
    ct = sitk.ReadImage(str(ct_path))
    labels = sitk.ReadImage(str(labels_path))
    lesion_map = sitk.GetArrayFromImage(sitk.ReadImage(str(baseline / "lesions.nii.gz")))
    label_array = sitk.GetArrayFromImage(labels)
    shrunk = lesion_map == 2
    label_array[shrunk & ~ndimage.binary_erosion(shrunk, iterations=3)] = 1
    shrunk_labels = sitk.GetImageFromArray(label_array)
    shrunk_labels.CopyInformation(labels)
    motion = sitk.Euler3DTransform()
    motion.SetCenter(tuple(measured["liver_centroid_mm"]))
    motion.SetRotation(0.0, 0.0, np.deg2rad(5.0))
    motion.SetTranslation((20.0, -15.0, 8.0))
    sitk.WriteImage(
        sitk.Resample(ct, ct, motion, sitk.sitkLinear, -1024.0), str(tmp_path / "ct1.nii.gz")
    )
    sitk.WriteImage(
        sitk.Resample(shrunk_labels, labels, motion, sitk.sitkNearestNeighbor, 0),
        str(tmp_path / "labels1.nii.gz"),
    )
    follow_up = tmp_path / "m1"
    result = run_cli(
        "measure",
        tmp_path / "ct1.nii.gz",
        tmp_path / "labels1.nii.gz",
        "-o",
        follow_up,
        "--date",
        "2020-04-01",
        "--subject",
        "IRCAD-17",
        "--timepoint",
        "fu1",
        "-q",
    )
    assert result.exit_code == 0, result.stderr
    output = tmp_path / "response.json"
    result = run_cli("respond", baseline, follow_up, "-o", output, "-q")
    assert result.exit_code == 0, result.stderr
    data = read_response(output)
    timepoint = data["timepoints"][0]
    matching = timepoint["matching"]
    assert matching["reliable"] and matching["liver_dice"] > 0.97
    assert matching["rotation_degrees"] == pytest.approx(5.0, abs=1.0)
    follow_measured = json.loads((follow_up / "measurements.json").read_text(encoding="utf-8"))
    smaller = min(follow_measured["lesions"], key=lambda lesion: lesion["volume_ml"])["id"]
    assert timepoint["lesions"]["L2"]["ids"] == [smaller]
    assert timepoint["lesions"]["L1"]["ids"] == [3 - smaller]
    assert all(entry["centroid_distance_mm"] < 5.0 for entry in timepoint["lesions"].values())
    assert timepoint["recist"]["target_sum_mm"] < data["baseline"]["sum_mm"]
    assert timepoint["volumetric"]["change_from_baseline_percent"] < -10
