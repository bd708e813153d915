"""Model bundles: a folder in MONAI bundle layout holding a liver-and-tumour model.

Layout (``models/<name>/``)::

    configs/metadata.json    version, changelog, labels, training data and licences,
                             measured metrics (MONAI bundle metadata plus our fields)
    configs/inference.json   the stages (network ``_target_`` + arguments, spacing,
                             HU window, sliding-window settings, crop, test-time flips),
                             post-processing switches, quality thresholds
    models/<stage>.pt        weights of each stage (a PyTorch state dict)
    README.md                the model card

A bundle has one or more stages run in order. A stage with ``crop`` runs only
inside the bounding box (plus a margin in mm) of the foreground found by an
earlier stage: the usual cascade is a ``liver`` stage on a coarse grid over the
whole scan and a ``lesion`` stage (liver and tumour) at finer spacing inside
the liver's box. The last stage's classes make the output label map.

This module needs only the standard library, numpy, torch and monai (no
SimpleITK, no :mod:`pipeline.io`): the training loop, which runs where only
torch and monai exist, writes bundles with it.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline import SCHEMA_VERSION, __version__
from pipeline.errors import InputError

#: Name of the bundle used when ``--model`` is not given (``models/<name>`` in the repository).
DEFAULT_BUNDLE_NAME = "liverburden-ct"
#: Environment variable that overrides the default bundle folder.
MODEL_ENVIRONMENT_VARIABLE = "LIVERBURDEN_MODEL"
#: Output label value of each class name a stage may predict.
LABEL_VALUES: dict[str, int] = {"background": 0, "liver": 1, "tumour": 2}
LABEL_NAMES: dict[int, str] = {value: name for name, value in LABEL_VALUES.items()}
BUNDLE_FORMAT = "liverburden-bundle/1"
METADATA_FILE = "configs/metadata.json"
INFERENCE_FILE = "configs/inference.json"

#: Keys a ``fast`` section may override in a stage.
FAST_KEYS = ("tta_flips", "overlap", "spacing_mm", "roi_size", "sw_batch_size")


# ----------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class CropSettings:
    """Where a stage runs: inside the foreground box of an earlier stage.

    Attributes
    ----------
    from_stage
        Name of the earlier stage whose foreground (any class but background)
        gives the box.
    margin_mm
        Margin added on every side of the box, in mm.
    """

    from_stage: str
    margin_mm: float


@dataclasses.dataclass(frozen=True)
class StageSettings:
    """One network of the cascade and how it sees the image.

    Attributes
    ----------
    name
        Stage name (``liver``, ``lesion`` or any other), also the weights' file stem.
    network
        MONAI config of the network (``_target_`` plus arguments).
    weights
        Weights file, relative to the bundle folder.
    classes
        Class name of each output channel: ``background``, ``liver`` (liver
        including tumour when no ``tumour`` class follows) or ``tumour``.
    spacing_mm
        Voxel spacing ``(x, y, z)`` in mm of the grid the network sees (axes of
        the RAS-oriented image: right-left, anterior-posterior, inferior-superior).
    hu_window
        ``(low, high)`` HU mapped linearly to 0..1 and clipped.
    roi_size
        Largest sliding window ``(x, y, z)`` in voxels; smaller images are
        processed in one window padded to ``size_divisible``.
    overlap
        Fraction of overlap between sliding windows (Gaussian blending).
    sw_batch_size
        Windows per network call.
    size_divisible
        Window sizes are multiples of this (``2 ** number of downsamplings``).
    antialias
        Average blocks of voxels before resampling to a spacing at least twice
        the image's (:class:`pipeline.segment.transforms.BlockAverage`): less
        aliased noise, and far less data to reorient on the coarse grid.
    tta_flips
        Test-time augmentation: each entry is a list of axes (0 x, 1 y, 2 z of
        the RAS-oriented image) flipped before and after the network; the
        softmax outputs of the plain and each flipped pass are averaged.
    crop
        Run only inside the foreground box of an earlier stage, or ``None`` for
        the whole image.
    """

    name: str
    network: dict[str, Any]
    weights: str
    classes: tuple[str, ...]
    spacing_mm: tuple[float, float, float]
    hu_window: tuple[float, float]
    roi_size: tuple[int, int, int]
    overlap: float = 0.25
    sw_batch_size: int = 1
    size_divisible: int = 16
    antialias: bool = False
    tta_flips: tuple[tuple[int, ...], ...] = ()
    crop: CropSettings | None = None

    @property
    def label_values(self) -> tuple[int, ...]:
        """Output label value of each channel."""
        return tuple(LABEL_VALUES[name] for name in self.classes)

    @property
    def has_tumour(self) -> bool:
        return "tumour" in self.classes

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["classes"] = list(self.classes)
        data["spacing_mm"] = list(self.spacing_mm)
        data["hu_window"] = list(self.hu_window)
        data["roi_size"] = list(self.roi_size)
        data["tta_flips"] = [list(f) for f in self.tta_flips]
        data["crop"] = None if self.crop is None else dataclasses.asdict(self.crop)
        return data


@dataclasses.dataclass(frozen=True)
class PostprocessingSettings:
    """Switches of the label-map clean-up after the last stage (each a bundle setting).

    Attributes
    ----------
    largest_liver_component
        Keep only the largest connected component of liver plus tumour.
    tumour_inside_liver
        Drop tumour components that touch no liver parenchyma.
    fill_holes
        Fill enclosed holes of the liver (as liver) and of tumours (as tumour).
    min_tumour_volume_mm3
        Tumour components smaller than this (mm3) become liver parenchyma
        (0 keeps all).
    """

    largest_liver_component: bool = True
    tumour_inside_liver: bool = True
    fill_holes: bool = True
    min_tumour_volume_mm3: float = 0.0


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the flags that tell a reader to check a segmentation.

    Attributes
    ----------
    min_mean_liver_probability
        ``low_liver_confidence`` when the mean liver probability inside the
        predicted liver is below this.
    max_uncertain_liver_fraction
        ``low_liver_confidence`` when more than this fraction of predicted liver
        voxels has a liver probability below 0.5 (post-processing added them).
    liver_volume_ml
        ``implausible_liver_volume`` outside this range (mL).
    """

    min_mean_liver_probability: float = 0.85
    max_uncertain_liver_fraction: float = 0.10
    liver_volume_ml: tuple[float, float] = (600.0, 4500.0)


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """Contents of ``configs/inference.json``."""

    stages: tuple[StageSettings, ...]
    postprocessing: PostprocessingSettings
    quality: QualitySettings
    fast: dict[str, Any]

    @property
    def final_stage(self) -> StageSettings:
        return self.stages[-1]

    def stage(self, name: str) -> StageSettings:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def for_fast_mode(self) -> InferenceSettings:
        """Settings with the ``fast`` overrides applied to every stage.

        ``fast`` holds overrides for all stages (keys of :data:`FAST_KEYS`) and
        optionally, under a stage's name, overrides for that stage alone.
        """
        common = {k: v for k, v in self.fast.items() if k in FAST_KEYS}
        stages = []
        for stage in self.stages:
            changes = dict(common)
            changes.update(self.fast.get(stage.name, {}) or {})
            stages.append(_apply_stage_changes(stage, changes, "fast"))
        return dataclasses.replace(self, stages=tuple(stages))

    def to_json(self) -> dict[str, Any]:
        postprocessing = dataclasses.asdict(self.postprocessing)
        quality = dataclasses.asdict(self.quality)
        quality["liver_volume_ml"] = list(self.quality.liver_volume_ml)
        return {
            "schema_version": SCHEMA_VERSION,
            "bundle_format": BUNDLE_FORMAT,
            "labels": {str(v): n for v, n in LABEL_NAMES.items()},
            "stages": [s.to_json() for s in self.stages],
            "fast": copy.deepcopy(self.fast),
            "postprocessing": postprocessing,
            "quality": quality,
        }


@dataclasses.dataclass(frozen=True)
class ModelBundle:
    """A checked bundle folder: its settings, metadata and weights' checksums."""

    path: Path
    name: str
    version: str
    metadata: dict[str, Any]
    inference: InferenceSettings
    weights_sha256: dict[str, str]

    def weights_path(self, stage: StageSettings) -> Path:
        return self.path / stage.weights


# ------------------------------------------------------------------ validation


def _fail(source: Path | str, problem: str, expected: str | None = None) -> InputError:
    return InputError(source, problem, expected)


def _number(value: Any, source: Path, key: str, *, positive: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(float(value))
    ):
        raise _fail(source, f"{key} must be a number, not {value!r}")
    if positive and value <= 0:
        raise _fail(source, f"{key} must be positive, not {value!r}")
    return float(value)


def _triple(value: Any, source: Path, key: str, kind: type) -> tuple:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = [value] * 3
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise _fail(source, f"{key} must be a list of 3 numbers (x, y, z), not {value!r}")
    numbers = [_number(v, source, key, positive=True) for v in value]
    if kind is int:
        if any(n != int(n) for n in numbers):
            raise _fail(source, f"{key} must hold whole numbers, not {value!r}")
        return tuple(int(n) for n in numbers)
    return tuple(numbers)


def _apply_stage_changes(
    stage: StageSettings, changes: Mapping[str, Any], source: Any
) -> StageSettings:
    unknown = sorted(set(changes) - set(FAST_KEYS))
    if unknown:
        raise _fail(
            source, f"unknown fast-mode setting(s) {', '.join(unknown)}", ", ".join(FAST_KEYS)
        )
    merged = stage.to_json()
    merged.update(changes)
    return _parse_stage(merged, Path(str(source)), index=0)


def _check_network(network: Any, source: Path, key: str) -> dict[str, Any]:
    if not isinstance(network, dict) or not isinstance(network.get("_target_"), str):
        raise _fail(
            source,
            f"{key} must be a MONAI config with a _target_",
            '{"_target_": "monai.networks.nets.UNet", ...}',
        )

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith(("$", "@", "%")):
            raise _fail(
                source,
                f"{key} holds the expression {value!r}",
                "plain values only (no $, @ or % references)",
            )
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk({k: v for k, v in network.items() if k != "_target_"})
    return copy.deepcopy(network)


def _settings_mapping(data: Any, source: Path, where: str, known: set[str]) -> dict[str, Any]:
    """``data`` as a mapping whose keys are all in ``known``; else a clear error."""
    if not isinstance(data, dict):
        raise _fail(source, f"{where} must be a mapping")
    unknown = sorted(set(data) - known)
    if unknown:
        raise _fail(
            source, f"{where} has unknown setting(s) {', '.join(unknown)}", ", ".join(sorted(known))
        )
    return data


def _parse_stage(data: Any, source: Path, index: int) -> StageSettings:
    where = f"stage {index + 1}"
    if not isinstance(data, dict):
        raise _fail(source, f"{where} must be a mapping")
    required = ("name", "network", "weights", "classes", "spacing_mm", "hu_window", "roi_size")
    missing = [k for k in required if k not in data]
    if missing:
        raise _fail(source, f"{where} lacks {', '.join(missing)}")
    _settings_mapping(data, source, where, {f.name for f in dataclasses.fields(StageSettings)})
    name = data["name"]
    if (
        not isinstance(name, str)
        or not name
        or not name.replace("_", "").replace("-", "").isalnum()
    ):
        raise _fail(source, f"{where} has an invalid name {name!r}", "letters, digits, - and _")
    where = f"stage {name!r}"
    classes = data["classes"]
    if (
        not isinstance(classes, list | tuple)
        or len(classes) < 2
        or classes[0] != "background"
        or any(c not in LABEL_VALUES for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise _fail(
            source,
            f"{where}: classes {classes!r} are not valid",
            '["background", "liver"] or ["background", "liver", "tumour"]',
        )
    hu_window = data["hu_window"]
    if not isinstance(hu_window, list | tuple) or len(hu_window) != 2:
        raise _fail(source, f"{where}: hu_window must be [low, high] in HU")
    low, high = (_number(v, source, f"{where}: hu_window") for v in hu_window)
    if not low < high:
        raise _fail(source, f"{where}: hu_window low {low:g} is not below high {high:g}")
    overlap = _number(data.get("overlap", 0.25), source, f"{where}: overlap")
    if not 0 <= overlap < 1:
        raise _fail(source, f"{where}: overlap {overlap:g} is not in [0, 1)")
    sw_batch_size = _number(
        data.get("sw_batch_size", 1), source, f"{where}: sw_batch_size", positive=True
    )
    size_divisible = _number(
        data.get("size_divisible", 16), source, f"{where}: size_divisible", positive=True
    )
    flips = data.get("tta_flips", []) or []
    if not isinstance(flips, list | tuple) or not all(
        isinstance(f, list | tuple) and f and all(isinstance(a, int) and 0 <= a <= 2 for a in f)
        for f in flips
    ):
        raise _fail(
            source,
            f"{where}: tta_flips {flips!r} is not a list of axis lists",
            "for example [[0], [1]]",
        )
    antialias = data.get("antialias", False)
    if not isinstance(antialias, bool):
        raise _fail(source, f"{where}: antialias must be true or false, not {antialias!r}")
    crop = data.get("crop")
    crop_settings = None
    if crop is not None:
        if not isinstance(crop, dict) or not isinstance(crop.get("from_stage"), str):
            raise _fail(source, f"{where}: crop must be {{from_stage, margin_mm}}")
        crop_settings = CropSettings(
            from_stage=crop["from_stage"],
            margin_mm=_number(crop.get("margin_mm", 0.0), source, f"{where}: crop margin_mm"),
        )
    weights = data["weights"]
    if not isinstance(weights, str) or Path(weights).is_absolute() or ".." in Path(weights).parts:
        raise _fail(source, f"{where}: weights must be a path inside the bundle, not {weights!r}")
    roi_size = _triple(data["roi_size"], source, f"{where}: roi_size", int)
    if any(r % int(size_divisible) for r in roi_size):
        raise _fail(
            source,
            f"{where}: roi_size {list(roi_size)} is not a multiple of size_divisible "
            f"{int(size_divisible)}",
        )
    return StageSettings(
        name=name,
        network=_check_network(data["network"], source, f"{where}: network"),
        weights=weights,
        classes=tuple(classes),
        spacing_mm=_triple(data["spacing_mm"], source, f"{where}: spacing_mm", float),
        hu_window=(low, high),
        roi_size=roi_size,
        overlap=overlap,
        sw_batch_size=int(sw_batch_size),
        size_divisible=int(size_divisible),
        antialias=antialias,
        tta_flips=tuple(tuple(int(a) for a in f) for f in flips),
        crop=crop_settings,
    )


def parse_inference_settings(data: Any, source: Path | str = INFERENCE_FILE) -> InferenceSettings:
    """Check and parse the contents of ``configs/inference.json``.

    Raises
    ------
    InputError
        For any missing, unknown or invalid setting, naming it.
    """
    source = Path(source)
    if not isinstance(data, dict):
        raise _fail(source, "must hold a JSON object")
    stages_data = data.get("stages")
    if not isinstance(stages_data, list) or not stages_data:
        raise _fail(source, "has no stages", 'a list "stages" with at least one network')
    stages = tuple(_parse_stage(s, source, i) for i, s in enumerate(stages_data))
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise _fail(source, f"stage names repeat: {names}")
    for i, stage in enumerate(stages):
        if stage.crop is not None and stage.crop.from_stage not in names[:i]:
            raise _fail(
                source,
                f"stage {stage.name!r} crops to stage {stage.crop.from_stage!r}, "
                "which does not run before it",
                "the name of an earlier stage",
            )
    fast = data.get("fast", {}) or {}
    if not isinstance(fast, dict):
        raise _fail(source, "fast must be a mapping of stage settings")
    for key, value in fast.items():
        if key in FAST_KEYS:
            continue
        if key in names and isinstance(value, dict):
            unknown = sorted(set(value) - set(FAST_KEYS))
            if unknown:
                raise _fail(
                    source,
                    f"fast.{key} has unknown setting(s) {', '.join(unknown)}",
                    ", ".join(FAST_KEYS),
                )
            continue
        raise _fail(
            source,
            f"fast has an unknown setting {key!r}",
            ", ".join(FAST_KEYS) + " or a stage name",
        )
    post_fields = {f.name for f in dataclasses.fields(PostprocessingSettings)}
    post = _settings_mapping(
        data.get("postprocessing", {}) or {}, source, "postprocessing", post_fields
    )
    for key in post_fields - {"min_tumour_volume_mm3"}:
        if key in post and not isinstance(post[key], bool):
            raise _fail(source, f"postprocessing.{key} must be true or false, not {post[key]!r}")
    min_volume = _number(
        post.get("min_tumour_volume_mm3", 0.0), source, "postprocessing.min_tumour_volume_mm3"
    )
    if min_volume < 0:
        raise _fail(source, "postprocessing.min_tumour_volume_mm3 must not be negative")
    postprocessing = PostprocessingSettings(
        **{k: post[k] for k in post_fields - {"min_tumour_volume_mm3"} if k in post},
        min_tumour_volume_mm3=min_volume,
    )
    quality_fields = {f.name for f in dataclasses.fields(QualitySettings)}
    quality_data = _settings_mapping(
        data.get("quality", {}) or {}, source, "quality", quality_fields
    )
    defaults = QualitySettings()
    volume_range = quality_data.get("liver_volume_ml", list(defaults.liver_volume_ml))
    if not isinstance(volume_range, list | tuple) or len(volume_range) != 2:
        raise _fail(source, "quality.liver_volume_ml must be [low, high] in mL")
    quality = QualitySettings(
        min_mean_liver_probability=_number(
            quality_data.get("min_mean_liver_probability", defaults.min_mean_liver_probability),
            source,
            "quality.min_mean_liver_probability",
        ),
        max_uncertain_liver_fraction=_number(
            quality_data.get("max_uncertain_liver_fraction", defaults.max_uncertain_liver_fraction),
            source,
            "quality.max_uncertain_liver_fraction",
        ),
        liver_volume_ml=tuple(_number(v, source, "quality.liver_volume_ml") for v in volume_range),  # type: ignore[arg-type]
    )
    settings = InferenceSettings(
        stages=stages, postprocessing=postprocessing, quality=quality, fast=dict(fast)
    )
    settings.for_fast_mode()  # the fast overrides must make valid stages too
    return settings


# ---------------------------------------------------------------------- files


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise _fail(
            path,
            f"{what} not found",
            "a MONAI bundle folder with configs/metadata.json and configs/inference.json",
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid JSON ({' '.join(str(exc).split())})") from None


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def repository_root() -> Path:
    """The folder holding the ``pipeline`` package (the repository of an editable install)."""
    return Path(__file__).resolve().parents[2]


def default_bundle_dir() -> Path:
    """The bundle used without ``--model``: ``$LIVERBURDEN_MODEL``, else
    ``models/liverburden-ct`` in the repository."""
    override = os.environ.get(MODEL_ENVIRONMENT_VARIABLE)
    if override:
        return Path(override)
    return repository_root() / "models" / DEFAULT_BUNDLE_NAME


def load_bundle(path: str | os.PathLike[str] | None = None) -> ModelBundle:
    """Read and check a bundle folder (configs and weight files; not yet the weights' contents).

    Parameters
    ----------
    path
        Bundle folder; ``None`` for :func:`default_bundle_dir`.

    Raises
    ------
    InputError
        For a missing folder, missing or malformed configs and missing weights.
    """
    default = path is None
    folder = Path(default_bundle_dir() if path is None else path)
    if not folder.exists():
        if default:
            raise _fail(
                folder,
                "the default model bundle is not installed",
                f"a bundle folder given with --model DIR (or in ${MODEL_ENVIRONMENT_VARIABLE}); "
                "train one with 'liverburden train'",
            )
        raise _fail(folder, "model bundle folder not found", "a MONAI bundle folder")
    if not folder.is_dir():
        raise _fail(folder, "is a file, not a model bundle folder", "a MONAI bundle folder")
    metadata = _read_json(folder / METADATA_FILE, "bundle metadata")
    if not isinstance(metadata, dict):
        raise _fail(folder / METADATA_FILE, "must hold a JSON object")
    inference = parse_inference_settings(
        _read_json(folder / INFERENCE_FILE, "bundle inference config"), folder / INFERENCE_FILE
    )
    checksums: dict[str, str] = {}
    for stage in inference.stages:
        weights = folder / stage.weights
        if not weights.is_file():
            raise _fail(
                weights,
                f"weights of stage {stage.name!r} not found",
                f"the file named in {INFERENCE_FILE}",
            )
        if weights.stat().st_size == 0:
            raise _fail(weights, f"weights of stage {stage.name!r} are empty")
        checksums[stage.name] = sha256_file(weights)
    name = str(metadata.get("name") or folder.name)
    version = str(metadata.get("version") or "unversioned")
    return ModelBundle(
        path=folder,
        name=name,
        version=version,
        metadata=metadata,
        inference=inference,
        weights_sha256=checksums,
    )


# -------------------------------------------------------------------- networks


def build_network(stage: StageSettings, source: Path | str = INFERENCE_FILE) -> Any:
    """Instantiate a stage's network from its MONAI config (``_target_`` syntax).

    Raises
    ------
    InputError
        When the target is unknown, its arguments are wrong, or it is not a
        ``torch.nn.Module`` with the stage's number of output channels.
    """
    import torch
    from monai.bundle import ConfigParser

    config = copy.deepcopy(stage.network)
    target = config.get("_target_")
    try:
        network = ConfigParser({"network": config}).get_parsed_content("network", instantiate=True)
    except Exception as exc:
        text = " ".join(str(exc).split())
        if "Cannot locate class or function path" in text or "locate" in text.lower():
            raise _fail(
                source,
                f"stage {stage.name!r}: unknown network _target_ {target!r}",
                "a class importable in this environment, e.g. monai.networks.nets.UNet",
            ) from None
        raise _fail(
            source, f"stage {stage.name!r}: cannot build the network {target!r} ({text[:300]})"
        ) from None
    if not isinstance(network, torch.nn.Module):
        raise _fail(
            source, f"stage {stage.name!r}: _target_ {target!r} is not a network (torch.nn.Module)"
        )
    out_channels = config.get("out_channels")
    if out_channels is not None and out_channels != len(stage.classes):
        raise _fail(
            source,
            f"stage {stage.name!r}: network has {out_channels} output channels but "
            f"{len(stage.classes)} classes are named",
        )
    return network


def load_weights(network: Any, path: Path, stage_name: str) -> None:
    """Load a state dict (or ``{"state_dict": ...}``) into ``network``, strictly.

    Raises
    ------
    InputError
        For an unreadable or corrupt file and for weights that do not fit the network.
    """
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = " ".join(str(exc).split())[:200]
        raise _fail(
            path,
            f"cannot read the weights of stage {stage_name!r} "
            f"(corrupt or not a PyTorch file: {text})",
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise _fail(path, f"weights of stage {stage_name!r} are not a state dict of tensors")
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise _fail(
            path,
            f"weights do not match the network of stage {stage_name!r} ({first[:200]})",
            "weights trained for the network in configs/inference.json",
        ) from None


def count_parameters(network: Any) -> int:
    return int(sum(p.numel() for p in network.parameters()))


# --------------------------------------------------------------------- writing


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def default_metadata(name: str, version: str) -> dict[str, Any]:
    """A metadata skeleton (MONAI bundle fields plus ours) for a new bundle."""
    import monai
    import numpy
    import torch

    return {
        "schema_version": SCHEMA_VERSION,
        "liverburden_version": __version__,
        "name": name,
        "version": version,
        "changelog": {version: "trained with liverburden train"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": numpy.__version__,
        "required_packages_version": {},
        "task": "Liver and liver tumour segmentation in contrast-enhanced abdominal CT",
        "description": (
            "Cascade of MONAI networks: liver on a coarse grid, then liver and tumour "
            "inside the liver's box."
        ),
        "authors": "liverburden contributors",
        "copyright": (
            "Apache-2.0 (code); see training_data for the licences of the data the weights "
            "were trained on"
        ),
        "intended_use": (
            "Research use: measuring liver tumour burden (e.g. neuroendocrine liver "
            "metastases) in portal-venous "
            "CT. Not a medical device; every segmentation must be checked by a radiologist."
        ),
        "data_type": "nibabel or DICOM via SimpleITK",
        "image_classes": "single channel CT in Hounsfield units",
        "label_classes": {str(v): n for v, n in LABEL_NAMES.items()},
        "pred_classes": {str(v): n for v, n in LABEL_NAMES.items()},
        "network_data_format": {},
        "stages": {},
        "training_data": [],
        "metrics": {"validation": {}, "evaluation": None},
        "references": [],
    }


def write_bundle(
    folder: str | os.PathLike[str],
    inference: InferenceSettings,
    metadata: Mapping[str, Any],
    weights: Mapping[str, Any],
    model_card: str,
) -> Path:
    """Write a complete bundle atomically (built in a temporary folder, then swapped in).

    Parameters
    ----------
    folder
        Bundle folder to create or replace.
    inference
        Settings written to ``configs/inference.json``.
    metadata
        Contents of ``configs/metadata.json``.
    weights
        Stage name -> state dict (written to the stage's ``weights`` path) or
        an existing file path to copy.
    model_card
        Text of ``README.md``.
    """
    import torch

    from pipeline.files import output_directory

    folder = Path(folder)
    with output_directory(folder) as temporary:
        (temporary / "configs").mkdir()
        for stage in inference.stages:
            if stage.name not in weights:
                raise ValueError(f"no weights for stage {stage.name!r}")
            target = temporary / stage.weights
            target.parent.mkdir(parents=True, exist_ok=True)
            item = weights[stage.name]
            if isinstance(item, str | os.PathLike):
                shutil.copyfile(item, target)
            else:
                torch.save(dict(item), target)
        (temporary / INFERENCE_FILE).write_text(_dumps(inference.to_json()), encoding="utf-8")
        (temporary / METADATA_FILE).write_text(_dumps(dict(metadata)), encoding="utf-8")
        (temporary / "README.md").write_text(model_card, encoding="utf-8")
    return folder


def stage_summaries(bundle: ModelBundle) -> list[dict[str, Any]]:
    """Per-stage facts for provenance records."""
    return [
        {
            "name": s.name,
            "network": s.network.get("_target_"),
            "classes": list(s.classes),
            "spacing_mm": list(s.spacing_mm),
            "weights_sha256": bundle.weights_sha256.get(s.name),
        }
        for s in bundle.inference.stages
    ]
