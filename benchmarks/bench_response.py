"""Lesion matching accuracy and speed of ``liverburden respond`` on moved synthetic follow-ups.

Each case: a liver with 6-10 spherical lesions (8-30 mm, 4 mm apart at least); the
follow-up is the same patient shifted by up to 30 mm per axis and rotated by up to 7
degrees about the head-foot axis (both options), lesions resized by -30..+20 %, one
lesion gone and one new lesion, lesion ids shuffled. Prints the share of lesions
paired with the right baseline lesion, of new and disappeared lesions found, the
aligned liver Dice and the time per follow-up. Run from the repository root:

    python benchmarks/bench_response.py [--cases 20] [--registration affine]
        [--lesions 6 10] [--rotation 7]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._response_fixtures import Motion, default_liver, render, sphere, write_measure_folder
from tests.conftest import run_cli

LIVER = default_liver()


def inside_liver(point: np.ndarray, radius: float) -> bool:
    for part in LIVER:
        relative = (point - np.asarray(part.center_mm)) / (np.asarray(part.radii_mm) - radius - 3.0)
        if np.sum(relative**2) <= 1.0:
            return True
    return False


def random_lesions(rng: np.random.Generator, count: int) -> list[tuple[np.ndarray, float]]:
    lesions: list[tuple[np.ndarray, float]] = []
    while len(lesions) < count:
        diameter = float(rng.uniform(8.0, 30.0))
        centre = rng.uniform((-90, -50, -45), (75, 60, 45))
        if not inside_liver(centre, diameter / 2):
            continue
        if any(np.linalg.norm(centre - c) < (diameter + d) / 2 + 4.0 for c, d in lesions):
            continue
        lesions.append((centre, diameter))
    return lesions


def run_case(
    rng: np.random.Generator,
    folder: Path,
    registration: str,
    lesions_range: tuple[int, int],
    rotation: float,
) -> dict[str, float]:
    count = int(rng.integers(lesions_range[0], lesions_range[1] + 1))
    lesions = random_lesions(rng, count + 1)
    new_lesion = lesions.pop()
    gone = int(rng.integers(count))
    baseline = {i + 1: [sphere(tuple(c), d)] for i, (c, d) in enumerate(lesions)}
    kept = [i for i in range(count) if i != gone]
    follow_ids = rng.permutation(len(kept) + 1) + 1
    truth: dict[int, str] = {}
    follow: dict[int, list] = {}
    for new_id, index in zip(follow_ids[:-1], kept, strict=True):
        centre, diameter = lesions[index]
        follow[int(new_id)] = [sphere(tuple(centre), diameter * float(rng.uniform(0.7, 1.2)))]
        truth[int(new_id)] = f"L{index + 1}"
    follow[int(follow_ids[-1])] = [sphere(tuple(new_lesion[0]), new_lesion[1])]
    motion = Motion(
        tuple(float(v) for v in rng.uniform(-30, 30, 3)), float(rng.uniform(-rotation, rotation))
    )
    liver, lesion_map = render(LIVER, baseline)
    write_measure_folder(
        folder / "t0", liver_mask=liver, lesion_map=lesion_map, study_date="2024-01-01"
    )
    liver, lesion_map = render(LIVER, follow, motion)
    write_measure_folder(
        folder / "t1",
        liver_mask=liver,
        lesion_map=lesion_map,
        timepoint="fu1",
        study_date="2024-04-01",
    )
    settings = folder / "settings.yaml"
    settings.write_text(f"matching_registration: {registration}\n", encoding="utf-8")
    start = time.perf_counter()
    result = run_cli(
        "respond",
        folder / "t0",
        folder / "t1",
        "-o",
        folder / "r.json",
        "--settings",
        settings,
        "-q",
    )
    seconds = time.perf_counter() - start
    assert result.exit_code == 0, result.stderr
    timepoint = json.loads((folder / "r.json").read_text(encoding="utf-8"))["timepoints"][0]
    owner = {i: k for k, v in timepoint["lesions"].items() for i in v["ids"]}
    correct = sum(owner.get(i) == key for i, key in truth.items())
    new_found = (
        timepoint["lesions"].get(owner.get(int(follow_ids[-1]), ""), {}).get("status") == "new"
    )
    gone_found = timepoint["lesions"][f"L{gone + 1}"]["status"] == "disappeared"
    return {
        "pairs": len(truth),
        "correct": correct,
        "new_found": float(new_found),
        "gone_found": float(gone_found),
        "dice": timepoint["matching"]["liver_dice"],
        "seconds": seconds,
        "shift_mm": float(np.linalg.norm(motion.translation_mm)),
        "rotation_degrees": abs(motion.rotation_z_degrees),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--registration", default="affine", choices=("affine", "rigid", "centroid"))
    parser.add_argument("--lesions", type=int, nargs=2, default=(6, 10), metavar=("MIN", "MAX"))
    parser.add_argument("--rotation", type=float, default=7.0, help="largest rotation, degrees")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    results = []
    with tempfile.TemporaryDirectory() as temporary:
        for case in range(args.cases):
            results.append(
                run_case(
                    rng,
                    Path(temporary) / f"case{case}",
                    args.registration,
                    args.lesions,
                    args.rotation,
                )
            )
    pairs = sum(r["pairs"] for r in results)
    correct = sum(r["correct"] for r in results)
    low, high = args.lesions
    print(f"cases: {len(results)}, {low}-{high} lesions, registration: {args.registration}")
    share = 100 * correct / pairs
    print(f"lesions paired with the right baseline lesion: {correct}/{pairs} ({share:.1f} %)")
    print(f"new lesion found: {sum(r['new_found'] for r in results):.0f}/{len(results)}")
    print(f"disappeared lesion found: {sum(r['gone_found'] for r in results):.0f}/{len(results)}")
    print(
        f"aligned liver Dice: median {np.median([r['dice'] for r in results]):.3f}, "
        f"min {min(r['dice'] for r in results):.3f}"
    )
    print(
        f"shift up to {max(r['shift_mm'] for r in results):.0f} mm, "
        f"rotation up to {max(r['rotation_degrees'] for r in results):.1f} degrees"
    )
    print(
        f"respond per subject (baseline + 1 follow-up, 96x96x64 voxels): median "
        f"{np.median([r['seconds'] for r in results]):.2f} s"
    )


if __name__ == "__main__":
    main()
