"""Implicit shapes for the phantom: approximate signed distances in mm.

Every shape maps body-frame coordinates ``x, y, z`` (LPS, mm; arrays of any
one broadcastable shape) to an approximate signed distance in mm: negative
inside, positive outside, about the true distance within a few mm of the
surface. Rendering turns that distance into partial-volume occupancy of a
voxel (a linear ramp one voxel wide), so the distances only need to be
accurate near the surface.

Each shape also has ``bounds``: a body-frame axis-aligned box ``(low, high)``
(``(x, y, z)`` mm) outside which it is certainly empty; the renderer only
evaluates a shape inside its box.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

Array = np.ndarray
Bounds = tuple[np.ndarray, np.ndarray]


def radial_distance(radius_sq: Array, rho_sq: Array, smallest: float, largest: float) -> Array:
    """Signed distance along the ray from the centre for a shape with normalised radius ``rho``.

    ``radius_sq`` is the squared distance from the centre, ``rho_sq`` the squared
    normalised radius (1 on the surface); the surface lies between ``smallest``
    and ``largest`` mm from the centre.
    """
    rho = np.sqrt(rho_sq)
    reach = np.clip(np.sqrt(radius_sq) / (rho + 1e-12), smallest, largest)
    return (rho - 1.0) * reach


def _bounds(low: Sequence[float], high: Sequence[float]) -> Bounds:
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def union_bounds(boxes: Sequence[Bounds]) -> Bounds:
    return (
        np.min([b[0] for b in boxes], axis=0),
        np.max([b[1] for b in boxes], axis=0),
    )


def rotation_matrix(axis: Sequence[float], angle_rad: float) -> np.ndarray:
    """3 x 3 rotation by ``angle_rad`` about the unit vector ``axis`` (right-handed)."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + math.sin(angle_rad) * k + (1.0 - math.cos(angle_rad)) * (k @ k)


def euler_matrix(rx_rad: float, ry_rad: float, rz_rad: float) -> np.ndarray:
    """Rotation ``Rz @ Ry @ Rx`` (radians about the body x, y and z axes)."""
    return (
        rotation_matrix((0, 0, 1), rz_rad)
        @ rotation_matrix((0, 1, 0), ry_rad)
        @ rotation_matrix((1, 0, 0), rx_rad)
    )


class Shape:
    """Base class: ``sdf(x, y, z)`` in mm and ``bounds`` in body-frame mm."""

    bounds: Bounds

    def sdf(self, x: Array, y: Array, z: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError


class Ellipsoid(Shape):
    """Ellipsoid with ``centre`` and ``semi_axes`` (mm), optionally rotated.

    ``rotation`` maps the ellipsoid's own axes to the body frame (columns are
    its axes in body coordinates). The distance is the radial one (along the
    ray from the centre), exact on the surface and close to it nearby.
    """

    def __init__(
        self,
        centre: Sequence[float],
        semi_axes: Sequence[float],
        rotation: np.ndarray | None = None,
    ) -> None:
        self.centre = np.asarray(centre, dtype=float)
        self.semi_axes = np.asarray(semi_axes, dtype=float)
        self.rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
        extent = np.sqrt((self.rotation**2) @ (self.semi_axes**2))
        self.bounds = _bounds(self.centre - extent - 1, self.centre + extent + 1)

        self._c = [float(v) for v in self.centre]
        self._r = self.rotation.tolist()
        self._inv = [1.0 / float(v) ** 2 for v in self.semi_axes]
        self._range = (float(self.semi_axes.min()), float(self.semi_axes.max()))

    def local(self, x: Array, y: Array, z: Array) -> tuple[Array, Array, Array]:
        dx, dy, dz = x - self._c[0], y - self._c[1], z - self._c[2]
        r = self._r
        if r == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]:
            return dx, dy, dz
        u = r[0][0] * dx + r[1][0] * dy + r[2][0] * dz
        v = r[0][1] * dx + r[1][1] * dy + r[2][1] * dz
        w = r[0][2] * dx + r[1][2] * dy + r[2][2] * dz
        return u, v, w

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        u, v, w = self.local(x, y, z)
        uu, vv, ww = u * u, v * v, w * w
        return radial_distance(
            uu + vv + ww, uu * self._inv[0] + vv * self._inv[1] + ww * self._inv[2], *self._range
        )


class Capsule(Shape):
    """Tapered tube from ``p0`` (radius ``r0``) to ``p1`` (radius ``r1``), mm, round ends."""

    def __init__(self, p0: Sequence[float], p1: Sequence[float], r0: float, r1: float) -> None:
        self.p0 = np.asarray(p0, dtype=float)
        self.p1 = np.asarray(p1, dtype=float)
        self.r0, self.r1 = float(r0), float(r1)
        axis = self.p1 - self.p0
        self.length_sq = max(float(axis @ axis), 1e-9)
        self.axis = axis
        self._p0 = tuple(float(v) for v in self.p0)
        self._axis = tuple(float(v) for v in axis)
        pad = max(self.r0, self.r1) + 1.0
        self.bounds = _bounds(
            np.minimum(self.p0, self.p1) - pad, np.maximum(self.p0, self.p1) + pad
        )

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        px, py, pz = self._p0
        dx, dy, dz = x - px, y - py, z - pz
        ax, ay, az = self._axis
        inverse = 1.0 / self.length_sq
        t = np.clip((dx * ax + dy * ay + dz * az) * inverse, 0.0, 1.0)
        ex, ey, ez = dx - t * ax, dy - t * ay, dz - t * az
        return np.sqrt(ex * ex + ey * ey + ez * ez) - (self.r0 + (self.r1 - self.r0) * t)


def profile_at(z: Array, nodes: np.ndarray, values: np.ndarray) -> Array:
    """Piecewise-linear profile ``values(z)`` through ``nodes``.

    For 3-D blocks (``[z, y, x]``, as the renderer passes them) the profile is
    linearised around each plane's centre, which is exact away from the nodes
    and much faster than interpolating every voxel.
    """
    if isinstance(z, np.ndarray) and z.ndim == 3 and z.shape[1] * z.shape[2] > 1:
        centre = np.asarray(z[:, z.shape[1] // 2, z.shape[2] // 2], dtype=float)
        value = np.interp(centre, nodes, values)
        slope = (
            np.interp(centre + 1.0, nodes, values) - np.interp(centre - 1.0, nodes, values)
        ) / 2.0
        offset = (value - slope * centre).astype(np.float32)[:, None, None]
        return offset + slope.astype(np.float32)[:, None, None] * z
    return np.interp(z, nodes, values)


class Extrusion(Shape):
    """A cross-section that changes slowly along the body's z axis.

    The cross-section at height ``z`` is a rounded rectangle centred at
    ``(0, y_centre(z))`` with lateral half-width ``a(z)``, anterior half-depth
    ``b_anterior(z)`` (towards ``-y``) and posterior half-depth
    ``b_posterior(z)`` (towards ``+y``). Its squareness (0: ellipse, 1: the
    super-ellipse of exponent 4) differs anteriorly and posteriorly, and its
    radius is modulated by ``1 + sum(c_k cos(k theta + phi_k))``. Profiles are
    given at ``z_nodes`` (mm) and interpolated linearly; the shape ends at
    ``z_range``.
    """

    def __init__(
        self,
        z_nodes: Sequence[float],
        a: Sequence[float],
        b_anterior: Sequence[float],
        b_posterior: Sequence[float],
        y_centre: Sequence[float],
        z_range: tuple[float, float],
        squareness_anterior: float = 0.3,
        squareness_posterior: float = 0.7,
        harmonics: Sequence[tuple[int, float, float]] = (),
    ) -> None:
        self.z_nodes = np.asarray(z_nodes, dtype=float)
        self.a = np.asarray(a, dtype=float)
        self.b_anterior = np.asarray(b_anterior, dtype=float)
        self.b_posterior = np.asarray(b_posterior, dtype=float)
        self.y_centre = np.asarray(y_centre, dtype=float)
        self.squareness_anterior = float(squareness_anterior)
        self.squareness_posterior = float(squareness_posterior)
        self.z_range = (float(z_range[0]), float(z_range[1]))
        self.harmonics = [(int(k), float(c), float(p)) for k, c, p in harmonics]
        growth = 1.0 + sum(abs(c) for _, c, _ in self.harmonics)
        half = float(self.a.max()) * growth
        self.bounds = _bounds(
            (
                -half - 1,
                float((self.y_centre - self.b_anterior * growth).min()) - 1,
                self.z_range[0] - 1,
            ),
            (
                half + 1,
                float((self.y_centre + self.b_posterior * growth).max()) + 1,
                self.z_range[1] + 1,
            ),
        )

    def profile(self, z: Array) -> tuple[Array, Array, Array, Array]:
        return (
            profile_at(z, self.z_nodes, self.a),
            profile_at(z, self.z_nodes, self.b_anterior),
            profile_at(z, self.z_nodes, self.b_posterior),
            profile_at(z, self.z_nodes, self.y_centre),
        )

    def centre_y(self, z: Array) -> Array:
        return profile_at(z, self.z_nodes, self.y_centre)

    def harmonic_scale(self, cos: Array, sin: Array) -> Array | float:
        """``1 + sum(c_k cos(k theta + phi_k))`` from the direction's cosine and sine."""
        if not self.harmonics:
            return 1.0
        scale = 1.0
        ck, sk = cos, sin
        k = 1
        for order, c, phase in sorted(self.harmonics):
            while k < order:
                ck, sk = ck * cos - sk * sin, sk * cos + ck * sin
                k += 1
            scale = scale + (c * math.cos(phase)) * ck - (c * math.sin(phase)) * sk
        return scale

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        a, b_ant, b_post, yc = self.profile(z)
        dy = y - yc
        anterior = dy < 0
        b = b_post + (b_ant - b_post) * anterior
        square = (
            self.squareness_posterior
            + (self.squareness_anterior - self.squareness_posterior) * anterior
        )
        ux, uy = x / a, dy / b
        ux2, uy2 = ux * ux, uy * uy
        rho2 = ux2 + uy2
        rho4 = np.sqrt(np.sqrt(ux2 * ux2 + uy2 * uy2))
        rho = np.sqrt(rho2)
        rho = rho + (rho4 - rho) * square
        radius = np.sqrt(x * x + dy * dy)
        if self.harmonics:
            safe = radius + 1e-6
            rho = rho / self.harmonic_scale(x / safe, dy / safe)
        reach = np.clip(radius / (rho + 1e-12), 10.0, 1000.0)
        d = (rho - 1.0) * reach
        return np.maximum(d, np.maximum(self.z_range[0] - z, z - self.z_range[1]))


class Offset(Shape):
    """``shape`` grown by ``delta`` mm (shrunk when negative)."""

    def __init__(self, shape: Shape, delta: float) -> None:
        self.shape, self.delta = shape, float(delta)
        low, high = shape.bounds
        pad = max(self.delta, 0.0)
        self.bounds = (low - pad, high + pad)

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        return self.shape.sdf(x, y, z) - self.delta


class Intersection(Shape):
    """Inside every one of ``shapes``; ``bounds`` from the first shape."""

    def __init__(self, *shapes: Shape) -> None:
        self.shapes = shapes
        low = np.max([s.bounds[0] for s in shapes], axis=0)
        high = np.min([s.bounds[1] for s in shapes], axis=0)
        self.bounds = (low, np.maximum(high, low))

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        d = self.shapes[0].sdf(x, y, z)
        for shape in self.shapes[1:]:
            d = np.maximum(d, shape.sdf(x, y, z))
        return d


class Difference(Shape):
    """Inside ``shape`` and outside every one of ``holes``."""

    def __init__(self, shape: Shape, *holes: Shape) -> None:
        self.shape, self.holes = shape, holes
        self.bounds = shape.bounds

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        d = self.shape.sdf(x, y, z)
        for hole in self.holes:
            d = np.maximum(d, -hole.sdf(x, y, z))
        return d


class SmoothUnion(Shape):
    """Union of ``shapes`` with blended seams (polynomial smooth minimum, ``k`` mm)."""

    def __init__(self, shapes: Sequence[Shape], k: float) -> None:
        self.shapes, self.k = list(shapes), float(k)
        self.bounds = union_bounds([s.bounds for s in self.shapes])

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        d = self.shapes[0].sdf(x, y, z)
        for shape in self.shapes[1:]:
            e = shape.sdf(x, y, z)
            h = np.clip(0.5 + 0.5 * (e - d) / self.k, 0.0, 1.0)
            d = e + (d - e) * h - self.k * h * (1.0 - h)
        return d


class Union(Shape):
    """Inside any of ``shapes``; shapes whose box misses the queried points are skipped."""

    def __init__(self, shapes: Sequence[Shape]) -> None:
        self.shapes = list(shapes)
        self.bounds = union_bounds([s.bounds for s in self.shapes])

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        x, y, z = np.broadcast_arrays(x, y, z)
        if x.size == 0:
            return np.zeros(x.shape)
        low = np.array([x.min(), y.min(), z.min()])
        high = np.array([x.max(), y.max(), z.max()])
        d = None
        for shape in self.shapes:
            s_low, s_high = shape.bounds
            if np.any(s_low > high) or np.any(s_high < low):
                continue
            e = shape.sdf(x, y, z)
            d = e if d is None else np.minimum(d, e)
        if d is None:
            # nothing near: distance to the nearest box is a safe positive bound
            gap = max(
                float(np.max(np.maximum(s.bounds[0] - high, low - s.bounds[1])))
                for s in self.shapes
            )
            return np.full(x.shape, max(gap, 1.0))
        return d


class BelowSurface(Shape):
    """Everything below the height field ``z = height(x, y)`` (mm) within ``bounds``."""

    def __init__(self, height: Callable[[Array, Array], Array], bounds: Bounds) -> None:
        self.height = height
        self.bounds = bounds

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        return z - self.height(x, y)


class AboveSurface(Shape):
    """Everything above the height field ``z = height(x, y)`` (mm) within ``bounds``."""

    def __init__(self, height: Callable[[Array, Array], Array], bounds: Bounds) -> None:
        self.height = height
        self.bounds = bounds

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        return self.height(x, y) - z


class Warped(Shape):
    """``shape`` under a smooth displacement: evaluated at ``q + displacement(q)``.

    ``modes`` are ``(amplitude_mm (3,), wave_vector_per_mm (3,), phase)``:
    the displacement is ``sum(amplitude * sin(wave_vector . q + phase))``.
    Keep the largest gradient (amplitude times wave number) well below 1 so
    distances stay meaningful.
    """

    def __init__(self, shape: Shape, modes: Sequence[tuple[np.ndarray, np.ndarray, float]]) -> None:
        self.shape, self.modes = shape, list(modes)
        reach = sum(float(np.abs(a).max()) for a, _, _ in self.modes)
        low, high = shape.bounds
        self.bounds = (low - reach, high + reach)

    def displace(self, x: Array, y: Array, z: Array) -> tuple[Array, Array, Array]:
        wx, wy, wz = x, y, z
        for amplitude, wave, phase in self.modes:
            s = np.sin(wave[0] * x + wave[1] * y + wave[2] * z + phase)
            wx = wx + amplitude[0] * s
            wy = wy + amplitude[1] * s
            wz = wz + amplitude[2] * s
        return wx, wy, wz

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        return self.shape.sdf(*self.displace(x, y, z))


class Box(Shape):
    """Axis-aligned box in the body frame (distance is the Chebyshev one)."""

    def __init__(self, low: Sequence[float], high: Sequence[float]) -> None:
        self.low = np.asarray(low, dtype=float)
        self.high = np.asarray(high, dtype=float)
        self.bounds = (self.low - 1, self.high + 1)

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        d = np.maximum(self.low[0] - x, x - self.high[0])
        d = np.maximum(d, np.maximum(self.low[1] - y, y - self.high[1]))
        return np.maximum(d, np.maximum(self.low[2] - z, z - self.high[2]))


class StarShape(Shape):
    """A round-to-lobulated body: radius ``radius_mm * g(direction)`` around ``centre``.

    ``g(u) = stretch(u) * (1 + sum_k amplitude_k * (max(u . v_k, 0) ** sharpness_k - mean_k))``
    where ``stretch`` is an ellipsoidal stretch (``axis_ratios`` along the
    columns of ``rotation``) and ``v_k`` are unit lobe directions. The shape is
    star-shaped about its centre, so its volume and its cross-sections can be
    computed from the radius function alone (see :meth:`volume_mm3`).
    """

    def __init__(
        self,
        centre: Sequence[float],
        radius_mm: float,
        axis_ratios: Sequence[float] = (1.0, 1.0, 1.0),
        rotation: np.ndarray | None = None,
        lobes: Sequence[tuple[np.ndarray, float, float]] = (),
    ) -> None:
        self.centre = np.asarray(centre, dtype=float)
        self.radius_mm = float(radius_mm)
        self.axis_ratios = np.asarray(axis_ratios, dtype=float)
        self.rotation = np.eye(3) if rotation is None else np.asarray(rotation, dtype=float)
        self.lobes = [
            (np.asarray(v, dtype=float) / np.linalg.norm(v), float(a), float(s))
            for v, a, s in lobes
        ]
        u = fibonacci_sphere(2000)
        sampled = float(self.radius_along(u[:, 0], u[:, 1], u[:, 2]).max())
        #: Largest distance of the surface from the centre (mm), with a small margin.
        self.reach_mm = sampled * 1.03 + 0.05
        self.bounds = _bounds(self.centre - self.reach_mm - 1, self.centre + self.reach_mm + 1)

    def scaled(self, factor: float, centre: Sequence[float] | None = None) -> StarShape:
        """The same shape with the radius times ``factor`` (optionally moved)."""
        return StarShape(
            self.centre if centre is None else centre,
            self.radius_mm * factor,
            self.axis_ratios,
            self.rotation,
            [(v, a, s) for v, a, s in self.lobes],
        )

    def radius_along(self, ux: Array, uy: Array, uz: Array) -> Array:
        """Surface radius (mm) along the unit direction ``(ux, uy, uz)`` (body frame)."""
        r = self.rotation.tolist()
        a = r[0][0] * ux + r[1][0] * uy + r[2][0] * uz
        b = r[0][1] * ux + r[1][1] * uy + r[2][1] * uz
        c = r[0][2] * ux + r[1][2] * uy + r[2][2] * uz
        p, q, s = (1.0 / float(v) ** 2 for v in self.axis_ratios)
        stretch = 1.0 / np.sqrt(np.maximum(a * a * p + b * b * q + c * c * s, 1e-12))
        g = 1.0
        for v, amplitude, sharpness in self.lobes:
            cosine = np.maximum(ux * float(v[0]) + uy * float(v[1]) + uz * float(v[2]), 0.0)
            g = g + amplitude * (cosine**sharpness - 1.0 / (2.0 * (sharpness + 1.0)))
        return (self.radius_mm * stretch) * g

    def _polar(self, x: Array, y: Array, z: Array) -> tuple[Array, Array]:
        cx, cy, cz = (float(v) for v in self.centre)
        dx, dy, dz = x - cx, y - cy, z - cz
        distance = np.sqrt(dx * dx + dy * dy + dz * dz)
        inverse = 1.0 / (distance + 1e-6)
        return distance, self.radius_along(dx * inverse, dy * inverse, dz * inverse)

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        distance, surface = self._polar(x, y, z)
        return distance - surface

    def normalised_radius(self, x: Array, y: Array, z: Array) -> Array:
        """Distance from the centre over the surface radius in that direction (1 on the surface)."""
        distance, surface = self._polar(x, y, z)
        return distance / surface

    def volume_mm3(self, directions: int = 20000) -> float:
        """Volume in mm^3: mean of ``r(u)^3 / 3`` over a Fibonacci sphere times ``4 pi``."""
        u = fibonacci_sphere(directions)
        r = self.radius_along(u[:, 0], u[:, 1], u[:, 2])
        return float(4.0 * math.pi * np.mean(r**3) / 3.0)


def fibonacci_sphere(count: int) -> np.ndarray:
    """``count`` nearly uniform unit vectors ``(count, 3)``."""
    i = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * i / count)
    azimuth = math.pi * (1.0 + 5.0**0.5) * i
    return np.stack(
        [np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1
    )
