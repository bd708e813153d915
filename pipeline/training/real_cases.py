"""The real CT cases in ``../shared/data`` as training pairs, plus synthetic-lesion variants.

Each case is a CT with a label map (0 background, 1 liver, 2 tumour) on its
grid. The cases and what had to be done to use them:

* ``totalseg-example/ct.nii.gz`` (whole abdomen at 3 mm, Apache-2.0, a model's
  liver mask, no tumour): its ``liver.nii.gz`` holds only 30 slices but carries
  the CT's origin. Placed at every possible slice offset, the mask fits the
  liver at exactly one (attenuation inside it uniform, standard deviation
  ~15 HU, against > 30 HU at any other offset): the top 30 slices. The offset
  is found here, not assumed, and written to the recipe's log.
* ``totalseg-example/ct_dicom`` with ``ct_dicom_liver.nii.gz`` (20 slices,
  Apache-2.0): the mask is stored with the y axis flipped; read onto the
  series' grid exactly by :func:`pipeline.io.read_label_map`.
* ``ircad-1.17`` (3D-IRCADb-01, CC BY-NC-ND 3.0, expert liver and tumour
  masks): the one real case with tumours. Held out of training when the
  recipe is run for validation.

Synthetic lesions (:mod:`pipeline.training.synthetic_lesions`) are painted into
copies of each liver to make tumour-bearing variants.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from pipeline.errors import InputError
from pipeline.io import read_ct, read_label_map, write_image
from pipeline.training.synthetic_lesions import insert_lesions

log = logging.getLogger(__name__)

TOTALSEG_LICENCE = "Apache-2.0 (TotalSegmentator test data; liver mask from a model)"
IRCAD_LICENCE = "CC BY-NC-ND 3.0 (3D-IRCADb-01, IRCAD France): research use, attribute IRCAD"


@dataclasses.dataclass(frozen=True)
class RealCase:
    """A real CT and its label map, ready to be written as a training pair."""

    case_id: str
    licence: str
    ct: sitk.Image
    labels: sitk.Image


def place_partial_mask(ct: sitk.Image, partial: sitk.Image) -> tuple[sitk.Image, int, float]:
    """Place a mask stored with fewer slices than its CT at the slice offset where it fits.

    The fit is the standard deviation of the CT inside the mask (HU): a liver
    mask on the liver holds uniform parenchyma, anywhere else it holds fat,
    bone and air.

    Returns
    -------
    (labels, offset, spread_hu)
        The mask on the CT's grid, the slice offset chosen and the spread at it.
    """
    ct_array = sitk.GetArrayViewFromImage(ct)
    mask = sitk.GetArrayViewFromImage(partial) > 0
    if mask.shape[1:] != ct_array.shape[1:] or mask.shape[0] > ct_array.shape[0]:
        raise InputError(None, "partial mask does not fit its CT in-plane")
    spreads = [
        float(ct_array[offset : offset + mask.shape[0]][mask].std())
        for offset in range(ct_array.shape[0] - mask.shape[0] + 1)
    ]
    offset = int(np.argmin(spreads))
    full = np.zeros(ct_array.shape, np.uint8)
    full[offset : offset + mask.shape[0]] = mask
    labels = sitk.GetImageFromArray(full)
    labels.CopyInformation(ct)
    return labels, offset, spreads[offset]


def load_real_cases(shared_data: Path, *, include_ircad: bool) -> list[RealCase]:
    """The labelled real cases of ``shared_data`` (``../shared/data``)."""
    cases: list[RealCase] = []
    totalseg = read_ct(shared_data / "totalseg-example" / "ct.nii.gz").image
    partial = sitk.ReadImage(str(shared_data / "totalseg-example" / "liver.nii.gz"))
    labels, offset, spread = place_partial_mask(totalseg, partial)
    log.info(
        "totalseg-example liver mask placed at slice offset %d (spread %.1f HU)", offset, spread
    )
    if spread > 25:
        raise InputError(
            shared_data / "totalseg-example" / "liver.nii.gz",
            f"the liver mask fits its CT nowhere (best spread {spread:.1f} HU)",
        )
    cases.append(RealCase("totalseg_abdomen_3mm", TOTALSEG_LICENCE, totalseg, labels))
    series = read_ct(shared_data / "totalseg-example" / "ct_dicom").image
    series_labels = read_label_map(
        shared_data / "totalseg-example" / "ct_dicom_liver.nii.gz", series
    )
    cases.append(RealCase("totalseg_series_20_slices", TOTALSEG_LICENCE, series, series_labels))
    if include_ircad:
        ircad = read_ct(shared_data / "ircad-1.17" / "ct.nii.gz").image
        ircad_labels = read_label_map(shared_data / "ircad-1.17" / "labels.nii.gz", ircad)
        cases.append(RealCase("ircad_1_17", IRCAD_LICENCE, ircad, ircad_labels))
    return cases


def with_synthetic_lesions(case: RealCase, seed: int, count: int | None = None) -> RealCase:
    """A copy of ``case`` with synthetic lesions painted into its liver."""
    rng = np.random.default_rng(seed)
    ct = sitk.GetArrayFromImage(case.ct).astype(np.float32)
    labels = sitk.GetArrayFromImage(case.labels).astype(np.uint8)
    insert_lesions(ct, labels, case.ct.GetSpacing(), rng, count=count)
    ct_image = sitk.GetImageFromArray(ct)
    ct_image.CopyInformation(case.ct)
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(case.ct)
    return RealCase(f"{case.case_id}_synthetic_{seed}", case.licence, ct_image, label_image)


def write_training_table(
    cases: list[RealCase],
    folder: Path,
    variants_per_case: int,
    seed: int = 0,
    table_name: str = "cases.tsv",
) -> Path:
    """Write each case and ``variants_per_case`` synthetic-lesion copies of it as
    NIfTI pairs under ``folder`` and return the TSV table listing them
    (columns ``case, image, label, dataset, licence``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["case\timage\tlabel\tdataset\tlicence"]
    for index, case in enumerate(cases):
        versions = [case] + [
            with_synthetic_lesions(case, seed * 1000 + index * 100 + k)
            for k in range(variants_per_case)
        ]
        for version in versions:
            image_path = folder / f"{version.case_id}_ct.nii.gz"
            label_path = folder / f"{version.case_id}_labels.nii.gz"
            if not (image_path.exists() and label_path.exists()):
                write_image(sitk.Cast(version.ct, sitk.sitkInt16), image_path)
                write_image(version.labels, label_path)
            rows.append(
                f"{version.case_id}\t{image_path.name}\t{label_path.name}\t"
                f"{case.case_id}\t{case.licence}"
            )
            log.info("training pair %s written", version.case_id)
    table = folder / table_name
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return table
