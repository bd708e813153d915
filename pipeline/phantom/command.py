"""Write a synthetic two-phase CT cohort with exact liver and tumour labels.

Each subject follows a treatment scenario (partial response, progression, new
lesion, necrosis, complete response, response then progression, stable
disease) over 2-3 time points, with a known expected response. OUTDIR gets
samples.tsv (for the workflow: no masks), samples_truth.tsv (with the truth
label maps), truth.json and SUBJECT/TIMEPOINT/{ct,arterial,labels}.nii.gz.
The same seed and options give byte-identical files.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from pathlib import Path

from pipeline.errors import InputError
from pipeline.settings import load_settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PhantomSettings:
    """Settings of ``liverburden phantom`` (section ``phantom:`` of the workflow config)."""

    subjects: int = 6
    seed: int = 0
    size: str = "small"
    timepoints: int | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "outdir",
        metavar="OUTDIR",
        help="folder to write (created; an earlier cohort there is replaced)",
    )
    parser.add_argument("--subjects", metavar="N", help="number of subjects (default 6)")
    parser.add_argument("--seed", metavar="S", help="random seed, a whole number >= 0 (default 0)")
    parser.add_argument(
        "--size", metavar="SIZE", help="grid preset: tiny, small (default), medium or full"
    )
    parser.add_argument(
        "--timepoints",
        metavar="T",
        help="time points per subject, 1-3 (default: 2, or 3 for the scenario that needs it)",
    )
    parser.add_argument(
        "--settings",
        metavar="FILE.yaml",
        help="settings file (the workflow config or its phantom: section)",
    )


def _whole_number(value: str | None, option: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    text = str(value).strip()
    try:
        number = int(text)
    except ValueError:
        raise InputError(
            option, f"not a whole number: {value!r}", f"a whole number from {low} to {high}"
        ) from None
    if not low <= number <= high:
        raise InputError(
            option, f"{number} is out of range", f"a whole number from {low} to {high}"
        )
    return number


def run(args: argparse.Namespace) -> int:
    from pipeline.phantom.cohort import MAX_SEED, MAX_SUBJECTS, generate_cohort
    from pipeline.phantom.scan import SIZES

    settings = load_settings(PhantomSettings, args.settings, "phantom")
    subjects = _whole_number(args.subjects, "--subjects", 1, MAX_SUBJECTS)
    seed = _whole_number(args.seed, "--seed", 0, MAX_SEED)
    timepoints = _whole_number(args.timepoints, "--timepoints", 1, 3)
    size = args.size if args.size is not None else settings.size
    if size not in SIZES:
        raise InputError("--size", f"unknown size {size!r}", "one of " + ", ".join(SIZES))
    settings = dataclasses.replace(
        settings,
        subjects=settings.subjects if subjects is None else subjects,
        seed=settings.seed if seed is None else seed,
        size=size,
        timepoints=settings.timepoints if timepoints is None else timepoints,
    )
    started = time.perf_counter()
    inputs = [Path(args.settings)] if args.settings else []
    truth = generate_cohort(
        args.outdir,
        settings.subjects,
        settings.seed,
        settings.size,
        settings.timepoints,
        inputs=inputs,
    )
    scans = sum(len(s["timepoints"]) for s in truth["subjects"].values())
    log.info(
        "wrote %d subjects, %d scans (%s) to %s in %.1f s",
        len(truth["subjects"]),
        scans,
        settings.size,
        args.outdir,
        time.perf_counter() - started,
    )
    return 0
