"""The Snakemake workflow planned on several configurations (snakemake -n), and its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _workflow_fixtures import REPO_ROOT, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.filterwarnings("ignore")


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 4), np.int16)), str(path))
    return path


@pytest.fixture
def user_cohort(tmp_path: Path) -> Path:
    """A user's cohort: spaces and non-ASCII in paths, relative and absolute entries,
    an arterial phase, a precomputed mask, a DICOM folder, a single-time-point subject."""
    data = tmp_path / "Données patients" / "scan set"
    _image(data / "P01 base.nii.gz")
    _image(data / "P01 base arterial.nii.gz")
    _image(data / "P01 fu.nii.gz")
    _image(data / "P01 fu mask.nii.gz")
    (data / "P02 dicom").mkdir()
    (data / "P02 dicom" / "0001.dcm").write_bytes(b"x")
    sheet = tmp_path / "sheets" / "my cohort é.tsv"
    sheet.parent.mkdir()
    sheet.write_text(
        "subject\ttimepoint\tdate\timage\tarterial_image\tmask\ttreatment\n"
        "P01\tbaseline\t2023-01-01\t../Données patients/scan set/P01 base.nii.gz\t"
        "../Données patients/scan set/P01 base arterial.nii.gz\t\t\n"
        f"P01\tfu1\t2023-04-01\t{data / 'P01 fu.nii.gz'}\t\t"
        "../Données patients/scan set/P01 fu mask.nii.gz\tTACE\n"
        "P02\tbaseline\t2023-02-01\t../Données patients/scan set/P02 dicom\t\t\t\n",
        encoding="utf-8",
    )
    return sheet


def test_user_sheet_plan(user_cohort: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    config = write_config(
        workdir, samples=str(user_cohort), segment={"model": str(tmp_path), "device": "cpu"}
    )
    result = snakemake(workdir, "-n", "--configfile", config)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    jobs = planned_jobs(output)
    # P01 baseline and P02 are segmented, P01 fu1 has a mask; one response (P01); DICOM SEG for P02
    assert jobs == {
        "settings": 4,
        "segment": 2,
        "measure": 3,
        "respond": 1,
        "report": 2,
        "cohort": 1,
        "dicom_seg": 1,
        "all": 1,
    }, output
    assert "subject 'P02' has one time point only" in output
    # quoted paths with spaces and non-ASCII characters, the arterial phase passed to measure
    assert "--arterial '" in output and "P01 base arterial.nii.gz'" in output
    assert "'../Données patients/scan set/P01 fu mask.nii.gz'" not in output  # resolved, not raw
    assert "P01 fu mask.nii.gz" in output
    assert "--treatment fu1=TACE" in output
    assert not (workdir / "results").exists()


def test_demo_plan_from_the_default_config(tmp_path: Path) -> None:
    """A fresh clone's plan: the demo rule writes the cohort, every scan is segmented."""
    shutil.copytree(REPO_ROOT / "config", tmp_path / "config")
    result = snakemake(tmp_path, "-n")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout + result.stderr)
    from pipeline.samples import load_samples

    sheet = load_samples(
        REPO_ROOT / "config" / "samples.tsv", generated=[REPO_ROOT / "resources" / "demo"]
    )
    scans = len(sheet.scans)
    assert jobs["demo_cohort"] == 1 and jobs["segment"] == scans == jobs["measure"] == 13
    assert jobs["respond"] == jobs["report"] == 6 and jobs["cohort"] == 1
    assert not (tmp_path / "resources").exists()


def test_precomputed_masks_skip_segmentation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rows = []
    for subject in ("A", "B"):
        for index, date in enumerate(("2022-01-03", "2022-03-05")):
            _image(data / f"{subject}{index}.nii.gz")
            _image(data / f"{subject}{index}_labels.nii.gz")
            rows.append(
                f"{subject}\tt{index}\t{date}\tdata/{subject}{index}.nii.gz\t\tdata/{subject}{index}_labels.nii.gz\t\n"
            )
    sheet = tmp_path / "sheet.tsv"
    sheet.write_text(
        "subject\ttimepoint\tdate\timage\tarterial_image\tmask\ttreatment\n" + "".join(rows)
    )
    config = write_config(tmp_path, samples="sheet.tsv")
    result = snakemake(tmp_path, "-n", "--configfile", config)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout + result.stderr)
    assert "segment" not in jobs and "dicom_seg" not in jobs
    assert jobs["measure"] == 4 and jobs["respond"] == 2 and jobs["report"] == 2


def test_settings_sections_are_passed_and_rerun(tmp_path: Path, user_cohort: Path) -> None:
    """Each stage gets its own settings file; the report's holds the measure section too."""
    config = write_config(
        tmp_path,
        samples=str(user_cohort),
        response={"partial_response_percent": -40.0},
        resources={"segment": {"threads": 1, "mem_mb": 1000, "runtime": 5, "gpu": 0}},
    )
    result = snakemake(tmp_path, "-n", "-p", "--configfile", config)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "partial_response_percent: -40.0" in output
    assert "--settings results/settings/response.yaml" in output
    assert "gpu=0" in output and "gpu=1" not in output


BAD = [
    pytest.param(
        "subject\ttimepoint\tdate\timage\nP1\tt0\t2023-02-30\tx.nii.gz\n",
        "not a valid date: '2023-02-30'",
        id="bad-date",
    ),
    pytest.param(
        "subject\ttimepoint\tdate\timage\nP1\tt0\t2023-02-01\tmissing.nii.gz\n",
        "image (CT) not found",
        id="missing-file",
    ),
    pytest.param(
        "subject\ttimepoint\tdate\timage\tvenous_image\nP1\tt0\t2023-02-01\tx.nii.gz\tx.nii.gz\n",
        "unknown phase column",
        id="unknown-phase",
    ),
]


@pytest.mark.parametrize(("text", "fragment"), BAD)
def test_bad_sheet_stops_with_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    _image(tmp_path / "x.nii.gz")
    (tmp_path / "sheet.tsv").write_text(text, encoding="utf-8")
    config = write_config(tmp_path, samples="sheet.tsv")
    result = snakemake(tmp_path, "-n", "--configfile", config)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("liverburden workflow: error: "), result.stderr
    assert fragment in errors[0] and "sheet.tsv" in errors[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        pytest.param(
            {"demo": {"size": "huge"}},
            "setting demo.size: 'huge' is not one of",
            id="config-schema",
        ),
        pytest.param(
            {"response": {"progression_percent": -5.0}}, "must be above 0", id="response-value"
        ),
        pytest.param(
            {"measure": {"lesion_conectivity": 26}},
            "unknown setting(s): lesion_conectivity",
            id="measure-key",
        ),
    ],
)
def test_bad_config_stops_with_one_line(
    tmp_path: Path, user_cohort: Path, settings: dict, fragment: str
) -> None:
    config = write_config(tmp_path, samples=str(user_cohort), **settings)
    result = snakemake(tmp_path, "-n", "--configfile", config)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def test_default_config_matches_the_commands_defaults() -> None:
    """config/config.yaml documents every setting of each stage with its real default."""
    import dataclasses

    import yaml

    from pipeline.measure.settings import MeasureSettings
    from pipeline.report.settings import ReportSettings
    from pipeline.response.settings import ResponseSettings
    from pipeline.segment.command import SegmentSettings

    config = yaml.safe_load((REPO_ROOT / "config" / "config.yaml").read_text(encoding="utf-8"))
    for section, settings_class in (
        ("segment", SegmentSettings),
        ("measure", MeasureSettings),
        ("response", ResponseSettings),
        ("report", ReportSettings),
    ):
        defaults = {
            f.name: getattr(settings_class(), f.name) for f in dataclasses.fields(settings_class)
        }
        if (
            section == "segment"
        ):  # threads come from resources.segment.threads; "" is the default model
            del defaults["threads"]
            defaults["model"] = ""
        written = config[section]
        assert set(written) == set(defaults), section
        for name, value in written.items():
            expected = defaults[name]
            assert (list(value) if isinstance(value, list) else value) == (
                list(expected) if isinstance(expected, tuple) else expected
            ), (section, name)


def _undocumented(node: dict, where: str = "") -> list[str]:
    """Properties of a schema (and its $defs) lacking type, description or default."""
    missing = []
    for key, sub in (node.get("properties") or {}).items():
        missing += [
            f"{where}.{key}: {f}" for f in ("type", "description", "default") if f not in sub
        ]
        missing += _undocumented(sub, f"{where}.{key}")
    for key, sub in (node.get("$defs") or {}).items():
        missing += _undocumented(sub, f"$defs.{key}")
    return missing


@pytest.mark.parametrize("name", ["config.schema.yaml", "samples.schema.yaml"])
def test_schemas_document_every_property(name: str) -> None:
    import yaml

    schema = yaml.safe_load((REPO_ROOT / "workflow" / "schemas" / name).read_text(encoding="utf-8"))
    assert _undocumented(schema) == []
    assert schema["properties"]
