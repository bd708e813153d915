"""A random abdomen: body wall, skeleton, thorax base and abdominal organs.

:func:`design_anatomy` draws one subject's anatomy from a random generator:
sizes, positions and shapes in the body frame (LPS mm; ``x`` towards the
patient's left, ``y`` posterior, ``z`` cranial; the origin at the centre of the
abdominal cross-section, ``z = 0`` near the hepatic hilum) and the attenuation
of every tissue in both contrast phases. :meth:`Anatomy.structures` turns it
into the ordered list of :class:`~pipeline.phantom.render.Structure` that the
renderer paints (later structures cover earlier ones).

Attenuation (HU, portal-venous / arterial), chosen from the literature on
multiphase liver CT and checked against the real scans in ``../shared/data``
(``benchmarks/phantom_realism.py``): liver 100-130 / 60-80, spleen a little
brighter than liver in the portal phase and heterogeneous ("moire") in the
arterial phase, aorta 150-200 / 250-400, portal vein 160-210 / 90-130, hepatic
veins unopacified in the arterial phase, kidney cortex and medulla distinct
in the arterial phase, fat about -100, muscle 45-65, cancellous bone 150-280,
cortical bone 700-1100, lung about -850.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np

from pipeline.phantom.render import AIR_HU, Context, Structure
from pipeline.phantom.shapes import (
    AboveSurface,
    Array,
    BelowSurface,
    Capsule,
    Difference,
    Ellipsoid,
    Extrusion,
    Intersection,
    Offset,
    Shape,
    SmoothUnion,
    Union,
    Warped,
    euler_matrix,
    radial_distance,
    rotation_matrix,
)

Value = float | Callable[[Context], Array]

#: Extent of the body frame that any scan may cover (mm).
BODY_Z_RANGE = (-420.0, 260.0)


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def ramp(distance: Array, width: float = 1.0) -> Array:
    """Occupancy 1 inside (``distance`` < 0), 0 outside, linear over ``width`` mm."""
    return np.clip(0.5 - distance / width, 0.0, 1.0)


def textured(base: float, low: float = 0.0, mid: float = 0.0) -> Value:
    """A value of ``base`` HU plus ``low`` and ``mid`` HU of smooth random texture."""
    if not low and not mid:
        return base

    def value(c: Context) -> Array:
        out = base
        if low:
            out = out + low * c.field("low")
        if mid:
            out = out + mid * c.field("mid")
        return out

    return value


class EllipticCylinder(Shape):
    """Elliptic cylinder along z: centre ``(x, y)``, radii ``(rx, ry)``, ``z_low`` to ``z_high``."""

    def __init__(
        self, centre_xy: Sequence[float], radii: Sequence[float], z_low: float, z_high: float
    ) -> None:
        self.cx, self.cy = float(centre_xy[0]), float(centre_xy[1])
        self.rx, self.ry = float(radii[0]), float(radii[1])
        self.z_low, self.z_high = float(z_low), float(z_high)
        self.bounds = (
            np.array([self.cx - self.rx - 1, self.cy - self.ry - 1, self.z_low - 1]),
            np.array([self.cx + self.rx + 1, self.cy + self.ry + 1, self.z_high + 1]),
        )

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        dx, dy = x - self.cx, y - self.cy
        dx2, dy2 = dx * dx, dy * dy
        d = radial_distance(
            dx2 + dy2,
            dx2 * (1.0 / self.rx**2) + dy2 * (1.0 / self.ry**2),
            min(self.rx, self.ry),
            max(self.rx, self.ry),
        )
        return np.maximum(d, np.maximum(self.z_low - z, z - self.z_high))


class Layer(Shape):
    """The part of ``body`` deeper than ``thickness(cos, sin, z)`` mm below its surface.

    ``cos`` and ``sin`` are the direction of the point from the body axis
    (``sin`` > 0 posterior), so the thickness can vary around the body.
    """

    def __init__(self, body: Extrusion, thickness: Callable[[Array, Array, Array], Array]) -> None:
        self.body, self.thickness = body, thickness
        self.bounds = body.bounds

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        dy = y - self.body.centre_y(z)
        inverse = 1.0 / (np.sqrt(x * x + dy * dy) + 1e-6)
        return self.body.sdf(x, y, z) + self.thickness(x * inverse, dy * inverse, z)


class TableShell(Shape):
    """The scanner table: a shallow cylindrical shell (scanner frame), lowest point at ``y_top``."""

    def __init__(self, y_top: float, radius: float, thickness: float, half_width: float) -> None:
        self.y_top, self.radius, self.thickness, self.half_width = (
            y_top,
            radius,
            thickness,
            half_width,
        )
        rise = radius - math.sqrt(max(radius**2 - half_width**2, 0.0))
        self.bounds = (
            np.array([-half_width - 1, y_top - rise - 1, -1e4]),
            np.array([half_width + 1, y_top + thickness + 1, 1e4]),
        )

    def sdf(self, x: Array, y: Array, z: Array) -> Array:
        r = np.sqrt(x * x + (y - (self.y_top - self.radius)) ** 2)
        shell = np.abs(r - (self.radius + self.thickness / 2)) - self.thickness / 2
        return np.maximum(shell, np.abs(x) - self.half_width)


@dataclasses.dataclass
class Tissue:
    """Attenuation of a tissue (HU) in the portal-venous and arterial phases."""

    portal_venous: float
    arterial: float | None = None  # None: does not enhance, the same in both phases


def _tissues(rng: np.random.Generator) -> dict[str, Tissue]:
    u = lambda a, b: _u(rng, a, b)  # noqa: E731
    # parenchyma; with its enhanced vessels the whole liver measures about 100-130 HU
    liver_pv, liver_art = u(95, 120), u(60, 78)
    aorta_art = u(250, 400)
    fat = u(-108, -88)
    return {
        "liver": Tissue(liver_pv, liver_art),
        "spleen": Tissue(liver_pv + u(0, 18), u(95, 135)),
        "aorta": Tissue(u(150, 200), aorta_art),
        "portal_vein": Tissue(u(165, 210), u(90, 130)),
        "hepatic_vein": Tissue(u(140, 180), u(45, 75)),
        "ivc": Tissue(u(120, 160), u(60, 105)),
        "heart_left": Tissue(u(135, 170), aorta_art * u(0.9, 1.0)),
        "heart_right": Tissue(u(135, 170), aorta_art * u(0.5, 0.75)),
        "myocardium": Tissue(u(95, 120), u(100, 135)),
        "kidney_cortex": Tissue(u(150, 190), u(160, 230)),
        "kidney_medulla": Tissue(u(130, 170), u(60, 100)),
        "urine": Tissue(u(4, 15), u(4, 15)),
        "pancreas": Tissue(u(88, 110), u(110, 140)),
        "bowel_wall": Tissue(u(85, 115), u(85, 120)),
        "fluid": Tissue(u(5, 22)),
        "bile": Tissue(u(0, 18)),
        "muscle": Tissue(u(50, 65), u(45, 58)),
        "skin": Tissue(u(25, 55)),
        "fat": Tissue(fat, fat),
        "visceral_fat": Tissue(fat + u(0, 12)),
        "cortical_bone": Tissue(u(700, 1100)),
        "cancellous_bone": Tissue(u(150, 280)),
        "marrow_rib": Tissue(u(180, 320)),
        "cartilage": Tissue(u(110, 180)),
        "disc": Tissue(u(75, 100)),
        "csf": Tissue(u(5, 15)),
        "lung": Tissue(u(-880, -820)),
        "pulmonary_vessel": Tissue(u(120, 160), aorta_art * u(0.5, 0.8)),
        "table": Tissue(u(180, 350)),
        "stool": Tissue(u(-30, 20)),
    }


def _phase_pair(t: Tissue) -> tuple[float, float]:
    """(portal, arterial); tissues that do not enhance keep their portal value."""
    return t.portal_venous, (t.portal_venous if t.arterial is None else t.arterial)


@dataclasses.dataclass
class Tube:
    """A chain of capsules through ``points`` (mm) with ``radii`` (mm) at the points."""

    points: np.ndarray
    radii: np.ndarray

    def capsules(self, grow: float = 0.0) -> list[Capsule]:
        return [
            Capsule(
                self.points[i],
                self.points[i + 1],
                max(self.radii[i] + grow, 0.3),
                max(self.radii[i + 1] + grow, 0.3),
            )
            for i in range(len(self.points) - 1)
        ]

    def shape(self, grow: float = 0.0) -> Union:
        return Union(self.capsules(grow))


def tube_structures(
    name: str,
    tube: Tube,
    portal_venous_hu: Value,
    arterial_hu: Value,
    *,
    grow: float = 0.0,
    label: int | None = None,
    clip: Sequence[Shape] = (),
) -> list[Structure]:
    """One structure per capsule of ``tube`` (each evaluated only in its own small box)."""
    out = []
    for i, capsule in enumerate(tube.capsules(grow)):
        shape: Shape = Intersection(capsule, *clip) if clip else capsule
        detail = max(capsule.r0, capsule.r1)
        out.append(
            Structure(
                f"{name} {i}", shape, portal_venous_hu, arterial_hu, label=label, detail_mm=detail
            )
        )
    return out


def _smooth_path(nodes: Sequence[Sequence[float]], step_mm: float) -> np.ndarray:
    """Points every ``step_mm`` along a Catmull-Rom spline through ``nodes``."""
    p = np.asarray(nodes, dtype=float)
    padded = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1 : i + 3]
        length = float(np.linalg.norm(p2 - p1))
        count = max(math.ceil(length / step_mm), 1)
        for t in np.arange(count) / count:
            out.append(
                0.5
                * (
                    2 * p1
                    + (-p0 + p2) * t
                    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                    + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
                )
            )
    out.append(p[-1])
    return np.asarray(out)


@dataclasses.dataclass
class Anatomy:
    """One subject's anatomy (body frame, mm) and tissue attenuation (HU)."""

    tissues: dict[str, Tissue]
    body: Extrusion
    skin_mm: float
    fat_mm: tuple[float, float, float]  # anterior, lateral, posterior subcutaneous fat
    wall_mm: tuple[float, float, float]  # anterior, lateral, posterior muscle wall
    dome_right_z: float
    dome_left_z: float
    diaphragm_mm: float
    spine_y: Callable[[Array], Array]
    liver: Shape
    liver_parts: dict[str, Shape]
    gallbladder: Shape | None
    ivc: Tube
    aorta: Tube
    portal_trunk: Tube
    vessel_trees: dict[str, list[Tube]]
    spleen: Shape
    kidneys: dict[str, tuple[Ellipsoid, Ellipsoid, Ellipsoid]]
    stomach: Tube
    stomach_gas_y: float
    pancreas: Tube
    duodenum: Tube
    colon: Tube
    small_bowel: Tube
    bowel_gas: np.ndarray
    heart: Ellipsoid
    ribs: list[tuple[Tube, Tube | None]]
    lung_vessels: list[Capsule]
    vertebra_levels: np.ndarray
    scan_top_z: float
    scan_bottom_z: float
    psoas: list[Tube]
    paraspinal: list[Tube]
    liver_vessel_radius_scale: float = 1.0

    # ------------------------------------------------------------ surfaces

    def diaphragm_height(self, x: Array, y: Array) -> Array:
        """Height (z, mm) of the diaphragm's upper surface above the point ``(x, y)``."""
        right = self.dome_right_z - ((x + 65.0) ** 2) / 230.0 - ((y - 5.0) ** 2) / 190.0
        left = self.dome_left_z - ((x - 70.0) ** 2) / 230.0 - ((y - 5.0) ** 2) / 190.0
        return np.maximum(right, left)

    def cavity(self) -> Layer:
        """Inside of the muscle wall (abdominal and thoracic cavity together)."""
        return Layer(self.body, self._wall_thickness(include_wall=True))

    def _wall_thickness(self, include_wall: bool) -> Callable[[Array, Array, Array], Array]:
        if include_wall:
            return _thickness_function(self.skin_mm, self.fat_mm, self.wall_mm, self.dome_right_z)
        return _thickness_function(self.skin_mm, self.fat_mm, (0.0, 0.0, 0.0), self.dome_right_z)

    def below_diaphragm(self, margin_mm: float = 0.0) -> BelowSurface:
        low, high = self.body.bounds
        return BelowSurface(
            lambda x, y: self.diaphragm_height(x, y) - self.diaphragm_mm - margin_mm, (low, high)
        )

    # ------------------------------------------------------------ painting

    def carved_from_liver(self) -> list[Shape]:
        """Shapes that take voxels from the liver label (gallbladder, vena cava)."""
        holes: list[Shape] = [self.ivc.shape(2.0)]
        if self.gallbladder is not None:
            holes.append(Offset(self.gallbladder, 2.0))
        return holes

    def structures(
        self, lesions: Sequence[Structure] = (), table_y_mm: float | None = None
    ) -> list[Structure]:
        """All structures in painting order; ``lesions`` go last (over the liver).

        ``table_y_mm`` is the world y of the table top (default: under the body
        in its own frame).
        """
        return [self._table(table_y_mm), *self._anatomy_structures(), *lesions]

    def _anatomy_structures(self) -> list[Structure]:
        cached = getattr(self, "_structure_cache", None)
        if cached is not None:
            return cached
        t = self.tissues
        out: list[Structure] = []
        out.append(self._body_structure())
        out.extend(self._thorax())
        out.extend(self._muscles())
        out.extend(self._bowel())
        out.extend(self._kidneys())
        out.extend(self._pancreas_and_stomach())
        pv, art = _phase_pair(t["spleen"])
        out.append(Structure("spleen", self.spleen, textured(pv, 4, 3), self._spleen_arterial(art)))
        out.extend(self._great_vessels_outside_liver())
        out.extend(self._liver())
        out.extend(self._spine_and_ribs())
        self._structure_cache = out
        return out

    def _table(self, table_y_mm: float | None) -> Structure:
        _, high = self.body.bounds
        y_top = float(high[1]) + 3.0 if table_y_mm is None else float(table_y_mm)
        pv = self.tissues["table"].portal_venous
        return Structure(
            "table", TableShell(y_top, 900.0, 3.5, 235.0), pv, pv, fixed_to_scanner=True
        )

    def _body_structure(self) -> Structure:
        t = self.tissues
        body = self.body
        skin = self.skin_mm
        fa, fl, fp = self.fat_mm
        wa, wl, wp = self.wall_mm
        top = self.dome_right_z - 60.0
        skin_hu = t["skin"].portal_venous
        fat_base = t["fat"].portal_venous
        visceral_base = t["visceral_fat"].portal_venous
        muscle_pv, muscle_art = t["muscle"].portal_venous, t["muscle"].arterial

        def values(c: Context) -> tuple[Array, Array]:
            dy = c.y - body.centre_y(c.z)
            inverse = 1.0 / (np.sqrt(c.x * c.x + dy * dy) + 1e-6)
            cos, sin = c.x * inverse, dy * inverse
            anterior = np.maximum(-sin, 0.0)
            anterior *= anterior
            posterior = np.maximum(sin, 0.0)
            posterior *= posterior
            lateral = cos * cos
            fat_depth = skin + fa * anterior + fl * lateral + fp * posterior
            thorax = np.clip((c.z - top) * (1.0 / 60.0), 0.0, 1.0)
            wall_depth = fat_depth + (wa * anterior + wl * lateral + wp * posterior) * (
                1.0 - 0.45 * thorax
            )
            d = c.distance
            low, mid = c.field("low"), c.field("mid")
            fat_hu = fat_base + 4.0 * low + 3.0 * mid
            muscle_texture = 4.0 * mid
            visceral = visceral_base + 5.0 * low + 4.0 * mid
            width = c.ramp_mm
            to_fat = ramp(d + skin, width)
            to_muscle = ramp(d + fat_depth, width)
            to_cavity = ramp(d + wall_depth, width)
            out = []
            for muscle in (muscle_pv, muscle_art):
                v = skin_hu + (fat_hu - skin_hu) * to_fat
                v += (muscle + muscle_texture - v) * to_muscle
                v += (visceral - v) * to_cavity
                out.append(v)
            return out[0], out[1]

        return Structure("body", body, 0.0, 0.0, both=values)

    def _thorax(self) -> list[Structure]:
        t = self.tissues
        cavity = self.cavity()
        low, high = cavity.bounds
        top_low = np.array([low[0], low[1], self.dome_right_z - 130.0])
        diaphragm = Intersection(
            AboveSurface(
                lambda x, y: self.diaphragm_height(x, y) - self.diaphragm_mm, (top_low, high)
            ),
            cavity,
        )
        lung_shape = Intersection(AboveSurface(self.diaphragm_height, (top_low, high)), cavity)
        m_pv, m_art = _phase_pair(t["muscle"])
        lung = t["lung"].portal_venous
        out = [
            Structure("diaphragm", diaphragm, m_pv, m_art),
            Structure("lung", lung_shape, textured(lung, 15, 8), textured(lung, 15, 8)),
        ]
        v_pv, v_art = _phase_pair(t["pulmonary_vessel"])
        for i, capsule in enumerate(self.lung_vessels):
            out.append(
                Structure(
                    f"lung vessel {i}",
                    Intersection(capsule, lung_shape),
                    v_pv,
                    v_art,
                    detail_mm=capsule.r0,
                )
            )
        # heart in its pericardial fat, above the central diaphragm
        above = AboveSurface(lambda x, y: self.diaphragm_height(x, y) + 1.0, (top_low, high))
        fat = t["fat"].portal_venous
        out.append(
            Structure(
                "pericardial fat", Intersection(Offset(self.heart, 7.0), above, cavity), fat, fat
            )
        )
        heart_shape = Intersection(self.heart, above)
        my_pv, my_art = _phase_pair(t["myocardium"])
        out.append(Structure("myocardium", heart_shape, my_pv, my_art))
        blood = Intersection(Offset(self.heart, -9.0), above)
        centre = self.heart.centre
        axis = self.heart.rotation[:, 1]  # right (anterior) chambers on the -axis side
        left, right = t["heart_left"], t["heart_right"]

        def chambers(phase: str) -> Callable[[Context], Array]:
            def f(c: Context) -> Array:
                side = (
                    (c.x - centre[0]) * axis[0]
                    + (c.y - centre[1]) * axis[1]
                    + (c.z - centre[2]) * axis[2]
                )
                w = np.clip(0.5 + side / 6.0, 0.0, 1.0)
                return getattr(right, phase) + (getattr(left, phase) - getattr(right, phase)) * w

            return f

        out.append(Structure("heart blood", blood, chambers("portal_venous"), chambers("arterial")))
        return out

    def _muscles(self) -> list[Structure]:
        pv, art = _phase_pair(self.tissues["muscle"])
        tex_pv, tex_art = textured(pv, 0, 5), textured(art, 0, 5)
        out = []
        for i, tube in enumerate(self.paraspinal + self.psoas):
            out.extend(tube_structures(f"muscle {i}", tube, tex_pv, tex_art))
        return out

    def _bowel(self) -> list[Structure]:
        t = self.tissues
        wall_pv, wall_art = _phase_pair(t["bowel_wall"])
        fluid = t["fluid"].portal_venous
        stool = t["stool"].portal_venous
        out: list[Structure] = []
        below = self.below_diaphragm(4.0)
        # colon: wall then mottled stool with gas bubbles
        for i, capsule in enumerate(self.colon.capsules()):
            out.append(
                Structure(f"colon wall {i}", Intersection(capsule, below), wall_pv, wall_art)
            )

        def stool_value(c: Context) -> Array:
            mid = c.field("mid")
            content = stool + 40.0 * c.field("low") + 60.0 * mid
            gas = ramp(0.9 - mid, 0.35)
            return content + (AIR_HU - content) * gas

        for i, capsule in enumerate(self.colon.capsules(-2.5)):
            out.append(
                Structure(
                    f"colon content {i}", Intersection(capsule, below), stool_value, stool_value
                )
            )
        # small bowel: walls of all loops first, then contents
        for i, capsule in enumerate(self.small_bowel.capsules()):
            out.append(Structure(f"small bowel wall {i}", capsule, wall_pv, wall_art))
        for i, capsule in enumerate(self.small_bowel.capsules(-2.5)):
            content = AIR_HU if self.bowel_gas[i] else fluid
            out.append(
                Structure(
                    f"small bowel content {i}",
                    capsule,
                    textured(content, 0, 4),
                    textured(content, 0, 4),
                )
            )
        out.extend(tube_structures("duodenum wall", self.duodenum, wall_pv, wall_art))
        out.extend(tube_structures("duodenum content", self.duodenum, fluid, fluid, grow=-2.5))
        return out

    def _kidneys(self) -> list[Structure]:
        t = self.tissues
        out: list[Structure] = []
        c_pv, c_art = _phase_pair(t["kidney_cortex"])
        m_pv, m_art = _phase_pair(t["kidney_medulla"])
        fat = t["visceral_fat"].portal_venous
        urine = t["urine"].portal_venous
        for side, (kidney, sinus, pelvis) in self.kidneys.items():
            out.append(Structure(f"{side} kidney", kidney, c_pv, c_art))

            def medulla(phase: str, cortex: float, core: float) -> Callable[[Context], Array]:
                def f(c: Context) -> Array:
                    columns = ramp(
                        0.6 - c.field("mid"), 0.5
                    )  # columns of Bertin: cortex between pyramids
                    return cortex + (core - cortex) * columns

                return f

            out.append(
                Structure(
                    f"{side} renal medulla",
                    Offset(kidney, -6.5),
                    medulla("portal_venous", c_pv, m_pv),
                    medulla("arterial", c_art, m_art),
                )
            )
            out.append(
                Structure(f"{side} renal sinus", Intersection(sinus, Offset(kidney, 2.0)), fat, fat)
            )
            out.append(Structure(f"{side} renal pelvis", pelvis, urine, urine))
        return out

    def _pancreas_and_stomach(self) -> list[Structure]:
        t = self.tissues
        p_pv, p_art = _phase_pair(t["pancreas"])
        fat = t["visceral_fat"].portal_venous

        def lobulated(base: float) -> Callable[[Context], Array]:
            def f(c: Context) -> Array:
                mid = c.field("mid")
                tissue = base + 6.0 * mid
                return tissue + (fat - tissue) * ramp(1.4 - mid, 0.4) * 0.7

            return f

        below = self.below_diaphragm(2.0)
        w_pv, w_art = _phase_pair(t["bowel_wall"])
        clip = (below,)
        fluid = t["fluid"].portal_venous
        gas_y = self.stomach_gas_y

        def contents(c: Context) -> Array:
            food = fluid + 12.0 * c.field("mid") + 8.0 * c.field("low")
            return food + (AIR_HU - food) * ramp(c.y - gas_y, 1.5)

        return [
            *tube_structures("pancreas", self.pancreas, lobulated(p_pv), lobulated(p_art)),
            *tube_structures(
                "stomach wall", self.stomach, textured(w_pv, 0, 6), textured(w_art, 0, 6), clip=clip
            ),
            *tube_structures(
                "stomach content", self.stomach, contents, contents, grow=-4.5, clip=clip
            ),
        ]

    def _spleen_arterial(self, mean: float) -> Callable[[Context], Array]:
        def f(c: Context) -> Array:
            # arciform ("moire") enhancement of the early arterial phase: bands
            return mean + 35.0 * np.sin(2.2 * c.field("band")) + 6.0 * c.field("mid")

        return f

    def _great_vessels_outside_liver(self) -> list[Structure]:
        t = self.tissues
        out = []
        a_pv, a_art = _phase_pair(t["aorta"])
        out.extend(tube_structures("aorta", self.aorta, a_pv, a_art, label=0))
        pv_pv, pv_art = _phase_pair(t["portal_vein"])
        out.extend(tube_structures("portal vein", self.portal_trunk, pv_pv, pv_art))
        return out

    def _liver(self) -> list[Structure]:
        t = self.tissues
        l_pv, l_art = _phase_pair(t["liver"])
        out = [
            Structure("liver", self.liver, textured(l_pv, 4, 2.5), textured(l_art, 4, 2.5), label=1)
        ]
        for kind, tubes in self.vessel_trees.items():
            tissue = t["portal_vein"] if kind == "portal" else t["hepatic_vein"]
            v_pv, v_art = _phase_pair(tissue)
            for i, tube in enumerate(tubes):
                for j, capsule in enumerate(tube.capsules()):
                    out.append(
                        Structure(
                            f"{kind} vessel {i}.{j}",
                            capsule,
                            v_pv,
                            v_art,
                            within_label=1,
                            detail_mm=max(capsule.r0, capsule.r1),
                        )
                    )
        if self.gallbladder is not None:
            bile = t["bile"].portal_venous
            wall_pv, wall_art = _phase_pair(t["bowel_wall"])
            out.append(Structure("gallbladder wall", self.gallbladder, wall_pv, wall_art, label=0))
            out.append(
                Structure("gallbladder", Offset(self.gallbladder, -2.0), bile, bile, label=0)
            )
        i_pv, i_art = _phase_pair(t["ivc"])
        out.extend(tube_structures("inferior vena cava", self.ivc, i_pv, i_art, label=0))
        return out

    def _spine_and_ribs(self) -> list[Structure]:
        t = self.tissues
        cortical = t["cortical_bone"].portal_venous
        cancellous = t["cancellous_bone"].portal_venous
        disc = t["disc"].portal_venous
        csf = t["csf"].portal_venous
        marrow = t["marrow_rib"].portal_venous
        cartilage = t["cartilage"].portal_venous
        out: list[Structure] = []
        under_fat = Offset(Layer(self.body, self._wall_thickness(include_wall=False)), -4.0)
        levels = self.vertebra_levels
        z_low, z_high = self.scan_bottom_z - 40, self.scan_top_z + 40
        for i in range(len(levels) - 1):
            top, bottom = levels[i], levels[i + 1]
            if bottom > z_high or top < z_low:
                continue
            disc_half = 4.0
            zc = 0.5 * (top + bottom)
            yc = float(self.spine_y(np.array(zc)))
            lumbar = np.clip((self.dome_right_z - 60 - zc) / 150.0, 0.0, 1.0)
            rx, ry = 17.0 + 6.0 * lumbar, 13.5 + 4.0 * lumbar
            body = EllipticCylinder((0.0, yc), (rx, ry), bottom + disc_half, top - disc_half)
            out.append(Structure(f"vertebra {i}", body, cortical, cortical))
            out.append(
                Structure(
                    f"vertebra {i} cancellous",
                    Offset(body, -1.6),
                    textured(cancellous, 0, 25),
                    textured(cancellous, 0, 25),
                )
            )
            out.append(
                Structure(
                    f"disc {i}",
                    EllipticCylinder(
                        (0.0, yc), (rx - 1, ry - 1), bottom - disc_half, bottom + disc_half
                    ),
                    disc,
                    disc,
                )
            )
            arch_y = yc + ry + 11.0
            arch = EllipticCylinder((0.0, arch_y), (15.0, 12.0), bottom + 6, top - 4)
            out.append(
                Structure(
                    f"neural arch {i}",
                    arch,
                    0.5 * (cortical + cancellous),
                    0.5 * (cortical + cancellous),
                )
            )
            spinous = Ellipsoid(
                (0.0, arch_y + 16.0, zc - 4), (5.0, 15.0, 9.0), rotation_matrix((1, 0, 0), 0.35)
            )
            out.append(
                Structure(
                    f"spinous process {i}",
                    Intersection(spinous, under_fat),
                    0.6 * cortical,
                    0.6 * cortical,
                )
            )
            for side in (-1.0, 1.0):
                process = Ellipsoid(
                    (side * (rx + 12.0), yc + ry + 4.0, zc + 2), (16.0 + 4 * lumbar, 5.0, 6.0)
                )
                out.append(
                    Structure(
                        f"transverse process {i}{side:+.0f}",
                        process,
                        0.55 * cortical,
                        0.55 * cortical,
                    )
                )
        canal_cells = []
        zs = np.linspace(z_low, z_high, 12)
        for a, b in itertools.pairwise(zs):
            ya = float(self.spine_y(np.array(a)))
            yb = float(self.spine_y(np.array(b)))
            canal_cells.append(Capsule((0.0, ya + 30.0, a), (0.0, yb + 30.0, b), 8.5, 8.5))
        out.extend(
            Structure(f"spinal canal {i}", cell, csf, csf) for i, cell in enumerate(canal_cells)
        )
        for i, (rib, cartilage_tube) in enumerate(self.ribs):
            out.extend(tube_structures(f"rib {i}", rib, cortical * 0.8, cortical * 0.8))
            out.extend(tube_structures(f"rib {i} marrow", rib, marrow, marrow, grow=-1.8))
            if cartilage_tube is not None:
                out.extend(
                    tube_structures(f"costal cartilage {i}", cartilage_tube, cartilage, cartilage)
                )
        return out


# ============================================================== design


def _liver_vessel_tree(
    rng: np.random.Generator,
    root: np.ndarray,
    points: np.ndarray,
    radius: float,
    depth: int,
    max_depth: int,
    tubes: list[Tube],
) -> None:
    """Grow a vessel tree from ``root`` into the cloud ``points`` by recursive bisection."""
    if depth >= max_depth or len(points) < 8 or radius < 0.9:
        return
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(points) // 400)], full_matrices=False)
    projection = centred @ vt[0]
    split = np.median(projection)
    for half in (points[projection <= split], points[projection > split]):
        if len(half) < 4:
            continue
        target = half.mean(axis=0)
        end = root + (target - root) * _u(rng, 0.45, 0.7)
        child = radius * _u(rng, 0.68, 0.82)
        middle = 0.5 * (root + end) + rng.normal(0, 0.08 * np.linalg.norm(end - root), 3)
        tubes.append(
            Tube(np.array([root, middle, end]), np.array([radius, 0.5 * (radius + child), child]))
        )
        _liver_vessel_tree(rng, end, half, child, depth + 1, max_depth, tubes)


def liver_volume_ml(shape: Shape, spacing_mm: float = 4.0) -> float:
    """Volume (mL) of ``shape`` by counting points of a lattice of ``spacing_mm``."""
    low, high = shape.bounds
    axes = [np.arange(low[a], high[a] + spacing_mm, spacing_mm) for a in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return float((shape.sdf(x, y, z) < 0).sum()) * spacing_mm**3 / 1000.0


def lattice_points(shape: Shape, spacing_mm: float) -> np.ndarray:
    """Points ``(n, 3)`` of a lattice of ``spacing_mm`` inside ``shape``."""
    low, high = shape.bounds
    axes = [np.arange(low[a], high[a] + spacing_mm, spacing_mm) for a in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    inside = shape.sdf(x, y, z) < 0
    return np.stack([x[inside], y[inside], z[inside]], axis=1)


def design_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one random subject's anatomy (deterministic for the generator's state)."""
    u = lambda a, b: _u(rng, a, b)  # noqa: E731
    tissues = _tissues(rng)

    # ---------------------------------------------------------------- body wall
    habitus = u(0.0, 1.0)  # 0 lean .. 1 obese
    a0 = 140.0 + 40.0 * habitus + u(-6, 6)
    b_ant0 = 100.0 + 38.0 * habitus + u(-6, 6)
    b_post0 = 95.0 + 18.0 * habitus + u(-4, 4)
    z_nodes = [BODY_Z_RANGE[0], -250.0, -120.0, 0.0, 120.0, BODY_Z_RANGE[1]]
    belly = 1.0 + 0.08 * habitus
    body = Extrusion(
        z_nodes=z_nodes,
        a=[a0 * f for f in (1.03, 1.03, 1.01, 1.0, 0.96, 0.93)],
        b_anterior=[b_ant0 * f for f in (belly, belly, belly * 0.99, 1.0, 0.93, 0.9)],
        b_posterior=[b_post0 * f for f in (1.0, 1.0, 1.0, 1.0, 0.97, 0.95)],
        y_centre=[0.0] * 6,
        squareness_anterior=u(0.1, 0.4),
        squareness_posterior=u(0.5, 0.9),
        z_range=BODY_Z_RANGE,
        harmonics=[(k, u(-0.015, 0.015), u(0, 2 * math.pi)) for k in (2, 3, 4)],
    )
    skin = u(1.5, 2.5)
    fat = (
        6.0 + 40.0 * habitus * u(0.7, 1.1),
        6.0 + 32.0 * habitus * u(0.7, 1.1),
        5.0 + 22.0 * habitus * u(0.7, 1.1),
    )
    wall = (u(9, 14), u(11, 17), u(26, 34))

    dome_right = u(90, 110)
    dome_left = dome_right - u(10, 25)
    diaphragm = u(3.0, 5.0)
    spine_y0 = b_post0 * 0.45 + u(-3, 3)

    def spine_y(z: Array) -> Array:
        return spine_y0 - 6.0 * np.cos((np.asarray(z, dtype=float) - dome_right + 200.0) / 260.0)

    coverage = u(300, 330)
    scan_top = dome_right + u(35, 50)
    scan_bottom = scan_top - coverage

    anatomy_bounds = body.bounds

    # ---------------------------------------------------------------- liver
    liver_shift = rng.normal(0, 6, 3)
    right = Ellipsoid(
        (-68 + liver_shift[0], -2 + liver_shift[1], dome_right - 70 + liver_shift[2]),
        (u(62, 75), u(68, 82), u(72, 92)),
        euler_matrix(u(-0.12, 0.12), u(-0.15, 0.15), u(-0.2, 0.1)),
    )
    left_size = u(0.7, 1.25)
    left = Ellipsoid(
        (
            8 + liver_shift[0] + 8 * left_size,
            -42 + liver_shift[1],
            dome_right - 45 + liver_shift[2],
        ),
        (62 * left_size, u(30, 42), u(26, 36)),
        euler_matrix(u(-0.1, 0.1), u(-0.35, -0.1), u(-0.35, -0.1)),
    )
    caudate = Ellipsoid(
        (-14 + liver_shift[0], 22 + liver_shift[1], dome_right - 55 + liver_shift[2]),
        (u(15, 22), u(16, 22), u(28, 38)),
    )
    parts: dict[str, Shape] = {"right lobe": right, "left lobe": left, "caudate lobe": caudate}
    if rng.random() < 0.25:
        parts["riedel lobe"] = Ellipsoid(
            (-90 + liver_shift[0], -5 + liver_shift[1], dome_right - 150),
            (u(22, 30), u(30, 40), u(35, 50)),
        )
    modes = []
    for _ in range(3):
        wavelength = u(90, 180)
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        wave = direction * 2 * math.pi / wavelength
        amplitude = rng.normal(size=3)
        amplitude *= u(4, 9) / np.linalg.norm(amplitude)
        modes.append((amplitude, wave, u(0, 2 * math.pi)))

    spine_zone = EllipticCylinder(
        (0.0, spine_y0 + 10), (24.0, 30.0), BODY_Z_RANGE[0], BODY_Z_RANGE[1]
    )

    # kidneys (needed to carve the liver)
    kidneys: dict[str, tuple[Ellipsoid, Ellipsoid, Ellipsoid]] = {}
    kidney_shapes = []
    for side, sign, z_offset in (("right", -1.0, -170.0), ("left", 1.0, -155.0)):
        centre = np.array(
            [sign * u(68, 78), spine_y0 + u(0, 10), dome_right + z_offset + u(-10, 10)]
        )
        rotation = euler_matrix(u(-0.1, 0.1), sign * u(0.1, 0.25), -sign * u(0.35, 0.6))
        semi = (u(24, 29), u(21, 26), u(48, 58))
        kidney = Ellipsoid(centre, semi, rotation)
        medial = rotation @ np.array([-sign, 0.0, 0.0])
        sinus = Ellipsoid(
            centre + medial * semi[0] * 0.55,
            (semi[0] * 0.5, semi[1] * 0.5, semi[2] * 0.55),
            rotation,
        )
        pelvis = Ellipsoid(
            centre + medial * semi[0] * 0.75,
            (semi[0] * 0.3, semi[1] * 0.3, semi[2] * 0.25),
            rotation,
        )
        kidneys[side] = (kidney, sinus, pelvis)
        kidney_shapes.append(kidney)

    def make_liver(scale: float) -> Shape:
        scaled = [
            Ellipsoid(p.centre, p.semi_axes * scale, p.rotation)  # type: ignore[attr-defined]
            for p in parts.values()
        ]
        blended = Warped(SmoothUnion(scaled, k=22.0), modes)
        cavity = Layer(body, _thickness_function(skin, fat, wall, dome_right))
        below = BelowSurface(
            lambda x, y: _diaphragm(x, y, dome_right, dome_left) - diaphragm - 1.0,
            anatomy_bounds,
        )
        return Difference(
            Intersection(blended, below, Offset(cavity, -1.5)),
            Offset(spine_zone, 4.0),
            Offset(kidney_shapes[0], 4.0),
        )

    target_ml = u(1250, 2100)
    scale = 1.0
    for _ in range(3):
        volume = liver_volume_ml(make_liver(scale), 8.0)
        scale *= (target_ml / max(volume, 1.0)) ** (1.0 / 3.0)
        scale = float(np.clip(scale, 0.6, 1.5))
    liver = make_liver(scale)

    # ---------------------------------------------------------------- vessels
    points = lattice_points(liver, 6.0)
    z_top_liver = float(points[:, 2].max())
    aorta_nodes = [
        (14 + u(-3, 3), spine_y0 - 30, BODY_Z_RANGE[0]),
        (12, spine_y0 - 32, dome_right - 200),
        (10, spine_y0 - 30, dome_right - 80),
        (18, spine_y0 - 20, dome_right + 10),
        (24, spine_y0 - 14, BODY_Z_RANGE[1]),
    ]
    aorta_radius = u(10, 13)
    aorta_path = _smooth_path(aorta_nodes, 25.0)
    aorta = Tube(aorta_path, np.full(len(aorta_path), aorta_radius))
    ivc_nodes = [
        (-24, spine_y0 - 26, BODY_Z_RANGE[0]),
        (-24, spine_y0 - 30, dome_right - 190),
        (-24 + liver_shift[0] * 0.3, spine_y0 - 36, dome_right - 95),
        (-16, spine_y0 - 48, z_top_liver - 10),
        (-8, spine_y0 - 62, dome_right + 25),
        (-2, spine_y0 - 70, BODY_Z_RANGE[1]),
    ]
    ivc_path = _smooth_path(ivc_nodes, 20.0)
    ivc_r = u(10, 12.5)
    ivc = Tube(ivc_path, np.full(len(ivc_path), ivc_r))

    hilum = np.array([-30 + liver_shift[0], -6 + liver_shift[1], dome_right - 95 + liver_shift[2]])
    confluence = np.array([4.0, -8.0, dome_right - 135])
    portal_radius = u(6.5, 8.0)
    portal_path = _smooth_path([confluence, 0.5 * (confluence + hilum) + (0, -4, 0), hilum], 10.0)
    portal_trunk = Tube(portal_path, np.full(len(portal_path), portal_radius))

    vessel_trees: dict[str, list[Tube]] = {"portal": [], "hepatic": []}
    _liver_vessel_tree(rng, hilum, points, portal_radius * 0.9, 0, 6, vessel_trees["portal"])
    ivc_top = np.array([-14.0, spine_y0 - 52, z_top_liver - 25])
    territories = [
        points[:, 0] < -55,
        (points[:, 0] >= -55) & (points[:, 0] < -5),
        points[:, 0] >= -5,
    ]
    for territory in territories:
        subset = points[territory & (points[:, 2] < z_top_liver - 10)]
        if len(subset) < 20:
            continue
        _liver_vessel_tree(rng, ivc_top, subset, u(5.0, 6.5), 0, 5, vessel_trees["hepatic"])

    # gallbladder at the inferior surface between the lobes
    gallbladder = None
    if rng.random() < 0.85:
        gx, gy = -32 + liver_shift[0] + u(-6, 6), -45 + liver_shift[1] + u(-5, 5)
        column = points[(np.abs(points[:, 0] - gx) < 9) & (np.abs(points[:, 1] - gy) < 9)]
        if len(column):
            bottom = float(column[:, 2].min())
            gallbladder = Ellipsoid(
                (gx, gy, bottom + u(8, 18)),
                (u(14, 19), u(15, 21), u(32, 45)),
                euler_matrix(u(0.4, 0.7), u(-0.2, 0.2), 0.0),
            )

    # ---------------------------------------------------------------- spleen
    spleen_centre = (u(85, 100), spine_y0 + u(-5, 10), dome_left - u(50, 65))
    spleen_rot = euler_matrix(u(0.3, 0.6), 0.0, u(-0.7, -0.4))
    spleen_outer = Ellipsoid(spleen_centre, (u(22, 28), u(45, 60), u(42, 58)), spleen_rot)
    medial = spleen_rot @ np.array([-1.0, 0.0, 0.0])
    spleen_hollow = Ellipsoid(
        np.asarray(spleen_centre) + medial * 38.0, (30.0, 45.0, 50.0), spleen_rot
    )
    cavity_shape = Layer(body, _thickness_function(skin, fat, wall, dome_right))
    below = BelowSurface(
        lambda x, y: _diaphragm(x, y, dome_right, dome_left) - diaphragm - 1.0, anatomy_bounds
    )
    spleen = Intersection(
        Difference(spleen_outer, spleen_hollow), below, Offset(cavity_shape, -1.5)
    )

    # ---------------------------------------------------------------- GI tract
    stomach_nodes = [
        (u(45, 60), spine_y0 - u(15, 30), dome_left - 25),
        (u(50, 62), -u(10, 25), dome_left - 70),
        (u(30, 45), -u(45, 60), dome_right - 120),
        (u(0, 10), -u(55, 65), dome_right - 135),
        (-25, -45, dome_right - 150),
    ]
    stomach_path = _smooth_path(stomach_nodes, 10.0)
    s_r = np.interp(
        np.linspace(0, 1, len(stomach_path)),
        [0, 0.25, 0.6, 0.85, 1.0],
        [u(34, 42), u(30, 38), u(24, 30), u(18, 22), 12],
    )
    stomach = Tube(stomach_path, s_r)
    stomach_gas_y = -u(20, 60) if rng.random() < 0.8 else -200.0

    pancreas_nodes = [
        (-36, -14, dome_right - 178),
        (-8, -28, dome_right - 160),
        (32, -16, dome_right - 150),
        (u(68, 80), spine_y0 - 20, dome_right - u(125, 140)),
    ]
    pancreas_path = _smooth_path(pancreas_nodes, 10.0)
    pancreas = Tube(
        pancreas_path, np.interp(np.linspace(0, 1, len(pancreas_path)), [0, 0.3, 1], [16, 11, 9])
    )
    duodenum_nodes = [
        (-25, -45, dome_right - 150),
        (-52, -30, dome_right - 160),
        (-58, -10, dome_right - 195),
        (-40, 2, dome_right - 220),
        (0, -2, dome_right - 228),
        (25, -12, dome_right - 210),
    ]
    duodenum_path = _smooth_path(duodenum_nodes, 10.0)
    duodenum = Tube(duodenum_path, np.full(len(duodenum_path), u(10, 13)))

    low_z = dome_right - 165
    colon_nodes = [
        (-82, -25, scan_bottom - 40),
        (-88, 0, low_z - 60),
        (-82, -30, low_z + 5),
        (-40, -72, low_z - 25),
        (0, -80 + u(-10, 10), low_z - 40),
        (45, -70, low_z - 10),
        (82, -15, dome_left - 110),
        (92, 18, low_z - 60),
        (88, 20, scan_bottom - 40),
    ]
    colon_path = _smooth_path(colon_nodes, 12.0)
    colon = Tube(colon_path, np.clip(rng.normal(21, 3, len(colon_path)), 14, 28))

    # small bowel: a confined random walk
    steps = 150
    position = np.array([u(-20, 20), u(-60, -20), low_z - 40])
    direction = rng.normal(size=3)
    path = [position.copy()]
    box_low = np.array([-60.0, -b_ant0 + fat[0] + wall[0] + 20, max(scan_bottom - 30, -420)])
    box_high = np.array([60.0, spine_y0 - 25, low_z - 25])
    for _ in range(steps):
        direction = direction + rng.normal(0, 0.7, 3)
        pull = np.where(position < box_low, 1.0, 0.0) - np.where(position > box_high, 1.0, 0.0)
        direction = direction / np.linalg.norm(direction) + 1.5 * pull
        direction /= np.linalg.norm(direction)
        position = position + 14.0 * direction
        path.append(position.copy())
    sb_path = np.asarray(path)
    small_bowel = Tube(sb_path, np.clip(rng.normal(12, 2.0, len(sb_path)), 8, 16))
    bowel_gas = rng.random(len(sb_path) - 1) < 0.12

    # ---------------------------------------------------------------- thorax
    heart = Ellipsoid(
        (u(10, 25), -u(20, 35), dome_right + u(30, 45)),
        (u(65, 80), u(48, 58), u(55, 65)),
        euler_matrix(0.0, u(-0.4, -0.2), u(0.4, 0.7)),
    )
    lung_vessels: list[Capsule] = []
    for _ in range(60):
        side = 1.0 if rng.random() < 0.5 else -1.0
        start = np.array([side * u(40, 120), u(-60, 80), u(dome_right - 60, scan_top + 30)])
        direction = rng.normal(size=3) + np.array([side * 0.8, 0.3, 0.8])
        direction /= np.linalg.norm(direction)
        length = u(15, 50)
        radius = u(1.0, 4.0)
        lung_vessels.append(Capsule(start, start + direction * length, radius, radius * 0.7))

    # ---------------------------------------------------------------- skeleton
    pitch = u(30, 35)
    first = dome_right + 120
    levels = np.arange(first, BODY_Z_RANGE[0], -pitch)
    ribs = _ribs(rng, body, skin, fat, wall, dome_right, spine_y, scan_top, pitch * 0.75)

    psoas = []
    paraspinal = []
    for sign in (-1.0, 1.0):
        psoas_nodes = [
            (sign * 24, spine_y0 - 6, dome_right - 130),
            (sign * 40, spine_y0 - 8, dome_right - 230),
            (sign * 52, spine_y0 - 22, dome_right - 330),
            (sign * 62, spine_y0 - 40, BODY_Z_RANGE[0]),
        ]
        p_path = _smooth_path(psoas_nodes, 15.0)
        p_r = np.interp(np.linspace(0, 1, len(p_path)), [0, 0.35, 0.7, 1], [6, 19, 25, 26])
        psoas.append(Tube(p_path, p_r * u(0.85, 1.15)))
        for offset, radius in ((24.0, 15.0), (44.0, 13.0)):
            nodes = [
                (sign * offset, float(spine_y(np.array(z))) + 30.0 - 0.15 * offset, z)
                for z in np.linspace(BODY_Z_RANGE[0], BODY_Z_RANGE[1], 8)
            ]
            path2 = np.asarray(nodes, dtype=float)
            paraspinal.append(Tube(path2, np.full(len(path2), radius * u(0.85, 1.15))))
        ql = _smooth_path(
            [
                (sign * 62, spine_y0 + 22, dome_right - 150),
                (sign * 70, spine_y0 + 22, dome_right - 260),
            ],
            20,
        )
        paraspinal.append(Tube(ql, np.full(len(ql), u(9, 13))))

    return Anatomy(
        tissues=tissues,
        body=body,
        skin_mm=skin,
        fat_mm=fat,
        wall_mm=wall,
        dome_right_z=dome_right,
        dome_left_z=dome_left,
        diaphragm_mm=diaphragm,
        spine_y=spine_y,
        liver=liver,
        liver_parts=parts,
        gallbladder=gallbladder,
        ivc=ivc,
        aorta=aorta,
        portal_trunk=portal_trunk,
        vessel_trees=vessel_trees,
        spleen=spleen,
        kidneys=kidneys,
        stomach=stomach,
        stomach_gas_y=stomach_gas_y,
        pancreas=pancreas,
        duodenum=duodenum,
        colon=colon,
        small_bowel=small_bowel,
        bowel_gas=bowel_gas,
        heart=heart,
        ribs=ribs,
        lung_vessels=lung_vessels,
        vertebra_levels=levels,
        scan_top_z=scan_top,
        scan_bottom_z=scan_bottom,
        psoas=psoas,
        paraspinal=paraspinal,
    )


def _diaphragm(x: Array, y: Array, dome_right: float, dome_left: float) -> Array:
    right = dome_right - ((x + 65.0) ** 2) / 230.0 - ((y - 5.0) ** 2) / 190.0
    left = dome_left - ((x - 70.0) ** 2) / 230.0 - ((y - 5.0) ** 2) / 190.0
    return np.maximum(right, left)


def _thickness_function(
    skin: float,
    fat: tuple[float, float, float],
    wall: tuple[float, float, float],
    dome_right: float,
) -> Callable[[Array, Array, Array], Array]:
    fa, fl, fp = fat
    wa, wl, wp = wall
    top = dome_right - 60.0

    def thickness(c: Array, s: Array, z: Array) -> Array:
        anterior = np.maximum(-s, 0.0) ** 2
        posterior = np.maximum(s, 0.0) ** 2
        lateral = c * c
        thorax = np.clip((z - top) / 60.0, 0.0, 1.0)
        return (
            skin
            + fa * anterior
            + fl * lateral
            + fp * posterior
            + (wa * anterior + wl * lateral + wp * posterior) * (1.0 - 0.45 * thorax)
        )

    return thickness


def _contour_point(
    body: Extrusion,
    thickness: Callable[[Array, Array, Array], Array],
    cos: float,
    sin: float,
    z: float,
    extra: float,
) -> np.ndarray:
    """Point at depth ``thickness + extra`` below the body surface in direction ``(cos, sin)``."""
    a, b_ant, b_post, yc = (float(v) for v in body.profile(np.array(z)))
    b = b_ant if sin < 0 else b_post
    square = body.squareness_anterior if sin < 0 else body.squareness_posterior
    ux, uy = cos / a, sin / b
    rho2 = math.sqrt(ux * ux + uy * uy)
    rho4 = (ux**4 + uy**4) ** 0.25
    rho_unit = rho2 + (rho4 - rho2) * square
    scale = float(body.harmonic_scale(np.array(cos), np.array(sin)))
    surface = scale / rho_unit
    depth = float(thickness(np.array(cos), np.array(sin), np.array(z))) + extra
    r = surface - depth
    return np.array([r * cos, yc + r * sin, z])


def _ribs(
    rng: np.random.Generator,
    body: Extrusion,
    skin: float,
    fat: tuple[float, float, float],
    wall: tuple[float, float, float],
    dome_right: float,
    spine_y: Callable[[Array], Array],
    scan_top: float,
    pitch: float,
) -> list[tuple[Tube, Tube | None]]:
    """Ribs 5..12 on both sides: tubes descending from the spine around the chest wall."""
    thickness = _thickness_function(skin, fat, wall, dome_right)
    fat_only = _thickness_function(skin, fat, (0.0, 0.0, 0.0), dome_right)
    ribs: list[tuple[Tube, Tube | None]] = []
    count = 8
    lowest_head = dome_right - 95.0 + _u(rng, -8, 8)
    for i in range(count):
        head_z = lowest_head + (count - 1 - i) * pitch
        floating = i >= count - 2
        end = 0.42 if floating else (0.62 + 0.25 * (count - 2 - i) / (count - 2))
        drop = _u(rng, 150, 180) * (0.6 if floating else 1.0)
        for side in (-1.0, 1.0):
            points, radii = [], []
            for f in np.linspace(0.0, 1.0, 12):
                angle = (0.1 + f * (end - 0.1)) * math.pi  # 0 = posterior midline
                cos, sin = side * math.sin(angle), math.cos(angle)
                z = head_z - drop * (f * end) ** 1.2
                if f == 0.0:
                    point = np.array([side * 26.0, float(spine_y(np.array(z))) + 12.0, z])
                else:
                    inner = _contour_point(body, thickness, cos, sin, z, -6.0)
                    outer = _contour_point(body, fat_only, cos, sin, z, 7.0)
                    point = (
                        inner if np.linalg.norm(inner[:2]) < np.linalg.norm(outer[:2]) else outer
                    )
                    point = 0.5 * (inner + outer) if f > 0.15 else point
                points.append(point)
                radii.append(4.5 if f > 0.1 else 5.5)
            rib = Tube(np.asarray(points), np.asarray(radii))
            cartilage = None
            if not floating:
                c_points = []
                for f in np.linspace(0.0, 1.0, 6):
                    angle = (end + f * (0.93 - end)) * math.pi
                    cos, sin = side * math.sin(angle), math.cos(angle)
                    z = points[-1][2] + 25.0 * f * (count - 2 - i) / (count - 2) - 10 * f
                    inner = _contour_point(body, thickness, cos, sin, z, -6.0)
                    outer = _contour_point(body, fat_only, cos, sin, z, 7.0)
                    c_points.append(0.5 * (inner + outer))
                cartilage = Tube(np.asarray(c_points), np.full(len(c_points), 5.0))
            ribs.append((rib, cartilage))
    return ribs
