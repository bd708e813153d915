"""The Snakemake workflow run for real on tiny synthetic cohorts (slow; CI runs them).

Every run happens in a temporary working folder (``--directory``), never in
the repository's ``results/``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
import SimpleITK as sitk
from _dicom_fixtures import write_ct_series
from _workflow_fixtures import REPO_ROOT, planned_jobs, snakemake, write_config
from conftest import run_cli

from pipeline.io import read_ct
from pipeline.report.dicom_seg import labels_on_source, read_source_datasets

pytestmark = pytest.mark.slow

TINY_BUNDLE = REPO_ROOT / "tests" / "data" / "tiny_bundle"


def _phantom(folder: Path, subjects: int, seed: int) -> Path:
    result = run_cli(
        "phantom", folder, "--subjects", str(subjects), "--seed", str(seed), "--size", "tiny", "-q"
    )
    assert result.exit_code == 0, result.stderr
    return folder


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_workflow_with_precomputed_masks_and_dicom(tmp_path: Path) -> None:
    """Masks from the sheet (no segmentation), a one-time-point subject, a DICOM input."""
    cohort = _phantom(tmp_path / "cohort ü", subjects=2, seed=3)  # a space, non-ASCII
    truth_rows = (cohort / "samples_truth.tsv").read_text(encoding="utf-8").splitlines()
    # a DICOM copy of demo-01's baseline CT, measured with its truth mask, as a subject of its own
    ct = sitk.ReadImage(str(cohort / "demo-01/baseline/ct.nii.gz"))
    write_ct_series(
        cohort / "dicom-01",
        sitk.GetArrayFromImage(ct).astype(np.float32),
        spacing_xyz=ct.GetSpacing(),
        origin_xyz=ct.GetOrigin(),
    )
    sheet = cohort / "sheet.tsv"
    sheet.write_text(
        "\n".join(truth_rows)
        + "\nsolo\tbaseline\t2024-05-02\tdemo-02/baseline/ct.nii.gz\t\t"
        + "demo-02/baseline/labels.nii.gz\tnone yet"
        + "\ndicom-01\tbaseline\t2024-06-01\tdicom-01\t\tdemo-01/baseline/labels.nii.gz\t\n",
        encoding="utf-8",
    )
    workdir = tmp_path / "work"
    config = write_config(workdir, samples=str(sheet))
    result = snakemake(workdir, "--cores", "2", "--configfile", config)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    results = workdir / "results"
    subjects = ["demo-01", "demo-02", "solo", "dicom-01"]
    for subject in subjects:
        html = (results / subject / "report.html").read_text(encoding="utf-8")
        assert f"Liver tumour burden: {subject}" in html and "<img " in html
    assert (results / "demo-01" / "response.json").is_file()
    assert not (results / "solo" / "response.json").exists()
    assert not list(results.glob("*/*/segmentation.nii.gz"))  # every scan had its mask
    rows = _rows(results / "cohort.csv")
    assert sorted((r["subject"], r["timepoint"]) for r in rows) == sorted(
        [(s, "baseline") for s in subjects] + [("demo-01", "followup-1"), ("demo-02", "followup-1")]
    )
    # the phantoms' scenarios: demo-01 partial response, demo-02 progression (truth.json)
    truth = json.loads((cohort / "truth.json").read_text(encoding="utf-8"))
    assert truth  # the truth of the scenarios is there for the response tests to check
    by_key = {(r["subject"], r["timepoint"]): r for r in rows}
    assert by_key[("demo-01", "followup-1")]["recist_response"] == "PR"
    assert by_key[("demo-02", "followup-1")]["recist_response"] == "PD"
    for name in ("waterfall", "spider", "involvement"):
        assert (results / "cohort" / f"{name}.png").stat().st_size > 5000
    # the DICOM SEG of the DICOM subject holds the truth labels on the source series
    seg_path = results / "dicom-01" / "baseline" / "segmentation.dcm"
    scan = read_ct(cohort / "dicom-01")
    assert scan.dicom is not None
    read_back = labels_on_source(hd.seg.segread(seg_path), read_source_datasets(scan.dicom.files))
    truth_labels = sitk.GetArrayFromImage(
        sitk.ReadImage(str(cohort / "demo-01/baseline/labels.nii.gz"))
    )
    assert np.array_equal(read_back, truth_labels)
    # settings for each stage, the second run has nothing to do
    assert (results / "settings" / "measure.yaml").is_file()
    again = snakemake(workdir, "-n", "--configfile", config)
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr
    # a changed response setting reruns the response stage and what follows, not measurement
    changed = write_config(
        workdir, samples=str(sheet), response={"partial_response_percent": -35.0}
    )
    plan = snakemake(workdir, "-n", "--configfile", changed)
    jobs = planned_jobs(plan.stdout + plan.stderr)
    assert jobs.get("respond") == 2 and "measure" not in jobs and jobs.get("cohort") == 1, jobs
    # Snakemake's own report, with the captions of the cohort figures
    report = snakemake(
        workdir, "--report", workdir / "snakemake-report.html", "--configfile", config
    )
    assert report.returncode == 0, report.stderr[-3000:]
    assert (workdir / "snakemake-report.html").stat().st_size > 10_000


@pytest.mark.skipif(
    not TINY_BUNDLE.is_dir(), reason="tests/data/tiny_bundle (the tiny model bundle) is absent"
)
def test_demo_workflow_generates_and_segments(tmp_path: Path) -> None:
    """The demo path: the demo rule writes the phantoms, the tiny bundle segments them."""
    scratch = _phantom(tmp_path / "scratch", subjects=1, seed=5)
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    # the demo sheet: the phantom's own sheet, pointed at where the demo rule writes
    relocated = relocate(
        scratch / "samples.tsv", workdir / "resources" / "demo", workdir / "config" / "samples.tsv"
    )
    config = write_config(
        workdir,
        samples=str(relocated.relative_to(workdir)),
        demo={"folder": "resources/demo", "subjects": 1, "seed": 5, "size": "tiny"},
        segment={"model": str(TINY_BUNDLE), "device": "cpu", "fast": True},
    )
    result = snakemake(workdir, "--cores", "2", "--configfile", config)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    results = workdir / "results"
    provenance = json.loads(
        (results / "demo-01" / "baseline" / "segmentation.json").read_text(encoding="utf-8")
    )
    assert provenance["model"]["name"]
    assert (results / "demo-01" / "report.html").is_file()
    assert len(_rows(results / "cohort.csv")) == 2


def relocate(sheet: Path, demo_folder: Path, target: Path) -> Path:
    """Write ``target`` listing ``sheet``'s files as they will lie in ``demo_folder``."""
    from pipeline.samples import relocated_sheet_text

    target.write_text(
        relocated_sheet_text(sheet, target, source_folder=demo_folder), encoding="utf-8"
    )
    return target


def test_default_sheet_lists_the_demo_cohort(tmp_path: Path) -> None:
    """config/samples.tsv names exactly what the demo rule writes (same subjects, time points,
    dates, files, treatments); the phantom's names and dates do not depend on its size."""
    import yaml

    from pipeline.samples import load_samples, relocated_sheet_text

    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    demo = config["demo"]
    generated = _phantom(tmp_path / "demo", subjects=demo["subjects"], seed=demo["seed"])
    expected = relocated_sheet_text(
        generated / "samples.tsv",
        REPO_ROOT / config["samples"],
        source_folder=REPO_ROOT / demo["folder"],
    )
    committed = load_samples(REPO_ROOT / config["samples"], generated=[REPO_ROOT / demo["folder"]])
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "samples.tsv").write_text(expected, encoding="utf-8")
    regenerated = load_samples(
        tmp_path / "config" / "samples.tsv", generated=[tmp_path / "resources"]
    )
    assert [
        (s.subject, s.timepoint, s.date, s.image.name, s.treatment) for s in committed.scans
    ] == [(s.subject, s.timepoint, s.date, s.image.name, s.treatment) for s in regenerated.scans]
    lines = [
        line
        for line in (REPO_ROOT / config["samples"]).read_text(encoding="utf-8").splitlines()
        if not line.startswith("#")
    ]
    assert lines == expected.splitlines()
    assert any(
        len(committed.scans_of(s)) == 3 for s in committed.subjects
    )  # a subject with 3 time points
    assert all(s.arterial_image is not None for s in committed.scans)  # both phases
