"""Small synthetic subjects for report and cohort tests.

A CT with an ellipsoidal liver and spherical lesions of known radius, the
measure folder of each time point (``measurements.json`` with the documented
fields, ``liver.nii.gz``, ``lesions.nii.gz``, ``lesions.csv``) and a
``response.json`` in the documented layout, written without running the other
stages, so that the report can be tested on values known in advance.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline import SCHEMA_VERSION, __version__

SPACING_XYZ_MM = (1.5, 1.5, 3.0)
SIZE_XYZ = (96, 80, 24)
ORIGIN_XYZ_MM = (-72.0, -60.0, -36.0)


@dataclasses.dataclass
class Sphere:
    """A lesion: centre (LPS mm, ``(x, y, z)``) and radius in mm."""

    centre_xyz_mm: tuple[float, float, float]
    radius_mm: float


def _grid_mm() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Physical coordinates ``x, y, z`` of every voxel, each indexed ``[z, y, x]``."""
    nx, ny, nz = SIZE_XYZ
    sx, sy, sz = SPACING_XYZ_MM
    ox, oy, oz = ORIGIN_XYZ_MM
    z, y, x = np.meshgrid(
        oz + sz * np.arange(nz), oy + sy * np.arange(ny), ox + sx * np.arange(nx), indexing="ij"
    )
    return x, y, z


def _image(array_zyx: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(SPACING_XYZ_MM)
    image.SetOrigin(ORIGIN_XYZ_MM)
    return image


def write_timepoint(
    folder: Path,
    subject: str,
    timepoint: str,
    date: str,
    lesions: list[Sphere],
    *,
    lesion_hu: float = 80.0,
) -> tuple[Path, Path]:
    """Write a CT and its measure folder; returns ``(ct_path, measure_folder)``."""
    x, y, z = _grid_mm()
    liver = ((x / 55.0) ** 2 + (y / 45.0) ** 2 + (z / 30.0) ** 2) <= 1.0
    ct = np.full(liver.shape, -900.0, dtype=np.float32)  # air around the body
    body = ((x / 70.0) ** 2 + (y / 58.0) ** 2) <= 1.0
    ct[body] = -80.0  # fat
    ct[liver] = 60.0
    labels = np.zeros(liver.shape, dtype=np.uint8)
    voxel_ml = float(np.prod(SPACING_XYZ_MM)) / 1000.0
    records = []
    for index, sphere in enumerate(lesions, start=1):
        cx, cy, cz = sphere.centre_xyz_mm
        inside = ((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) <= sphere.radius_mm**2
        inside &= liver
        labels[inside] = index
        ct[inside] = lesion_hu
        r = sphere.radius_mm
        records.append(
            {
                "id": index,
                "volume_ml": round(float(inside.sum()) * voxel_ml, 3),
                "longest_axial_diameter_mm": 2 * r,
                "short_axis_diameter_mm": 2 * r,
                "axial_slice_index": round((cz - ORIGIN_XYZ_MM[2]) / SPACING_XYZ_MM[2]),
                "centroid_mm": [cx, cy, cz],
                "mean_hu": lesion_hu,
                "measurable": 2 * r >= 10.0,
                "longest_axial_diameter_endpoints_mm": [[cx - r, cy, cz], [cx + r, cy, cz]],
                "short_axis_endpoints_mm": [[cx, cy - r, cz], [cx, cy + r, cz]],
                "viable_longest_axial_diameter_mm": None,
                "viable_volume_ml": None,
            }
        )
    scan_folder = folder / subject / timepoint
    scan_folder.mkdir(parents=True, exist_ok=True)
    ct_path = scan_folder / "ct.nii.gz"
    sitk.WriteImage(_image(ct), str(ct_path))
    measure = scan_folder / "measure"
    measure.mkdir(exist_ok=True)
    sitk.WriteImage(_image(liver.astype(np.uint8)), str(measure / "liver.nii.gz"))
    sitk.WriteImage(_image(labels), str(measure / "lesions.nii.gz"))
    liver_ml = float(liver.sum()) * voxel_ml
    tumour_ml = float((labels > 0).sum()) * voxel_ml
    involvement = 100.0 * tumour_ml / liver_ml
    band = (
        "<25"
        if involvement < 25
        else "25-50"
        if involvement < 50
        else "50-75"
        if involvement < 75
        else ">=75"
    )
    measurements: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "liverburden_version": __version__,
        "subject": subject,
        "timepoint": timepoint,
        "study_date": date,
        "liver_volume_ml": liver_ml,
        "liver_parenchyma_volume_ml": liver_ml - tumour_ml,
        "tumor_volume_ml": tumour_ml,
        "involvement_percent": involvement,
        "involvement_band": band,
        "lesion_count": len(records),
        "spacing_mm": list(SPACING_XYZ_MM),
        "slice_thickness_mm": SPACING_XYZ_MM[2],
        "flags": [],
        "lesions": records,
    }
    (measure / "measurements.json").write_text(json.dumps(measurements, indent=1), encoding="utf-8")
    (measure / "lesions.csv").write_text(
        "id,volume_ml\n" + "".join(f"{r['id']},{r['volume_ml']}\n" for r in records),
        encoding="utf-8",
    )
    return ct_path, measure


def write_subject(root: Path, subject: str = "S01") -> dict[str, Any]:
    """A subject with a baseline and two follow-ups (partial response, then progression).

    Returns the CT paths, measure folders and response path (keys ``images``,
    ``measure``, ``response``).
    """
    plan = [
        (
            "baseline",
            "2023-01-10",
            [
                Sphere((-20.0, 0.0, 0.0), 12.0),
                Sphere((25.0, 10.0, 3.0), 8.0),
                Sphere((5.0, -25.0, -6.0), 3.0),
            ],
        ),
        (
            "fu1",
            "2023-04-12",
            [
                Sphere((-20.0, 0.0, 0.0), 7.5),
                Sphere((25.0, 10.0, 3.0), 6.0),
                Sphere((5.0, -25.0, -6.0), 3.0),
            ],
        ),
        (
            "fu2",
            "2023-07-20",
            [
                Sphere((-20.0, 0.0, 0.0), 9.0),
                Sphere((25.0, 10.0, 3.0), 6.0),
                Sphere((5.0, -25.0, -6.0), 3.0),
                Sphere((-30.0, 20.0, 6.0), 7.0),
            ],
        ),
    ]
    images, folders = [], []
    for timepoint, date, spheres in plan:
        ct, measure = write_timepoint(root, subject, timepoint, date, spheres)
        images.append(ct)
        folders.append(measure)
    baseline_sum = 24.0 + 16.0
    sums = [baseline_sum, 15.0 + 12.0, 18.0 + 12.0]
    words = [None, "PR", "PD"]
    timepoints = []
    for index, (timepoint, date, spheres) in enumerate(plan):
        lesions: dict[str, Any] = {
            "L1": {"status": "baseline" if index == 0 else "matched", "ids": [1]},
            "L2": {"status": "baseline" if index == 0 else "matched", "ids": [2]},
            "L3": {"status": "baseline" if index == 0 else "matched", "ids": [3]},
        }
        if index == 2:
            lesions["N1"] = {"status": "new", "ids": [4]}
        nadir = min(sums[: index + 1]) if index else baseline_sum
        entry: dict[str, Any] = {
            "date": date,
            "timepoint": timepoint,
            "involvement_percent": None,
            "lesion_count": len(spheres),
            "lesions": lesions,
            "matching": {"quality": "good", "flags": []},
        }
        if index > 0:
            change = (sums[index] - baseline_sum) / baseline_sum * 100.0
            entry["recist"] = {
                "target_sum_mm": sums[index],
                "baseline_sum_mm": baseline_sum,
                "nadir_sum_mm": min(sums[:index]),
                "change_from_baseline_percent": change,
                "change_from_nadir_percent": (sums[index] - min(sums[:index]))
                / min(sums[:index])
                * 100.0,
                "target_response": words[index],
                "non_target_response": "Non-CR/Non-PD",
                "new_lesions": [{"key": "N1", "ids": [4]}] if index == 2 else [],
                "overall_response": words[index],
                "reasons": [f"sum {sums[index]:.1f} mm, {change:+.1f} % from baseline"],
            }
            entry["mrecist"] = {"overall_response": "NE"}
            entry["choi"] = {"overall_response": words[index]}
            entry["volumetric"] = {
                "overall_response": "PR" if index == 1 else "PD",
                "change_from_baseline_percent": -70.0 if index == 1 else -40.0,
            }
            del nadir
        timepoints.append(entry)
    response = {
        "schema_version": SCHEMA_VERSION,
        "liverburden_version": __version__,
        "subject": subject,
        "settings": {"partial_response_percent": -30.0, "progression_percent": 20.0},
        "baseline": {
            "date": plan[0][1],
            "targets": [{"key": "L1", "id": 1}, {"key": "L2", "id": 2}],
            "non_targets": [{"key": "L3", "id": 3}],
            "sum_mm": baseline_sum,
        },
        "timepoints": timepoints,
        "best_overall_response": {
            "recist": "PR",
            "mrecist": "NE",
            "choi": "PR",
            "volumetric": "PR",
        },
        "flags": [
            {
                "code": "example_flag",
                "severity": "warning",
                "message": "synthetic subject for tests",
            }
        ],
    }
    response_path = root / subject / "response.json"
    response_path.write_text(json.dumps(response, indent=1), encoding="utf-8")
    return {"images": images, "measure": folders, "response": response_path}
