# Helpers shared by the rules: config and sample-sheet validation, paths,
# per-scan lookups. Sample-sheet parsing and checks live in pipeline/samples.py
# (tested with pytest); this file only calls them.

import os
import re
import shlex
import shutil
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from pipeline.errors import InputError
from pipeline.samples import load_samples


def fail(message):
    """Stop with one line on stderr and exit code 1 (a bad config or sample sheet)."""
    print(f"liverburden workflow: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(1)


def validated(data, schema, what):
    """snakemake.utils.validate (fills in defaults), with a one-line error."""
    try:
        validate(data, schema)
    except WorkflowError:
        fail(f"{what}: {schema_problem(data, schema)}")
    return data


def schema_problem(data, schema):
    """The most relevant schema violation of ``data``, in one line."""
    path = Path(workflow.basedir) / "workflow" / "rules" / schema
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(document)
    records = data.to_dict("records") if isinstance(data, pd.DataFrame) else [data]
    for index, record in enumerate(records):
        error = jsonschema.exceptions.best_match(validator.iter_errors(record))
        if error is not None:
            where = ".".join(str(p) for p in error.absolute_path)
            row = f"row {index + 1}: " if isinstance(data, pd.DataFrame) else ""
            return f"{row}{('setting ' + where + ': ') if where else ''}{error.message}"
    return "does not match its schema"


validated(config, "../schemas/config.schema.yaml", "config")

#: Settings class of each stage section: checked here, at the start, so that an
#: unknown or mistyped setting stops the workflow before any job runs.
STAGE_SETTINGS = {
    "segment": "pipeline.segment.command:SegmentSettings",
    "measure": "pipeline.measure.settings:MeasureSettings",
    "response": "pipeline.response.settings:ResponseSettings",
    "report": "pipeline.report.settings:ReportSettings",
}


def check_stage_settings():
    import importlib

    from pipeline.settings import settings_from_mapping

    for stage, target in STAGE_SETTINGS.items():
        module_name, class_name = target.split(":")
        stage_module = importlib.import_module(module_name)
        try:
            settings_class = getattr(stage_module, class_name)
            settings = settings_from_mapping(settings_class, config.get(stage) or {}, f"config {stage}")
            if hasattr(stage_module, "check_settings"):
                stage_module.check_settings(settings, f"config {stage}")
        except InputError as error:
            fail(error.message)


check_stage_settings()

#: Output folder of results (per subject, cohort) and of the settings files.
OUT = config["outdir"].rstrip("/") or "."
#: Folder the demo cohort is generated into.
DEMO = config["demo"]["folder"].rstrip("/")
#: The command line: the console script when on PATH, else this Python's module.
LIVERBURDEN = "liverburden" if shutil.which("liverburden") else f"{shlex.quote(sys.executable)} -m pipeline"

try:
    SHEET = load_samples(config["samples"], generated=[DEMO])
except InputError as error:
    fail(error.message)


def _sheet_records():
    for scan in SHEET.scans:
        record = {
            "subject": scan.subject,
            "timepoint": scan.timepoint,
            "date": scan.date,
            "image": str(scan.image),
            "arterial_image": str(scan.arterial_image) if scan.arterial_image else None,
            "mask": str(scan.mask) if scan.mask else None,
            "treatment": scan.treatment,
        }
        yield {key: value for key, value in record.items() if value is not None}


validated(pd.DataFrame(list(_sheet_records())), "../schemas/samples.schema.yaml", str(SHEET.path))
for _warning in SHEET.warnings:
    print(f"liverburden workflow: warning: {_warning}", file=sys.stderr)

SUBJECTS = SHEET.subjects
FOLLOWED = set(SHEET.followed_subjects())


wildcard_constraints:
    subject="|".join(re.escape(s) for s in SUBJECTS),
    timepoint="|".join(sorted({re.escape(s.timepoint) for s in SHEET.scans})),
    stage="segment|measure|response|report",


def smk_path(path):
    """A sheet path as Snakemake should see it: relative to the working folder
    when inside it (so that the demo rule's outputs match), else absolute."""
    path = Path(path)
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def scan_of(wildcards):
    return SHEET.scan(wildcards.subject, wildcards.timepoint)


def scan_folder(scan):
    return f"{OUT}/{scan.subject}/{scan.timepoint}"


def segmentation_of(scan):
    """The label map measured for a scan: the sheet's mask, else the segment rule's output."""
    if scan.mask is not None:
        return smk_path(scan.mask)
    return f"{scan_folder(scan)}/segmentation.nii.gz"


def measurements_of(scan):
    return f"{scan_folder(scan)}/measure/measurements.json"


def settings_file(stage):
    return f"{OUT}/settings/{stage}.yaml"


def resources_of(rule_name, key):
    return config["resources"][rule_name][key]


def runtime_of(rule_name):
    """Time limit (minutes) that grows with each retry, so a job the scheduler
    killed at its limit is resubmitted with more time."""
    base = config["resources"][rule_name]["runtime"]
    return lambda wildcards, attempt: base * attempt


def thread_limit(wildcards, threads):
    """Environment limiting a job's ITK and OpenMP threads to the threads it was given."""
    return f"ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS={threads} OMP_NUM_THREADS={threads}"


def quoted(*items):
    return " ".join(shlex.quote(str(item)) for item in items)


def final_outputs():
    """Everything `snakemake` builds by default."""
    outputs = [f"{OUT}/{subject}/report.html" for subject in SUBJECTS]
    outputs.append(f"{OUT}/cohort.csv")
    outputs += [f"{OUT}/cohort/{name}.png" for name in COHORT_FIGURES]
    if config["dicom_seg"]:
        outputs += [f"{scan_folder(scan)}/segmentation.dcm" for scan in SHEET.scans if scan.image_is_dicom]
    return outputs


COHORT_FIGURES = ("waterfall", "spider", "involvement")


def settings_text(stage):
    """YAML of a stage's settings file: its section of the config."""
    return yaml.safe_dump({stage: config.get(stage) or {}}, sort_keys=False, allow_unicode=True)


rule settings:
    """The effective settings of one stage (config file plus --config overrides),
    rewritten only when they change, so that a changed setting reruns its stage."""
    output:
        settings=f"{OUT}/settings/{{stage}}.yaml",
    params:
        text=lambda wildcards: settings_text(wildcards.stage),
    log:
        "logs/settings/{stage}.log",
    localrule: True
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    shell:
        "printf '%s' {params.text:q} > {output.settings:q} 2> {log:q}"
