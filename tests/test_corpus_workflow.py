"""The workflow on broken sample sheets, configs and files (Snakemake, in a temporary folder).

* every violation of ``workflow/schemas/`` is refused by the schema the Snakefile
  validates with (in-process, fast);
* a bad config and a bad sheet stop a dry run with one line and no traceback;
* one real run of a sheet with three subjects: P01 as identified DICOM series,
  P02 under paths with spaces, non-ASCII letters and paths relative to the sheet,
  P03 with a truncated CT. P01 and P02 finish (the run keeps going), P03's measure
  job fails with the reason in its log and leaves no output, and nothing the run
  wrote (results, logs) carries a patient identifier.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from tests._corpus_fixtures import corpus_workspace
from tests._dicom_fixtures import write_ct_series
from tests._privacy_fixtures import IDENTIFIERS, copy_series, find_identifiers
from tests._workflow_fixtures import REPO_ROOT, planned_jobs, snakemake, write_config
from tests.corpus import Workspace
from tests.corpus.base import image_like, leftover_temporaries, write_image
from tests.corpus.sheets import (
    CONFIG_VIOLATIONS,
    HEADER,
    SAMPLE_SCHEMA_VIOLATIONS,
    awkward_paths_sheet,
)

__all__ = ["corpus_workspace"]

SCHEMAS = REPO_ROOT / "workflow" / "schemas"


def _merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def _default_config() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))


def test_shipped_config_and_a_good_row_pass_the_schemas() -> None:
    from snakemake.utils import validate

    validate(_default_config(), str(SCHEMAS / "config.schema.yaml"))
    row = {"subject": "P01", "timepoint": "baseline", "date": "2024-01-15", "image": "ct.nii.gz"}
    validate(pd.DataFrame([row]), str(SCHEMAS / "samples.schema.yaml"))


@pytest.mark.parametrize("name", sorted(CONFIG_VIOLATIONS))
def test_config_schema_refuses(name: str) -> None:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    changes, fragment = CONFIG_VIOLATIONS[name]
    with pytest.raises(WorkflowError) as caught:
        validate(_merged(_default_config(), changes), str(SCHEMAS / "config.schema.yaml"))
    assert fragment in str(caught.value), str(caught.value)


@pytest.mark.parametrize("name", sorted(SAMPLE_SCHEMA_VIOLATIONS))
def test_sample_sheet_schema_refuses(name: str) -> None:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    row, fragment = SAMPLE_SCHEMA_VIOLATIONS[name]
    with pytest.raises(WorkflowError) as caught:
        validate(pd.DataFrame([row]), str(SCHEMAS / "samples.schema.yaml"))
    assert fragment in str(caught.value), str(caught.value)


def _assert_one_line_failure(result: Any, *fragments: str) -> None:
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "liverburden workflow: error:" in line]
    assert len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.mark.slow
def test_dry_run_stops_on_a_bad_config(tmp_path: Path, corpus_workspace: Workspace) -> None:
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(
        f"{HEADER}\nP01\tbaseline\t2024-01-15\t{corpus_workspace.ct_path}\t\t\t\n", encoding="utf-8"
    )
    config = write_config(
        tmp_path / "work", samples=str(sheet), resources={"segment": {"threads": 0}}
    )
    result = snakemake(tmp_path / "work", "-n", "--configfile", config)
    _assert_one_line_failure(result, "threads")


@pytest.mark.slow
def test_dry_run_stops_on_a_bad_sample_sheet(tmp_path: Path, corpus_workspace: Workspace) -> None:
    sheet = tmp_path / "samples.tsv"
    sheet.write_text(
        f"{HEADER}\nP01\tbaseline\t2024-01-15\t{corpus_workspace.ct_path}\t\t\t\n"
        f"P 02\tbaseline\t2024-01-15\t{corpus_workspace.ct_path}\t\t\t\n",
        encoding="utf-8",
    )
    config = write_config(tmp_path / "work", samples=str(sheet))
    result = snakemake(tmp_path / "work", "-n", "--configfile", config)
    _assert_one_line_failure(result, "samples.tsv", "line 3", "P 02")


# ------------------------------------------- another working folder (--directory)


def _masked_sheet(folder: Path) -> Path:
    """Two time points of one subject with masks: planned without segmentation."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.zeros((3, 4, 4), np.int16))
    rows = [HEADER]
    for timepoint, date in (("baseline", "2024-01-15"), ("fu1", "2024-04-15")):
        sitk.WriteImage(image, str(folder / f"{timepoint}.nii.gz"))
        sitk.WriteImage(image, str(folder / f"{timepoint}-mask.nii.gz"))
        rows.append(
            "\t".join(
                ["P01", timepoint, date, f"{timepoint}.nii.gz", "", f"{timepoint}-mask.nii.gz", ""]
            )
        )
    sheet = folder / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return sheet


def test_dry_run_in_another_folder_uses_the_repository_config(tmp_path: Path) -> None:
    """`snakemake --directory X --config samples=...` with no config/config.yaml in X."""
    sheet = _masked_sheet(tmp_path / "cohort")
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, "-n", "-p", "--config", f"samples={sheet}")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    jobs = planned_jobs(output)
    assert jobs["measure"] == 2 and jobs["respond"] == 1 and "segment" not in jobs, output
    assert "results/P01/report.html" in output  # the repository config's outdir: results
    assert not (workdir / "results").exists()


def test_dry_run_prefers_the_working_folders_config(tmp_path: Path) -> None:
    sheet = _masked_sheet(tmp_path / "cohort")
    workdir = tmp_path / "work"
    (workdir / "config").mkdir(parents=True)
    config = _default_config()
    config.update(samples=str(sheet), outdir="my-results")
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = snakemake(workdir, "-n", "-p")
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "my-results/P01/report.html" in output and "results/P01" not in output.replace(
        "my-results/P01", ""
    )


# ------------------------------------------------------------- one real run


@pytest.fixture(scope="module")
def workflow_run(
    tmp_path_factory: pytest.TempPathFactory, corpus_workspace: Workspace
) -> dict[str, Any]:
    ws = corpus_workspace
    root = tmp_path_factory.mktemp("workflow")
    cohort = root / "cohort ü"
    cohort.mkdir()
    # P02: awkward paths, relative to the sheet; its rows are taken from that sheet
    awkward, _paths = awkward_paths_sheet(ws, cohort)
    awkward_rows = [
        line.replace("P-01", "P02")
        for line in awkward.read_text(encoding="utf-8").splitlines()[2:]
        if line
    ]
    # P01: two identified DICOM examinations with masks
    source = root / "source"
    write_ct_series(source, ws.base.hu_zyx, **ws.dicom_geometry, identifiers=IDENTIFIERS)
    baseline = copy_series(source, cohort / "P01" / "visit1", study_date="20240115")
    follow_up = copy_series(
        source, cohort / "P01" / "visit2", study_date="20240415", shift_mm=(3.0, -2.0, 5.0)
    )
    from pipeline.io import read_ct

    masks = []
    for name, series, array in (
        ("mask1.nii.gz", baseline, ws.base.labels_zyx),
        ("mask2.nii.gz", follow_up, sitk.GetArrayFromImage(ws.base.follow_up_labels)),
    ):
        masks.append(write_image(image_like(array, read_ct(series).image), cohort / "P01" / name))
    # P03: a truncated CT
    broken = cohort / "P03" / "ct.nii.gz"
    broken.parent.mkdir()
    data = ws.ct_path.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    shutil.copyfile(ws.labels_path, cohort / "P03" / "mask.nii.gz")
    rows = [
        HEADER,
        "\t".join(["P01", "baseline", "2024-01-15", "P01/visit1", "", "P01/mask1.nii.gz", ""]),
        "\t".join(["P01", "fu1", "2024-04-15", "P01/visit2", "", "P01/mask2.nii.gz", ""]),
        *awkward_rows,
        "\t".join(["P03", "baseline", "2024-01-15", "P03/ct.nii.gz", "", "P03/mask.nii.gz", ""]),
    ]
    sheet = cohort / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n", encoding="utf-8")
    workdir = root / "work"
    config = write_config(workdir, samples=str(sheet))
    result = snakemake(workdir, "--cores", "2", "--keep-going", "--configfile", config)
    return {"result": result, "workdir": workdir, "cohort": cohort}


@pytest.mark.slow
def test_broken_file_fails_its_job_with_the_reason_in_its_log(workflow_run: dict[str, Any]) -> None:
    result, workdir = workflow_run["result"], workflow_run["workdir"]
    assert result.returncode != 0  # P03 failed
    log = (workdir / "logs" / "measure" / "P03" / "baseline.log").read_text(encoding="utf-8")
    lines = [line for line in log.splitlines() if line.strip()]
    assert len(lines) <= 2 and "Traceback" not in log, log
    assert "liverburden measure: error:" in log and "ct.nii.gz" in log and "truncated" in log, log
    assert not (workdir / "results" / "P03" / "baseline" / "measure").exists()
    assert not leftover_temporaries(workdir / "results")


@pytest.mark.slow
def test_awkward_paths_and_other_subjects_still_finish(workflow_run: dict[str, Any]) -> None:
    workdir = workflow_run["workdir"]
    for subject in ("P01", "P02"):
        html = (workdir / "results" / subject / "report.html").read_text(encoding="utf-8")
        assert f"Liver tumour burden: {subject}" in html
        assert (workdir / "results" / subject / "response.json").is_file()
    import json

    measured = json.loads(
        (workdir / "results" / "P02" / "fu_1" / "measure" / "measurements.json").read_text(
            encoding="utf-8"
        )
    )
    assert measured["study_date"] == "2024-04-15" and measured["subject"] == "P02"
    assert (workdir / "results" / "P01" / "baseline" / "segmentation.dcm").is_file()


@pytest.mark.slow
def test_workflow_outputs_and_logs_carry_no_identifiers(workflow_run: dict[str, Any]) -> None:
    workdir = workflow_run["workdir"]
    result = workflow_run["result"]
    seg_files = list((workdir / "results").rglob("*.dcm"))
    assert seg_files  # DICOM SEG is the exception: it carries the patient module
    places = [workdir / "results", workdir / "logs", workdir / ".snakemake" / "log"]
    hits = find_identifiers(
        places,
        {"snakemake stdout": result.stdout, "snakemake stderr": result.stderr},
        exclude=seg_files,
    )
    assert not hits, "\n".join(hits)
