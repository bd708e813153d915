"""Sample-sheet loading and its error corpus (pipeline/samples.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.errors import InputError
from pipeline.samples import load_samples, main
from tests.conftest import run_text

HEADER = "subject\ttimepoint\tdate\timage\tarterial_image\tmask\ttreatment\n"


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    """A folder with a few (empty-content but non-empty) image files and a DICOM folder."""
    folder = tmp_path / "scans"
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz", "mask.nii.gz", "notes.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    (folder / "dicom series").mkdir()
    (folder / "empty.nii.gz").write_bytes(b"")
    return folder


def write_sheet(folder: Path, text: str, name: str = "samples.tsv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_sheet_orders_by_date_and_resolves_paths(scans: Path) -> None:
    sheet = write_sheet(
        scans.parent,
        "# a comment line\n"
        + HEADER
        + "P01\tfu1\t2023-04-01\tscans/b.nii.gz\t\tscans/mask.nii.gz\tTACE  2023-02-01\n"
        + "\n"
        + f"P01\tbaseline\t20230101\t{scans / 'a.nii.gz'}\tscans/c.nii.gz\t\t\n"
        + "P02\tbaseline\t2023-01-05\tscans/dicom series\t\t\t\n",
    )
    result = load_samples(sheet)
    assert result.subjects == ["P01", "P02"]
    first, second, third = result.scans
    assert (first.timepoint, first.date) == ("baseline", "2023-01-01")
    assert first.image == scans / "a.nii.gz" and first.arterial_image == scans / "c.nii.gz"
    assert second.mask == scans / "mask.nii.gz" and second.treatment == "TACE 2023-02-01"
    assert third.image_is_dicom and not first.image_is_dicom
    assert result.followed_subjects() == ["P01"]
    assert len(result.warnings) == 1 and "'P02' has one time point only" in result.warnings[0]


def test_spaces_unicode_and_optional_columns(tmp_path: Path) -> None:
    folder = tmp_path / "Pätient ünïcode" / "scan one"
    folder.mkdir(parents=True)
    (folder / "ct 1.nii.gz").write_bytes(b"x")
    (folder / "ct 2.nii.gz").write_bytes(b"x")
    sheet = write_sheet(
        tmp_path,
        "subject\ttimepoint\tdate\timage\n"
        "S-1\tt0\t2021-05-01\tPätient ünïcode/scan one/ct 1.nii.gz\n"
        "S-1\tt1\t2021-08-01\tPätient ünïcode/scan one/ct 2.nii.gz\n",
        "sheet ü.tsv",
    )
    result = load_samples(sheet)
    assert [s.image.name for s in result.scans] == ["ct 1.nii.gz", "ct 2.nii.gz"]
    assert result.scans[0].mask is None and result.scans[0].treatment == ""
    assert result.warnings == []


def test_generated_files_may_be_missing(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    sheet = write_sheet(
        tmp_path / "config",
        "subject\ttimepoint\tdate\timage\n"
        "D1\tbaseline\t2022-01-01\t../resources/demo/D1/baseline/ct.nii.gz\n"
        "D1\tfu1\t2022-03-01\t../resources/demo/D1/fu1/ct.nii.gz\n",
    )
    with pytest.raises(InputError, match="not found"):
        load_samples(sheet)
    result = load_samples(sheet, generated=[tmp_path / "resources" / "demo"])
    assert result.scans[1].image == tmp_path / "resources/demo/D1/fu1/ct.nii.gz"


BAD_SHEETS = [
    pytest.param(
        HEADER + "P01\tt0\t2023-01-01\tscans/missing.nii.gz\t\t\t\n",
        "image (CT) not found",
        id="missing-image",
    ),
    pytest.param(
        HEADER + "P01\tt0\t2023-01-01\tscans/a.nii.gz\tscans/nope.nii.gz\t\t\n",
        "arterial_image (CT) not found",
        id="missing-arterial",
    ),
    pytest.param(
        HEADER + "P01\tt0\t2023-01-01\tscans/a.nii.gz\t\tscans/nomask.nii.gz\t\n",
        "mask not found",
        id="missing-mask",
    ),
    pytest.param(
        HEADER + "P01\tt0\t2023-01-01\tscans/a.nii.gz\t\tscans/dicom series\t\n",
        "is a folder",
        id="mask-folder",
    ),
    pytest.param(
        HEADER + "P01\tt0\t2023-01-01\tscans/notes.txt\t\t\t\n",
        "not a supported image file",
        id="unsupported-image",
    ),
    pytest.param(
        HEADER + "P01\tt0\t2023-01-01\tscans/empty.nii.gz\t\t\t\n", "empty file", id="empty-image"
    ),
    pytest.param(
        HEADER
        + "P01\tt0\t2023-01-01\tscans/a.nii.gz\t\t\t\nP01\tt0\t2023-02-01\tscans/b.nii.gz\t\t\t\n",
        "appears twice (lines 2 and 3)",
        id="duplicate-timepoint",
    ),
    pytest.param(
        HEADER + "P01\tt0\t2023-13-01\tscans/a.nii.gz\t\t\t\n",
        "not a valid date: '2023-13-01'",
        id="bad-date",
    ),
    pytest.param(
        HEADER + "P01\tt0\t01/02/2023\tscans/a.nii.gz\t\t\t\n",
        "not a valid date",
        id="bad-date-format",
    ),
    pytest.param(HEADER + "P01\tt0\t\tscans/a.nii.gz\t\t\t\n", "date is empty", id="empty-date"),
    pytest.param(
        HEADER
        + "P01\tt0\t2023-01-01\tscans/a.nii.gz\t\t\t\nP01\tt1\t2023-01-01\tscans/b.nii.gz\t\t\t\n",
        "two time points on 2023-01-01",
        id="same-date",
    ),
    pytest.param(
        "subject\ttimepoint\tdate\timage\tdelayed_image\nP01\tt0\t2023-01-01\tscans/a.nii.gz\tscans/b.nii.gz\n",
        "unknown phase column 'delayed_image'",
        id="unknown-phase",
    ),
    pytest.param(
        "subject\ttimepoint\tdate\timage\tphase\nP01\tt0\t2023-01-01\tscans/a.nii.gz\tarterial\n",
        "unknown phase column 'phase'",
        id="phase-column",
    ),
    pytest.param(
        "subject\ttimepoint\tdate\timage\tweight\nP01\tt0\t2023-01-01\tscans/a.nii.gz\t70\n",
        "unknown column 'weight'",
        id="unknown-column",
    ),
    pytest.param(
        "subject\ttimepoint\tdate\nP01\tt0\t2023-01-01\n",
        "missing column(s) image",
        id="missing-column",
    ),
    pytest.param(
        "Subject\ttimepoint\tdate\timage\nP01\tt0\t2023-01-01\tscans/a.nii.gz\n",
        "must be written in lower case",
        id="upper-case-column",
    ),
    pytest.param(
        "subject,timepoint,date,image\nP01,t0,2023-01-01,scans/a.nii.gz\n",
        "not tab-separated",
        id="comma-separated",
    ),
    pytest.param("", "sample sheet is empty", id="empty-sheet"),
    pytest.param(HEADER, "header but no scans", id="header-only"),
    pytest.param(
        HEADER + "P 01\tt0\t2023-01-01\tscans/a.nii.gz\t\t\t\n",
        "subject 'P 01' is not a valid name",
        id="bad-subject",
    ),
    pytest.param(
        HEADER + "P01\tt0/1\t2023-01-01\tscans/a.nii.gz\t\t\t\n",
        "timepoint 't0/1' is not a valid name",
        id="bad-timepoint",
    ),
    pytest.param(
        HEADER + "\tt0\t2023-01-01\tscans/a.nii.gz\t\t\t\n", "subject is empty", id="empty-subject"
    ),
    pytest.param(
        HEADER + "cohort\tt0\t2023-01-01\tscans/a.nii.gz\t\t\t\n",
        "uses for its own outputs",
        id="reserved-subject",
    ),
    pytest.param(
        HEADER
        + "P01\tt0\t2023-01-01\tscans/a.nii.gz\t\t\t\nP01\tT0\t2023-02-01\tscans/b.nii.gz\t\t\t\n",
        "only by upper/lower case",
        id="case-clash",
    ),
    pytest.param(
        HEADER + "P01\tt0\t2023-01-01\tscans/a.nii.gz\t\t\tTACE\textra\n",
        "8 fields but the header has 7",
        id="extra-field",
    ),
]


@pytest.mark.parametrize(("text", "fragment"), BAD_SHEETS)
def test_bad_sheet_gives_one_clear_line(scans: Path, text: str, fragment: str) -> None:
    sheet = write_sheet(scans.parent, text)
    with pytest.raises(InputError) as caught:
        load_samples(sheet)
    message = caught.value.message
    assert fragment in message, message
    assert "\n" not in message
    assert str(sheet) in message


def test_missing_sheet(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="sample sheet not found"):
        load_samples(tmp_path / "nothing.tsv")


def test_not_utf8(tmp_path: Path) -> None:
    sheet = tmp_path / "latin1.tsv"
    sheet.write_bytes(
        "subject\ttimepoint\tdate\timage\nP\xe4\tt0\t2023-01-01\ta.nii.gz\n".encode("latin-1")
    )
    with pytest.raises(InputError, match="not UTF-8"):
        load_samples(sheet)


def test_check_command_exit_codes(scans: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_sheet(
        scans.parent,
        HEADER
        + "P01\tt0\t2023-01-01\tscans/a.nii.gz\t\t\t\nP01\tt1\t2023-02-01\tscans/b.nii.gz\t\t\t\n",
        "good.tsv",
    )
    assert main([str(good)]) == 0
    assert "2 scans of 1 subjects" in capsys.readouterr().out
    bad = write_sheet(
        scans.parent, HEADER + "P01\tt0\tyesterday\tscans/a.nii.gz\t\t\t\n", "bad.tsv"
    )
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a valid date: 'yesterday'" in err[0]


def test_module_entry_point(scans: Path) -> None:
    bad = write_sheet(
        scans.parent, HEADER + "P01\tt0\t2023-01-01\tscans/zzz.nii.gz\t\t\t\n", "bad.tsv"
    )
    result = run_text(
        [sys.executable, "-m", "pipeline.samples", str(bad)],
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "not found" in result.stderr


def test_relocated_sheet_points_at_the_same_files(scans: Path, tmp_path: Path) -> None:
    sheet = write_sheet(
        scans.parent,
        "# demo\n"
        + HEADER
        + "P01\tt0\t2023-01-01\tscans/a.nii.gz\tscans/c.nii.gz\t\tnone\n"
        + f"P01\tt1\t2023-02-01\t{scans / 'b.nii.gz'}\t\tscans/mask.nii.gz\t\n",
    )
    target = tmp_path / "elsewhere" / "config" / "samples.tsv"
    assert main([str(sheet), "--relocate-to", str(target)]) == 0
    text = target.read_text(encoding="utf-8")
    assert "../../scans/a.nii.gz" in text and str(scans / "b.nii.gz") in text
    original, moved = load_samples(sheet), load_samples(target)
    assert [(s.image, s.arterial_image, s.mask, s.treatment) for s in original.scans] == [
        (s.image, s.arterial_image, s.mask, s.treatment) for s in moved.scans
    ]
