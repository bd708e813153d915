"""Voxelising the phantom: partial-volume compositing, blur and CT-like noise.

The anatomy is a list of :class:`Structure` (a shape in the body frame, a
value per contrast phase, and what it does to the truth labels). The scan grid
is a :class:`Grid` in world (scanner) coordinates; a :class:`Pose` places the
body in the scanner (``world = rotation @ body + translation``, mm).

Rendering paints the structures in order, slab by slab along z. For each voxel
a structure's occupancy is a linear ramp of its signed distance over one voxel
(``0.5 - distance / voxel``, clipped to 0..1), so thin or oblique boundaries
get partial-volume values; the truth labels are taken at voxel centres
(distance below zero). Afterwards the images get the in-plane point-spread
blur and the slice profile, correlated noise, and the scanner's circular field
of view.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from scipy import ndimage

from pipeline.phantom.shapes import Shape

Array = np.ndarray

#: Value outside the reconstruction circle, as scanners store it.
OUTSIDE_FIELD_OF_VIEW_HU = -1024.0
HU_RANGE = (-1024.0, 3071.0)
AIR_HU = -1000.0


@dataclasses.dataclass(frozen=True)
class Grid:
    """A CT voxel grid with identity direction.

    ``shape_zyx`` is the array shape ``(z, y, x)``; ``spacing_mm`` and
    ``origin_mm`` are ``(x, y, z)`` in mm (LPS, SimpleITK convention: origin is
    the centre of voxel ``(0, 0, 0)``).
    """

    shape_zyx: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]

    @property
    def direction(self) -> tuple[float, ...]:
        return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def axis_mm(self, axis: int) -> np.ndarray:
        """World coordinates (mm) of the voxel centres along ``axis`` (0 x, 1 y, 2 z)."""
        count = self.shape_zyx[2 - axis]
        return self.origin_mm[axis] + self.spacing_mm[axis] * np.arange(count, dtype=float)

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    def centre_mm(self) -> np.ndarray:
        return np.array(
            [
                self.origin_mm[a] + self.spacing_mm[a] * (self.shape_zyx[2 - a] - 1) / 2
                for a in range(3)
            ]
        )


@dataclasses.dataclass(frozen=True)
class Pose:
    """Rigid placement of the body in the scanner: ``world = rotation @ body + translation_mm``."""

    rotation: np.ndarray = dataclasses.field(default_factory=lambda: np.eye(3))
    translation_mm: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))

    def to_world(self, points_xyz: np.ndarray) -> np.ndarray:
        return np.asarray(points_xyz, dtype=float) @ self.rotation.T + self.translation_mm

    def to_body(self, points_xyz: np.ndarray) -> np.ndarray:
        return (np.asarray(points_xyz, dtype=float) - self.translation_mm) @ self.rotation


Value = float | Callable[["Context"], Array]


@dataclasses.dataclass
class Structure:
    """One tissue region painted into the images.

    Attributes
    ----------
    name
        For debugging and statistics.
    shape
        Where it is (body frame, or scanner frame with ``fixed_to_scanner``).
    portal_venous_hu, arterial_hu
        Value in each phase (HU): a number, or a function of the
        :class:`Context` returning an array of the block's shape.
    label
        Truth label painted at voxel centres inside (0, 1, 2), or ``None`` to
        leave the labels as they are.
    instance
        Lesion number (1..N) for the truth bookkeeping, or ``None``.
    viable
        For lesions: the viable (enhancing) part; the rest counts as
        non-enhancing (necrosis, lipiodol).
    fixed_to_scanner
        The shape is in scanner coordinates (the table), not the body's.
    within_label
        Paint only voxels whose truth label (so far) is this value (vessels
        inside the liver).
    both
        Optional function returning ``(portal_venous, arterial)`` values at
        once (for values that share work); overrides the two above.
    detail_mm
        Size of the structure's finest feature (a vessel's radius); structures
        finer than 0.3 voxel are left out on coarse grids.
    """

    name: str
    shape: Shape
    portal_venous_hu: Value
    arterial_hu: Value
    label: int | None = None
    instance: int | None = None
    viable: Shape | None = None
    fixed_to_scanner: bool = False
    within_label: int | None = None
    both: Callable[[Context], tuple[Array, Array]] | None = None
    detail_mm: float | None = None


class Context:
    """What a value function sees: body coordinates, distance and texture fields of a block."""

    def __init__(
        self,
        x: Array,
        y: Array,
        z: Array,
        distance: Array,
        fields: Callable[[str], Array],
        ramp_mm: float = 1.0,
    ) -> None:
        self.x, self.y, self.z, self.distance = x, y, z, distance
        self._fields = fields
        #: Width (mm) of partial-volume ramps: the in-plane voxel size.
        self.ramp_mm = ramp_mm

    def field(self, name: str) -> Array:
        """A smooth random field of unit variance (``"low"``: ~15 mm, ``"mid"``: ~5 mm)."""
        return self._fields(name)


#: Correlation lengths (node spacing, mm) of the texture fields.
FIELD_SPACING_MM = {"low": 16.0, "mid": 5.0, "band": 9.0}


class TextureFields:
    """Smooth random fields over the scan, evaluated slab by slab.

    Each field is white noise on a lattice of half its correlation length
    (``FIELD_SPACING_MM``; no finer than the voxels), smoothed with a Gaussian on that lattice and
    interpolated linearly to the voxels, one axis at a time; values have
    about unit variance.
    """

    def __init__(self, grid: Grid, rng: np.random.Generator) -> None:
        self.grid = grid
        self.coarse: dict[str, np.ndarray] = {}
        self.nodes: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for name, spacing in FIELD_SPACING_MM.items():
            per_axis = []
            sizes = []
            for axis in range(3):
                # no finer than the voxels: on coarse grids the texture is coarser too
                step = max(spacing / 2.0, float(grid.spacing_mm[axis]))
                positions = grid.axis_mm(axis)
                first = positions[0] - 2 * step
                count = math.ceil((positions[-1] - first) / step) + 3
                where = (positions - first) / step
                index = np.clip(np.floor(where).astype(np.intp), 0, count - 2)
                weight = (where - index).astype(np.float32)
                per_axis.append((index, weight))
                sizes.append(count)
            white = rng.standard_normal((sizes[2], sizes[1], sizes[0])).astype(np.float32)
            smooth = ndimage.gaussian_filter(white, 1.4, mode="wrap")
            smooth /= max(float(smooth.std()), 1e-6)
            self.coarse[name] = smooth
            self.nodes[name] = per_axis

    def slab(self, name: str, z0: int, z1: int) -> np.ndarray:
        (ix, wx), (iy, wy), (iz, wz) = self.nodes[name]
        coarse = self.coarse[name]
        k, w = iz[z0:z1], wz[z0:z1, None, None]
        t = coarse[k] * (1.0 - w) + coarse[k + 1] * w  # (nz, Ny, Nx)
        w = wy[None, :, None]
        t = t[:, iy, :] * (1.0 - w) + t[:, iy + 1, :] * w  # (nz, ny, Nx)
        w = wx[None, None, :]
        return t[:, :, ix] * (1.0 - w) + t[:, :, ix + 1] * w  # (nz, ny, nx)


@dataclasses.dataclass
class RenderedVolumes:
    """Noise-free, unblurred images and exact truth maps on one grid (arrays ``[z, y, x]``)."""

    portal_venous_hu: np.ndarray
    arterial_hu: np.ndarray
    labels: np.ndarray
    instances: np.ndarray  # 2k-1: viable voxel of lesion k, 2k: non-viable voxel of lesion k


def _index_range(
    low: float, high: float, origin: float, spacing: float, count: int
) -> tuple[int, int]:
    start = max(math.floor((low - origin) / spacing), 0)
    stop = min(math.ceil((high - origin) / spacing) + 1, count)
    return start, max(stop, start)


def _world_box(shape: Shape, pose: Pose | None) -> tuple[np.ndarray, np.ndarray]:
    low, high = shape.bounds
    if pose is None:
        return low, high
    corners = np.array(
        [[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
    )
    world = pose.to_world(corners)
    return world.min(axis=0), world.max(axis=0)


def _world_boxes(
    structures: Sequence[Structure], pose: Pose
) -> list[tuple[np.ndarray, np.ndarray]]:
    """World-frame boxes of all structures at once (the 8 corners of each body-frame box)."""
    if not structures:
        return []
    low = np.array([s.shape.bounds[0] for s in structures], dtype=float)
    high = np.array([s.shape.bounds[1] for s in structures], dtype=float)
    pick = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)])
    corners = np.where(pick[None, :, :] == 0, low[:, None, :], high[:, None, :])  # (n, 8, 3)
    world = corners @ pose.rotation.T + pose.translation_mm
    fixed = np.array([s.fixed_to_scanner for s in structures])
    world[fixed] = corners[fixed]
    return list(zip(world.min(axis=1), world.max(axis=1), strict=True))


def _slabs(
    depth: int, plane_voxels: int, target_voxels: int = 3_000_000
) -> Iterator[tuple[int, int]]:
    step = max(1, target_voxels // max(plane_voxels, 1))
    for start in range(0, depth, step):
        yield start, min(start + step, depth)


def render(
    structures: Sequence[Structure],
    grid: Grid,
    pose: Pose,
    fields: TextureFields,
    *,
    background_hu: float = AIR_HU,
    timings: dict[str, float] | None = None,
) -> RenderedVolumes:
    """Paint ``structures`` in order onto ``grid`` with the body at ``pose``."""
    nz, ny, nx = grid.shape_zyx
    portal = np.full(grid.shape_zyx, background_hu, dtype=np.float32)
    arterial = np.full(grid.shape_zyx, background_hu, dtype=np.float32)
    labels = np.zeros(grid.shape_zyx, dtype=np.uint8)
    instances = np.zeros(grid.shape_zyx, dtype=np.uint16)
    xs, ys, zs = (grid.axis_mm(a).astype(np.float32) for a in range(3))
    ramp = float(max(grid.spacing_mm[0], grid.spacing_mm[1]))
    inverse = pose.rotation.T.astype(np.float32)
    shift = (-(pose.rotation.T @ pose.translation_mm)).astype(np.float32)
    smallest = 0.3 * float(min(grid.spacing_mm[0], grid.spacing_mm[1]))
    structures = [s for s in structures if s.detail_mm is None or s.detail_mm >= smallest]
    boxes = _world_boxes(structures, pose)

    for z0, z1 in _slabs(nz, ny * nx):
        zz = zs[z0:z1, None, None]
        yy = ys[None, :, None]
        xx = xs[None, None, :]
        body = [
            inverse[r, 0] * xx + inverse[r, 1] * yy + inverse[r, 2] * zz + shift[r]
            for r in range(3)
        ]
        cache: dict[str, np.ndarray] = {}

        def slab_field(name: str, _z0: int = z0, _z1: int = z1, _cache: dict = cache) -> np.ndarray:
            if name not in _cache:
                _cache[name] = fields.slab(name, _z0, _z1)
            return _cache[name]

        for structure, (low, high) in zip(structures, boxes, strict=True):
            started = time.perf_counter() if timings is not None else 0.0
            k0, k1 = _index_range(low[2], high[2], grid.origin_mm[2], grid.spacing_mm[2], nz)
            k0, k1 = max(k0, z0), min(k1, z1)
            if k0 >= k1:
                continue
            j0, j1 = _index_range(low[1], high[1], grid.origin_mm[1], grid.spacing_mm[1], ny)
            i0, i1 = _index_range(low[0], high[0], grid.origin_mm[0], grid.spacing_mm[0], nx)
            if j0 >= j1 or i0 >= i1:
                continue
            block = (slice(k0 - z0, k1 - z0), slice(j0, j1), slice(i0, i1))
            if structure.fixed_to_scanner:
                x = np.broadcast_to(xx[:, :, i0:i1], (k1 - k0, j1 - j0, i1 - i0))
                y = np.broadcast_to(yy[:, j0:j1, :], (k1 - k0, j1 - j0, i1 - i0))
                z = np.broadcast_to(zz[k0 - z0 : k1 - z0], (k1 - k0, j1 - j0, i1 - i0))
            else:
                x, y, z = (b[block] for b in body)
            distance = structure.shape.sdf(x, y, z)
            alpha = np.clip(0.5 - distance * (1.0 / ramp), 0.0, 1.0)
            target = (slice(k0, k1), slice(j0, j1), slice(i0, i1))
            if structure.within_label is not None:
                allowed = labels[target] == structure.within_label
                alpha *= allowed
            if not alpha.any():
                continue
            context = Context(
                x,
                y,
                z,
                distance,
                lambda name, _b=block, _f=slab_field: _f(name)[_b],
                ramp,
            )
            if structure.both is not None:
                pair = structure.both(context)
            else:
                pair = tuple(
                    v(context) if callable(v) else v
                    for v in (structure.portal_venous_hu, structure.arterial_hu)
                )
            for image, values in zip((portal, arterial), pair, strict=True):
                part = image[target]
                part += alpha * (values - part)
            inside = distance < 0
            if structure.within_label is not None:
                inside &= allowed
            if structure.label is not None:
                labels[target][inside] = structure.label
            if structure.instance is not None:
                code = np.full(inside.shape, 2 * structure.instance, dtype=np.uint16)
                if structure.viable is not None:
                    viable = structure.viable.sdf(x, y, z) < 0
                    code[viable] = 2 * structure.instance - 1
                else:
                    code[:] = 2 * structure.instance - 1
                instances[target][inside] = code[inside]
            if timings is not None:
                key = structure.name.rstrip("0123456789. +-")
                timings[key] = timings.get(key, 0.0) + time.perf_counter() - started
    return RenderedVolumes(portal, arterial, labels, instances)


# ----------------------------------------------------------------- finishing


#: Smallest blur (Gaussian sigma in voxels) along z, y and x. Noise added before the blur
#: gets the neighbour correlation of real portal-venous CT (about 0.27 in-plane and 0.12
#: between slices, measured by ``benchmarks/phantom_realism.py``).
MIN_BLUR_VOXELS = (0.42, 0.5, 0.5)
TRUNCATE = 3.0


def blur_sigmas(grid: Grid, psf_mm: float, slice_thickness_mm: float) -> tuple[float, float, float]:
    """Gaussian sigmas (voxels, ``(z, y, x)``) of the in-plane point spread and the slice profile.

    The in-plane point spread has sigma ``psf_mm``; the slice sensitivity
    profile is a Gaussian of full width at half maximum ``slice_thickness_mm``.
    """
    sx, sy, sz = grid.spacing_mm
    wanted = (slice_thickness_mm / 2.355 / sz, psf_mm / sy, psf_mm / sx)
    return tuple(max(w, m) for w, m in zip(wanted, MIN_BLUR_VOXELS, strict=True))  # type: ignore[return-value]


def _noise_gain(sigma: float) -> float:
    """How much a Gaussian filter of ``sigma`` voxels shrinks white noise (std ratio, one axis)."""
    radius = int(TRUNCATE * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1, dtype=float)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    return float(np.sqrt((weights**2).sum()))


def finish(
    image: np.ndarray,
    grid: Grid,
    *,
    psf_mm: float,
    slice_thickness_mm: float,
    noise_sigma_hu: float,
    rng: np.random.Generator,
    field_of_view: np.ndarray,
) -> np.ndarray:
    """Add noise, blur, blank outside the field of view and round to whole HU (float32).

    White noise goes in before the blur, scaled so that after it the noise has
    standard deviation ``noise_sigma_hu`` and the blur's neighbour correlation.
    ``image`` is used as scratch space.
    """
    sigmas = blur_sigmas(grid, psf_mm, slice_thickness_mm)
    gain = math.prod(_noise_gain(s) for s in sigmas)
    scale = np.float32(noise_sigma_hu / gain)
    for start in range(0, image.shape[0], 16):
        block = image[start : start + 16]
        block += rng.standard_normal(block.shape, dtype=np.float32) * scale
    out = ndimage.gaussian_filter(image, sigmas, mode="nearest", truncate=TRUNCATE)
    out[:, ~field_of_view] = OUTSIDE_FIELD_OF_VIEW_HU
    np.clip(out, *HU_RANGE, out=out)
    np.rint(out, out=out)
    return out.astype(np.float32, copy=False)


def field_of_view_mask(
    grid: Grid, centre_xy_mm: tuple[float, float], diameter_mm: float
) -> np.ndarray:
    """``[y, x]`` True inside the scanner's circular reconstruction field."""
    xs, ys = grid.axis_mm(0), grid.axis_mm(1)
    return ((xs[None, :] - centre_xy_mm[0]) ** 2 + (ys[:, None] - centre_xy_mm[1]) ** 2) <= (
        diameter_mm / 2
    ) ** 2
