"""The corpus's building blocks: the base scan, the workspace, cases and invocations."""

from __future__ import annotations

import dataclasses
import gzip
import os
import re
import struct
from collections.abc import Callable, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

#: The base scan: a tiny phantom on a fixed grid (x, y, z spacing in mm; z, y, x shape).
BASE_SEED = 3
BASE_SPACING_MM = (4.5, 4.5, 5.0)
BASE_SHAPE_ZYX = (48, 80, 80)
#: Radii (voxels) of the two lesions painted into the base scan's liver.
LESION_RADII_VOXELS = (3.2, 2.2)
#: Attenuation (HU) painted into the lesions (hypodense to the ~115 HU liver).
LESION_HU = 45.0
BASE_DATE = "2024-01-15"
FOLLOW_UP_DATE = "2024-04-15"

#: Names of temporary files and folders that pipeline.io leaves only while writing.
TEMPORARY_NAME = re.compile(r"^\..*\.(tmp|old)(\.[A-Za-z0-9.]+)?$")


@dataclasses.dataclass
class Invocation:
    """One run of a command on a corpus case.

    Attributes
    ----------
    args
        Command-line arguments after ``liverburden``.
    outputs
        Outputs that must not exist after a refusal (files or folders).
    fragments
        Text that stderr must contain (the file or value and what is wrong).
    env
        Environment variables set for the run.
    check
        For handled cases: called with the :class:`tests.conftest.CliResult`;
        asserts that the numbers are right.
    cwd
        Working folder of the run (relative paths), or ``None``.
    """

    args: list[str]
    outputs: list[Path]
    fragments: tuple[str, ...] = ()
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    check: Callable[[Any], None] | None = None
    cwd: Path | None = None


@dataclasses.dataclass(frozen=True)
class Case:
    """A corpus case: ``build(workspace)`` writes its inputs and returns the invocation."""

    name: str
    category: str
    command: str
    expect: str  # "error" or "handled"
    build: Callable[[Workspace], Invocation]
    description: str = ""
    #: Why the case fails today (a bug reported to the owner of the command), or "".
    known_failure: str = ""

    def __post_init__(self) -> None:
        if self.expect not in ("error", "handled"):
            raise ValueError(f"{self.name}: expect must be 'error' or 'handled'")


# --------------------------------------------------------------------- arrays


def sphere(shape_zyx: Sequence[int], centre_zyx: Sequence[float], radius: float) -> np.ndarray:
    """Boolean ball of ``radius`` voxels around ``centre_zyx`` (``[z, y, x]``)."""
    grids = np.indices(tuple(shape_zyx), dtype=float)
    distance = sum((g - c) ** 2 for g, c in zip(grids, centre_zyx, strict=True))
    return distance <= radius**2


def image_like(array_zyx: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array_zyx)
    image.CopyInformation(reference)
    return image


def write_image(image: sitk.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=path.name.endswith(".gz"))
    return path


def nifti_bytes(image: sitk.Image, folder: Path) -> bytes:
    """The uncompressed NIfTI-1 bytes of ``image`` (written through ``folder``)."""
    path = write_image(image, folder / ".scratch.nii")
    data = path.read_bytes()
    path.unlink()
    return data


def patch_nifti(data: bytes, offset: int, fmt: str, *values: float) -> bytes:
    """``data`` with ``struct.pack('<' + fmt, *values)`` written at ``offset``."""
    patched = bytearray(data)
    packed = struct.pack("<" + fmt, *values)
    patched[offset : offset + len(packed)] = packed
    return bytes(patched)


def write_gzip(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))
    return path


# ------------------------------------------------------------------ base scan


@dataclasses.dataclass
class BaseScan:
    """The base scan: CT in HU (float32), its label map and a follow-up label map."""

    ct: sitk.Image
    labels: sitk.Image
    follow_up_labels: sitk.Image
    lesion_centres_zyx: list[tuple[int, int, int]]

    @property
    def hu_zyx(self) -> np.ndarray:
        return sitk.GetArrayFromImage(self.ct)

    @property
    def labels_zyx(self) -> np.ndarray:
        return sitk.GetArrayFromImage(self.labels)


def make_base_scan() -> BaseScan:
    """A tiny phantom with two lesions painted deep inside its liver.

    The follow-up label map has the same liver with both lesions shrunk by one
    voxel of radius (a partial response by volume).
    """
    from pipeline.phantom import generate_scan

    phantom = generate_scan(
        BASE_SEED, "tiny", spacing_mm=BASE_SPACING_MM, shape_zyx=BASE_SHAPE_ZYX, lesions=False
    )
    ct, _arterial, labels = phantom.to_sitk()
    liver = sitk.GetArrayFromImage(labels) > 0
    hu = sitk.GetArrayFromImage(ct).astype(np.float32)
    spacing_zyx = np.asarray(BASE_SPACING_MM[::-1])
    depth = ndimage.distance_transform_edt(liver, sampling=spacing_zyx)
    centres: list[tuple[int, int, int]] = []
    free = depth.copy()
    for radius in LESION_RADII_VOXELS:
        centre = tuple(int(v) for v in np.unravel_index(int(np.argmax(free)), free.shape))
        centres.append(centre)  # type: ignore[arg-type]
        free[sphere(liver.shape, centre, radius + 6)] = 0
    base = np.where(liver, 1, 0).astype(np.uint8)
    follow = base.copy()
    for centre, radius in zip(centres, LESION_RADII_VOXELS, strict=True):
        ball = sphere(liver.shape, centre, radius)
        assert np.all(liver[ball]), "painted lesion must lie inside the liver"
        base[ball] = 2
        hu[ball] = LESION_HU
        follow[sphere(liver.shape, centre, radius - 1.0)] = 2
    ct_image = image_like(np.round(hu).astype(np.float32), ct)
    return BaseScan(ct_image, image_like(base, ct), image_like(follow, ct), centres)


# ------------------------------------------------------------------ workspace


class Workspace:
    """A folder where corpus cases are built; shared inputs are built once.

    Parameters
    ----------
    root
        An empty temporary folder.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._counter = 0
        self._inputs: dict[Callable[..., Any], tuple[Path, tuple[str, ...]]] = {}

    # -- folders

    def folder(self, name: str) -> Path:
        """A new, empty folder for one case (unique even if the name repeats)."""
        self._counter += 1
        path = self.root / "cases" / f"{self._counter:03d}-{name}"
        path.mkdir(parents=True)
        return path

    def input_of(
        self, builder: Callable[[Workspace, Path], tuple[Path, tuple[str, ...]]]
    ) -> tuple[Path, tuple[str, ...]]:
        """``builder``'s input, built once and shared by the commands that read it
        (no command may change its inputs; the tests check that they do not)."""
        if builder not in self._inputs:
            self._inputs[builder] = builder(self, self.folder("input"))
        return self._inputs[builder]

    # -- shared inputs

    @cached_property
    def base(self) -> BaseScan:
        return make_base_scan()

    @cached_property
    def ct_path(self) -> Path:
        """The base CT as int16 NIfTI (whole HU), as scanners' converters write it."""
        image = sitk.Cast(self.base.ct, sitk.sitkInt16)
        return write_image(image, self.root / "shared" / "ct.nii.gz")

    @cached_property
    def labels_path(self) -> Path:
        return write_image(self.base.labels, self.root / "shared" / "labels.nii.gz")

    @cached_property
    def follow_up_labels_path(self) -> Path:
        return write_image(self.base.follow_up_labels, self.root / "shared" / "follow-up.nii.gz")

    @cached_property
    def dicom_folder(self) -> Path:
        """The base CT as a DICOM series (made-up identifiers)."""
        from tests._dicom_fixtures import write_ct_series

        folder = self.root / "shared" / "dicom"
        write_ct_series(folder, self.base.hu_zyx, **self.dicom_geometry)
        return folder

    @property
    def dicom_geometry(self) -> dict[str, Any]:
        ct = self.base.ct
        return {"spacing_xyz": ct.GetSpacing(), "origin_xyz": ct.GetOrigin()}

    @cached_property
    def bundle(self) -> Path:
        """A model bundle for ``segment``: the tiny trained test bundle when the
        repository has it, else a small bundle with random weights (the corpus
        tests input handling, not segmentation quality)."""
        tiny = Path(__file__).resolve().parents[1] / "data" / "tiny_bundle"
        if (tiny / "configs" / "inference.json").is_file():
            return tiny
        return untrained_bundle(self.root / "shared" / "bundle")

    def measure(self, name: str, labels: Path, *, subject: str, timepoint: str, date: str) -> Path:
        """A ``liverburden measure`` folder of the base CT with ``labels``."""
        from tests.conftest import run_cli

        folder = self.root / "measured" / name
        if not (folder / "measurements.json").is_file():
            result = run_cli(
                "measure",
                self.ct_path,
                labels,
                "-o",
                folder,
                "--subject",
                subject,
                "--timepoint",
                timepoint,
                "--date",
                date,
                "-q",
            )
            assert result.exit_code == 0, result.stderr
        return folder

    @cached_property
    def baseline_measure(self) -> Path:
        return self.measure(
            "S1-baseline", self.labels_path, subject="S1", timepoint="baseline", date=BASE_DATE
        )

    @cached_property
    def follow_up_measure(self) -> Path:
        return self.measure(
            "S1-fu1", self.follow_up_labels_path, subject="S1", timepoint="fu1", date=FOLLOW_UP_DATE
        )


def fast_segment_args(image: Path | str, output: Path | str, bundle: Path | str) -> list[str]:
    """``liverburden segment`` arguments for a tiny test scan: ``bundle``, CPU, fast mode,
    one thread."""
    return [
        "segment",
        str(image),
        "-o",
        str(output),
        "--model",
        str(bundle),
        "--device",
        "cpu",
        "--fast",
        "--threads",
        "1",
    ]


def untrained_bundle(folder: Path) -> Path:
    """A two-stage bundle of very small random-weight U-Nets on coarse grids (fast on CPU)."""
    from pipeline.segment.recipes import stage_recipe, unet, write_untrained_bundle

    if (folder / "configs" / "inference.json").is_file():
        return folder
    stages = [
        stage_recipe(
            "liver",
            network=unet([4, 8], [2], 0, out_channels=2),
            spacing_mm=[8.0, 8.0, 8.0],
            roi_size=[64, 64, 64],
            size_divisible=2,
        ),
        stage_recipe(
            "lesion",
            network=unet([4, 8], [2], 0, out_channels=3),
            spacing_mm=[6.0, 6.0, 6.0],
            roi_size=[64, 64, 64],
            size_divisible=2,
            tta_flips=[],
        ),
    ]
    return write_untrained_bundle(folder, stages)


def leftover_temporaries(folder: Path) -> list[Path]:
    """Temporary files or folders of pipeline.io's atomic writes under ``folder``."""
    if not folder.exists():
        return []
    found = []
    for root, dirs, files in os.walk(folder):
        for name in [*dirs, *files]:
            if TEMPORARY_NAME.match(name):
                found.append(Path(root) / name)
    return found
