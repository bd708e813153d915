"""The sample sheet: which scans of which subject, when, and in which phase.

A sample sheet is a tab-separated table with a header row and one row per scan
(one subject at one time point)::

    subject  timepoint  date        image                 arterial_image  mask  treatment
    P01      baseline   2023-01-10  P01/base/ct.nii.gz    P01/base/art    ...   ...

Columns:

``subject`` (required)
    Subject id, used in output paths and shown in reports (never a DICOM
    patient identifier): letters, digits, ``.``, ``_`` and ``-``.
``timepoint`` (required)
    Name of the time point within the subject (``baseline``, ``fu1`` ...),
    same characters as ``subject``.
``date`` (required)
    Study date, ``YYYY-MM-DD`` (or ``YYYYMMDD``); the time points of a subject
    are ordered by it and must have different dates.
``image`` (required)
    The portal-venous CT: a NIfTI / NRRD / MetaImage file or a DICOM folder.
``arterial_image`` (optional)
    The arterial-phase CT of the same visit (for mRECIST's viable tumour).
``mask`` (optional)
    A label map the user already has (0 background, 1 liver, 2 tumour) on the
    grid of ``image``; the scan is then not segmented.
``treatment`` (optional)
    Free text shown in the report (for example ``TACE 2023-02-01``).

Relative paths are relative to the folder of the sheet; absolute paths, spaces
and non-ASCII characters are fine. Lines starting with ``#`` and empty lines
are ignored.

Any problem raises :class:`pipeline.errors.InputError` with one line naming the
sheet, the line and the value. A subject with a single time point is not an
error (it is measured, with no response assessment): it gives a warning.

Run ``python -m pipeline.samples SHEET`` to check a sheet without Snakemake
(exit code 0 when valid, 2 with the one-line error otherwise).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from pipeline.errors import InputError
from pipeline.io import IMAGE_SUFFIXES, has_suffix, iso_date

#: Columns every sheet must have, in the order they are usually written.
REQUIRED_COLUMNS = ("subject", "timepoint", "date", "image")
#: Columns a sheet may have in addition.
OPTIONAL_COLUMNS = ("arterial_image", "mask", "treatment")
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
#: Image columns by contrast phase ("image" is the portal-venous phase).
PHASE_COLUMNS = {"portal-venous": "image", "arterial": "arterial_image"}
#: Subject ids and time-point names: safe as file and folder names everywhere.
IDENTIFIER_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
IDENTIFIER_EXPECTED = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
#: Names the workflow uses for its own outputs beside the subjects' folders.
RESERVED_SUBJECTS = frozenset({"cohort", "cohort.csv", "settings", "report.html"})


@dataclasses.dataclass(frozen=True)
class Scan:
    """One row of the sample sheet: a subject at one time point.

    Paths are absolute (resolved against the sheet's folder, not following
    symbolic links).
    """

    subject: str
    timepoint: str
    date: str
    image: Path
    arterial_image: Path | None = None
    mask: Path | None = None
    treatment: str = ""
    line: int = 0

    @property
    def image_is_dicom(self) -> bool:
        """True when ``image`` is a DICOM folder rather than an image file."""
        return not has_suffix(self.image, IMAGE_SUFFIXES)


@dataclasses.dataclass
class SampleSheet:
    """A validated sample sheet.

    Attributes
    ----------
    path
        The sheet's file.
    scans
        Every scan, ordered by subject (in order of first appearance) and
        then by date.
    warnings
        Remarks that do not stop the workflow (subjects with one time point).
    """

    path: Path
    scans: list[Scan]
    warnings: list[str] = dataclasses.field(default_factory=list)

    @property
    def subjects(self) -> list[str]:
        """Subject ids in order of first appearance in the sheet."""
        return list(dict.fromkeys(scan.subject for scan in self.scans))

    def scans_of(self, subject: str) -> list[Scan]:
        """The scans of ``subject`` ordered by date (the first is the baseline)."""
        return [scan for scan in self.scans if scan.subject == subject]

    def scan(self, subject: str, timepoint: str) -> Scan:
        """The scan of ``subject`` at ``timepoint``."""
        for scan in self.scans:
            if scan.subject == subject and scan.timepoint == timepoint:
                return scan
        raise KeyError((subject, timepoint))

    def followed_subjects(self) -> list[str]:
        """Subjects with at least two time points (those that get a response)."""
        return [s for s in self.subjects if len(self.scans_of(s)) >= 2]


def _where(sheet: Path, line: int | None = None) -> str:
    return f"{sheet}, line {line}" if line else str(sheet)


def _is_within(path: Path, folders: Iterable[Path]) -> bool:
    for folder in folders:
        try:
            path.relative_to(folder)
        except ValueError:
            continue
        return True
    return False


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, fields)`` of every data row of a TSV file."""
    if not path.exists():
        raise InputError(path, "sample sheet not found", "a tab-separated file with a header row")
    if path.is_dir():
        raise InputError(path, "is a folder, not a sample sheet", "a tab-separated file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            path, f"not UTF-8 text (byte {exc.start})", "a UTF-8 tab-separated file"
        ) from None
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    for fields in reader:
        line = reader.line_num
        if not any(field.strip() for field in fields) or fields[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [field.strip() for field in fields]
            continue
        rows.append((line, fields))
    if header is None:
        raise InputError(
            path, "sample sheet is empty (no header row)", "columns " + ", ".join(REQUIRED_COLUMNS)
        )
    return header, rows


def _check_header(path: Path, header: list[str]) -> None:
    if len(header) == 1 and ("," in header[0] or ";" in header[0]):
        raise InputError(
            path, "header is not tab-separated (commas or semicolons found)", "a tab-separated file"
        )
    seen: set[str] = set()
    for name in header:
        if not name:
            raise InputError(
                path, "header has an empty column name", "columns " + ", ".join(KNOWN_COLUMNS)
            )
        if name in seen:
            raise InputError(
                path,
                f"column {name!r} appears twice in the header",
                "each column once, among " + ", ".join(KNOWN_COLUMNS),
            )
        seen.add(name)
        if name in KNOWN_COLUMNS:
            continue
        if name.lower() in KNOWN_COLUMNS:
            raise InputError(
                path, f"column {name!r} must be written in lower case", repr(name.lower())
            )
        if name == "phase" or name.endswith("_image") or name.endswith("_phase"):
            raise InputError(
                path,
                f"unknown phase column {name!r}",
                "the portal-venous CT in 'image' and the arterial CT in 'arterial_image' "
                "of the same row",
            )
        raise InputError(
            path, f"unknown column {name!r}", "columns among " + ", ".join(KNOWN_COLUMNS)
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in seen]
    if missing:
        raise InputError(
            path,
            f"missing column(s) {', '.join(missing)}",
            "columns " + ", ".join(REQUIRED_COLUMNS),
        )


def _check_identifier(sheet: Path, line: int, column: str, value: str) -> str:
    if not value:
        raise InputError(_where(sheet, line), f"{column} is empty", IDENTIFIER_EXPECTED)
    if not IDENTIFIER_PATTERN.fullmatch(value):
        raise InputError(
            _where(sheet, line), f"{column} {value!r} is not a valid name", IDENTIFIER_EXPECTED
        )
    return value


def _resolve(sheet: Path, value: str) -> Path:
    """Absolute path of a sheet entry (relative entries are relative to the sheet's folder)."""
    path = Path(os.path.expanduser(value))
    if not path.is_absolute():
        path = sheet.parent / path
    return Path(os.path.abspath(path))


def _check_image(
    sheet: Path,
    line: int,
    column: str,
    value: str,
    generated: Sequence[Path],
    *,
    file_only: bool = False,
) -> Path:
    path = _resolve(sheet, value)
    what = "mask" if column == "mask" else f"{column} (CT)"
    if _is_within(path, generated):
        if not has_suffix(path, IMAGE_SUFFIXES):
            raise InputError(
                _where(sheet, line),
                f"{column} {value!r} in the demo folder is not an image file",
                "a .nii.gz file",
            )
        return path
    if not path.exists():
        raise InputError(
            _where(sheet, line),
            f"{what} not found: {value!r} (looked for {path})",
            "an existing file or DICOM folder (a relative path is relative to the sheet's folder)"
            if not file_only
            else "an existing label-map file (a relative path is relative to the sheet's folder)",
        )
    if path.is_dir():
        if file_only:
            raise InputError(
                _where(sheet, line), f"{column} {value!r} is a folder", "a label map file (.nii.gz)"
            )
        return path
    if not has_suffix(path, IMAGE_SUFFIXES):
        raise InputError(
            _where(sheet, line),
            f"{column} {value!r} is not a supported image file",
            ".nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd" + ("" if file_only else " or a DICOM folder"),
        )
    if path.stat().st_size == 0:
        raise InputError(
            _where(sheet, line),
            f"{column} {value!r} is an empty file",
            "a complete image file" + ("" if file_only else " or a DICOM folder"),
        )
    return path


def load_samples(
    path: str | os.PathLike[str], *, generated: Iterable[str | os.PathLike[str]] = ()
) -> SampleSheet:
    """Read and check a sample sheet.

    Parameters
    ----------
    path
        The tab-separated sample sheet.
    generated
        Folders whose files the workflow itself writes (the demo cohort):
        entries inside them may be missing when the sheet is read.

    Returns
    -------
    SampleSheet
        Scans ordered by subject and date, with warnings.

    Raises
    ------
    InputError
        One line naming the sheet, the line and what is wrong: a missing or
        unreadable sheet, an unknown or missing column, an empty or invalid
        subject / time point, a bad date, a missing image or mask, a
        duplicated subject and time point, two time points of a subject on
        the same date.
    """
    sheet = Path(os.path.abspath(path))
    generated_folders = [Path(os.path.abspath(folder)) for folder in generated]
    header, rows = _read_rows(sheet)
    _check_header(sheet, header)
    if not rows:
        raise InputError(sheet, "sample sheet has a header but no scans", "one row per scan")
    scans: list[Scan] = []
    for line, fields in rows:
        if len(fields) > len(header) and any(field.strip() for field in fields[len(header) :]):
            raise InputError(
                _where(sheet, line),
                f"row has {len(fields)} fields but the header has {len(header)} columns",
                "one tab-separated value per column",
            )
        values = {
            name: (fields[i].strip() if i < len(fields) else "") for i, name in enumerate(header)
        }
        subject = _check_identifier(sheet, line, "subject", values["subject"])
        timepoint = _check_identifier(sheet, line, "timepoint", values["timepoint"])
        if subject.lower() in RESERVED_SUBJECTS:
            raise InputError(
                _where(sheet, line),
                f"subject {subject!r} is a name the workflow uses for its own outputs",
                "another subject id",
            )
        if not values["date"]:
            raise InputError(_where(sheet, line), "date is empty", "the study date as YYYY-MM-DD")
        date = iso_date(values["date"], _where(sheet, line))
        assert date is not None
        if not values["image"]:
            raise InputError(
                _where(sheet, line), "image is empty", "a CT image file or DICOM folder"
            )
        image = _check_image(sheet, line, "image", values["image"], generated_folders)
        arterial = (
            _check_image(sheet, line, "arterial_image", values["arterial_image"], generated_folders)
            if values.get("arterial_image")
            else None
        )
        mask = (
            _check_image(sheet, line, "mask", values["mask"], generated_folders, file_only=True)
            if values.get("mask")
            else None
        )
        scans.append(
            Scan(
                subject=subject,
                timepoint=timepoint,
                date=date,
                image=image,
                arterial_image=arterial,
                mask=mask,
                treatment=" ".join(values.get("treatment", "").split()),
                line=line,
            )
        )
    _check_uniqueness(sheet, scans)
    order = {subject: i for i, subject in enumerate(dict.fromkeys(s.subject for s in scans))}
    scans.sort(key=lambda s: (order[s.subject], s.date))
    warnings = []
    for subject in order:
        count = sum(1 for s in scans if s.subject == subject)
        if count == 1:
            warnings.append(
                f"{sheet}: subject {subject!r} has one time point only: it is measured, "
                "with no response assessment"
            )
    return SampleSheet(path=sheet, scans=scans, warnings=warnings)


def _check_uniqueness(sheet: Path, scans: list[Scan]) -> None:
    by_key: dict[tuple[str, str], Scan] = {}
    by_date: dict[tuple[str, str], Scan] = {}
    by_folded: dict[str, str] = {}
    for scan in scans:
        earlier = by_key.get((scan.subject, scan.timepoint))
        if earlier is not None:
            raise InputError(
                _where(sheet, scan.line),
                f"subject {scan.subject!r} time point {scan.timepoint!r} appears twice "
                f"(lines {earlier.line} and {scan.line})",
                "one row per subject and time point",
            )
        by_key[(scan.subject, scan.timepoint)] = scan
        # output folders must differ on case-insensitive file systems too
        for name in (scan.subject, f"{scan.subject}/{scan.timepoint}"):
            folded = by_folded.setdefault(name.lower(), name)
            if folded != name:
                raise InputError(
                    _where(sheet, scan.line),
                    f"{name!r} differs from {folded!r} only by upper/lower case",
                    "subject ids and time points that differ by more than case",
                )
        earlier = by_date.get((scan.subject, scan.date))
        if earlier is not None:
            raise InputError(
                _where(sheet, scan.line),
                f"subject {scan.subject!r} has two time points on {scan.date} "
                f"({earlier.timepoint!r} on line {earlier.line} and {scan.timepoint!r})",
                "a different date for each time point of a subject",
            )
        by_date[(scan.subject, scan.date)] = scan


def display_path(path: Path, sheet: SampleSheet | Path) -> str:
    """``path`` relative to the sheet's folder when inside it, else its file name only.

    Reports print this instead of a full path, which could carry a patient's
    name in a folder name.
    """
    folder = (sheet.path if isinstance(sheet, SampleSheet) else Path(sheet)).parent
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name


PATH_COLUMNS = ("image", "arterial_image", "mask")


def relocated_sheet_text(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    source_folder: str | os.PathLike[str] | None = None,
) -> str:
    """The text of sheet ``source`` with its relative paths rewritten for a sheet at ``target``.

    Column order and absolute paths are kept (comment lines are dropped);
    each relative path is made relative to ``target``'s folder, so the new
    sheet points at the same files (used to make ``config/samples.tsv`` list
    the demo cohort that ``liverburden phantom`` writes into ``resources/demo``).
    ``source_folder`` resolves the relative paths against another folder than
    the sheet's own (the folder the files will be written into).
    """
    source_path = Path(os.path.abspath(source))
    base = Path(os.path.abspath(source_folder)) if source_folder is not None else source_path.parent
    target_folder = Path(os.path.abspath(target)).parent
    header, rows = _read_rows(source_path)
    _check_header(source_path, header)
    lines = ["\t".join(header)]
    for _, fields in rows:
        values = [field.strip() for field in fields] + [""] * (len(header) - len(fields))
        for index, name in enumerate(header):
            if name in PATH_COLUMNS and values[index] and not Path(values[index]).is_absolute():
                absolute = Path(os.path.abspath(base / values[index]))
                values[index] = Path(os.path.relpath(absolute, target_folder)).as_posix()
        lines.append("\t".join(values[: len(header)]))
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.samples SHEET``: check a sheet, print its summary."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.samples", description="Check a sample sheet."
    )
    parser.add_argument("sheet", help="tab-separated sample sheet")
    parser.add_argument(
        "--relocate-to",
        metavar="NEW_SHEET",
        help="also write a copy of the sheet at NEW_SHEET, its relative paths rewritten to point "
        "at the same files (e.g. --relocate-to config/samples.tsv for a demo cohort)",
    )
    parser.add_argument(
        "--files-in",
        metavar="FOLDER",
        help="with --relocate-to: the files will lie in FOLDER, not beside SHEET "
        "(e.g. --files-in resources/demo)",
    )
    args = parser.parse_args(argv)
    try:
        sheet = load_samples(args.sheet)
        if args.relocate_to:
            from pipeline.io import write_text

            text = relocated_sheet_text(args.sheet, args.relocate_to, source_folder=args.files_in)
            write_text(text, args.relocate_to)
    except InputError as error:
        print(f"liverburden samples: error: {error.message}", file=sys.stderr)
        return 2
    for warning in sheet.warnings:
        print(f"liverburden samples: warning: {warning}", file=sys.stderr)
    print(f"{sheet.path}: {len(sheet.scans)} scans of {len(sheet.subjects)} subjects")
    for subject in sheet.subjects:
        scans = sheet.scans_of(subject)
        listed = ", ".join(f"{s.timepoint} ({s.date})" for s in scans)
        print(f"  {subject}: {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
