"""CT and label-map input/output: reading, geometry and value checks, atomic writes.

Conventions (see ``docs/architecture.md``):

* physical space is SimpleITK's (LPS, millimetres);
* arrays from SimpleITK are indexed ``[z, y, x]`` while spacing, origin and
  size tuples are ``(x, y, z)``;
* label maps hold 0 background, 1 liver parenchyma, 2 tumour;
* every output is written atomically (temporary file, then rename), so an
  interrupted run never leaves a half-written file under its final name.

Nothing here writes DICOM patient identifiers anywhere: the DICOM reader keeps
only the study date and the UIDs needed to reference the source series.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import logging
import math
import os
import struct
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError

# the project's atomic output helpers, re-exported (they need no SimpleITK)
from pipeline.files import atomic_path as atomic_path
from pipeline.files import dumps_json as dumps_json
from pipeline.files import json_ready as json_ready
from pipeline.files import output_directory as output_directory
from pipeline.files import read_json as read_json
from pipeline.files import write_json as write_json
from pipeline.files import write_text as write_text

log = logging.getLogger(__name__)

sitk.ProcessObject.SetGlobalWarningDisplay(False)

#: Smallest and largest voxel spacing accepted, in mm.
SPACING_MIN_MM = 0.05
SPACING_MAX_MM = 20.0
#: Hounsfield range outside which no CT voxel can plausibly lie (padding
#: values down to -3024 HU and extended-scale metal up to the int16 limit).
HU_MIN_PLAUSIBLE = -3100.0
HU_MAX_PLAUSIBLE = 32767.0
#: A CT of the abdomen always holds fat or air; an image with no voxel below
#: this value is not in Hounsfield units (a missing rescale, or not a CT).
HU_FAT_OR_AIR_BELOW = -200.0
#: Smallest field of view (in-plane, mm) and slice count that can hold a liver.
MIN_IN_PLANE_EXTENT_MM = 100.0
MIN_SLICES = 3
#: Largest image accepted, in voxels (override with LIVERBURDEN_MAX_VOXELS).
DEFAULT_MAX_VOXELS = 800_000_000
#: Relative tolerance (fraction of a voxel) for two grids to count as the same.
GRID_TOLERANCE_VOXELS = 0.01
LABEL_VALUES = (0, 1, 2)

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


# --------------------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True)
class DicomSeriesInfo:
    """What the project keeps of a DICOM series: UIDs to reference it, no identifiers.

    ``files`` are sorted along the slice normal in the order of the image's
    third index (slice ``k`` of the image comes from ``files[k]``).
    """

    series_instance_uid: str
    study_instance_uid: str | None
    frame_of_reference_uid: str | None
    files: tuple[Path, ...]
    modality: str


@dataclasses.dataclass
class CTScan:
    """A CT volume in Hounsfield units with its geometry and where it came from.

    Attributes
    ----------
    image
        ``sitk.Image`` of pixel type float32 in HU, with origin, spacing and
        direction of the source.
    source
        The file or DICOM folder that was read.
    study_date
        ISO date (``YYYY-MM-DD``) from the DICOM StudyDate, or ``None``.
    dicom
        Series UIDs and sorted files when the source was DICOM, else ``None``.
    notes
        Remarks for the user (for example which series was chosen).
    """

    image: sitk.Image
    source: Path
    study_date: str | None = None
    dicom: DicomSeriesInfo | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel spacing ``(x, y, z)`` in mm."""
        return tuple(float(s) for s in self.image.GetSpacing())  # type: ignore[return-value]


# ------------------------------------------------------------------ small helpers


def has_suffix(path: Path, suffixes: Sequence[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def max_voxels() -> int:
    """Largest accepted image size in voxels (``LIVERBURDEN_MAX_VOXELS`` overrides)."""
    value = os.environ.get("LIVERBURDEN_MAX_VOXELS")
    if value is None:
        return DEFAULT_MAX_VOXELS
    try:
        return int(float(value))
    except ValueError as exc:
        raise InputError("LIVERBURDEN_MAX_VOXELS", f"not a number: {value!r}") from exc


def _available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def iso_date(value: str | None, source: str | os.PathLike[str] = "date") -> str | None:
    """Normalise ``YYYYMMDD`` or ``YYYY-MM-DD`` to ISO ``YYYY-MM-DD``.

    ``None`` and empty strings give ``None``; anything else that is not a real
    calendar date raises :class:`InputError`.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    for fmt in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    raise InputError(source, f"not a valid date: {text!r}", "YYYY-MM-DD or YYYYMMDD")


# ------------------------------------------------------------------- geometry


def direction_matrix(image: sitk.Image) -> np.ndarray:
    """3 x 3 direction matrix; column ``i`` is the LPS unit vector of image axis ``i``."""
    return np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)


def axial_axis(image: sitk.Image) -> int:
    """Index (in ``(x, y, z)`` order) of the image axis closest to the head-foot axis.

    The axial plane is spanned by the two other axes. For the usual axial CT
    this is 2 (``z``); for a volume stored sagittally or coronally it differs.
    """
    return int(np.argmax(np.abs(direction_matrix(image)[2, :])))


def grid_description(image: sitk.Image) -> str:
    size = "x".join(str(s) for s in image.GetSize())
    spacing = "x".join(f"{s:.4g}" for s in image.GetSpacing())
    origin = ",".join(f"{o:.2f}" for o in image.GetOrigin())
    return f"size {size}, spacing {spacing} mm, origin ({origin}) mm"


def image_geometry(image: sitk.Image) -> dict[str, Any]:
    """Geometry of an image as plain JSON-ready values."""
    return {
        "size": [int(s) for s in image.GetSize()],
        "spacing_mm": [float(s) for s in image.GetSpacing()],
        "origin_mm": [float(o) for o in image.GetOrigin()],
        "direction": [float(d) for d in image.GetDirection()],
    }


def _index_to_physical_matrix(image: sitk.Image) -> np.ndarray:
    return direction_matrix(image) @ np.diag(np.asarray(image.GetSpacing(), dtype=float))


def same_grid(
    a: sitk.Image, b: sitk.Image, tolerance_voxels: float = GRID_TOLERANCE_VOXELS
) -> bool:
    """True when ``a`` and ``b`` have the same size and, within a fraction of a
    voxel, the same spacing, origin and direction (the same voxel lattice
    stored the same way)."""
    if a.GetSize() != b.GetSize() or a.GetDimension() != b.GetDimension():
        return False
    ma, mb = _index_to_physical_matrix(a), _index_to_physical_matrix(b)
    try:
        relative = np.linalg.solve(ma, mb)
    except np.linalg.LinAlgError:
        return False
    if not np.allclose(relative, np.eye(3), atol=tolerance_voxels):
        return False
    offset = np.linalg.solve(ma, np.asarray(b.GetOrigin()) - np.asarray(a.GetOrigin()))
    return bool(np.all(np.abs(offset) <= tolerance_voxels))


def same_lattice(
    reference: sitk.Image, other: sitk.Image, tolerance_voxels: float = GRID_TOLERANCE_VOXELS
) -> bool:
    """True when ``other`` covers exactly the voxels of ``reference``, possibly
    stored with permuted or flipped axes (for example the same scan saved RAS
    and LPS). Such an image can be brought onto ``reference`` without
    interpolation."""
    ma, mb = _index_to_physical_matrix(reference), _index_to_physical_matrix(other)
    try:
        relative = np.linalg.solve(ma, mb)
    except np.linalg.LinAlgError:
        return False
    rounded = np.round(relative)
    if not np.allclose(relative, rounded, atol=tolerance_voxels):
        return False
    if not (np.all(np.abs(rounded).sum(axis=0) == 1) and np.all(np.abs(rounded).sum(axis=1) == 1)):
        return False
    offset = np.linalg.solve(ma, np.asarray(other.GetOrigin()) - np.asarray(reference.GetOrigin()))
    size_other = np.asarray(other.GetSize(), dtype=float)
    corners = offset[:, None] + rounded @ np.diag(size_other - 1) @ np.array(
        [[0, 1, 0, 0, 1, 1, 0, 1], [0, 0, 1, 0, 1, 0, 1, 1], [0, 0, 0, 1, 0, 1, 1, 1]], dtype=float
    )
    if not np.allclose(corners, np.round(corners), atol=tolerance_voxels):
        return False
    low, high = np.round(corners.min(axis=1)), np.round(corners.max(axis=1))
    size_reference = np.asarray(reference.GetSize(), dtype=float)
    return bool(np.all(low == 0) and np.all(high == size_reference - 1))


def resample_like(
    image: sitk.Image,
    reference: sitk.Image,
    *,
    interpolator: int = sitk.sitkLinear,
    default_value: float = 0.0,
    transform: sitk.Transform | None = None,
) -> sitk.Image:
    """Resample ``image`` onto the grid of ``reference`` (physical space is kept)."""
    return sitk.Resample(
        image,
        reference,
        transform if transform is not None else sitk.Transform(),
        interpolator,
        default_value,
        image.GetPixelID(),
    )


# ------------------------------------------------------------ file completeness


def _nifti_expected_bytes(header: bytes, source: Path) -> int:
    """Bytes a NIfTI-1 or NIfTI-2 file must hold (header, extensions and data)."""
    for order in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(order + "i", header[:4])
        if sizeof_hdr == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            (bitpix,) = struct.unpack(order + "h", header[72:74])
            (vox_offset,) = struct.unpack(order + "f", header[108:112])
            break
        if sizeof_hdr == 540:
            dims = struct.unpack(order + "8q", header[16:80])
            (bitpix,) = struct.unpack(order + "h", header[14:16])
            (vox_offset,) = struct.unpack(order + "q", header[168:176])
            break
    else:
        raise InputError(
            source, "not a NIfTI file (bad header size field)", "a NIfTI-1 or NIfTI-2 image"
        )
    ndim = int(dims[0])
    if not 1 <= ndim <= 7:
        raise InputError(source, f"corrupt NIfTI header (dimension count {ndim})")
    count = 1
    for extent in dims[1 : ndim + 1]:
        count *= max(int(extent), 1)
    return int(vox_offset) + count * max(int(bitpix), 8) // 8


def _nifti_dimensions(header: bytes) -> list[int]:
    """dim[1..dim[0]] of a NIfTI-1 / NIfTI-2 header (image size along each axis)."""
    for order in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(order + "i", header[:4])
        if sizeof_hdr == 348:
            dims = struct.unpack(order + "8h", header[40:56])
            break
        if sizeof_hdr == 540:
            dims = struct.unpack(order + "8q", header[16:80])
            break
    else:
        return []
    return [int(d) for d in dims[1 : max(1, min(int(dims[0]), 7)) + 1]]


def _nifti_header_spacing(header: bytes) -> list[float]:
    """pixdim[1..3] of a NIfTI-1 / NIfTI-2 header (spatial voxel sizes)."""
    for order in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(order + "i", header[:4])
        if sizeof_hdr == 348:
            return list(struct.unpack(order + "3f", header[80:92]))
        if sizeof_hdr == 540:
            return list(struct.unpack(order + "3d", header[112:136]))
    return []


def _check_header_spacing(path: Path, spacing: Sequence[float]) -> None:
    """Refuse zero, negative or non-finite spacing written in a file header.

    ITK silently takes the absolute value of a negative spacing (which can
    mirror the image without saying so) and fails obscurely on zero or NaN.
    """
    for axis, value in zip("xyz", spacing, strict=False):
        if not math.isfinite(value) or value <= 0:
            raise InputError(
                path,
                f"voxel spacing along {axis} in the file header is {value:g}",
                "a positive spacing in mm",
            )


def _nifti_float_layout(header: bytes) -> tuple[np.dtype, int] | None:
    """(dtype, data offset) for float NIfTI data, whose NaN ITK silently reads as 0."""
    for order in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(order + "i", header[:4])
        if sizeof_hdr == 348:
            (code,) = struct.unpack(order + "h", header[70:72])
            (offset,) = struct.unpack(order + "f", header[108:112])
            break
        if sizeof_hdr == 540:
            (code,) = struct.unpack(order + "h", header[12:14])
            (offset,) = struct.unpack(order + "q", header[168:176])
            break
    else:
        return None
    kinds = {16: "f4", 64: "f8"}
    if code not in kinds:
        return None
    return np.dtype(order + kinds[code]), int(offset)


def _check_nifti_complete(path: Path) -> None:
    """Detect truncated or corrupt NIfTI files (ITK fills a truncated gzip with zeros)
    and non-finite float voxels (ITK reads NaN as 0)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    total = 0
    non_finite = 0
    try:
        with opener(path, "rb") as handle:
            header = handle.read(540)
            if len(header) < 348:
                raise InputError(
                    path,
                    "file is empty or truncated (no complete NIfTI header)",
                    "a complete image file (copy or export it again)",
                )
            expected = _nifti_expected_bytes(header, path)
            # refuse a huge image from its header, before reading (or decompressing) any data
            _check_size(_nifti_dimensions(header), path)
            ndim = (
                struct.unpack("<h", header[40:42])[0] if header[:4] == struct.pack("<i", 348) else 3
            )
            _check_header_spacing(path, _nifti_header_spacing(header)[: max(1, min(int(ndim), 3))])
            layout = _nifti_float_layout(header)
            pending, position = header, 0  # position: file offset of pending[0]
            total = len(header)
            while True:
                if layout is not None:
                    dtype, data_offset = layout
                    start = min(len(pending), max(0, data_offset - position))
                    count = (len(pending) - start) // dtype.itemsize
                    values = np.frombuffer(pending, dtype=dtype, count=count, offset=start)
                    non_finite += int(count - np.count_nonzero(np.isfinite(values)))
                    consumed = start + count * dtype.itemsize
                else:
                    consumed = len(pending)
                position += consumed
                pending = pending[consumed:]
                chunk = handle.read(1 << 22)
                if not chunk:
                    break
                total += len(chunk)
                pending += chunk
    except InputError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise InputError(
            path,
            f"truncated or corrupt compressed file ({exc})",
            "a complete image file (copy or export it again)",
        ) from None
    if total < expected:
        raise InputError(
            path,
            f"truncated file: holds {total} bytes of image data, its header needs {expected}",
            "a complete image file (copy or export it again)",
        )
    if non_finite:
        raise InputError(
            path, f"{non_finite} voxels are not finite (NaN or infinite)", "finite values"
        )


def _read_text_header(path: Path, limit: int = 65536) -> tuple[dict[str, str], int]:
    """Key/value lines of an NRRD or MetaImage header and the byte offset of the data."""
    with open(path, "rb") as handle:
        head = handle.read(limit)
    fields: dict[str, str] = {}
    offset = 0
    for raw in head.split(b"\n"):
        offset += len(raw) + 1
        line = raw.decode("latin-1").strip()
        if not line:
            if path.suffix.lower() == ".nrrd":
                break
            continue
        for separator in (":=", ":", "="):
            if separator in line:
                key, value = line.split(separator, 1)
                fields[key.strip().lower()] = value.strip()
                break
        if line.lower().startswith("elementdatafile"):
            break
    return fields, offset


def _check_raw_complete(path: Path, expected: int, data: bytes, compressed: bool) -> None:
    if compressed:
        try:
            decompressor = zlib.decompressobj(zlib.MAX_WBITS | 32)
            out = decompressor.decompress(data)
            if not decompressor.eof:
                raise InputError(
                    path,
                    "truncated compressed image data",
                    "a complete image file (copy or export it again)",
                )
            length = len(out)
        except zlib.error as exc:
            raise InputError(
                path,
                f"corrupt compressed image data ({exc})",
                "a complete image file (copy or export it again)",
            ) from None
    else:
        length = len(data)
    if length < expected:
        raise InputError(
            path,
            f"truncated file: holds {length} bytes of image data, needs {expected}",
            "a complete image file (copy or export it again)",
        )


_ITK_TYPE_BYTES = {
    "met_char": 1,
    "met_uchar": 1,
    "met_short": 2,
    "met_ushort": 2,
    "met_int": 4,
    "met_uint": 4,
    "met_long": 8,
    "met_ulong": 8,
    "met_float": 4,
    "met_double": 8,
    "int8": 1,
    "uint8": 1,
    "uchar": 1,
    "signed char": 1,
    "unsigned char": 1,
    "short": 2,
    "int16": 2,
    "uint16": 2,
    "ushort": 2,
    "unsigned short": 2,
    "short int": 2,
    "int": 4,
    "int32": 4,
    "uint32": 4,
    "unsigned int": 4,
    "float": 4,
    "double": 8,
    "int64": 8,
    "uint64": 8,
}


def _check_attached_data_complete(path: Path) -> None:
    """Completeness of attached-data NRRD and MetaImage (.mha) files."""
    fields, offset = _read_text_header(path)
    name = path.name.lower()
    spacing_text = fields.get("elementspacing") or fields.get("spacings")
    if spacing_text:
        try:
            _check_header_spacing(path, [float(v) for v in spacing_text.split()])
        except ValueError:
            raise InputError(
                path, f"unreadable voxel spacing in the header: {spacing_text!r}"
            ) from None
    if name.endswith(".nrrd"):
        sizes = [int(s) for s in fields.get("sizes", "").split()]
        item = _ITK_TYPE_BYTES.get(fields.get("type", "").lower())
        encoding = fields.get("encoding", "raw").lower()
        if not sizes or item is None or encoding not in ("raw", "gzip", "gz"):
            return
        compressed = encoding != "raw"
    elif name.endswith(".mha"):
        if fields.get("elementdatafile", "").upper() != "LOCAL":
            return
        sizes = [int(s) for s in fields.get("dimsize", "").split()]
        item = _ITK_TYPE_BYTES.get(fields.get("elementtype", "").lower())
        channels = int(fields.get("elementnumberofchannels", "1") or 1)
        if not sizes or item is None:
            return
        item *= channels
        compressed = fields.get("compresseddata", "false").lower() == "true"
    else:
        return
    _check_size(sizes, path)  # before reading the data
    expected = int(np.prod(sizes)) * item
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    _check_raw_complete(path, expected, data, compressed)


def read_image_file(path: str | os.PathLike[str], *, what: str = "image") -> sitk.Image:
    """Read a NIfTI, NRRD or MetaImage file after checking that it is complete.

    Raises :class:`InputError` for a missing, empty, unreadable, truncated or
    corrupt file and for images larger than :func:`max_voxels`.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, f"{what} not found", "an existing file (check the path)")
    if path.is_dir():
        raise InputError(path, f"is a folder, not an {what} file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty", "a complete image file (copy or export it again)")
    if not has_suffix(path, IMAGE_SUFFIXES):
        raise InputError(
            path,
            f"unsupported {what} file type",
            ".nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd or a DICOM folder",
        )
    if has_suffix(path, NIFTI_SUFFIXES):
        _check_nifti_complete(path)
    else:
        _check_attached_data_complete(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise InputError(
            path,
            f"cannot read this file as an {what} (not an image, or corrupt)",
            "a NIfTI, NRRD or MetaImage file (with its data file for .nhdr / .mhd)",
        ) from None
    _check_size(tuple(reader.GetSize()), path)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise InputError(
            path,
            f"cannot read the voxel data of this {what} (corrupt file, or a missing data file)",
            "a complete image (.mhd / .nhdr: with its data file beside it)",
        ) from None
    for key in image.GetMetaDataKeys():  # never carry header text (descriptions, names) along
        image.EraseMetaData(key)
    return image


def _check_size(size: Sequence[int], source: Path | str) -> None:
    voxels = math.prod(max(int(s), 1) for s in size)
    limit = max_voxels()
    if voxels > limit:
        raise InputError(
            source,
            f"image of {voxels:,} voxels is larger than the limit of {limit:,}",
            "a smaller crop or coarser resampling (or raise LIVERBURDEN_MAX_VOXELS)",
        )
    available = _available_memory_bytes()
    needed = voxels * 4 * 6  # float32 copies made while processing
    if available is not None and needed > available:
        raise InputError(
            source,
            f"image of {voxels:,} voxels needs about {needed / 2**30:.1f} GiB of memory, "
            f"only {available / 2**30:.1f} GiB is available",
            "a smaller crop or a machine with more memory",
        )


# -------------------------------------------------------------------- checks


def check_ct_geometry(image: sitk.Image, source: Path | str) -> None:
    """Refuse images that are not 3-D scalar volumes with plausible spacing."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            source,
            "image has several components per voxel (colour or vector image)",
            "a scalar CT volume",
        )
    dimension = image.GetDimension()
    size = image.GetSize()
    if dimension == 4 and size[3] == 1:
        dimension = 3
    if dimension != 3:
        raise InputError(
            source, f"image is {dimension}-D ({'x'.join(map(str, size))})", "a 3-D volume"
        )
    if any(s < 1 for s in size[:3]):
        raise InputError(source, "image has an empty axis", "a 3-D volume")
    spacing = image.GetSpacing()[:3]
    for axis, value in zip("xyz", spacing, strict=True):
        if not math.isfinite(value) or value <= 0:
            raise InputError(
                source, f"voxel spacing along {axis} is {value}", "a positive spacing in mm"
            )
        if not SPACING_MIN_MM <= value <= SPACING_MAX_MM:
            raise InputError(
                source,
                f"implausible voxel spacing along {axis}: {value:g} mm",
                f"between {SPACING_MIN_MM} and {SPACING_MAX_MM} mm",
            )
    direction = np.asarray(image.GetDirection(), dtype=float)
    if direction.size == 9:
        matrix = direction.reshape(3, 3)
        if not np.all(np.isfinite(matrix)) or not np.allclose(
            matrix.T @ matrix, np.eye(3), atol=1e-3
        ):
            raise InputError(
                source,
                "direction matrix is not orthonormal (sheared or corrupt geometry)",
                "perpendicular unit axes (resample a sheared volume first)",
            )
    if not all(math.isfinite(o) for o in image.GetOrigin()):
        raise InputError(source, "image origin is not finite")


def check_ct_extent(image: sitk.Image, source: Path | str) -> None:
    """Refuse volumes too small to hold a liver."""
    ax = axial_axis(image)
    size, spacing = image.GetSize(), image.GetSpacing()
    in_plane = [size[i] * spacing[i] for i in range(3) if i != ax]
    if size[ax] < MIN_SLICES or min(in_plane) < MIN_IN_PLANE_EXTENT_MM:
        extent = " x ".join(f"{size[i] * spacing[i]:.0f}" for i in range(3))
        raise InputError(
            source,
            f"volume too small to hold a liver ({extent} mm, {size[ax]} axial slices)",
            f"at least {MIN_IN_PLANE_EXTENT_MM:.0f} mm in-plane and {MIN_SLICES} slices",
        )


def check_hounsfield(array: np.ndarray, source: Path | str) -> None:
    """Refuse voxel values that cannot be CT in Hounsfield units."""
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(array.size - np.count_nonzero(finite))
        nans = int(np.count_nonzero(np.isnan(array)))
        raise InputError(
            source,
            f"{bad} voxels are not finite ({nans} NaN, {bad - nans} infinite)",
            "finite Hounsfield units",
        )
    low, high = float(array.min()), float(array.max())
    if low < HU_MIN_PLAUSIBLE or high > HU_MAX_PLAUSIBLE:
        raise InputError(
            source,
            f"values {low:g}..{high:g} lie outside any plausible Hounsfield range",
            f"CT in HU between {HU_MIN_PLAUSIBLE:g} and {HU_MAX_PLAUSIBLE:g}",
        )
    if low >= HU_FAT_OR_AIR_BELOW:
        raise InputError(
            source,
            f"no voxel below {HU_FAT_OR_AIR_BELOW:g} HU (lowest {low:g}): no fat or air, "
            "so the values are "
            "not Hounsfield units (missing rescale, or not a CT)",
            "a CT in Hounsfield units",
        )


def _as_float_ct(image: sitk.Image, source: Path | str) -> sitk.Image:
    check_ct_geometry(image, source)
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    image = sitk.Cast(image, sitk.sitkFloat32)
    check_ct_extent(image, source)
    check_hounsfield(sitk.GetArrayViewFromImage(image), source)
    return image


# ---------------------------------------------------------------------- DICOM


@dataclasses.dataclass
class _DicomSlice:
    path: Path
    series_uid: str
    sop_class_uid: str
    modality: str
    image_type: tuple[str, ...]
    orientation: tuple[float, ...] | None
    position: tuple[float, ...] | None
    rows: int | None
    columns: int | None
    pixel_spacing: tuple[float, ...] | None
    has_rescale: bool
    frames: int
    study_date: str | None
    study_uid: str | None
    frame_of_reference_uid: str | None


def _scan_dicom_folder(folder: Path) -> tuple[list[_DicomSlice], int]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    slices: list[_DicomSlice] = []
    skipped = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            path = Path(root) / name
            try:
                with open(path, "rb") as handle:
                    preamble = handle.read(132)
            except OSError as exc:
                raise InputError(path, f"cannot read file ({exc.strerror})") from None
            is_dicom_prefix = len(preamble) == 132 and preamble[128:132] == b"DICM"
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=False)
            except InvalidDicomError:
                if is_dicom_prefix:
                    raise InputError(path, "corrupt DICOM file", "readable DICOM files") from None
                skipped += 1
                continue
            except Exception as exc:  # pydicom raises many types for broken files
                if is_dicom_prefix:
                    raise InputError(
                        path,
                        f"corrupt DICOM file ({type(exc).__name__})",
                        "readable DICOM files",
                    ) from None
                skipped += 1
                continue
            if is_dicom_prefix and not (
                ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
            ):
                # pydicom parses garbage after the DICM prefix as private elements:
                # a file that says it is DICOM but holds no SOP class is corrupt
                raise InputError(
                    path,
                    "corrupt DICOM file (no SOP class in its header)",
                    "readable DICOM files (remove or replace this one)",
                )

            def floats(value: Any) -> tuple[float, ...] | None:
                if value is None:
                    return None
                try:
                    return tuple(float(v) for v in value)
                except (TypeError, ValueError):
                    return None

            slices.append(
                _DicomSlice(
                    path=path,
                    series_uid=str(ds.get("SeriesInstanceUID", "")),
                    sop_class_uid=str(ds.get("SOPClassUID", "")),
                    modality=str(ds.get("Modality", "")).upper(),
                    image_type=tuple(str(v).upper() for v in (ds.get("ImageType") or [])),
                    orientation=floats(ds.get("ImageOrientationPatient")),
                    position=floats(ds.get("ImagePositionPatient")),
                    rows=int(ds.Rows) if "Rows" in ds else None,
                    columns=int(ds.Columns) if "Columns" in ds else None,
                    pixel_spacing=floats(ds.get("PixelSpacing")),
                    has_rescale="RescaleSlope" in ds and "RescaleIntercept" in ds,
                    frames=int(ds.get("NumberOfFrames", 1) or 1),
                    study_date=str(ds.get("StudyDate", "")) or None,
                    study_uid=str(ds.get("StudyInstanceUID", "")) or None,
                    frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or None,
                )
            )
    return slices, skipped


def _is_localizer(s: _DicomSlice) -> bool:
    return "LOCALIZER" in s.image_type or "SCOUT" in s.image_type


def _check_series_geometry(folder: Path, series: list[_DicomSlice]) -> list[_DicomSlice]:
    """Sort slices along their normal and refuse what cannot be stacked into a volume."""
    uid = series[0].series_uid
    for s in series:
        if (
            s.orientation is None
            or len(s.orientation) != 6
            or s.position is None
            or len(s.position) != 3
        ):
            raise InputError(s.path, "slice has no ImageOrientationPatient / ImagePositionPatient")
        if s.pixel_spacing is None or len(s.pixel_spacing) != 2:
            raise InputError(s.path, "slice has no PixelSpacing")
    orientation = np.asarray(series[0].orientation)
    for s in series[1:]:
        if not np.allclose(s.orientation, orientation, atol=1e-3):
            raise InputError(
                folder, f"series {uid} mixes slice orientations (localizer or reformats mixed in)"
            )
        if (s.rows, s.columns) != (series[0].rows, series[0].columns):
            raise InputError(folder, f"series {uid} mixes image sizes")
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    if len(series) < MIN_SLICES:
        raise InputError(
            folder,
            f"series {uid} has {len(series)} slice(s)",
            f"a volume of at least {MIN_SLICES} slices",
        )
    positions = np.asarray([s.position for s in series])
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    series = [series[i] for i in order]
    along = along[order]
    positions = positions[order]
    gaps = np.diff(along)
    if np.any(gaps < 1e-3):
        k = int(np.argmin(gaps))
        raise InputError(
            folder,
            f"series {uid} has duplicated slice positions "
            f"({along[k]:.2f} mm along the slice normal, "
            f"files {series[k].path.name} and {series[k + 1].path.name})",
            "one slice per position",
        )
    regular = float(np.median(gaps))
    deviation = np.abs(gaps - regular)
    tolerance = max(0.01 * regular, 0.02)
    if np.any(deviation > tolerance):
        k = int(np.argmax(deviation))
        ratio = gaps[k] / regular
        if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
            missing = round(ratio) - 1
            raise InputError(
                folder,
                f"series {uid} is missing {missing} slice(s) "
                f"between {along[k]:.2f} and {along[k + 1]:.2f} mm "
                f"(gap {gaps[k]:.2f} mm, regular spacing {regular:.2f} mm)",
                "a complete series with evenly spaced slices",
            )
        raise InputError(
            folder,
            f"series {uid} has uneven slice spacing (gaps {gaps.min():.3f} to {gaps.max():.3f} mm)",
            "evenly spaced slices",
        )
    # slices must be stacked along their normal: a lateral drift means gantry tilt (shear)
    drift = positions[-1] - positions[0]
    length = float(np.linalg.norm(drift))
    if length > 0:
        cosine = abs(float(drift @ normal)) / length
        angle = math.degrees(math.acos(min(1.0, cosine)))
        if angle > 0.5:
            raise InputError(
                folder,
                f"series {uid} is gantry-tilted or sheared: "
                f"slices are stacked {angle:.1f} degrees off their "
                "normal",
                "an untilted series (resample it with gantry-tilt correction first)",
            )
    return series


def _undecodable_slice(series: list[_DicomSlice]) -> Path | None:
    """The first file of ``series`` whose pixel data cannot be decoded (error path only)."""
    reader = sitk.ImageFileReader()
    for s in series:
        reader.SetFileName(str(s.path))
        try:
            reader.Execute()
        except RuntimeError:
            return s.path
    return None


def read_dicom_series(folder: str | os.PathLike[str], series_uid: str | None = None) -> CTScan:
    """Read a CT series from a DICOM folder.

    Localizers, secondary captures and non-image objects are ignored. When the
    folder holds several CT series, the one with the most slices is taken
    (and a note says so) unless ``series_uid`` chooses one.
    """
    folder = Path(folder)
    slices, _skipped = _scan_dicom_folder(folder)
    if not slices:
        raise InputError(folder, "folder holds no DICOM files", "a folder with one CT series")
    notes: list[str] = []
    images = [
        s
        for s in slices
        if s.rows is not None
        and not s.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX)
        and not _is_localizer(s)
    ]
    ignored = len(slices) - len(images)
    if ignored:
        notes.append(
            f"ignored {ignored} DICOM object(s) that are not axial images "
            "(localizers, secondary captures, SEG, SR)"
        )
    by_series: dict[str, list[_DicomSlice]] = {}
    for s in images:
        by_series.setdefault(s.series_uid, []).append(s)
    if series_uid is not None:
        if series_uid not in by_series:
            raise InputError(
                folder,
                f"no image series with UID {series_uid}",
                "one of: " + ", ".join(sorted(by_series)) or "none",
            )
        chosen = by_series[series_uid]
    else:
        ct_series = {uid: ss for uid, ss in by_series.items() if ss[0].modality == "CT"}
        if not ct_series:
            modalities = sorted({ss[0].modality or "unknown" for ss in by_series.values()})
            if modalities:
                raise InputError(
                    folder,
                    f"no CT series (modality {', '.join(modalities)})",
                    "CT in Hounsfield units",
                )
            raise InputError(folder, "no CT image series", "a folder with one CT series")
        ranked = sorted(ct_series.items(), key=lambda item: (-len(item[1]), item[0]))
        uid, chosen = ranked[0]
        tied = [u for u, ss in ranked if len(ss) == len(chosen)]
        if len(tied) > 1:
            # two CT series of the same length (two phases, or a reconstruction of the
            # same scan): taking either silently could measure the wrong phase
            raise InputError(
                folder,
                f"folder holds {len(tied)} CT series of {len(chosen)} slices each "
                f"({', '.join(tied)})",
                "--series UID to choose one",
            )
        if len(ranked) > 1:
            notes.append(
                f"folder holds {len(ranked)} CT series; took {uid} with {len(chosen)} slices "
                "(choose another with --series UID)"
            )
    first = chosen[0]
    if first.modality != "CT":
        raise InputError(
            folder,
            f"series is {first.modality or 'of unknown modality'}, not CT",
            "CT in Hounsfield units",
        )
    if any(s.sop_class_uid == ENHANCED_CT_IMAGE_STORAGE or s.frames > 1 for s in chosen):
        raise InputError(
            folder, "multi-frame (enhanced) CT is not supported", "a classic single-frame CT series"
        )
    missing_rescale = [s for s in chosen if not s.has_rescale]
    if missing_rescale:
        raise InputError(
            missing_rescale[0].path,
            "CT slice has no RescaleSlope / RescaleIntercept, "
            "so its values are not Hounsfield units",
            "CT slices with the HU rescale",
        )
    chosen = _check_series_geometry(folder, chosen)
    rows, columns = first.rows or 0, first.columns or 0
    _check_size((columns, rows, len(chosen)), folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(s.path) for s in chosen])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise InputError(
            _undecodable_slice(chosen) or folder,
            "cannot decode the pixel data of this series (corrupt, truncated or unsupported)",
            "complete, uncompressed or standard-compressed CT slices",
        ) from None
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    image = _as_float_ct(image, folder)
    dates = {s.study_date for s in chosen if s.study_date}
    study_date = iso_date(sorted(dates)[0], folder) if dates else None
    info = DicomSeriesInfo(
        series_instance_uid=first.series_uid,
        study_instance_uid=first.study_uid,
        frame_of_reference_uid=first.frame_of_reference_uid,
        files=tuple(s.path for s in chosen),
        modality=first.modality,
    )
    return CTScan(image=image, source=folder, study_date=study_date, dicom=info, notes=notes)


# ------------------------------------------------------------------ public API


def read_ct(path: str | os.PathLike[str], series_uid: str | None = None) -> CTScan:
    """Read a CT volume in HU from a NIfTI / NRRD / MetaImage file or a DICOM folder.

    Parameters
    ----------
    path
        Image file or folder of a DICOM series.
    series_uid
        For DICOM folders with several series: the SeriesInstanceUID to read.

    Returns
    -------
    CTScan
        The image (float32, HU) with its geometry, study date and notes.

    Raises
    ------
    InputError
        For missing, unreadable, truncated, corrupt, non-3-D, implausibly
        spaced, non-finite or non-HU images and for unusable DICOM series.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "CT not found", "an image file or a DICOM folder")
    if path.is_dir():
        scan = read_dicom_series(path, series_uid)
    else:
        if series_uid is not None:
            raise InputError(
                "--series", "only applies to DICOM folders", f"no --series with the file {path}"
            )
        image = read_image_file(path, what="CT image")
        scan = CTScan(image=_as_float_ct(image, path), source=path)
    for note in scan.notes:
        log.warning("%s: %s", path, note)
    return scan


def onto_grid_of(
    image: sitk.Image, reference: sitk.Image, source: Path | str, problem: str, expected: str
) -> sitk.Image:
    """``image`` on exactly the grid of ``reference``, without interpolation.

    The same grid within :data:`GRID_TOLERANCE_VOXELS` takes the reference's
    geometry; the same voxels stored with permuted or flipped axes are
    reoriented exactly; any other grid raises :class:`InputError` with
    ``problem`` (the two grids are appended) and ``expected``.
    """
    if same_grid(reference, image):
        image = sitk.Image(image)
        image.CopyInformation(reference)
        return image
    if same_lattice(reference, image):
        return sitk.Resample(
            image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID()
        )
    raise InputError(
        source,
        f"{problem} ({grid_description(image)} vs {grid_description(reference)})",
        expected,
    )


def read_label_map(
    path: str | os.PathLike[str],
    reference: sitk.Image,
    *,
    require_liver: bool = True,
    what: str = "segmentation",
) -> sitk.Image:
    """Read a label map (0 background, 1 liver, 2 tumour) on the grid of ``reference``.

    A label map stored on the same voxels with permuted or flipped axes (the
    same grid saved RAS instead of LPS, say) is brought onto ``reference``
    exactly; any other grid is refused.

    Returns
    -------
    sitk.Image
        UInt8 label map with exactly the geometry of ``reference``.
    """
    path = Path(path)
    image = read_image_file(path, what=what)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"{what} has several components per voxel", "a scalar label map")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputError(path, f"{what} is {image.GetDimension()}-D", "a 3-D label map")
    image = onto_grid_of(
        image,
        reference,
        path,
        f"{what} is on a different grid than its image",
        "a label map on exactly the image's voxel grid",
    )
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating) and (
        not np.all(np.isfinite(array)) or not np.all(array == np.round(array))
    ):
        raise InputError(path, f"{what} holds non-integer values", "labels 0, 1, 2")
    if np.issubdtype(array.dtype, np.integer) and array.size and int(array.min()) >= 0:
        counts = np.bincount(array.ravel().astype(np.intp, copy=False))  # much faster than unique
        values = np.flatnonzero(counts)
    else:
        values = np.unique(array)
    unexpected = [v for v in values.tolist() if v not in LABEL_VALUES]
    if unexpected:
        shown = ", ".join(f"{v:g}" for v in unexpected[:5]) + (
            " ..." if len(unexpected) > 5 else ""
        )
        raise InputError(
            path,
            f"{what} holds label values other than 0/1/2 ({shown})",
            "0 background, 1 liver, 2 tumour",
        )
    if require_liver and not np.any(values > 0):
        raise InputError(
            path,
            f"{what} contains no liver (no voxel labelled 1 or 2)",
            "a label map with the liver (1) and any tumour (2)",
        )
    labels = sitk.Cast(image, sitk.sitkUInt8)
    labels.CopyInformation(reference)
    return labels


# -------------------------------------------------------------- atomic output


def write_image(image: sitk.Image, path: str | os.PathLike[str], *, compress: bool = True) -> Path:
    """Write an image atomically, without any header text from its source."""
    path = Path(path)
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    with atomic_path(path) as temporary:
        sitk.WriteImage(image, str(temporary), useCompression=compress)
    return path


def refuse_overwriting_inputs(
    outputs: Iterable[str | os.PathLike[str]], inputs: Iterable[str | os.PathLike[str] | None]
) -> None:
    """Raise :class:`InputError` when an output would replace or sit inside an input."""
    resolved_inputs = [Path(p).resolve() for p in inputs if p is not None]
    for output in outputs:
        target = Path(output).resolve()
        for source in resolved_inputs:
            if target == source or (source.is_dir() and source in target.parents):
                raise InputError(
                    output,
                    f"would overwrite the input {source}",
                    "an output path apart from the inputs",
                )
            if target.is_dir() and target in source.parents:
                raise InputError(
                    output,
                    f"output folder holds the input {source}",
                    "an output folder apart from the inputs",
                )
