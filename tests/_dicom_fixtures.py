"""Write small CT series as DICOM files for tests (made-up patient identifiers).

``write_ct_series`` builds a classic single-frame CT Image Storage series from
an array in HU. Options produce the broken series the input checks must
refuse (missing or duplicated slices, uneven spacing, gantry tilt, no rescale,
another modality) and the identifiers the privacy tests search for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

#: Made-up identifiers written into test series; no output may contain them.
FAKE_IDENTIFIERS = {
    "PatientName": "Testpatient^Rosalind",
    "PatientID": "PID-7731-XQ",
    "PatientBirthDate": "19520314",
    "AccessionNumber": "ACC-99812-ZT",
    "InstitutionName": "Hospital of Fakeville",
    "ReferringPhysicianName": "Doctor^Imaginary",
}


def write_ct_series(
    folder: Path,
    hu_zyx: np.ndarray,
    *,
    spacing_xyz: Sequence[float] = (2.0, 2.0, 2.5),
    origin_xyz: Sequence[float] = (-150.0, -150.0, -300.0),
    row_direction: Sequence[float] = (1.0, 0.0, 0.0),
    column_direction: Sequence[float] = (0.0, 1.0, 0.0),
    study_date: str = "20240115",
    modality: str = "CT",
    rescale: bool = True,
    series_uid: str | None = None,
    drop_slices: Sequence[int] = (),
    duplicate_slice: int | None = None,
    slice_offsets_mm: Sequence[float] | None = None,
    tilt_shift_mm_per_slice: float = 0.0,
    identifiers: dict[str, str] | None = None,
    name_prefix: str = "slice",
) -> list[Path]:
    """Write ``hu_zyx`` (HU, [z, y, x]) as a DICOM series; returns the files written.

    Slice ``k`` lies at ``origin + k * spacing_z * normal`` (plus
    ``slice_offsets_mm[k]`` along the normal, plus a shift along the column
    direction of ``tilt_shift_mm_per_slice * k`` to imitate gantry tilt).
    """
    folder.mkdir(parents=True, exist_ok=True)
    identifiers = dict(FAKE_IDENTIFIERS if identifiers is None else identifiers)
    row = np.asarray(row_direction, dtype=float)
    column = np.asarray(column_direction, dtype=float)
    normal = np.cross(row, column)
    study_uid, frame_uid = generate_uid(), generate_uid()
    series_uid = series_uid or generate_uid()
    files: list[Path] = []
    slices = [k for k in range(hu_zyx.shape[0]) if k not in set(drop_slices)]
    if duplicate_slice is not None:
        slices.append(duplicate_slice)
    for number, k in enumerate(slices):
        offset = k * spacing_xyz[2] + (slice_offsets_mm[k] if slice_offsets_mm is not None else 0.0)
        position = np.asarray(origin_xyz, dtype=float) + offset * normal
        position = position + tilt_shift_mm_per_slice * k * column
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        for key, value in identifiers.items():
            setattr(ds, key, value)
        ds.StudyDate = study_date
        ds.SeriesDate = study_date
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.SeriesNumber = 3
        ds.InstanceNumber = number + 1
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in (*row, *column)]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in position]
        ds.PixelSpacing = [f"{spacing_xyz[1]:.6f}", f"{spacing_xyz[0]:.6f}"]
        ds.SliceThickness = f"{spacing_xyz[2]:.3f}"
        ds.Rows, ds.Columns = int(hu_zyx.shape[1]), int(hu_zyx.shape[2])
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if rescale:
            ds.RescaleIntercept = "-1024"
            ds.RescaleSlope = "1"
            stored = np.round(hu_zyx[k] + 1024)
        else:
            stored = np.round(hu_zyx[k])
        ds.PixelData = stored.astype("<i2").tobytes()
        path = folder / f"{name_prefix}{number:04d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        files.append(path)
    return files


def abdomen_like_volume(
    shape_zyx: tuple[int, int, int] = (12, 64, 64), seed: int = 0
) -> np.ndarray:
    """A crude body (soft tissue in air, with fat) in HU for input tests."""
    rng = np.random.default_rng(seed)
    _, y, x = np.indices(shape_zyx, dtype=float)
    cy, cx = (shape_zyx[1] - 1) / 2, (shape_zyx[2] - 1) / 2
    radius = np.hypot((y - cy) / (0.42 * shape_zyx[1]), (x - cx) / (0.45 * shape_zyx[2]))
    volume = np.full(shape_zyx, -1000.0)
    volume[radius < 1.0] = -100.0
    volume[radius < 0.8] = 50.0
    return (volume + rng.normal(0, 10, shape_zyx)).astype(np.float32)
