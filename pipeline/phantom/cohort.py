"""A phantom cohort on disk: images, truth label maps, sample sheets and truth.json.

Layout of ``OUTDIR`` (paths in the sheets are relative to the sheet's folder)::

    samples.tsv        subject, timepoint, date, image, arterial_image, mask, treatment (mask empty)
    samples_truth.tsv  the same with mask = the truth label map
    truth.json         scenario, time points, lesions and expected response of every subject
    <subject>/<timepoint>/ct.nii.gz        portal-venous phase, HU, int16
    <subject>/<timepoint>/arterial.nii.gz  arterial phase on the same grid, HU, int16
    <subject>/<timepoint>/labels.nii.gz    0 background, 1 liver parenchyma, 2 tumour, uint8

The folder is built in a temporary folder and swapped in when complete.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from pipeline import SCHEMA_VERSION, __version__
from pipeline.errors import InputError
from pipeline.io import (
    output_directory,
    refuse_overwriting_inputs,
    write_image,
    write_json,
    write_text,
)
from pipeline.phantom.anatomy import design_anatomy
from pipeline.phantom.render import Pose
from pipeline.phantom.scan import (
    PhantomScan,
    check_size,
    design_acquisition,
    design_grid,
    random_pose,
    render_scan,
)
from pipeline.phantom.scenarios import (
    DEFAULT_TIMEPOINTS,
    INTENDED,
    SCENARIOS,
    TIMEPOINT_NAMES,
    TREATMENTS,
    LesionPlan,
    design_lesions,
    expected_response,
    states_at,
)

log = logging.getLogger(__name__)

SHEET_COLUMNS = ("subject", "timepoint", "date", "image", "arterial_image", "mask", "treatment")
MAX_SUBJECTS = 500
MAX_SEED = 2**63 - 1
BASELINE_DATE = dt.date(2024, 1, 15)
#: Attempts at a subject's lesion design before giving up (a design is redrawn
#: when the liver cannot hold the lesions or the truth misses its intended response).
DESIGN_ATTEMPTS = 6


def subject_id(index: int) -> str:
    """``demo-01``, ``demo-02``, ... (index from 0)."""
    return f"demo-{index + 1:02d}"


def check_options(subjects: int, seed: int, size: str, timepoints: int | None) -> None:
    """Raise :class:`InputError` for values the generator cannot honour."""
    if (
        isinstance(subjects, bool)
        or not isinstance(subjects, int | np.integer)
        or not 1 <= subjects <= MAX_SUBJECTS
    ):
        raise InputError(
            "--subjects", f"not a number of subjects from 1 to {MAX_SUBJECTS}: {subjects!r}"
        )
    if (
        isinstance(seed, bool)
        or not isinstance(seed, int | np.integer)
        or not 0 <= seed <= MAX_SEED
    ):
        raise InputError("--seed", f"not a whole number from 0 to 2**63-1: {seed!r}")
    check_size(size)
    if timepoints is not None and (
        isinstance(timepoints, bool)
        or not isinstance(timepoints, int | np.integer)
        or not 1 <= timepoints <= len(TIMEPOINT_NAMES)
    ):
        raise InputError(
            "--timepoints",
            f"not a number of time points from 1 to {len(TIMEPOINT_NAMES)}: {timepoints!r}",
        )


def _check_outdir(outdir: Path, inputs: Sequence[str | os.PathLike[str]]) -> None:
    refuse_overwriting_inputs([outdir], inputs)
    if outdir.exists():
        if not outdir.is_dir():
            raise InputError(
                outdir, "exists and is not a folder", "a new folder or an earlier phantom cohort"
            )
        entries = [p for p in outdir.iterdir() if not p.name.startswith(".")]
        if entries and not (outdir / "truth.json").is_file():
            raise InputError(
                outdir,
                "folder is not empty and holds no phantom cohort (no truth.json); "
                "it would be replaced",
                "a new or empty folder, or an earlier phantom cohort",
            )


def _image(array: np.ndarray, scan: PhantomScan) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(scan.spacing_mm)
    image.SetOrigin(scan.origin_mm)
    image.SetDirection(scan.direction)
    return image


def _write_scan(scan: PhantomScan, folder: Path) -> None:
    """ct.nii.gz and arterial.nii.gz (int16 HU) and labels.nii.gz (uint8) into ``folder``."""
    write_image(_image(scan.portal_venous_hu.astype(np.int16), scan), folder / "ct.nii.gz")
    write_image(_image(scan.arterial_hu.astype(np.int16), scan), folder / "arterial.nii.gz")
    write_image(_image(scan.labels.astype(np.uint8, copy=False), scan), folder / "labels.nii.gz")


def _history(plans: Sequence[LesionPlan], timepoints: int) -> dict[str, dict[str, str]]:
    """What each lesion is at each time point: present, new, absent, vanished, split."""
    history: dict[str, dict[str, str]] = {}
    for plan in plans:
        row: dict[str, str] = {}
        seen = False
        for index in range(timepoints):
            name = TIMEPOINT_NAMES[index]
            scale = plan.scales[index]
            if plan.split_at is not None and index >= plan.split_at:
                row[name] = (
                    f"split into {plan.key}a, {plan.key}b" if index == plan.split_at else "split"
                )
                for suffix in "ab":
                    fragment = history.setdefault(f"{plan.key}{suffix}", {})
                    for earlier in range(index):
                        fragment.setdefault(TIMEPOINT_NAMES[earlier], "absent")
                    fragment[name] = (
                        f"split from {plan.key}" if index == plan.split_at else "present"
                    )
                seen = True
                continue
            if scale is None:
                row[name] = "vanished" if seen else "absent"
            else:
                row[name] = "new" if (index > 0 and not seen) else "present"
                seen = True
        history[plan.key] = row
    return dict(sorted(history.items()))


def generate_subject(
    seed: int, index: int, size: str, timepoints: int | None = None
) -> tuple[dict[str, Any], list[PhantomScan]]:
    """One subject's truth entry (without file paths) and its scans, baseline first."""
    scenario = SCENARIOS[index % len(SCENARIOS)]
    count = timepoints or DEFAULT_TIMEPOINTS[scenario]
    streams = np.random.SeedSequence([seed, index]).spawn(5)
    anatomy_rng, grid_rng, pose_rng, date_rng, noise_seq = (
        *(np.random.default_rng(s) for s in streams[:4]),
        streams[4],
    )
    anatomy = design_anatomy(anatomy_rng)
    grid = design_grid(grid_rng, size, anatomy)
    acquisition = design_acquisition(grid_rng, grid)
    poses = [Pose()] + [random_pose(pose_rng) for _ in range(count - 1)]
    date = BASELINE_DATE + dt.timedelta(days=int(date_rng.integers(0, 22)))
    dates = [date]
    for _ in range(count - 1):
        date = date + dt.timedelta(days=int(date_rng.integers(56, 85)))
        dates.append(date)
    intended = list(INTENDED[scenario][: count - 1])

    failure = ""
    for attempt in range(DESIGN_ATTEMPTS):
        lesion_rng = np.random.default_rng(np.random.SeedSequence([seed, index, 1000 + attempt]))
        try:
            plans = design_lesions(lesion_rng, anatomy, scenario, count)
        except RuntimeError as error:
            failure = str(error)
            continue
        noise_rngs = [np.random.default_rng(s) for s in noise_seq.spawn(count)]
        scans: list[PhantomScan] = []
        entries: list[dict[str, Any]] = []
        for k in range(count):
            states, vanished = states_at(plans, k)
            scan = render_scan(anatomy, states, grid, poses[k], acquisition, noise_rngs[k])
            scans.append(scan)
            entries.append(
                {
                    "timepoint": TIMEPOINT_NAMES[k],
                    "date": dates[k].isoformat(),
                    "shift_mm": list(scan.shift_mm),
                    "rotation_deg": scan.rotation_deg,
                    "rotation_axis": list(scan.rotation_axis),
                    "grid": {
                        "size_xyz": [grid.shape_zyx[2], grid.shape_zyx[1], grid.shape_zyx[0]],
                        "spacing_mm": list(grid.spacing_mm),
                        "origin_mm": list(grid.origin_mm),
                        "direction": list(grid.direction),
                    },
                    "slice_thickness_mm": acquisition.slice_thickness_mm,
                    "noise_sigma_hu": round(acquisition.noise_portal_venous_hu, 2),
                    "liver_volume_ml": round(scan.liver_volume_ml, 4),
                    "tumor_volume_ml": round(scan.tumor_volume_ml, 4),
                    "involvement_percent": round(scan.involvement_percent, 4),
                    "lesion_count": sum(1 for les in scan.lesions if les["voxel_count"] > 0),
                    "lesions": scan.lesions,
                    "vanished_lesion_keys": vanished,
                }
            )
        responses, best = expected_response(entries, grid.spacing_mm[2])
        achieved = [{c: r[c] for c in intended[i]} for i, r in enumerate(responses)]
        if achieved != intended:
            failure = f"design missed its intended response ({achieved} instead of {intended})"
            log.debug("subject %d attempt %d: %s", index, attempt, failure)
            continue
        entry = {
            "scenario": scenario,
            "treatment": TREATMENTS[scenario],
            "design_attempt": attempt,
            "timepoints": entries,
            "lesion_history": _history(plans, count),
            "expected_response": responses,
            "expected_best_overall_response": best,
        }
        return entry, scans
    raise RuntimeError(
        f"phantom subject {subject_id(index)} (seed {seed}) could not be designed: {failure}"
    )


def generate_cohort(
    outdir: str | os.PathLike[str],
    subjects: int = 6,
    seed: int = 0,
    size: str = "small",
    timepoints: int | None = None,
    *,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> dict[str, Any]:
    """Write a phantom cohort to ``outdir`` and return its truth (as written to truth.json).

    Parameters
    ----------
    outdir
        Folder to create (or an earlier phantom cohort to replace).
    subjects
        Number of subjects ``demo-01``...; scenarios cycle through
        :data:`~pipeline.phantom.scenarios.SCENARIOS`.
    seed
        Same seed and options give byte-identical files.
    size
        Grid preset (``tiny``, ``small``, ``medium``, ``full``).
    timepoints
        Time points per subject (1-3); default per scenario (2, or 3 for
        ``response_then_progression``).
    inputs
        Files the run read (a settings file): ``outdir`` may not hold them.
    """
    check_options(subjects, seed, size, timepoints)
    outdir = Path(outdir)
    _check_outdir(outdir, inputs)
    truth: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "liverburden_version": __version__,
        "seed": int(seed),
        "size": size,
        "subjects": {},
    }
    sheet: list[list[str]] = []
    truth_sheet: list[list[str]] = []
    with output_directory(outdir) as folder:
        for index in range(subjects):
            name = subject_id(index)
            log.info("subject %s (%d of %d)", name, index + 1, subjects)
            entry, scans = generate_subject(seed, index, size, timepoints)
            for tp, scan in zip(entry["timepoints"], scans, strict=True):
                relative = f"{name}/{tp['timepoint']}"
                _write_scan(scan, folder / relative)
                tp["image"] = f"{relative}/ct.nii.gz"
                tp["arterial_image"] = f"{relative}/arterial.nii.gz"
                tp["labels"] = f"{relative}/labels.nii.gz"
                row = [name, tp["timepoint"], tp["date"], tp["image"], tp["arterial_image"]]
                sheet.append([*row, "", entry["treatment"]])
                truth_sheet.append([*row, tp["labels"], entry["treatment"]])
            # put the paths first in each time point, as in the documented layout
            entry["timepoints"] = [
                {k: tp[k] for k in ("timepoint", "date", "image", "arterial_image", "labels")}
                | {
                    k: v
                    for k, v in tp.items()
                    if k not in ("timepoint", "date", "image", "arterial_image", "labels")
                }
                for tp in entry["timepoints"]
            ]
            truth["subjects"][name] = entry
        header = "\t".join(SHEET_COLUMNS)
        write_text(
            "\n".join([header, *("\t".join(r) for r in sheet)]) + "\n", folder / "samples.tsv"
        )
        write_text(
            "\n".join([header, *("\t".join(r) for r in truth_sheet)]) + "\n",
            folder / "samples_truth.tsv",
        )
        write_json(truth, folder / "truth.json")
    return truth
