"""Broken and awkward CT inputs: files, DICOM series, geometry and voxel values.

Each builder takes ``(workspace, folder)`` and returns ``(path, fragments)``:
the CT input to give a command and the text its error must contain (empty
for inputs that must be handled).
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from tests._dicom_fixtures import write_ct_series
from tests.corpus.base import Workspace, nifti_bytes, patch_nifti, write_gzip, write_image

CtBuilder = Callable[[Workspace, Path], tuple[Path, tuple[str, ...]]]

# NIfTI-1 header offsets (bytes)
DIM = 40  # 8 x int16
DATATYPE = 70  # int16
BITPIX = 72  # int16
PIXDIM = 76  # 8 x float32 (pixdim[1..3] at 80)
VOX_OFFSET = 108  # float32


def _ct_bytes(ws: Workspace, folder: Path, image: sitk.Image | None = None) -> bytes:
    return nifti_bytes(image if image is not None else ws.base.ct, folder)


def _float_ct(ws: Workspace, array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.CopyInformation(ws.base.ct)
    return image


# ---------------------------------------------------------------------- files


def missing(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = folder / "absent.nii.gz"
    return path, ("absent.nii.gz", "not found")


def empty(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = folder / "empty.nii.gz"
    path.write_bytes(b"")
    return path, ("empty.nii.gz", "empty")


def text_named_nifti(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = folder / "notes.nii"
    path.write_text("Patient notes, not an image.\n" * 40, encoding="utf-8")
    return path, ("notes.nii",)


def text_named_gzip_nifti(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = folder / "notes.nii.gz"
    path.write_text("Patient notes, not an image.\n" * 40, encoding="utf-8")
    return path, ("notes.nii.gz", "corrupt")


def png_image(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = folder / "screenshot.png"
    write_image(sitk.Cast(ws.base.ct[:, :, 20] > 0, sitk.sitkUInt8), path)
    return path, ("screenshot.png", "unsupported", ".nii.gz")


def truncated_gzip(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """A .nii.gz cut in the middle (SimpleITK alone reads it, zero-filled)."""
    data = gzip.compress(_ct_bytes(ws, folder), mtime=0)
    path = folder / "truncated.nii.gz"
    path.write_bytes(data[: len(data) // 2])
    return path, ("truncated.nii.gz", "truncated")


def truncated_payload(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """A complete gzip stream holding only part of the voxel data."""
    data = _ct_bytes(ws, folder)
    path = write_gzip(folder / "short.nii.gz", data[: len(data) * 2 // 3])
    return path, ("short.nii.gz", "truncated")


def corrupt_gzip(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    data = bytearray(gzip.compress(_ct_bytes(ws, folder), mtime=0))
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0x5A
    path = folder / "corrupt.nii.gz"
    path.write_bytes(bytes(data))
    return path, ("corrupt.nii.gz", "corrupt")


def truncated_nrrd(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = write_image(ws.base.ct, folder / "ct.nrrd")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    return path, ("ct.nrrd", "truncated")


def truncated_mha(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = write_image(ws.base.ct, folder / "ct.mha")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    return path, ("ct.mha", "truncated")


def mhd_without_raw(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = write_image(ws.base.ct, folder / "ct.mhd")
    for raw in folder.glob("ct.*raw"):
        raw.unlink()
    return path, ("ct.mhd",)


def empty_folder(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = folder / "ct-dicom"
    path.mkdir()
    return path, ("ct-dicom", "no DICOM")


def folder_without_dicom(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = folder / "ct-dicom"
    path.mkdir()
    (path / "README.txt").write_text("export of the PACS\n", encoding="utf-8")
    write_image(ws.base.ct, path / "ct.nii.gz")
    return path, ("ct-dicom", "no DICOM")


# ---------------------------------------------------------------------- DICOM


def _series(ws: Workspace, folder: Path, **options: object) -> Path:
    path = folder / "ct-dicom"
    write_ct_series(path, ws.base.hu_zyx, **{**ws.dicom_geometry, **options})
    return path


def corrupt_dicom(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = _series(ws, folder)
    victim = path / "slice0010.dcm"
    data = victim.read_bytes()
    victim.write_bytes(data[:132] + bytes((b * 7 + 13) % 256 for b in data[132:600]))
    return path, ("slice0010.dcm", "corrupt DICOM")


def truncated_dicom_pixels(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """One slice cut in the middle of its pixel data (its header is intact)."""
    path = _series(ws, folder)
    victim = path / "slice0020.dcm"
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 4000])
    return path, ("slice0020.dcm",)


def two_series_same_size(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """Two CT series of as many slices (two phases, say) in one folder: ambiguous."""
    path = _series(ws, folder, name_prefix="a")
    write_ct_series(
        path, ws.base.hu_zyx + 30.0, **ws.dicom_geometry, name_prefix="b", study_date="20240115"
    )
    return path, ("ct-dicom", "--series")


def two_series_different_sizes(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """The full series and a shorter one: the full one is read, with a warning."""
    path = _series(ws, folder, name_prefix="a")
    geometry = dict(ws.dicom_geometry)
    write_ct_series(path, ws.base.hu_zyx[:20] + 30.0, **geometry, name_prefix="b")
    return path, ()


def missing_slice(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    return _series(ws, folder, drop_slices=(17,)), ("ct-dicom", "missing 1 slice")


def duplicated_slice(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    return _series(ws, folder, duplicate_slice=12), ("ct-dicom", "duplicated slice positions")


def uneven_spacing(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    offsets = [0.0] * ws.base.hu_zyx.shape[0]
    offsets[25:] = [1.7] * (len(offsets) - 25)
    return _series(ws, folder, slice_offsets_mm=offsets), ("ct-dicom", "uneven slice spacing")


def gantry_tilt(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    return _series(ws, folder, tilt_shift_mm_per_slice=1.0), ("ct-dicom", "gantry-tilted")


#: Oblique acquisition: slice rows and columns rotated 20 degrees about the L-R axis.
OBLIQUE_DEGREES = 20.0


def oblique(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    angle = np.radians(OBLIQUE_DEGREES)
    column = (0.0, float(np.cos(angle)), float(np.sin(angle)))
    return _series(ws, folder, row_direction=(1.0, 0.0, 0.0), column_direction=column), ()


def magnetic_resonance(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    return _series(ws, folder, modality="MR"), ("ct-dicom", "MR", "CT")


def positron_emission(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    return _series(ws, folder, modality="PT"), ("ct-dicom", "PT", "CT")


def no_rescale(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    return _series(ws, folder, rescale=False), ("RescaleSlope",)


def localizer_and_secondary_capture(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """The series plus a localizer (same series UID), a secondary capture, a
    structured report without pixels and a text file: all but the CT ignored."""
    path = _series(ws, folder)
    first = pydicom.dcmread(path / "slice0000.dcm")
    localizer = first.copy()
    localizer.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    localizer.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
    localizer.SOPInstanceUID = pydicom.uid.generate_uid()
    localizer.file_meta.MediaStorageSOPInstanceUID = localizer.SOPInstanceUID
    localizer.save_as(path / "localizer.dcm", enforce_file_format=True)
    capture = first.copy()
    capture.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    capture.file_meta.MediaStorageSOPClassUID = capture.SOPClassUID
    capture.SeriesInstanceUID = pydicom.uid.generate_uid()
    capture.SOPInstanceUID = pydicom.uid.generate_uid()
    capture.file_meta.MediaStorageSOPInstanceUID = capture.SOPInstanceUID
    capture.ImageType = ["DERIVED", "SECONDARY"]
    capture.save_as(path / "screen-capture.dcm", enforce_file_format=True)
    report = first.copy()
    for keyword in ("PixelData", "Rows", "Columns", "ImagePositionPatient"):
        delattr(report, keyword)
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
    report.file_meta.MediaStorageSOPClassUID = report.SOPClassUID
    report.Modality = "SR"
    report.SeriesInstanceUID = pydicom.uid.generate_uid()
    report.save_as(path / "report.dcm", enforce_file_format=True)
    (path / "DICOMDIR.txt").write_text("index\n", encoding="utf-8")
    return path, ()


# ------------------------------------------------------- geometry and values


def two_dimensional(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = write_image(ws.base.ct[:, :, 24], folder / "slice.nii.gz")
    return path, ("slice.nii.gz", "2-D", "3-D")


def four_dimensional(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = write_image(sitk.JoinSeries([ws.base.ct, ws.base.ct]), folder / "dynamic.nii.gz")
    return path, ("dynamic.nii.gz", "4-D", "3-D")


def four_dimensional_single_volume(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """A 4-D file holding one volume (as some converters write): handled as 3-D."""
    path = write_image(sitk.JoinSeries([ws.base.ct]), folder / "single.nii.gz")
    return path, ()


def vector_image(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    image = sitk.Compose([ws.base.ct, ws.base.ct, ws.base.ct])
    path = write_image(image, folder / "colour.nii.gz")
    return path, ("colour.nii.gz", "components")


def _spacing_case(value: float, axis: int, name: str, *fragments: str) -> CtBuilder:
    def build(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
        data = _ct_bytes(ws, folder)
        data = patch_nifti(data, PIXDIM + 4 * (axis + 1), "f", value)
        return write_gzip(folder / name, data), (name, *fragments)

    return build


zero_spacing = _spacing_case(0.0, 0, "zero-spacing.nii.gz", "spacing", "positive")
negative_spacing = _spacing_case(-5.0, 2, "negative-spacing.nii.gz", "spacing", "positive")
nan_spacing = _spacing_case(float("nan"), 1, "nan-spacing.nii.gz", "spacing")
implausible_spacing = _spacing_case(60.0, 2, "coarse.nii.gz", "implausible voxel spacing")


def sheared_direction(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = write_image(ws.base.ct, folder / "sheared.mha")
    text = path.read_bytes()
    text = text.replace(
        b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0 0 0.6 0.8 0.3 0 0 1"
    )
    assert b"0.6 0.8 0.3" in text
    path.write_bytes(text)
    return path, ("sheared.mha",)


def _voxel_case(value: float, name: str, *fragments: str) -> CtBuilder:
    def build(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
        array = ws.base.hu_zyx.astype(np.float32)
        array[24, 40, 40:44] = value
        return write_image(_float_ct(ws, array), folder / name), (name, *fragments)

    return build


nan_voxels = _voxel_case(float("nan"), "nan.nii.gz", "not finite")
infinite_voxels = _voxel_case(float("inf"), "inf.nii.gz", "not finite")
implausible_hounsfield = _voxel_case(2.0e6, "hot.nii.gz", "plausible Hounsfield")


def unscaled_values(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """Stored values (HU + 1024) without the rescale: no fat, no air."""
    stored = np.clip(ws.base.hu_zyx + 1024.0, 0, 4095).astype(np.uint16)
    image = sitk.GetImageFromArray(stored)
    image.CopyInformation(ws.base.ct)
    path = write_image(image, folder / "stored.nii.gz")
    return path, ("stored.nii.gz", "not Hounsfield")


def too_small(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = write_image(ws.base.ct[30:50, 30:50, 20:22], folder / "patch.nii.gz")
    return path, ("patch.nii.gz", "too small")


def huge_header_only_nifti(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """A NIfTI header claiming 4000 x 4000 x 4000 int16 voxels (128 GB) and no data."""
    header = _ct_bytes(ws, folder)[:352]
    header = patch_nifti(header, DIM, "8h", 3, 4000, 4000, 4000, 1, 1, 1, 1)
    header = patch_nifti(header, DATATYPE, "2h", 4, 16)
    path = write_gzip(folder / "huge.nii.gz", header + b"\0" * 4096)
    return path, ("huge.nii.gz", "larger than the limit")


def huge_header_only_mha(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    path = write_image(ws.base.ct[:, :, :4], folder / "huge.mha")
    data = path.read_bytes()
    start = data.index(b"DimSize = ")
    end = data.index(b"\n", start)
    path.write_bytes(data[:start] + b"DimSize = 4000 4000 4000" + data[end:])
    return path, ("huge.mha", "larger than the limit")


def over_voxel_limit(ws: Workspace, folder: Path) -> tuple[Path, tuple[str, ...]]:
    """The base CT with ``LIVERBURDEN_MAX_VOXELS`` below its size (set by the case)."""
    return ws.ct_path, ("ct.nii.gz", "larger than the limit", "LIVERBURDEN_MAX_VOXELS")
