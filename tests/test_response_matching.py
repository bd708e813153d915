"""Lesion matching over time from lesion maps and liver masks (mask mode of ``respond``).

Scenes are built from analytic shapes (``tests/_response_fixtures.py``): a
follow-up may be the same patient lying differently (shifted by centimetres,
rotated by degrees), lesions may split, merge, vanish, reappear or be new.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests._response_fixtures import (
    Ellipsoid,
    Motion,
    default_liver,
    read_response,
    render,
    sphere,
    write_measure_folder,
    write_scene,
)
from tests.conftest import run_cli


def _respond(
    tmp_path: Path, folders: list[Path], *extra: str, settings: str | None = None
) -> dict[str, Any]:
    output = tmp_path / "response.json"
    args: list[str | Path] = ["respond", *folders, "-o", output, *extra]
    if settings is not None:
        file = tmp_path / "settings.yaml"
        file.write_text(settings, encoding="utf-8")
        args += ["--settings", file]
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    return read_response(output)


def test_shifted_and_rotated_follow_up_pairs_the_right_lesions(tmp_path: Path) -> None:
    baseline = {
        1: [sphere((50.0, -20.0, 10.0), 14.0)],
        2: [sphere((50.0, -2.0, 10.0), 12.0)],  # 18 mm from lesion 1
        3: [sphere((-60.0, 35.0, -15.0), 20.0)],
        4: [sphere((10.0, 25.0, -20.0), 16.0)],
    }
    # follow-up: the patient lies 2-3 cm off and rotated by 5 degrees; measure numbered the
    # lesions differently (ids by volume) and lesion 1 grew a little
    motion = Motion((25.0, -20.0, 12.0), 5.0)
    follow_up_scene = {
        4: [sphere((50.0, -20.0, 10.0), 16.0)],
        3: [sphere((50.0, -2.0, 10.0), 12.0)],
        1: [sphere((-60.0, 35.0, -15.0), 20.0)],
        2: [sphere((10.0, 25.0, -20.0), 16.0)],
    }
    base = write_scene(tmp_path / "base", baseline, timepoint="baseline", study_date="2024-01-10")
    liver_mask, lesion_map = render(default_liver(), follow_up_scene, motion)
    follow = write_measure_folder(
        tmp_path / "fu1",
        liver_mask=liver_mask,
        lesion_map=lesion_map,
        timepoint="fu1",
        study_date="2024-04-10",
    )
    data = _respond(tmp_path, [follow, base])  # any argument order: dates decide
    assert data["baseline"]["timepoint"] == "baseline"
    timepoint = data["timepoints"][0]
    matching = timepoint["matching"]
    assert matching["reliable"] is True
    assert matching["liver_dice"] > 0.95
    assert matching["rotation_degrees"] == pytest.approx(5.0, abs=1.0)
    assert np.linalg.norm(np.subtract(matching["translation_mm"], motion.translation_mm)) < 10.0
    lesions = timepoint["lesions"]
    assert {key: entry["ids"] for key, entry in lesions.items()} == {
        "L1": [4],
        "L2": [3],
        "L3": [1],
        "L4": [2],
    }
    assert all(entry["status"] == "matched" for entry in lesions.values())
    assert all(entry["centroid_distance_mm"] < 3.0 for entry in lesions.values())
    assert timepoint["lesion_count_change"] == 0
    assert not any(flag["code"] == "matching_unreliable" for flag in data["flags"])


def test_without_registration_the_same_motion_confuses_close_lesions(tmp_path: Path) -> None:
    """The matching test above is meaningful: liver centroids alone do not suffice."""
    baseline = {1: [sphere((50.0, -20.0, 10.0), 14.0)], 2: [sphere((50.0, -2.0, 10.0), 12.0)]}
    motion = Motion((25.0, -20.0, 12.0), 5.0)
    base = write_scene(tmp_path / "base", baseline, study_date="2024-01-10")
    follow = write_scene(
        tmp_path / "fu1", baseline, motion=motion, timepoint="fu1", study_date="2024-04-10"
    )
    data = _respond(tmp_path, [base, follow], settings="matching_registration: centroid\n")
    distances = [
        entry.get("centroid_distance_mm") for entry in data["timepoints"][0]["lesions"].values()
    ]
    assert max(d for d in distances if d is not None) > 4.0


def test_split_and_merge(tmp_path: Path) -> None:
    baseline = {
        1: [Ellipsoid((30.0, -10.0, 0.0), (20.0, 7.0, 7.0))],  # 40 mm long
        2: [sphere((-30.0, 10.0, 10.0), 16.0)],
        3: [sphere((-30.0, 28.0, 10.0), 16.0)],
    }
    follow_up = {
        1: [sphere((17.0, -10.0, 0.0), 12.0)],  # lesion 1 fell apart into two
        2: [sphere((43.0, -10.0, 0.0), 12.0)],
        3: [Ellipsoid((-30.0, 19.0, 10.0), (9.0, 18.0, 9.0))],  # lesions 2 and 3 grew together
    }
    base = write_scene(tmp_path / "base", baseline, study_date="2024-01-10")
    follow = write_scene(tmp_path / "fu1", follow_up, timepoint="fu1", study_date="2024-03-10")
    data = _respond(
        tmp_path, [base, follow], settings="response:\n  matching_registration: centroid\n"
    )
    lesions = data["timepoints"][0]["lesions"]
    assert lesions["L1"]["status"] == "split"
    assert sorted(lesions["L1"]["ids"]) == [1, 2]
    assert lesions["L2"]["status"] == lesions["L3"]["status"] == "merged"
    assert lesions["L2"]["ids"] == lesions["L3"]["ids"] == [3]
    assert lesions["L2"]["merged_with"] == ["L3"]
    assert not any(entry["status"] == "new" for entry in lesions.values())
    recist = data["timepoints"][0]["recist"]
    targets = {t["key"]: t for t in recist["targets"]}
    assert set(targets) == {"L1", "L2"}  # the two largest measurable lesions
    fragments = sum(f["longest_axial_diameter_mm"] for f in lesions["L1"]["fragments"])
    assert targets["L1"]["counted_mm"] == pytest.approx(fragments, abs=0.01)
    # the merged lesion's diameter goes to target L2; non-target L3 counts 0
    assert targets["L2"]["counted_mm"] == pytest.approx(
        lesions["L2"]["longest_axial_diameter_mm"], abs=0.01
    )
    assert lesions["L3"]["longest_axial_diameter_mm"] == 0.0
    assert recist["target_sum_mm"] == pytest.approx(
        targets["L1"]["counted_mm"] + targets["L2"]["counted_mm"]
    )


def test_identity_over_four_time_points_vanish_reappear_new(tmp_path: Path) -> None:
    baseline = {
        1: [sphere((30.0, -15.0, 0.0), 25.0)],
        2: [sphere((-20.0, 20.0, 15.0), 12.0)],
        3: [sphere((-60.0, 35.0, -15.0), 15.0)],
    }
    fu1 = {
        1: [sphere((30.0, -15.0, 0.0), 20.0)],
        2: [sphere((-60.0, 35.0, -15.0), 15.0)],
        3: [sphere((0.0, -30.0, -25.0), 14.0)],
    }  # lesion 2 gone, a new one
    fu2 = {
        1: [sphere((30.0, -15.0, 0.0), 20.0)],
        2: [sphere((-60.0, 35.0, -15.0), 15.0)],
        3: [sphere((0.0, -30.0, -25.0), 14.0)],
        4: [sphere((-20.0, 20.0, 15.0), 10.0)],
    }  # back
    motion = Motion((15.0, 10.0, -8.0), -4.0)
    folders = [
        write_scene(tmp_path / "t0", baseline, timepoint="baseline", study_date="2023-01-05"),
        write_scene(tmp_path / "t1", fu1, timepoint="fu1", study_date="2023-04-05"),
        write_scene(tmp_path / "t2", fu2, timepoint="fu2", study_date="2023-07-05"),
        write_scene(tmp_path / "t3", fu2, motion=motion, timepoint="fu3", study_date="2023-10-05"),
    ]
    data = _respond(tmp_path, folders[::-1])
    statuses = [
        {k: (v["status"], v["ids"]) for k, v in t["lesions"].items()} for t in data["timepoints"]
    ]
    assert [t["timepoint"] for t in data["timepoints"]] == ["fu1", "fu2", "fu3"]
    assert statuses[0] == {
        "L1": ("matched", [1]),
        "L2": ("disappeared", []),
        "L3": ("matched", [2]),
        "N1": ("new", [3]),
    }
    assert statuses[1] == {
        "L1": ("matched", [1]),
        "L2": ("matched", [4]),
        "L3": ("matched", [2]),
        "N1": ("matched", [3]),
    }
    assert data["timepoints"][1]["lesions"]["L2"]["reappeared"] is True
    assert statuses[2] == statuses[1]
    assert all(t["matching"]["reliable"] for t in data["timepoints"])
    # RECIST: targets L1 (25 mm) and L3 (15 mm); the new 14 mm lesion is unequivocal
    recist = [t["recist"] for t in data["timepoints"]]
    assert [t["key"] for t in data["baseline"]["targets"]] == ["L1", "L3"]
    assert recist[0]["new_lesions"][0]["key"] == "N1"
    assert recist[0]["new_lesions"][0]["category"] == "unequivocal"
    assert [r["overall_response"] for r in recist] == ["PD", "PD", "PD"]
    assert data["best_overall_response"]["recist"] == "PD"
    assert [t["lesion_count_change"] for t in data["timepoints"]] == [0, 1, 1]
    assert data["timepoints"][0]["involvement_change_percentage_points"] < 0


def test_unreliable_alignment_is_flagged_and_can_make_not_evaluable(tmp_path: Path) -> None:
    lesions = {1: [sphere((30.0, -15.0, 0.0), 25.0)]}
    base = write_scene(tmp_path / "base", lesions, study_date="2024-01-10")
    liver_mask, lesion_map = render(default_liver(), lesions)
    liver_mask[:, :, :40] = False  # the follow-up's liver mask lost a large part
    follow = write_measure_folder(
        tmp_path / "fu1",
        liver_mask=liver_mask,
        lesion_map=lesion_map,
        timepoint="fu1",
        study_date="2024-03-10",
    )
    data = _respond(tmp_path, [base, follow], settings="matching_registration: rigid\n")
    matching = data["timepoints"][0]["matching"]
    assert matching["reliable"] is False
    assert "Dice" in matching["reasons"][0]
    assert any(flag["code"] == "matching_unreliable" for flag in data["flags"])
    assert data["timepoints"][0]["recist"]["overall_response"] != "NE"
    strict = _respond(
        tmp_path,
        [base, follow],
        settings="matching_registration: rigid\nunreliable_matching_not_evaluable: true\n",
    )
    for criterion in ("recist", "mrecist", "choi", "volumetric"):
        assert strict["timepoints"][0][criterion]["overall_response"] == "NE"
    assert "unreliable" in strict["timepoints"][0]["recist"]["reasons"][0]


def test_fragments_that_drifted_apart_and_a_satellite_new_lesion(tmp_path: Path) -> None:
    baseline = {1: [sphere((-40.0, -5.0, -20.0), 18.0)], 2: [sphere((35.0, -10.0, 5.0), 20.0)]}
    follow_up = {
        # lesion 1 is gone from its place: two pieces 16-18 mm to either side (no overlap)
        1: [sphere((-44.0, 12.0, -18.0), 13.0)],
        2: [sphere((-36.0, -21.0, -22.0), 13.0)],
        # lesion 2 is still there, and a new lesion grew 17 mm beside it
        3: [sphere((35.0, -10.0, 5.0), 20.0)],
        4: [sphere((35.0, 7.0, 5.0), 10.0)],
    }
    base = write_scene(tmp_path / "base", baseline, study_date="2024-01-10")
    follow = write_scene(tmp_path / "fu1", follow_up, timepoint="fu1", study_date="2024-03-10")
    data = _respond(tmp_path, [base, follow])
    lesions = data["timepoints"][0]["lesions"]
    assert lesions["L1"]["status"] == "split"
    assert sorted(lesions["L1"]["ids"]) == [1, 2]
    assert lesions["L2"]["status"] == "matched" and lesions["L2"]["ids"] == [3]
    assert lesions["N1"]["status"] == "new" and lesions["N1"]["ids"] == [4]
    assert data["timepoints"][0]["recist"]["new_lesions"][0]["key"] == "N1"
