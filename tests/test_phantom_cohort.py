"""The phantom cohort on disk: files, sheets, truth.json, scenarios and the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from pipeline import SCHEMA_VERSION, __version__
from pipeline.io import read_ct, read_label_map
from pipeline.phantom import generate_cohort
from pipeline.phantom.cohort import SHEET_COLUMNS
from pipeline.phantom.scenarios import INTENDED, SCENARIOS
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven tiny subjects: one of each scenario."""
    outdir = tmp_path_factory.mktemp("phantom") / "cohort"
    result = run_cli("phantom", outdir, "--subjects", "7", "--size", "tiny", "--seed", "3", "-q")
    assert result.exit_code == 0, result.stderr
    return outdir


@pytest.fixture(scope="module")
def truth(cohort: Path) -> dict:
    return json.loads((cohort / "truth.json").read_text(encoding="utf-8"))


def _sheet(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _timepoints(truth: dict):
    for name, subject in truth["subjects"].items():
        for tp in subject["timepoints"]:
            yield name, subject, tp


# ------------------------------------------------------------------ layout and sheets


def test_truth_header_and_subjects(truth: dict) -> None:
    assert truth["schema_version"] == SCHEMA_VERSION
    assert truth["liverburden_version"] == __version__
    assert truth["seed"] == 3 and truth["size"] == "tiny"
    assert list(truth["subjects"]) == [f"demo-{i:02d}" for i in range(1, 8)]
    assert [s["scenario"] for s in truth["subjects"].values()] == list(SCENARIOS)


@pytest.mark.parametrize("sheet_name", ["samples.tsv", "samples_truth.tsv"])
def test_sample_sheets(cohort: Path, truth: dict, sheet_name: str) -> None:
    rows = _sheet(cohort / sheet_name)
    assert tuple(rows[0]) == SHEET_COLUMNS
    assert len(rows) == sum(len(s["timepoints"]) for s in truth["subjects"].values())
    for row in rows:
        assert (cohort / row["image"]).is_file() and (cohort / row["arterial_image"]).is_file()
        assert row["image"].endswith("ct.nii.gz") and row["arterial_image"].endswith(
            "arterial.nii.gz"
        )
        assert dt.date.fromisoformat(row["date"]).isoformat() == row["date"]
        assert row["treatment"]
        if sheet_name == "samples.tsv":
            assert row["mask"] == ""
        else:
            assert (cohort / row["mask"]).is_file()
    by_subject: dict[str, list[str]] = {}
    for row in rows:
        by_subject.setdefault(row["subject"], []).append(row["date"])
    for dates in by_subject.values():
        days = np.diff([dt.date.fromisoformat(d).toordinal() for d in dates])
        assert np.all((days >= 56) & (days <= 84))


def test_images_are_readable_by_the_pipeline(cohort: Path) -> None:
    row = _sheet(cohort / "samples_truth.tsv")[0]
    portal = read_ct(cohort / row["image"])
    arterial = read_ct(cohort / row["arterial_image"])
    labels = read_label_map(cohort / row["mask"], portal.image)
    assert portal.image.GetSize() == arterial.image.GetSize()
    assert portal.image.GetOrigin() == arterial.image.GetOrigin()
    assert labels.GetPixelID() == sitk.sitkUInt8
    assert sitk.ReadImage(str(cohort / row["image"])).GetPixelID() == sitk.sitkInt16


# ------------------------------------------------------------------ truth versus label maps


def test_truth_volumes_equal_label_voxel_counts(cohort: Path, truth: dict) -> None:
    for _, _, tp in _timepoints(truth):
        labels = _array(cohort / tp["labels"])
        assert set(np.unique(labels)) <= {0, 1, 2}
        voxel_ml = float(np.prod(tp["grid"]["spacing_mm"])) / 1000
        assert tp["liver_volume_ml"] == pytest.approx((labels > 0).sum() * voxel_ml, abs=1e-3)
        assert tp["tumor_volume_ml"] == pytest.approx((labels == 2).sum() * voxel_ml, abs=1e-3)
        assert 1000.0 <= tp["liver_volume_ml"] <= 3000.0
        assert tp["lesion_count"] == sum(les["in_label_map"] for les in tp["lesions"])
        assert sum(les["volume_ml"] for les in tp["lesions"]) == pytest.approx(
            tp["tumor_volume_ml"], abs=1e-3
        )
        if tp["liver_volume_ml"]:
            assert tp["involvement_percent"] == pytest.approx(
                100 * tp["tumor_volume_ml"] / tp["liver_volume_ml"], abs=1e-3
            )
        # every lesion is its own connected component, inside the liver
        _, components = ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))
        present = [les for les in tp["lesions"] if les["voxel_count"] > 0]
        assert components == len(present)
        shell = ndimage.binary_dilation(labels == 2) & (labels != 2)
        if shell.any():
            assert (labels[shell] == 1).mean() > 0.6


def test_lesion_centroids_are_physical_points_of_their_voxels(cohort: Path, truth: dict) -> None:
    _, _, tp = next(_timepoints(truth))
    image = sitk.ReadImage(str(cohort / tp["labels"]))
    labels = sitk.GetArrayFromImage(image)
    components, count = ndimage.label(labels == 2, structure=np.ones((3, 3, 3)))
    centres = [
        image.TransformContinuousIndexToPhysicalPoint([float(v) for v in c[::-1]])
        for c in ndimage.center_of_mass(labels == 2, components, range(1, count + 1))
    ]
    for lesion in tp["lesions"]:
        nearest = min(np.linalg.norm(np.subtract(c, lesion["centroid_mm"])) for c in centres)
        assert nearest < 1e-3


def test_hounsfield_units_per_tissue_and_phase(cohort: Path, truth: dict) -> None:
    _, _, tp = next(_timepoints(truth))
    portal = _array(cohort / tp["image"]).astype(float)
    arterial = _array(cohort / tp["arterial_image"]).astype(float)
    labels = _array(cohort / tp["labels"])
    liver = ndimage.binary_erosion(labels == 1, iterations=1)
    assert 95 <= np.median(portal[liver]) <= 140
    assert 50 <= np.median(arterial[liver]) <= 95
    body = ndimage.binary_fill_holes(portal > -500)
    fat = body & (portal < -50) & (portal > -200)
    assert -125 <= np.median(portal[fat]) <= -70
    assert portal.min() >= -1024 and (portal > 400).any()  # bone
    for lesion in tp["lesions"]:
        if lesion["voxel_count"] > 30 and not lesion["necrotic"]:
            # hypervascular: brighter than liver in the arterial phase
            assert lesion["mean_arterial_hu"] > np.median(arterial[liver]) + 15


def test_follow_ups_move_the_patient(truth: dict) -> None:
    for _, _, tp in _timepoints(truth):
        shift = np.linalg.norm(tp["shift_mm"])
        if tp["timepoint"] == "baseline":
            assert shift == 0 and tp["rotation_deg"] == 0
        else:
            assert 3.0 <= shift <= 15.01 and 0.4 <= tp["rotation_deg"] <= 3.0


# ------------------------------------------------------------------ scenarios


def test_expected_responses_are_the_intended_ones(truth: dict) -> None:
    for subject in truth["subjects"].values():
        intended = INTENDED[subject["scenario"]]
        for got, wanted in zip(subject["expected_response"], intended, strict=False):
            assert {c: got[c] for c in wanted} == wanted
        assert set(subject["expected_best_overall_response"]) == {
            "recist",
            "mrecist",
            "choi",
            "volumetric",
        }


def _by_key(tp: dict) -> dict[str, dict]:
    return {les["lesion_key"]: les for les in tp["lesions"]}


def _subject(truth: dict, scenario: str) -> dict:
    return next(s for s in truth["subjects"].values() if s["scenario"] == scenario)


def test_partial_response_halves_diameters_and_loses_a_small_lesion(truth: dict) -> None:
    subject = _subject(truth, "partial_response")
    before, after = (_by_key(tp) for tp in subject["timepoints"][:2])
    targets = sorted(before, key=lambda k: -before[k]["longest_axial_diameter_mm"])[:2]
    for key in targets:
        ratio = after[key]["longest_axial_diameter_mm"] / before[key]["longest_axial_diameter_mm"]
        assert 0.4 <= ratio <= 0.6
        assert after[key]["lipiodol"]
    vanished = subject["timepoints"][1]["vanished_lesion_keys"]
    assert len(vanished) == 1 and before[vanished[0]]["longest_axial_diameter_mm"] < 10
    assert subject["lesion_history"][vanished[0]] == {
        "baseline": "present",
        "followup-1": "vanished",
    }


def test_progression_grows_and_splits(truth: dict) -> None:
    subject = _subject(truth, "progression")
    before, after = (_by_key(tp) for tp in subject["timepoints"][:2])
    fragments = [les for les in after.values() if les["split_from"]]
    assert len(fragments) == 2 and fragments[0]["split_from"] == fragments[1]["split_from"]
    assert fragments[0]["split_from"] not in after
    for key in set(before) & set(after):
        ratio = after[key]["design_volume_ml"] / before[key]["design_volume_ml"]
        assert ratio == pytest.approx(1.4**3, rel=0.1)


def test_new_lesion_and_necrosis_and_complete_response(truth: dict) -> None:
    new = _subject(truth, "new_lesion")["timepoints"][1]
    newcomers = [les for les in new["lesions"] if les["status"] == "new"]
    assert len(newcomers) == 1 and newcomers[0]["longest_axial_diameter_mm"] >= 20
    necrosis = _subject(truth, "necrosis")
    before, after = (_by_key(tp) for tp in necrosis["timepoints"][:2])
    for key, lesion in after.items():
        assert (
            lesion["necrotic"]
            and lesion["viable_volume_ml"] < 0.3 * before[key]["viable_volume_ml"] + 0.2
        )
        assert lesion["design_volume_ml"] == pytest.approx(before[key]["design_volume_ml"])
        if before[key]["volume_ml"] > 5:
            assert lesion["volume_ml"] == pytest.approx(before[key]["volume_ml"], rel=0.15)
    complete = _subject(truth, "complete_response")["timepoints"][1]
    assert complete["lesion_count"] == 0 and complete["tumor_volume_ml"] == 0


def test_three_time_points_regrow_from_the_nadir(truth: dict) -> None:
    subject = _subject(truth, "response_then_progression")
    names = [tp["timepoint"] for tp in subject["timepoints"]]
    assert names == ["baseline", "followup-1", "followup-2"]
    basis = [r["basis"] for r in subject["expected_response"]]
    assert basis[0]["sum_change_from_baseline_percent"] < -40
    assert basis[1]["sum_change_from_nadir_percent"] > 40
    assert basis[1]["sum_change_from_baseline_percent"] > -30  # PD only by the nadir


# ------------------------------------------------------------------ determinism


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    generate_cohort(tmp_path / "a", subjects=1, seed=9, size="tiny", timepoints=2)
    generate_cohort(tmp_path / "b", subjects=1, seed=9, size="tiny", timepoints=2)
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert first == second and len(first) == 9
    generate_cohort(tmp_path / "c", subjects=1, seed=10, size="tiny", timepoints=1)
    third = json.loads((tmp_path / "c" / "truth.json").read_text(encoding="utf-8"))
    first_truth = json.loads((tmp_path / "a" / "truth.json").read_text(encoding="utf-8"))
    assert (
        third["subjects"]["demo-01"]["timepoints"][0]["liver_volume_ml"]
        != first_truth["subjects"]["demo-01"]["timepoints"][0]["liver_volume_ml"]
    )


def test_rerun_replaces_an_earlier_cohort(tmp_path: Path) -> None:
    outdir = tmp_path / "cohort"
    options = ("--subjects", "1", "--size", "tiny", "--timepoints", "1", "-q")
    assert run_cli("phantom", outdir, *options).exit_code == 0
    assert run_cli("phantom", outdir, *options, "--seed", "4").exit_code == 0
    assert json.loads((outdir / "truth.json").read_text(encoding="utf-8"))["seed"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["cohort"]  # no temporary folders left


# ------------------------------------------------------------------ command-line errors


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--subjects", "0"], "--subjects"),
        (["--subjects", "many"], "--subjects"),
        (["--subjects", "-3"], "--subjects"),
        (["--size", "huge"], "--size"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "1.5"], "--seed"),
        (["--timepoints", "4"], "--timepoints"),
    ],
)
def test_cli_refuses_bad_options(tmp_path: Path, options: list[str], fragment: str) -> None:
    result = run_cli("phantom", tmp_path / "out", *options)
    assert_clean_error(result, fragment)
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_folder_that_is_not_a_cohort(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = run_cli("phantom", tmp_path, "--subjects", "1", "--size", "tiny")
    assert_clean_error(result, "not empty")
    assert (tmp_path / "precious.txt").read_text(encoding="utf-8") == "keep me"


def test_cli_refuses_an_outdir_holding_its_settings(tmp_path: Path) -> None:
    outdir = tmp_path / "out"
    outdir.mkdir()
    settings = outdir / "truth.json"
    settings.write_text("{}")
    yaml_file = outdir / "phantom.yaml"
    yaml_file.write_text("subjects: 1\nsize: tiny\n")
    result = run_cli("phantom", outdir, "--settings", yaml_file)
    assert_clean_error(result, "input")
    assert yaml_file.exists()


def test_cli_reads_settings(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("phantom:\n  subjects: 1\n  size: tiny\n  timepoints: 1\n  seed: 2\n")
    result = run_cli("phantom", tmp_path / "out", "--settings", config, "--seed", "5", "-q")
    assert result.exit_code == 0, result.stderr
    written = json.loads((tmp_path / "out" / "truth.json").read_text(encoding="utf-8"))
    assert written["seed"] == 5 and written["size"] == "tiny" and len(written["subjects"]) == 1


@pytest.mark.slow
def test_small_subject_end_to_end(tmp_path: Path) -> None:
    result = run_cli("phantom", tmp_path / "out", "--subjects", "1", "-q")
    assert result.exit_code == 0, result.stderr
    written = json.loads((tmp_path / "out" / "truth.json").read_text(encoding="utf-8"))
    tp = written["subjects"]["demo-01"]["timepoints"][0]
    assert 2.5 <= tp["grid"]["spacing_mm"][0] <= 3.0 and 128 <= tp["grid"]["size_xyz"][0] <= 160
