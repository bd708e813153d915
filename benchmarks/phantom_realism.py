"""Compare phantom CT with the real scans in ``../shared/data``: HU, noise, texture, body size.

Usage::

    python benchmarks/phantom_realism.py [--seeds 3] [--size medium] [--data ../shared/data]

For each image it prints, in HU:

* liver parenchyma (truth or expert mask, eroded 2 voxels): mean, std, 5/50/95th percentiles;
* tumour (where a mask exists): mean and std;
* subcutaneous fat and wall muscle: voxels between -190 and -30 HU, and between
  20 and 90 HU, in the outer 5-50 mm of the body (same rule for phantom and real scans);
* noise: std of the high-pass residual (image minus its in-plane Gaussian
  blur, sigma 2 voxels) in the eroded liver and in subcutaneous fat, the
  residual's correlation between in-plane neighbours, and std of air outside the body;
* body lateral width and front-back depth (mm) at the liver's middle slice;
* phantoms only: spleen (from the design's shape) in both phases, and the
  arterial phase of liver, aorta and lesions.

Real scans: 3D-IRCADb-01 patient 17 (portal venous, expert liver and
tumour masks), HCC-TACE-Seg HCC_048 (portal venous DICOM, no masks),
TotalSegmentator example (whole abdomen, 3 mm, little contrast; liver mask of
a model, on its first 30 slices only, not used).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from pipeline.io import read_ct


def _describe(values: np.ndarray) -> str:
    if values.size == 0:
        return "n/a"
    p5, p50, p95 = np.percentile(values, [5, 50, 95])
    return (
        f"mean {values.mean():7.1f}  std {values.std():5.1f}  "
        f"p5 {p5:7.1f}  p50 {p50:7.1f}  p95 {p95:7.1f}"
    )


def _body(image: np.ndarray) -> np.ndarray:
    body = image > -400
    body = ndimage.binary_opening(body, structure=np.ones((1, 5, 5)))
    labels, count = ndimage.label(body)
    if count > 1:
        sizes = ndimage.sum(body, labels, range(1, count + 1))
        body = labels == (int(np.argmax(sizes)) + 1)
    return np.stack([ndimage.binary_fill_holes(s) for s in body])


def measure(
    name: str,
    image: np.ndarray,
    spacing_xyz: tuple[float, float, float],
    liver: np.ndarray | None,
    tumour: np.ndarray | None,
) -> None:
    """Print the statistics of one image (array ``[z, y, x]``, HU)."""
    image = image.astype(np.float32)
    sx, sy, _ = spacing_xyz
    body = _body(image)
    depth = np.stack([ndimage.distance_transform_edt(s, sampling=(sy, sx)) for s in body])
    shell = (depth > 5) & (depth < 50)
    fat = shell & (image > -190) & (image < -30)
    muscle = shell & (image > 20) & (image < 90)
    residual = image - ndimage.gaussian_filter(image, (0, 2, 2))
    fat_core = ndimage.binary_erosion(fat, structure=np.ones((1, 5, 5)))
    outside = ~ndimage.binary_dilation(body, structure=np.ones((1, 9, 9)))
    air = outside & (image > -1010 - 200) & (image < -800)
    nz, ny, nx = image.shape
    print(f"--- {name}: {nx} x {ny} x {nz}, spacing {sx:.2f} x {sy:.2f} x {spacing_xyz[2]:.2f} mm")
    if liver is not None and liver.any():
        core = ndimage.binary_erosion(liver, structure=np.ones((3, 3, 3)), iterations=2)
        print(f"  liver           {_describe(image[core])}")
        correlation = _neighbour_correlation(residual, core)
        print(
            f"  liver noise     high-pass {residual[core].std():5.1f}  neighbours {correlation:.2f}"
        )
        middle = int(np.mean(np.flatnonzero(liver.any(axis=(1, 2)))))
        columns = np.flatnonzero(body[middle].any(axis=0))
        rows = np.flatnonzero(body[middle].any(axis=1))
        width = (columns.max() - columns.min() + 1) * sx
        depth_mm = (rows.max() - rows.min() + 1) * sy
        print(f"  body at liver   width {width:5.0f} mm  depth {depth_mm:5.0f} mm")
    if tumour is not None and tumour.any():
        print(f"  tumour          {_describe(image[tumour])}")
    print(f"  subcut. fat     {_describe(image[fat])}")
    correlation = _neighbour_correlation(residual, fat_core)
    print(
        f"  fat noise       high-pass {residual[fat_core].std():5.1f}  neighbours {correlation:.2f}"
    )
    print(f"  wall muscle     {_describe(image[muscle])}")
    print(f"  air outside     {_describe(image[air])}")


def _neighbour_correlation(residual: np.ndarray, mask: np.ndarray) -> float:
    both = mask[:, :, :-1] & mask[:, :, 1:]
    if both.sum() < 100:
        return float("nan")
    return float(np.corrcoef(residual[:, :, :-1][both], residual[:, :, 1:][both])[0, 1])


def real_scans(data: Path) -> None:
    ircad = data / "ircad-1.17"
    if (ircad / "ct.nii.gz").exists():
        image = sitk.ReadImage(str(ircad / "ct.nii.gz"))
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(ircad / "labels.nii.gz")))
        measure(
            "real: IRCAD 1.17 (portal venous)",
            sitk.GetArrayFromImage(image),
            image.GetSpacing(),
            labels == 1,
            labels == 2,
        )
    hcc = data / "hcc048-portal-venous" / "dicom"
    if hcc.exists():
        scan = read_ct(hcc)
        measure(
            "real: HCC_048 (portal venous)",
            sitk.GetArrayFromImage(scan.image),
            scan.image.GetSpacing(),
            None,
            None,
        )
    total = data / "totalseg-example" / "ct.nii.gz"
    if total.exists():
        image = sitk.ReadImage(str(total))
        measure(
            "real: TotalSegmentator example (3 mm)",
            sitk.GetArrayFromImage(image),
            image.GetSpacing(),
            None,
            None,
        )


def phantoms(seeds: int, size: str) -> None:
    from pipeline.phantom.anatomy import design_anatomy
    from pipeline.phantom.render import Pose
    from pipeline.phantom.scan import _streams, generate_scan
    from pipeline.phantom.shapes import rotation_matrix

    for seed in range(seeds):
        scan = generate_scan(seed, size)
        labels = scan.labels
        name = f"phantom seed {seed} ({size}, noise sigma {scan.noise_sigma_hu:.0f} HU)"
        measure(
            name + ", portal venous",
            scan.portal_venous_hu,
            scan.spacing_mm,
            labels == 1,
            labels == 2,
        )
        # the spleen and the arterial phase, from the design (phantoms only)
        anatomy = design_anatomy(_streams(seed, 5)[0])
        nz, ny, nx = labels.shape
        z, y, x = np.meshgrid(
            *(
                scan.origin_mm[a] + scan.spacing_mm[a] * np.arange(n)
                for a, n in ((2, nz), (1, ny), (0, nx))
            ),
            indexing="ij",
        )
        pose = Pose(
            rotation_matrix(scan.rotation_axis, np.radians(scan.rotation_deg)),
            np.array(scan.shift_mm),
        )
        body = pose.to_body(np.stack([x.ravel(), y.ravel(), z.ravel()], axis=1))
        inside = anatomy.spleen.sdf(body[:, 0], body[:, 1], body[:, 2]).reshape(x.shape) < 0
        spleen = ndimage.binary_erosion(inside, iterations=1)
        print(f"  spleen (portal)   {_describe(scan.portal_venous_hu[spleen])}")
        print(f"  spleen (arterial) {_describe(scan.arterial_hu[spleen])}")
        core = ndimage.binary_erosion(labels == 1, structure=np.ones((3, 3, 3)), iterations=2)
        print(f"  liver (arterial)  {_describe(scan.arterial_hu[core])}")
        if (labels == 2).any():
            print(f"  tumour (arterial) {_describe(scan.arterial_hu[labels == 2])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="number of phantom scans (seeds 0..N-1)"
    )
    parser.add_argument(
        "--size", default="medium", help="phantom size preset (default medium: 256 x 256, ~1.4 mm)"
    )
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    args = parser.parse_args()
    real_scans(args.data)
    phantoms(args.seeds, args.size)


if __name__ == "__main__":
    main()
