"""Subject reports and the cohort table (liverburden report, liverburden cohort)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _dicom_fixtures import FAKE_IDENTIFIERS, write_ct_series
from _report_fixtures import ORIGIN_XYZ_MM, SPACING_XYZ_MM, Sphere, write_subject, write_timepoint
from conftest import assert_clean_error, run_cli, shared_data

from pipeline.report import figures
from pipeline.report.cohort import COLUMNS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("subject")
    return write_subject(root, "S01")


def _report(subject: dict, output: Path, *extra: str) -> tuple[int, str]:
    args = ["report", *subject["measure"], "--images", *subject["images"], "-o", output, *extra]
    result = run_cli(*args)
    return result.exit_code, result.stderr


def test_report_content(subject: dict, tmp_path: Path) -> None:
    output = tmp_path / "report.html"
    code, stderr = _report(
        subject,
        output,
        "--response",
        str(subject["response"]),
        "--treatment",
        "fu1=TACE <left lobe>",
    )
    assert code == 0, stderr
    html = output.read_text(encoding="utf-8")
    assert "<h1>Liver tumour burden: S01</h1>" in html
    # summary: each time point with involvement and band, responses and best overall response
    for timepoint in ("baseline", "fu1", "fu2"):
        assert f"<b>{timepoint}</b>" in html
    assert "TACE &lt;left lobe&gt;" in html  # treatment text, escaped
    assert '<span class="badge PD">PD</span>' in html and '<span class="badge PR">PR</span>' in html
    assert "Best overall response" in html
    assert "synthetic subject for tests" in html  # flags shown
    assert "-32.5 %" in html  # change from baseline of fu1: (27 - 40) / 40
    # figures: three time courses and the lesion slices (targets L1, L2 first)
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">', html)
    alts = [alt for _, alt in images]
    assert alts[:3] == [
        "sum of target diameters over time",
        "tumour volume over time",
        "hepatic involvement over time",
    ]
    assert alts[3:5] == ["baseline target L1", "baseline target L2"]
    assert "fu2 lesion N1" in alts
    assert len(images) == 3 + 3 + 3 + 4  # fu2 shows 4 of its 4 lesions (limit 4)
    import base64

    for data, _ in images:
        assert base64.b64decode(data).startswith(PNG_SIGNATURE)
    # self-contained and private: no script, no external resource, no input path
    assert "<script" not in html and "<link" not in html
    assert not re.search(r'(src|href)="(?!data:)', html)
    assert str(subject["images"][0].parent.parent) not in html
    assert "ct.nii.gz" not in html


def test_lesion_limit_and_single_timepoint(subject: dict, tmp_path: Path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text("report:\n  lesions_per_timepoint: 1\n", encoding="utf-8")
    output = tmp_path / "one.html"
    result = run_cli(
        "report",
        subject["measure"][0],
        "--images",
        subject["images"][0],
        "-o",
        output,
        "--settings",
        settings,
    )
    assert result.exit_code == 0, result.stderr
    html = output.read_text(encoding="utf-8")
    assert "one time point only" in html
    alts = re.findall(r'alt="([^"]*)"', html)
    assert alts[-1] == "baseline lesion L1"  # the largest measurable lesion, without response
    assert sum(1 for a in alts if a.startswith("baseline ")) == 1


def test_report_without_images_has_no_slices(subject: dict, tmp_path: Path) -> None:
    output = tmp_path / "noimages.html"
    result = run_cli("report", *subject["measure"], "--response", subject["response"], "-o", output)
    assert result.exit_code == 0, result.stderr
    html = output.read_text(encoding="utf-8")
    assert html.count("<img ") == 3 and "No CT given" in html


def test_report_errors(subject: dict, tmp_path: Path) -> None:
    measure = [str(p) for p in subject["measure"]]
    out = str(tmp_path / "r.html")
    assert_clean_error(
        run_cli("report", *measure, "--images", subject["images"][0], "-o", out), "--images"
    )
    assert_clean_error(
        run_cli("report", *measure, "-o", str(tmp_path / "r.pdf")), "must end in .html"
    )
    assert_clean_error(
        run_cli("report", *measure, "--treatment", "fu9=x", "-o", out), "does not name a time point"
    )
    assert_clean_error(
        run_cli("report", str(tmp_path / "none"), "-o", out), "measure folder not found"
    )
    assert_clean_error(run_cli("report", *measure, "--subject", "S99", "-o", out), "differs from")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"subject": "S02", "timepoints": []}), encoding="utf-8")
    assert_clean_error(
        run_cli("report", *measure, "--response", other, "-o", out), "is for subject 'S02'"
    )
    broken = tmp_path / "broken"
    shutil.copytree(subject["measure"][0], broken)
    (broken / "measurements.json").write_text('{"subject": "S01"}', encoding="utf-8")
    assert_clean_error(run_cli("report", broken, "-o", out), "lacks field(s)")
    assert not Path(out).exists()


def test_report_from_dicom_has_no_identifiers(tmp_path: Path) -> None:
    ct_path, measure = write_timepoint(
        tmp_path, "D01", "baseline", "2024-01-15", [Sphere((10.0, 5.0, 0.0), 9.0)]
    )
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(ct_path)))
    write_ct_series(tmp_path / "dicom", hu, spacing_xyz=SPACING_XYZ_MM, origin_xyz=ORIGIN_XYZ_MM)
    output = tmp_path / "dicom.html"
    result = run_cli("report", measure, "--images", tmp_path / "dicom", "-o", output)
    assert result.exit_code == 0, result.stderr
    html = output.read_text(encoding="utf-8")
    assert html.count("<img ") == 2 + 1  # volume and involvement courses, one lesion slice
    for value in FAKE_IDENTIFIERS.values():
        assert value not in html
        assert value.split("^")[0] not in html


@pytest.mark.parametrize("flip", [(False, False, False), (True, True, False), (True, False, True)])
def test_lesion_slice_geometry_any_storage_order(
    tmp_path: Path, flip: tuple[bool, bool, bool]
) -> None:
    """Whatever the axes' storage order, the drawn slice holds the lesion under its calipers."""
    ct_path, measure = write_timepoint(
        tmp_path, "G01", "baseline", "2024-01-15", [Sphere((-15.0, 8.0, 6.0), 9.0)]
    )
    images = [
        sitk.ReadImage(str(p))
        for p in (ct_path, measure / "liver.nii.gz", measure / "lesions.nii.gz")
    ]
    images = [sitk.Flip(image, list(flip)) for image in images]
    oriented = figures.oriented_scan(*images)
    lesion = json.loads((measure / "measurements.json").read_text(encoding="utf-8"))["lesions"][0]
    start, end = lesion["longest_axial_diameter_endpoints_mm"]
    middle = [(a + b) / 2 for a, b in zip(start, end, strict=True)]
    x, y, z = oriented.index_of(middle)
    assert oriented.lesions_zyx[round(z), round(y), round(x)] == 1
    # radiological display: the patient's right (smaller LPS x) is on the left of the image
    assert oriented.index_of(start)[0] < oriented.index_of(end)[0]
    png = figures.lesion_slice_png(
        oriented,
        figures.LesionView(1, "t", middle, [start, end], lesion["short_axis_endpoints_mm"]),
        window_width_hu=400,
        window_level_hu=40,
        crop_margin_mm=10,
        dpi=50,
    )
    assert png.startswith(PNG_SIGNATURE)


def test_cohort_table_and_figures(subject: dict, tmp_path: Path) -> None:
    single_ct, single_measure = write_timepoint(
        tmp_path, "S02", "baseline", "2023-02-01", [Sphere((0.0, 0.0, 0.0), 10.0)]
    )
    del single_ct
    output = tmp_path / "out" / "cohort.csv"
    result = run_cli(
        "cohort",
        *subject["measure"],
        single_measure,
        "--responses",
        subject["response"],
        "-o",
        output,
        "--figures",
        tmp_path / "out" / "cohort",
    )
    assert result.exit_code == 0, result.stderr
    with output.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0].keys()) == COLUMNS
    assert [(r["subject"], r["timepoint"]) for r in rows] == [
        ("S01", "baseline"),
        ("S01", "fu1"),
        ("S01", "fu2"),
        ("S02", "baseline"),
    ]
    fu1 = rows[1]
    assert fu1["recist_response"] == "PR" and fu1["volumetric_response"] == "PR"
    assert float(fu1["change_from_baseline_percent"]) == pytest.approx(-32.5)
    assert fu1["days_from_baseline"] == "92"
    assert rows[0]["recist_response"] == "" and rows[0]["target_sum_mm"] == "40"
    assert {r["best_recist"] for r in rows[:3]} == {"PR"} and rows[3]["best_recist"] == ""
    assert rows[2]["new_lesions"] == "N1" and rows[1]["new_lesions"] == ""
    assert (
        "warning:example_flag" not in rows[0]["flags"]
    )  # response-level flags are not per time point
    involvement = float(rows[0]["involvement_percent"])
    assert 0 < involvement < 100
    for name in ("waterfall", "spider", "involvement"):
        png = (tmp_path / "out" / "cohort" / f"{name}.png").read_bytes()
        assert png.startswith(PNG_SIGNATURE) and len(png) > 5000


def test_cohort_without_follow_up(tmp_path: Path) -> None:
    _, measure = write_timepoint(tmp_path, "S03", "baseline", "2023-02-01", [])
    output = tmp_path / "cohort.csv"
    result = run_cli("cohort", measure, "-o", output, "--figures", tmp_path / "figures")
    assert result.exit_code == 0, result.stderr
    assert len(output.read_text(encoding="utf-8").splitlines()) == 2
    assert all(
        (tmp_path / "figures" / f"{n}.png").is_file()
        for n in ("waterfall", "spider", "involvement")
    )


def test_cohort_errors(subject: dict, tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    assert_clean_error(
        run_cli("cohort", *subject["measure"], "-o", tmp_path / "c.txt"), "must end in .csv"
    )
    assert_clean_error(
        run_cli("cohort", subject["measure"][0], subject["measure"][0], "-o", out),
        "has a time point twice",
    )
    assert_clean_error(
        run_cli(
            "cohort",
            subject["measure"][0],
            "--responses",
            subject["response"],
            subject["response"],
            "-o",
            out,
        ),
        "a second response file",
    )
    assert not out.exists()


def test_timecourse_png_handles_gaps() -> None:
    png = figures.timecourse_png(
        ["2023-01-01", "2023-03-01", "2023-06-01"],
        [figures.Series("a", [10.0, None, 8.0])],
        [figures.ThresholdLine("t", [7.0]), figures.ThresholdLine("n", [None, 12.0, 12.0])],
        title="t",
        ylabel="mm",
        dpi=40,
        annotations=[None, None, "SD"],
        bands=(25.0, 50.0),
    )
    assert png.startswith(PNG_SIGNATURE)
    assert np.frombuffer(png, dtype=np.uint8).size > 1000


def test_style_sheet_is_well_formed() -> None:
    """Every rule of the inline style sheet is closed (a broken rule silently drops styles)."""
    from pipeline.report.html import STYLE

    depth = 0
    for character in STYLE:
        depth += {"{": 1, "}": -1}.get(character, 0)
        assert depth in (0, 1)
    assert depth == 0
    for line in STYLE.strip().splitlines():
        stripped = line.strip()
        assert stripped.endswith(("{", "}", ";")), line


@pytest.mark.realdata
@pytest.mark.slow
def test_report_on_real_ct(tmp_path: Path) -> None:
    """3D-IRCADb patient 17 with its expert labels: both lesions drawn on the real CT."""
    ct = shared_data("ircad-1.17/ct.nii.gz")
    labels = shared_data("ircad-1.17/labels.nii.gz")
    measure = tmp_path / "measure"
    result = run_cli(
        "measure", ct, labels, "-o", measure, "--subject", "IRCAD17", "--timepoint", "t0", "-q"
    )
    assert result.exit_code == 0, result.stderr
    output = tmp_path / "report.html"
    result = run_cli("report", measure, "--images", ct, "-o", output)
    assert result.exit_code == 0, result.stderr
    html = output.read_text(encoding="utf-8")
    alts = re.findall(r'alt="([^"]*)"', html)
    assert sorted(a for a in alts if a.startswith("t0 ")) == ["t0 lesion L1", "t0 lesion L2"]
    assert "IRCAD17" in html and "ircad" not in html.lower().replace("ircad17", "")
