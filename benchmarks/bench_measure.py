"""Speed and accuracy of ``liverburden measure``.

Speed: a synthetic 512 x 512 x 200 scan (0.75 x 0.75 x 1.5 mm) with a liver and
200 ellipsoidal lesions of 4 to 25 mm radius, built here. Prints the time of
the measurement alone (``measure_scan``: labelling, checks, volumes, every
lesion's diameters and attenuation) and of the whole command (reading the CT
and label map, measuring, writing the four outputs), best of ``--repeat`` runs.

Accuracy: the longest axial diameter and short axis of random voxelised
ellipses against the analytic axes, in voxels, for the chosen voxel model and
for the two alternatives (centre to centre; hull of the voxel corners).

Run: ``python benchmarks/bench_measure.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline.measure.diameters import axial_diameters
from pipeline.measure.scan import measure_scan

SIZE_XYZ = (512, 512, 200)
SPACING_MM = (0.75, 0.75, 1.5)


def synthetic_scan(lesion_count: int, seed: int) -> tuple[sitk.Image, sitk.Image]:
    """CT (float32 HU) and label map with a liver and ``lesion_count`` lesions."""
    rng = np.random.default_rng(seed)
    shape = SIZE_XYZ[::-1]
    sx, sy, sz = SPACING_MM
    z = (np.arange(shape[0]) - shape[0] / 2) * sz
    y = (np.arange(shape[1]) - shape[1] / 2) * sy
    x = (np.arange(shape[2]) - shape[2] / 2) * sx
    liver_axes = (115.0, 90.0, 95.0)
    labels = np.zeros(shape, np.uint8)
    for k in range(shape[0]):  # slice by slice: little memory
        inside = (x[None, :] / liver_axes[0]) ** 2 + (y[:, None] / liver_axes[1]) ** 2 + (
            z[k] / liver_axes[2]
        ) ** 2 <= 1
        labels[k][inside] = 1
    placed: list[tuple[np.ndarray, float]] = []
    attempts = 0
    while len(placed) < lesion_count and attempts < 100_000:
        attempts += 1
        radius = float(rng.uniform(5.0, 25.0) if len(placed) < 20 else rng.uniform(4.0, 9.0))
        centre = rng.uniform(-1, 1, 3) * np.array(liver_axes) * 0.75
        if np.sum((centre / np.array(liver_axes)) ** 2) > 0.6:
            continue
        if any(np.linalg.norm(centre - c) < radius + r + 2 for c, r in placed):
            continue
        placed.append((centre, radius))
        axes = radius * rng.uniform(0.6, 1.0, 3)
        angle = rng.uniform(0, np.pi)
        lo = [
            int(np.searchsorted(v, c - radius - 1))
            for v, c in zip((z, y, x), centre[::-1], strict=True)
        ]
        hi = [
            int(np.searchsorted(v, c + radius + 1))
            for v, c in zip((z, y, x), centre[::-1], strict=True)
        ]
        Z, Y, X = np.meshgrid(
            z[lo[0] : hi[0]] - centre[2],
            y[lo[1] : hi[1]] - centre[1],
            x[lo[2] : hi[2]] - centre[0],
            indexing="ij",
        )
        u = X * np.cos(angle) + Y * np.sin(angle)
        v = -X * np.sin(angle) + Y * np.cos(angle)
        inside = (u / axes[0]) ** 2 + (v / axes[1]) ** 2 + (Z / axes[2]) ** 2 <= 1
        block = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        block[inside] = 2
    ct = np.full(shape, -100.0, np.float32)
    ct[:, :, :8] = -1000.0
    ct[labels == 1] = 100.0
    ct[labels == 2] = 60.0
    ct_image = sitk.GetImageFromArray(ct)
    ct_image.SetSpacing(SPACING_MM)
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(ct_image)
    return ct_image, label_image


def time_measurement(lesions: int, repeat: int, seed: int) -> None:
    from pipeline.cli import main

    start = time.perf_counter()
    ct, labels = synthetic_scan(lesions, seed)
    print(f"built a {'x'.join(map(str, SIZE_XYZ))} scan in {time.perf_counter() - start:.1f} s")
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = measure_scan(ct, labels)
        best = min(best, time.perf_counter() - start)
    values = result.values
    print(
        f"measure_scan (measurement only): {best:.2f} s for {values['lesion_count']} lesions "
        f"({values['noise_component_count']} noise), liver {values['liver_volume_ml']:.0f} mL, "
        f"involvement {values['involvement_percent']:.1f} %"
    )
    with tempfile.TemporaryDirectory() as folder:
        ct_path, label_path = Path(folder) / "ct.nii.gz", Path(folder) / "labels.nii.gz"
        sitk.WriteImage(sitk.Cast(ct, sitk.sitkInt16), str(ct_path), useCompression=True)
        sitk.WriteImage(labels, str(label_path), useCompression=True)
        best = math.inf
        for _ in range(repeat):
            start = time.perf_counter()
            code = main(
                ["measure", str(ct_path), str(label_path), "-o", str(Path(folder) / "out"), "-q"]
            )
            best = min(best, time.perf_counter() - start)
            assert code == 0
        print(f"liverburden measure (read + measure + write): {best:.2f} s")


def _feret(points: np.ndarray) -> float:
    from scipy.spatial import ConvexHull

    hull = points[ConvexHull(points).vertices]
    difference = hull[:, None] - hull[None]
    return float(np.sqrt((difference**2).sum(-1)).max())


def accuracy(trials: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    errors: dict[str, list[float]] = {"chosen": [], "short": [], "centres": [], "corners": []}
    for _ in range(trials):
        sx = rng.uniform(0.6, 1.0)
        sy = sx * rng.choice([1.0, 1.0, 1.3])
        a = rng.uniform(4, 30)
        b = a * rng.uniform(0.3, 0.8)
        angle = rng.uniform(0, np.pi)
        n = int(a / min(sx, sy)) + 4
        x = (np.arange(-n, n + 1) + rng.uniform(-0.5, 0.5)) * sx
        y = (np.arange(-n, n + 1) + rng.uniform(-0.5, 0.5)) * sy
        X, Y = np.meshgrid(x, y)  # [y, x]
        u = X * np.cos(angle) + Y * np.sin(angle)
        v = -X * np.sin(angle) + Y * np.cos(angle)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1
        voxel = max(sx, sy)
        result = axial_diameters(inside[None], (sx, sy, 1.0))
        errors["chosen"].append((result.longest_mm - 2 * a) / voxel)
        errors["short"].append((result.short_axis_mm - 2 * b) / voxel)
        centres = np.stack([X[inside], Y[inside]], axis=1)
        errors["centres"].append((_feret(centres) - 2 * a) / voxel)
        corners = np.concatenate(
            [centres + np.array([dx * sx / 2, dy * sy / 2]) for dx in (-1, 1) for dy in (-1, 1)]
        )
        errors["corners"].append((_feret(corners) - 2 * a) / voxel)
    names = {
        "chosen": "longest, voxel centres + half a voxel at each end (used)",
        "short": "short axis (used)",
        "centres": "longest, centre to centre",
        "corners": "longest, hull of voxel corners",
    }
    print(f"diameter error on {trials} random ellipses (voxels; analytic axis 2a or 2b):")
    for key, label in names.items():
        e = np.array(errors[key])
        print(
            f"  {label:58s} mean {e.mean():+.2f}  min {e.min():+.2f}  max {e.max():+.2f}  "
            f"within one voxel {100 * np.mean(np.abs(e) <= 1):.1f} %"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lesions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--trials", type=int, default=300, help="random ellipses for the accuracy check"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()
    if not args.skip_speed:
        time_measurement(args.lesions, args.repeat, args.seed)
    accuracy(args.trials, args.seed)


if __name__ == "__main__":
    main()
