"""Made-up patient identifiers and a search for them in every byte an output holds.

``identify(series_folder, identifiers)`` writes identifiers into every file of
a DICOM series; :func:`find_identifiers` searches files (raw bytes, the
decompressed content of ``.gz`` files, the text chunks of PNG images, the
images embedded in HTML as ``data:`` URIs) and captured text for each
identifier in its common encodings.
"""

from __future__ import annotations

import base64
import gzip
import io
import re
import shutil
import struct
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from tests._dicom_fixtures import FAKE_IDENTIFIERS

#: Identifiers written into the privacy tests' series: none may appear in any output
#: (DICOM SEG excepted). The study date is not among them: it is allowed.
IDENTIFIERS: dict[str, str] = {
    **FAKE_IDENTIFIERS,
    "InstitutionName": "Hospital of Fakeville",
    "InstitutionAddress": "12 Nowhere Lane, Fakeville",
    "InstitutionalDepartmentName": "Department of Invented Radiology",
    "PerformingPhysicianName": "Quirinella^Radiologa",
    "NameOfPhysiciansReadingStudy": "Fictivia^Leserin",
    "OperatorsName": "Madeupson^Opernix",
    "OtherPatientIDs": "OPID-5521-QW",
    "StudyID": "STU-88123",
    "SeriesDate": "19990716",
    "AcquisitionDate": "19990717",
    "ContentDate": "19990718",
}
#: Identifiers of the patient and study modules a DICOM SEG must carry over.
SEG_MUST_CARRY = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")

#: Name components too common to search on their own (they occur in ordinary text).
COMMON_WORDS = {"doctor", "reader", "patient", "hospital"}

DATE_KEYWORDS = {"PatientBirthDate", "SeriesDate", "AcquisitionDate", "ContentDate"}


def needles(identifiers: Mapping[str, str] = IDENTIFIERS) -> dict[str, str]:
    """Lower-case search strings -> the identifier they come from.

    Each identifier as written (searched case-insensitively, so upper case too),
    with ``^`` replaced by a space and by ``, ``, each name component of five or
    more letters on its own (common words excepted), and dates also as
    ``YYYY-MM-DD``, ``DD.MM.YYYY`` and ``MM/DD/YYYY``.
    """
    found: dict[str, str] = {}
    for keyword, value in identifiers.items():
        forms = {value, value.replace("^", " "), value.replace("^", ", ")}
        if "^" in value:
            forms.update(
                part
                for part in value.split("^")
                if len(part) >= 5 and part.lower() not in COMMON_WORDS
            )
        if keyword in DATE_KEYWORDS and re.fullmatch(r"\d{8}", value):
            y, m, d = value[:4], value[4:6], value[6:]
            forms.update({f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}"})
        for form in forms:
            found[form.lower()] = keyword
    return found


def identify(folder: Path, identifiers: Mapping[str, str] = IDENTIFIERS) -> Path:
    """Write ``identifiers`` into every DICOM file of ``folder`` (in place)."""
    for path in sorted(folder.iterdir()):
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            continue
        for keyword, value in identifiers.items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    return folder


def copy_series(
    source: Path,
    target: Path,
    *,
    study_date: str,
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
    identifiers: Mapping[str, str] = IDENTIFIERS,
    slices: slice | None = None,
) -> Path:
    """A copy of a DICOM series with ``identifiers``, another study date, new UIDs and
    every slice moved by ``shift_mm`` (LPS): a second examination of the patient.
    ``slices`` keeps only those slices (in the order of their position)."""
    target.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    datasets = []
    for path in sorted(source.iterdir()):
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            continue
        if "PixelData" in ds:
            datasets.append((path, ds))
    datasets.sort(key=lambda item: float(item[1].ImagePositionPatient[2]))
    for path, ds in datasets[slices] if slices is not None else datasets:
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyDate = study_date
        position = np.asarray([float(v) for v in ds.ImagePositionPatient]) + np.asarray(shift_mm)
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        for keyword, value in identifiers.items():
            setattr(ds, keyword, value)
        ds.save_as(target / path.name, enforce_file_format=True)
    return target


# ------------------------------------------------------------------ search


def png_text_chunks(data: bytes) -> list[bytes]:
    """Decompressed contents of the tEXt, zTXt, iTXt and eXIf chunks of a PNG."""
    texts: list[bytes] = []
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return texts
    position = 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        kind = data[position + 4 : position + 8]
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"tEXt" or kind == b"eXIf":
            texts.append(body)
        elif kind == b"zTXt":
            keyword, _, rest = body.partition(b"\0")
            texts.append(keyword + b" " + zlib.decompress(rest[1:]))
        elif kind == b"iTXt":
            keyword, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _language, _, rest = rest.partition(b"\0")
            translated, _, text = rest.partition(b"\0")
            texts.append(
                keyword + b" " + translated + b" " + (zlib.decompress(text) if compressed else text)
            )
    return texts


DATA_URI = re.compile(rb"data:[a-z/+.-]+;base64,([A-Za-z0-9+/=]+)")


def byte_views(name: str, data: bytes) -> Iterable[tuple[str, bytes]]:
    """Every readable form of a file's content: raw, gunzipped, the members of a zip
    (``.npz``), PNG text chunks, embedded ``data:`` URIs (recursively)."""
    yield name, data
    if data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                yield from byte_views(f"{name} ({member})", archive.read(member))
    if data[:2] == b"\x1f\x8b":
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            inner = b""
        yield from byte_views(name + " (gunzipped)", inner)
    for index, text in enumerate(png_text_chunks(data)):
        yield f"{name} (PNG text chunk {index})", text
    for index, match in enumerate(DATA_URI.finditer(data)):
        try:
            decoded = base64.b64decode(match.group(1), validate=False)
        except ValueError:
            continue
        yield from byte_views(f"{name} (data URI {index})", decoded)


def find_in_bytes(name: str, data: bytes, search: Mapping[str, str]) -> list[str]:
    hits = []
    for where, view in byte_views(name, data):
        lowered = view.lower()
        for needle, keyword in search.items():
            for encoding in ("utf-8", "utf-16-le", "latin-1"):
                try:
                    encoded = needle.encode(encoding)
                except UnicodeEncodeError:
                    continue
                if encoded in lowered:
                    hits.append(f"{where}: {keyword} as {needle!r} ({encoding})")
                    break
    return hits


def find_identifiers(
    paths: Iterable[Path],
    texts: Mapping[str, str] = {},
    *,
    identifiers: Mapping[str, str] = IDENTIFIERS,
    exclude: Iterable[Path] = (),
) -> list[str]:
    """Where an identifier appears: in any file under ``paths`` (files or folders,
    ``exclude`` left out) or in the captured ``texts`` (name -> text)."""
    search = needles(identifiers)
    skipped = {p.resolve() for p in exclude}
    hits: list[str] = []
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
    for file in files:
        if file.resolve() in skipped:
            continue
        hits += find_in_bytes(str(file), file.read_bytes(), search)
    for name, text in texts.items():
        hits += find_in_bytes(name, text.encode("utf-8"), search)
    return hits


def fresh_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target
