"""Liver metastases of a neuroendocrine tumour: shapes, appearance, placement and true sizes.

A lesion is a round-to-lobulated :class:`~pipeline.phantom.shapes.StarShape`
in the body frame. Its appearance follows hypervascular metastases:
arterial-phase hyperenhancement (+40..+120 HU over the liver), iso- to
hypodense in the portal-venous phase (-5..-40 HU), sometimes rim enhancement
or a necrotic centre (non-enhancing, 10-30 HU in both phases); after
embolisation the lesion can be mostly necrotic with a small viable nodule, and
after conventional TACE it can hold lipiodol (over 300 HU in every phase).

True sizes are computed from the analytic surface, independently of any
voxelisation: the longest diameter in each axial plane at the scan's slice
centres (the plane is sampled finely and its contour traced with sub-sample
precision), the longest over the planes, and the short axis in that plane as
the extent perpendicular to the longest diameter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage import measure

from pipeline.phantom.render import Context, Grid, Pose, Structure
from pipeline.phantom.shapes import Array, Ellipsoid, Shape, StarShape, euler_matrix, union_bounds

NECROSIS_HU = (12.0, 28.0)
LIPIODOL_HU = (450.0, 1100.0)


@dataclasses.dataclass
class LesionLook:
    """How a lesion enhances (HU relative to the liver, or absolute where said)."""

    arterial_contrast_hu: float
    portal_contrast_hu: float
    rim: bool = False
    necrotic_core_fraction: float = 0.0  # radius fraction of a central necrosis (0: none)
    necrosis_hu: float = 20.0


@dataclasses.dataclass
class LesionState:
    """A lesion (or a fragment of one) as it is at one time point.

    ``status`` is ``"present"`` (seen before), ``"new"`` (first seen now) or
    ``"split"`` (a fragment of ``split_from``). ``treated`` means mostly
    non-enhancing after treatment, viable only inside ``viable_nodule``;
    ``lipiodol`` is the region of dense lipiodol (or ``None``).
    """

    key: str
    shape: StarShape
    look: LesionLook
    status: str = "present"
    split_from: str | None = None
    treated: bool = False
    viable_nodule: Shape | None = None
    lipiodol: Shape | None = None
    lipiodol_hu: float = 700.0

    @property
    def necrotic(self) -> bool:
        return self.treated or self.look.necrotic_core_fraction > 0

    def core(self) -> StarShape | None:
        if self.look.necrotic_core_fraction <= 0:
            return None
        return self.shape.scaled(self.look.necrotic_core_fraction)

    def viable_shape(self) -> Shape:
        return ViableRegion(self)

    def structure(
        self, instance: int, liver_portal_hu: float, liver_arterial_hu: float
    ) -> Structure:
        """The lesion as a structure to paint (label 2, truth instance ``instance``)."""
        shape, look, state = self.shape, self.look, self

        def values(c: Context) -> tuple[Array, Array]:
            rho = shape.normalised_radius(c.x, c.y, c.z)
            texture = 5.0 * c.field("mid") + 3.0 * c.field("low")
            profile = 0.45 + 0.55 * np.clip((rho - 0.45) / 0.4, 0.0, 1.0) if look.rim else 1.0
            portal = liver_portal_hu + look.portal_contrast_hu + texture
            arterial = liver_arterial_hu + look.arterial_contrast_hu * profile + 1.5 * texture
            necrosis = look.necrosis_hu + 3.0 * c.field("mid")
            if state.treated:
                weight = np.ones_like(rho)
                if state.viable_nodule is not None:
                    weight = np.clip(0.5 + state.viable_nodule.sdf(c.x, c.y, c.z) / 1.5, 0.0, 1.0)
            elif look.necrotic_core_fraction > 0:
                weight = np.clip((look.necrotic_core_fraction - rho) / 0.08 + 0.5, 0.0, 1.0)
            else:
                weight = None
            if weight is not None:
                portal = portal + (necrosis - portal) * weight
                arterial = arterial + (necrosis - arterial) * weight
            if state.lipiodol is not None:
                dense = np.clip(0.5 - state.lipiodol.sdf(c.x, c.y, c.z) / 1.5, 0.0, 1.0)
                deposit = state.lipiodol_hu + 60.0 * c.field("mid")
                portal = portal + (deposit - portal) * dense
                arterial = arterial + (deposit - arterial) * dense
            return portal, arterial

        return Structure(
            f"lesion {self.key}",
            self.shape,
            0.0,
            0.0,
            label=2,
            instance=instance,
            viable=self.viable_shape(),
            both=values,
        )


class ViableRegion(Shape):
    """The enhancing part of a lesion: without necrosis and lipiodol."""

    def __init__(self, state: LesionState) -> None:
        self.state = state
        self.bounds = state.shape.bounds
        self.core = state.core()

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        state = self.state
        d = state.shape.sdf(x, y, z)
        if state.treated:
            if state.viable_nodule is None:
                return np.full(np.broadcast(x, y, z).shape, 1e3)
            d = np.maximum(d, state.viable_nodule.sdf(x, y, z))
        elif self.core is not None:
            d = np.maximum(d, -self.core.sdf(x, y, z))
        if state.lipiodol is not None:
            d = np.maximum(d, -state.lipiodol.sdf(x, y, z))
        return d


def random_star(
    rng: np.random.Generator, centre: Sequence[float], diameter_mm: float, lobulation: float
) -> StarShape:
    """A lesion of about ``diameter_mm`` before lobes; ``lobulation`` 0 round .. 1 lobulated."""
    ratios = 1.0 + rng.uniform(-0.12, 0.12, 3) * (0.5 + lobulation)
    rotation = euler_matrix(*rng.uniform(0, 2 * math.pi, 3))
    lobes = []
    for _ in range(int(rng.integers(2, 6))):
        direction = rng.normal(size=3)
        lobes.append(
            (
                direction,
                float(rng.uniform(0.04, 0.10 + 0.18 * lobulation)),
                float(rng.uniform(2.0, 5.0)),
            )
        )
    return StarShape(centre, diameter_mm / 2.0, ratios / np.cbrt(np.prod(ratios)), rotation, lobes)


def random_look(
    rng: np.random.Generator,
    diameter_mm: float,
    *,
    mild_portal: bool = False,
    allow_core: bool = True,
) -> LesionLook:
    """A random hypervascular look; ``mild_portal`` keeps the portal contrast in -5..-18 HU."""
    portal = float(rng.uniform(-18, -5) if mild_portal else rng.uniform(-40, -5))
    core = 0.0
    if allow_core and diameter_mm > 25 and rng.random() < 0.3:
        core = float(rng.uniform(0.3, 0.55))
    return LesionLook(
        arterial_contrast_hu=float(rng.uniform(40, 120)),
        portal_contrast_hu=portal,
        rim=bool(rng.random() < 0.25),
        necrotic_core_fraction=core,
        necrosis_hu=float(rng.uniform(*NECROSIS_HU)),
    )


# ------------------------------------------------------------------ placement


@dataclasses.dataclass
class LiverMap:
    """The liver on a coarse body-frame lattice, for placing lesions."""

    points: np.ndarray  # (n, 3) mm, lattice points inside the liver
    depth_mm: np.ndarray  # (n,) distance to the liver surface
    spacing_mm: float


def liver_map(liver: Shape, holes: Sequence[Shape], spacing_mm: float = 5.0) -> LiverMap:
    """Lattice points of ``liver`` minus ``holes`` with their depth below the surface."""
    low, high = liver.bounds
    axes = [np.arange(low[a] - spacing_mm, high[a] + 2 * spacing_mm, spacing_mm) for a in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    inside = liver.sdf(x, y, z) < 0
    for hole in holes:
        inside &= hole.sdf(x, y, z) >= 0
    depth = ndimage.distance_transform_edt(inside) * spacing_mm
    return LiverMap(np.stack([x[inside], y[inside], z[inside]], axis=1), depth[inside], spacing_mm)


def place_centres(
    rng: np.random.Generator,
    liver: LiverMap,
    reach_mm: Sequence[float],
    *,
    gap_mm: float = 14.0,
    depth_fraction: float = 0.8,
    taken: Sequence[tuple[np.ndarray, float]] = (),
) -> list[np.ndarray]:
    """Centres for lesions of outer radii ``reach_mm`` inside the liver, apart from each other.

    Each centre lies at least ``depth_fraction * reach`` below the liver surface
    (a lesion may bulge slightly) and every pair of lesions keeps ``gap_mm`` of
    liver between their outer radii. Raises ``RuntimeError`` when the liver
    cannot hold them.
    """
    placed: list[tuple[np.ndarray, float]] = list(taken)
    centres: list[np.ndarray] = []
    for reach in reach_mm:
        candidates = liver.points[:0]
        for fraction in (depth_fraction, 0.75 * depth_fraction, 0.5 * depth_fraction):
            ok = liver.depth_mm >= fraction * reach + liver.spacing_mm
            candidates = liver.points[ok]
            for other, other_reach in placed:
                if len(candidates) == 0:
                    break
                distance = np.linalg.norm(candidates - other, axis=1)
                candidates = candidates[distance >= reach + other_reach + gap_mm]
            if len(candidates):
                break
        if len(candidates) == 0:
            raise RuntimeError(
                f"the liver cannot hold a lesion of radius {reach:.0f} mm apart from the others"
            )
        centre = (
            candidates[int(rng.integers(len(candidates)))]
            + rng.uniform(-0.5, 0.5, 3) * liver.spacing_mm * 0.5
        )
        centres.append(centre)
        placed.append((centre, reach))
    return centres


# ------------------------------------------------------------------ true sizes


@dataclasses.dataclass
class AxialSize:
    """True size of a region in the axial planes at slice centres (mm)."""

    longest_axial_diameter_mm: float
    short_axis_diameter_mm: float
    slice_index: int | None  # z index of the plane holding the longest diameter


def _plane_diameters(points: np.ndarray) -> tuple[float, float]:
    """Longest distance between ``points`` (n, 2) and the extent perpendicular to it."""
    if len(points) < 2:
        return 0.0, 0.0
    try:
        hull = points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        hull = points
    difference = hull[:, None, :] - hull[None, :, :]
    distance = np.sqrt((difference**2).sum(axis=2))
    i, j = np.unravel_index(int(np.argmax(distance)), distance.shape)
    longest = float(distance[i, j])
    if longest <= 0:
        return 0.0, 0.0
    axis = (hull[j] - hull[i]) / longest
    normal = np.array([-axis[1], axis[0]])
    projection = hull @ normal
    return longest, float(projection.max() - projection.min())


def axial_size(shape: Shape, grid: Grid, pose: Pose, *, samples: int = 80) -> AxialSize:
    """Longest axial diameter and short axis of ``shape`` (body frame) on ``grid`` at ``pose``.

    Each axial plane through a slice centre is sampled on a square lattice of
    ``samples`` x ``samples`` points covering the shape; the zero contour of
    the signed distance is traced with sub-sample precision (marching
    squares) and its convex hull gives the longest in-plane (Feret) diameter
    and the extent perpendicular to it.
    """
    low, high = shape.bounds
    corners = np.array(
        [[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
    )
    world = pose.to_world(corners)
    w_low, w_high = world.min(axis=0), world.max(axis=0)
    zs = grid.axis_mm(2)
    planes = np.flatnonzero((zs >= w_low[2]) & (zs <= w_high[2]))
    best = AxialSize(0.0, 0.0, None)
    if planes.size == 0:
        return best
    half = float(max(w_high[0] - w_low[0], w_high[1] - w_low[1])) / 2 + 1.0
    centre = (w_low[:2] + w_high[:2]) / 2
    step = 2 * half / (samples - 1)
    offsets = np.linspace(-half, half, samples)
    gx, gy = np.meshgrid(centre[0] + offsets, centre[1] + offsets)  # [row = y, column = x]
    inverse = pose.rotation.T
    # a plane at distance dz from the centre cannot hold a chord longer than
    # 2 sqrt(reach^2 - dz^2): visit planes from the centre out and skip the hopeless ones
    reach = float(np.max(high - low)) / 2.0
    middle = float(pose.to_world(((low + high) / 2.0)[None, :])[0, 2])
    for k in sorted(planes, key=lambda k: abs(zs[k] - middle)):
        zw = zs[k]
        bound = 2.0 * math.sqrt(max(reach**2 - (zw - middle) ** 2, 0.0)) + 2.0
        if bound <= best.longest_axial_diameter_mm:
            continue
        px = gx - pose.translation_mm[0]
        py = gy - pose.translation_mm[1]
        pz = zw - pose.translation_mm[2]
        bx = inverse[0, 0] * px + inverse[0, 1] * py + inverse[0, 2] * pz
        by = inverse[1, 0] * px + inverse[1, 1] * py + inverse[1, 2] * pz
        bz = inverse[2, 0] * px + inverse[2, 1] * py + inverse[2, 2] * pz
        distance = shape.sdf(bx, by, bz)
        if not (distance < 0).any():
            continue
        padded = np.pad(distance, 1, constant_values=float(distance.max()) + 1.0)
        contours = measure.find_contours(padded, 0.0)
        if not contours:
            continue
        points = np.vstack(contours) - 1.0  # (row, column) in samples
        xy = np.stack(
            [centre[0] - half + points[:, 1] * step, centre[1] - half + points[:, 0] * step], axis=1
        )
        longest, short = _plane_diameters(xy)
        if longest > best.longest_axial_diameter_mm:
            best = AxialSize(longest, short, int(k))
    return best


def shapes_bounds(shapes: Sequence[Shape]) -> tuple[np.ndarray, np.ndarray]:
    return union_bounds([s.bounds for s in shapes])


def viable_nodule(
    rng: np.random.Generator, lesion: StarShape, diameter_fraction: float
) -> Ellipsoid:
    """A small viable nodule at the edge of ``lesion``, ``diameter_fraction`` of its diameter."""
    direction = rng.normal(size=3)
    direction[2] *= 0.3  # keep it mostly in-plane
    direction /= np.linalg.norm(direction)
    surface = float(lesion.radius_along(*(np.array([v]) for v in direction))[0])
    radius = diameter_fraction * lesion.radius_mm
    centre = lesion.centre + direction * max(surface - radius * 1.05, 0.0)
    return Ellipsoid(centre, (radius, radius, radius))
