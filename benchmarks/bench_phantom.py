"""Time the phantom generator: one ``full`` scan, and the default demo cohort.

Usage::

    python benchmarks/bench_phantom.py [--full-seeds 1] [--skip-cohort] [--profile]

Prints the seconds of ``generate_scan(seed, "full")`` (512 x 512, 0.6-0.9 mm,
1-5 mm slices) with its grid and peak memory, and of
``liverburden phantom OUTDIR`` with the defaults (6 subjects, size small),
written to a temporary folder.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import tempfile
import time
from pathlib import Path

from pipeline.phantom import generate_cohort, generate_scan


def _peak_memory_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _cpu_seconds() -> float:
    """CPU time of this process so far (user + system): on a busy machine a fairer
    measure than wall time of what one free core would take."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--full-seeds", type=int, default=1, help="number of full scans to time (seeds 0..N-1)"
    )
    parser.add_argument("--skip-cohort", action="store_true", help="time only the full scans")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="print the 20 costliest functions of the first full scan",
    )
    args = parser.parse_args()

    for seed in range(args.full_seeds):
        profiler = cProfile.Profile() if (args.profile and seed == 0) else None
        started, cpu = time.perf_counter(), _cpu_seconds()
        if profiler:
            profiler.enable()
        scan = generate_scan(seed, "full")
        if profiler:
            profiler.disable()
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
        nz, ny, nx = scan.labels.shape
        print(
            f"full scan seed {seed}: {seconds:.1f} s wall, {cpu:.1f} s CPU, "
            f"{nx} x {ny} x {nz} voxels "
            f"({scan.spacing_mm[0]:.3f} x {scan.spacing_mm[1]:.3f} x {scan.spacing_mm[2]:.2f} mm), "
            f"{len(scan.lesions)} lesions, peak memory {_peak_memory_gib():.1f} GiB"
        )
        if profiler:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)

    if not args.skip_cohort:
        with tempfile.TemporaryDirectory() as folder:
            started, cpu = time.perf_counter(), _cpu_seconds()
            truth = generate_cohort(Path(folder) / "cohort")
            seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
            scans = sum(len(s["timepoints"]) for s in truth["subjects"].values())
            print(
                f"default cohort (6 subjects, small): {seconds:.1f} s wall, {cpu:.1f} s CPU, "
                f"{scans} scans ({seconds / scans:.2f} s wall per scan, files included)"
            )


if __name__ == "__main__":
    main()
