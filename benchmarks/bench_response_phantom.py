"""Agreement of ``liverburden respond`` with the phantom cohort's expected responses.

Writes a phantom cohort (``liverburden phantom``), measures every scan with its truth
label map and arterial image (``liverburden measure``), runs ``liverburden respond``
per subject and prints, per follow-up and criterion, the response found and the one
the truth expects, then the agreement. Run from the repository root:

    python benchmarks/bench_response_phantom.py [--subjects 7] [--size tiny] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._response_fixtures import measure_phantom_cohort_with_truth
from tests.conftest import run_cli

CRITERIA = ("recist", "mrecist", "choi", "volumetric")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=7)
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        cohort = root / "cohort"
        result = run_cli(
            "phantom",
            cohort,
            "--size",
            args.size,
            "--subjects",
            str(args.subjects),
            "--seed",
            str(args.seed),
            "-q",
        )
        assert result.exit_code == 0, result.stderr
        truth = json.loads((cohort / "truth.json").read_text(encoding="utf-8"))
        subjects = measure_phantom_cohort_with_truth(cohort, root / "measure")
        agree = total = 0
        seconds = []
        for subject, folders in subjects.items():
            start = time.perf_counter()
            result = run_cli("respond", *folders, "-o", root / f"{subject}.json", "-q")
            seconds.append(time.perf_counter() - start)
            assert result.exit_code == 0, result.stderr
            data = json.loads((root / f"{subject}.json").read_text(encoding="utf-8"))
            expected = truth["subjects"][subject]
            for timepoint, wanted in zip(
                data["timepoints"], expected["expected_response"], strict=True
            ):
                found = {c: timepoint[c]["overall_response"] for c in CRITERIA}
                for criterion in CRITERIA:
                    total += 1
                    agree += found[criterion] == wanted[criterion]
                differing = {
                    c: f"{found[c]} (expected {wanted[c]})"
                    for c in CRITERIA
                    if found[c] != wanted[c]
                }
                statuses = sorted({e["status"] for e in timepoint["lesions"].values()})
                print(
                    f"{subject} {expected['scenario']:<26} {timepoint['timepoint']:<11} {found} "
                    f"liver Dice {timepoint['matching']['liver_dice']} lesions {statuses}"
                    + (f"  DIFFERS: {differing}" if differing else "")
                )
        print(f"time-point responses agreeing with the truth: {agree}/{total}")
        print(f"respond per subject: median {sorted(seconds)[len(seconds) // 2]:.1f} s")


if __name__ == "__main__":
    main()
