"""Build ``liverburden measure``-style folders from analytic shapes for the response tests.

A scene is a liver (an ellipsoid with a lobe, asymmetric so that a rotation is
visible) and spherical or ellipsoidal lesions, defined in millimetres in a
"patient" frame. A follow-up can be the same scene moved rigidly (the patient
lying differently): every voxel is evaluated at the inverse-moved position, so
the motion is exact. ``write_measure_folder`` writes ``measurements.json``
(keys as ``liverburden measure`` writes them), ``lesions.nii.gz`` and
``liver.nii.gz``; lesion values it cannot know (attenuation, arterial data,
exact diameters) can be given per lesion.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

#: Grid of the test volumes: size (x, y, z) and spacing (x, y, z) in mm.
GRID_SIZE = (96, 96, 64)
GRID_SPACING_MM = (2.5, 2.5, 2.5)
GRID_ORIGIN_MM = (-120.0, -120.0, -80.0)


@dataclasses.dataclass
class Ellipsoid:
    """An ellipsoid, centre and semi-axes in mm (LPS)."""

    center_mm: tuple[float, float, float]
    radii_mm: tuple[float, float, float]

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Points ``(..., 3)`` in mm inside the ellipsoid."""
        relative = (points - np.asarray(self.center_mm)) / np.asarray(self.radii_mm)
        return np.sum(relative**2, axis=-1) <= 1.0


def sphere(center_mm: tuple[float, float, float], diameter_mm: float) -> Ellipsoid:
    radius = diameter_mm / 2.0
    return Ellipsoid(center_mm, (radius, radius, radius))


def default_liver() -> list[Ellipsoid]:
    """A liver-like asymmetric body: a large ellipsoid plus a lobe to one side."""
    return [
        Ellipsoid((0.0, 0.0, 0.0), (80.0, 55.0, 50.0)),
        Ellipsoid((-55.0, 35.0, -15.0), (40.0, 30.0, 30.0)),
    ]


def rotation_matrix_z(degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    return np.array(
        [
            [math.cos(angle), -math.sin(angle), 0.0],
            [math.sin(angle), math.cos(angle), 0.0],
            [0, 0, 1],
        ]
    )


@dataclasses.dataclass
class Motion:
    """Rigid motion of the patient: ``p' = R p + t`` (R about z through the origin, degrees)."""

    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_z_degrees: float = 0.0

    def inverse_points(self, points: np.ndarray) -> np.ndarray:
        rotation = rotation_matrix_z(self.rotation_z_degrees)
        return (points - np.asarray(self.translation_mm)) @ rotation  # R^T (p - t), row vectors

    def forward(self, point: tuple[float, float, float]) -> tuple[float, float, float]:
        rotation = rotation_matrix_z(self.rotation_z_degrees)
        moved = rotation @ np.asarray(point) + np.asarray(self.translation_mm)
        return (float(moved[0]), float(moved[1]), float(moved[2]))


def grid_points(
    size: tuple[int, int, int] = GRID_SIZE,
    spacing_mm: tuple[float, float, float] = GRID_SPACING_MM,
    origin_mm: tuple[float, float, float] = GRID_ORIGIN_MM,
) -> np.ndarray:
    """Physical (LPS, mm) centre of every voxel, array ``[z, y, x, 3]`` (identity direction)."""
    axes = [origin_mm[i] + spacing_mm[i] * np.arange(size[i]) for i in range(3)]
    z, y, x = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    return np.stack([x, y, z], axis=-1)


def render(
    liver: list[Ellipsoid],
    lesions: dict[int, list[Ellipsoid]],
    motion: Motion | None = None,
    *,
    size: tuple[int, int, int] = GRID_SIZE,
    spacing_mm: tuple[float, float, float] = GRID_SPACING_MM,
    origin_mm: tuple[float, float, float] = GRID_ORIGIN_MM,
) -> tuple[np.ndarray, np.ndarray]:
    """Liver mask (bool) and lesion instance map (uint16), arrays ``[z, y, x]``.

    ``lesions`` maps lesion id to the ellipsoids whose union is that lesion.
    Lesions are part of the liver mask (liver including tumour).
    """
    points = grid_points(size, spacing_mm, origin_mm)
    if motion is not None:
        points = motion.inverse_points(points.reshape(-1, 3)).reshape(points.shape)
    liver_mask = np.zeros(points.shape[:3], dtype=bool)
    for part in liver:
        liver_mask |= part.contains(points)
    lesion_map = np.zeros(points.shape[:3], dtype=np.uint16)
    for lesion_id, parts in lesions.items():
        inside = np.zeros(points.shape[:3], dtype=bool)
        for part in parts:
            inside |= part.contains(points)
        lesion_map[inside & (lesion_map == 0)] = lesion_id
    liver_mask |= lesion_map > 0
    return liver_mask, lesion_map


def _image(
    array: np.ndarray, spacing_mm: tuple[float, float, float], origin_mm: tuple[float, float, float]
) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing_mm)
    image.SetOrigin(origin_mm)
    return image


def longest_axial_diameter_mm(mask: np.ndarray, spacing_mm: tuple[float, float, float]) -> float:
    """Largest in-plane distance between voxel centres of ``mask`` ``[z, y, x]``, plus one voxel."""
    best = 0.0
    for z in range(mask.shape[0]):
        ys, xs = np.nonzero(mask[z])
        if ys.size == 0:
            continue
        points = np.column_stack([xs * spacing_mm[0], ys * spacing_mm[1]])
        differences = points[:, None, :] - points[None, :, :]
        best = max(best, float(np.sqrt((differences**2).sum(-1)).max()))
    return best + spacing_mm[0]


def write_measure_folder(
    folder: Path,
    *,
    liver_mask: np.ndarray,
    lesion_map: np.ndarray,
    subject: str | None = "S01",
    timepoint: str | None = "baseline",
    study_date: str | None = "2024-01-10",
    spacing_mm: tuple[float, float, float] = GRID_SPACING_MM,
    origin_mm: tuple[float, float, float] = GRID_ORIGIN_MM,
    lesion_values: dict[int, dict[str, Any]] | None = None,
    arterial: bool = False,
    flags: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a measure folder for the masks (arrays ``[z, y, x]``).

    ``lesion_values[id]`` overrides or adds lesion fields (for example
    ``longest_axial_diameter_mm``, ``mean_hu``, ``viable_longest_axial_diameter_mm``).
    With ``arterial`` the viable fields default to the whole lesion (fully enhancing).
    """
    folder.mkdir(parents=True, exist_ok=True)
    lesion_values = lesion_values or {}
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    liver_ml = float(liver_mask.sum()) * voxel_ml
    lesions: list[dict[str, Any]] = []
    ids = sorted(int(i) for i in np.unique(lesion_map) if i != 0)
    ids = sorted(set(ids) | set(lesion_values))
    for lesion_id in ids:
        inside = lesion_map == lesion_id
        count = int(inside.sum())
        if count:
            zyx = np.column_stack(np.nonzero(inside)).mean(axis=0)
            centroid = [origin_mm[i] + spacing_mm[i] * zyx[2 - i] for i in range(3)]
            diameter = longest_axial_diameter_mm(inside, spacing_mm)
        else:
            centroid, diameter = None, 0.0
        volume = count * voxel_ml
        entry: dict[str, Any] = {
            "id": lesion_id,
            "volume_ml": volume,
            "longest_axial_diameter_mm": diameter,
            "short_axis_diameter_mm": None,
            "axial_slice_index": None,
            "centroid_mm": centroid,
            "mean_hu": 80.0,
            "measurable": diameter >= 10.0,
            "longest_axial_diameter_endpoints_mm": None,
            "viable_volume_ml": volume if arterial else None,
            "viable_longest_axial_diameter_mm": diameter if arterial else None,
            "arterial_mean_hu": 150.0 if arterial else None,
            "lipiodol_volume_ml": 0.0 if arterial else None,
            "viable_fraction": 1.0 if arterial else None,
        }
        entry.update(lesion_values.get(lesion_id, {}))
        entry["measurable"] = bool(entry["longest_axial_diameter_mm"] >= 10.0)
        lesions.append(entry)
    tumour_ml = float(sum(item["volume_ml"] for item in lesions))
    measurements = {
        "schema_version": "1.0",
        "liverburden_version": "test",
        "subject": subject,
        "timepoint": timepoint,
        "study_date": study_date,
        "liver_volume_ml": liver_ml,
        "liver_parenchyma_volume_ml": liver_ml - tumour_ml,
        "tumor_volume_ml": tumour_ml,
        "involvement_percent": tumour_ml / liver_ml * 100.0 if liver_ml else 0.0,
        "involvement_band": "<25",
        "lesion_count": len(lesions),
        "spacing_mm": list(spacing_mm),
        "slice_thickness_mm": spacing_mm[2],
        "liver_centroid_mm": None,
        "flags": flags or [],
        "arterial": {"image": "arterial.nii.gz"} if arterial else None,
        "lesions": lesions,
    }
    (folder / "measurements.json").write_text(json.dumps(measurements, indent=1), encoding="utf-8")
    sitk.WriteImage(
        _image(lesion_map.astype(np.uint16), spacing_mm, origin_mm), str(folder / "lesions.nii.gz")
    )
    sitk.WriteImage(
        _image(liver_mask.astype(np.uint8), spacing_mm, origin_mm), str(folder / "liver.nii.gz")
    )
    return folder


def write_scene(
    folder: Path,
    lesions: dict[int, list[Ellipsoid]],
    *,
    motion: Motion | None = None,
    liver: list[Ellipsoid] | None = None,
    **kwargs: Any,
) -> Path:
    """Render a scene (optionally moved) and write it as a measure folder."""
    liver_mask, lesion_map = render(liver or default_liver(), lesions, motion)
    return write_measure_folder(folder, liver_mask=liver_mask, lesion_map=lesion_map, **kwargs)


def read_response(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ----------------------------------------------------------------- CT scenes for measure

AIR_HU = -1000.0
FAT_HU = -100.0
PORTAL_LIVER_HU = 100.0
PORTAL_TUMOUR_HU = 70.0
ARTERIAL_LIVER_HU = 80.0
ARTERIAL_VIABLE_HU = 170.0
ARTERIAL_NECROSIS_HU = 25.0
LIPIODOL_HU = 700.0


def region(parts: list[Ellipsoid], motion: Motion | None = None) -> np.ndarray:
    """Voxels ``[z, y, x]`` of the test grid inside any of ``parts`` (moved with the patient)."""
    points = grid_points()
    if motion is not None:
        points = motion.inverse_points(points.reshape(-1, 3)).reshape(points.shape)
    inside = np.zeros(points.shape[:3], dtype=bool)
    for part in parts:
        inside |= part.contains(points)
    return inside


def write_ct_scene(
    folder: Path,
    lesions: dict[int, list[Ellipsoid]],
    *,
    motion: Motion | None = None,
    necrosis: list[Ellipsoid] | None = None,
    lipiodol: list[Ellipsoid] | None = None,
    arterial: bool = False,
) -> dict[str, Path]:
    """Write a portal-venous CT, its label map (0/1/2) and optionally an arterial CT.

    Tumour is hypoattenuating in the portal phase; in the arterial phase it
    enhances (viable) except inside ``necrosis``; ``lipiodol`` is dense in both
    phases. Returns the paths by name (``ct``, ``labels``, ``arterial``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    liver_mask, lesion_map = render(default_liver(), lesions, motion)
    body = region([Ellipsoid((0.0, 0.0, 0.0), (112.0, 105.0, 400.0))], motion)
    tumour = lesion_map > 0
    dense = region(lipiodol or [], motion) & tumour
    dead = region(necrosis or [], motion) & tumour
    portal = np.full(liver_mask.shape, AIR_HU, dtype=np.float32)
    portal[body] = FAT_HU
    portal[liver_mask] = PORTAL_LIVER_HU
    portal[tumour] = PORTAL_TUMOUR_HU
    portal[dense] = LIPIODOL_HU
    labels = np.where(tumour, 2, np.where(liver_mask, 1, 0)).astype(np.uint8)
    paths = {"ct": folder / "ct.nii.gz", "labels": folder / "labels.nii.gz"}
    sitk.WriteImage(_image(portal, GRID_SPACING_MM, GRID_ORIGIN_MM), str(paths["ct"]))
    sitk.WriteImage(_image(labels, GRID_SPACING_MM, GRID_ORIGIN_MM), str(paths["labels"]))
    if arterial:
        image = np.full(liver_mask.shape, AIR_HU, dtype=np.float32)
        image[body] = FAT_HU
        image[liver_mask] = ARTERIAL_LIVER_HU
        image[tumour] = ARTERIAL_VIABLE_HU
        image[dead] = ARTERIAL_NECROSIS_HU
        image[dense] = LIPIODOL_HU
        paths["arterial"] = folder / "arterial.nii.gz"
        sitk.WriteImage(_image(image, GRID_SPACING_MM, GRID_ORIGIN_MM), str(paths["arterial"]))
    return paths


def measure_phantom_cohort_with_truth(cohort: Path, output: Path) -> dict[str, list[Path]]:
    """``liverburden measure`` on every scan of a ``liverburden phantom`` cohort with its
    true label map and arterial image (``samples_truth.tsv``); the measurement folders
    (``output/<subject>/<timepoint>``) per subject, in the sheet's order."""
    from tests.conftest import run_cli

    with open(cohort / "samples_truth.tsv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    folders: dict[str, list[Path]] = {}
    for row in rows:
        subject = row["subject"]
        folder = output / subject / row["timepoint"]
        result = run_cli(
            "measure",
            cohort / row["image"],
            cohort / row["mask"],
            "--arterial",
            cohort / row["arterial_image"],
            "-o",
            folder,
            "--date",
            row["date"],
            "--timepoint",
            row["timepoint"],
            "--subject",
            subject,
            "-q",
        )
        assert result.exit_code == 0, result.stderr
        folders.setdefault(subject, []).append(folder)
    return folders
