"""Measurement of one scan: liver, tumour burden and each lesion.

Takes SimpleITK images already read and checked (CT in HU, label map on its
grid, optional arterial phase) and returns the measurements as plain values
plus the lesion, liver and viable maps; reading and writing files is the
command's business (:mod:`pipeline.measure.command`).

Decisions (see also the module docs of ``lesions``, ``diameters``, ``viable``):

* ``tumor_volume_ml`` counts every tumour voxel, noise components included;
  the lesion list leaves noise out (``noise_component_count``,
  ``noise_volume_ml``). ``liver_volume_ml`` is parenchyma plus tumour.
* A lesion-sized tumour component that touches no liver parenchyma (in its
  26-neighbourhood, or the configured connectivity) is not a liver tumour: the
  label map is refused with an :class:`InputError` naming the component's
  position. Noise components are not checked. When the label map has no
  parenchyma at all (tumour fills the liver) the check is skipped and the flag
  ``no_liver_parenchyma`` is raised.
* ``liver_mean_hu`` is the mean portal-phase attenuation of the liver
  parenchyma (label 1), without tumour.
* The arterial phase is used as it lies in physical space, resampled (linear)
  onto the portal grid when its grid differs; the two phases are not
  registered to each other (one examination, one breath-hold apart).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from pipeline.errors import InputError
from pipeline.io import axial_axis, direction_matrix, resample_like, same_grid
from pipeline.measure.diameters import AxialDiameters, axial_diameters
from pipeline.measure.lesions import (
    LesionLabels,
    bounding_box,
    connectivity_structure,
    label_lesions,
    voxel_volume_ml,
)
from pipeline.measure.settings import MeasureSettings
from pipeline.measure.viable import (
    lipiodol_mask,
    peri_tumoral_ring,
    remove_viable_specks,
    ring_margin_voxels,
    viable_mask,
)
from pipeline.measure.volumes import involvement_band, involvement_percent, is_measurable

LIVER = 1
TUMOR = 2

#: Keys of every lesion object, in order (``lesions.csv`` flattens them).
LESION_KEYS = (
    "id",
    "volume_ml",
    "voxel_count",
    "longest_axial_diameter_mm",
    "short_axis_diameter_mm",
    "axial_slice_index",
    "measurable",
    "centroid_mm",
    "mean_hu",
    "portal_mean_hu",
    "longest_axial_diameter_endpoints_mm",
    "short_axis_endpoints_mm",
    "bounding_box_index",
    "touches_image_border",
    "viable_volume_ml",
    "viable_longest_axial_diameter_mm",
    "viable_short_axis_diameter_mm",
    "viable_fraction",
    "viable_longest_axial_diameter_endpoints_mm",
    "arterial_mean_hu",
    "arterial_reference_hu",
    "arterial_reference",
    "lipiodol_volume_ml",
)


@dataclasses.dataclass
class ScanMeasurement:
    """Everything ``liverburden measure`` writes, before it is written.

    Attributes
    ----------
    values
        The measurements (JSON-ready apart from numpy scalars), without
        ``schema_version``, versions, subject, time point and date.
    lesion_map
        UInt16 lesion instance map on the CT grid (ids as in ``values``).
    liver_mask
        UInt8 mask of the liver including tumour on the CT grid.
    viable_map
        UInt16 map of the viable voxels of each lesion (by lesion id), only
        with an arterial phase.
    """

    values: dict[str, Any]
    lesion_map: sitk.Image
    liver_mask: sitk.Image
    viable_map: sitk.Image | None = None


def _flag(code: str, message: str) -> dict[str, str]:
    return {"code": code, "severity": "warning", "message": message}


class _Geometry:
    """Index (x, y, z) to LPS mapping of an image."""

    def __init__(self, image: sitk.Image) -> None:
        self.origin = np.asarray(image.GetOrigin(), dtype=float)
        self.spacing = np.asarray(image.GetSpacing(), dtype=float)
        self.matrix = direction_matrix(image) @ np.diag(self.spacing)
        self.size = tuple(int(s) for s in image.GetSize())

    def to_lps(self, index_xyz: np.ndarray) -> np.ndarray:
        """LPS points (mm) of continuous indices ``(x, y, z)`` (one per row)."""
        return np.asarray(index_xyz, dtype=float) @ self.matrix.T + self.origin

    def index_to_lps(self, offset_xyz: np.ndarray | None = None) -> np.ndarray:
        """3 x 4 matrix from ``(x, y, z, 1)`` indices (of a crop starting at
        ``offset_xyz``) to LPS mm."""
        offset = np.zeros(3) if offset_xyz is None else np.asarray(offset_xyz, dtype=float)
        return np.concatenate([self.matrix, (self.matrix @ offset + self.origin)[:, None]], axis=1)

    def describe(self, index_xyz: np.ndarray) -> str:
        point = self.to_lps(np.asarray(index_xyz, dtype=float)[None])[0]
        index = ", ".join(f"{v:.1f}" for v in index_xyz)
        lps = ", ".join(f"{v:.1f}" for v in point)
        return f"voxel index ({index}), LPS ({lps}) mm"


def _grow(
    region: tuple[slice, ...], margin: Sequence[int], shape: tuple[int, ...]
) -> tuple[slice, ...]:
    return tuple(
        slice(max(s.start - m, 0), min(s.stop + m, n))
        for s, m, n in zip(region, margin, shape, strict=True)
    )


def _shift(region: tuple[slice, ...], offset: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(s.start + o, s.stop + o) for s, o in zip(region, offset, strict=True))


def _touches_border(region: tuple[slice, ...], shape: tuple[int, ...]) -> bool:
    return any(s.start == 0 or s.stop == n for s, n in zip(region, shape, strict=True))


def touches_label(mask: np.ndarray, labels: np.ndarray, value: int, structure: np.ndarray) -> bool:
    """True when a voxel of ``labels`` equal to ``value`` neighbours ``mask``
    (``structure`` neighbourhood). Both arrays ``[z, y, x]``, same shape; the
    arrays should reach one voxel beyond ``mask``."""
    near = ndimage.binary_dilation(mask, structure=structure)
    return bool(np.any(near & (labels == value)))


def _endpoints_lps(
    diameters: AxialDiameters, geometry: _Geometry, offset_xyz: np.ndarray
) -> tuple[list[list[float]] | None, list[list[float]] | None]:
    if diameters.longest_endpoints_index is None or diameters.short_axis_endpoints_index is None:
        return None, None
    long_ends = geometry.to_lps(diameters.longest_endpoints_index + offset_xyz)
    short_ends = geometry.to_lps(diameters.short_axis_endpoints_index + offset_xyz)
    return long_ends.tolist(), short_ends.tolist()


def _centroid_index(mask: np.ndarray) -> np.ndarray:
    """Mean voxel index ``(x, y, z)`` of a boolean ``[z, y, x]`` mask (from its projections)."""
    total = float(np.count_nonzero(mask))
    per_z = mask.sum(axis=(1, 2), dtype=np.int64)
    per_y = mask.sum(axis=(0, 2), dtype=np.int64)
    per_x = mask.sum(axis=(0, 1), dtype=np.int64)
    return np.array(
        [
            float(np.dot(np.arange(len(per_x)), per_x)) / total,
            float(np.dot(np.arange(len(per_y)), per_y)) / total,
            float(np.dot(np.arange(len(per_z)), per_z)) / total,
        ]
    )


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean(dtype=np.float64)) if values.size else None


def _check_tumor_inside_liver(
    lesions: LesionLabels,
    labels: np.ndarray,
    structure: np.ndarray,
    centroids_xyz: list[np.ndarray],
    geometry: _Geometry,
    offset_xyz: np.ndarray,
    source: str | Path,
) -> None:
    """Refuse a lesion-sized tumour component that touches no parenchyma.

    A component touches the parenchyma when one of its lesions does (the
    pieces of a split component together make the component)."""
    touching: dict[int, bool] = {}
    for index, region in enumerate(lesions.regions):
        component = int(lesions.component_ids[index])
        if touching.get(component):
            continue
        window = _grow(region, (1, 1, 1), labels.shape)
        mask = lesions.labels[window] == index + 1
        touching[component] = touches_label(mask, labels[window], LIVER, structure)
    for component, touches in sorted(touching.items()):
        if touches:
            continue
        members = np.flatnonzero(lesions.component_ids == component)
        weights = lesions.voxel_counts[members].astype(float)
        centre = np.average([centroids_xyz[i] for i in members], axis=0, weights=weights)
        raise InputError(
            source,
            f"a tumour component of {int(weights.sum())} voxels at "
            f"{geometry.describe(centre + offset_xyz)} touches no liver parenchyma (label 1)",
            "tumour (label 2) only in or on the liver",
        )


def measure_scan(
    ct: sitk.Image,
    labels: sitk.Image,
    settings: MeasureSettings | None = None,
    *,
    arterial: sitk.Image | None = None,
    labels_source: str | Path = "segmentation",
    arterial_source: str | Path = "--arterial",
) -> ScanMeasurement:
    """Measure liver, tumour burden and every lesion of one scan.

    Parameters
    ----------
    ct
        Portal-venous CT in HU (float32), as from :func:`pipeline.io.read_ct`.
    labels
        Label map on exactly the grid of ``ct`` (0 background, 1 liver
        parenchyma, 2 tumour), as from :func:`pipeline.io.read_label_map`.
    settings
        :class:`MeasureSettings` (defaults when ``None``).
    arterial
        Optional arterial-phase CT of the same examination in HU (any grid
        that covers the lesions).
    labels_source, arterial_source
        Names of the inputs for error messages.

    Returns
    -------
    ScanMeasurement

    Raises
    ------
    InputError
        No liver, tumour outside the liver, or lesions the arterial phase
        does not cover.
    """
    settings = settings or MeasureSettings()
    if not same_grid(ct, labels):
        raise InputError(
            labels_source, "label map is not on the CT's grid", "a label map on the CT grid"
        )
    geometry = _Geometry(ct)
    spacing = tuple(float(s) for s in ct.GetSpacing())
    voxel_ml = voxel_volume_ml(spacing)
    axis = axial_axis(ct)
    slice_thickness = spacing[axis]
    full_labels = sitk.GetArrayViewFromImage(labels)
    shape = full_labels.shape
    flags: list[dict[str, str]] = []
    structure = connectivity_structure(settings.lesion_connectivity)

    # everything happens inside the liver's bounding box
    liver_full = full_labels > 0
    box = bounding_box(liver_full)
    if box is None:
        raise InputError(labels_source, "contains no liver (no voxel labelled 1 or 2)")
    offset_zyx = np.array([s.start for s in box])
    offset_xyz = offset_zyx[::-1].astype(float)
    label_array = full_labels[box]
    ct_array = sitk.GetArrayViewFromImage(ct)[box]
    liver = liver_full[box]

    counts = np.bincount(label_array.ravel(), minlength=3)
    parenchyma_voxels, tumor_voxels = int(counts[LIVER]), int(counts[TUMOR])
    liver_voxels = parenchyma_voxels + tumor_voxels
    liver_volume = liver_voxels * voxel_ml
    tumor_volume = tumor_voxels * voxel_ml
    involvement = involvement_percent(tumor_volume, liver_volume)
    liver_centroid = geometry.to_lps((_centroid_index(liver) + offset_xyz)[None])[0]
    parenchyma = label_array == LIVER
    tumor = label_array == TUMOR
    parenchyma_mean = _mean(ct_array[parenchyma]) if parenchyma_voxels else None
    tumor_mean = _mean(ct_array[tumor]) if tumor_voxels else None

    lesions = label_lesions(
        tumor,
        spacing,
        min_volume_ml=settings.min_lesion_volume_ml,
        connectivity=settings.lesion_connectivity,
        split_touching_lesions=settings.split_touching_lesions,
        split_min_depth_mm=settings.split_min_depth_mm,
        index_to_lps=geometry.index_to_lps(offset_xyz),
    )
    centroids_xyz = [
        np.stack(np.nonzero(lesions.labels[region] == index + 1), axis=1).mean(axis=0)[::-1]
        + np.array([s.start for s in region][::-1], dtype=float)
        for index, region in enumerate(lesions.regions)
    ]  # in the liver box
    if parenchyma_voxels == 0:
        flags.append(
            _flag(
                "no_liver_parenchyma",
                "the label map has no liver parenchyma (label 1): tumour fills the liver; "
                "involvement is 100 % and no attenuation reference exists",
            )
        )
    else:
        _check_tumor_inside_liver(
            lesions, label_array, structure, centroids_xyz, geometry, offset_xyz, labels_source
        )

    low, high = settings.liver_volume_plausible_ml
    if not low <= liver_volume <= high:
        flags.append(
            _flag(
                "liver_volume_implausible",
                f"liver volume {liver_volume:.0f} mL lies outside the plausible "
                f"{low:g}-{high:g} mL (segmentation error, partial scan, or unusual anatomy)",
            )
        )
    if _touches_border(box, shape):
        flags.append(
            _flag(
                "liver_touches_image_border",
                "the liver reaches the edge of the image: part of it may lie outside the scan, "
                "so its volume may be underestimated",
            )
        )
    if slice_thickness > settings.thick_slice_mm:
        flags.append(
            _flag(
                "thick_slices",
                f"slices are {slice_thickness:g} mm apart (> {settings.thick_slice_mm:g} mm): "
                f"a lesion is measurable from {2 * slice_thickness:g} mm (RECIST 1.1)",
            )
        )
    if lesions.noise_component_count >= settings.many_noise_components:
        flags.append(
            _flag(
                "many_noise_components",
                f"{lesions.noise_component_count} tumour components are smaller than "
                f"{settings.min_lesion_volume_ml:g} mL (a noisy segmentation?)",
            )
        )
    if lesions.split_component_count:
        flags.append(
            _flag(
                "touching_lesions_split",
                f"{lesions.split_component_count} tumour component(s) were split into touching "
                "lesions (--split-touching)",
            )
        )

    arterial_state = _prepare_arterial(
        arterial, ct, box, label_array, ct_array, settings, arterial_source, flags
    )
    viable_array = (
        np.zeros(label_array.shape, dtype=lesions.labels.dtype)
        if arterial_state is not None
        else None
    )

    lesion_values: list[dict[str, Any]] = []
    border_ids: list[int] = []
    ring_fallback_ids: list[int] = []
    for index, region in enumerate(lesions.regions):
        lesion_id = index + 1
        mask = lesions.labels[region] == lesion_id
        voxels = int(lesions.voxel_counts[index])
        start_xyz = np.array([s.start for s in region][::-1], dtype=float) + offset_xyz
        diameters = axial_diameters(mask, spacing, axis)
        long_ends, short_ends = _endpoints_lps(diameters, geometry, start_xyz)
        mean_hu = _mean(ct_array[region][mask])
        full_region = _shift(region, offset_zyx)
        touches = _touches_border(full_region, shape)
        if touches:
            border_ids.append(lesion_id)
        entry: dict[str, Any] = {
            "id": lesion_id,
            "volume_ml": voxels * voxel_ml,
            "voxel_count": voxels,
            "longest_axial_diameter_mm": diameters.longest_mm,
            "short_axis_diameter_mm": diameters.short_axis_mm,
            "axial_slice_index": (
                None
                if diameters.slice_index is None
                else diameters.slice_index + int(start_xyz[axis])
            ),
            "measurable": is_measurable(
                diameters.longest_mm,
                slice_thickness,
                min_diameter_mm=settings.measurable_min_diameter_mm,
                thick_slice_mm=settings.thick_slice_mm,
            ),
            "centroid_mm": geometry.to_lps((centroids_xyz[index] + offset_xyz)[None])[0].tolist(),
            "mean_hu": mean_hu,
            "portal_mean_hu": mean_hu,
            "longest_axial_diameter_endpoints_mm": long_ends,
            "short_axis_endpoints_mm": short_ends,
            "bounding_box_index": [
                [int(s.start) for s in full_region][::-1],
                [int(s.stop) - 1 for s in full_region][::-1],
            ],
            "touches_image_border": touches,
            "viable_volume_ml": None,
            "viable_longest_axial_diameter_mm": None,
            "viable_short_axis_diameter_mm": None,
            "viable_fraction": None,
            "viable_longest_axial_diameter_endpoints_mm": None,
            "arterial_mean_hu": None,
            "arterial_reference_hu": None,
            "arterial_reference": None,
            "lipiodol_volume_ml": None,
        }
        if arterial_state is not None and viable_array is not None:
            viable_entry = _measure_viable(
                lesion_id,
                mask,
                region,
                label_array,
                ct_array,
                arterial_state,
                settings,
                geometry,
                spacing,
                axis,
                start_xyz,
                arterial_source,
            )
            viable_local = viable_entry.pop("_viable_mask")
            viable_array[region][viable_local] = lesion_id
            if viable_entry["arterial_reference"] == "whole_parenchyma":
                ring_fallback_ids.append(lesion_id)
            entry.update(viable_entry)
        lesion_values.append(entry)

    if border_ids:
        flags.append(
            _flag(
                "lesion_touches_image_border",
                f"lesion(s) {', '.join(map(str, border_ids))} reach the edge of the image: "
                "their size may be underestimated",
            )
        )
    arterial_values = None
    if arterial_state is not None:
        if ring_fallback_ids:
            flags.append(
                _flag(
                    "peri_tumoral_ring_too_small",
                    f"lesion(s) {', '.join(map(str, ring_fallback_ids))} have less than "
                    f"{settings.peri_tumoral_ring_min_volume_ml:g} mL of parenchyma within "
                    f"{settings.peri_tumoral_ring_mm:g} mm: the whole parenchyma is their "
                    "reference",
                )
            )
        viable_total = sum(e["viable_volume_ml"] or 0.0 for e in lesion_values)
        lipiodol_total = sum(e["lipiodol_volume_ml"] or 0.0 for e in lesion_values)
        arterial_values = {
            "liver_parenchyma_mean_hu": arterial_state["parenchyma_mean_hu"],
            "viable_margin_hu": settings.viable_margin_hu,
            "lipiodol_min_hu": settings.lipiodol_min_hu,
            "peri_tumoral_ring_mm": settings.peri_tumoral_ring_mm,
            "peri_tumoral_ring_min_volume_ml": settings.peri_tumoral_ring_min_volume_ml,
            "resampled_to_portal_grid": arterial_state["resampled"],
            "viable_volume_ml": viable_total,
            "lipiodol_volume_ml": lipiodol_total,
        }

    values: dict[str, Any] = {
        "liver_volume_ml": liver_volume,
        "liver_parenchyma_volume_ml": parenchyma_voxels * voxel_ml,
        "tumor_volume_ml": tumor_volume,
        "involvement_percent": involvement,
        "involvement_band": involvement_band(
            involvement, settings.involvement_band_thresholds_percent
        ),
        "lesion_count": lesions.lesion_count,
        "lesion_volume_ml": float(lesions.voxel_counts.sum()) * voxel_ml,
        "noise_component_count": lesions.noise_component_count,
        "noise_volume_ml": lesions.noise_voxel_count * voxel_ml,
        "measurable_lesion_count": sum(1 for e in lesion_values if e["measurable"]),
        "spacing_mm": list(spacing),
        "slice_thickness_mm": slice_thickness,
        "image_size": list(geometry.size),
        "axial_axis": axis,
        "origin_mm": geometry.origin.tolist(),
        "direction": [float(d) for d in ct.GetDirection()],
        "voxel_volume_ml": voxel_ml,
        "liver_centroid_mm": liver_centroid.tolist(),
        "liver_mean_hu": parenchyma_mean,
        "tumor_mean_hu": tumor_mean,
        "arterial": arterial_values,
        "flags": flags,
        "settings": dataclasses.asdict(settings),
        "lesions": lesion_values,
    }

    def full_image(array: np.ndarray, dtype: type) -> sitk.Image:
        whole = np.zeros(shape, dtype=dtype)
        whole[box] = array
        image = sitk.GetImageFromArray(whole)
        image.CopyInformation(ct)
        return image

    liver_mask = sitk.GetImageFromArray(liver_full.view(np.uint8))
    liver_mask.CopyInformation(ct)
    return ScanMeasurement(
        values,
        full_image(lesions.labels, np.uint16),
        liver_mask,
        None if viable_array is None else full_image(viable_array, np.uint16),
    )


def _prepare_arterial(
    arterial: sitk.Image | None,
    ct: sitk.Image,
    box: tuple[slice, ...],
    label_array: np.ndarray,
    ct_array: np.ndarray,
    settings: MeasureSettings,
    source: str | Path,
    flags: list[dict[str, str]],
) -> dict[str, Any] | None:
    """Arterial phase on the portal grid (cropped to ``box``), its coverage and the
    whole-parenchyma reference."""
    if arterial is None:
        return None
    resampled = not same_grid(ct, arterial)
    if resampled:
        image = resample_like(sitk.Cast(arterial, sitk.sitkFloat32), ct, default_value=float("nan"))
        flags.append(
            _flag(
                "arterial_resampled",
                "the arterial phase is on another grid: it was resampled (linear) onto the portal "
                "grid as it lies in physical space, without registration",
            )
        )
    else:
        image = sitk.Cast(arterial, sitk.sitkFloat32)
    arterial_array = sitk.GetArrayViewFromImage(image)[box]
    liver = label_array > 0
    covered_liver = np.isfinite(arterial_array[liver])
    if not covered_liver.any():
        raise InputError(
            source,
            "the arterial phase does not overlap the liver of the portal-venous scan",
            "an arterial-phase CT of the same examination, covering the liver",
        )
    uncovered = int(covered_liver.size - np.count_nonzero(covered_liver))
    if uncovered:
        flags.append(
            _flag(
                "arterial_partial_coverage",
                f"{100.0 * uncovered / covered_liver.size:.1f} % of the liver lies outside the "
                "arterial phase",
            )
        )
    parenchyma = label_array == LIVER
    reference_voxels = arterial_array[parenchyma]
    portal_voxels = ct_array[parenchyma]
    keep = np.isfinite(reference_voxels) & ~lipiodol_mask(
        portal_voxels, reference_voxels, settings.lipiodol_min_hu
    )
    parenchyma_mean = _mean(reference_voxels[keep])
    if parenchyma_mean is None:
        flags.append(
            _flag(
                "viable_not_assessable",
                "no liver parenchyma in the arterial phase to compare tumour enhancement with: "
                "viable tumour is not measured",
            )
        )
    return {
        "array": arterial_array,
        "image": image,
        "parenchyma_mean_hu": parenchyma_mean,
        "resampled": resampled,
    }


def _measure_viable(
    lesion_id: int,
    mask: np.ndarray,
    region: tuple[slice, ...],
    label_array: np.ndarray,
    ct_array: np.ndarray,
    state: dict[str, Any],
    settings: MeasureSettings,
    geometry: _Geometry,
    spacing: tuple[float, float, float],
    axis: int,
    start_xyz: np.ndarray,
    source: str | Path,
) -> dict[str, Any]:
    """Viable part, lipiodol and arterial attenuation of one lesion (``mask`` on ``region``)."""
    arterial_array: np.ndarray = state["array"]
    voxel_ml = voxel_volume_ml(spacing)
    arterial_local = arterial_array[region]
    portal_local = ct_array[region]
    if not np.all(np.isfinite(arterial_local[mask])):
        centroid = np.stack(np.nonzero(mask), axis=1).mean(axis=0)[::-1] + start_xyz
        raise InputError(
            source,
            f"the arterial phase does not cover all of lesion {lesion_id} "
            f"(centroid at {geometry.describe(centroid)})",
            "an arterial-phase CT covering every lesion",
        )
    lipiodol = lipiodol_mask(portal_local, arterial_local, settings.lipiodol_min_hu) & mask
    # reference: parenchyma in a ring around the lesion
    window = _grow(
        region, ring_margin_voxels(spacing, settings.peri_tumoral_ring_mm), label_array.shape
    )
    inner = tuple(
        slice(r.start - w.start, r.stop - w.start) for r, w in zip(region, window, strict=True)
    )
    lesion_window = np.zeros(tuple(w.stop - w.start for w in window), dtype=bool)
    lesion_window[inner] = mask
    arterial_window = arterial_array[window]
    candidates = (
        (label_array[window] == LIVER)
        & np.isfinite(arterial_window)
        & ~lipiodol_mask(ct_array[window], arterial_window, settings.lipiodol_min_hu)
    )
    ring = peri_tumoral_ring(lesion_window, candidates, spacing, settings.peri_tumoral_ring_mm)
    ring_voxels = int(np.count_nonzero(ring))
    if ring_voxels > 0 and ring_voxels * voxel_ml >= settings.peri_tumoral_ring_min_volume_ml:
        reference = _mean(arterial_window[ring])
        reference_kind = "peri_tumoral_ring"
    else:
        reference = state["parenchyma_mean_hu"]
        reference_kind = "whole_parenchyma"
    voxels = int(np.count_nonzero(mask))
    arterial_mean = _mean(arterial_local[mask])
    lipiodol_voxels = int(np.count_nonzero(lipiodol))
    if reference is None:
        return {
            "_viable_mask": np.zeros(mask.shape, dtype=bool),
            "arterial_mean_hu": arterial_mean,
            "arterial_reference_hu": None,
            "arterial_reference": None,
            "lipiodol_volume_ml": lipiodol_voxels * voxel_ml,
        }
    viable = viable_mask(
        mask, arterial_local, reference, margin_hu=settings.viable_margin_hu, lipiodol=lipiodol
    )
    viable, largest_viable_part = remove_viable_specks(
        viable, spacing, settings.viable_min_component_ml
    )
    viable_voxels = int(np.count_nonzero(viable))
    diameters = axial_diameters(largest_viable_part, spacing, axis)
    long_ends, _short_ends = _endpoints_lps(diameters, geometry, start_xyz)
    return {
        "_viable_mask": viable,
        "viable_volume_ml": viable_voxels * voxel_ml,
        "viable_longest_axial_diameter_mm": diameters.longest_mm,
        "viable_short_axis_diameter_mm": diameters.short_axis_mm,
        "viable_fraction": viable_voxels / voxels,
        "viable_longest_axial_diameter_endpoints_mm": long_ends,
        "arterial_mean_hu": arterial_mean,
        "arterial_reference_hu": reference,
        "arterial_reference": reference_kind,
        "lipiodol_volume_ml": lipiodol_voxels * voxel_ml,
    }
