"""Phantom building blocks and the single-scan API: shapes, sizes, grids, rules, generate_scan."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from pipeline.errors import InputError
from pipeline.phantom import SIZES, PhantomScan, generate_scan
from pipeline.phantom.anatomy import design_anatomy
from pipeline.phantom.lesions import LesionLook, LesionState, axial_size
from pipeline.phantom.render import Grid, Pose, Structure, TextureFields, render
from pipeline.phantom.scan import SIZE_PRESETS, design_grid
from pipeline.phantom.scenarios import expected_response
from pipeline.phantom.shapes import Ellipsoid, StarShape, rotation_matrix

# ------------------------------------------------------------------ shapes and true sizes


def test_star_shape_without_lobes_is_a_sphere() -> None:
    sphere = StarShape((1.0, 2.0, 3.0), 10.0)
    assert sphere.volume_mm3() == pytest.approx(4 / 3 * math.pi * 1000, rel=1e-3)
    distance = sphere.sdf(
        np.array([1.0, 16.0, 1.0]), np.array([2.0, 2.0, 2.0]), np.array([8.0, 3.0, 3.0])
    )
    assert distance[:2] == pytest.approx([-5.0, 5.0], abs=1e-3)
    assert distance[2] < -9.0  # the very centre is inside
    assert sphere.reach_mm == pytest.approx(10.0, rel=0.05)


def test_lobulated_volume_matches_voxel_count() -> None:
    rng = np.random.default_rng(3)
    lobes = [(rng.normal(size=3), 0.2, 3.0) for _ in range(4)]
    shape = StarShape(
        (0.0, 0.0, 0.0), 15.0, (1.1, 0.95, 0.96), rotation_matrix((1, 1, 0), 0.4), lobes
    )
    step = 0.5
    axis = np.arange(-30, 30 + step, step)
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    voxels = float((shape.sdf(x, y, z) < 0).sum()) * step**3
    assert voxels == pytest.approx(shape.volume_mm3(), rel=0.01)


@pytest.mark.parametrize("offset_mm", [0.0, 3.0, 6.0])
def test_axial_size_of_a_sphere_is_the_chord_at_the_slice_centre(offset_mm: float) -> None:
    radius = 12.0
    # slice centres at z = -20, -10, 0, 10, 20
    grid = Grid((5, 10, 10), (1.0, 1.0, 10.0), (0.0, 0.0, -20.0))
    sphere = StarShape((0.0, 0.0, offset_mm), radius)
    size = axial_size(sphere, grid, Pose())
    nearest = min(abs(z - offset_mm) for z in grid.axis_mm(2))
    chord = 2 * math.sqrt(radius**2 - nearest**2)
    assert size.longest_axial_diameter_mm == pytest.approx(chord, abs=0.05)
    assert size.short_axis_diameter_mm == pytest.approx(chord, abs=0.05)


def test_axial_size_of_an_ellipsoid_under_a_rotated_pose() -> None:
    ellipsoid = Ellipsoid((0.0, 0.0, 0.0), (20.0, 8.0, 30.0))
    grid = Grid((3, 10, 10), (1.0, 1.0, 5.0), (0.0, 0.0, -5.0))
    angle = math.radians(25.0)
    pose = Pose(rotation_matrix((0, 0, 1), angle), np.array([4.0, -3.0, 0.0]))
    size = axial_size(ellipsoid, grid, pose)
    # rotation about z keeps the axial cross-section: 40 mm by 16 mm at the centre plane
    assert size.longest_axial_diameter_mm == pytest.approx(40.0, abs=0.1)
    assert size.short_axis_diameter_mm == pytest.approx(16.0, abs=0.1)
    assert size.slice_index == 1


def test_render_partial_volume_and_labels_of_a_sphere() -> None:
    grid = Grid((40, 40, 40), (1.0, 1.0, 1.0), (-19.5, -19.5, -19.5))
    sphere = StarShape((0.0, 0.0, 0.0), 10.0)
    structure = Structure("ball", sphere, 100.0, 200.0, label=2, instance=1)
    volumes = render(
        [structure], grid, Pose(), TextureFields(grid, np.random.default_rng(0)), background_hu=0.0
    )
    voxel_volume = float((volumes.labels == 2).sum())
    assert voxel_volume == pytest.approx(4 / 3 * math.pi * 1000, rel=0.02)
    # partial volume: the image integral equals the sphere's volume times its value
    assert volumes.portal_venous_hu.sum() / 100.0 == pytest.approx(4 / 3 * math.pi * 1000, rel=0.02)
    assert volumes.arterial_hu.max() == pytest.approx(200.0)
    assert set(np.unique(volumes.instances)) == {0, 1}


# ------------------------------------------------------------------ grids


@pytest.mark.parametrize("size", SIZES)
def test_size_presets_give_the_documented_grids(size: str) -> None:
    preset = SIZE_PRESETS[size]
    for seed in range(4):
        anatomy = design_anatomy(np.random.default_rng(seed))
        grid = design_grid(np.random.default_rng(100 + seed), size, anatomy)
        nz, ny, nx = grid.shape_zyx
        low, high = preset["matrix"]
        assert low <= nx <= high and low <= ny <= high
        assert (
            preset["spacing_mm"][0] - 1e-6 <= grid.spacing_mm[0] <= preset["spacing_mm"][1] + 1e-6
        )
        # the field of view holds the whole body
        width = nx * grid.spacing_mm[0]
        assert width >= 2 * float(anatomy.body.a.max())
        coverage = (nz - 1) * grid.spacing_mm[2]
        assert 290.0 <= coverage <= 340.0
        if size == "full":
            assert (nx, ny) == (512, 512)
            assert 1.0 <= grid.spacing_mm[2] <= 5.0
            if grid.spacing_mm[2] <= 1.5:
                assert nz >= 200


def test_anatomy_is_physically_the_same_for_every_size() -> None:
    tiny = generate_scan(5, "tiny", lesions=False)
    assert tiny.liver_volume_ml == pytest.approx(
        generate_scan(5, "tiny", spacing_mm=(4.0, 4.0, 4.0), lesions=False).liver_volume_ml,
        rel=0.06,
    )


# ------------------------------------------------------------------ generate_scan


@pytest.fixture(scope="module")
def tiny_scan() -> PhantomScan:
    return generate_scan(11, "tiny")


def test_generate_scan_arrays_and_geometry(tiny_scan: PhantomScan) -> None:
    scan = tiny_scan
    assert scan.portal_venous_hu.dtype == np.float32 and scan.arterial_hu.dtype == np.float32
    assert scan.labels.dtype == np.uint8
    assert scan.portal_venous_hu.shape == scan.arterial_hu.shape == scan.labels.shape
    assert set(np.unique(scan.labels)) <= {0, 1, 2}
    assert np.all(scan.portal_venous_hu == np.round(scan.portal_venous_hu))
    assert scan.portal_venous_hu.min() >= -1024 and scan.portal_venous_hu.max() <= 3071
    assert 1000.0 <= scan.liver_volume_ml <= 3000.0
    portal, arterial, labels = scan.to_sitk()
    assert portal.GetSize() == scan.labels.shape[::-1]
    assert portal.GetSpacing() == pytest.approx(scan.spacing_mm)
    assert labels.GetPixelID() == sitk.sitkUInt8 and arterial.GetPixelID() == sitk.sitkFloat32
    assert arterial.GetOrigin() == pytest.approx(scan.origin_mm)
    assert portal.GetDirection() == pytest.approx(scan.direction)


def test_generate_scan_is_deterministic_and_seed_dependent(tiny_scan: PhantomScan) -> None:
    again = generate_scan(11, "tiny")
    assert np.array_equal(again.portal_venous_hu, tiny_scan.portal_venous_hu)
    assert np.array_equal(again.labels, tiny_scan.labels)
    other = generate_scan(12, "tiny")
    assert other.liver_volume_ml != tiny_scan.liver_volume_ml


def test_generate_scan_lesion_truth_matches_labels(tiny_scan: PhantomScan) -> None:
    voxel_ml = float(np.prod(tiny_scan.spacing_mm)) / 1000
    total = sum(lesion["volume_ml"] for lesion in tiny_scan.lesions)
    assert total == pytest.approx((tiny_scan.labels == 2).sum() * voxel_ml, abs=1e-3)
    for lesion in tiny_scan.lesions:
        assert lesion["viable_volume_ml"] <= lesion["volume_ml"] + 1e-9
        assert lesion["longest_axial_diameter_mm"] >= lesion["short_axis_diameter_mm"] - 1e-6


def test_generate_scan_overrides_and_no_lesions() -> None:
    scan = generate_scan(
        2, "tiny", spacing_mm=(6.0, 6.0, 7.0), shape_zyx=(40, 70, 72), lesions=False
    )
    assert scan.labels.shape == (40, 70, 72)
    assert scan.spacing_mm == (6.0, 6.0, 7.0)
    assert not (scan.labels == 2).any() and scan.lesions == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1, "size": "huge"}, "huge"),
        ({"seed": 1, "spacing_mm": (0.0, 1.0, 1.0)}, "spacing"),
        ({"seed": 1, "shape_zyx": (0, 10, 10)}, "shape"),
    ],
)
def test_generate_scan_refuses_bad_options(kwargs: dict, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        generate_scan(**kwargs)


def test_many_random_scans_have_sane_lesions() -> None:
    """Lesion counts 0-15 across seeds, lesions inside the liver label."""
    counts = []
    for seed in (30, 31, 34):
        scan = generate_scan(seed, "tiny", spacing_mm=(8.0, 8.0, 8.0))
        counts.append(len(scan.lesions))
        assert 0 <= len(scan.lesions) <= 15
        tumour = scan.labels == 2
        if tumour.any():
            # tumour sits in the liver: most of its neighbours are liver or tumour
            shell = ndimage.binary_dilation(tumour) & ~tumour
            assert (scan.labels[shell] > 0).mean() > 0.6
    assert max(counts) >= 2


# ------------------------------------------------------------------ expected response rules


def _lesion(
    key: str,
    diameter: float,
    *,
    viable: float | None = None,
    hu: float = 90.0,
    split_from: str | None = None,
) -> dict:
    volume = math.pi / 6 * diameter**3 / 1000
    return {
        "lesion_key": key,
        "split_from": split_from,
        "longest_axial_diameter_mm": diameter,
        "viable_longest_axial_diameter_mm": diameter if viable is None else viable,
        "volume_ml": volume,
        "viable_volume_ml": volume if (viable is None or viable > 0) else 0.0,
        "voxel_count": max(int(volume * 1000), 1),
        "mean_portal_venous_hu": hu,
    }


def _timepoints(*lesion_lists: list[dict]) -> list[dict]:
    names = ["baseline", "followup-1", "followup-2"]
    return [{"timepoint": names[i], "lesions": lesions} for i, lesions in enumerate(lesion_lists)]


@pytest.mark.parametrize(
    ("followups", "expected"),
    [
        ([[_lesion("L01", 20), _lesion("L02", 12)]], ("PR", "PR", "PR", "PR")),
        ([[_lesion("L01", 56), _lesion("L02", 34)]], ("PD", "PD", "PD", "PD")),
        ([[]], ("CR", "CR", "CR", "CR")),
        ([[_lesion("L01", 40), _lesion("L02", 24), _lesion("L09", 22)]], ("PD", "PD", "PD", "PD")),
        (
            [[_lesion("L01", 40, viable=12, hu=25), _lesion("L02", 24, viable=8, hu=25)]],
            ("SD", "PR", "PR", "SD"),
        ),
        ([[_lesion("L01", 40.5), _lesion("L02", 24.2)]], ("SD", "SD", "SD", "SD")),
    ],
)
def test_expected_response_rules(followups: list, expected: tuple) -> None:
    baseline = [_lesion("L01", 40), _lesion("L02", 24), _lesion("L03", 7)]
    responses, _ = expected_response(_timepoints(baseline, *followups), slice_mm=2.5)
    got = responses[0]
    assert (got["recist"], got["mrecist"], got["choi"], got["volumetric"]) == expected


def test_expected_response_uses_the_nadir() -> None:
    baseline = [_lesion("L01", 40), _lesion("L02", 24)]
    nadir = [_lesion("L01", 20), _lesion("L02", 12)]
    regrowth = [_lesion("L01", 34), _lesion("L02", 20)]  # -16 % from baseline, +70 % over the nadir
    responses, best = expected_response(_timepoints(baseline, nadir, regrowth), slice_mm=2.5)
    assert [r["recist"] for r in responses] == ["PR", "PD"]
    assert [r["volumetric"] for r in responses] == ["PR", "PD"]
    assert best == {"recist": "PR", "mrecist": "PR", "choi": "PR", "volumetric": "PR"}


def test_expected_response_sums_split_fragments() -> None:
    baseline = [_lesion("L01", 40), _lesion("L02", 24)]
    split = [
        _lesion("L01", 40),
        _lesion("L02a", 14, split_from="L02"),
        _lesion("L02b", 14, split_from="L02"),
    ]
    responses, _ = expected_response(_timepoints(baseline, split), slice_mm=2.5)
    assert responses[0]["basis"]["sum_of_diameters_mm"] == pytest.approx(68.0)
    assert responses[0]["recist"] == "SD"


def test_lesion_state_viable_region_excludes_necrosis_and_lipiodol() -> None:
    shape = StarShape((0.0, 0.0, 0.0), 10.0)
    look = LesionLook(80.0, -20.0, necrotic_core_fraction=0.5)
    state = LesionState("L01", shape, look, lipiodol=StarShape((0.0, 8.0, 0.0), 1.5))
    viable = state.viable_shape()
    points = np.array([[0.0, 0.0, 0.0], [0.0, -7.5, 0.0], [0.0, 8.0, 0.0], [7.5, 0.0, 0.0]])
    inside = viable.sdf(points[:, 0], points[:, 1], points[:, 2]) < 0
    # centre: necrotic; 7.5 mm out: viable; in the lipiodol deposit: not viable
    assert inside.tolist() == [False, True, False, True]
    assert state.necrotic
