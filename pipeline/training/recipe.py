"""Rebuild the shipped model bundle from the data in ``../shared/data`` and phantoms.

One command, deterministic for its seeds::

    python -m pipeline.training.recipe --shared ../shared/data --work .cache/recipe \\
        --output models/liverburden-ct

Steps (each resumes where an interrupted run stopped):

1. real training pairs (:mod:`pipeline.training.real_cases`): the labelled real
   livers and copies of each with synthetic lesions painted in;
   ``--hold-out-ircad`` leaves IRCAD 1.17 out entirely (the validation run of
   the model card);
2. ``liverburden train prepare``: phantoms (size ``medium``) and the real pairs,
   resampled and cropped per stage into a cache;
3. ``liverburden train fit`` of both stages at once, choosing each stage's best
   epoch on held-out phantoms and a synthetic-lesion copy (never on IRCAD).

The settings of the shipped bundle are the defaults below; its model card
quotes the command and the evaluation (``benchmarks/evaluate_model.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from pipeline.segment.training_data import (
    phantom_cases,
    prepare_cache,
    stage_grid,
    table_cases,
)
from pipeline.training.real_cases import load_real_cases, write_training_table

log = logging.getLogger("pipeline.training.recipe")

#: Phantoms in the training cache (seeds from PHANTOM_SEED on).
PHANTOMS = 60
PHANTOM_SEED = 1000
PHANTOM_SIZE = "medium"
#: Synthetic-lesion copies of each real liver.
VARIANTS_PER_REAL_CASE = 6
#: Held-out cases for choosing each stage's best epoch.
VALIDATION_CASES = (
    "phantom_medium_01058",
    "phantom_medium_01059",
    "totalseg_series_20_slices_synthetic_1105",
)
#: Per stage: training patch (voxels x y z), epochs, iterations per epoch.
STAGE_PLANS = {
    "liver": {"patch": (96, 96, 64), "epochs": 8, "iterations": 150},
    "lesion": {"patch": (96, 96, 64), "epochs": 14, "iterations": 150},
}


def prepare(shared: Path, work: Path, *, include_ircad: bool, workers: int) -> Path:
    """Steps 1 and 2; returns the cache folder."""
    pairs = work / "real_pairs"
    cases = load_real_cases(shared, include_ircad=include_ircad)
    name = "all" if include_ircad else "without_ircad"
    table = write_training_table(
        cases, pairs, VARIANTS_PER_REAL_CASE, seed=1, table_name=f"cases_{name}.tsv"
    )
    cache = work / f"cache_{name}"
    sources = phantom_cases(PHANTOMS, PHANTOM_SEED, PHANTOM_SIZE) + table_cases(table)
    grids = [stage_grid("liver"), stage_grid("lesion")]
    prepare_cache(sources, cache, grids, workers=workers)
    return cache


def _fit_command(cache: Path, output: Path, stage: str, seed: int, device: str) -> list[str]:
    plan = STAGE_PLANS[stage]
    return [
        sys.executable,
        "-m",
        "pipeline",
        "train",
        "fit",
        "--cache",
        str(cache),
        "--output",
        str(output),
        "--stage",
        stage,
        "--epochs",
        str(plan["epochs"]),
        "--iterations-per-epoch",
        str(plan["iterations"]),
        "--batch-size",
        "2",
        "--samples-per-case",
        "1",
        "--patch-size",
        *(str(p) for p in plan["patch"]),
        "--validation-cases",
        *VALIDATION_CASES,
        "--seed",
        str(seed),
        "--device",
        device,
        "--resume",
    ]


def fit(cache: Path, output: Path, *, seed: int, device: str, threads: int) -> None:
    """Step 3: both stages at once (they are independent: the lesion stage learns
    from the reference liver's box), the lesion stage with most of the threads.

    Each process resumes from its stage's checkpoint after an interruption. At
    the end both are run once more with ``--resume`` (no epoch left to run), in
    turn, so that ``output`` holds both stages whatever order they finished in.
    """
    threads_of = {"liver": 1, "lesion": max(1, threads)}
    processes = []
    for stage in STAGE_PLANS:
        command = _fit_command(cache, output, stage, seed, device)
        environment = {**os.environ, "OMP_NUM_THREADS": str(threads_of[stage])}
        log.info("training stage %s: %s", stage, " ".join(command))
        processes.append((stage, subprocess.Popen(command, env=environment)))
    failed = [stage for stage, process in processes if process.wait() != 0]
    if failed:
        raise SystemExit(f"training failed for stage(s): {', '.join(failed)}")
    for stage in STAGE_PLANS:
        command = _fit_command(cache, output, stage, seed, device)
        if subprocess.run(command, check=False).returncode != 0:
            raise SystemExit(f"writing stage {stage} into {output} failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.training.recipe", description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path(".cache/recipe"))
    parser.add_argument("--output", type=Path, default=Path("models/liverburden-ct"))
    parser.add_argument("--hold-out-ircad", action="store_true", help="train without IRCAD 1.17")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--prepare-only", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cache = prepare(args.shared, args.work, include_ircad=not args.hold_out_ircad, workers=1)
    if not args.prepare_only:
        fit(cache, args.output, seed=args.seed, device=args.device, threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
