"""The default design of a liverburden model bundle: stages, networks, spacings.

Chosen so that the default mode segments a 512 x 512 x 200 CT in about half a
minute on two CPU cores (see ``benchmarks/bench_segment.py``):

* ``liver``: a MONAI ``UNet`` (8-128 channels, 5 levels, ~0.6 M parameters)
  on a 3 mm grid over the whole scan; it only chooses the liver's box;
* ``lesion``: a MONAI ``UNet`` (16-256 channels, 5 levels, 2 residual units,
  ~4.8 M parameters) on a 1.5 x 1.5 x 2 mm grid inside the liver's box plus
  15 mm, with a left-right test-time flip.

Both see windows as large as the region they work on (up to the inference
``roi_size``), so one network pass covers a typical abdomen or liver; the
training patch (``train_patch_size``) covers most of such a region too, so that
instance normalisation sees similar statistics in training and inference.

Needs only the standard library, torch and monai (the training machine).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

from pipeline.segment.bundle import (
    InferenceSettings,
    PostprocessingSettings,
    QualitySettings,
    StageSettings,
    default_metadata,
    write_bundle,
)

STAGE_NAMES = ("liver", "lesion")


def unet(
    channels: list[int],
    strides: list[int],
    num_res_units: int,
    out_channels: int,
    dropout: float = 0.0,
) -> dict[str, Any]:
    """MONAI config of a 3-D ``monai.networks.nets.UNet`` with instance normalisation."""
    return {
        "_target_": "monai.networks.nets.UNet",
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": out_channels,
        "channels": list(channels),
        "strides": list(strides),
        "num_res_units": num_res_units,
        "norm": "instance",
        "dropout": dropout,
    }


#: Per stage: inference settings plus the training patch size (voxels, x y z).
DEFAULT_STAGES: dict[str, dict[str, Any]] = {
    "liver": {
        "name": "liver",
        "network": unet([8, 16, 32, 64, 128], [2, 2, 2, 2], 1, out_channels=2),
        "weights": "models/liver.pt",
        "classes": ["background", "liver"],
        "spacing_mm": [3.0, 3.0, 3.0],
        "hu_window": [-200.0, 300.0],
        "roi_size": [192, 192, 160],
        "overlap": 0.25,
        "sw_batch_size": 1,
        "size_divisible": 16,
        "antialias": True,
        "tta_flips": [],
        "crop": None,
        "train_patch_size": [128, 128, 96],
        "crop_margin_mm": None,
    },
    "lesion": {
        "name": "lesion",
        "network": unet([16, 32, 64, 128, 256], [2, 2, 2, 2], 2, out_channels=3),
        "weights": "models/lesion.pt",
        "classes": ["background", "liver", "tumour"],
        "spacing_mm": [1.5, 1.5, 2.0],
        "hu_window": [-150.0, 300.0],
        "roi_size": [224, 224, 160],
        "overlap": 0.25,
        "sw_batch_size": 1,
        "size_divisible": 16,
        "antialias": True,
        "tta_flips": [[0]],
        "crop": {"from_stage": "liver", "margin_mm": 15.0},
        "train_patch_size": [128, 128, 96],
        # the training cache keeps a wider box than inference, so that random
        # crops see varied surroundings
        "crop_margin_mm": 30.0,
    },
}

DEFAULT_FAST = {"tta_flips": [], "overlap": 0.1}
DEFAULT_POSTPROCESSING = PostprocessingSettings(
    largest_liver_component=True,
    tumour_inside_liver=True,
    fill_holes=True,
    min_tumour_volume_mm3=20.0,
)

#: Keys of a stage recipe that are training settings, not inference settings.
TRAINING_KEYS = ("train_patch_size", "crop_margin_mm")


def stage_recipe(name: str, **overrides: Any) -> dict[str, Any]:
    """The default recipe of stage ``name`` with ``overrides`` applied (``network``
    overrides are merged into the network's arguments)."""
    if name not in DEFAULT_STAGES:
        raise KeyError(name)
    recipe = copy.deepcopy(DEFAULT_STAGES[name])
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "network" and isinstance(value, dict) and "_target_" not in value:
            recipe["network"].update(copy.deepcopy(value))
        else:
            recipe[key] = copy.deepcopy(value)
    recipe["network"]["out_channels"] = len(recipe["classes"])
    return recipe


def stage_settings(recipe: dict[str, Any]) -> StageSettings:
    """Inference settings of a stage recipe (training keys dropped)."""
    from pipeline.segment.bundle import _parse_stage

    data = {k: v for k, v in recipe.items() if k not in TRAINING_KEYS}
    return _parse_stage(data, Path("stage recipe"), index=0)


def inference_settings(stages: list[StageSettings]) -> InferenceSettings:
    """Bundle inference settings for ``stages`` with the default post-processing,
    quality thresholds and fast mode. A crop to a stage the bundle lacks is dropped."""
    names = [s.name for s in stages]
    fixed = []
    for i, stage in enumerate(stages):
        if stage.crop is not None and stage.crop.from_stage not in names[:i]:
            stage = dataclasses.replace(stage, crop=None)
        fixed.append(stage)
    return InferenceSettings(
        stages=tuple(fixed),
        postprocessing=DEFAULT_POSTPROCESSING,
        quality=QualitySettings(),
        fast=dict(DEFAULT_FAST),
    )


def write_untrained_bundle(
    folder: str | Path, stages: list[dict[str, Any]] | None = None, seed: int = 0
) -> Path:
    """A bundle with randomly initialised weights (for speed benchmarks and tests only).

    Speed does not depend on weight values; the metadata says the weights are
    untrained, so nobody mistakes it for a model.
    """
    import torch

    from pipeline.segment.bundle import build_network

    recipes = stages if stages is not None else [stage_recipe(n) for n in STAGE_NAMES]
    settings = [stage_settings(r) for r in recipes]
    torch.manual_seed(seed)
    weights = {s.name: build_network(s).state_dict() for s in settings}
    metadata = default_metadata("untrained", "0.0.0")
    metadata["description"] = (
        "UNTRAINED: randomly initialised weights, for speed benchmarks and tests only"
    )
    metadata["changelog"] = {"0.0.0": "random weights"}
    card = "# untrained\n\nRandomly initialised weights of the default architecture: not a model.\n"
    return write_bundle(folder, inference_settings(settings), metadata, weights, card)
