"""Training loop of a bundle stage: reads only the prepared cache (numpy, torch, monai).

Run as ``liverburden train fit --cache DIR --output BUNDLE`` or, on a machine
that has only torch and monai (a rented GPU box carrying the repository and the
cache), as ``python -m pipeline.segment.train_fit --cache DIR --output BUNDLE``.
This module imports nothing but the standard library, numpy, torch, monai and
the project's dependency-free modules (errors, bundle, recipes): no SimpleITK,
no :mod:`pipeline.io`.

Per stage (``liver``, ``lesion`` or both, in that order):

* cases from ``<cache>/<stage>/manifest.json`` (prepared by
  ``liverburden train prepare``), split into training and held-out validation
  cases (``--validation-fraction`` with ``--seed``, or ``--validation-cases``);
* MONAI transforms: HU window with clipping, padding to the patch, random
  patches weighted to tumour (``RandCropByLabelClassesd``), then the
  augmentations that matter for CT: rotations and scaling (``RandAffined``),
  elastic deformation (``Rand3DElasticd``), spacing jitter (``RandZoomd``),
  flips, intensity scale and shift, contrast (gamma), Gaussian noise and blur;
* Dice + cross-entropy loss (``DiceCELoss``), AdamW with polynomial decay,
  gradient clipping; CUDA with automatic mixed precision, or CPU;
* validation Dice each epoch on the held-out cases (whole cached volumes,
  sliding windows); a checkpoint each epoch (``--resume`` continues from it,
  exactly: random states included); deterministic with ``--seed``;
* the best epoch's weights go into the bundle (``--output``), which is written
  complete: configs, weights, metadata with the validation metrics and the
  training data's licences, and a model card. Training one stage into an
  existing bundle keeps its other stages.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import logging
import math
import os
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import __version__
from pipeline.errors import InputError

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "liverburden-fit-checkpoint/1"
CACHE_KIND = "liverburden-training-cache"
#: Class sampling ratios of the random patches (background, liver[, tumour]).
CROP_RATIOS = {"liver": [1.0, 2.0], "lesion": [1.0, 2.0, 3.0]}


@dataclasses.dataclass
class FitSettings:
    """Settings of ``liverburden train fit`` (see :func:`add_fit_arguments` for each)."""

    cache: Path
    output: Path
    stages: tuple[str, ...] = ("liver", "lesion")
    epochs: int = 100
    iterations_per_epoch: int = 250
    batch_size: int = 2
    samples_per_case: int = 2
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    patch_size: tuple[int, int, int] | None = None
    roi_size: tuple[int, int, int] | None = None
    hu_window: tuple[float, float] | None = None
    network: dict[str, Any] | None = None
    tta_flips: list[list[int]] | None = None
    validation_fraction: float = 0.2
    validation_cases: tuple[str, ...] = ()
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    resume: bool = False
    initial_weights: Path | None = None
    checkpoint_dir: Path | None = None
    augmentation: str = "full"
    bundle_name: str = "liverburden-ct"
    bundle_version: str = "0.1.0"
    command_line: str = ""


# ------------------------------------------------------------------ cache


def read_manifest(cache: Path, stage: str) -> dict[str, Any]:
    """The manifest of a stage's cache, checked."""
    path = cache / stage / "manifest.json"
    if not path.is_file():
        raise InputError(
            path,
            f"no prepared cache for stage {stage!r}",
            "run 'liverburden train prepare ... --cache DIR' first",
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not valid JSON ({exc})") from None
    if (
        not isinstance(manifest, dict)
        or manifest.get("kind") != CACHE_KIND
        or manifest.get("stage") != stage
    ):
        raise InputError(path, f"not a liverburden training cache of stage {stage!r}")
    cases = manifest.get("cases")
    if not isinstance(cases, list) or not cases:
        raise InputError(path, "lists no cases")
    for entry in cases:
        if not (cache / stage / entry["file"]).is_file():
            raise InputError(
                cache / stage / entry["file"], "cached case listed in the manifest is missing"
            )
    return manifest


def split_cases(
    case_ids: Sequence[str], fraction: float, seed: int, chosen: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """``(training, validation)`` case ids: ``chosen`` if given, else a seeded random fraction.

    With a single case, it is used for both (validation then measures fit, not
    generalisation; the metadata says so).
    """
    ids = list(case_ids)
    if chosen:
        unknown = sorted(set(chosen) - set(ids))
        if unknown:
            raise InputError("--validation-cases", f"not in the cache: {', '.join(unknown[:5])}")
        validation = [i for i in ids if i in set(chosen)]
        training = [i for i in ids if i not in set(chosen)]
        if not training:
            raise InputError("--validation-cases", "leaves no case for training")
        return training, validation
    if not 0 <= fraction < 1:
        raise InputError("--validation-fraction", f"must be in [0, 1), not {fraction:g}")
    if len(ids) == 1 or fraction == 0:
        return ids, list(ids[:1]) if len(ids) == 1 else []
    count = min(max(1, round(fraction * len(ids))), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    validation = sorted(ids[i] for i in order[:count])
    return [i for i in ids if i not in set(validation)], validation


# ------------------------------------------------------------- transforms


def _load_transform(cache_stage: Path) -> Any:
    from monai.transforms import MapTransform

    class LoadCachedCased(MapTransform):
        """Load a cached case: ``image`` float32 HU ``[1, x, y, z]``, ``label`` ``[1, x, y, z]``."""

        def __init__(self, folder: Path) -> None:
            super().__init__(keys=("image", "label"))
            self.folder = folder

        def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
            d = dict(data)
            with np.load(self.folder / d["file"]) as arrays:
                d["image"] = arrays["image"].astype(np.float32)[None]
                d["label"] = arrays["label"].astype(np.float32)[None]
            return d

    return LoadCachedCased(cache_stage)


def build_transforms(
    cache_stage: Path,
    stage: str,
    classes: int,
    patch: Sequence[int],
    window: Sequence[float],
    samples: int,
    augmentation: str,
) -> tuple[Any, Any]:
    """``(training, validation)`` MONAI transform chains."""
    import torch
    from monai.transforms import (
        Compose,
        EnsureTyped,
        Rand3DElasticd,
        RandAdjustContrastd,
        RandAffined,
        RandCropByLabelClassesd,
        RandFlipd,
        RandGaussianNoised,
        RandGaussianSmoothd,
        RandScaleIntensityd,
        RandShiftIntensityd,
        RandZoomd,
        ScaleIntensityRanged,
        SpatialPadd,
    )

    keys = ("image", "label")
    low, high = float(window[0]), float(window[1])
    common = [
        _load_transform(cache_stage),
        ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
        EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False),
    ]
    validation = Compose(common)
    random_steps: list[Any] = [
        SpatialPadd(keys=keys, spatial_size=list(patch), mode="constant"),
        RandCropByLabelClassesd(
            keys=keys,
            label_key="label",
            spatial_size=list(patch),
            num_classes=classes,
            ratios=CROP_RATIOS.get(stage, [1.0] * classes)[:classes],
            num_samples=samples,
            warn=False,
        ),
    ]
    if augmentation == "full":
        random_steps += [
            RandAffined(
                keys=keys,
                prob=0.3,
                rotate_range=(0.1, 0.1, 0.3),
                scale_range=(0.15, 0.15, 0.15),
                mode=("bilinear", "nearest"),
                padding_mode="border",
            ),
            Rand3DElasticd(
                keys=keys,
                prob=0.1,
                sigma_range=(5.0, 8.0),
                magnitude_range=(50.0, 150.0),
                mode=("bilinear", "nearest"),
                padding_mode="border",
            ),
            RandZoomd(
                keys=keys,
                prob=0.2,
                min_zoom=(0.85, 0.85, 0.7),
                max_zoom=(1.15, 1.15, 1.3),
                mode=("trilinear", "nearest"),
                keep_size=True,
            ),
        ]
    if augmentation in ("full", "light"):
        random_steps += [
            RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=1),
            RandFlipd(keys=keys, prob=0.5, spatial_axis=2),
            RandScaleIntensityd(keys="image", prob=0.3, factors=0.1),
            RandShiftIntensityd(keys="image", prob=0.3, offsets=0.05),
            RandAdjustContrastd(keys="image", prob=0.2, gamma=(0.8, 1.25)),
            RandGaussianNoised(keys="image", prob=0.2, std=0.03),
            RandGaussianSmoothd(
                keys="image", prob=0.15, sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0)
            ),
        ]
    random_steps.append(EnsureTyped(keys=keys, dtype=torch.float32, track_meta=False))
    return Compose(common + random_steps), validation


def random_states(transform: Any) -> list[np.random.RandomState]:
    """Every random generator inside a transform chain, in a fixed order.

    MONAI dictionary transforms delegate to inner array transforms with their
    own generators, so the whole object graph of MONAI (and our) transforms is
    walked; saving and restoring these makes a resumed run continue exactly.
    """
    found: list[np.random.RandomState] = []
    seen: set[int] = set()

    def walk(item: Any, depth: int) -> None:
        if depth > 8 or id(item) in seen:
            return
        seen.add(id(item))
        if isinstance(item, np.random.RandomState):
            found.append(item)
        elif isinstance(item, list | tuple):
            for value in item:
                walk(value, depth + 1)
        elif isinstance(item, dict):
            for value in item.values():
                walk(value, depth + 1)
        elif type(item).__module__.startswith(("monai.", "pipeline.")) and hasattr(
            item, "__dict__"
        ):
            for value in vars(item).values():
                walk(value, depth + 1)

    walk(transform, 0)
    return found


# ---------------------------------------------------------------- helpers


def _device(name: str) -> Any:
    import torch

    requested = name.lower()
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        from pipeline.errors import DeviceError

        raise DeviceError(
            "--device",
            f"{name} was requested but no CUDA GPU is available",
            "--device auto or --device cpu",
        )
    if requested not in ("cpu",) and not requested.startswith("cuda"):
        raise InputError("--device", f"unknown device {name!r}", "auto, cpu, cuda or cuda:N")
    return torch.device(requested)


def _atomic_torch_save(value: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save(value, name)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


def size_divisor(network: Mapping[str, Any]) -> int:
    """Factor every window side must be a multiple of: the product of the network's strides."""
    strides = network.get("strides")
    if isinstance(strides, list | tuple) and strides and all(isinstance(s, int) for s in strides):
        return int(math.prod(strides))
    return 16


def dice_scores(prediction: Any, label: Any, has_tumour: bool) -> dict[str, float | None]:
    """Liver (label > 0) and tumour (label 2) Dice of one case; ``None`` when both are empty."""

    def dice(a: Any, b: Any) -> float | None:
        total = int(a.sum()) + int(b.sum())
        return None if total == 0 else 2.0 * int((a & b).sum()) / total

    scores = {"liver_dice": dice(prediction > 0, label > 0)}
    if has_tumour:
        scores["tumour_dice"] = dice(prediction == 2, label == 2)
    return scores


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


# --------------------------------------------------------------- training


@dataclasses.dataclass
class StagePlan:
    """Everything fixed before a stage's training starts."""

    stage: str
    recipe: dict[str, Any]
    manifest: dict[str, Any]
    training_cases: list[str]
    validation_cases: list[str]
    patch_size: tuple[int, int, int]
    checkpoint: Path

    def fingerprint(self, settings: FitSettings) -> dict[str, Any]:
        """Settings that must not change when resuming."""
        return {
            "stage": self.stage,
            "network": self.recipe["network"],
            "spacing_mm": self.recipe["spacing_mm"],
            "antialias": self.recipe.get("antialias", False),
            "hu_window": self.recipe["hu_window"],
            "patch_size": list(self.patch_size),
            "training_cases": self.training_cases,
            "validation_cases": self.validation_cases,
            "iterations_per_epoch": settings.iterations_per_epoch,
            "batch_size": settings.batch_size,
            "samples_per_case": settings.samples_per_case,
            "learning_rate": settings.learning_rate,
            "weight_decay": settings.weight_decay,
            "seed": settings.seed,
            "augmentation": settings.augmentation,
            "epochs": settings.epochs,
        } | ({} if settings.initial_weights is None else {"initial": str(settings.initial_weights)})


def _initial_weights(bundle: Path, stage: str) -> Path:
    """Weights file of ``stage`` in the bundle ``bundle`` (to fine-tune from)."""
    from pipeline.segment.bundle import load_bundle

    loaded = load_bundle(bundle)
    for candidate in loaded.inference.stages:
        if candidate.name == stage:
            return loaded.weights_path(candidate)
    raise InputError(
        bundle, f"has no stage {stage!r} to start from", "a bundle with the stage being trained"
    )


def plan_stage(settings: FitSettings, stage: str) -> StagePlan:
    from pipeline.segment.recipes import stage_recipe

    manifest = read_manifest(settings.cache, stage)
    grid = manifest.get("grid", {})
    overrides: dict[str, Any] = {
        "spacing_mm": grid.get("spacing_mm"),
        "antialias": bool(grid.get("antialias", False)),  # as the cache was made
    }
    if settings.network:
        overrides["network"] = settings.network
    if settings.hu_window:
        overrides["hu_window"] = list(settings.hu_window)
    if settings.roi_size:
        overrides["roi_size"] = list(settings.roi_size)
    if settings.tta_flips is not None:
        overrides["tta_flips"] = settings.tta_flips
    recipe = stage_recipe(stage, **overrides)
    divisor = size_divisor(recipe["network"])
    recipe["size_divisible"] = divisor
    patch = tuple(int(p) for p in (settings.patch_size or recipe["train_patch_size"]))
    for name, size in (("--patch-size", patch), ("--roi-size", tuple(recipe["roi_size"]))):
        if len(size) != 3 or any(s < divisor or s % divisor for s in size):
            raise InputError(
                name,
                f"{list(size)} is not three multiples of {divisor} (the network's total stride)",
            )
    recipe["train_patch_size"] = list(patch)
    ids = [entry["case"] for entry in manifest["cases"]]
    training, validation = split_cases(
        ids, settings.validation_fraction, settings.seed, settings.validation_cases
    )
    folder = settings.checkpoint_dir or (settings.cache / stage / "checkpoints")
    return StagePlan(
        stage, recipe, manifest, training, validation, patch, Path(folder) / "checkpoint.pt"
    )  # type: ignore[arg-type]


def train_stage(settings: FitSettings, plan: StagePlan) -> dict[str, Any]:
    """Train one stage; returns ``{"state_dict", "validation", "training"}`` of the best epoch."""
    import torch
    from monai.data import CacheDataset, DataLoader
    from monai.inferers import sliding_window_inference
    from monai.losses import DiceCELoss
    from monai.utils import set_determinism

    from pipeline.segment.bundle import build_network, count_parameters, load_weights
    from pipeline.segment.recipes import stage_settings

    device = _device(settings.device)
    use_amp = settings.amp and device.type == "cuda"
    set_determinism(seed=settings.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    stage_config = stage_settings(plan.recipe)
    classes = len(stage_config.classes)
    cache_stage = settings.cache / plan.stage
    entries = {e["case"]: e for e in plan.manifest["cases"]}
    train_transform, validation_transform = build_transforms(
        cache_stage,
        plan.stage,
        classes,
        plan.patch_size,
        stage_config.hu_window,
        settings.samples_per_case,
        settings.augmentation,
    )
    train_transform.set_random_state(seed=settings.seed)
    dataset = CacheDataset(
        [{"file": entries[c]["file"], "case": c} for c in plan.training_cases],
        transform=train_transform,
        cache_rate=1.0,
        num_workers=max(settings.workers, 1),
        progress=False,
    )
    generator = torch.Generator().manual_seed(settings.seed)
    sampler = torch.utils.data.RandomSampler(
        dataset,
        replacement=True,
        num_samples=settings.iterations_per_epoch * settings.batch_size,
        generator=generator,
    )
    loader = DataLoader(
        dataset,
        batch_size=settings.batch_size,
        sampler=sampler,
        num_workers=settings.workers,
        generator=generator,
        persistent_workers=False,
    )
    validation_data = [
        validation_transform({"file": entries[c]["file"], "case": c}) for c in plan.validation_cases
    ]

    network = build_network(stage_config)
    if settings.initial_weights is not None:
        initial = _initial_weights(settings.initial_weights, plan.stage)
        load_weights(network, initial, plan.stage)
        log.info("%s: starting from the weights in %s (fine-tuning)", plan.stage, initial)
    network = network.to(device)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    total_steps = max(settings.epochs * settings.iterations_per_epoch, 1)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total_steps, power=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    fingerprint = plan.fingerprint(settings)
    start_epoch = 0
    best: dict[str, Any] = {"score": -1.0, "epoch": 0, "state_dict": None, "validation": {}}
    history: list[dict[str, Any]] = []
    generators = random_states(train_transform)

    if settings.resume and plan.checkpoint.is_file():
        checkpoint = torch.load(plan.checkpoint, map_location="cpu", weights_only=False)
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise InputError(plan.checkpoint, "not a liverburden training checkpoint")
        previous = dict(checkpoint["fingerprint"])
        current = dict(fingerprint)
        previous.pop("epochs", None)
        current.pop("epochs", None)
        if previous != current:
            changed = sorted(
                k for k in set(previous) | set(current) if previous.get(k) != current.get(k)
            )
            raise InputError(
                plan.checkpoint,
                f"checkpoint was made with other settings ({', '.join(changed)})",
                "the same settings as the interrupted run (only --epochs may grow)",
            )
        network.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler = torch.optim.lr_scheduler.PolynomialLR(
            optimizer, total_iters=total_steps, power=0.9
        )
        scheduler_state = dict(checkpoint["scheduler"])
        scheduler_state["total_iters"] = total_steps
        scheduler.load_state_dict(scheduler_state)
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch = int(checkpoint["epoch"])
        best = checkpoint["best"]
        history = list(checkpoint["history"])
        torch.set_rng_state(checkpoint["rng"]["torch"])
        np.random.set_state(checkpoint["rng"]["numpy"])
        random.setstate(checkpoint["rng"]["python"])
        if device.type == "cuda" and checkpoint["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(checkpoint["rng"]["cuda"])
        generator.set_state(checkpoint["rng"]["generator"])
        for state_holder, state in zip(generators, checkpoint["rng"]["transforms"], strict=True):
            state_holder.set_state(state)
        log.info("%s: resuming after epoch %d of %d", plan.stage, start_epoch, settings.epochs)
    elif settings.resume:
        log.warning("%s: no checkpoint at %s; starting from scratch", plan.stage, plan.checkpoint)

    log.info(
        "%s: %d training and %d validation cases, patch %s, network %s (%s parameters), %s%s",
        plan.stage,
        len(plan.training_cases),
        len(plan.validation_cases),
        "x".join(map(str, plan.patch_size)),
        plan.recipe["network"].get("_target_"),
        f"{count_parameters(network):,}",
        device,
        " with mixed precision" if use_amp else "",
    )
    started = time.perf_counter()
    for epoch in range(start_epoch, settings.epochs):
        epoch_start = time.perf_counter()
        network.train()
        losses = []
        for batch in loader:
            images = batch["image"].to(device)
            labels = batch["label"].to(device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                logits = network(images)
                loss = loss_function(logits.float(), labels)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), 12.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses.append(float(loss.detach()))
        network.eval()
        case_scores: dict[str, dict[str, float | None]] = {}
        with torch.inference_mode():
            for item in validation_data:
                image = item["image"][None].to(device)
                roi = [
                    min(
                        r,
                        int(
                            math.ceil(s / stage_config.size_divisible) * stage_config.size_divisible
                        ),
                    )
                    for r, s in zip(stage_config.roi_size, image.shape[2:], strict=True)
                ]
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    logits = sliding_window_inference(
                        image, roi, 1, network, overlap=0.25, mode="gaussian"
                    )
                prediction = torch.argmax(logits, dim=1)[0].cpu()
                label = item["label"][0].round().to(torch.int64)
                case_scores[item["case"]] = dice_scores(prediction, label, stage_config.has_tumour)
        liver = _mean([s["liver_dice"] for s in case_scores.values()])
        tumour = (
            _mean([s.get("tumour_dice") for s in case_scores.values()])
            if stage_config.has_tumour
            else None
        )
        score = _mean([liver, tumour]) if liver is not None else -1.0
        record = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else None,
            "learning_rate": float(scheduler.get_last_lr()[0]),
            "validation_liver_dice": liver,
            "validation_tumour_dice": tumour,
            "seconds": round(time.perf_counter() - epoch_start, 2),
        }
        history.append(record)
        if score is not None and score > best["score"]:
            best = {
                "score": score,
                "epoch": epoch + 1,
                "state_dict": {
                    k: v.detach().cpu().clone() for k, v in network.state_dict().items()
                },
                "validation": {"liver_dice": liver, "tumour_dice": tumour, "cases": case_scores},
            }
        log.info(
            "%s: epoch %d/%d: loss %.4f, validation liver Dice %s%s (best epoch %d), %.1f s",
            plan.stage,
            epoch + 1,
            settings.epochs,
            record["loss"] or float("nan"),
            "-" if liver is None else f"{liver:.3f}",
            "" if tumour is None else f", tumour Dice {tumour:.3f}",
            best["epoch"],
            record["seconds"],
        )
        _atomic_torch_save(
            {
                "format": CHECKPOINT_FORMAT,
                "liverburden_version": __version__,
                "fingerprint": fingerprint,
                "epoch": epoch + 1,
                "model": network.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "best": best,
                "history": history,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                    "generator": generator.get_state(),
                    "transforms": [g.get_state() for g in generators],
                },
            },
            plan.checkpoint,
        )
    if best["state_dict"] is None:  # no epoch ran (e.g. resumed a finished run without history)
        best["state_dict"] = {k: v.detach().cpu().clone() for k, v in network.state_dict().items()}
    return {
        "state_dict": best["state_dict"],
        "parameters": count_parameters(network),
        "validation": {
            "best_epoch": best["epoch"],
            "liver_dice": best["validation"].get("liver_dice"),
            "tumour_dice": best["validation"].get("tumour_dice"),
            "cases": best["validation"].get("cases", {}),
            "validated_on_training_case": bool(
                set(plan.validation_cases) & set(plan.training_cases)
            ),
        },
        "training": {
            "training_cases": plan.training_cases,
            "validation_cases": plan.validation_cases,
            "epochs": settings.epochs,
            "iterations_per_epoch": settings.iterations_per_epoch,
            "batch_size": settings.batch_size,
            "samples_per_case": settings.samples_per_case,
            "patch_size": list(plan.patch_size),
            "learning_rate": settings.learning_rate,
            "weight_decay": settings.weight_decay,
            "optimizer": "AdamW, polynomial decay (power 0.9), gradient norm clipped at 12",
            "loss": "DiceCELoss (softmax, without background, batch Dice)",
            "augmentation": settings.augmentation,
            "seed": settings.seed,
            "device": str(device),
            "mixed_precision": use_amp,
            "seconds_this_run": round(time.perf_counter() - started, 1),
            "history": history,
            "datasets": plan.manifest.get("datasets", []),
        },
    }


# ------------------------------------------------------------------ bundle


def _rounded(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def model_card(metadata: Mapping[str, Any], inference: Any) -> str:
    """The bundle's ``README.md`` from its metadata and settings."""
    lines = [
        f"# {metadata.get('name')} {metadata.get('version')}",
        "",
        str(metadata.get("description", "")),
        "",
        "## Intended use",
        "",
        str(metadata.get("intended_use", "")),
        "",
        "## Labels",
        "",
        "0 background, 1 liver parenchyma, 2 tumour.",
        "",
        "## Stages",
        "",
    ]
    for stage in inference.stages:
        info = metadata.get("stages", {}).get(stage.name, {})
        arguments = ", ".join(f"{k}={v}" for k, v in stage.network.items() if k != "_target_")
        network = f"- network: `{stage.network.get('_target_')}` ({arguments})"
        if isinstance(info.get("parameters"), int):
            network += f"; {info['parameters']:,} parameters"
        spacing = " x ".join(f"{s:g}" for s in stage.spacing_mm)
        low, high = stage.hu_window
        region = "whole scan"
        if stage.crop is not None:
            region = f"box of stage {stage.crop.from_stage} + {stage.crop.margin_mm:g} mm"
        window = "x".join(map(str, stage.roi_size))
        flips = [list(f) for f in stage.tta_flips] or "none"
        lines += [
            f"### {stage.name}",
            "",
            network,
            f"- classes: {', '.join(stage.classes)}",
            f"- spacing: {spacing} mm (RAS-oriented x, y, z); HU window {low:g} to {high:g}",
            f"- region: {region}",
            f"- sliding window up to {window} voxels, overlap {stage.overlap:g}, Gaussian "
            f"blending; test-time flips {flips}",
        ]
        validation = info.get("validation") or {}
        training = info.get("training") or {}
        if validation:
            held_out = len(training.get("validation_cases", []))
            itself = (
                ", the training case itself" if validation.get("validated_on_training_case") else ""
            )
            lines.append(
                f"- validation (best epoch {validation.get('best_epoch')}, {held_out} held-out "
                f"case(s){itself}): liver Dice {_rounded(validation.get('liver_dice'))}, "
                f"tumour Dice {_rounded(validation.get('tumour_dice'))}"
            )
        if training:
            patch = "x".join(map(str, training.get("patch_size", [])))
            lines.append(
                f"- trained {training.get('epochs')} epochs x "
                f"{training.get('iterations_per_epoch')} iterations, batch "
                f"{training.get('batch_size')} x "
                f"{training.get('samples_per_case')} patches of {patch}, "
                f"{training.get('device')}, seed {training.get('seed')}"
            )
        lines.append("")
    lines += ["## Training data", ""]
    for item in metadata.get("training_data", []):
        lines.append(
            f"- {item.get('name')}: {item.get('cases')} case(s); licence: {item.get('licence')}"
        )
    lines += ["", "## How it was trained", ""]
    for item in metadata.get("training_commands", []):
        lines += ["```", item, "```"]
    lines += [
        "",
        "## Limitations",
        "",
        "Research software, not a medical device. Check every segmentation. Performance "
        "outside the training data's scanners, phases and diseases is unknown; "
        "`liverburden evaluate` measures it on your own labelled cases.",
        "",
    ]
    return "\n".join(lines)


def write_stage_into_bundle(
    settings: FitSettings, plan: StagePlan, outcome: Mapping[str, Any]
) -> Path:
    """Add or replace ``plan.stage`` in the bundle at ``settings.output``; keep its other stages."""
    from pipeline.segment.bundle import default_metadata, load_bundle, write_bundle
    from pipeline.segment.recipes import STAGE_NAMES, inference_settings, stage_settings

    new_stage = stage_settings(plan.recipe)
    stages = {new_stage.name: new_stage}
    weights: dict[str, Any] = {new_stage.name: outcome["state_dict"]}
    metadata: dict[str, Any]
    existing = None
    if settings.output.exists():
        try:
            existing = load_bundle(settings.output)
        except InputError as error:
            log.warning(
                "replacing %s, which is not a valid bundle (%s)", settings.output, error.message
            )
    if existing is not None:
        metadata = copy.deepcopy(existing.metadata)
        for stage in existing.inference.stages:
            if stage.name != new_stage.name:
                stages[stage.name] = stage
                weights[stage.name] = str(existing.weights_path(stage))
    else:
        metadata = default_metadata(settings.bundle_name, settings.bundle_version)
    order = sorted(
        stages, key=lambda n: (STAGE_NAMES.index(n) if n in STAGE_NAMES else len(STAGE_NAMES), n)
    )
    # restore the default crop of a lesion stage when its liver stage is present
    ordered = []
    for name in order:
        stage = stages[name]
        if name == "lesion" and stage.crop is None and "liver" in stages:
            from pipeline.segment.bundle import CropSettings
            from pipeline.segment.recipes import DEFAULT_STAGES

            crop = DEFAULT_STAGES["lesion"]["crop"]
            stage = dataclasses.replace(
                stage, crop=CropSettings(crop["from_stage"], float(crop["margin_mm"]))
            )
        ordered.append(stage)
    inference = inference_settings(ordered)
    if existing is not None:
        inference = dataclasses.replace(
            inference,
            postprocessing=existing.inference.postprocessing,
            quality=existing.inference.quality,
            fast=existing.inference.fast,
        )
    metadata["name"] = settings.bundle_name
    metadata["version"] = settings.bundle_version
    metadata["liverburden_version"] = __version__
    changelog = dict(metadata.get("changelog") or {})
    changelog[settings.bundle_version] = (
        f"stage(s) {', '.join(s.name for s in ordered)} trained with liverburden train"
    )
    metadata["changelog"] = changelog
    stage_info = dict(metadata.get("stages") or {})
    stage_info[new_stage.name] = {
        "spacing_mm": list(new_stage.spacing_mm),
        "hu_window": list(new_stage.hu_window),
        "network": new_stage.network,
        "parameters": outcome["parameters"],
        "validation": outcome["validation"],
        "training": {k: v for k, v in outcome["training"].items() if k != "history"},
        "history": outcome["training"]["history"],
    }
    metadata["stages"] = {k: v for k, v in stage_info.items() if k in stages}
    datasets: dict[str, dict[str, Any]] = {}
    for name, info in metadata["stages"].items():
        for item in info.get("training", {}).get("datasets", []):
            entry = datasets.setdefault(
                item["name"],
                {"name": item["name"], "licence": item.get("licence"), "cases": 0, "stages": []},
            )
            entry["cases"] = max(entry["cases"], int(item.get("cases", 0)))
            entry["stages"].append(name)
    metadata["training_data"] = list(datasets.values())
    metrics = dict(metadata.get("metrics") or {})
    validation = dict(metrics.get("validation") or {})
    validation[new_stage.name] = {k: v for k, v in outcome["validation"].items() if k != "cases"}
    metrics["validation"] = {k: v for k, v in validation.items() if k in stages}
    metrics.setdefault("evaluation", None)
    metadata["metrics"] = metrics
    commands = list(metadata.get("training_commands") or [])
    if settings.command_line and settings.command_line not in commands:
        commands.append(settings.command_line)
    metadata["training_commands"] = commands
    metadata["network_data_format"] = {
        "inputs": {
            "image": {
                "type": "image",
                "format": "hounsfield",
                "num_channels": 1,
                "spatial_shape": "any",
                "dtype": "float32",
            }
        },
        "outputs": {
            "pred": {
                "type": "image",
                "format": "segmentation",
                "num_channels": 3,
                "dtype": "uint8",
                "channel_def": {"0": "background", "1": "liver", "2": "tumour"},
            }
        },
    }
    return write_bundle(
        settings.output, inference, metadata, weights, model_card(metadata, inference)
    )


def fit(settings: FitSettings) -> Path:
    """Train the requested stages in order and write each into the bundle."""
    plans = [
        plan_stage(settings, stage) for stage in settings.stages
    ]  # check every cache before training
    for plan in plans:
        outcome = train_stage(settings, plan)
        write_stage_into_bundle(settings, plan, outcome)
        log.info(
            "%s: wrote stage into %s (best epoch %d, validation liver Dice %s, tumour Dice %s)",
            plan.stage,
            settings.output,
            outcome["validation"]["best_epoch"],
            outcome["validation"]["liver_dice"],
            outcome["validation"]["tumour_dice"],
        )
    return settings.output


# --------------------------------------------------------------- arguments


def _stages(value: str) -> tuple[str, ...]:
    if value == "both":
        return ("liver", "lesion")
    if value in ("liver", "lesion"):
        return (value,)
    raise InputError("--stage", f"unknown stage {value!r}", "liver, lesion or both")


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the training loop (``liverburden train fit``/``all`` and ``python -m``)."""
    d = FitSettings(cache=Path("."), output=Path("."))
    parser.add_argument(
        "--output",
        "-o",
        metavar="BUNDLE",
        required=True,
        help="bundle folder to write (a stage trained into an existing bundle replaces "
        "only that stage)",
    )
    parser.add_argument("--stage", default="both", help="liver, lesion or both (default: both)")
    parser.add_argument("--epochs", type=int, default=d.epochs, help=f"epochs (default {d.epochs})")
    parser.add_argument(
        "--iterations-per-epoch",
        type=int,
        default=d.iterations_per_epoch,
        help=f"batches per epoch (default {d.iterations_per_epoch})",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help=f"cases per batch (default {d.batch_size})",
    )
    parser.add_argument(
        "--samples-per-case",
        type=int,
        default=d.samples_per_case,
        help=f"random patches per case in a batch (default {d.samples_per_case})",
    )
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=d.learning_rate,
        help=f"AdamW learning rate (default {d.learning_rate:g})",
    )
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=d.weight_decay,
        help=f"AdamW weight decay (default {d.weight_decay:g})",
    )
    parser.add_argument(
        "--patch-size",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=None,
        help="training patch in voxels (default: the recipe's)",
    )
    parser.add_argument(
        "--roi-size",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        default=None,
        help="largest inference window in voxels (default: the recipe's)",
    )
    parser.add_argument(
        "--hu-window",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="HU window (default: the recipe's)",
    )
    parser.add_argument(
        "--network",
        metavar="JSON",
        default=None,
        help="network arguments merged into the recipe's "
        '(e.g. \'{"channels": [4, 8, 16], "strides": [2, 2]}\'), or a whole config with _target_',
    )
    parser.add_argument(
        "--tta-flips",
        metavar="JSON",
        default=None,
        help="test-time flips written into the bundle, e.g. '[[0]]' or '[]'",
    )
    parser.add_argument(
        "--validation-fraction",
        type=float,
        default=d.validation_fraction,
        help=f"held-out fraction of cases (default {d.validation_fraction:g})",
    )
    parser.add_argument(
        "--validation-cases",
        nargs="+",
        default=(),
        metavar="CASE",
        help="held-out case ids instead of a random fraction",
    )
    parser.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    parser.add_argument(
        "--device", default=d.device, help="auto, cpu, cuda or cuda:N (default auto)"
    )
    parser.add_argument(
        "--no-amp", action="store_true", help="no automatic mixed precision on CUDA"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help="data-loading worker processes (default 0: in the main process)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from the stage's checkpoint"
    )
    parser.add_argument(
        "--initial-weights",
        metavar="BUNDLE",
        type=Path,
        default=None,
        help="start each stage from its weights in this bundle (fine-tuning) instead of "
        "random weights",
    )
    parser.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        default=None,
        help="checkpoint folder (default: <cache>/<stage>/checkpoints)",
    )
    parser.add_argument(
        "--augmentation",
        choices=("full", "light", "none"),
        default=d.augmentation,
        help="full (default), light (flips and intensity only) or none",
    )
    parser.add_argument(
        "--bundle-name", default=d.bundle_name, help=f"bundle name (default {d.bundle_name})"
    )
    parser.add_argument(
        "--bundle-version",
        default=d.bundle_version,
        help=f"bundle version (default {d.bundle_version})",
    )


def _json_option(value: str | None, option: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InputError(option, f"not valid JSON ({exc})") from None


def settings_from_arguments(
    args: argparse.Namespace, cache: Path, command_line: str = ""
) -> FitSettings:
    """:class:`FitSettings` from parsed options, checked."""
    network = _json_option(args.network, "--network")
    if network is not None and not isinstance(network, dict):
        raise InputError("--network", "must be a JSON object")
    flips = _json_option(args.tta_flips, "--tta-flips")
    if flips is not None and not (
        isinstance(flips, list) and all(isinstance(f, list) for f in flips)
    ):
        raise InputError("--tta-flips", "must be a JSON list of axis lists, e.g. [[0]]")
    for name in ("epochs", "iterations_per_epoch", "batch_size", "samples_per_case"):
        if getattr(args, name) < 1:
            raise InputError(
                "--" + name.replace("_", "-"),
                f"must be at least 1, not {getattr(args, name)}",
                "a whole number >= 1",
            )
    if args.workers < 0:
        raise InputError("--workers", f"must not be negative, not {args.workers}", "0 or more")
    if not math.isfinite(args.learning_rate) or not args.learning_rate > 0:
        raise InputError("--learning-rate", f"is {args.learning_rate!r}", "a finite number > 0")
    if not math.isfinite(args.weight_decay) or args.weight_decay < 0:
        raise InputError("--weight-decay", f"is {args.weight_decay!r}", "a finite number >= 0")
    if not (math.isfinite(args.validation_fraction) and 0 <= args.validation_fraction < 1):
        raise InputError(
            "--validation-fraction", f"is {args.validation_fraction!r}", "a fraction in [0, 1)"
        )
    if args.hu_window is not None and not (
        all(math.isfinite(v) for v in args.hu_window) and args.hu_window[0] < args.hu_window[1]
    ):
        raise InputError(
            "--hu-window",
            f"is {list(args.hu_window)!r}",
            "LOW HIGH: two finite values in HU, LOW below HIGH",
        )
    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise InputError(output, "output exists and is not a folder", "a bundle folder")
    return FitSettings(
        cache=cache,
        output=output,
        stages=_stages(args.stage),
        epochs=args.epochs,
        iterations_per_epoch=args.iterations_per_epoch,
        batch_size=args.batch_size,
        samples_per_case=args.samples_per_case,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        patch_size=tuple(args.patch_size) if args.patch_size else None,
        roi_size=tuple(args.roi_size) if args.roi_size else None,
        hu_window=tuple(args.hu_window) if args.hu_window else None,
        network=network,
        tta_flips=flips,
        validation_fraction=args.validation_fraction,
        validation_cases=tuple(args.validation_cases),
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
        workers=args.workers,
        resume=args.resume,
        initial_weights=args.initial_weights,
        checkpoint_dir=Path(args.checkpoint_dir) if args.checkpoint_dir else None,
        augmentation=args.augmentation,
        bundle_name=args.bundle_name,
        bundle_version=args.bundle_version,
        command_line=command_line,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pipeline.segment.train_fit``: the training loop without the rest of the CLI."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.segment.train_fit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cache", metavar="DIR", required=True, help="cache made by 'liverburden train prepare'"
    )
    add_fit_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of any error")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("train fit: %(levelname)s: %(message)s"))
    logging.getLogger("pipeline").handlers[:] = [handler]
    logging.getLogger("pipeline").setLevel(logging.INFO)
    try:
        settings = settings_from_arguments(
            args, Path(args.cache), "python -m pipeline.segment.train_fit " + shlex.join(argv)
        )
        fit(settings)
    except InputError as error:
        if args.debug:
            raise
        print(f"train fit: error: {error.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
