"""Synthetic lesions painted into a liver: inside the liver, labelled, deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from pipeline.training.synthetic_lesions import (
    LesionStyle,
    insert_lesion,
    insert_lesions,
    parenchyma_statistics,
)

SPACING_XYZ = (1.5, 1.5, 2.0)


def liver_volume(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (50, 120, 120)
    z, y, x = np.indices(shape, dtype=float)
    liver = ((z - 25) * 2.0 / 45) ** 2 + ((y - 60) * 1.5 / 70) ** 2 + ((x - 60) * 1.5 / 75) ** 2 < 1
    ct = np.full(shape, -80.0, np.float32)
    ct[liver] = 110.0
    ct += rng.normal(0, 12, shape).astype(np.float32)
    return ct, liver.astype(np.uint8)


def test_parenchyma_statistics_measure_level_and_noise() -> None:
    ct, labels = liver_volume()
    level, noise = parenchyma_statistics(ct, labels)
    assert level == pytest.approx(110, abs=2)
    assert 6 < noise < 14  # high-pass residual of white noise of sigma 12


def test_lesions_are_inside_the_liver_and_labelled() -> None:
    ct, labels = liver_volume()
    original_liver = labels > 0
    painted = insert_lesions(ct, labels, SPACING_XYZ, np.random.default_rng(1), count=5)
    assert painted >= 3
    tumour = labels == 2
    components = ndimage.label(tumour)[1]
    assert 1 <= components <= painted
    # mass effect may bulge the liver by a few voxels at most
    assert (tumour & ~ndimage.binary_dilation(original_liver, iterations=3)).sum() == 0
    assert set(np.unique(labels)) <= {0, 1, 2}


@pytest.mark.parametrize(("contrast", "sign"), [((-60.0, -40.0), -1), ((30.0, 40.0), 1)])
def test_lesion_contrast_follows_the_style(contrast: tuple[float, float], sign: int) -> None:
    ct, labels = liver_volume()
    style = LesionStyle(
        contrast_hu=(contrast,),
        contrast_weights=(1.0,),
        necrosis_probability=0.0,
        rim_probability=0.0,
        texture_hu=(1.0, 2.0),
    )
    assert insert_lesion(
        ct, labels, SPACING_XYZ, np.random.default_rng(2), style=style, diameter_mm=30
    )
    core = ndimage.binary_erosion(labels == 2, iterations=2)
    difference = float(ct[core].mean()) - 110.0
    assert sign * difference > 25


def test_same_seed_same_lesions() -> None:
    first_ct, first_labels = liver_volume()
    second_ct, second_labels = liver_volume()
    insert_lesions(first_ct, first_labels, SPACING_XYZ, np.random.default_rng(7), count=3)
    insert_lesions(second_ct, second_labels, SPACING_XYZ, np.random.default_rng(7), count=3)
    np.testing.assert_array_equal(first_labels, second_labels)
    np.testing.assert_array_equal(first_ct, second_ct)


def test_no_liver_no_lesion() -> None:
    ct = np.zeros((10, 20, 20), np.float32)
    labels = np.zeros_like(ct, dtype=np.uint8)
    assert insert_lesions(ct, labels, SPACING_XYZ, np.random.default_rng(0), count=2) == 0
    with pytest.raises(ValueError, match="no liver"):
        parenchyma_statistics(ct, labels + 0)
