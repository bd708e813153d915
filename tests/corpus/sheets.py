"""Broken and awkward sample sheets and workflow configs.

Sheets are checked by :func:`pipeline.samples.load_samples` (what the
Snakefile calls) through ``python -m pipeline.samples`` in-process; configs by
the workflow's schema (``workflow/schemas/config.schema.yaml``), the check the
Snakefile runs first.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.corpus.base import Workspace

HEADER = "subject\ttimepoint\tdate\timage\tarterial_image\tmask\ttreatment"

SheetBuilder = Callable[[Workspace, Path], tuple[Path, tuple[str, ...]]]


def _sheet(folder: Path, text: str, name: str = "samples.tsv", encoding: str = "utf-8") -> Path:
    path = folder / name
    path.write_bytes(text.encode(encoding))
    return path


def _row(
    ws: Workspace,
    subject: str = "P01",
    timepoint: str = "baseline",
    date: str = "2024-01-15",
    image: str | None = None,
    mask: str = "",
) -> str:
    return "\t".join([subject, timepoint, date, image or str(ws.ct_path), "", mask, ""])


def _case(
    text: Callable[[Workspace, Path], str],
    *fragments: str,
    name: str = "samples.tsv",
    encoding: str = "utf-8",
) -> SheetBuilder:
    def build(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
        return _sheet(folder, text(ws, folder), name, encoding), (name, *fragments)

    return build


def _rows(*rows: Callable[[Workspace, Path], str]) -> Callable[[Workspace, Path], str]:
    return lambda ws, folder: "\n".join([HEADER, *(r(ws, folder) for r in rows)]) + "\n"


def sheet_not_found(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    return folder / "absent.tsv", ("absent.tsv", "not found")


#: name -> (builder, expected: "error" or "handled")
SHEET_CASES: dict[str, SheetBuilder] = {
    "sheet-not-found": sheet_not_found,
    "sheet-empty": _case(lambda ws, f: "", "empty"),
    "sheet-header-only": _case(lambda ws, f: HEADER + "\n", "no scans"),
    "sheet-comma-separated": _case(
        lambda ws, f: "subject,timepoint,date,image\nP01,baseline,2024-01-15,ct.nii.gz\n",
        "tab-separated",
    ),
    "sheet-not-utf8": _case(
        lambda ws, f: HEADER + "\n" + _row(ws).replace("P01", "Pé01") + "\n",
        "UTF-8",
        encoding="latin-1",
    ),
    "sheet-missing-column": _case(
        lambda ws, f: f"subject\ttimepoint\timage\nP01\tbaseline\t{ws.ct_path}\n", "date"
    ),
    "sheet-unknown-column": _case(
        lambda ws, f: HEADER + "\tweight_kg\n" + _row(ws) + "\t71\n", "weight_kg"
    ),
    "sheet-upper-case-column": _case(
        lambda ws, f: HEADER.replace("subject", "Subject") + "\n" + _row(ws) + "\n", "Subject"
    ),
    "sheet-duplicated-column": _case(
        lambda ws, f: HEADER + "\tdate\n" + _row(ws) + "\t2024-01-15\n", "twice"
    ),
    "sheet-subject-with-space": _case(
        _rows(lambda ws, f: _row(ws, subject="P 01")), "line 2", "'P 01'"
    ),
    "sheet-subject-too-long": _case(
        _rows(lambda ws, f: _row(ws, subject="P" * 65)), "line 2", "subject"
    ),
    "sheet-subject-empty": _case(
        _rows(lambda ws, f: _row(ws, subject="")), "line 2", "subject is empty"
    ),
    "sheet-subject-reserved": _case(
        _rows(lambda ws, f: _row(ws, subject="cohort")), "line 2", "cohort"
    ),
    "sheet-timepoint-with-slash": _case(
        _rows(lambda ws, f: _row(ws, timepoint="fu/1")), "line 2", "'fu/1'"
    ),
    "sheet-date-invalid": _case(
        _rows(lambda ws, f: _row(ws, date="2024-13-45")), "line 2", "2024-13-45"
    ),
    "sheet-date-empty": _case(_rows(lambda ws, f: _row(ws, date="")), "line 2", "date"),
    "sheet-date-american": _case(
        _rows(lambda ws, f: _row(ws, date="01/15/2024")), "line 2", "01/15/2024"
    ),
    "sheet-image-missing": _case(
        _rows(lambda ws, f: _row(ws, image="scans/absent.nii.gz")), "line 2", "absent.nii.gz"
    ),
    "sheet-image-empty-file": _case(
        _rows(lambda ws, f: _row(ws, image=str(_touch(f / "zero.nii.gz")))),
        "line 2",
        "zero.nii.gz",
        "empty",
    ),
    "sheet-image-unsupported": _case(
        _rows(lambda ws, f: _row(ws, image=str(_touch(f / "ct.jpg", b"x")))), "line 2", "ct.jpg"
    ),
    "sheet-mask-is-folder": _case(
        _rows(lambda ws, f: _row(ws, mask=str(ws.root / "shared"))), "line 2", "mask", "folder"
    ),
    "sheet-duplicate-scan": _case(
        _rows(lambda ws, f: _row(ws), lambda ws, f: _row(ws, date="2024-04-15")), "baseline"
    ),
    "sheet-same-date-twice": _case(
        _rows(lambda ws, f: _row(ws), lambda ws, f: _row(ws, timepoint="fu1")), "2024-01-15"
    ),
}


def _touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def awkward_paths_sheet(ws: Workspace, folder: Path) -> tuple[Path, dict[str, Path]]:
    """A sheet whose images lie under names with spaces and non-ASCII letters, given
    relative to the sheet's folder; returns the sheet and the absolute image paths."""
    import shutil

    images = folder / "scans ü" / "Patient Ångström"
    images.mkdir(parents=True)
    base = images / "base line ct.nii.gz"
    follow = images / "suivi n°1 ct.nii.gz"
    mask = images / "masque été.nii.gz"
    for target, source in ((base, ws.ct_path), (follow, ws.ct_path), (mask, ws.labels_path)):
        shutil.copyfile(source, target)
    relative = Path("scans ü") / "Patient Ångström"
    text = "\n".join(
        [
            "# a comment line, then the header",
            HEADER,
            "\t".join(
                [
                    "P-01",
                    "baseline",
                    "2024-01-15",
                    str(relative / base.name),
                    "",
                    str(relative / mask.name),
                    "TACE n°1",
                ]
            ),
            "\t".join(
                [
                    "P-01",
                    "fu_1",
                    "20240415",
                    str(relative / follow.name),
                    "",
                    str(relative / mask.name),
                    "",
                ]
            ),
            "",
        ]
    )
    sheet = folder / "feuille échantillons.tsv"
    sheet.write_text(text, encoding="utf-8")
    return sheet, {"baseline": base, "fu_1": follow, "mask": mask}


#: Config violations: name -> (config overrides, text the error must contain).
CONFIG_VIOLATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "config-unknown-key": ({"sample_sheet": "x.tsv"}, "sample_sheet"),
    "config-samples-empty": ({"samples": ""}, "samples"),
    "config-samples-not-string": ({"samples": 3}, "samples"),
    "config-outdir-empty": ({"outdir": ""}, "outdir"),
    "config-dicom-seg-not-boolean": ({"dicom_seg": "yes"}, "dicom_seg"),
    "config-overrides-not-string": ({"response_overrides": ["a"]}, "response_overrides"),
    "config-demo-unknown-key": ({"demo": {"patients": 3}}, "patients"),
    "config-demo-subjects-zero": ({"demo": {"subjects": 0}}, "subjects"),
    "config-demo-subjects-text": ({"demo": {"subjects": "six"}}, "subjects"),
    "config-demo-seed-float": ({"demo": {"seed": 1.5}}, "seed"),
    "config-demo-size-unknown": ({"demo": {"size": "huge"}}, "size"),
    "config-demo-folder-empty": ({"demo": {"folder": ""}}, "folder"),
    "config-segment-not-mapping": ({"segment": "fast"}, "segment"),
    "config-measure-not-mapping": ({"measure": [1, 2]}, "measure"),
    "config-response-not-mapping": ({"response": 5}, "response"),
    "config-report-not-mapping": ({"report": "html"}, "report"),
    "config-resources-unknown-rule": ({"resources": {"train": {"threads": 1}}}, "train"),
    "config-resources-threads-zero": ({"resources": {"segment": {"threads": 0}}}, "threads"),
    "config-resources-memory-text": ({"resources": {"measure": {"mem_mb": "4G"}}}, "mem_mb"),
    "config-resources-runtime-zero": ({"resources": {"report": {"runtime": 0}}}, "runtime"),
    "config-resources-gpu-negative": ({"resources": {"segment": {"gpu": -1}}}, "gpu"),
    "config-resources-unknown-key": ({"resources": {"cohort": {"disk_mb": 5}}}, "disk_mb"),
}

#: Sample-sheet rows that break the sheet's schema (workflow/schemas/samples.schema.yaml).
SAMPLE_SCHEMA_VIOLATIONS: dict[str, tuple[dict[str, Any], str]] = {
    "row-missing-subject": ({"timepoint": "b", "date": "2024-01-01", "image": "x"}, "subject"),
    "row-missing-image": ({"subject": "P", "timepoint": "b", "date": "2024-01-01"}, "image"),
    "row-subject-pattern": (
        {"subject": "P 1", "timepoint": "b", "date": "2024-01-01", "image": "x"},
        "P 1",
    ),
    "row-timepoint-pattern": (
        {"subject": "P", "timepoint": "-b", "date": "2024-01-01", "image": "x"},
        "-b",
    ),
    "row-date-pattern": (
        {"subject": "P", "timepoint": "b", "date": "20240101", "image": "x"},
        "20240101",
    ),
    "row-image-empty": (
        {"subject": "P", "timepoint": "b", "date": "2024-01-01", "image": ""},
        "image",
    ),
    "row-unknown-column": (
        {"subject": "P", "timepoint": "b", "date": "2024-01-01", "image": "x", "weight": "7"},
        "weight",
    ),
}
