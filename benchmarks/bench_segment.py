"""Speed and memory of ``liverburden segment`` on a 512 x 512 x 200 CT.

Prints, per device (CPU with the allotted threads; CUDA when present) and mode
(default, fast): wall time of the whole command in a child process (start-up,
reading, both stages, writing), its peak resident memory (``ru_maxrss`` of the
child), the seconds in the networks' forward passes, and the ratio of the two
(the overhead of I/O, resampling and post-processing), and the CPU seconds
(user + system) of the child, which, unlike wall time, does not grow when
other processes share the machine.

The CT is a ``full`` phantom (``pipeline.phantom``) of 512 x 512 x 200 voxels at
0.78 x 0.78 x 1.5 mm. Without ``--model`` the bundle is the shipped design
(:mod:`pipeline.segment.recipes`) with randomly initialised weights: speed does
not depend on weight values, but an untrained liver stage finds no sensible
liver box, so its box is replaced by the phantom's true liver box (what a
trained liver stage gives); ``--whole-volume-box`` instead runs the lesion stage
over the whole scan (the worst case).

    python benchmarks/bench_segment.py                 # CPU (and CUDA when present)
    python benchmarks/bench_segment.py --model models/liverburden-ct
    python benchmarks/bench_segment.py --keep /tmp/bench   # reuse the generated CT
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
import numpy as np
import SimpleITK as sitk
import pipeline.segment.predictor as predictor
from pipeline.segment import geometry

options = json.loads(sys.argv[1])
if options["truth"]:
    truth = sitk.ReadImage(options["truth"])
    liver_xyz = sitk.GetArrayFromImage(truth).transpose(2, 1, 0) > 0
    corners = geometry.physical_box_corners(liver_xyz, geometry.ras_affine(truth))

    class TrueLiverBox(predictor.LiverTumourSegmenter):
        def _foreground_corners(self, stage, probabilities, affine):
            return corners

    predictor.LiverTumourSegmenter = TrueLiverBox
elif options["whole_volume"]:
    class WholeVolume(predictor.LiverTumourSegmenter):
        def _foreground_corners(self, stage, probabilities, affine):
            return geometry.physical_box_corners(np.ones(probabilities.shape[1:], bool), affine)

    predictor.LiverTumourSegmenter = WholeVolume
from pipeline.cli import main
sys.exit(main(options["arguments"]))
"""


def make_ct(folder: Path, seed: int) -> tuple[Path, Path]:
    ct_path, labels_path = folder / "ct.nii.gz", folder / "labels.nii.gz"
    if ct_path.exists() and labels_path.exists():
        return ct_path, labels_path
    import SimpleITK as sitk

    from pipeline.phantom.scan import generate_scan

    started = time.perf_counter()
    scan = generate_scan(seed, "full", spacing_mm=(0.78, 0.78, 1.5), shape_zyx=(200, 512, 512))
    ct, _arterial, labels = scan.to_sitk()
    sitk.WriteImage(sitk.Cast(ct, sitk.sitkInt16), str(ct_path))  # stored as scanners store CT
    sitk.WriteImage(labels, str(labels_path))
    print(
        f"phantom 512 x 512 x 200 generated in {time.perf_counter() - started:.0f} s "
        f"(liver {scan.liver_volume_ml:.0f} mL, {len(scan.lesions)} lesions)"
    )
    return ct_path, labels_path


def make_synthetic_ct(folder: Path) -> tuple[Path, Path]:
    """A quick 512 x 512 x 200 stand-in (body, liver ellipsoid, noise) for slow machines."""
    import numpy as np
    import SimpleITK as sitk

    z, y, x = np.ogrid[0:200, 0:512, 0:512]
    ct = np.full((200, 512, 512), -1000, np.int16)
    ct[np.broadcast_to(((x - 256) / 220) ** 2 + ((y - 256) / 160) ** 2 < 1, ct.shape)] = -100
    liver = ((x * 0.78 - 150) / 100) ** 2 + ((y * 0.78 - 180) / 80) ** 2 + (
        (z * 1.5 - 170) / 90
    ) ** 2 < 1
    ct[liver] = 110
    ct = (ct + np.random.default_rng(0).normal(0, 15, ct.shape)).astype(np.int16)
    paths = []
    for name, array in (("ct.nii.gz", ct), ("labels.nii.gz", liver.astype(np.uint8))):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.78, 0.78, 1.5))
        sitk.WriteImage(image, str(folder / name))
        paths.append(folder / name)
    return paths[0], paths[1]


def run_once(
    ct: Path, truth: Path | None, bundle: Path, output: Path, device: str, fast: bool, whole: bool
) -> dict:
    arguments = [
        "segment",
        str(ct),
        "-o",
        str(output),
        "--model",
        str(bundle),
        "--device",
        device,
        "-q",
    ]
    if fast:
        arguments.append("--fast")
    options = {
        "arguments": arguments,
        "truth": str(truth) if truth else None,
        "whole_volume": whole,
    }
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as log:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(options)], cwd=REPO, stdout=log, stderr=log
        )
        _pid, status, usage = os.wait4(child.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        if child.returncode != 0:
            raise SystemExit(f"segment failed:\n{log.read()[-3000:]}")
    peak_kib = usage.ru_maxrss
    record = json.loads(
        output.with_name(output.name.replace(".nii.gz", ".json")).read_text(encoding="utf-8")
    )
    timings = record["timings_s"]
    network = sum(v for k, v in timings.items() if k.endswith("_network"))
    return {
        "device": record["device"],
        "threads": record["threads"],
        "fast": fast,
        "wall_s": wall,
        "peak_rss_gib": peak_kib / 2**20,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "network_s": network,
        "ratio": wall / network if network else float("nan"),
        "timings": timings,
        "stages": record["stages"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="a trained bundle (default: the shipped design, random weights)",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="folder to keep (and reuse) the generated CT in"
    )
    parser.add_argument("--seed", type=int, default=7, help="phantom seed")
    parser.add_argument(
        "--synthetic", action="store_true", help="a quick synthetic CT instead of a phantom"
    )
    parser.add_argument(
        "--whole-volume-box",
        action="store_true",
        help="untrained bundle: lesion stage over the whole scan",
    )
    parser.add_argument(
        "--device",
        action="append",
        default=None,
        help="cpu and/or cuda (default: cpu, and cuda when present)",
    )
    args = parser.parse_args()
    import torch

    from pipeline.segment.recipes import write_untrained_bundle

    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        folder = args.keep or work
        folder.mkdir(parents=True, exist_ok=True)
        ct, labels = make_synthetic_ct(folder) if args.synthetic else make_ct(folder, args.seed)
        if args.model is None:
            bundle = write_untrained_bundle(work / "untrained")
            truth = None if args.whole_volume_box else labels
            note = "shipped design, random weights; " + (
                "lesion stage over the whole scan" if args.whole_volume_box else "true liver box"
            )
        else:
            bundle, truth, note = args.model, None, f"bundle {args.model}"
        print(f"CT 512 x 512 x 200 at 0.78 x 0.78 x 1.5 mm; {note}; {os.cpu_count()} CPUs visible")
        print(
            f"{'device':<8}{'threads':>8}{'mode':>9}{'wall s':>9}{'peak GiB':>10}"
            f"{'network s':>11}{'wall/network':>14}{'CPU s':>8}"
        )
        results = []
        for device in devices:
            for fast in (False, True):
                result = run_once(
                    ct,
                    truth,
                    bundle,
                    work / f"seg_{device}_{fast}.nii.gz",
                    device,
                    fast,
                    args.whole_volume_box,
                )
                results.append(result)
                print(
                    f"{result['device']:<8}{result['threads']:>8}"
                    f"{'fast' if fast else 'default':>9}{result['wall_s']:>9.1f}"
                    f"{result['peak_rss_gib']:>10.2f}{result['network_s']:>11.1f}{result['ratio']:>14.2f}{result['cpu_s']:>8.1f}"
                )
        print("\nsteps of the last default-mode run (s):")
        default = [r for r in results if not r["fast"]][-1]
        print("  " + ", ".join(f"{k} {v:.2f}" for k, v in default["timings"].items()))
        print(
            "  stage grids: "
            + "; ".join(f"{s['name']} {s.get('network_grid_size')}" for s in default["stages"])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
