"""Rebuild the shipped model bundle from the data in ``../shared/data`` and phantoms.

One command, deterministic for its seeds::

    python -m pipeline.training.recipe --shared ../shared/data --work .cache/recipe \\
        --output models/liverburden-ct

Steps (each resumes where an interrupted run stopped):

1. real training pairs (:mod:`pipeline.training.real_cases`): the labelled real
   livers and copies of each with synthetic lesions painted in;
2. ``liverburden train prepare``: phantoms (size ``medium``) and the real pairs,
   resampled and cropped per stage into a cache, first WITHOUT IRCAD 1.17;
3. ``liverburden train fit`` of both stages at once from random weights into
   ``--output``: the shipped weights. Each stage's best epoch is chosen on
   held-out phantoms and a synthetic-lesion copy of the TotalSegmentator
   series, never on IRCAD, so IRCAD 1.17 (the only real CT with a tumour
   reference) stays an independent test: its numbers in the model card
   (``benchmarks/evaluate_model.py``) are a validation;
4. optional (``--fine-tune-output DIR``): the same cache plus IRCAD 1.17 and
   synthetic-lesion copies of it, and a short fine-tuning of both stages from
   the shipped weights into DIR. Such weights have seen IRCAD, so nothing real
   is left to validate their tumour output on; they are not shipped.

Training runs on the CPU here (about 2 and 1/2 hours on 2 cores) or on a GPU
with ``--device cuda``. The settings of the shipped bundle are the constants
below; its model card quotes this command.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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
#: Per stage: training patch (voxels x y z), epochs, iterations per epoch,
#: learning rate; from random weights (the shipped model) and the optional fine-tuning.
STAGE_PLANS: dict[str, dict[str, Any]] = {
    "liver": {"patch": (96, 96, 64), "epochs": 8, "iterations": 150, "learning_rate": 1e-3},
    "lesion": {"patch": (96, 96, 64), "epochs": 14, "iterations": 150, "learning_rate": 1e-3},
}
FINE_TUNE_PLANS: dict[str, dict[str, Any]] = {
    "liver": {"patch": (96, 96, 64), "epochs": 2, "iterations": 100, "learning_rate": 3e-4},
    "lesion": {"patch": (96, 96, 64), "epochs": 4, "iterations": 100, "learning_rate": 3e-4},
}


def prepare(shared: Path, work: Path, *, include_ircad: bool) -> Path:
    """Steps 1 and 2 (or the cache of step 4); returns the cache folder."""
    pairs = work / "real_pairs"
    cases = load_real_cases(shared, include_ircad=include_ircad)
    name = "all" if include_ircad else "without_ircad"
    table = write_training_table(
        cases, pairs, VARIANTS_PER_REAL_CASE, seed=1, table_name=f"cases_{name}.tsv"
    )
    cache = work / f"cache_{name}"
    earlier = work / "cache_without_ircad"
    if include_ircad and not cache.exists() and earlier.exists():
        shutil.copytree(earlier, cache)  # its prepared cases are kept: only IRCAD is added
        for checkpoints in cache.glob("*/checkpoints"):
            shutil.rmtree(checkpoints)
    sources = phantom_cases(PHANTOMS, PHANTOM_SEED, PHANTOM_SIZE) + table_cases(table)
    prepare_cache(sources, cache, [stage_grid("liver"), stage_grid("lesion")])
    return cache


def _fit_command(
    cache: Path,
    output: Path,
    stage: str,
    plan: Mapping[str, Any],
    *,
    seed: int,
    device: str,
    initial: Path | None,
) -> list[str]:
    command = [sys.executable, "-m", "pipeline", "train", "fit", "--cache", str(cache)]
    command += ["--output", str(output), "--stage", stage, "--epochs", str(plan["epochs"])]
    command += ["--iterations-per-epoch", str(plan["iterations"]), "--batch-size", "2"]
    command += ["--samples-per-case", "1", "--learning-rate", str(plan["learning_rate"])]
    command += ["--patch-size", *(str(p) for p in plan["patch"])]
    command += ["--validation-cases", *VALIDATION_CASES, "--seed", str(seed)]
    command += ["--device", device, "--resume"]
    if initial is not None:
        command += ["--initial-weights", str(initial)]
    return command


def fit(
    cache: Path,
    output: Path,
    plans: Mapping[str, Mapping[str, Any]],
    *,
    seed: int,
    device: str,
    threads: int,
    initial: Path | None = None,
) -> None:
    """Both stages at once (they are independent: the lesion stage learns from the
    reference liver's box), the lesion stage with most of the threads.

    Each process resumes from its stage's checkpoint after an interruption. At
    the end both are run once more with ``--resume`` (no epoch left to run), in
    turn, so that ``output`` holds both stages whatever order they finished in.
    """
    threads_of = {"liver": 1, "lesion": max(1, threads)}
    processes = []
    for stage, plan in plans.items():
        command = _fit_command(
            cache, output, stage, plan, seed=seed, device=device, initial=initial
        )
        environment = {**os.environ, "OMP_NUM_THREADS": str(threads_of[stage])}
        log.info("training stage %s: %s", stage, " ".join(command))
        processes.append((stage, subprocess.Popen(command, env=environment)))
    failed = [stage for stage, process in processes if process.wait() != 0]
    if failed:
        raise SystemExit(f"training failed for stage(s): {', '.join(failed)}")
    for stage, plan in plans.items():
        command = _fit_command(
            cache, output, stage, plan, seed=seed, device=device, initial=initial
        )
        if subprocess.run(command, check=False).returncode != 0:
            raise SystemExit(f"writing stage {stage} into {output} failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.training.recipe", description=__doc__)
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--work", type=Path, default=Path(".cache/recipe"))
    parser.add_argument("--output", type=Path, default=Path("models/liverburden-ct"))
    parser.add_argument(
        "--fine-tune-output",
        type=Path,
        default=None,
        help="also fine-tune with IRCAD 1.17 into this folder (step 4; not the shipped weights)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    options = {"seed": args.seed, "device": args.device, "threads": args.threads}
    cache = prepare(args.shared, args.work, include_ircad=False)
    fit(cache, args.output, STAGE_PLANS, **options)
    if args.fine_tune_output is None:
        return 0
    cache = prepare(args.shared, args.work, include_ircad=True)
    fit(cache, args.fine_tune_output, FINE_TUNE_PLANS, initial=args.output, **options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
