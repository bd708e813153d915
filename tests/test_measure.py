"""Measurement algorithms on shapes with known answers: lesions, diameters,
volumes, involvement, measurability, viable tumour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.measure.diameters import axial_diameters
from pipeline.measure.lesions import label_lesions, split_touching, voxel_volume_ml
from pipeline.measure.scan import measure_scan
from pipeline.measure.settings import MeasureSettings, check_settings
from pipeline.measure.volumes import (
    band_labels,
    involvement_band,
    involvement_percent,
    is_measurable,
    measurable_threshold_mm,
)
from tests._measure_fixtures import (
    blank_image,
    ct_with_labels,
    ellipsoid,
    labels_image,
    liver_with_lesions,
    physical_points,
    rotation_z,
)

# ----------------------------------------------------------------- diameters


def _ellipse_stack(
    a_mm: float,
    b_mm: float,
    c_mm: float,
    angle_degrees: float,
    spacing_xyz: tuple[float, float, float],
    shift_voxels: tuple[float, float] = (0.3, -0.2),
) -> np.ndarray:
    """Ellipsoid (semi-axes a, b in-plane rotated by angle; c along z) as a
    ``[z, y, x]`` mask, centred on a slice plane and off the in-plane lattice."""
    sx, sy, sz = spacing_xyz
    half = [math.ceil(max(a_mm, b_mm) / s) + 3 for s in (sx, sy)]
    half_z = math.ceil(c_mm / sz) + 2
    x = (np.arange(-half[0], half[0] + 1) + shift_voxels[0]) * sx
    y = (np.arange(-half[1], half[1] + 1) + shift_voxels[1]) * sy
    z = np.arange(-half_z, half_z + 1) * sz
    t = np.deg2rad(angle_degrees)
    X, Y = x[None, None, :], y[None, :, None]
    u = X * np.cos(t) + Y * np.sin(t)
    v = -X * np.sin(t) + Y * np.cos(t)
    return (u / a_mm) ** 2 + (v / b_mm) ** 2 + (z[:, None, None] / c_mm) ** 2 <= 1.0


@pytest.mark.parametrize("angle", [0.0, 17.0, 45.0, 73.0, 90.0, 128.0])
@pytest.mark.parametrize(
    "spacing", [(0.7, 0.7, 1.5), (0.8, 1.05, 2.5), (1.3, 0.9, 5.0)], ids=["iso", "aniso", "thick"]
)
@pytest.mark.parametrize(
    "axes", [(15.0, 9.0), (30.0, 12.0), (6.0, 4.0)], ids=["medium", "long", "small"]
)
def test_ellipse_diameters_within_one_voxel(
    angle: float, spacing: tuple[float, float, float], axes: tuple[float, float]
) -> None:
    a, b = axes
    mask = _ellipse_stack(a, b, 12.0, angle, spacing)
    result = axial_diameters(mask, spacing, axial_axis=2)
    voxel = max(spacing[0], spacing[1])
    assert result.longest_mm == pytest.approx(2 * a, abs=voxel)
    assert result.short_axis_mm == pytest.approx(2 * b, abs=voxel)
    # the longest diameter lies in a slice whose cross-section is within one voxel
    # of the widest (central) one
    offset_mm = (result.slice_index - mask.shape[0] // 2) * spacing[2]
    assert 2 * a * math.sqrt(max(0.0, 1 - (offset_mm / 12.0) ** 2)) >= 2 * a - voxel
    long_ends = result.longest_endpoints_index * np.array(spacing)
    short_ends = result.short_axis_endpoints_index * np.array(spacing)
    long_vector, short_vector = long_ends[1] - long_ends[0], short_ends[1] - short_ends[0]
    assert np.linalg.norm(long_vector) == pytest.approx(result.longest_mm, rel=1e-9)
    assert np.linalg.norm(short_vector) == pytest.approx(result.short_axis_mm, rel=1e-9)
    assert long_vector[2] == 0 and short_vector[2] == 0  # in the axial plane
    cosine = abs(long_vector @ short_vector) / (result.longest_mm * result.short_axis_mm)
    assert cosine < 1e-9  # perpendicular
    # the long axis runs along the ellipse's major axis
    direction = long_vector[:2] / np.linalg.norm(long_vector[:2])
    major = np.array([np.cos(np.deg2rad(angle)), np.sin(np.deg2rad(angle))])
    assert abs(direction @ major) > math.cos(_direction_tolerance(a, b, voxel))


def _direction_tolerance(a_mm: float, b_mm: float, voxel_mm: float) -> float:
    """Angle (radians) by which a chord of an ellipse may turn from the major
    axis and lose at most one voxel of length (2a - width(angle) <= voxel)."""
    return math.sqrt(voxel_mm / (a_mm * (1 - (b_mm / a_mm) ** 2))) + 1e-3


def test_diameters_of_flipped_and_permuted_arrays_are_identical() -> None:
    spacing = (0.75, 0.9, 2.0)
    mask = _ellipse_stack(17.0, 7.0, 9.0, 31.0, spacing)
    reference = axial_diameters(mask, spacing, axial_axis=2)
    for flipped in (mask[::-1], mask[:, ::-1], mask[:, :, ::-1], mask[::-1, ::-1, ::-1]):
        result = axial_diameters(flipped, spacing, axial_axis=2)
        assert result.longest_mm == reference.longest_mm
        assert result.short_axis_mm == pytest.approx(reference.short_axis_mm, abs=1e-9)
    # in-plane axes swapped: the same lesion stored transposed
    swapped = axial_diameters(np.swapaxes(mask, 1, 2), (spacing[1], spacing[0], spacing[2]), 2)
    assert swapped.longest_mm == reference.longest_mm
    assert swapped.short_axis_mm == pytest.approx(reference.short_axis_mm, abs=1e-9)
    # axial axis first in the array (x of the storage grid is head-foot)
    sagittal = np.transpose(
        mask, (2, 1, 0)
    )  # [x_old, y, z_old] -> array [z', y', x'] with x' = z_old
    result = axial_diameters(sagittal, (spacing[2], spacing[1], spacing[0]), axial_axis=0)
    assert result.longest_mm == reference.longest_mm
    assert result.short_axis_mm == pytest.approx(reference.short_axis_mm, abs=1e-9)


def test_diameters_of_simple_shapes() -> None:
    spacing = (0.5, 0.5, 3.0)
    empty = axial_diameters(np.zeros((3, 4, 5), bool), spacing)
    assert empty.longest_mm == 0 and empty.slice_index is None
    single = np.zeros((3, 4, 5), bool)
    single[1, 2, 3] = True
    one = axial_diameters(single, spacing)
    assert one.longest_mm == pytest.approx(0.5) and one.short_axis_mm == pytest.approx(0.5)
    assert one.slice_index == 1
    # a 10 x 4 voxel rectangle: long axis is its diagonal (voxel extents)
    box = np.zeros((3, 20, 20), bool)
    box[1, 5:9, 3:13] = True
    rect = axial_diameters(box, spacing)
    assert rect.longest_mm == pytest.approx(math.hypot(4.5, 1.5) + 0.5)
    # a slice lower in a different slice does not change the longest
    box[2, 5, 3:5] = True
    assert axial_diameters(box, spacing).slice_index == 1


def test_short_axis_of_a_non_convex_shape_is_a_perpendicular_cut() -> None:
    """A bar with a bump up at one end and a bump down at the other: the widest
    cut perpendicular to the long axis crosses one bump (4 + 6 voxels), while
    the band between the two lines parallel to the long axis is 16 voxels wide."""
    shape = np.zeros((1, 40, 100), bool)
    shape[0, 15:19, 10:90] = True  # bar 80 x 4
    shape[0, 9:15, 30:33] = True  # bump of 6 on one side
    shape[0, 19:25, 70:73] = True  # bump of 6 on the other
    result = axial_diameters(shape, (1.0, 1.0, 1.0))
    assert result.longest_mm == pytest.approx(math.hypot(79, 3) + 1, abs=1e-6)
    assert 10.0 <= result.short_axis_mm < 12.5
    # its ends straddle one of the bumps
    ends = result.short_axis_endpoints_index
    assert 29 <= ends[:, 0].mean() <= 34 or 69 <= ends[:, 0].mean() <= 74


# ------------------------------------------------------------------- lesions


def test_lesions_ordered_by_volume_and_noise_counted() -> None:
    tumor = np.zeros((20, 40, 40), bool)
    tumor[2:6, 2:6, 2:6] = True  # 64 voxels
    tumor[10:18, 10:20, 10:20] = True  # 800 voxels
    tumor[2:5, 30:35, 30:35] = True  # 75 voxels
    tumor[15, 35, 2] = True  # 1 voxel: noise
    tumor[18, 2, 35:37] = True  # 2 voxels: noise
    spacing = (1.0, 1.0, 1.0)  # 1 voxel = 0.001 mL
    result = label_lesions(tumor, spacing, min_volume_ml=0.05)
    assert result.lesion_count == 3
    assert result.voxel_counts.tolist() == [800, 75, 64]
    assert result.labels[12, 15, 15] == 1 and result.labels[3, 32, 32] == 2
    assert result.labels[3, 3, 3] == 3
    assert result.noise_component_count == 2 and result.noise_voxel_count == 3
    assert result.labels[15, 35, 2] == 0
    assert result.labels.dtype == np.uint16


@pytest.mark.parametrize("connectivity, expected", [(26, 1), (18, 2), (6, 2)])
def test_connectivity_of_diagonal_neighbours(connectivity: int, expected: int) -> None:
    tumor = np.zeros((10, 10, 10), bool)
    tumor[1:4, 1:4, 1:4] = True
    tumor[4:7, 4:7, 4:7] = True  # touches the first cube at one corner only
    result = label_lesions(tumor, (1, 1, 1), min_volume_ml=0, connectivity=connectivity)
    assert result.lesion_count == expected


def test_equal_volumes_ordered_by_position_whatever_the_storage() -> None:
    tumor = np.zeros((4, 10, 20), bool)
    tumor[1:3, 2:5, 2:5] = True
    tumor[1:3, 2:5, 12:15] = True
    matrix = np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    flipped_matrix = np.array([[-1.0, 0, 0, 19], [0, 1, 0, 0], [0, 0, 1, 0]])
    plain = label_lesions(tumor, (1, 1, 1), min_volume_ml=0, index_to_lps=matrix)
    flipped = label_lesions(
        tumor[:, :, ::-1], (1, 1, 1), min_volume_ml=0, index_to_lps=flipped_matrix
    )
    assert np.array_equal(plain.labels, flipped.labels[:, :, ::-1])


def test_touching_lesions_split_by_watershed() -> None:
    shape = (30, 60, 90)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    first = (x - 30) ** 2 + (y - 30) ** 2 + ((z - 15) * 2) ** 2 <= 14**2
    second = (x - 55) ** 2 + (y - 30) ** 2 + ((z - 15) * 2) ** 2 <= 12**2
    tumor = first | second
    spacing = (1.0, 1.0, 2.0)
    assert label_lesions(tumor, spacing, min_volume_ml=0.05).lesion_count == 1
    split = label_lesions(tumor, spacing, min_volume_ml=0.05, split_touching_lesions=True)
    assert split.lesion_count == 2 and split.split_component_count == 1
    assert split.labels[15, 30, 30] == 1 and split.labels[15, 30, 55] == 2
    assert int(split.voxel_counts.sum()) == int(tumor.sum())
    # a single convex lesion is never split
    pieces = split_touching(first, spacing, min_depth_mm=2.0)
    assert pieces.max() == 1


# --------------------------------------------------------- volumes and bands


@pytest.mark.parametrize(
    "percent, expected",
    [
        (0.0, "<25"),
        (24.999, "<25"),
        (25.0, "25-50"),
        (49.9, "25-50"),
        (50.0, "50-75"),
        (75.0, ">=75"),
        (100.0, ">=75"),
    ],
)
def test_involvement_band_default_thresholds(percent: float, expected: str) -> None:
    assert involvement_band(percent) == expected


def test_involvement_band_configured_thresholds() -> None:
    assert band_labels((10, 70)) == ["<10", "10-70", ">=70"]
    assert involvement_band(69.99, (10, 70)) == "10-70"
    assert involvement_band(70, (10, 70)) == ">=70"
    assert involvement_band(None) is None


def test_involvement_percent() -> None:
    assert involvement_percent(250.0, 1000.0) == pytest.approx(25.0)
    assert involvement_percent(0.0, 0.0) is None
    with pytest.raises(ValueError):
        involvement_percent(2.0, 1.0)


@pytest.mark.parametrize(
    "diameter, thickness, expected",
    [
        (9.99, 1.5, False),
        (10.0, 1.5, True),
        (10.0, 5.0, True),  # 5 mm slices: still 10 mm
        (11.9, 6.0, False),  # thicker than 5 mm: 2 x 6 = 12 mm needed
        (12.0, 6.0, True),
        (15.9, 8.0, False),
        (16.0, 8.0, True),
    ],
)
def test_recist_measurability(diameter: float, thickness: float, expected: bool) -> None:
    assert is_measurable(diameter, thickness) is expected


def test_measurable_threshold_settings() -> None:
    assert measurable_threshold_mm(3.0, min_diameter_mm=15.0) == 15.0
    assert measurable_threshold_mm(4.0, thick_slice_mm=3.0) == 10.0
    assert measurable_threshold_mm(7.0, thick_slice_mm=3.0) == 14.0


# ------------------------------------------------------------ whole scans

GEOMETRIES = {
    "identity": dict(
        size=(120, 110, 36), spacing=(0.8, 0.8, 2.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)
    ),
    "flipped_xy": dict(
        size=(120, 110, 36), spacing=(0.8, 0.9, 2.0), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)
    ),
    "flipped_z": dict(
        size=(120, 110, 36), spacing=(0.8, 0.8, 2.5), direction=(1, 0, 0, 0, 1, 0, 0, 0, -1)
    ),
    # image axes i -> LPS y, j -> LPS z, k -> LPS x (stored sagittally)
    "sagittal": dict(
        size=(110, 36, 120), spacing=(0.9, 2.0, 0.8), direction=(0, 0, 1, 1, 0, 0, 0, 1, 0)
    ),
    # image axes i -> x, j -> -z, k -> y (stored coronally, flipped)
    "coronal": dict(
        size=(120, 36, 110), spacing=(0.8, 2.0, 0.8), direction=(1, 0, 0, 0, 0, 1, 0, -1, 0)
    ),
    "offset_origin": dict(
        size=(120, 110, 36),
        spacing=(0.8, 0.8, 2.0),
        direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
        origin=(-311.3, 47.9, 1012.4),
    ),
}


def _scan_with_rotated_lesion(
    geometry: dict, angle: float
) -> tuple[sitk.Image, sitk.Image, np.ndarray, dict]:
    reference = blank_image(
        geometry["size"],
        geometry["spacing"],
        geometry.get("origin", (0, 0, 0)),
        geometry["direction"],
    )
    points = physical_points(reference)
    centre_index = tuple(n // 2 for n in geometry["size"][::-1])
    centre = points[centre_index] + np.array([0.3, -0.35, 0.0])  # off the in-plane lattice
    liver = ellipsoid(reference, centre, (42.0, 38.0, 30.0))
    lesion = ellipsoid(
        reference, centre + np.array([8.0, 4.0, 0.0]), (15.0, 8.0, 12.0), rotation_z(angle)
    )
    labels = np.zeros(liver.shape, np.uint8)
    labels[liver] = 1
    labels[lesion] = 2
    truth = {
        "lesion_centre": centre + np.array([8.0, 4.0, 0.0]),
        "liver_centre": centre,
        "lesion": lesion,
        "liver": liver,
    }
    return ct_with_labels(reference, labels), labels_image(labels, reference), labels, truth


@pytest.mark.parametrize("name", list(GEOMETRIES))
@pytest.mark.parametrize("angle", [0.0, 35.0, 100.0])
def test_scan_measurements_on_an_ellipsoid(name: str, angle: float) -> None:
    geometry = GEOMETRIES[name]
    ct, labels, label_array, truth = _scan_with_rotated_lesion(geometry, angle)
    result = measure_scan(ct, labels)
    values = result.values
    voxel_ml = voxel_volume_ml(geometry["spacing"])
    spacing = np.array(geometry["spacing"])
    axial = int(np.argmax(np.abs(np.array(geometry["direction"], float).reshape(3, 3)[2])))
    in_plane_voxel = max(spacing[i] for i in range(3) if i != axial)
    assert values["axial_axis"] == axial
    assert values["slice_thickness_mm"] == pytest.approx(spacing[axial])
    # volumes: exactly the voxel counts
    assert values["tumor_volume_ml"] == int(truth["lesion"].sum()) * voxel_ml
    assert values["liver_volume_ml"] == int(truth["liver"].sum()) * voxel_ml
    assert values["liver_parenchyma_volume_ml"] == int((label_array == 1).sum()) * voxel_ml
    assert values["involvement_percent"] == pytest.approx(
        100 * truth["lesion"].sum() / truth["liver"].sum()
    )
    # the liver ellipsoid's analytic volume within 0.5 %
    assert values["liver_volume_ml"] == pytest.approx(
        4 / 3 * math.pi * 42 * 38 * 30 / 1000, rel=0.005
    )
    assert values["lesion_count"] == 1 and values["noise_component_count"] == 0
    lesion = values["lesions"][0]
    assert lesion["id"] == 1
    assert lesion["longest_axial_diameter_mm"] == pytest.approx(30.0, abs=in_plane_voxel)
    assert lesion["short_axis_diameter_mm"] == pytest.approx(16.0, abs=in_plane_voxel)
    assert np.linalg.norm(np.array(lesion["centroid_mm"]) - truth["lesion_centre"]) < 1.0
    assert np.linalg.norm(np.array(values["liver_centroid_mm"]) - truth["liver_centre"]) < 1.0
    # the calipers lie in one axial plane (LPS z constant) through the lesion centre
    long_ends = np.array(lesion["longest_axial_diameter_endpoints_mm"])
    short_ends = np.array(lesion["short_axis_endpoints_mm"])
    assert long_ends[:, 2] == pytest.approx([truth["lesion_centre"][2]] * 2, abs=1e-6)
    assert short_ends[:, 2] == pytest.approx([truth["lesion_centre"][2]] * 2, abs=1e-6)
    assert np.linalg.norm(long_ends[1] - long_ends[0]) == pytest.approx(
        lesion["longest_axial_diameter_mm"]
    )
    major = rotation_z(angle)[:, 0]
    direction = (long_ends[1] - long_ends[0]) / np.linalg.norm(long_ends[1] - long_ends[0])
    assert abs(direction @ major) > math.cos(_direction_tolerance(15.0, 8.0, in_plane_voxel))
    # axial slice index: the slice holding the calipers
    index = np.array(ct.TransformPhysicalPointToContinuousIndex(long_ends[0].tolist()))
    assert lesion["axial_slice_index"] == pytest.approx(index[axial], abs=1e-6)
    # bounding box (x, y, z inclusive) holds every lesion voxel
    z, y, x = np.nonzero(truth["lesion"])
    assert lesion["bounding_box_index"] == [
        [x.min(), y.min(), z.min()],
        [x.max(), y.max(), z.max()],
    ]
    assert (
        lesion["mean_hu"] == pytest.approx(60.0) and lesion["portal_mean_hu"] == lesion["mean_hu"]
    )
    assert values["liver_mean_hu"] == pytest.approx(100.0)
    assert lesion["measurable"] is True
    assert lesion["viable_volume_ml"] is None and values["arterial"] is None
    # maps
    lesion_map = sitk.GetArrayFromImage(result.lesion_map)
    assert result.lesion_map.GetPixelID() == sitk.sitkUInt16
    assert np.array_equal(lesion_map == 1, truth["lesion"])
    assert np.array_equal(
        sitk.GetArrayFromImage(result.liver_mask), truth["liver"].astype(np.uint8)
    )
    assert result.liver_mask.GetPixelID() == sitk.sitkUInt8


@pytest.mark.parametrize(
    "permutation, flips",
    [
        ((0, 1, 2), (True, False, False)),
        ((1, 0, 2), (False, True, True)),
        ((2, 0, 1), (False, False, False)),
        ((1, 2, 0), (True, True, True)),
    ],
)
def test_same_scan_stored_differently_measures_the_same(
    permutation: tuple[int, int, int], flips: tuple[bool, bool, bool]
) -> None:
    scan = liver_with_lesions(
        size_xyz=(100, 96, 30),
        spacing_mm=(0.9, 0.8, 2.5),
        lesions=[
            ((10.0, 5.0, 0.0), (12.0, 7.0, 9.0)),
            ((-20.0, -10.0, 5.0), (6.0, 5.0, 8.0)),
            ((0, -25, -10), (4, 4, 5)),
        ],
    )
    reference = measure_scan(scan.ct, scan.labels).values

    def restore(image: sitk.Image) -> sitk.Image:
        return sitk.Flip(sitk.PermuteAxes(image, list(permutation)), list(flips))

    ct, labels = restore(scan.ct), restore(scan.labels)
    other = measure_scan(ct, labels).values
    for key in (
        "liver_volume_ml",
        "tumor_volume_ml",
        "involvement_percent",
        "lesion_count",
        "noise_volume_ml",
    ):
        assert other[key] == reference[key], key
    assert other["liver_centroid_mm"] == pytest.approx(reference["liver_centroid_mm"], abs=1e-6)
    assert other["slice_thickness_mm"] == reference["slice_thickness_mm"]
    assert len(other["lesions"]) == 3
    for mine, theirs in zip(reference["lesions"], other["lesions"], strict=True):
        assert mine["id"] == theirs["id"]
        assert mine["volume_ml"] == theirs["volume_ml"]
        assert mine["longest_axial_diameter_mm"] == pytest.approx(
            theirs["longest_axial_diameter_mm"], abs=1e-9
        )
        assert mine["short_axis_diameter_mm"] == pytest.approx(
            theirs["short_axis_diameter_mm"], abs=1e-6
        )
        assert mine["centroid_mm"] == pytest.approx(theirs["centroid_mm"], abs=1e-6)
        assert mine["mean_hu"] == pytest.approx(theirs["mean_hu"], abs=1e-9)
        # calipers in the same axial plane, of the same length
        assert np.array(mine["longest_axial_diameter_endpoints_mm"])[:, 2] == pytest.approx(
            np.array(theirs["longest_axial_diameter_endpoints_mm"])[:, 2], abs=0.5 * 2.5
        )


def test_noise_counts_in_tumor_volume_not_in_lesions() -> None:
    scan = liver_with_lesions(lesions=[((0, 0, 0), (10, 9, 8))])
    labels = sitk.GetArrayFromImage(scan.labels)
    labels[20, 64, 30] = 2  # single-voxel specks inside the liver
    labels[22, 80, 40] = 2
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(scan.labels)
    values = measure_scan(scan.ct, image).values
    voxel_ml = voxel_volume_ml((1, 1, 2.5))
    assert values["noise_component_count"] == 2
    assert values["noise_volume_ml"] == pytest.approx(2 * voxel_ml)
    assert values["tumor_volume_ml"] == pytest.approx(
        values["lesions"][0]["volume_ml"] + 2 * voxel_ml
    )
    assert values["lesion_count"] == 1
    many = measure_scan(scan.ct, image, MeasureSettings(many_noise_components=2)).values
    assert "many_noise_components" in {f["code"] for f in many["flags"]}
    assert "many_noise_components" not in {f["code"] for f in values["flags"]}


def test_lesion_ids_follow_volume_and_match_the_map() -> None:
    scan = liver_with_lesions(
        lesions=[((-25, 0, 0), (5, 5, 5)), ((20, 0, 0), (12, 10, 10)), ((0, 25, 0), (8, 8, 8))]
    )
    result = measure_scan(scan.ct, scan.labels)
    lesions = result.values["lesions"]
    assert [lesion["id"] for lesion in lesions] == [1, 2, 3]
    volumes = [lesion["volume_ml"] for lesion in lesions]
    assert volumes == sorted(volumes, reverse=True)
    lesion_map = sitk.GetArrayFromImage(result.lesion_map)
    voxel_ml = voxel_volume_ml(scan.ct.GetSpacing())
    for lesion in lesions:
        assert np.count_nonzero(lesion_map == lesion["id"]) * voxel_ml == lesion["volume_ml"]
        index = scan.ct.TransformPhysicalPointToIndex(lesion["centroid_mm"])
        assert lesion_map[index[::-1]] == lesion["id"]
    assert lesions[0]["centroid_mm"][0] > 10  # the largest lies at +20 mm in x


def test_involvement_band_of_a_scan_and_no_parenchyma() -> None:
    scan = liver_with_lesions(liver_semi_axes_mm=(30, 30, 30), lesions=[((0, 0, 0), (40, 40, 40))])
    values = measure_scan(scan.ct, scan.labels).values
    assert values["involvement_percent"] == pytest.approx(100.0)
    assert values["involvement_band"] == ">=75"
    assert values["liver_parenchyma_volume_ml"] == 0
    assert values["liver_mean_hu"] is None
    codes = {f["code"] for f in values["flags"]}
    assert {"no_liver_parenchyma", "liver_volume_implausible"} <= codes
    for flag in values["flags"]:
        assert flag["severity"] == "warning" and flag["message"]


def test_liver_without_tumour() -> None:
    scan = liver_with_lesions(lesions=[])
    result = measure_scan(scan.ct, scan.labels, arterial=scan.ct)
    values = result.values
    assert values["tumor_volume_ml"] == 0 and values["involvement_percent"] == 0
    assert values["involvement_band"] == "<25"
    assert values["lesion_count"] == 0 and values["lesions"] == []
    assert values["tumor_mean_hu"] is None
    assert values["arterial"]["viable_volume_ml"] == 0
    assert not sitk.GetArrayFromImage(result.lesion_map).any()


def test_tumor_filling_the_liver_with_an_arterial_phase() -> None:
    scan = liver_with_lesions(liver_semi_axes_mm=(30, 30, 30), lesions=[((0, 0, 0), (40, 40, 40))])
    values = measure_scan(scan.ct, scan.labels, arterial=scan.ct).values
    assert "viable_not_assessable" in {f["code"] for f in values["flags"]}
    lesion = values["lesions"][0]
    assert lesion["viable_volume_ml"] is None and lesion["arterial_mean_hu"] == pytest.approx(60.0)


def test_tumor_touching_no_liver_is_refused_with_its_position() -> None:
    scan = liver_with_lesions(liver_semi_axes_mm=(30, 30, 20), lesions=[((0, 0, 0), (8, 8, 8))])
    labels = sitk.GetArrayFromImage(scan.labels)
    labels[10:16, 5:15, 100:110] = 2  # far outside the liver
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(scan.labels)
    with pytest.raises(
        InputError,
        match=r"600 voxels at voxel index \(104.5, 9.5, 12.5\), LPS \(41.0, -54.0, -17.5\) mm "
        r"touches no liver parenchyma",
    ):
        measure_scan(scan.ct, image, labels_source="seg.nii.gz")
    # a noise speck outside the liver is only noise
    labels[10:16, 5:15, 100:110] = 0
    labels[5, 5, 5] = 2
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(scan.labels)
    assert measure_scan(scan.ct, image).values["noise_component_count"] == 1


def test_thick_slices_flag_and_measurability() -> None:
    scan = liver_with_lesions(
        size_xyz=(128, 128, 16),
        spacing_mm=(1.0, 1.0, 6.0),
        lesions=[((0, 0, 0), (5.6, 5.6, 12))],
        liver_semi_axes_mm=(50, 45, 40),
    )
    values = measure_scan(scan.ct, scan.labels).values
    assert "thick_slices" in {f["code"] for f in values["flags"]}
    lesion = values["lesions"][0]
    assert 10.0 <= lesion["longest_axial_diameter_mm"] < 12.0
    assert lesion["measurable"] is False  # needs 2 x 6 mm


def test_lesion_at_the_image_border_is_flagged() -> None:
    scan = liver_with_lesions(liver_semi_axes_mm=(70, 45, 40), lesions=[((60, 0, 0), (10, 8, 8))])
    values = measure_scan(scan.ct, scan.labels).values
    codes = {f["code"] for f in values["flags"]}
    assert {"lesion_touches_image_border", "liver_touches_image_border"} <= codes
    assert values["lesions"][0]["touches_image_border"] is True


# ------------------------------------------------------------------ viable


def _arterial_case(
    lesion_arterial: dict[str, float], portal_lipiodol: bool = False
) -> tuple[sitk.Image, sitk.Image, sitk.Image, dict[str, np.ndarray]]:
    """Liver (arterial 80 HU) with lesion 1: 150 HU rim around a 20 HU necrotic
    core; lesion 2: lipiodol (500 HU in both phases) in its left half."""
    scan = liver_with_lesions(
        size_xyz=(128, 128, 40),
        spacing_mm=(1.0, 1.0, 2.0),
        lesions=[((-20, 0, 0), (14, 14, 14)), ((22, 0, 0), (9, 9, 9))],
        liver_semi_axes_mm=(55, 45, 38),
    )
    labels = sitk.GetArrayFromImage(scan.labels)
    points = physical_points(scan.ct)
    centre = points[20, 64, 64]
    core = ellipsoid(scan.ct, centre + np.array([-20, 0, 0]), (8, 8, 8))
    second = ellipsoid(scan.ct, centre + np.array([22, 0, 0]), (9, 9, 9))
    lipiodol = second & (points[..., 0] < centre[0] + 22)
    arterial = sitk.GetArrayFromImage(scan.ct).copy()
    arterial[labels == 1] = 80.0
    arterial[labels == 2] = lesion_arterial["rim"]
    arterial[core] = lesion_arterial["core"]
    arterial[lipiodol] = 500.0
    portal = sitk.GetArrayFromImage(scan.ct).copy()
    portal[lipiodol] = 500.0 if portal_lipiodol else 60.0
    portal_image = sitk.GetImageFromArray(portal)
    portal_image.CopyInformation(scan.ct)
    arterial_image = sitk.GetImageFromArray(arterial)
    arterial_image.CopyInformation(scan.ct)
    truth = {"core": core, "lipiodol": lipiodol, "second": second, "labels": labels}
    return portal_image, scan.labels, arterial_image, truth


def test_viable_tumour_with_necrotic_core_and_lipiodol() -> None:
    portal, labels, arterial, truth = _arterial_case(
        {"rim": 150.0, "core": 20.0}, portal_lipiodol=True
    )
    result = measure_scan(portal, labels, arterial=arterial)
    values = result.values
    voxel_ml = voxel_volume_ml((1, 1, 2))
    first, second = values["lesions"]
    lesion_map = sitk.GetArrayFromImage(result.lesion_map)
    first_mask = lesion_map == first["id"]
    assert first["viable_volume_ml"] == pytest.approx(
        np.count_nonzero(first_mask & ~truth["core"]) * voxel_ml
    )
    assert first["viable_fraction"] == pytest.approx(
        np.count_nonzero(first_mask & ~truth["core"]) / np.count_nonzero(first_mask)
    )
    assert first["arterial_reference_hu"] == pytest.approx(80.0)
    assert first["arterial_reference"] == "peri_tumoral_ring"
    assert first["lipiodol_volume_ml"] == 0
    # the enhancing rim spans the whole lesion: its longest diameter is the lesion's
    assert first["viable_longest_axial_diameter_mm"] == pytest.approx(
        first["longest_axial_diameter_mm"], abs=1.0
    )
    assert first["viable_short_axis_diameter_mm"] == pytest.approx(28.0, abs=1.0)
    # lesion 2: half lipiodol (dense in both phases), half enhancing tumour
    lipiodol_voxels = np.count_nonzero(truth["lipiodol"])
    assert second["lipiodol_volume_ml"] == pytest.approx(lipiodol_voxels * voxel_ml)
    assert second["viable_volume_ml"] == pytest.approx(
        (np.count_nonzero(truth["second"]) - lipiodol_voxels) * voxel_ml
    )
    # the viable half-disc keeps the full diameter along the cut, half the width across it
    assert second["viable_longest_axial_diameter_mm"] == pytest.approx(
        second["longest_axial_diameter_mm"], abs=1.0
    )
    assert second["viable_short_axis_diameter_mm"] == pytest.approx(9.0, abs=1.5)
    assert values["arterial"]["liver_parenchyma_mean_hu"] == pytest.approx(80.0)
    assert values["arterial"]["resampled_to_portal_grid"] is False
    assert values["arterial"]["lipiodol_min_hu"] == 300.0
    viable_map = sitk.GetArrayFromImage(result.viable_map)
    assert np.count_nonzero(viable_map == 1) * voxel_ml == pytest.approx(first["viable_volume_ml"])
    assert not np.any(viable_map[truth["core"]])


def test_dense_arterial_tumour_without_portal_density_is_viable_not_lipiodol() -> None:
    portal, labels, arterial, _truth = _arterial_case(
        {"rim": 150.0, "core": 20.0}, portal_lipiodol=False
    )
    second = measure_scan(portal, labels, arterial=arterial).values["lesions"][1]
    assert second["lipiodol_volume_ml"] == 0
    assert second["viable_fraction"] == pytest.approx(1.0)


def test_viable_margin_and_fully_necrotic_lesion() -> None:
    portal, labels, arterial, _truth = _arterial_case({"rim": 90.0, "core": 20.0})
    plain = measure_scan(portal, labels, arterial=arterial).values["lesions"][0]
    assert plain["viable_fraction"] > 0.5  # 90 HU >= 80 HU parenchyma
    strict = measure_scan(
        portal, labels, MeasureSettings(viable_margin_hu=15.0), arterial=arterial
    ).values
    lesion = strict["lesions"][0]
    assert lesion["viable_volume_ml"] == 0 and lesion["viable_longest_axial_diameter_mm"] == 0
    assert lesion["viable_longest_axial_diameter_endpoints_mm"] is None
    assert strict["arterial"]["viable_margin_hu"] == 15.0


def test_arterial_on_another_grid_is_resampled() -> None:
    portal, labels, arterial, _truth = _arterial_case({"rim": 150.0, "core": 20.0})
    coarse = sitk.Resample(
        arterial,
        [s // 2 for s in arterial.GetSize()],
        sitk.Transform(),
        sitk.sitkLinear,
        arterial.GetOrigin(),
        [s * 2 for s in arterial.GetSpacing()],
        arterial.GetDirection(),
        -1000.0,
        sitk.sitkFloat32,
    )
    values = measure_scan(portal, labels, arterial=coarse).values
    assert values["arterial"]["resampled_to_portal_grid"] is True
    assert "arterial_resampled" in {f["code"] for f in values["flags"]}
    first = values["lesions"][0]
    assert 0.5 < first["viable_fraction"] < 0.95


def test_arterial_not_covering_a_lesion_is_refused() -> None:
    portal, labels, arterial, _truth = _arterial_case({"rim": 150.0, "core": 20.0})
    half = arterial[64:, :, :]  # x >= 64: lesion 1 (at -20 mm) lies outside
    with pytest.raises(InputError, match="does not cover all of lesion"):
        measure_scan(portal, labels, arterial=half, arterial_source="arterial.nii.gz")


# ---------------------------------------------------------------- settings


def test_settings_defaults_and_checks() -> None:
    settings = MeasureSettings()
    assert settings.min_lesion_volume_ml == 0.05
    assert settings.involvement_band_thresholds_percent == (25.0, 50.0, 75.0)
    assert settings.liver_volume_plausible_ml == (500.0, 5000.0)
    check_settings(settings)
    for bad in (
        MeasureSettings(min_lesion_volume_ml=-1),
        MeasureSettings(involvement_band_thresholds_percent=(50.0, 25.0)),
        MeasureSettings(involvement_band_thresholds_percent=(25.0, 120.0)),
        MeasureSettings(lesion_connectivity=8),
        MeasureSettings(liver_volume_plausible_ml=(5000.0, 500.0)),
        MeasureSettings(peri_tumoral_ring_mm=0.0),
        MeasureSettings(thick_slice_mm=float("nan")),
    ):
        with pytest.raises(InputError):
            check_settings(bad, "config.yaml")


def test_liver_volume_plausibility_range_is_a_setting() -> None:
    scan = liver_with_lesions()
    liver_ml = measure_scan(scan.ct, scan.labels).values["liver_volume_ml"]
    assert 300 < liver_ml < 500  # the synthetic liver is small
    settings = MeasureSettings(liver_volume_plausible_ml=(100.0, 1000.0))
    values = measure_scan(scan.ct, scan.labels, settings).values
    assert "liver_volume_implausible" not in {f["code"] for f in values["flags"]}
    assert values["settings"]["liver_volume_plausible_ml"] == (100.0, 1000.0)


def test_viable_specks_are_noise_and_diameter_is_of_the_largest_viable_part() -> None:
    """A necrotic lesion with one small enhancing nodule and stray enhancing voxels
    far from it: the viable diameter is the nodule's, not the span of the specks."""
    portal, labels, arterial, truth = _arterial_case({"rim": 20.0, "core": 20.0})
    arterial_array = sitk.GetArrayFromImage(arterial)
    first = sitk.GetArrayFromImage(labels) == 2
    first &= ~truth["second"]
    zs = np.nonzero(first)[0]
    z = int(np.median(zs))
    in_slice = np.argwhere(first[z])
    # a 3 x 3 x 3 enhancing nodule at one edge, a single enhancing voxel at the other
    (y0, x0), (y1, x1) = in_slice[np.argmin(in_slice[:, 1])], in_slice[np.argmax(in_slice[:, 1])]
    arterial_array[z - 1 : z + 2, y0 - 1 : y0 + 2, x0 + 1 : x0 + 4] = 150.0
    arterial_array[z, y1, x1] = 150.0
    noisy = sitk.GetImageFromArray(arterial_array)
    noisy.CopyInformation(arterial)
    lesion = measure_scan(portal, labels, arterial=noisy).values["lesions"][0]
    nodule = arterial_array[first] >= 150.0
    assert lesion["viable_longest_axial_diameter_mm"] < 6.0  # the 3-voxel nodule, not ~30 mm
    assert lesion["viable_volume_ml"] <= np.count_nonzero(nodule) * voxel_volume_ml((1, 1, 2))
    kept = measure_scan(
        portal, labels, MeasureSettings(viable_min_component_ml=0.0), arterial=noisy
    ).values["lesions"][0]
    assert kept["viable_volume_ml"] > lesion["viable_volume_ml"]
