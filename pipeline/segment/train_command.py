"""Train a liver and tumour model bundle.

Two steps, runnable apart:

  prepare  read cases (an MSD folder, a TSV/CSV table of image/label pairs, or
           phantoms made on the fly), reorient, resample to each stage's
           spacing, crop (lesion stage: the liver's box), and save a cache of
           compressed numpy arrays;
  fit      train from that cache only (numpy, torch, monai: the cache can be
           carried to a GPU machine and trained there with
           'python -m pipeline.segment.train_fit');
  all      both.

examples:
  liverburden train prepare Task03_Liver/ --cache cache/
  liverburden train fit --cache cache/ --output models/liverburden-ct --epochs 300
  liverburden train all --phantoms 40 --cache cache/ --output my-bundle --epochs 20
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from pipeline.errors import InputError

log = logging.getLogger(__name__)


def _add_common(parser: argparse.ArgumentParser) -> None:
    # the CLI adds --debug/-q/-v to the 'train' parser; repeat them here so they may follow the step
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of any error",
    )
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print only warnings and errors",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print debugging messages",
    )


def _add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources",
        metavar="SOURCE",
        nargs="*",
        help="Medical Segmentation Decathlon folder (dataset.json, imagesTr/, labelsTr/) "
        "or TSV/CSV table with columns image, label",
    )
    parser.add_argument(
        "--phantoms",
        type=int,
        default=0,
        metavar="N",
        help="also generate N phantoms (pipeline.phantom)",
    )
    parser.add_argument(
        "--phantom-size",
        default="small",
        help="phantom grid preset: tiny, small, medium or full (default small)",
    )
    parser.add_argument(
        "--phantom-seed", type=int, default=0, help="seed of the first phantom (default 0)"
    )
    parser.add_argument(
        "--liver-spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=None,
        help="liver stage grid in mm (default 3 3 3)",
    )
    parser.add_argument(
        "--lesion-spacing",
        type=float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=None,
        help="lesion stage grid in mm (default 1.5 1.5 2)",
    )
    parser.add_argument(
        "--crop-margin",
        type=float,
        default=None,
        metavar="MM",
        help="lesion stage: margin around the liver's box (default 30)",
    )
    parser.add_argument(
        "--licence", default=None, help="licence of the data when the source does not say it"
    )
    parser.add_argument(
        "--prepare-workers",
        type=int,
        default=1,
        metavar="N",
        help="cases prepared in parallel (default 1)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.segment.train_fit import add_fit_arguments

    steps = parser.add_subparsers(dest="step", metavar="STEP", required=True)
    prepare = steps.add_parser(
        "prepare",
        help="read, resample and crop cases into a cache",
        description="Read, resample and crop training cases into a cache of compressed arrays.",
    )
    _add_prepare_arguments(prepare)
    prepare.add_argument("--cache", metavar="DIR", required=True, help="cache folder to fill")
    prepare.add_argument("--stage", default="both", help="liver, lesion or both (default both)")
    _add_common(prepare)
    fit = steps.add_parser(
        "fit",
        help="train from a cache and write the bundle",
        description="Train bundle stages from a prepared cache.",
    )
    fit.add_argument("--cache", metavar="DIR", required=True, help="cache made by 'train prepare'")
    add_fit_arguments(fit)
    _add_common(fit)
    both = steps.add_parser(
        "all", help="prepare and fit", description="Prepare a cache, then train from it."
    )
    _add_prepare_arguments(both)
    both.add_argument("--cache", metavar="DIR", required=True, help="cache folder")
    add_fit_arguments(both)
    _add_common(both)


def _prepare(args: argparse.Namespace) -> None:
    from pipeline.segment.training_data import (
        phantom_cases,
        prepare_cache,
        sources_from_arguments,
        stage_grid,
    )

    if args.prepare_workers < 1:
        raise InputError(
            "--prepare-workers", f"must be at least 1, not {args.prepare_workers}", "1 or more"
        )
    if args.phantoms < 0:
        raise InputError("--phantoms", f"must not be negative, not {args.phantoms}", "0 or more")
    cases = sources_from_arguments(args.sources, args.licence)
    if args.phantoms:
        cases += phantom_cases(args.phantoms, args.phantom_seed, args.phantom_size)
    if not cases:
        raise InputError(
            None, "no training data", "SOURCE (an MSD folder or a TSV/CSV table) or --phantoms N"
        )
    stages = ("liver", "lesion") if args.stage == "both" else (args.stage,)
    if args.stage not in ("liver", "lesion", "both"):
        raise InputError("--stage", f"unknown stage {args.stage!r}", "liver, lesion or both")
    spacing = {"liver": args.liver_spacing, "lesion": args.lesion_spacing}
    grids = [stage_grid(stage, spacing[stage], args.crop_margin) for stage in stages]

    def progress(done: int, total: int, case: str) -> None:
        log.info("prepared %s (%d/%d)", case, done, total)

    manifests = prepare_cache(
        cases, Path(args.cache), grids, workers=args.prepare_workers, progress=progress
    )
    for stage, manifest in manifests.items():
        log.info(
            "%s cache: %d cases in %s", stage, len(manifest["cases"]), Path(args.cache) / stage
        )


def run(args: argparse.Namespace) -> int:
    command_line = "liverburden train " + shlex.join(
        sys.argv[2:] if len(sys.argv) > 2 and sys.argv[1] == "train" else []
    )
    if args.step in ("prepare", "all"):
        _prepare(args)
    if args.step in ("fit", "all"):
        from pipeline.segment.train_fit import fit, settings_from_arguments

        settings = settings_from_arguments(args, Path(args.cache), command_line.strip())
        fit(settings)
    return 0
