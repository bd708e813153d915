"""Segmentation metrics: a predicted label map against a reference label map.

Pure array functions (arrays ``[z, y, x]`` with labels 0 background, 1 liver
parenchyma, 2 tumour; spacing ``(x, y, z)`` in mm); no file input or output.

Definitions
-----------
*Liver Dice*: Dice of liver including tumour (label > 0) against the same.

*Tumour Dice*: Dice of label 2. Per case it is undefined (``None``) when
neither map holds tumour; the global value pools all voxels of all cases
(``2 sum|P & T| / (sum|P| + sum|T|)``), so it is defined whenever any case
holds tumour.

*Lesions* are the connected components of the tumour label as
:func:`pipeline.measure.lesions.label_lesions` finds them (26-connected,
components below the noise volume are not lesions), so evaluation counts
lesions exactly as measurement does. A reference lesion is *detected* when a
predicted lesion overlaps it by at least one voxel; a predicted lesion is a
*true positive* when it overlaps a reference lesion. Recall = detected
reference lesions / reference lesions; precision = true-positive predicted
lesions / predicted lesions; F1 their harmonic mean. The ``10 mm`` variants
count only lesions whose longest axial diameter
(:func:`pipeline.measure.diameters.axial_diameters`) is at least 10 mm
(reference lesions for recall, predicted lesions for precision): the lesions
RECIST 1.1 calls measurable.

*Diameter error*: each reference lesion is matched with the predicted lesion
that overlaps it most; the error is the absolute difference of their longest
axial diameters (mm), averaged over matched lesions.

*Hepatic involvement error*: absolute difference, in percentage points, of
tumour volume / liver volume (tumour included) x 100.

*Liver HD95*: 95th percentile Hausdorff distance (mm, physical spacing)
between the surfaces of the two livers (label > 0): the larger of the two
directed 95th percentiles of the distance from one surface's voxels to the
other surface, as MONAI's ``compute_hausdorff_distance(percentile=95)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from pipeline.measure.diameters import axial_diameters
from pipeline.measure.lesions import LESION_CONNECTIVITY, label_lesions

#: Lesions with a longest axial diameter at least this (mm) count as measurable.
MEASURABLE_DIAMETER_MM = 10.0
#: Default noise limit of lesion components (mL), as in ``liverburden measure``.
DEFAULT_MIN_LESION_VOLUME_ML = 0.05


def dice(prediction: np.ndarray, reference: np.ndarray) -> float | None:
    """Dice coefficient of two boolean masks; ``None`` when both are empty."""
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    total = int(np.count_nonzero(prediction)) + int(np.count_nonzero(reference))
    if total == 0:
        return None
    return 2.0 * int(np.count_nonzero(prediction & reference)) / total


def _box(mask: np.ndarray, pad: int) -> tuple[slice, ...] | None:
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(
            slice(max(int(hits[0]) - pad, 0), min(int(hits[-1]) + 1 + pad, mask.shape[axis]))
        )
    return tuple(box)


def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (the image edge counts as outside)."""
    padded = np.pad(mask, 1)
    eroded = ndimage.binary_erosion(padded, structure=ndimage.generate_binary_structure(3, 1))
    return (padded & ~eroded)[1:-1, 1:-1, 1:-1]


def hausdorff_distance_95(
    prediction: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float]
) -> float | None:
    """95th percentile Hausdorff distance (mm) between the surfaces of two masks ``[z, y, x]``.

    Parameters
    ----------
    prediction, reference
        Boolean masks indexed ``[z, y, x]``.
    spacing_mm
        Voxel spacing ``(x, y, z)`` in mm.

    Returns
    -------
    float or None
        The larger of the two directed 95th percentiles of the distances from
        each surface voxel's centre to the nearest surface voxel's centre of the
        other mask, in mm; 0 for identical masks; ``None`` when either mask is empty.
    """
    prediction = np.asarray(prediction, dtype=bool)
    reference = np.asarray(reference, dtype=bool)
    if not prediction.any() or not reference.any():
        return None
    from scipy.spatial import cKDTree

    box = _box(prediction | reference, pad=1)
    assert box is not None
    scale = np.asarray([float(s) for s in spacing_mm][::-1])  # mm per index step along z, y, x
    points_a = np.argwhere(surface(prediction[box])) * scale
    points_b = np.argwhere(surface(reference[box])) * scale
    a_to_b, _ = cKDTree(points_b).query(points_a, workers=-1)
    b_to_a, _ = cKDTree(points_a).query(points_b, workers=-1)
    return max(float(np.percentile(a_to_b, 95)), float(np.percentile(b_to_a, 95)))


def involvement_percent(labels: np.ndarray) -> float | None:
    """Tumour volume in percent of the liver volume (tumour included); ``None`` without liver."""
    liver = int(np.count_nonzero(labels > 0))
    if liver == 0:
        return None
    return 100.0 * int(np.count_nonzero(labels == 2)) / liver


@dataclasses.dataclass
class LesionSet:
    """Lesion components of a label map and their longest axial diameters."""

    labels: np.ndarray
    diameters_mm: np.ndarray

    @property
    def count(self) -> int:
        return len(self.diameters_mm)


def lesion_set(
    labels: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    axial_axis: int = 2,
    min_volume_ml: float = DEFAULT_MIN_LESION_VOLUME_ML,
    connectivity: int = LESION_CONNECTIVITY,
) -> LesionSet:
    """Lesions (components of label 2, as ``liverburden measure`` finds them) with their
    longest axial diameters in mm."""
    lesions = label_lesions(
        labels == 2, spacing_mm, min_volume_ml=min_volume_ml, connectivity=connectivity
    )
    diameters = np.zeros(lesions.lesion_count, dtype=float)
    for index, region in enumerate(ndimage.find_objects(lesions.labels), start=1):
        if region is None or index > lesions.lesion_count:
            continue
        diameters[index - 1] = axial_diameters(
            lesions.labels[region] == index, spacing_mm, axial_axis
        ).longest_mm
    return LesionSet(lesions.labels, diameters)


def overlap_counts(
    reference: np.ndarray, prediction: np.ndarray, n_reference: int, n_prediction: int
) -> np.ndarray:
    """Voxels shared by each reference lesion (rows, id - 1) and predicted lesion (columns)."""
    both = (reference > 0) & (prediction > 0)
    counts = np.zeros((n_reference, n_prediction), dtype=np.int64)
    if both.any():
        pairs = (reference[both].astype(np.int64) - 1) * n_prediction + (
            prediction[both].astype(np.int64) - 1
        )
        counts = np.bincount(pairs, minlength=n_reference * n_prediction).reshape(
            n_reference, n_prediction
        )
    return counts


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def f1_score(precision: float | None, recall: float | None) -> float | None:
    if precision is None or recall is None:
        return None
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def detection_counts(
    reference: LesionSet, prediction: LesionSet, min_diameter_mm: float = 0.0
) -> dict[str, int]:
    """Counts behind recall and precision, for lesions of at least ``min_diameter_mm``."""
    overlaps = overlap_counts(
        reference.labels, prediction.labels, reference.count, prediction.count
    )
    reference_kept = reference.diameters_mm >= min_diameter_mm
    prediction_kept = prediction.diameters_mm >= min_diameter_mm
    detected = overlaps.sum(axis=1) > 0 if prediction.count else np.zeros(reference.count, bool)
    true_positive = (
        overlaps.sum(axis=0) > 0 if reference.count else np.zeros(prediction.count, bool)
    )
    return {
        "reference_lesions": int(np.count_nonzero(reference_kept)),
        "detected_reference_lesions": int(np.count_nonzero(detected & reference_kept)),
        "predicted_lesions": int(np.count_nonzero(prediction_kept)),
        "true_positive_predicted_lesions": int(np.count_nonzero(true_positive & prediction_kept)),
    }


def detection_scores(counts: dict[str, int]) -> dict[str, float | None]:
    """Recall, precision and F1 from :func:`detection_counts` (``None`` where undefined)."""
    recall = _ratio(counts["detected_reference_lesions"], counts["reference_lesions"])
    precision = _ratio(counts["true_positive_predicted_lesions"], counts["predicted_lesions"])
    return {"recall": recall, "precision": precision, "f1": f1_score(precision, recall)}


def evaluate_case(
    prediction: np.ndarray,
    reference: np.ndarray,
    spacing_mm: Sequence[float],
    *,
    axial_axis: int = 2,
    min_lesion_volume_ml: float = DEFAULT_MIN_LESION_VOLUME_ML,
    connectivity: int = LESION_CONNECTIVITY,
) -> dict[str, Any]:
    """All metrics of one case.

    Parameters
    ----------
    prediction, reference
        Label maps indexed ``[z, y, x]`` on the same grid (0, 1, 2).
    spacing_mm
        Voxel spacing ``(x, y, z)`` in mm.
    axial_axis
        Image axis (0, 1, 2 for x, y, z) closest to the head-foot axis
        (:func:`pipeline.io.axial_axis`); diameters are measured in the plane
        across it.
    min_lesion_volume_ml
        Tumour components below this volume (mL) are noise, not lesions.
    connectivity
        Neighbourhood of lesion voxels (6, 18 or 26).

    Returns
    -------
    dict
        Metrics named with their units (see the module docstring), plus the
        voxel counts and lesion counts from which global metrics are pooled.
    """
    prediction = np.asarray(prediction)
    reference = np.asarray(reference)
    if prediction.shape != reference.shape:
        raise ValueError(f"label maps differ in shape: {prediction.shape} vs {reference.shape}")
    voxel_ml = math.prod(float(s) for s in spacing_mm) / 1000.0
    predicted_liver, reference_liver = prediction > 0, reference > 0
    predicted_tumour, reference_tumour = prediction == 2, reference == 2
    reference_lesions = lesion_set(
        reference,
        spacing_mm,
        axial_axis=axial_axis,
        min_volume_ml=min_lesion_volume_ml,
        connectivity=connectivity,
    )
    predicted_lesions = lesion_set(
        prediction,
        spacing_mm,
        axial_axis=axial_axis,
        min_volume_ml=min_lesion_volume_ml,
        connectivity=connectivity,
    )
    all_counts = detection_counts(reference_lesions, predicted_lesions)
    measurable_counts = detection_counts(
        reference_lesions, predicted_lesions, MEASURABLE_DIAMETER_MM
    )
    overlaps = overlap_counts(
        reference_lesions.labels,
        predicted_lesions.labels,
        reference_lesions.count,
        predicted_lesions.count,
    )
    diameter_errors = []
    for row in range(reference_lesions.count):
        if predicted_lesions.count and overlaps[row].max() > 0:
            best = int(np.argmax(overlaps[row]))
            diameter_errors.append(
                abs(predicted_lesions.diameters_mm[best] - reference_lesions.diameters_mm[row])
            )
    predicted_involvement = involvement_percent(prediction)
    reference_involvement = involvement_percent(reference)
    involvement_error = (
        abs(predicted_involvement - reference_involvement)
        if predicted_involvement is not None and reference_involvement is not None
        else None
    )
    return {
        "liver_dice": dice(predicted_liver, reference_liver),
        "tumour_dice": dice(predicted_tumour, reference_tumour),
        "liver_hausdorff_95_mm": hausdorff_distance_95(
            predicted_liver, reference_liver, spacing_mm
        ),
        "lesion_detection": {**all_counts, **detection_scores(all_counts)},
        "lesion_detection_10mm": {**measurable_counts, **detection_scores(measurable_counts)},
        "involvement_percent_predicted": predicted_involvement,
        "involvement_percent_reference": reference_involvement,
        "involvement_absolute_error_percentage_points": involvement_error,
        "matched_lesions": len(diameter_errors),
        "longest_axial_diameter_mean_absolute_error_mm": float(np.mean(diameter_errors))
        if diameter_errors
        else None,
        "longest_axial_diameter_absolute_errors_mm": [float(e) for e in diameter_errors],
        "liver_volume_ml_predicted": int(np.count_nonzero(predicted_liver)) * voxel_ml,
        "liver_volume_ml_reference": int(np.count_nonzero(reference_liver)) * voxel_ml,
        "tumour_volume_ml_predicted": int(np.count_nonzero(predicted_tumour)) * voxel_ml,
        "tumour_volume_ml_reference": int(np.count_nonzero(reference_tumour)) * voxel_ml,
        "voxels": {
            "liver_intersection": int(np.count_nonzero(predicted_liver & reference_liver)),
            "liver_predicted": int(np.count_nonzero(predicted_liver)),
            "liver_reference": int(np.count_nonzero(reference_liver)),
            "tumour_intersection": int(np.count_nonzero(predicted_tumour & reference_tumour)),
            "tumour_predicted": int(np.count_nonzero(predicted_tumour)),
            "tumour_reference": int(np.count_nonzero(reference_tumour)),
        },
    }


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def summarise_cases(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Global metrics over cases from :func:`evaluate_case`.

    Means are over the cases where a metric is defined; Dice ``pooled`` values
    and lesion detection pool voxels and lesions over all cases.
    """
    results = list(cases.values())

    def pooled(prefix: str) -> float | None:
        intersection = sum(r["voxels"][f"{prefix}_intersection"] for r in results)
        total = sum(
            r["voxels"][f"{prefix}_predicted"] + r["voxels"][f"{prefix}_reference"] for r in results
        )
        return 2.0 * intersection / total if total else None

    def detection(key: str) -> dict[str, Any]:
        names = (
            "reference_lesions",
            "detected_reference_lesions",
            "predicted_lesions",
            "true_positive_predicted_lesions",
        )
        counts = {name: int(sum(r[key][name] for r in results)) for name in names}
        return {**counts, **detection_scores(counts)}

    errors = [e for r in results for e in r["longest_axial_diameter_absolute_errors_mm"]]
    return {
        "cases": len(results),
        "liver_dice_mean": _mean([r["liver_dice"] for r in results]),
        "liver_dice_pooled": pooled("liver"),
        "tumour_dice_mean": _mean([r["tumour_dice"] for r in results]),
        "tumour_dice_global": pooled("tumour"),
        "liver_hausdorff_95_mm_mean": _mean([r["liver_hausdorff_95_mm"] for r in results]),
        "lesion_detection": detection("lesion_detection"),
        "lesion_detection_10mm": detection("lesion_detection_10mm"),
        "involvement_absolute_error_percentage_points_mean": _mean(
            [r["involvement_absolute_error_percentage_points"] for r in results]
        ),
        "matched_lesions": len(errors),
        "longest_axial_diameter_mean_absolute_error_mm": float(np.mean(errors)) if errors else None,
    }
