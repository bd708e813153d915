"""``liverburden measure`` end to end: files written, determinism, bad input, real CT."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from tests._dicom_fixtures import FAKE_IDENTIFIERS, write_ct_series
from tests._measure_fixtures import ellipsoid, labels_image, liver_with_lesions, physical_points
from tests.conftest import assert_clean_error, run_cli, shared_data

TOP_LEVEL_KEYS = (
    "schema_version",
    "liverburden_version",
    "subject",
    "timepoint",
    "study_date",
    "liver_volume_ml",
    "liver_parenchyma_volume_ml",
    "tumor_volume_ml",
    "involvement_percent",
    "involvement_band",
    "lesion_count",
    "noise_component_count",
    "noise_volume_ml",
    "spacing_mm",
    "slice_thickness_mm",
    "image_size",
    "axial_axis",
    "liver_centroid_mm",
    "liver_mean_hu",
    "arterial",
    "flags",
    "settings",
    "lesions",
)
LESION_KEYS = (
    "id",
    "volume_ml",
    "longest_axial_diameter_mm",
    "short_axis_diameter_mm",
    "axial_slice_index",
    "centroid_mm",
    "mean_hu",
    "portal_mean_hu",
    "measurable",
    "longest_axial_diameter_endpoints_mm",
    "short_axis_endpoints_mm",
    "bounding_box_index",
    "viable_volume_ml",
    "viable_longest_axial_diameter_mm",
    "viable_short_axis_diameter_mm",
    "viable_fraction",
    "arterial_mean_hu",
    "lipiodol_volume_ml",
)


@pytest.fixture
def case(tmp_path: Path) -> tuple[Path, Path]:
    scan = liver_with_lesions(
        lesions=[((-20, 0, 0), (12, 9, 10)), ((22, 5, 0), (8, 6, 7)), ((0, -25, 5), (3, 3, 4))]
    )
    return scan.write(tmp_path / "inputs")


def _load(folder: Path) -> dict:
    return json.loads((folder / "measurements.json").read_text(encoding="utf-8"))


def test_measure_writes_every_output(case: tuple[Path, Path], tmp_path: Path) -> None:
    ct, labels = case
    out = tmp_path / "measure"
    result = run_cli(
        "measure",
        ct,
        labels,
        "-o",
        out,
        "--date",
        "20240301",
        "--timepoint",
        "baseline",
        "--subject",
        "P01",
    )
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "lesions.csv",
        "lesions.nii.gz",
        "liver.nii.gz",
        "measurements.json",
    ]
    data = _load(out)
    for key in TOP_LEVEL_KEYS:
        assert key in data, key
    from pipeline import SCHEMA_VERSION, __version__

    assert data["schema_version"] == SCHEMA_VERSION and data["liverburden_version"] == __version__
    assert (data["subject"], data["timepoint"], data["study_date"]) == (
        "P01",
        "baseline",
        "2024-03-01",
    )
    assert data["lesion_count"] == 3 and data["arterial"] is None
    assert data["spacing_mm"] == [1.0, 1.0, 2.5] and data["image_size"] == [128, 128, 40]
    assert data["axial_axis"] == 2 and data["slice_thickness_mm"] == 2.5
    assert data["settings"]["min_lesion_volume_ml"] == 0.05
    for lesion in data["lesions"]:
        for key in LESION_KEYS:
            assert key in lesion, key
        assert lesion["viable_volume_ml"] is None
    # the maps: lesion ids as in the JSON, liver including tumour
    lesion_map = sitk.ReadImage(str(out / "lesions.nii.gz"))
    liver = sitk.ReadImage(str(out / "liver.nii.gz"))
    source = sitk.ReadImage(str(labels))
    assert lesion_map.GetPixelID() == sitk.sitkUInt16 and liver.GetPixelID() == sitk.sitkUInt8
    for image in (lesion_map, liver):
        assert image.GetSize() == source.GetSize()
        assert np.allclose(image.GetOrigin(), source.GetOrigin())
        assert np.allclose(image.GetDirection(), source.GetDirection())
    lesion_array = sitk.GetArrayFromImage(lesion_map)
    label_array = sitk.GetArrayFromImage(source)
    assert np.array_equal(sitk.GetArrayFromImage(liver), (label_array > 0).astype(np.uint8))
    assert set(np.unique(lesion_array)) == {0, 1, 2, 3}
    voxel_ml = 1 * 1 * 2.5 / 1000
    for lesion in data["lesions"]:
        assert np.count_nonzero(lesion_array == lesion["id"]) * voxel_ml == pytest.approx(
            lesion["volume_ml"]
        )
    # the table: one row per lesion, flattened fields
    with open(out / "lesions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["id"]) for r in rows] == [1, 2, 3]
    first = data["lesions"][0]
    assert float(rows[0]["longest_axial_diameter_mm"]) == first["longest_axial_diameter_mm"]
    assert float(rows[0]["centroid_y_mm"]) == first["centroid_mm"][1]
    assert float(rows[0]["short_axis_2_z_mm"]) == first["short_axis_endpoints_mm"][1][2]
    assert int(rows[0]["bounding_box_x1"]) == first["bounding_box_index"][1][0]
    assert rows[0]["measurable"] == "true" and rows[0]["viable_volume_ml"] == ""
    assert "liverburden measure: INFO: liver" in result.stderr


def test_reruns_are_byte_identical(case: tuple[Path, Path], tmp_path: Path) -> None:
    ct, labels = case
    first, second = tmp_path / "first", tmp_path / "second"
    assert run_cli("measure", ct, labels, "-o", first, "--date", "2024-03-01").exit_code == 0
    assert run_cli("measure", ct, labels, "-o", second, "--date", "2024-03-01").exit_code == 0
    names = sorted(p.name for p in first.iterdir())
    assert names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # rerunning into an existing folder replaces it
    assert run_cli("measure", ct, labels, "-o", first, "--date", "2024-03-02").exit_code == 0
    assert _load(first)["study_date"] == "2024-03-02"


def test_settings_file_and_flags(case: tuple[Path, Path], tmp_path: Path) -> None:
    ct, labels = case
    whole_config = tmp_path / "config.yaml"
    whole_config.write_text(
        "segment: {}\nmeasure:\n  min_lesion_volume_ml: 0.2\n"
        "  involvement_band_thresholds_percent: [2, 60]\n"
    )
    out = tmp_path / "out"
    assert run_cli("measure", ct, labels, "-o", out, "--settings", whole_config).exit_code == 0
    data = _load(out)
    # the 3 mm lesion (0.15 mL) is noise at 0.2 mL
    assert data["lesion_count"] == 2 and data["noise_component_count"] == 1
    assert data["settings"]["involvement_band_thresholds_percent"] == [2.0, 60.0]
    assert data["involvement_band"] in ("<2", "2-60")
    # the flag overrides the file
    result = run_cli(
        "measure",
        ct,
        labels,
        "-o",
        out,
        "--settings",
        whole_config,
        "--min-lesion-volume-ml",
        "0.01",
    )
    assert result.exit_code == 0
    assert _load(out)["lesion_count"] == 3
    section = tmp_path / "measure.yaml"
    section.write_text("split_touching_lesions: true\n")
    assert run_cli("measure", ct, labels, "-o", out, "--settings", section).exit_code == 0
    assert _load(out)["settings"]["split_touching_lesions"] is True
    assert run_cli("measure", ct, labels, "-o", out, "--split-touching").exit_code == 0
    assert _load(out)["settings"]["split_touching_lesions"] is True


def test_arterial_phase_on_the_command_line(tmp_path: Path) -> None:
    scan = liver_with_lesions(lesions=[((0, 0, 0), (12, 12, 10))])
    ct, labels = scan.write(tmp_path)
    label_array = sitk.GetArrayFromImage(scan.labels)
    arterial = sitk.GetArrayFromImage(scan.ct)
    arterial[label_array == 1] = 80.0
    arterial[label_array == 2] = 140.0
    core = ellipsoid(scan.ct, physical_points(scan.ct)[20, 64, 64], (5, 5, 5))
    arterial[core] = 10.0
    arterial_image = sitk.GetImageFromArray(arterial)
    arterial_image.CopyInformation(scan.ct)
    arterial_path = tmp_path / "arterial.nii.gz"
    sitk.WriteImage(arterial_image, str(arterial_path))
    out = tmp_path / "out"
    result = run_cli("measure", ct, labels, "-o", out, "--arterial", arterial_path)
    assert result.exit_code == 0, result.stderr
    data = _load(out)
    lesion = data["lesions"][0]
    assert 0.8 < lesion["viable_fraction"] < 1.0
    assert lesion["viable_longest_axial_diameter_mm"] == pytest.approx(
        lesion["longest_axial_diameter_mm"]
    )
    assert data["arterial"]["liver_parenchyma_mean_hu"] == pytest.approx(80.0)
    assert (out / "viable.nii.gz").is_file()
    with open(out / "lesions.csv", newline="") as handle:
        row = next(csv.DictReader(handle))
    assert float(row["viable_fraction"]) == lesion["viable_fraction"]


def test_dicom_input_takes_the_study_date_and_keeps_no_identifiers(tmp_path: Path) -> None:
    from pipeline.io import read_ct

    volume = np.full((12, 64, 64), -100.0, dtype=np.float32)
    volume[:, :, :3] = -1000.0
    folder = tmp_path / "dicom"
    write_ct_series(folder, volume, study_date="20230917")
    reference = read_ct(folder).image
    centre = physical_points(reference)[6, 32, 32]
    labels = np.zeros(volume.shape, np.uint8)
    labels[ellipsoid(reference, centre, (40, 40, 12))] = 1
    labels[ellipsoid(reference, centre, (10, 10, 6))] = 2
    label_path = tmp_path / "labels.nii.gz"
    sitk.WriteImage(labels_image(labels, reference), str(label_path))
    out = tmp_path / "out"
    result = run_cli("measure", folder, label_path, "-o", out, "--subject", "S7")
    assert result.exit_code == 0, result.stderr
    data = _load(out)
    assert data["study_date"] == "2023-09-17"
    assert data["series_instance_uid"]
    assert data["lesion_count"] == 1
    written = "".join(
        p.read_text(encoding="utf-8") for p in (out / "measurements.json", out / "lesions.csv")
    )
    written += result.stderr + result.stdout
    for value in FAKE_IDENTIFIERS.values():
        assert value not in written
    assert run_cli("measure", folder, label_path, "-o", out, "--date", "2023-01-02").exit_code == 0
    assert _load(out)["study_date"] == "2023-01-02"


# ---------------------------------------------------------------- bad input


def _write(image: sitk.Image, path: Path) -> Path:
    sitk.WriteImage(image, str(path))
    return path


def _bad_labels(case: tuple[Path, Path], change: str, folder: Path) -> Path:
    _ct_path, labels_path = case
    labels = sitk.ReadImage(str(labels_path))
    array = sitk.GetArrayFromImage(labels)
    if change == "other_grid":
        other = sitk.GetImageFromArray(array[:, :, :100])
        other.SetSpacing(labels.GetSpacing())
        return _write(other, folder / "other_grid.nii.gz")
    if change == "label_3":
        array[20, 64, 64] = 3
    elif change == "no_liver":
        array[:] = 0
    elif change == "tumour_outside":
        array[30:34, 2:10, 2:10] = 2
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(labels)
    return _write(image, folder / f"{change}.nii.gz")


@pytest.mark.parametrize(
    "change, fragments",
    [
        ("other_grid", ["different grid"]),
        ("label_3", ["label values other than 0/1/2 (3)"]),
        ("no_liver", ["contains no liver"]),
        ("tumour_outside", ["touches no liver parenchyma", "voxel index (5.5, 5.5, 31.5)"]),
    ],
)
def test_bad_label_maps_are_refused(
    case: tuple[Path, Path], tmp_path: Path, change: str, fragments: list[str]
) -> None:
    labels = _bad_labels(case, change, tmp_path)
    out = tmp_path / "out"
    result = run_cli("measure", case[0], labels, "-o", out)
    assert_clean_error(result, str(labels), *fragments)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_bad_inputs_and_options_are_refused(case: tuple[Path, Path], tmp_path: Path) -> None:
    ct, labels = case
    out = tmp_path / "out"
    bad_settings = tmp_path / "bad.yaml"
    bad_settings.write_text("measure:\n  involvement_band_thresholds_percent: [50, 25]\n")
    unknown_settings = tmp_path / "unknown.yaml"
    unknown_settings.write_text("measure:\n  min_lesion_volume: 1\n")
    cases = [
        (
            ("measure", tmp_path / "missing.nii.gz", labels, "-o", out),
            ["missing.nii.gz", "not found"],
        ),
        (
            ("measure", ct, tmp_path / "missing_labels.nii.gz", "-o", out),
            ["missing_labels.nii.gz", "not found"],
        ),
        (
            ("measure", ct, labels, "-o", out, "--date", "2024-13-45"),
            ["--date", "not a valid date"],
        ),
        (
            ("measure", ct, labels, "-o", out, "--settings", bad_settings),
            ["bad.yaml", "involvement_band"],
        ),
        (
            ("measure", ct, labels, "-o", out, "--settings", unknown_settings),
            ["unknown setting", "min_lesion_volume"],
        ),
        (
            ("measure", ct, labels, "-o", out, "--min-lesion-volume-ml", "-1"),
            ["--min-lesion-volume-ml"],
        ),
        (
            ("measure", ct, labels, "-o", out, "--arterial", tmp_path / "nope.nii.gz"),
            ["nope.nii.gz", "not found"],
        ),
        (("measure", ct, labels, "-o", out, "--subject", "a\nb"), ["--subject"]),
        (("measure", ct, labels, "-o", ct.parent), ["output folder holds the input"]),
        (("measure", ct, labels, "-o", ct), ["would overwrite the input"]),
        (
            ("measure", ct, labels, "-o", out, "--series", "1.2.3"),
            ["--series", "only applies to DICOM"],
        ),
    ]
    for args, fragments in cases:
        result = run_cli(*args)
        assert_clean_error(result, *fragments)
        assert not out.exists(), args
    assert ct.is_file() and labels.is_file()


def test_arterial_phase_that_misses_the_lesions_is_refused(tmp_path: Path) -> None:
    scan = liver_with_lesions(lesions=[((-30, 0, 0), (8, 8, 8))])
    ct, labels = scan.write(tmp_path)
    arterial = scan.ct[:, :, 21:]  # the lesion spans slices 17..23
    arterial_path = _write(arterial, tmp_path / "arterial.nii.gz")
    out = tmp_path / "out"
    result = run_cli("measure", ct, labels, "-o", out, "--arterial", arterial_path)
    assert_clean_error(result, "arterial.nii.gz", "does not cover all of lesion 1")
    assert not out.exists()


# ----------------------------------------------------------------- real CT


@pytest.mark.realdata
@pytest.mark.slow
def test_real_ircad_case(tmp_path: Path) -> None:
    ct = shared_data("ircad-1.17/ct.nii.gz")
    labels = shared_data("ircad-1.17/labels.nii.gz")
    out = tmp_path / "ircad"
    result = run_cli(
        "measure", ct, labels, "-o", out, "--subject", "ircad-1.17", "--date", "2010-01-01"
    )
    assert result.exit_code == 0, result.stderr
    data = _load(out)
    print(
        f"IRCAD 1.17: liver {data['liver_volume_ml']:.0f} mL, "
        f"tumour {data['tumor_volume_ml']:.1f} mL, involvement {data['involvement_percent']:.1f} %"
    )
    for lesion in data["lesions"]:
        print(
            f"  lesion {lesion['id']}: {lesion['volume_ml']:.1f} mL, longest "
            f"{lesion['longest_axial_diameter_mm']:.1f} mm, "
            f"short {lesion['short_axis_diameter_mm']:.1f} mm, "
            f"{lesion['mean_hu']:.0f} HU"
        )
    assert 1500 <= data["liver_volume_ml"] <= 2000
    assert data["lesion_count"] == 2
    assert data["involvement_band"] == "<25"
    assert data["flags"] == []
    for lesion in data["lesions"]:
        assert 40 <= lesion["longest_axial_diameter_mm"] <= 100
        assert 0.5 * lesion["longest_axial_diameter_mm"] <= lesion["short_axis_diameter_mm"]
        assert lesion["short_axis_diameter_mm"] <= lesion["longest_axial_diameter_mm"]
        assert lesion["measurable"] is True
        # the longest diameter fits in the lesion's bounding box (diagonal plus a voxel)
        low, high = np.array(lesion["bounding_box_index"])
        extent = (high - low + 1) * np.array(data["spacing_mm"])
        assert lesion["longest_axial_diameter_mm"] <= np.hypot(extent[0], extent[1]) + 1e-6
        assert 0 <= lesion["mean_hu"] <= 200
    # a known anatomy: a liver in HU of enhanced parenchyma
    assert 50 <= data["liver_mean_hu"] <= 150


# ------------------------------------------------------------------ phantom


@pytest.mark.slow
def test_measure_reproduces_the_phantom_truth() -> None:
    """A phantom's truth label map: volumes exact, diameters within one voxel of the
    analytic surface, centroids at the truth's."""
    phantom = pytest.importorskip("pipeline.phantom")
    from pipeline.measure.lesions import voxel_volume_ml
    from pipeline.measure.scan import measure_scan

    scan = phantom.generate_scan(12, "small")
    portal, arterial, labels = scan.to_sitk()
    values = measure_scan(portal, labels, arterial=arterial).values
    assert values["liver_volume_ml"] == pytest.approx(scan.liver_volume_ml, rel=1e-12)
    assert values["tumor_volume_ml"] == pytest.approx(scan.tumor_volume_ml, rel=1e-12)
    voxel_ml = voxel_volume_ml(scan.spacing_mm)
    in_plane_voxel = max(scan.spacing_mm[0], scan.spacing_mm[1])
    lesions = [t for t in scan.lesions if t["voxel_count"] * voxel_ml >= 0.05]
    noise = [t for t in scan.lesions if 0 < t["voxel_count"] * voxel_ml < 0.05]
    assert len(lesions) >= 3
    assert values["lesion_count"] == len(lesions)
    assert values["noise_component_count"] == len(noise)
    measured = values["lesions"]
    for truth in lesions:
        centre = np.array(truth["centroid_mm"])
        mine = min(measured, key=lambda m: np.linalg.norm(np.array(m["centroid_mm"]) - centre))
        assert np.linalg.norm(np.array(mine["centroid_mm"]) - centre) < 0.01
        assert mine["voxel_count"] == truth["voxel_count"]
        assert mine["volume_ml"] == pytest.approx(truth["volume_ml"], abs=1e-4)
        assert mine["longest_axial_diameter_mm"] == pytest.approx(
            truth["longest_axial_diameter_mm"], abs=in_plane_voxel
        )
        assert mine["short_axis_diameter_mm"] == pytest.approx(
            truth["short_axis_diameter_mm"], abs=in_plane_voxel
        )
        # viable tumour from the noisy images against the phantom's enhancing part
        if truth["volume_ml"] >= 1.0:
            assert mine["viable_volume_ml"] == pytest.approx(truth["viable_volume_ml"], rel=0.1)
