"""Broken and awkward ``liverburden measure`` folders for ``respond``, ``report`` and ``cohort``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tests.corpus.base import BASE_DATE, FOLLOW_UP_DATE, Workspace, image_like, sphere, write_image


def copy_measure(source: Path, target: Path, **changes: Any) -> Path:
    """A copy of a measure folder with top-level keys of measurements.json changed."""
    shutil.copytree(source, target)
    if changes:
        path = target / "measurements.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        data.update(changes)
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return target


def other_subject(ws: Workspace, folder: Path) -> Path:
    """The follow-up measured under another subject id."""
    return ws.measure(
        "S2-fu1", ws.follow_up_labels_path, subject="S2", timepoint="fu1", date=FOLLOW_UP_DATE
    )


def same_date(ws: Workspace, folder: Path) -> Path:
    return copy_measure(ws.follow_up_measure, folder / "fu1-same-date", study_date=BASE_DATE)


def no_measurements(ws: Workspace, folder: Path) -> Path:
    target = copy_measure(ws.follow_up_measure, folder / "fu1-incomplete")
    (target / "measurements.json").unlink()
    return target


def invalid_json(ws: Workspace, folder: Path) -> Path:
    target = copy_measure(ws.follow_up_measure, folder / "fu1-bad-json")
    path = target / "measurements.json"
    path.write_text(path.read_text(encoding="utf-8")[:300], encoding="utf-8")
    return target


def lacks_lesions_key(ws: Workspace, folder: Path) -> Path:
    target = copy_measure(ws.follow_up_measure, folder / "fu1-old-format")
    path = target / "measurements.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["lesions"]
    path.write_text(json.dumps(data), encoding="utf-8")
    return target


def no_lesion_map(ws: Workspace, folder: Path) -> Path:
    target = copy_measure(ws.follow_up_measure, folder / "fu1-no-map")
    (target / "lesions.nii.gz").unlink()
    return target


def negative_volume(ws: Workspace, folder: Path) -> Path:
    """A hand-edited measurements.json with a negative lesion volume."""
    target = copy_measure(ws.follow_up_measure, folder / "fu1-edited")
    path = target / "measurements.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["lesions"][0]["volume_ml"] = -3.0
    path.write_text(json.dumps(data), encoding="utf-8")
    return target


def no_measurable_baseline(ws: Workspace) -> Path:
    """A baseline whose only lesions are below the measurable size (one voxel each)."""
    base = ws.base
    array = np.where(base.labels_zyx > 0, 1, 0).astype(np.uint8)
    for centre in base.lesion_centres_zyx:
        array[sphere(array.shape, centre, 0.5)] = 2
    path = write_image(image_like(array, base.ct), ws.root / "shared" / "small-lesions.nii.gz")
    return ws.measure("S3-baseline", path, subject="S3", timepoint="baseline", date=BASE_DATE)


def no_measurable_follow_up(ws: Workspace) -> Path:
    return ws.measure(
        "S3-fu1", ws.follow_up_labels_path, subject="S3", timepoint="fu1", date=FOLLOW_UP_DATE
    )
