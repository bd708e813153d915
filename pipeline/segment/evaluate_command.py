"""Compare predicted label maps with reference label maps (0 background, 1 liver, 2 tumour).

PRED and TRUTH are two label-map files, or two folders of them. Folders are
matched by path relative to each folder (so results/<case>.nii.gz against
labelsTr/<case>.nii.gz, as in the Medical Segmentation Decathlon layout); when
no paths match, by the sub-folder of each case (results/<subject>/<timepoint>/
segmentation.nii.gz against a phantom cohort's <subject>/<timepoint>/labels.nii.gz;
in a folder with several images, the one named like a label map).

Per case and globally: liver Dice, tumour Dice (global: pooled over all
voxels), lesion detection recall, precision and F1 (all lesions, and lesions of
10 mm or more), hepatic involvement error (percentage points), longest axial
diameter error of matched lesions (mm), liver 95 % Hausdorff distance (mm).
Prints a table and writes the metrics as JSON.

examples:
  liverburden evaluate seg.nii.gz truth.nii.gz -o metrics.json
  liverburden evaluate predictions/ Task03_Liver/labelsTr/ -o metrics.json
"""

from __future__ import annotations

import argparse
import logging
import math
import os
from pathlib import Path
from typing import Any

from pipeline import SCHEMA_VERSION, __version__
from pipeline.errors import InputError

log = logging.getLogger(__name__)

LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".nhdr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "prediction", metavar="PRED", help="predicted label map, or a folder of them"
    )
    parser.add_argument("truth", metavar="TRUTH", help="reference label map, or a folder of them")
    parser.add_argument(
        "-o", "--output", metavar="METRICS.json", required=True, help="metrics file to write"
    )
    parser.add_argument(
        "--min-lesion-volume-ml",
        type=float,
        default=None,
        metavar="ML",
        help="tumour components below this volume are noise, not lesions "
        "(default: as liverburden measure, 0.05)",
    )


def _label_files(folder: Path) -> dict[str, Path]:
    files = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or not name.lower().endswith(LABEL_SUFFIXES):
                continue
            path = Path(root) / name
            files[path.relative_to(folder).as_posix()] = path
    return files


#: Words in the file names of label maps (to find the label map among a case folder's images).
LABEL_NAME_WORDS = ("label", "seg", "mask", "truth")


def _by_case_folder(files: dict[str, Path]) -> dict[str, Path]:
    """Key each label map by its folder: the folder's only image, or else its only
    image named like a label map (``labels``, ``segmentation``, ``mask``, ``truth``)."""
    folders: dict[str, list[Path]] = {}
    for relative, path in files.items():
        parent = Path(relative).parent.as_posix()
        if parent != ".":
            folders.setdefault(parent, []).append(path)
    chosen = {}
    for folder, paths in folders.items():
        if len(paths) > 1:
            paths = [p for p in paths if any(word in p.name.lower() for word in LABEL_NAME_WORDS)]
        if len(paths) == 1:
            chosen[folder] = paths[0]
    return chosen


def match_cases(prediction: Path, truth: Path) -> dict[str, tuple[Path, Path]]:
    """Case name -> (predicted, reference) label map, for two files or two folders.

    Raises
    ------
    InputError
        When a path is missing, one is a file and the other a folder, a reference
        has no prediction, or nothing matches.
    """
    for path, what in ((prediction, "prediction"), (truth, "reference")):
        if not path.exists():
            raise InputError(path, f"{what} not found", "a label-map file or a folder of them")
    if prediction.is_file() and truth.is_file():
        name = truth.name
        for suffix in LABEL_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        return {name: (prediction, truth)}
    if prediction.is_dir() != truth.is_dir():
        raise InputError(
            prediction,
            "PRED and TRUTH must both be files or both be folders",
            "two label-map files, or two folders of them",
        )
    predicted = _label_files(prediction)
    reference = _label_files(truth)
    if not reference:
        raise InputError(truth, "folder holds no label maps", ", ".join(LABEL_SUFFIXES))
    common = sorted(set(predicted) & set(reference))
    if not common:
        predicted, reference = _by_case_folder(predicted), _by_case_folder(reference)
        common = sorted(set(predicted) & set(reference))
    if not common:
        raise InputError(
            prediction,
            f"no label map matches one in {truth}",
            "the same file names (or case sub-folders) in PRED and TRUTH",
        )
    missing = sorted(set(reference) - set(predicted))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(
            prediction,
            f"no prediction for {len(missing)} reference case(s): {shown}",
            "a predicted label map for every reference case",
        )
    extra = sorted(set(predicted) - set(reference))
    if extra:
        log.warning(
            "ignoring %d prediction(s) without a reference: %s", len(extra), ", ".join(extra[:5])
        )
    cases = {}
    for key in common:
        name = key
        for suffix in LABEL_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        cases[name] = (predicted[key], reference[key])
    return cases


def evaluate_files(prediction: Path, truth: Path, min_lesion_volume_ml: float) -> dict[str, Any]:
    """Metrics of one predicted label map against its reference (same grid required)."""
    import SimpleITK as sitk

    from pipeline.io import axial_axis, read_image_file, read_label_map
    from pipeline.segment.evaluation import evaluate_case

    reference_image = read_image_file(truth, what="reference label map")
    reference = read_label_map(
        truth, reference_image, require_liver=False, what="reference label map"
    )
    predicted = read_label_map(
        prediction, reference, require_liver=False, what="predicted label map"
    )
    return evaluate_case(
        sitk.GetArrayViewFromImage(predicted),
        sitk.GetArrayViewFromImage(reference),
        reference.GetSpacing(),
        axial_axis=axial_axis(reference),
        min_lesion_volume_ml=min_lesion_volume_ml,
    )


def _format(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def metrics_table(cases: dict[str, dict[str, Any]], summary: dict[str, Any]) -> str:
    """A plain-text table of per-case and global metrics."""
    header = (
        "case",
        "liver Dice",
        "tumour Dice",
        "lesions ref/pred",
        "recall",
        "precision",
        "F1",
        "HD95 mm",
        "involv. err pp",
        "diam. err mm",
    )
    rows = [header]
    for name, r in cases.items():
        d = r["lesion_detection"]
        rows.append(
            (
                name,
                _format(r["liver_dice"]),
                _format(r["tumour_dice"]),
                f"{d['reference_lesions']}/{d['predicted_lesions']}",
                _format(d["recall"], 2),
                _format(d["precision"], 2),
                _format(d["f1"], 2),
                _format(r["liver_hausdorff_95_mm"], 1),
                _format(r["involvement_absolute_error_percentage_points"], 2),
                _format(r["longest_axial_diameter_mean_absolute_error_mm"], 1),
            )
        )
    d = summary["lesion_detection"]
    rows.append(
        (
            "all (mean; pooled)",
            _format(summary["liver_dice_mean"]),
            _format(summary["tumour_dice_global"]) + " pooled",
            f"{d['reference_lesions']}/{d['predicted_lesions']}",
            _format(d["recall"], 2),
            _format(d["precision"], 2),
            _format(d["f1"], 2),
            _format(summary["liver_hausdorff_95_mm_mean"], 1),
            _format(summary["involvement_absolute_error_percentage_points_mean"], 2),
            _format(summary["longest_axial_diameter_mean_absolute_error_mm"], 1),
        )
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    m = summary["lesion_detection_10mm"]
    lines.append(
        f"lesions >= 10 mm: recall {_format(m['recall'], 2)} "
        f"({m['detected_reference_lesions']}/{m['reference_lesions']}), "
        f"precision {_format(m['precision'], 2)} "
        f"({m['true_positive_predicted_lesions']}/{m['predicted_lesions']}), "
        f"F1 {_format(m['f1'], 2)}"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from pipeline.io import refuse_overwriting_inputs, write_json
    from pipeline.segment.evaluation import DEFAULT_MIN_LESION_VOLUME_ML, summarise_cases

    prediction, truth, output = Path(args.prediction), Path(args.truth), Path(args.output)
    if not output.name.lower().endswith(".json"):
        raise InputError(output, "metrics file must end in .json", "a file name ending in .json")
    minimum = (
        DEFAULT_MIN_LESION_VOLUME_ML
        if args.min_lesion_volume_ml is None
        else float(args.min_lesion_volume_ml)
    )
    if not math.isfinite(minimum) or minimum < 0:
        raise InputError("--min-lesion-volume-ml", f"is {minimum!r}", "a volume in mL >= 0")
    refuse_overwriting_inputs([output], [prediction, truth])
    pairs = match_cases(prediction, truth)
    cases = {}
    for name, (predicted, reference) in pairs.items():
        log.debug("evaluating %s", name)
        cases[name] = evaluate_files(predicted, reference, minimum)
    summary = summarise_cases(cases)
    write_json(
        {
            "schema_version": SCHEMA_VERSION,
            "liverburden_version": __version__,
            "kind": "segmentation_evaluation",
            "min_lesion_volume_ml": minimum,
            "measurable_diameter_mm": 10.0,
            "global": summary,
            "cases": cases,
        },
        output,
    )
    print(metrics_table(cases, summary))
    log.info("wrote %s", output)
    return 0
