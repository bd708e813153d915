"""One phantom CT scan: grid presets, patient position, rendering and truth.

:func:`generate_scan` makes one random two-phase scan with exact labels (for
tests and for training a segmentation model on the fly); the cohort
generator (:mod:`pipeline.phantom.cohort`) uses :func:`render_scan` for
every time point of every subject.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.phantom.anatomy import Anatomy, design_anatomy
from pipeline.phantom.lesions import (
    LesionState,
    axial_size,
    liver_map,
    place_centres,
    random_look,
    random_star,
    viable_nodule,
)
from pipeline.phantom.render import (
    Grid,
    Pose,
    TextureFields,
    field_of_view_mask,
    finish,
    render,
)
from pipeline.phantom.shapes import rotation_matrix

#: Grid presets: in-plane matrix (min, max), in-plane spacing (mm), slice spacing (mm).
SIZE_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"matrix": (64, 80), "spacing_mm": (5.0, 6.0), "slice_mm": (5.0, 6.0)},
    "small": {"matrix": (128, 160), "spacing_mm": (2.5, 3.0), "slice_mm": (2.5, 3.0)},
    "medium": {"matrix": (256, 256), "spacing_mm": (1.3, 1.6), "slice_mm": (2.0, 3.0)},
    "full": {
        "matrix": (512, 512),
        "spacing_mm": (0.6, 0.9),
        "slice_choices_mm": (1.0, 1.25, 1.5, 2.0, 3.0, 5.0),
        "slice_weights": (0.3, 0.2, 0.2, 0.1, 0.1, 0.1),
    },
}
SIZES = tuple(SIZE_PRESETS)


@dataclasses.dataclass
class Acquisition:
    """Scanner settings of one subject (kept for all its time points)."""

    psf_mm: float  # in-plane point-spread sigma
    slice_thickness_mm: float
    noise_portal_venous_hu: float
    noise_arterial_hu: float


@dataclasses.dataclass
class PhantomScan:
    """A two-phase phantom CT with exact truth.

    Arrays are indexed ``[z, y, x]``; ``spacing_mm`` and ``origin_mm`` are
    ``(x, y, z)`` (mm, LPS) and ``direction`` the 9 direction cosines, as
    SimpleITK has them. Images hold whole Hounsfield units (float32, the values
    written as int16); ``labels`` holds 0 background, 1 liver parenchyma,
    2 tumour. ``lesions`` is the truth of each lesion (see
    :func:`lesion_truth`).
    """

    portal_venous_hu: np.ndarray
    arterial_hu: np.ndarray
    labels: np.ndarray
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    lesions: list[dict[str, Any]]
    liver_volume_ml: float = 0.0
    tumor_volume_ml: float = 0.0
    noise_sigma_hu: float = 0.0
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_deg: float = 0.0
    rotation_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def _image(self, array: np.ndarray) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(self.direction)
        return image

    def to_sitk(self) -> tuple[sitk.Image, sitk.Image, sitk.Image]:
        """``(portal_venous, arterial, labels)``: float32 HU images and a UInt8 label map."""
        return (
            self._image(self.portal_venous_hu.astype(np.float32, copy=False)),
            self._image(self.arterial_hu.astype(np.float32, copy=False)),
            self._image(self.labels.astype(np.uint8, copy=False)),
        )

    @property
    def involvement_percent(self) -> float:
        return (
            100.0 * self.tumor_volume_ml / self.liver_volume_ml if self.liver_volume_ml > 0 else 0.0
        )


# ------------------------------------------------------------------ grid and position


def check_size(size: str) -> str:
    if size not in SIZE_PRESETS:
        raise InputError("--size", f"unknown size {size!r}", "one of " + ", ".join(SIZES))
    return size


def body_width_mm(anatomy: Anatomy) -> float:
    body = anatomy.body
    growth = 1.0 + sum(abs(c) for _, c, _ in body.harmonics)
    return 2.0 * float(body.a.max()) * growth


def design_grid(
    rng: np.random.Generator,
    size: str,
    anatomy: Anatomy,
    *,
    spacing_mm: Sequence[float] | None = None,
    shape_zyx: Sequence[int] | None = None,
) -> Grid:
    """The scan grid of a subject: preset ranges, field of view fitted to the body.

    ``spacing_mm`` is ``(x, y, z)``, ``shape_zyx`` is ``(z, y, x)``; either
    overrides the preset (given both, the grid is exactly that, centred on the
    body and starting at the lung bases).
    """
    preset = SIZE_PRESETS[check_size(size)]
    field_of_view = body_width_mm(anatomy) + 24.0
    coverage = anatomy.scan_top_z - anatomy.scan_bottom_z
    if spacing_mm is not None:
        spacing = tuple(float(s) for s in spacing_mm)
        if len(spacing) != 3 or not all(0.05 <= s <= 20.0 for s in spacing):
            raise InputError(
                "spacing_mm", f"not three spacings between 0.05 and 20 mm: {spacing_mm!r}"
            )
    else:
        low, high = preset["spacing_mm"]
        in_plane = float(rng.uniform(low, high))
        lo_n, hi_n = preset["matrix"]
        if shape_zyx is None:
            needed = field_of_view / in_plane
            if needed > hi_n:
                in_plane = min(field_of_view / hi_n, high)
        else:
            in_plane = min(max(in_plane, field_of_view / int(shape_zyx[2])), high)
        if "slice_choices_mm" in preset:
            slice_mm = float(rng.choice(preset["slice_choices_mm"], p=preset["slice_weights"]))
        else:
            slice_mm = float(rng.uniform(*preset["slice_mm"]))
        spacing = (round(in_plane, 4), round(in_plane, 4), round(slice_mm, 4))
    if shape_zyx is not None:
        shape = tuple(int(s) for s in shape_zyx)
        if len(shape) != 3 or not all(s >= 1 for s in shape):
            raise InputError("shape_zyx", f"not three positive sizes: {shape_zyx!r}")
    else:
        lo_n, hi_n = preset["matrix"]
        n = int(np.clip(math.ceil(field_of_view / spacing[0] / 2) * 2, lo_n, hi_n))
        ny = int(np.clip(math.ceil(field_of_view / spacing[1] / 2) * 2, lo_n, hi_n))
        nz = round(coverage / spacing[2]) + 1
        shape = (nz, ny, n)
    nz, ny, nx = shape
    body = anatomy.body
    y_centre = (float(body.b_posterior.max()) - float(body.b_anterior.max())) / 2.0 + 10.0
    origin = (
        round(-(nx - 1) * spacing[0] / 2.0, 4),
        round(y_centre - (ny - 1) * spacing[1] / 2.0, 4),
        round(anatomy.scan_top_z - (nz - 1) * spacing[2], 4),
    )
    return Grid(shape, spacing, origin)  # type: ignore[arg-type]


def design_acquisition(rng: np.random.Generator, grid: Grid) -> Acquisition:
    noise = float(rng.uniform(10.0, 25.0))
    return Acquisition(
        psf_mm=float(rng.uniform(0.3, 0.5)),
        slice_thickness_mm=float(grid.spacing_mm[2]),
        noise_portal_venous_hu=noise,
        noise_arterial_hu=noise * float(rng.uniform(0.9, 1.15)),
    )


def random_pose(
    rng: np.random.Generator, max_shift_mm: float = 15.0, max_rotation_deg: float = 3.0
) -> Pose:
    """A repositioning: shift up to ``max_shift_mm`` (little along y: the table), small rotation."""
    shift = np.array(
        [
            rng.uniform(3.0, max_shift_mm) * rng.choice([-1, 1]),
            rng.uniform(-2.0, 2.0),
            rng.uniform(3.0, max_shift_mm) * rng.choice([-1, 1]),
        ]
    )
    length = float(np.linalg.norm(shift))
    if length > max_shift_mm:
        shift *= max_shift_mm / length
    axis = np.array([rng.normal(0, 0.25), rng.normal(0, 0.25), 1.0])
    axis /= np.linalg.norm(axis)
    angle = math.radians(float(rng.uniform(0.5, max_rotation_deg)) * rng.choice([-1, 1]))
    return Pose(rotation_matrix(axis, angle), shift)


def pose_description(pose: Pose) -> dict[str, Any]:
    """Shift (mm), rotation angle (degrees) and axis of a pose, for truth.json."""
    rotation = pose.rotation
    angle = math.degrees(math.acos(float(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0))))
    if angle < 1e-9:
        axis = np.array([0.0, 0.0, 1.0])
    else:
        axis = np.array(
            [
                rotation[2, 1] - rotation[1, 2],
                rotation[0, 2] - rotation[2, 0],
                rotation[1, 0] - rotation[0, 1],
            ]
        )
        axis /= np.linalg.norm(axis)
    return {
        "shift_mm": [round(float(v), 3) for v in pose.translation_mm],
        "rotation_deg": round(angle, 4),
        "rotation_axis": [round(float(v), 6) for v in axis],
    }


def table_height_mm(anatomy: Anatomy, pose: Pose) -> float:
    """World y of the table top under the body at ``pose`` (the body rests on it)."""
    body = anatomy.body
    zs = np.linspace(anatomy.scan_bottom_z, anatomy.scan_top_z, 9)
    xs = np.linspace(-float(body.a.max()), float(body.a.max()), 41)
    z, x = np.meshgrid(zs, xs)
    y = np.full_like(x, float(body.b_posterior.max()) * 1.2)
    # walk each posterior column up to the skin
    for _ in range(30):
        d = body.sdf(x, y, z)
        y = y - np.maximum(d, 0.0)
    points = np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1)
    inside = body.sdf(points[:, 0], points[:, 1], points[:, 2]) < 1.0
    world = pose.to_world(points[inside])
    return float(world[:, 1].max()) + 2.0


# ------------------------------------------------------------------ rendering and truth


def render_scan(
    anatomy: Anatomy,
    lesions: Sequence[LesionState],
    grid: Grid,
    pose: Pose,
    acquisition: Acquisition,
    rng: np.random.Generator,
) -> PhantomScan:
    """Render both phases with exact labels and compute the truth of every lesion."""
    liver = anatomy.tissues["liver"]
    lesion_structures = [
        state.structure(i + 1, liver.portal_venous, liver.arterial)
        for i, state in enumerate(lesions)
    ]
    structures = anatomy.structures(lesion_structures, table_y_mm=table_height_mm(anatomy, pose))
    fields = TextureFields(grid, rng)
    volumes = render(structures, grid, pose, fields)
    centre = grid.centre_mm()
    width = min(grid.shape_zyx[2] * grid.spacing_mm[0], grid.shape_zyx[1] * grid.spacing_mm[1])
    fov = field_of_view_mask(grid, (float(centre[0]), float(centre[1])), width)
    portal = finish(
        volumes.portal_venous_hu,
        grid,
        psf_mm=acquisition.psf_mm,
        slice_thickness_mm=acquisition.slice_thickness_mm,
        noise_sigma_hu=acquisition.noise_portal_venous_hu,
        rng=rng,
        field_of_view=fov,
    )
    del volumes.portal_venous_hu
    arterial = finish(
        volumes.arterial_hu,
        grid,
        psf_mm=acquisition.psf_mm,
        slice_thickness_mm=acquisition.slice_thickness_mm,
        noise_sigma_hu=acquisition.noise_arterial_hu,
        rng=rng,
        field_of_view=fov,
    )
    del volumes.arterial_hu
    labels = volumes.labels
    voxel_ml = grid.voxel_volume_ml
    truths = lesion_truth(lesions, volumes.instances, portal, arterial, grid, pose)
    description = pose_description(pose)
    return PhantomScan(
        portal_venous_hu=portal,
        arterial_hu=arterial,
        labels=labels,
        spacing_mm=grid.spacing_mm,
        origin_mm=grid.origin_mm,
        direction=grid.direction,
        lesions=truths,
        liver_volume_ml=float(np.count_nonzero(labels)) * voxel_ml,
        tumor_volume_ml=float(np.count_nonzero(labels == 2)) * voxel_ml,
        noise_sigma_hu=acquisition.noise_portal_venous_hu,
        shift_mm=tuple(description["shift_mm"]),  # type: ignore[arg-type]
        rotation_deg=description["rotation_deg"],
        rotation_axis=tuple(description["rotation_axis"]),  # type: ignore[arg-type]
    )


def lesion_truth(
    lesions: Sequence[LesionState],
    instances: np.ndarray,
    portal: np.ndarray,
    arterial: np.ndarray,
    grid: Grid,
    pose: Pose,
) -> list[dict[str, Any]]:
    """Truth of each lesion on the written grid.

    Volumes are exact voxel counts of the label map times the voxel volume;
    ``design_volume_ml`` is the analytic volume of the lesion's surface;
    diameters come from the analytic surface in the axial planes at slice
    centres (:func:`~pipeline.phantom.lesions.axial_size`), for the whole
    lesion and for its viable (enhancing) part; the centroid is the mean
    physical point (LPS mm) of the lesion's voxels; mean attenuation is
    measured on the written images over the lesion's voxels.
    """
    voxel_ml = grid.voxel_volume_ml
    occupied = np.flatnonzero(instances.ravel())
    codes = instances.ravel()[occupied]
    z, y, x = np.unravel_index(occupied, instances.shape)
    portal_values = portal.ravel()[occupied]
    arterial_values = arterial.ravel()[occupied]
    out = []
    for i, state in enumerate(lesions):
        number = i + 1
        mine = (codes == 2 * number - 1) | (codes == 2 * number)
        viable = codes == 2 * number - 1
        count = int(mine.sum())
        size = axial_size(state.shape, grid, pose)
        viable_size = axial_size(state.viable_shape(), grid, pose)
        if count:
            centroid = [
                grid.origin_mm[0] + grid.spacing_mm[0] * float(x[mine].mean()),
                grid.origin_mm[1] + grid.spacing_mm[1] * float(y[mine].mean()),
                grid.origin_mm[2] + grid.spacing_mm[2] * float(z[mine].mean()),
            ]
            mean_portal = float(portal_values[mine].mean())
            mean_arterial = float(arterial_values[mine].mean())
        else:
            centroid = [float(v) for v in pose.to_world(state.shape.centre[None, :])[0]]
            mean_portal = mean_arterial = None
        out.append(
            {
                "lesion_key": state.key,
                "status": state.status,
                "split_from": state.split_from,
                "volume_ml": round(count * voxel_ml, 4),
                "design_volume_ml": round(state.shape.volume_mm3() / 1000.0, 4),
                "viable_volume_ml": round(int(viable.sum()) * voxel_ml, 4),
                "voxel_count": count,
                "in_label_map": count > 0,
                "longest_axial_diameter_mm": round(size.longest_axial_diameter_mm, 3),
                "short_axis_diameter_mm": round(size.short_axis_diameter_mm, 3),
                "longest_diameter_slice": size.slice_index,
                "viable_longest_axial_diameter_mm": round(viable_size.longest_axial_diameter_mm, 3),
                "centroid_mm": [round(v, 3) for v in centroid],
                "mean_portal_venous_hu": None if mean_portal is None else round(mean_portal, 2),
                "mean_arterial_hu": None if mean_arterial is None else round(mean_arterial, 2),
                "necrotic": bool(state.necrotic),
                "lipiodol": state.lipiodol is not None,
                "arterial_enhancement_hu": round(state.look.arterial_contrast_hu, 2),
                "portal_venous_contrast_hu": round(state.look.portal_contrast_hu, 2),
            }
        )
    return out


# ------------------------------------------------------------------ single random scan


def random_lesions(
    rng: np.random.Generator, anatomy: Anatomy, *, allow_none: bool = True
) -> list[LesionState]:
    """1-15 random metastases (none in about one scan out of eight when ``allow_none``)."""
    if allow_none and rng.random() < 0.12:
        return []
    count = int(min(15, 1 + rng.geometric(0.22)))
    diameters = sorted(np.exp(rng.uniform(math.log(5.0), math.log(80.0), count)), reverse=True)
    liver = liver_map(anatomy.liver, anatomy.carved_from_liver())
    states: list[LesionState] = []
    taken: list[tuple[np.ndarray, float]] = []
    for diameter in diameters:
        shape = random_star(rng, (0.0, 0.0, 0.0), float(diameter), float(rng.uniform(0, 1)))
        try:
            (centre,) = place_centres(rng, liver, [shape.reach_mm], taken=taken, gap_mm=8.0)
        except RuntimeError:
            continue
        taken.append((centre, shape.reach_mm))
        shape = shape.scaled(1.0, centre)
        look = random_look(rng, float(diameter))
        state = LesionState(f"L{len(states) + 1:02d}", shape, look)
        chance = rng.random()
        if chance < 0.08 and diameter > 15:
            state.treated = True
            state.viable_nodule = viable_nodule(rng, shape, float(rng.uniform(0.2, 0.4)))
        elif chance < 0.14 and diameter > 15:
            state.lipiodol = shape.scaled(float(rng.uniform(0.25, 0.6)))
            state.lipiodol_hu = float(rng.uniform(450, 1100))
        states.append(state)
    return states


def _streams(seed: int, count: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(count)]


def generate_scan(
    seed: int,
    size: str = "small",
    *,
    spacing_mm: tuple[float, float, float] | None = None,
    shape_zyx: tuple[int, int, int] | None = None,
    lesions: bool = True,
) -> PhantomScan:
    """One random two-phase phantom scan with exact labels.

    Parameters
    ----------
    seed
        Any non-negative integer; the same seed and options give the same scan.
    size
        Grid preset: ``tiny``, ``small``, ``medium`` or ``full``.
    spacing_mm
        Voxel spacing ``(x, y, z)`` in mm instead of the preset's random one.
    shape_zyx
        Array shape ``(z, y, x)`` instead of the preset's (the field of view
        then follows from the spacing).
    lesions
        ``False`` for a liver without metastases; otherwise 0-15 random ones.

    Returns
    -------
    PhantomScan
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError("seed", f"not a non-negative integer: {seed!r}")
    anatomy_rng, grid_rng, lesion_rng, pose_rng, noise_rng = _streams(int(seed), 5)
    anatomy = design_anatomy(anatomy_rng)
    grid = design_grid(grid_rng, size, anatomy, spacing_mm=spacing_mm, shape_zyx=shape_zyx)
    acquisition = design_acquisition(grid_rng, grid)
    states = random_lesions(lesion_rng, anatomy) if lesions else []
    pose = random_pose(pose_rng, max_shift_mm=10.0) if pose_rng.random() < 0.5 else Pose()
    return render_scan(anatomy, states, grid, pose, acquisition, noise_rng)
