"""Evaluate a model bundle on real CT and on a fresh phantom cohort: the model card's numbers.

Usage (from the repository root)::

    python benchmarks/evaluate_model.py --model models/liverburden-ct \\
        --shared ../shared/data --phantoms 6 --output evaluation/

Real cases (from ``../shared/data``):

* ``ircad-1.17``: expert liver and tumour masks. Held out of the validation
  run's training (``--hold-out-ircad`` in :mod:`pipeline.training.recipe`);
* ``totalseg-series``: the 20-slice DICOM series with a model's liver mask
  (liver only; it is a training case of every run, so it is reported apart);
* ``hcc048``: no mask: segmented for the figure only.

Phantoms: a fresh cohort (seeds never used in training), size ``medium``,
portal-venous phase of every time point.

Prints a table per case and the summary (``liverburden evaluate``'s metrics),
writes ``metrics.json`` and a figure of real-CT slices with predicted (red:
tumour, yellow: liver) and reference (green/cyan) contours.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline.io import axial_axis, read_ct, read_label_map, write_json
from pipeline.segment.evaluate_command import metrics_table
from pipeline.segment.evaluation import evaluate_case, summarise_cases
from pipeline.segment.predictor import LiverTumourSegmenter

TRAINING_CASES = {"totalseg-series"}


def evaluate(
    segmenter: LiverTumourSegmenter, image: sitk.Image, truth: sitk.Image | None
) -> tuple[dict | None, sitk.Image, float]:
    start = time.perf_counter()
    result = segmenter.predict(image)
    seconds = time.perf_counter() - start
    if truth is None:
        return None, result.labels, seconds
    metrics = evaluate_case(
        sitk.GetArrayViewFromImage(result.labels),
        sitk.GetArrayViewFromImage(truth),
        image.GetSpacing(),
        axial_axis=axial_axis(image),
    )
    metrics["seconds"] = round(seconds, 1)
    return metrics, result.labels, seconds


def real_cases(shared: Path) -> list[tuple[str, sitk.Image, sitk.Image | None]]:
    cases = []
    ircad = read_ct(shared / "ircad-1.17" / "ct.nii.gz").image
    cases.append(
        ("ircad-1.17", ircad, read_label_map(shared / "ircad-1.17" / "labels.nii.gz", ircad))
    )
    series = read_ct(shared / "totalseg-example" / "ct_dicom").image
    liver = read_label_map(shared / "totalseg-example" / "ct_dicom_liver.nii.gz", series)
    cases.append(("totalseg-series", series, liver))
    cases.append(("hcc048", read_ct(shared / "hcc048-portal-venous" / "dicom").image, None))
    return cases


def figure(panels: list[tuple[str, sitk.Image, sitk.Image, sitk.Image | None]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(panels)
    fig, axes = plt.subplots(rows, 3, figsize=(13.5, 4.6 * rows))
    axes = np.atleast_2d(axes)
    for row, (name, image, prediction, truth) in enumerate(panels):
        ct = sitk.GetArrayViewFromImage(image)
        predicted = sitk.GetArrayViewFromImage(prediction)
        reference = sitk.GetArrayViewFromImage(truth) if truth is not None else None
        basis = reference if reference is not None else predicted
        liver_slices = np.flatnonzero((basis > 0).any(axis=(1, 2)))
        tumour_slices = np.flatnonzero((basis == 2).any(axis=(1, 2)))
        if len(liver_slices) == 0:
            liver_slices = np.arange(ct.shape[0])
        chosen = [
            int(np.percentile(liver_slices, 35)),
            int(np.median(tumour_slices)) if len(tumour_slices) else int(np.median(liver_slices)),
            int(np.percentile(liver_slices, 80)),
        ]
        for column, z in enumerate(chosen):
            axis = axes[row, column]
            axis.imshow(np.clip(ct[z], -160, 240), cmap="gray", interpolation="nearest")
            axis.contour(predicted[z] > 0, [0.5], colors="yellow", linewidths=0.8)
            axis.contour(predicted[z] == 2, [0.5], colors="red", linewidths=0.8)
            if reference is not None:
                axis.contour(
                    reference[z] > 0, [0.5], colors="lime", linewidths=0.8, linestyles="--"
                )
                axis.contour(
                    reference[z] == 2, [0.5], colors="cyan", linewidths=0.8, linestyles="--"
                )
            axis.set_title(f"{name}, slice {z}", fontsize=10)
            axis.axis("off")
    fig.suptitle(
        "predicted liver (yellow) and tumour (red); reference liver (green, dashed) and "
        "tumour (cyan, dashed)",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/liverburden-ct"))
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--phantoms", type=int, default=6, help="fresh phantom subjects")
    parser.add_argument("--phantom-seed", type=int, default=5000)
    parser.add_argument("--phantom-size", default="medium")
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("evaluation"))
    parser.add_argument(
        "--record-in-bundle",
        action="store_true",
        help="write the metrics into the bundle's configs/metadata.json (metrics.evaluation) "
        "and the figure into its docs/ folder",
    )
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    segmenter = LiverTumourSegmenter(args.model, device="auto", fast=args.fast)
    report: dict = {"model": str(args.model), "fast": args.fast, "real": {}, "phantoms": {}}

    panels = []
    if args.shared.exists():
        for name, image, truth in real_cases(args.shared):
            metrics, prediction, seconds = evaluate(segmenter, image, truth)
            panels.append((name, image, prediction, truth))
            if metrics is not None:
                metrics["training_case"] = name in TRAINING_CASES
                report["real"][name] = metrics
            print(f"{name}: segmented in {seconds:.1f} s")
        held_out = {k: v for k, v in report["real"].items() if not v["training_case"]}
        if held_out:
            print("\nReal CT not used for training:")
            print(metrics_table(held_out, summarise_cases(held_out)))
        figure(panels, args.output / "real_ct.png")

    if args.phantoms > 0:
        from pipeline.phantom import generate_cohort

        cohort = args.output / "phantoms"
        if not (cohort / "truth.json").exists():
            generate_cohort(cohort, args.phantoms, args.phantom_seed, args.phantom_size)
        truth = json.loads((cohort / "truth.json").read_text(encoding="utf-8"))
        for subject, record in truth["subjects"].items():
            for timepoint in record["timepoints"]:
                image = read_ct(cohort / timepoint["image"]).image
                labels = read_label_map(
                    cohort / timepoint["image"].replace("ct.nii.gz", "labels.nii.gz"), image
                )
                metrics, _, _ = evaluate(segmenter, image, labels)
                report["phantoms"][f"{subject}/{timepoint['timepoint']}"] = metrics
        print(f"\nFresh phantoms ({args.phantom_size}, seed {args.phantom_seed}):")
        print(metrics_table(report["phantoms"], summarise_cases(report["phantoms"])))
        report["phantom_summary"] = summarise_cases(report["phantoms"])
    if report["real"]:
        held_out = {k: v for k, v in report["real"].items() if not v["training_case"]}
        report["real_summary"] = summarise_cases(held_out) if held_out else None
    write_json(report, args.output / "metrics.json")
    print(f"\nwrote {args.output / 'metrics.json'}")
    if args.record_in_bundle:
        record_in_bundle(args.model, report, args.output / "real_ct.png")
    return 0


def record_in_bundle(bundle: Path, report: dict, figure_path: Path) -> None:
    """Measured metrics into the bundle's metadata (MONAI bundles carry their metrics)."""
    import shutil

    from pipeline.io import read_json

    metadata_path = bundle / "configs" / "metadata.json"
    metadata = read_json(metadata_path)
    metrics = dict(metadata.get("metrics") or {})
    metrics["evaluation"] = {
        "command": "python benchmarks/evaluate_model.py --model "
        f"{bundle} --shared ../shared/data --phantoms 6 --record-in-bundle",
        "fast_mode": report["fast"],
        "real_ct_not_used_for_training": report.get("real_summary"),
        "real_ct_cases": {
            name: {k: v for k, v in case.items() if k not in ("voxels",)}
            for name, case in report["real"].items()
        },
        "fresh_phantoms": report.get("phantom_summary"),
    }
    metadata["metrics"] = metrics
    write_json(metadata, metadata_path)
    if figure_path.exists():
        (bundle / "docs").mkdir(exist_ok=True)
        shutil.copyfile(figure_path, bundle / "docs" / "real_ct.png")


if __name__ == "__main__":
    raise SystemExit(main())
