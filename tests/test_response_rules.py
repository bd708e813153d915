"""Response rules on plain numbers: RECIST 1.1 tables and thresholds, best overall
response, volumetric thresholds, settings (no images involved)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from pipeline.errors import InputError
from pipeline.response.model import (
    BASELINE,
    DISAPPEARED,
    MATCHED,
    MERGED,
    SPLIT,
    KeyValues,
    LesionKey,
    LesionRecord,
    Observation,
    ScanRecord,
    TrackedTimePoint,
    Tracking,
    key_values,
)
from pipeline.response.recist import (
    TargetSum,
    best_overall_response,
    classify_non_target_volume,
    classify_target_sum,
    measurable_minimum_mm,
    overall_response,
    target_sum,
)
from pipeline.response.settings import ResponseSettings
from pipeline.response.volumetric import Burden, assess_volumetric, classify_volume
from pipeline.settings import settings_from_mapping

SETTINGS = ResponseSettings()


def _sum(
    total: float | None, *, missing: tuple[str, ...] = (), available: float | None = None
) -> TargetSum:
    return TargetSum(
        total_mm=total,
        available_mm=total if available is None else available,
        missing=list(missing),
        all_gone=total == 0 and not missing,
        details=[],
    )


def _classify(current: float, baseline: float, nadir: float | None = None) -> str:
    response, _ = classify_target_sum(
        _sum(current),
        baseline,
        nadir,
        partial_response_percent=SETTINGS.partial_response_percent,
        progression_percent=SETTINGS.progression_percent,
        progression_minimum_increase_mm=SETTINGS.progression_minimum_increase_mm,
    )
    return response


# ------------------------------------------------------------------ target thresholds


@pytest.mark.parametrize(
    ("current", "expected"),
    [(70.0, "PR"), (70.1, "SD"), (69.9, "PR"), (0.0, "CR"), (100.0, "SD")],
)
def test_partial_response_threshold_is_minus_30_percent(current: float, expected: str) -> None:
    assert _classify(current, 100.0) == expected


@pytest.mark.parametrize(
    ("nadir", "current", "expected"),
    [
        (25.0, 30.0, "PD"),  # +20 %, +5.0 mm
        (24.5, 29.4, "SD"),  # +20 %, +4.9 mm: below the absolute minimum
        (100.0, 120.0, "PD"),  # +20 %, +20 mm
        (100.0, 119.9, "SD"),  # +19.9 %
        (10.0, 15.0, "PD"),  # +50 %, +5 mm
    ],
)
def test_progression_needs_20_percent_and_5_mm_over_nadir(
    nadir: float, current: float, expected: str
) -> None:
    assert _classify(current, nadir, nadir) == expected


def test_progression_wins_over_partial_response() -> None:
    # -40 % from baseline but +50 % (+10 mm) over a nadir of 20 mm
    assert _classify(30.0, 50.0, 20.0) == "PD"


def test_progression_reason_names_numbers() -> None:
    response, reasons = classify_target_sum(
        _sum(30.0),
        40.0,
        25.0,
        partial_response_percent=-30.0,
        progression_percent=20.0,
        progression_minimum_increase_mm=5.0,
    )
    assert response == "PD"
    assert "+20.0 %" in reasons[0] and "+5.0 mm" in reasons[0]


def test_missing_target_is_not_evaluable_unless_progression_is_certain() -> None:
    kwargs = dict(
        partial_response_percent=-30.0,
        progression_percent=20.0,
        progression_minimum_increase_mm=5.0,
    )
    response, _ = classify_target_sum(
        _sum(None, missing=("T2",), available=20.0), 50.0, 40.0, **kwargs
    )
    assert response == "NE"
    response, reasons = classify_target_sum(
        _sum(None, missing=("T2",), available=60.0), 50.0, 40.0, **kwargs
    )
    assert response == "PD"
    assert "T2" in reasons[0]


def test_no_targets_at_baseline_is_not_evaluable_with_reason() -> None:
    response, reasons = classify_target_sum(
        _sum(0.0),
        None,
        None,
        partial_response_percent=-30.0,
        progression_percent=20.0,
        progression_minimum_increase_mm=5.0,
    )
    assert response == "NE"
    assert reasons == ["no measurable lesion at baseline"]


@pytest.mark.parametrize(
    ("thickness", "minimum"), [(None, 10.0), (2.5, 10.0), (5.0, 10.0), (7.0, 14.0)]
)
def test_measurable_minimum_follows_slice_thickness(
    thickness: float | None, minimum: float
) -> None:
    assert measurable_minimum_mm(thickness, SETTINGS) == minimum


# -------------------------------------------------------------- overall response table

RECIST_TABLE_1 = [
    ("CR", "CR", False, "CR"),
    ("CR", "Non-CR/Non-PD", False, "PR"),
    ("CR", "NE", False, "PR"),
    ("PR", "Non-CR/Non-PD", False, "PR"),
    ("PR", "NE", False, "PR"),
    ("PR", "CR", False, "PR"),
    ("PR", None, False, "PR"),
    ("SD", "Non-CR/Non-PD", False, "SD"),
    ("SD", "NE", False, "SD"),
    ("SD", None, False, "SD"),
    ("NE", "Non-CR/Non-PD", False, "NE"),
    ("NE", "CR", False, "NE"),
    ("PD", "CR", False, "PD"),
    ("PD", "Non-CR/Non-PD", True, "PD"),
    ("PD", None, False, "PD"),
    ("CR", "PD", False, "PD"),
    ("SD", "PD", False, "PD"),
    ("PR", "PD", True, "PD"),
    ("CR", "CR", True, "PD"),
    ("SD", "Non-CR/Non-PD", True, "PD"),
    ("NE", "NE", True, "PD"),
    ("CR", None, False, "CR"),
]


@pytest.mark.parametrize(("target", "non_target", "new", "expected"), RECIST_TABLE_1)
def test_overall_response_table_with_targets(
    target: str, non_target: str | None, new: bool, expected: str
) -> None:
    response, rule = overall_response(target, non_target, new, has_targets=True)
    assert response == expected
    assert rule.endswith(expected) or expected in rule


@pytest.mark.parametrize(
    ("non_target", "new", "expected"),
    [
        ("CR", False, "CR"),
        ("Non-CR/Non-PD", False, "SD"),  # RECIST table 2: non-CR/non-PD, reported as SD
        ("NE", False, "NE"),
        ("PD", False, "PD"),
        ("Non-CR/Non-PD", True, "PD"),
        (None, False, "NE"),
        (None, True, "PD"),
    ],
)
def test_overall_response_table_without_targets(
    non_target: str | None, new: bool, expected: str
) -> None:
    response, rule = overall_response("NE", non_target, new, has_targets=False)
    assert response == expected
    if non_target == "Non-CR/Non-PD" and not new:
        assert "non-CR/non-PD" in rule


# ---------------------------------------------------------------- best overall response


@pytest.mark.parametrize(
    ("responses", "expected"),
    [
        ([(60, "PR"), (120, "SD")], "PR"),  # PR then -16 %: time point SD, best PR
        ([(60, "SD"), (120, "PR"), (180, "PD")], "PR"),
        ([(60, "PD"), (120, "PR")], "PD"),  # nothing after progression counts
        ([(60, "NE"), (120, "NE")], "NE"),
        ([(60, "SD"), (120, "CR")], "CR"),
        ([(60, "NE"), (120, "PD")], "PD"),
    ],
)
def test_best_overall_response_without_confirmation(
    responses: list[tuple[int, str]], expected: str
) -> None:
    assert best_overall_response(responses, SETTINGS)[0] == expected


@pytest.mark.parametrize(
    ("responses", "expected"),
    [
        ([(56, "PR"), (112, "PR")], "PR"),
        ([(56, "PR"), (112, "CR")], "PR"),
        ([(56, "CR"), (112, "CR")], "CR"),
        ([(56, "CR"), (112, "PR")], "PR"),
        ([(56, "PR"), (112, "SD")], "SD"),
        ([(56, "PR"), (70, "PR")], "SD"),  # the repeat scan is only 14 days later
        ([(56, "PR"), (70, "PR"), (90, "PR")], "PR"),  # confirmed 34 days later
        ([(56, "PR"), (112, "PD")], "SD"),
        ([(56, "PR")], "SD"),
    ],
)
def test_best_overall_response_with_confirmation(
    responses: list[tuple[int, str]], expected: str
) -> None:
    settings = dataclasses.replace(SETTINGS, confirmation_required=True)
    assert best_overall_response(responses, settings)[0] == expected


def test_stable_disease_needs_minimum_interval() -> None:
    settings = dataclasses.replace(SETTINGS, stable_disease_minimum_days=42)
    assert best_overall_response([(30, "SD"), (60, "SD")], settings)[0] == "SD"
    assert best_overall_response([(30, "SD")], settings)[0] == "NE"
    assert best_overall_response([(30, "SD"), (60, "PD")], settings)[0] == "PD"
    assert best_overall_response([(30, "SD")], SETTINGS)[0] == "SD"


def test_best_overall_response_of_baseline_only_is_null_with_reason() -> None:
    best, reasons = best_overall_response([], SETTINGS)
    assert best is None
    assert "baseline only" in reasons[0]


# ------------------------------------------------------------------ non-target stand-in


def _values(volume: float, present: bool = True) -> KeyValues:
    return KeyValues(present, True, 10.0, None, volume, None, None)


@pytest.mark.parametrize(
    ("volumes", "nadir", "expected"),
    [
        ((1.0, 0.73), 1.0, "PD"),  # +73 %
        ((1.0, 0.72), 1.0, "Non-CR/Non-PD"),  # +72 %
        ((0.5, 0.5), 1.0, "Non-CR/Non-PD"),
    ],
)
def test_non_target_volume_stand_in(
    volumes: tuple[float, float], nadir: float, expected: str
) -> None:
    values = {"A": _values(volumes[0]), "B": _values(volumes[1])}
    response, total, _ = classify_non_target_volume(
        values, ["A", "B"], nadir, quantity="volume_ml", settings=SETTINGS
    )
    assert response == expected
    assert total == pytest.approx(sum(volumes))


def test_non_target_complete_response_and_none() -> None:
    gone = KeyValues(False, True, 0.0, 0.0, 0.0, 0.0, None)
    response, _, reasons = classify_non_target_volume(
        {"A": gone}, ["A"], 1.0, quantity="volume_ml", settings=SETTINGS
    )
    assert response == "CR"
    response, total, reasons = classify_non_target_volume(
        {}, [], None, quantity="volume_ml", settings=SETTINGS
    )
    assert response is None and total is None
    assert "no non-target" in reasons[0]


def test_non_target_minimum_absolute_increase_setting() -> None:
    settings = dataclasses.replace(SETTINGS, non_target_progression_minimum_increase_ml=1.0)
    values = {"A": _values(0.5)}  # +150 % but only +0.3 mL
    response, _, _ = classify_non_target_volume(
        values, ["A"], 0.2, quantity="volume_ml", settings=settings
    )
    assert response == "Non-CR/Non-PD"


# ----------------------------------------------------------- split and merged targets


def _tracking_with(observations: dict[str, Observation]) -> TrackedTimePoint:
    scan = ScanRecord("fu1", dt.date(2024, 3, 1), {})
    return TrackedTimePoint(scan, observations)


def _lesion(lesion_id: int, diameter: float, volume: float = 1.0) -> LesionRecord:
    return LesionRecord(lesion_id, diameter, volume_ml=volume, mean_hu=50.0)


def test_split_target_sums_its_fragments() -> None:
    timepoint = _tracking_with(
        {"L1": Observation("L1", SPLIT, (_lesion(1, 12.0), _lesion(2, 9.0)))}
    )
    values = key_values(timepoint, ["L1"])
    assert values["L1"].diameter_mm == pytest.approx(21.0)
    total = target_sum(
        values,
        {"L1": SPLIT},
        ["L1"],
        quantity="diameter_mm",
        settings=SETTINGS,
        apply_too_small=True,
    )
    assert total.total_mm == pytest.approx(21.0)


def test_merged_targets_assign_the_merged_diameter_to_one() -> None:
    merged = _lesion(1, 40.0, 9.0)
    timepoint = _tracking_with(
        {
            "L1": Observation("L1", MERGED, (merged,), ("L2",)),
            "L2": Observation("L2", MERGED, (merged,), ("L1",)),
        }
    )
    values = key_values(timepoint, ["L2", "L1"])  # L2 first in priority: it carries the lesion
    assert values["L2"].diameter_mm == 40.0 and values["L1"].diameter_mm == 0.0
    assert values["L1"].present
    total = target_sum(
        values,
        {"L1": MERGED, "L2": MERGED},
        ["L1", "L2"],
        quantity="diameter_mm",
        settings=SETTINGS,
        apply_too_small=True,
    )
    assert total.total_mm == 40.0
    assert not total.all_gone


@pytest.mark.parametrize(
    ("measured", "apply", "counted"),
    [(3.0, True, 5.0), (4.99, True, 5.0), (5.0, True, 5.0), (7.0, True, 7.0), (3.0, False, 3.0)],
)
def test_too_small_to_measure_counts_5_mm(measured: float, apply: bool, counted: float) -> None:
    timepoint = _tracking_with({"L1": Observation("L1", MATCHED, (_lesion(1, measured),))})
    values = key_values(timepoint, ["L1"])
    total = target_sum(
        values,
        {"L1": MATCHED},
        ["L1"],
        quantity="diameter_mm",
        settings=SETTINGS,
        apply_too_small=apply,
    )
    assert total.total_mm == pytest.approx(counted)


def test_disappeared_target_counts_zero() -> None:
    timepoint = _tracking_with(
        {
            "L1": Observation("L1", DISAPPEARED),
            "L2": Observation("L2", MATCHED, (_lesion(2, 15.0),)),
        }
    )
    values = key_values(timepoint, ["L1", "L2"])
    total = target_sum(
        values,
        {"L1": DISAPPEARED, "L2": MATCHED},
        ["L1", "L2"],
        quantity="diameter_mm",
        settings=SETTINGS,
        apply_too_small=True,
    )
    assert total.total_mm == 15.0
    assert total.details[0]["counted_mm"] == 0.0


def test_reappearance_after_complete_response_is_progression() -> None:
    from pipeline.response.assess import assess_subject

    def scan(index: int, lesions: dict[int | str, LesionRecord]) -> ScanRecord:
        return ScanRecord(
            f"t{index}",
            dt.date(2024, 1, 1) + dt.timedelta(days=60 * index),
            lesions,
            tumor_volume_ml=sum(r.volume_ml or 0 for r in lesions.values()),
            liver_volume_ml=1500.0,
            involvement_percent=0.0,
        )

    first = {1: _lesion(1, 20.0), 2: _lesion(2, 6.0, 0.1)}
    tracking = Tracking(
        "S",
        [
            TrackedTimePoint(
                scan(0, first),
                {
                    "L1": Observation("L1", BASELINE, (first[1],)),
                    "L2": Observation("L2", BASELINE, (first[2],)),
                },
            ),
            TrackedTimePoint(
                scan(1, {}),
                {"L1": Observation("L1", DISAPPEARED), "L2": Observation("L2", DISAPPEARED)},
            ),
            TrackedTimePoint(
                scan(2, {1: _lesion(1, 4.0, 0.05)}),
                {
                    "L1": Observation("L1", MATCHED, (_lesion(1, 4.0, 0.05),), reappeared=True),
                    "L2": Observation("L2", DISAPPEARED),
                },
            ),
        ],
        {"L1": LesionKey("L1", 1, 0), "L2": LesionKey("L2", 2, 0)},
    )
    # measured 4 mm counts as measured: +4 mm over the nadir of 0 mm is not PD by the sum alone
    settings = dataclasses.replace(SETTINGS, too_small_below_mm=0.0)
    result = assess_subject(tracking, settings)
    recist = [t["recist"] for t in result["timepoints"]]
    assert [r["overall_response"] for r in recist] == ["CR", "PD"]
    assert recist[1]["target_response"] == "PR"
    assert any("after a complete response" in reason for reason in recist[1]["reasons"])
    off = assess_subject(
        tracking,
        dataclasses.replace(settings, reappearance_after_complete_response_is_progression=False),
    )
    assert (
        off["timepoints"][1]["recist"]["overall_response"] == "PR"
    )  # target PR (-80 %), non-target CR


# ------------------------------------------------------------------------ volumetric


@pytest.mark.parametrize(
    ("volume", "nadir", "expected"),
    [
        (35.0, 100.0, "PR"),  # -65 %
        (35.1, 100.0, "SD"),  # -64.9 %
        (0.0, 100.0, "CR"),
        (173.0, 100.0, "PD"),  # +73 % over the nadir
        (172.9, 100.0, "SD"),
        (69.2, 40.0, "PD"),  # -30.8 % from baseline, +73 % over a nadir of 40 mL
    ],
)
def test_volumetric_thresholds(volume: float, nadir: float, expected: str) -> None:
    response, reasons = classify_volume(volume, 100.0, nadir, SETTINGS)
    assert response == expected, reasons


def test_volumetric_new_lesion_setting_and_viable_volume() -> None:
    burdens = [Burden(10.0, 8.0, 5.0, 2), Burden(9.0, 2.0, 4.5, 3)]
    result = assess_volumetric(burdens, [True], SETTINGS)[0]
    assert result["overall_response"] == "PD"
    assert result["viable_change_from_baseline_percent"] == pytest.approx(-75.0)
    quiet = assess_volumetric(
        burdens, [True], dataclasses.replace(SETTINGS, volumetric_new_lesion_is_progression=False)
    )[0]
    assert quiet["overall_response"] == "SD"
    assert quiet["viable_response"] == "PR"
    no_arterial = assess_volumetric(
        [Burden(10.0, None, 5.0, 2), Burden(3.0, None, 1.0, 1)], [False], SETTINGS
    )[0]
    assert no_arterial["overall_response"] == "PR"
    assert no_arterial["viable_response"] is None


# ------------------------------------------------------------------------- settings


def test_settings_refuse_unknown_keys_and_bad_choices() -> None:
    with pytest.raises(InputError, match="unknown setting"):
        settings_from_mapping(ResponseSettings, {"partial_respons_percent": -30.0})
    with pytest.raises(InputError, match="equivocal_new_lesion_progression"):
        settings_from_mapping(ResponseSettings, {"equivocal_new_lesion_progression": "sometimes"})
    with pytest.raises(InputError, match="partial_response_percent"):
        settings_from_mapping(ResponseSettings, {"partial_response_percent": 30.0})
    settings = settings_from_mapping(ResponseSettings, {"max_targets_per_organ": 3})
    assert settings.max_targets_per_organ == 3
