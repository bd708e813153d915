"""No output and nothing printed carries a DICOM patient identifier (DICOM SEG excepted).

Two examinations of one patient as DICOM series with made-up identifiers
(names, IDs, birth date, accession number, institution, physicians, dates other
than the study date) go through every command that reads them: segment,
measure, respond, report, cohort, train prepare and dicom-seg. Every byte each
writes (NIfTI headers and voxels after decompression, JSON, CSV, HTML with its
embedded images, PNG text chunks, provenance) and everything each prints is
searched for each identifier in its common encodings. The DICOM SEG is the one
output that must carry the source's patient and study modules (to be filed
with the images); the test checks that it does.

The synthetic version never skips; the real-series version uses
``../shared/data/hcc048-portal-venous/dicom`` and skips without it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from tests._corpus_fixtures import corpus_workspace
from tests._dicom_fixtures import write_ct_series
from tests._privacy_fixtures import (
    IDENTIFIERS,
    SEG_MUST_CARRY,
    copy_series,
    find_identifiers,
    find_in_bytes,
    needles,
)
from tests.conftest import run_cli, shared_data
from tests.corpus import Workspace
from tests.corpus.base import image_like, write_image

__all__ = ["corpus_workspace"]

BASELINE_DATE = "20240115"
FOLLOW_UP_DATE = "20240415"


def _ellipsoid_labels(reference: sitk.Image, tumour_radius_mm: float) -> np.ndarray:
    """A liver-sized ellipsoid (label 1) with a round tumour (label 2) in the middle
    of ``reference``'s body: labels for a real series that has none."""
    size_xyz = np.asarray(reference.GetSize())
    spacing_xyz = np.asarray(reference.GetSpacing())
    z, y, x = np.indices(tuple(size_xyz[::-1]), dtype=np.float32)
    centre = size_xyz * np.array([0.4, 0.45, 0.5])
    radii_mm = np.array([60.0, 50.0, 25.0])
    radii = radii_mm / spacing_xyz
    liver = ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + (
        (z - centre[2]) / radii[2]
    ) ** 2 <= 1
    tumour = (
        ((x - centre[0]) * spacing_xyz[0]) ** 2
        + ((y - centre[1]) * spacing_xyz[1]) ** 2
        + ((z - centre[2]) * spacing_xyz[2]) ** 2
    ) <= tumour_radius_mm**2
    labels = liver.astype(np.uint8)
    labels[tumour & liver] = 2
    return labels


def run_privacy_flow(
    baseline_series: Path,
    follow_up_series: Path,
    labels: tuple[np.ndarray, np.ndarray],
    bundle: Path,
    out: Path,
    capfd: pytest.CaptureFixture[str],
) -> dict[str, str]:
    """Every command on two identified DICOM examinations; returns what each printed."""
    from pipeline.io import read_ct

    printed: dict[str, str] = {}

    def cli(name: str, *args: object) -> None:
        result = run_cli(*args)
        captured = capfd.readouterr()
        printed[name] = result.stdout + result.stderr + captured.out + captured.err
        assert result.exit_code == 0, printed[name]

    out.mkdir(parents=True)
    label_paths = []
    for name, series, array in (
        ("baseline", baseline_series, labels[0]),
        ("fu1", follow_up_series, labels[1]),
    ):
        reference = read_ct(series).image
        label_paths.append(write_image(image_like(array, reference), out / f"{name}-labels.nii.gz"))
    measured = [out / "baseline" / "measure", out / "fu1" / "measure"]
    cli(
        "segment",
        "segment",
        baseline_series,
        "-o",
        out / "baseline" / "segmentation.nii.gz",
        "--model",
        bundle,
        "--device",
        "cpu",
        "--fast",
        "-v",
    )
    # the study date comes from the DICOM for the baseline, from --date for the follow-up
    cli(
        "measure baseline",
        "measure",
        baseline_series,
        label_paths[0],
        "-o",
        measured[0],
        "--subject",
        "P01",
        "--timepoint",
        "baseline",
        "-v",
    )
    cli(
        "measure fu1",
        "measure",
        follow_up_series,
        label_paths[1],
        "-o",
        measured[1],
        "--subject",
        "P01",
        "--timepoint",
        "fu1",
        "--date",
        "2024-04-15",
        "-v",
    )
    cli("respond", "respond", *measured, "-o", out / "response.json", "-v")
    cli(
        "report",
        "report",
        *measured,
        "--images",
        baseline_series,
        follow_up_series,
        "--response",
        out / "response.json",
        "-o",
        out / "report.html",
        "-v",
    )
    cli(
        "cohort",
        "cohort",
        *measured,
        "--responses",
        out / "response.json",
        "-o",
        out / "cohort.csv",
        "--figures",
        out / "cohort",
        "-v",
    )
    table = out.parent / "training.tsv"
    table.write_text(f"image\tlabel\n{baseline_series}\t{label_paths[0]}\n", encoding="utf-8")
    cli(
        "train prepare",
        "train",
        "prepare",
        table,
        "--cache",
        out / "cache",
        "--stage",
        "liver",
        "-v",
    )
    cli(
        "dicom-seg",
        "dicom-seg",
        label_paths[0],
        baseline_series,
        "-o",
        out / "segmentation.dcm",
        "-v",
    )
    return printed


def check_no_identifiers(out: Path, printed: dict[str, str]) -> None:
    seg = out / "segmentation.dcm"
    hits = find_identifiers([out], printed, exclude=[seg])
    assert not hits, "\n".join(hits)
    # the DICOM SEG carries the patient and study modules of its source series
    dataset = pydicom.dcmread(seg)
    for keyword in SEG_MUST_CARRY:
        assert str(dataset.get(keyword)) == IDENTIFIERS[keyword], keyword
    # and the study date is kept where it belongs
    measurements = (out / "baseline" / "measure" / "measurements.json").read_text(encoding="utf-8")
    assert '"study_date": "2024-01-15"' in measurements


def test_search_finds_identifiers_in_every_encoding(tmp_path: Path) -> None:
    """The search itself: it must find what it looks for, where it hides."""
    import base64
    import gzip
    import io
    import zipfile
    import zlib

    search = needles()
    assert find_in_bytes("plain", b"x Testpatient^Rosalind y", search)
    assert find_in_bytes("upper", b"TESTPATIENT ROSALIND", search)
    assert find_in_bytes("one name", b"dear rosalind,", search)
    assert find_in_bytes("iso birth date", b'"born": "1952-03-14"', search)
    assert find_in_bytes("gz", gzip.compress(b"PID-7731-XQ"), search)
    assert find_in_bytes("utf16", "ACC-99812-ZT".encode("utf-16-le"), search)
    chunk = b"Comment\0\0" + zlib.compress(b"Hospital of Fakeville")
    png = b"\x89PNG\r\n\x1a\n" + len(chunk).to_bytes(4, "big") + b"zTXt" + chunk + b"\0\0\0\0"
    assert find_in_bytes("png", png, search)
    html = b'<img src="data:image/png;base64,' + base64.b64encode(png) + b'">'
    assert find_in_bytes("html", html, search)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("meta.json", '{"case": "OPID-5521-QW"}')
    assert find_in_bytes("npz", archive.getvalue(), search)
    assert not find_in_bytes("clean", b"subject P01, study date 2024-01-15, reader", search)


def test_no_identifiers_in_any_output_synthetic_series(
    corpus_workspace: Workspace, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    ws = corpus_workspace
    source = tmp_path / "source"
    write_ct_series(
        source,
        ws.base.hu_zyx,
        **ws.dicom_geometry,
        study_date=BASELINE_DATE,
        identifiers=IDENTIFIERS,
    )
    baseline = copy_series(source, tmp_path / "visit1", study_date=BASELINE_DATE)
    follow_up = copy_series(
        source, tmp_path / "visit2", study_date=FOLLOW_UP_DATE, shift_mm=(3.0, -2.0, 5.0)
    )
    labels = (ws.base.labels_zyx, sitk.GetArrayFromImage(ws.base.follow_up_labels))
    out = tmp_path / "out"
    printed = run_privacy_flow(baseline, follow_up, labels, ws.bundle, out, capfd)
    check_no_identifiers(out, printed)


@pytest.mark.slow
@pytest.mark.realdata
def test_no_identifiers_in_any_output_real_series(
    corpus_workspace: Workspace, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    source = shared_data("hcc048-portal-venous/dicom")
    # 24 slices of the real series (real headers and pixels; fewer slices keep the test short)
    keep = slice(34, 58)
    baseline = copy_series(source, tmp_path / "baseline", study_date=BASELINE_DATE, slices=keep)
    follow_up = copy_series(
        source,
        tmp_path / "follow-up",
        study_date=FOLLOW_UP_DATE,
        shift_mm=(3.0, -2.0, 5.0),
        slices=keep,
    )
    from pipeline.io import read_ct

    reference = read_ct(baseline).image
    labels = (_ellipsoid_labels(reference, 15.0), _ellipsoid_labels(reference, 10.0))
    out = tmp_path / "out"
    printed = run_privacy_flow(baseline, follow_up, labels, corpus_workspace.bundle, out, capfd)
    check_no_identifiers(out, printed)
