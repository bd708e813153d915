"""``liverburden respond --table``: a reader's measurement table (pyrecist columns)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_clean_error, run_cli

HEADER = "patient_id,study_date,measurement,lesion_label_alias,lesion_category"


def _respond(tmp_path: Path, text: str, *extra: str, name: str = "table.csv") -> dict[str, Any]:
    table = tmp_path / name
    table.write_text(text.strip() + "\n", encoding="utf-8")
    output = tmp_path / "response.json"
    result = run_cli("respond", "--table", table, "-o", output, *extra)
    assert result.exit_code == 0, result.stderr
    return json.loads(output.read_text(encoding="utf-8"))


def _patient(data: dict[str, Any], patient: str) -> dict[str, Any]:
    return next(p for p in data["patients"] if p["subject"] == patient)


def _overall(patient: dict[str, Any], criterion: str = "recist") -> list[str]:
    return [t[criterion]["overall_response"] for t in patient["timepoints"]]


NADIR_TABLE = f"""
{HEADER},non_target_status
P1,20240101,30,T1,target,
P1,20240101,20,T2,target,
P1,20240101,8,N1,non-target,
P1,20240301,20,T1,target,
P1,20240301,13,T2,target,
P1,20240301,8,N1,non-target,non-CR/non-PD
P1,20240501,15,T1,target,
P1,20240501,10,T2,target,
P1,20240501,,N1,non-target,non-CR/non-PD
P1,20240701,18,T1,target,
P1,20240701,11,T2,target,
P1,20240701,,N1,non-target,non-CR/non-PD
P1,20240901,20,T1,target,
P1,20240901,11,T2,target,
P1,20240901,,N1,non-target,non-CR/non-PD
P2,2024-01-05,20,A,target,
P2,2024-03-05,14,A,target,
P2,2024-05-05,16.8,A,target,
"""


def test_nadir_over_five_time_points_and_best_response(tmp_path: Path) -> None:
    data = _respond(tmp_path, NADIR_TABLE)
    assert data["schema_version"] and data["liverburden_version"]
    p1 = _patient(data, "P1")
    recist = [t["recist"] for t in p1["timepoints"]]
    assert [r["target_sum_mm"] for r in recist] == [33.0, 25.0, 29.0, 31.0]
    assert [r["nadir_sum_mm"] for r in recist] == [50.0, 33.0, 25.0, 25.0]
    assert [r["target_response"] for r in recist] == ["PR", "PR", "PR", "PD"]
    assert recist[3]["change_from_nadir_percent"] == pytest.approx(24.0)
    assert recist[3]["change_from_baseline_percent"] == pytest.approx(-38.0)
    assert _overall(p1) == ["PR", "PR", "PR", "PD"]
    assert p1["best_overall_response"]["recist"] == "PR"
    assert p1["baseline"]["sum_mm"] == 50.0
    assert [t["key"] for t in p1["baseline"]["targets"]] == ["T1", "T2"]
    assert any("≤ -30 %: PR" in reason for reason in recist[0]["reasons"])
    # a PR is not carried into a time point whose own numbers say SD (-16 % from baseline;
    # +20 % over the nadir but only +2.8 mm)
    p2 = _patient(data, "P2")
    assert _overall(p2) == ["PR", "SD"]
    assert p2["best_overall_response"]["recist"] == "PR"
    assert p2["timepoints"][1]["recist"]["change_from_baseline_percent"] == pytest.approx(-16.0)
    # table mode holds no volumes: volumetric NE with a reason, never a guess
    assert _overall(p2, "volumetric") == ["NE", "NE"]
    assert "no volumes" in p2["timepoints"][0]["volumetric"]["reasons"][0]


NEW_LESION_TABLE = f"""
{HEADER},new_lesion
P1,20240101,30,T1,target,false
P1,20240301,29,T1,target,false
P1,20240301,6,X,,true
P1,20240501,29,T1,target,false
P1,20240501,7,X,,false
P2,20240101,30,T1,target,false
P2,20240301,29,T1,target,false
P2,20240301,12,Y,,true
P3,20240101,30,T1,target,false
P3,20240301,29,T1,target,false
P3,20240301,6,Z,,true
P3,20240501,28,T1,target,false
P3,20240501,0,Z,,false
"""


@pytest.mark.parametrize(
    ("timing", "expected_p1"),
    [("at_confirmation", ["SD", "PD"]), ("backdated", ["PD", "PD"])],
)
def test_new_lesions_unequivocal_equivocal_and_confirmed(
    tmp_path: Path, timing: str, expected_p1: list[str]
) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        f"response:\n  equivocal_new_lesion_progression: {timing}\n", encoding="utf-8"
    )
    data = _respond(tmp_path, NEW_LESION_TABLE, "--settings", settings)
    p1 = _patient(data, "P1")
    assert _overall(p1) == expected_p1
    first = p1["timepoints"][0]["recist"]["new_lesions"][0]
    assert first["key"] == "X" and first["category"] == "equivocal" and first["first_appearance"]
    second = p1["timepoints"][1]["recist"]["new_lesions"][0]
    assert second["category"] == "confirmed equivocal" and second["makes_progression"]
    assert p1["settings"]["equivocal_new_lesion_progression"] == timing
    # an unequivocal new lesion (>= 10 mm) is PD at once
    assert _overall(_patient(data, "P2")) == ["PD"]
    # an equivocal new lesion that is gone at the next scan never makes PD
    p3 = _patient(data, "P3")
    assert _overall(p3) == ["SD", "SD"]
    assert p3["timepoints"][0]["choi"]["overall_response"] == "SD"


def test_growth_confirmation_setting(tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(
        "equivocal_new_lesion_confirmation: growth_to_unequivocal\n", encoding="utf-8"
    )
    data = _respond(tmp_path, NEW_LESION_TABLE, "--settings", settings)
    assert _overall(_patient(data, "P1")) == ["SD", "SD"]  # 6 -> 7 mm: not yet unequivocal


NON_TARGET_TABLE = f"""
{HEADER},non_target_status
A,20240101,30,T1,target,
A,20240101,,N1,non-target,
A,20240401,0,T1,target,
A,20240401,,N1,non-target,CR
B,20240101,30,T1,target,
B,20240101,,N1,non-target,
B,20240401,28,T1,target,
B,20240401,,N1,non-target,PD
C,20240101,30,T1,target,
C,20240101,,N1,non-target,
C,20240401,0,T1,target,
D,20240101,,N1,non-target,
D,20240401,,N1,non-target,non-CR/non-PD
E,20240101,30,T1,target,
E,20240101,20,T2,target,
E,20240401,10,T1,target,
"""


def test_non_target_statuses_and_missing_rows(tmp_path: Path) -> None:
    data = _respond(tmp_path, NON_TARGET_TABLE)
    a = _patient(data, "A")["timepoints"][0]["recist"]
    assert (a["target_response"], a["non_target_response"], a["overall_response"]) == (
        "CR",
        "CR",
        "CR",
    )
    b = _patient(data, "B")["timepoints"][0]["recist"]
    assert (b["non_target_response"], b["overall_response"]) == ("PD", "PD")
    c = _patient(data, "C")["timepoints"][0]["recist"]  # non-target row missing: not evaluated
    assert (c["target_response"], c["non_target_response"], c["overall_response"]) == (
        "CR",
        "NE",
        "PR",
    )
    d = _patient(data, "D")  # no target at baseline: RECIST table 2
    d_recist = d["timepoints"][0]["recist"]
    assert d_recist["target_response"] == "NE"
    assert "no measurable lesion at baseline" in d_recist["reasons"]
    assert d_recist["overall_response"] == "SD"
    assert "non-CR/non-PD" in d_recist["overall_rule"]
    e = _patient(data, "E")["timepoints"][0]["recist"]  # target T2 not measured at follow-up
    assert (e["target_response"], e["overall_response"]) == ("NE", "NE")
    assert any("T2" in reason for reason in e["reasons"])


MRECIST_CHOI_TABLE = f"""
{HEADER},viable_measurement,mean_hu
P1,20240101,40,T1,target,40,100
P1,20240101,30,T2,target,25,90
P1,20240401,38,T1,target,10,70
P1,20240401,29,T2,target,0,60
P1,20240701,38,T1,target,0,65
P1,20240701,29,T2,target,0,60
"""


def test_mrecist_on_viable_diameters_and_choi_on_attenuation(tmp_path: Path) -> None:
    data = _respond(tmp_path, MRECIST_CHOI_TABLE)
    patient = _patient(data, "P1")
    first, second = patient["timepoints"]
    assert first["recist"]["overall_response"] == "SD"  # -4.3 % in size
    assert first["mrecist"]["target_sum_mm"] == 10.0
    assert first["mrecist"]["change_from_baseline_percent"] == pytest.approx(-84.62, abs=0.01)
    assert first["mrecist"]["overall_response"] == "PR"
    assert second["mrecist"]["overall_response"] == "CR"  # no viable tumour in any target
    assert patient["baseline"]["mrecist"]["sum_mm"] == 65.0
    # Choi: size -4.3 % (not PR) but mean attenuation 95 -> 65 HU (-31.6 %): PR
    assert first["choi"]["change_from_baseline_percent"] == pytest.approx(-4.29, abs=0.01)
    assert first["choi"]["attenuation_change_percent"] < -15
    assert first["choi"]["overall_response"] == "PR"
    assert patient["best_overall_response"] == {
        "recist": "SD",
        "mrecist": "CR",
        "choi": "PR",
        "volumetric": "NE",
    }


def test_mrecist_without_viable_measurements_is_not_evaluable(tmp_path: Path) -> None:
    data = _respond(tmp_path, NADIR_TABLE)
    mrecist = _patient(data, "P2")["timepoints"][0]["mrecist"]
    assert mrecist["overall_response"] == "NE"
    assert "arterial" in mrecist["reasons"][0]


def test_subject_option_single_patient_and_single_date(tmp_path: Path) -> None:
    data = _respond(tmp_path, NADIR_TABLE + "P3,20240101,12,T1,target\n", "--subject", "P3")
    assert [p["subject"] for p in data["patients"]] == ["P3"]
    p3 = data["patients"][0]
    assert p3["timepoints"] == []
    assert p3["best_overall_response"]["recist"] is None
    assert "baseline only" in p3["best_overall_response_reasons"]["recist"][0]


def test_semicolon_separated_and_iso_dates(tmp_path: Path) -> None:
    text = NADIR_TABLE.replace(",", ";")
    data = _respond(tmp_path, text)
    assert _overall(_patient(data, "P2")) == ["PR", "SD"]
    assert _patient(data, "P2")["timepoints"][0]["date"] == "2024-03-05"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            "patient_id,study_date,measurement,lesion_label_alias\nP1,20240101,10,T1\n",
            ("missing column",),
        ),
        (f"{HEADER}\nP1,20241301,10,T1,target\n", ("line 2", "not a valid date")),
        (f"{HEADER}\nP1,20240101,ten,T1,target\n", ("line 2", "not a number")),
        (
            f"{HEADER}\nP1,20240101,10,T1,target\nP1,2024-01-01,11,T1,target\n",
            ("line 3", "duplicate row"),
        ),
        (f"{HEADER}\nP1,20240101,10,T1,tumour\n", ("line 2", "lesion_category")),
        (f"{HEADER}\nP1,20240101,-3,T1,target\n", ("line 2", "negative")),
        (f"{HEADER}\nP1,20240101,10,T1,target,extra\n", ("line 2", "fields")),
        (f"{HEADER}\n", ("no rows",)),
        (f"{HEADER},new_lesion\nP1,20240101,10,T1,target,true\n", ("line 2", "marked new")),
        (
            f"{HEADER}\nP1,20240101,10,T1,target\nP1,20240301,10,T1,non-target\n",
            ("line 3", "target at baseline"),
        ),
    ],
)
def test_malformed_tables_are_refused(
    tmp_path: Path, text: str, fragments: tuple[str, ...]
) -> None:
    table = tmp_path / "bad.csv"
    table.write_text(text, encoding="utf-8")
    output = tmp_path / "response.json"
    result = run_cli("respond", "--table", table, "-o", output)
    assert_clean_error(result, *fragments)
    assert not output.exists()


def test_table_mode_refuses_overrides_and_mixed_inputs(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    table.write_text(NADIR_TABLE.strip() + "\n", encoding="utf-8")
    overrides = tmp_path / "o.yaml"
    overrides.write_text("targets: [1]\n", encoding="utf-8")
    output = tmp_path / "r.json"
    assert_clean_error(
        run_cli("respond", "--table", table, "--overrides", overrides, "-o", output), "--overrides"
    )
    assert_clean_error(run_cli("respond", tmp_path, "--table", table, "-o", output), "not both")
    assert_clean_error(run_cli("respond", "-o", output), "no input")
    assert_clean_error(run_cli("respond", "--table", table, "--subject", "P9", "-o", output), "P9")
    assert_clean_error(run_cli("respond", "--table", table, "-o", table), "overwrite")
    assert not output.exists()


def test_mrecist_new_lesion_must_enhance(tmp_path: Path) -> None:
    text = f"""
{HEADER},viable_measurement,new_lesion
P1,20240101,40,T1,target,40,false
P1,20240401,40,T1,target,38,false
P1,20240401,14,X,,0,true
P1,20240701,40,T1,target,38,false
P1,20240701,15,X,,0,false
P1,20241001,40,T1,target,38,false
P1,20241001,15,X,,6,false
"""
    patient = _patient(_respond(tmp_path, text), "P1")
    # RECIST: a new 14 mm lesion is unequivocal progression
    assert _overall(patient) == ["PD", "PD", "PD"]
    # mRECIST: it does not enhance, so it is equivocal until it does
    assert _overall(patient, "mrecist") == ["SD", "SD", "PD"]
    entry = patient["timepoints"][2]["mrecist"]["new_lesions"][0]
    assert entry["category"] == "confirmed equivocal"
    assert entry["confirmed_at"] == "follow-up 3"
