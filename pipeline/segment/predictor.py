"""The segmentation engine: a model bundle loaded once, applied to many CTs.

>>> segmenter = LiverTumourSegmenter("models/liverburden-ct", device="auto")  # doctest: +SKIP
>>> result = segmenter.predict(ct.image)                                       # doctest: +SKIP
>>> result.labels        # UInt8 sitk.Image on exactly the CT's grid: 0/1/2   # doctest: +SKIP
>>> result.flags         # e.g. ["low_liver_confidence"]                       # doctest: +SKIP

Each stage of the bundle runs MONAI end to end: the CT (or the crop of it that
an earlier stage chose) becomes a MetaTensor with its RAS affine;
``Orientationd`` turns it to RAS, ``Spacingd`` resamples it to the stage's
spacing, ``ScaleIntensityRanged`` maps the stage's HU window to 0..1 with
clipping; a ``SlidingWindowInferer`` with Gaussian blending runs the network
(optionally with test-time flips, averaged softmax). A cropping stage
(``liver``) only yields the box of its largest foreground component. The last
stage's class probabilities are resampled trilinearly onto the input grid
itself (exact physical positions, so the output grid is the input grid by
construction), the label of each voxel is the most probable class, and the
bundle's post-processing cleans the label map.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline.errors import DeviceError, InputError
from pipeline.segment import geometry
from pipeline.segment.bundle import (
    InferenceSettings,
    ModelBundle,
    StageSettings,
    build_network,
    load_bundle,
    load_weights,
)

log = logging.getLogger(__name__)

#: Flags a result may carry (see :class:`SegmentationResult`).
FLAG_DESCRIPTIONS: dict[str, str] = {
    "no_liver_found": "the model found no liver; the label map is empty",
    "low_liver_confidence": (
        "the model is unsure of the liver (low mean probability or many uncertain voxels)"
    ),
    "implausible_liver_volume": "the liver volume lies outside the bundle's plausible range",
    "liver_at_scan_edge": (
        "the liver touches the first or last axial slice: it may be cut off by the field of view"
    ),
    "liver_at_crop_edge": (
        "the liver touches the edge of the region the liver stage chose: it may be cut off"
    ),
}


# ------------------------------------------------------------------ devices


def allotted_cpus() -> int:
    """CPUs this process may use (its affinity mask, e.g. a SLURM or Snakemake allotment)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def resolve_device(requested: str) -> Any:
    """``torch.device`` for ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Raises
    ------
    DeviceError
        When CUDA is requested and no CUDA GPU is usable.
    InputError
        For an unknown device name.
    """
    import torch

    name = str(requested).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DeviceError(
                "--device",
                f"{requested} was requested but no CUDA GPU is available "
                f"(PyTorch {torch.__version__} is {build})",
                "--device auto or --device cpu",
            )
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                "--device",
                f"{requested}: there are only {torch.cuda.device_count()} CUDA device(s)",
                "cuda:0 .. cuda:N-1",
            )
        return device
    raise InputError("--device", f"unknown device {requested!r}", "auto, cpu, cuda or cuda:N")


def set_threads(threads: int | None) -> int:
    """Use ``threads`` CPU threads (default: all allotted) in PyTorch and SimpleITK."""
    import torch

    count = allotted_cpus() if threads is None else int(threads)
    if count < 1:
        raise InputError("--threads", f"must be at least 1, not {threads}")
    torch.set_num_threads(count)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(count)
    return count


# ------------------------------------------------------------------ results


@dataclasses.dataclass
class SegmentationResult:
    """What :meth:`LiverTumourSegmenter.predict` returns.

    Attributes
    ----------
    labels
        UInt8 label map (0 background, 1 liver parenchyma, 2 tumour) on exactly
        the input image's grid.
    statistics
        Probability statistics and volumes: ``mean_liver_probability`` (mean
        probability of liver or tumour inside the predicted liver),
        ``uncertain_liver_fraction`` (fraction of predicted liver voxels with
        that probability below 0.5), ``mean_tumour_probability`` (inside the
        predicted tumour), ``liver_volume_ml`` (liver including tumour),
        ``tumour_volume_ml``.
    flags
        Names from :data:`FLAG_DESCRIPTIONS` that tell a reader to check the result.
    timings_s
        Seconds per step.
    stages
        Per stage: the grid it ran on and its crop region.
    device
        The torch device used.
    """

    labels: sitk.Image
    statistics: dict[str, Any]
    flags: list[str]
    timings_s: dict[str, float]
    stages: list[dict[str, Any]]
    device: str

    @property
    def network_seconds(self) -> float:
        """Seconds spent in the networks' forward passes (all stages)."""
        return float(sum(v for k, v in self.timings_s.items() if k.endswith("_network")))


@contextlib.contextmanager
def _timer(timings: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = round(timings.get(key, 0.0) + time.perf_counter() - start, 4)


# ----------------------------------------------------------------- engine


class LiverTumourSegmenter:
    """A model bundle loaded once and applied to any number of CT images.

    Parameters
    ----------
    bundle
        Bundle folder, a loaded :class:`ModelBundle`, or ``None`` for the
        default bundle (``models/liverburden-ct``, or ``$LIVERBURDEN_MODEL``).
    device
        ``auto`` (CUDA with mixed precision when present, else CPU), ``cpu``,
        ``cuda`` or ``cuda:N``.
    fast
        Apply the bundle's ``fast`` overrides (no test-time flips, less overlap).
    threads
        CPU threads for PyTorch and SimpleITK (default: all allotted CPUs).
    progress
        Show a progress bar of the sliding windows; default: when stderr is a terminal.

    Raises
    ------
    InputError
        For a bad bundle (missing or malformed configs, missing, corrupt or
        mismatching weights, unknown network).
    DeviceError
        When ``device`` asks for CUDA and none is available.
    """

    def __init__(
        self,
        bundle: str | os.PathLike[str] | ModelBundle | None = None,
        device: str = "auto",
        *,
        fast: bool = False,
        threads: int | None = None,
        progress: bool | None = None,
    ) -> None:
        import torch

        self.device = resolve_device(device)
        self.threads = set_threads(threads)
        self.bundle = bundle if isinstance(bundle, ModelBundle) else load_bundle(bundle)
        self.fast = fast
        self.settings: InferenceSettings = (
            self.bundle.inference.for_fast_mode() if fast else self.bundle.inference
        )
        self.progress = sys.stderr.isatty() if progress is None else bool(progress)
        self.mixed_precision = self.device.type == "cuda"
        self.networks: dict[str, torch.nn.Module] = {}
        for stage in self.settings.stages:
            network = build_network(stage, self.bundle.path / "configs" / "inference.json")
            load_weights(network, self.bundle.weights_path(stage), stage.name)
            network.eval()
            self.networks[stage.name] = network.to(self.device)

    # -------------------------------------------------------------- stages

    def _preprocess(self, stage: StageSettings, image: sitk.Image) -> Any:
        from pipeline.segment.transforms import stage_image_transform

        transform = stage_image_transform(
            stage.spacing_mm, stage.hu_window, antialias=stage.antialias
        )
        # block averaging makes a new array, so the image's own buffer can be read in place
        tensor = geometry.image_to_metatensor(image, copy=not stage.antialias)
        return transform({"image": tensor})["image"]

    def _window_size(self, stage: StageSettings, shape: tuple[int, ...]) -> tuple[int, int, int]:
        divisor = stage.size_divisible
        return tuple(  # type: ignore[return-value]
            min(int(roi), int(math.ceil(extent / divisor) * divisor))
            for roi, extent in zip(stage.roi_size, shape, strict=True)
        )

    def _infer(self, stage: StageSettings, image: Any) -> np.ndarray:
        """Softmax probabilities ``[c, x, y, z]`` (float32, numpy) of a preprocessed image."""
        import torch
        from monai.inferers import SlidingWindowInferer

        network = self.networks[stage.name]
        shape = tuple(int(s) for s in image.shape[1:])
        inferer = SlidingWindowInferer(
            roi_size=self._window_size(stage, shape),
            sw_batch_size=stage.sw_batch_size,
            overlap=stage.overlap,
            mode="gaussian",
            padding_mode="constant",
            cval=0.0,
            progress=self.progress,
        )
        batch = image.as_tensor()[None].to(self.device)
        autocast = (
            torch.autocast(device_type="cuda", dtype=torch.float16)
            if self.mixed_precision
            else contextlib.nullcontext()
        )
        passes = [(), *stage.tta_flips]
        total = None
        with torch.inference_mode(), autocast:
            for axes in passes:
                dims = [a + 2 for a in axes]
                source = torch.flip(batch, dims) if dims else batch
                logits = inferer(source, network)
                probabilities = torch.softmax(logits.float(), dim=1)
                if dims:
                    probabilities = torch.flip(probabilities, dims)
                total = probabilities if total is None else total + probabilities
            assert total is not None
            mean = total[0] / len(passes)
        return mean.float().cpu().numpy()

    def _foreground_corners(
        self, stage: StageSettings, probabilities: np.ndarray, affine: np.ndarray
    ) -> np.ndarray | None:
        """LPS corners (mm) of the box of a cropping stage's largest foreground
        component, or ``None`` when it found nothing."""
        from pipeline.segment.transforms import KeepLargestLiverComponent

        foreground = (np.argmax(probabilities, axis=0) > 0).astype(np.uint8)
        largest = KeepLargestLiverComponent()(foreground) > 0
        return geometry.physical_box_corners(largest, affine)

    # -------------------------------------------------------------- predict

    def predict(self, image: Any) -> SegmentationResult:
        """Segment liver and tumour in one CT.

        Parameters
        ----------
        image
            A ``sitk.Image`` in HU (any orientation and spacing) or a
            :class:`pipeline.io.CTScan`.

        Returns
        -------
        SegmentationResult
            The label map on exactly the input grid, statistics, flags and timings.
        """
        ct = getattr(image, "image", image)
        if (
            not isinstance(ct, sitk.Image)
            or ct.GetDimension() != 3
            or ct.GetNumberOfComponentsPerPixel() != 1
        ):
            raise InputError(
                None, "the segmenter needs a 3-D scalar CT image", "a SimpleITK image in HU"
            )
        ct = sitk.Cast(ct, sitk.sitkFloat32) if ct.GetPixelID() != sitk.sitkFloat32 else ct
        timings: dict[str, float] = {}
        stage_records: list[dict[str, Any]] = []
        boxes: dict[str, np.ndarray | None] = {}
        full_size = ct.GetSize()
        labels_zyx = np.zeros(full_size[::-1], dtype=np.uint8)
        # probabilities on the final stage's region of the input grid (``window``)
        foreground_probability: np.ndarray | None = None
        tumour_probability: np.ndarray | None = None
        window: tuple[slice, ...] = (slice(None),) * 3
        region: tuple[tuple[int, int, int], tuple[int, int, int]] | None = (
            (0, 0, 0),
            tuple(full_size),
        )  # type: ignore[assignment]
        final = self.settings.final_stage
        found = True
        for stage in self.settings.stages:
            region = ((0, 0, 0), tuple(full_size))  # type: ignore[assignment]
            if stage.crop is not None:
                corners = boxes.get(stage.crop.from_stage)
                region = (
                    None
                    if corners is None
                    else geometry.index_region_of_corners(corners, ct, stage.crop.margin_mm)
                )
                if region is None:
                    found = False
                    stage_records.append(
                        {
                            "name": stage.name,
                            "skipped": "no foreground from " + stage.crop.from_stage,
                        }
                    )
                    break
            start, size = region  # type: ignore[misc]
            part = ct if tuple(size) == tuple(full_size) else geometry.crop_image(ct, start, size)
            with _timer(timings, f"{stage.name}_preprocess"):
                prepared = self._preprocess(stage, part)
            with _timer(timings, f"{stage.name}_network"):
                probabilities = self._infer(stage, prepared)
            affine = np.asarray(prepared.affine, dtype=float)
            stage_records.append(
                {
                    "name": stage.name,
                    "region_start_xyz": list(start),
                    "region_size_xyz": list(size),
                    "network_grid_size": [int(s) for s in prepared.shape[1:]],
                    "spacing_mm": list(stage.spacing_mm),
                    "test_time_flips": [list(f) for f in stage.tta_flips],
                }
            )
            if stage is not final:
                with _timer(timings, f"{stage.name}_box"):
                    boxes[stage.name] = self._foreground_corners(stage, probabilities, affine)
                continue
            with _timer(timings, f"{stage.name}_resample"):
                on_grid = geometry.resample_channels_onto(
                    probabilities[1:], affine, part
                )  # [c-1, z, y, x]
                foreground_probability = np.clip(on_grid.sum(axis=0), 0.0, 1.0)
                # the most probable class (the first of equals, as argmax)
                best = 1.0 - foreground_probability
                channel = np.zeros(best.shape, dtype=np.uint8)
                for index, probability in enumerate(on_grid, start=1):
                    better = probability > best
                    channel[better] = index
                    np.maximum(best, probability, out=best)
                values = np.asarray(stage.label_values, dtype=np.uint8)
                x0, y0, z0 = start
                sx, sy, sz = size
                window = (slice(z0, z0 + sz), slice(y0, y0 + sy), slice(x0, x0 + sx))
                labels_zyx[window] = values[channel]
                if stage.has_tumour:
                    tumour_probability = on_grid[stage.classes.index("tumour") - 1]
        with _timer(timings, "postprocess"):
            from pipeline.segment.transforms import postprocessing_transform

            chain = postprocessing_transform(
                self.settings.postprocessing, geometry.voxel_volume_mm3(ct)
            )
            # everything outside the final stage's region is background: clean the region only
            labels_zyx[window] = chain({"labels": labels_zyx[window]})["labels"]
        with _timer(timings, "statistics"):
            statistics, flags = self._statistics(
                ct, labels_zyx, foreground_probability, tumour_probability, window, region, found
            )
        labels = sitk.GetImageFromArray(labels_zyx.astype(np.uint8, copy=False))
        labels.CopyInformation(ct)
        return SegmentationResult(
            labels=labels,
            statistics=statistics,
            flags=flags,
            timings_s=timings,
            stages=stage_records,
            device=str(self.device),
        )

    # ------------------------------------------------------------ statistics

    def _statistics(
        self,
        ct: sitk.Image,
        labels: np.ndarray,
        foreground_probability: np.ndarray | None,
        tumour_probability: np.ndarray | None,
        window: tuple[slice, ...],
        region: Any,
        found: bool,
    ) -> tuple[dict[str, Any], list[str]]:
        quality = self.settings.quality
        voxel_ml = geometry.voxel_volume_mm3(ct) / 1000.0
        liver = labels > 0
        tumour = labels == 2
        liver_voxels = int(np.count_nonzero(liver))
        statistics: dict[str, Any] = {
            "liver_volume_ml": liver_voxels * voxel_ml,
            "tumour_volume_ml": int(np.count_nonzero(tumour)) * voxel_ml,
            "mean_liver_probability": None,
            "uncertain_liver_fraction": None,
            "mean_tumour_probability": None,
        }
        flags: list[str] = []
        if not found or liver_voxels == 0:
            flags.append("no_liver_found")
            return statistics, flags
        if foreground_probability is not None:  # the liver lies inside the final stage's region
            inside = foreground_probability[liver[window]]
            statistics["mean_liver_probability"] = float(inside.mean())
            statistics["uncertain_liver_fraction"] = float(
                np.count_nonzero(inside < 0.5) / inside.size
            )
            if (
                statistics["mean_liver_probability"] < quality.min_mean_liver_probability
                or statistics["uncertain_liver_fraction"] > quality.max_uncertain_liver_fraction
            ):
                flags.append("low_liver_confidence")
        if tumour_probability is not None and tumour.any():
            statistics["mean_tumour_probability"] = float(tumour_probability[tumour[window]].mean())
        low, high = quality.liver_volume_ml
        if not low <= statistics["liver_volume_ml"] <= high:
            flags.append("implausible_liver_volume")
        from pipeline.io import axial_axis

        axis = 2 - axial_axis(ct)  # numpy axis of the head-foot direction in [z, y, x]
        first = np.take(liver, 0, axis=axis).any()
        last = np.take(liver, liver.shape[axis] - 1, axis=axis).any()
        if first or last:
            flags.append("liver_at_scan_edge")
        if region is not None:
            start, size = region
            full = ct.GetSize()
            z0, y0, x0 = start[2], start[1], start[0]
            sub = liver[z0 : z0 + size[2], y0 : y0 + size[1], x0 : x0 + size[0]]
            for numpy_axis, sitk_axis in ((0, 2), (1, 1), (2, 0)):
                if start[sitk_axis] > 0 and np.take(sub, 0, axis=numpy_axis).any():
                    flags.append("liver_at_crop_edge")
                    break
                if (
                    start[sitk_axis] + size[sitk_axis] < full[sitk_axis]
                    and np.take(sub, sub.shape[numpy_axis] - 1, axis=numpy_axis).any()
                ):
                    flags.append("liver_at_crop_edge")
                    break
        return statistics, flags
