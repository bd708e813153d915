"""``liverburden respond`` in mask mode: inputs, output layout, mRECIST, Choi, overrides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests._response_fixtures import read_response, sphere, write_scene
from tests.conftest import assert_clean_error, run_cli

FAST = "response:\n  matching_registration: centroid\n"

BASELINE_LESIONS = {
    1: [sphere((30.0, -15.0, 0.0), 30.0)],
    2: [sphere((-55.0, 35.0, -15.0), 22.0)],
    3: [sphere((5.0, 25.0, 20.0), 14.0)],
    4: [sphere((-15.0, -25.0, -20.0), 8.0)],
}


def _settings(tmp_path: Path, text: str = FAST) -> Path:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _run(
    tmp_path: Path, folders: list[Path], *extra: str | Path, settings: str = FAST
) -> dict[str, Any]:
    output = tmp_path / "response.json"
    result = run_cli(
        "respond", *folders, "-o", output, "--settings", _settings(tmp_path, settings), *extra
    )
    assert result.exit_code == 0, result.stderr
    return read_response(output)


@pytest.fixture
def two_time_points(tmp_path: Path) -> list[Path]:
    follow_up = {
        1: [sphere((30.0, -15.0, 0.0), 20.0)],
        2: [sphere((-55.0, 35.0, -15.0), 20.0)],
        3: [sphere((5.0, 25.0, 20.0), 14.0)],
        4: [sphere((-15.0, -25.0, -20.0), 8.0)],
        5: [sphere((-20.0, 0.0, 30.0), 7.0)],  # a small new lesion: equivocal
    }
    return [
        write_scene(
            tmp_path / "base", BASELINE_LESIONS, timepoint="baseline", study_date="2024-01-10"
        ),
        write_scene(tmp_path / "fu1", follow_up, timepoint="fu1", study_date="2024-04-10"),
    ]


def test_output_layout(tmp_path: Path, two_time_points: list[Path]) -> None:
    data = _run(tmp_path, two_time_points)
    assert data["schema_version"] and data["liverburden_version"]
    assert data["subject"] == "S01"
    assert data["settings"]["partial_response_percent"] == -30.0
    baseline = data["baseline"]
    assert baseline["date"] == "2024-01-10"
    assert [t["key"] for t in baseline["targets"]] == ["L1", "L2"]
    assert baseline["sum_mm"] == pytest.approx(
        sum(t["longest_axial_diameter_mm"] for t in baseline["targets"]), abs=0.01
    )
    assert {t["key"] for t in baseline["non_targets"]} == {"L3", "L4"}
    timepoint = data["timepoints"][0]
    for key in (
        "date",
        "timepoint",
        "recist",
        "mrecist",
        "choi",
        "volumetric",
        "involvement_percent",
        "involvement_change_percentage_points",
        "lesion_count",
        "lesion_count_change",
        "lesions",
        "matching",
    ):
        assert key in timepoint
    recist = timepoint["recist"]
    for key in (
        "target_sum_mm",
        "baseline_sum_mm",
        "nadir_sum_mm",
        "change_from_baseline_percent",
        "change_from_nadir_percent",
        "target_response",
        "non_target_response",
        "new_lesions",
        "overall_response",
        "reasons",
    ):
        assert key in recist
    assert recist["new_lesions"][0]["category"] == "equivocal"
    assert not recist["new_lesions"][0]["makes_progression"]
    assert recist["overall_response"] in ("PR", "SD")
    assert set(data["best_overall_response"]) == {"recist", "mrecist", "choi", "volumetric"}
    assert timepoint["mrecist"]["overall_response"] == "NE"  # no arterial phase
    assert timepoint["lesion_count_change"] == 1


def test_single_time_point_gives_baseline_only(tmp_path: Path) -> None:
    base = write_scene(tmp_path / "base", BASELINE_LESIONS, study_date="2024-01-10")
    data = _run(tmp_path, [base])
    assert data["timepoints"] == []
    assert data["best_overall_response"] == {
        "recist": None,
        "mrecist": None,
        "choi": None,
        "volumetric": None,
    }
    assert "baseline only" in data["best_overall_response_reasons"]["recist"][0]
    assert len(data["baseline"]["targets"]) == 2


def test_mrecist_with_necrotic_and_lipiodol_dense_lesions(tmp_path: Path) -> None:
    """After TACE: lesion 1 is full of lipiodol, lesion 2 necrotic; both keep their size.

    The measurements leave lipiodol and necrosis out of the viable part (``measure``'s
    job); RECIST sees stable sizes, mRECIST the loss of viable tumour.
    """
    baseline_values = {
        1: {"viable_longest_axial_diameter_mm": 28.0, "viable_volume_ml": 12.0},
        2: {"viable_longest_axial_diameter_mm": 18.0, "viable_volume_ml": 3.5},
        3: {
            "viable_longest_axial_diameter_mm": 6.0,
            "viable_volume_ml": 0.3,
        },  # too little to be a target
        4: {"viable_longest_axial_diameter_mm": 0.0, "viable_volume_ml": 0.0},
    }
    after_tace = {
        1: {
            "viable_longest_axial_diameter_mm": 9.0,
            "viable_volume_ml": 0.6,
            "lipiodol_volume_ml": 9.0,
            "viable_fraction": 0.04,
        },
        2: {
            "viable_longest_axial_diameter_mm": 0.0,
            "viable_volume_ml": 0.0,
            "viable_fraction": 0.0,
        },
        3: {"viable_longest_axial_diameter_mm": 6.0, "viable_volume_ml": 0.3},
        4: {"viable_longest_axial_diameter_mm": 0.0, "viable_volume_ml": 0.0},
    }
    complete = {
        k: {"viable_longest_axial_diameter_mm": 0.0, "viable_volume_ml": 0.0} for k in range(1, 5)
    }
    folders = [
        write_scene(
            tmp_path / "t0",
            BASELINE_LESIONS,
            study_date="2024-01-10",
            arterial=True,
            lesion_values=baseline_values,
        ),
        write_scene(
            tmp_path / "t1",
            BASELINE_LESIONS,
            timepoint="fu1",
            study_date="2024-03-10",
            arterial=True,
            lesion_values=after_tace,
        ),
        write_scene(
            tmp_path / "t2",
            BASELINE_LESIONS,
            timepoint="fu2",
            study_date="2024-05-10",
            arterial=True,
            lesion_values=complete,
        ),
        write_scene(tmp_path / "t3", BASELINE_LESIONS, timepoint="fu3", study_date="2024-07-10"),
    ]
    data = _run(tmp_path, folders)
    mrecist_baseline = data["baseline"]["mrecist"]
    assert [t["key"] for t in mrecist_baseline["targets"]] == ["L1", "L2"]
    assert mrecist_baseline["sum_mm"] == 46.0
    first, second, third = data["timepoints"]
    assert first["recist"]["overall_response"] == "SD"
    assert first["recist"]["change_from_baseline_percent"] == pytest.approx(0.0)
    mrecist = first["mrecist"]
    assert mrecist["target_sum_mm"] == 9.0
    assert mrecist["change_from_baseline_percent"] == pytest.approx(
        (9.0 - 46.0) / 46.0 * 100, abs=0.01
    )
    assert mrecist["target_response"] == "PR"
    assert mrecist["non_target_response"] == "Non-CR/Non-PD"  # lesion 3 still enhances
    assert mrecist["overall_response"] == "PR"
    assert second["mrecist"]["target_response"] == "CR"
    assert second["mrecist"]["non_target_response"] == "CR"
    assert second["mrecist"]["overall_response"] == "CR"
    assert third["mrecist"]["overall_response"] == "NE"
    assert "no arterial phase" in third["mrecist"]["reasons"][0]
    assert data["best_overall_response"]["mrecist"] == "CR"
    assert data["best_overall_response"]["recist"] == "SD"
    # viable volume (qEASL idea)
    assert first["volumetric"]["viable_change_from_baseline_percent"] < -90
    assert first["volumetric"]["viable_response"] == "PR"
    assert first["volumetric"]["overall_response"] == "SD"


def test_mrecist_without_arterial_phase_at_baseline(
    tmp_path: Path, two_time_points: list[Path]
) -> None:
    data = _run(tmp_path, two_time_points)
    assert data["baseline"]["mrecist"]["available"] is False
    assert "no arterial phase at baseline" in data["baseline"]["mrecist"]["reasons"][0]
    assert data["best_overall_response"]["mrecist"] == "NE"


def test_choi_attenuation_only_response(tmp_path: Path) -> None:
    lesions = {1: [sphere((30.0, -15.0, 0.0), 30.0)], 2: [sphere((-55.0, 35.0, -15.0), 22.0)]}
    smaller = {1: [sphere((30.0, -15.0, 0.0), 29.0)], 2: [sphere((-55.0, 35.0, -15.0), 21.5)]}
    folders = [
        write_scene(
            tmp_path / "t0",
            lesions,
            study_date="2024-01-10",
            lesion_values={1: {"mean_hu": 100.0}, 2: {"mean_hu": 90.0}},
        ),
        write_scene(
            tmp_path / "t1",
            smaller,
            timepoint="fu1",
            study_date="2024-03-10",
            lesion_values={1: {"mean_hu": 75.0}, 2: {"mean_hu": 80.0}},
        ),
    ]
    data = _run(tmp_path, folders)
    choi = data["timepoints"][0]["choi"]
    assert choi["change_from_baseline_percent"] > -10  # not PR by size
    assert choi["attenuation_change_percent"] <= -15
    assert choi["overall_response"] == "PR"
    assert any("mean attenuation" in reason and "PR" in reason for reason in choi["reasons"])
    assert data["timepoints"][0]["recist"]["overall_response"] == "SD"
    # volume-weighted: the larger lesion 1 weighs more
    assert 75.0 < choi["mean_attenuation_hu"] < 77.5


def test_overrides_pin_exclude_treat_and_decide(
    tmp_path: Path, two_time_points: list[Path]
) -> None:
    overrides = tmp_path / "reader.yaml"
    overrides.write_text(
        "subject: S01\n"
        "targets: [3]\n"
        "treated: [{lesion: 2, reason: TACE}]\n"
        "exclude:\n  - {lesion: 4, reason: hepatic cyst}\n"
        "new_lesions:\n  - {timepoint: fu1, lesion: 5, decision: confirm}\n",
        encoding="utf-8",
    )
    data = _run(tmp_path, two_time_points, "--overrides", overrides)
    assert [t["key"] for t in data["baseline"]["targets"]] == ["L3"]
    assert data["baseline"]["excluded"] == [{"key": "L4", "id": 4, "reason": "hepatic cyst"}]
    assert data["baseline"]["treated"] == ["L2"]
    assert data["overrides"]["targets"] == [3]
    assert data["overrides"]["source"] == str(overrides)
    timepoint = data["timepoints"][0]
    assert timepoint["lesions"]["L4"]["role"] == "excluded"
    assert "L4" not in {t["key"] for t in data["baseline"]["non_targets"]}
    new = timepoint["recist"]["new_lesions"][0]
    assert new["category"] == "unequivocal" and new["makes_progression"]
    assert timepoint["recist"]["overall_response"] == "PD"
    assert timepoint["lesion_count"] == 4  # five lesions, one excluded

    # without the pin, the treated lesion 2 is not chosen automatically
    overrides.write_text(
        "treated: [2]\nnew_lesions: [{timepoint: 2024-04-10, lesion: 5, decision: reject}]\n",
        encoding="utf-8",
    )
    data = _run(tmp_path, two_time_points, "--overrides", overrides)
    assert [t["key"] for t in data["baseline"]["targets"]] == ["L1", "L3"]
    rejected = data["timepoints"][0]["recist"]["new_lesions"][0]
    assert rejected["category"] == "rejected" and not rejected["makes_progression"]
    assert data["timepoints"][0]["recist"]["overall_response"] != "PD"

    # one follow-up lesion excluded at one time point (an artefact there)
    overrides.write_text(
        "subjects:\n  S01:\n    exclude: [{timepoint: fu1, lesion: 5, reason: artefact}]\n"
        "  S02: {targets: [1]}\n",
        encoding="utf-8",
    )
    data = _run(tmp_path, two_time_points, "--overrides", overrides)
    assert "N1" not in data["timepoints"][0]["lesions"]
    assert data["timepoints"][0]["lesion_count_change"] == 0
    assert any(f["code"] == "lesion_excluded_by_reader" for f in data["flags"])


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("targts: [1]\n", ("unknown key", "targts")),
        ("targets: [9]\n", ("no lesion 9",)),
        ("exclude: [{timepoint: fu7, lesion: 1}]\n", ("no time point 'fu7'",)),
        ("exclude: [{timepoint: fu1, lesion: 8}]\n", ("fu1 has no lesion 8",)),
        ("new_lesions: [{timepoint: fu1, lesion: 1, decision: confirm}]\n", ("not a new lesion",)),
        ("new_lesions: [{timepoint: fu1, lesion: 5, decision: maybe}]\n", ("confirm or reject",)),
        ("subject: S07\ntargets: [1]\n", ("S07",)),
        ("targets: [1, 1]\n", ("twice",)),
        ("targets: [1]\nexclude: [{lesion: 1}]\n", ("both",)),
        ("- 1\n", ("mapping",)),
    ],
)
def test_bad_overrides_are_refused(
    tmp_path: Path, two_time_points: list[Path], text: str, fragments: tuple[str, ...]
) -> None:
    overrides = tmp_path / "reader.yaml"
    overrides.write_text(text, encoding="utf-8")
    output = tmp_path / "response.json"
    result = run_cli(
        "respond",
        *two_time_points,
        "-o",
        output,
        "--overrides",
        overrides,
        "--settings",
        _settings(tmp_path),
    )
    assert_clean_error(result, *fragments)
    assert not output.exists()


def test_pinned_targets_beyond_the_limits(tmp_path: Path, two_time_points: list[Path]) -> None:
    overrides = tmp_path / "reader.yaml"
    overrides.write_text("targets: [1, 2, 3]\n", encoding="utf-8")
    data = _run(tmp_path, two_time_points, "--overrides", overrides)
    assert [t["key"] for t in data["baseline"]["targets"]] == ["L1", "L2", "L3"]
    assert any(f["code"] == "targets_exceed_organ_limit" for f in data["flags"])
    output = tmp_path / "strict.json"
    settings = _settings(tmp_path, FAST + "  max_targets_total: 2\n")
    result = run_cli(
        "respond", *two_time_points, "-o", output, "--overrides", overrides, "--settings", settings
    )
    assert_clean_error(result, "max_targets_total")
    assert not output.exists()


def _edit_measurements(folder: Path, **changes: Any) -> None:
    path = folder / "measurements.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        ({"study_date": "2024-01-10"}, ("same study date",)),
        ({"study_date": None}, ("no study_date",)),
        ({"study_date": "2024-02-30"}, ("not a valid date",)),
        ({"subject": "S02"}, ("different subjects",)),
        ({"lesions": "many"}, ("lesions must be a list",)),
        (
            {"lesions": [{"id": 1, "volume_ml": "big", "longest_axial_diameter_mm": 3.0}]},
            ("volume_ml",),
        ),
    ],
)
def test_bad_measure_folders_are_refused(
    tmp_path: Path, two_time_points: list[Path], change: dict[str, Any], fragments: tuple[str, ...]
) -> None:
    _edit_measurements(two_time_points[1], **change)
    output = tmp_path / "response.json"
    result = run_cli("respond", *two_time_points, "-o", output)
    assert_clean_error(result, *fragments)
    assert not output.exists()


def test_missing_files_are_refused(tmp_path: Path, two_time_points: list[Path]) -> None:
    output = tmp_path / "response.json"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(
        run_cli("respond", two_time_points[0], empty, "-o", output), "measurements.json"
    )
    assert_clean_error(
        run_cli("respond", two_time_points[0], tmp_path / "nowhere", "-o", output), "not found"
    )
    (two_time_points[1] / "lesions.nii.gz").unlink()
    assert_clean_error(run_cli("respond", *two_time_points, "-o", output), "lesions.nii.gz")
    (two_time_points[1] / "measurements.json").write_text("{not json", encoding="utf-8")
    assert_clean_error(run_cli("respond", *two_time_points, "-o", output), "not valid JSON")
    assert_clean_error(
        run_cli("respond", *two_time_points, "-o", two_time_points[0] / "measurements.json"),
        "overwrite",
    )
    bad_settings = _settings(tmp_path, "response:\n  partial_response_percent: -130\n")
    assert_clean_error(
        run_cli("respond", *two_time_points, "-o", output, "--settings", bad_settings),
        "partial_response_percent",
    )
    assert not output.exists()


def test_lesion_map_with_unlisted_ids_is_refused(
    tmp_path: Path, two_time_points: list[Path]
) -> None:
    path = two_time_points[1] / "measurements.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["lesions"] = [lesion for lesion in data["lesions"] if lesion["id"] != 5]
    path.write_text(json.dumps(data), encoding="utf-8")
    output = tmp_path / "response.json"
    assert_clean_error(run_cli("respond", *two_time_points, "-o", output), "lesion id(s) [5]")
    assert not output.exists()


def test_complete_response_and_disease_appearing_from_nothing(tmp_path: Path) -> None:
    folders = [
        write_scene(tmp_path / "t0", {}, study_date="2024-01-10"),
        write_scene(tmp_path / "t1", BASELINE_LESIONS, timepoint="fu1", study_date="2024-03-10"),
        write_scene(tmp_path / "t2", {}, timepoint="fu2", study_date="2024-05-10"),
    ]
    data = _run(tmp_path, folders[:2])
    first = data["timepoints"][0]
    assert data["baseline"]["targets"] == [] and data["baseline"]["lesion_count"] == 0
    statuses = {k: v["status"] for k, v in first["lesions"].items()}
    assert statuses == {f"N{i}": "new" for i in range(1, 5)}
    assert first["recist"]["target_response"] == "NE"
    assert first["recist"]["overall_response"] == "PD"  # unequivocal new lesions
    assert first["volumetric"]["overall_response"] == "PD"
    assert first["choi"]["overall_response"] == "PD"

    gone = _run(tmp_path, [folders[1], folders[2]])["timepoints"][0]
    assert all(v["status"] == "disappeared" for v in gone["lesions"].values())
    for criterion in ("recist", "choi", "volumetric"):
        assert gone[criterion]["overall_response"] == "CR", (criterion, gone[criterion]["reasons"])
    assert gone["recist"]["target_sum_mm"] == 0.0
    assert gone["involvement_percent"] == 0.0
