"""CT and label-map input: geometry kept, every bad input refused with a clear error."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.io import (
    axial_axis,
    iso_date,
    output_directory,
    read_ct,
    read_label_map,
    refuse_overwriting_inputs,
    same_lattice,
    write_image,
    write_json,
)
from tests._dicom_fixtures import abdomen_like_volume, write_ct_series
from tests.conftest import shared_data

SPACING = (2.0, 2.0, 3.0)


def make_ct(
    array_zyx: np.ndarray | None = None, spacing=SPACING, direction=None, origin=(10.0, -20.0, 5.0)
):
    array = abdomen_like_volume((40, 64, 64)) if array_zyx is None else array_zyx
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


def write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path), useCompression=path.name.endswith(".gz"))
    return path


# --------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize(
    "direction",
    [None, (-1, 0, 0, 0, -1, 0, 0, 0, 1), (1, 0, 0, 0, 0, 1, 0, -1, 0)],
    ids=["identity", "flipped-xy", "coronal"],
)
def test_file_formats_keep_geometry(tmp_path: Path, suffix: str, direction) -> None:
    image = make_ct(direction=direction)
    scan = read_ct(write(image, tmp_path / f"ct{suffix}"))
    assert scan.image.GetSize() == image.GetSize()
    np.testing.assert_allclose(scan.image.GetSpacing(), image.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(scan.image.GetOrigin(), image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(scan.image.GetDirection(), image.GetDirection(), atol=1e-6)
    assert scan.image.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(scan.image), sitk.GetArrayViewFromImage(image), atol=0.5
    )


def test_axial_axis_follows_direction() -> None:
    assert axial_axis(make_ct()) == 2
    assert axial_axis(make_ct(direction=(1, 0, 0, 0, 0, 1, 0, -1, 0))) == 1


def test_missing_and_empty_and_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_ct(tmp_path / "absent.nii.gz")
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        read_ct(tmp_path / "empty.nii.gz")
    (tmp_path / "text.nii").write_text("hello, this is not an image" * 30)
    with pytest.raises(InputError):
        read_ct(tmp_path / "text.nii")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="unsupported"):
        read_ct(tmp_path / "notes.txt")


@pytest.mark.parametrize("keep_fraction", [0.5, 0.9, 0.99])
def test_truncated_gzip_is_detected(tmp_path: Path, keep_fraction: float) -> None:
    path = write(make_ct(), tmp_path / "ct.nii.gz")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(data[: int(len(data) * keep_fraction)])
    with pytest.raises(InputError, match="truncated|corrupt"):
        read_ct(truncated)


def test_truncated_uncompressed_nifti_and_mha(tmp_path: Path) -> None:
    for suffix in (".nii", ".mha"):
        path = write(make_ct(), tmp_path / f"ct{suffix}")
        data = path.read_bytes()
        short = tmp_path / f"short{suffix}"
        short.write_bytes(data[: len(data) - 4000])
        with pytest.raises(InputError, match="truncated"):
            read_ct(short)


def test_corrupt_gzip_payload(tmp_path: Path) -> None:
    raw = write(make_ct(), tmp_path / "ct.nii").read_bytes()
    compressed = bytearray(gzip.compress(raw))
    compressed[len(compressed) // 2] ^= 0xFF
    bad = tmp_path / "corrupt.nii.gz"
    bad.write_bytes(bytes(compressed))
    with pytest.raises(InputError, match="corrupt|truncated"):
        read_ct(bad)


def _patch_nifti_pixdim(path: Path, values: tuple[float, float, float]) -> None:
    data = bytearray(path.read_bytes())
    data[80:92] = struct.pack("<3f", *values)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("spacing", "message"),
    [
        ((0.0, 2.0, 3.0), "spacing"),
        ((2.0, 2.0, -3.0), "spacing"),
        ((2.0, 2.0, 0.01), "implausible"),
        ((2.0, 25.0, 3.0), "implausible"),
        ((float("nan"), 2.0, 3.0), "spacing"),
    ],
)
def test_bad_spacing(tmp_path: Path, spacing, message: str) -> None:
    path = write(make_ct(), tmp_path / "ct.nii")
    _patch_nifti_pixdim(path, spacing)
    with pytest.raises(InputError, match=message):
        read_ct(path)


@pytest.mark.parametrize(
    ("text", "message"), [(b"2 2 -3", "-3"), (b"2 2 0", "is 0"), (b"2 nan 3", "nan")]
)
def test_bad_spacing_in_metaimage_header(tmp_path: Path, text: bytes, message: str) -> None:
    path = write(make_ct(), tmp_path / "ct.mha")
    data = path.read_bytes().replace(b"ElementSpacing = 2 2 3", b"ElementSpacing = " + text)
    path.write_bytes(data)
    with pytest.raises(InputError, match=message):
        read_ct(path)


def test_not_3d(tmp_path: Path) -> None:
    two_d = sitk.GetImageFromArray(abdomen_like_volume((1, 64, 64))[0])
    with pytest.raises(InputError, match="2-D"):
        read_ct(write(two_d, tmp_path / "slice.nii.gz"))
    four_d = sitk.JoinSeries([make_ct(), make_ct()])
    with pytest.raises(InputError, match="4-D"):
        read_ct(write(four_d, tmp_path / "series.nii.gz"))


@pytest.mark.parametrize(
    ("value", "message"), [(np.nan, "NaN"), (np.inf, "infinite"), (1e6, "plausible")]
)
def test_bad_voxel_values(tmp_path: Path, value: float, message: str) -> None:
    array = abdomen_like_volume((40, 64, 64))
    array[20, 30, 30] = value
    with pytest.raises(InputError, match=message):
        read_ct(write(make_ct(array), tmp_path / "ct.nii.gz"))


def test_unscaled_values_are_refused(tmp_path: Path) -> None:
    raw = abdomen_like_volume((40, 64, 64)) + 1024  # stored values without the rescale
    with pytest.raises(InputError, match="not Hounsfield"):
        read_ct(write(make_ct(raw), tmp_path / "ct.nii.gz"))


def test_too_small_to_hold_a_liver(tmp_path: Path) -> None:
    small = make_ct(abdomen_like_volume((12, 20, 20)), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="too small"):
        read_ct(write(small, tmp_path / "ct.nii.gz"))


def test_huge_volume_is_refused_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(make_ct(), tmp_path / "ct.nii.gz")
    monkeypatch.setenv("LIVERBURDEN_MAX_VOXELS", "1000")
    with pytest.raises(InputError, match="larger than the limit"):
        read_ct(path)


# ---------------------------------------------------------------- label maps


def test_label_map_same_grid_and_permuted_storage(tmp_path: Path) -> None:
    ct = make_ct()
    labels = np.zeros((40, 64, 64), np.uint8)
    labels[3:9, 20:40, 15:45] = 1
    labels[5:7, 25:30, 20:26] = 2
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(ct)
    read = read_label_map(write(label_image, tmp_path / "seg.nii.gz"), ct)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(read), labels)
    # the same voxels stored with x flipped and y/z permuted
    flipped = sitk.Flip(label_image, [True, False, False])
    permuted = sitk.PermuteAxes(flipped, [0, 2, 1])
    assert same_lattice(ct, permuted)
    read = read_label_map(write(permuted, tmp_path / "seg-permuted.nii.gz"), ct)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(read), labels)
    assert read.GetDirection() == ct.GetDirection()


def test_label_map_errors(tmp_path: Path) -> None:
    ct = make_ct()
    labels = np.zeros((40, 64, 64), np.uint8)
    other = sitk.GetImageFromArray(labels[:, :32])
    with pytest.raises(InputError, match="different grid"):
        read_label_map(write(other, tmp_path / "other.nii.gz"), ct)
    shifted = sitk.GetImageFromArray(labels)
    shifted.CopyInformation(ct)
    shifted.SetOrigin((11.0, -20.0, 5.0))  # half a voxel off
    with pytest.raises(InputError, match="different grid"):
        read_label_map(write(shifted, tmp_path / "shifted.nii.gz"), ct)
    empty = sitk.GetImageFromArray(labels)
    empty.CopyInformation(ct)
    with pytest.raises(InputError, match="no liver"):
        read_label_map(write(empty, tmp_path / "empty.nii.gz"), ct)
    labels[2, 2, 2] = 7
    seven = sitk.GetImageFromArray(labels)
    seven.CopyInformation(ct)
    with pytest.raises(InputError, match="other than 0/1/2"):
        read_label_map(write(seven, tmp_path / "seven.nii.gz"), ct)


# ---------------------------------------------------------------------- DICOM


def test_dicom_series_geometry_and_date(tmp_path: Path) -> None:
    volume = abdomen_like_volume((10, 64, 64))
    write_ct_series(tmp_path / "series", volume, spacing_xyz=(2.0, 2.0, 2.5))
    scan = read_ct(tmp_path / "series")
    assert scan.image.GetSize() == (64, 64, 10)
    np.testing.assert_allclose(scan.image.GetSpacing(), (2.0, 2.0, 2.5), atol=1e-4)
    np.testing.assert_allclose(scan.image.GetOrigin(), (-150.0, -150.0, -300.0), atol=1e-3)
    np.testing.assert_allclose(
        sitk.GetArrayViewFromImage(scan.image), np.round(volume + 1024) - 1024, atol=0.01
    )
    assert scan.study_date == "2024-01-15"
    assert scan.dicom is not None and len(scan.dicom.files) == 10


def test_dicom_feet_first_order_and_flipped_rows(tmp_path: Path) -> None:
    volume = abdomen_like_volume((8, 64, 64))
    write_ct_series(tmp_path / "s", volume, row_direction=(-1, 0, 0), column_direction=(0, 1, 0))
    scan = read_ct(tmp_path / "s")
    direction = np.asarray(scan.image.GetDirection()).reshape(3, 3)
    np.testing.assert_allclose(direction[:, 0], (-1, 0, 0), atol=1e-6)
    # physical position of voxel (0, 0, k) follows the series' own positions
    point = scan.image.TransformIndexToPhysicalPoint((0, 0, 3))
    np.testing.assert_allclose(point, (-150.0, -150.0, -300.0 - 3 * 2.5), atol=1e-3)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"drop_slices": [4]}, "missing 1 slice"),
        ({"duplicate_slice": 3}, "duplicated slice"),
        ({"slice_offsets_mm": [0, 0, 0, 0.7, 0, 0, 0, 0, 0, 0]}, "uneven slice spacing"),
        ({"tilt_shift_mm_per_slice": 0.6}, "gantry-tilted"),
        ({"modality": "MR"}, "MR"),
        ({"rescale": False}, "RescaleSlope"),
    ],
)
def test_bad_dicom_series(tmp_path: Path, options: dict, message: str) -> None:
    write_ct_series(tmp_path / "s", abdomen_like_volume((10, 64, 64)), **options)
    with pytest.raises(InputError, match=message):
        read_ct(tmp_path / "s")


def test_dicom_folder_problems(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no DICOM"):
        read_ct(tmp_path / "empty")
    files = write_ct_series(tmp_path / "corrupt", abdomen_like_volume((6, 64, 64)))
    files[2].write_bytes(files[2].read_bytes()[:200])
    with pytest.raises(InputError, match="corrupt"):
        read_ct(tmp_path / "corrupt")


def test_two_series_take_the_largest_or_the_chosen(tmp_path: Path) -> None:
    folder = tmp_path / "two"
    write_ct_series(
        folder, abdomen_like_volume((10, 64, 64)), series_uid="1.2.3.10", name_prefix="a"
    )
    write_ct_series(folder, abdomen_like_volume((6, 64, 64)), series_uid="1.2.3.6", name_prefix="b")
    scan = read_ct(folder)
    assert scan.image.GetSize()[2] == 10
    assert any("2 CT series" in note for note in scan.notes)
    assert read_ct(folder, series_uid="1.2.3.6").image.GetSize()[2] == 6
    with pytest.raises(InputError, match="no image series"):
        read_ct(folder, series_uid="9.9.9")


# --------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_nifti_ircad() -> None:
    scan = read_ct(shared_data("ircad-1.17/ct.nii.gz"))
    assert scan.image.GetSize() == (512, 512, 119)
    np.testing.assert_allclose(scan.image.GetSpacing(), (0.743, 0.743, 1.6), atol=1e-3)
    labels = read_label_map(shared_data("ircad-1.17/labels.nii.gz"), scan.image)
    assert set(np.unique(sitk.GetArrayViewFromImage(labels))) == {0, 1, 2}


@pytest.mark.realdata
def test_real_dicom_series() -> None:
    scan = read_ct(shared_data("hcc048-portal-venous/dicom"))
    assert scan.image.GetSize() == (512, 512, 89)
    np.testing.assert_allclose(scan.image.GetSpacing(), (0.703125, 0.703125, 2.5), atol=1e-4)
    assert scan.study_date == "2001-08-12"
    totalseg = read_ct(shared_data("totalseg-example/ct_dicom"))
    assert totalseg.image.GetSize() == (512, 512, 20)
    # the liver mask of this series is stored with y flipped: read onto the series' grid exactly
    liver = read_label_map(shared_data("totalseg-example/ct_dicom_liver.nii.gz"), totalseg.image)
    assert liver.GetOrigin() == totalseg.image.GetOrigin()
    assert int(sitk.GetArrayViewFromImage(liver).sum()) > 100_000


@pytest.mark.realdata
def test_real_direction_matrix_totalseg() -> None:
    scan = read_ct(shared_data("totalseg-example/ct.nii.gz"))
    np.testing.assert_allclose(scan.image.GetDirection(), (-1, 0, 0, 0, -1, 0, 0, 0, 1), atol=1e-6)


# --------------------------------------------------------------- writing


def test_atomic_writes_and_output_directory(tmp_path: Path) -> None:
    image = make_ct()
    out = write_image(image, tmp_path / "out" / "seg.nii.gz")
    assert out.exists() and not [p for p in out.parent.iterdir() if p.name.startswith(".")]
    write_json({"value": np.float32(1.5), "missing": float("nan")}, tmp_path / "a.json")
    assert (tmp_path / "a.json").read_text(encoding="utf-8").count("null") == 1
    target = tmp_path / "folder"
    with pytest.raises(RuntimeError), output_directory(target) as work:
        (work / "part.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert not list(tmp_path.glob(".folder.*"))
    with output_directory(target) as work:
        (work / "done.txt").write_text("complete")
    with output_directory(target) as work:
        (work / "again.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["again.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == 0o777 & ~umask
    assert (out.stat().st_mode & 0o777) == 0o666 & ~umask


def test_refuse_overwriting_inputs(tmp_path: Path) -> None:
    source = tmp_path / "ct.nii.gz"
    source.write_bytes(b"x")
    with pytest.raises(InputError, match="overwrite"):
        refuse_overwriting_inputs([source], [source])
    with pytest.raises(InputError, match="holds the input"):
        refuse_overwriting_inputs([tmp_path], [source])
    refuse_overwriting_inputs([tmp_path / "seg.nii.gz"], [source])


@pytest.mark.parametrize(
    ("text", "expected"), [("20240115", "2024-01-15"), ("2024-01-15", "2024-01-15"), ("", None)]
)
def test_iso_date(text: str, expected: str | None) -> None:
    assert iso_date(text) == expected


@pytest.mark.parametrize("text", ["2024-02-30", "15.01.2024", "yesterday"])
def test_iso_date_refuses(text: str) -> None:
    with pytest.raises(InputError, match="not a valid date"):
        iso_date(text)


def test_no_identifiers_in_written_nifti(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "s", abdomen_like_volume((6, 64, 64)))
    scan = read_ct(tmp_path / "s")
    out = write_image(scan.image, tmp_path / "ct.nii.gz")
    raw = gzip.decompress(out.read_bytes())
    for value in ("Testpatient", "PID-7731", "19520314", "ACC-99812", "Fakeville", "Imaginary"):
        assert value.encode() not in raw
    assert os.path.getsize(out) > 0
