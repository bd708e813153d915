"""Crash safety: killed runs leave nothing partial, reruns give identical bytes, inputs survive.

* ``kill -9`` at random moments of ``segment``, ``measure``, ``respond`` and
  ``report`` (the console script in a subprocess): after each kill, whatever
  exists under a final output name is complete (byte-identical to an
  uninterrupted run); a rerun then gives byte-identical results. During the
  rerun a watcher thread reads every final-named output the moment it appears
  and checks it is complete;
* every command run twice on the same inputs gives identical bytes (the one
  exception: ``timings_s`` in segment's provenance JSON, the wall-clock seconds
  of each step, is left out of every comparison);
* no command writes over one of its inputs (or into an input folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests._corpus_fixtures import corpus_workspace
from tests.conftest import console_script, run_cli, run_text
from tests.corpus import Workspace
from tests.corpus.base import fast_segment_args, leftover_temporaries

__all__ = ["corpus_workspace"]

#: The one field of segment's provenance JSON that differs between reruns (wall-clock
#: seconds of each step, documented in docs/cli/segment.md).
WALL_CLOCK_FIELD = "timings_s"


def files_under(path: Path) -> dict[str, bytes]:
    """Relative name -> bytes of every file at ``path`` (a file or a folder)."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    if not path.is_dir():
        return {}
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def comparable(name: str, data: bytes) -> bytes:
    """Bytes to compare: the provenance JSON of ``segment`` without its wall-clock
    ``timings_s`` (and only that), every other file as it is."""
    if name.endswith("segmentation.json"):
        record = json.loads(data)
        assert isinstance(record.pop(WALL_CLOCK_FIELD), dict), name
        return json.dumps(record, sort_keys=True).encode()
    return data


def run_console(
    args: list[str], timeout: float = 300
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    result = run_text(
        [*console_script(), *args],
        timeout=timeout,
    )
    return time.perf_counter() - started, result


class Watcher(threading.Thread):
    """Reads every final-named output as soon as it appears and compares it with the reference."""

    def __init__(self, outputs: list[Path], reference: dict[str, dict[str, bytes]]) -> None:
        super().__init__(daemon=True)
        self.outputs, self.reference = outputs, reference
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.observations = 0

    def run(self) -> None:
        while not self.stop.is_set():
            for output in self.outputs:
                try:
                    found = files_under(output)
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    continue  # swapped while listing: look again
                for name, data in found.items():
                    self.observations += 1
                    expected = self.reference[str(output)].get(name)
                    if expected is None or comparable(name, data) != comparable(name, expected):
                        self.problems.append(
                            f"{output}/{name}: {len(data)} bytes, not the complete output"
                        )
            time.sleep(0.002)


def crash_and_rerun(args: list[str], outputs: list[Path], kills: int, seed: int) -> None:
    """Reference run, ``kills`` runs killed at random moments (each followed by a check of
    what lies under the final names), then a watched rerun that must match the reference."""
    duration, reference_run = run_console(args)
    assert reference_run.returncode == 0, reference_run.stderr
    reference = {str(o): files_under(o) for o in outputs}
    assert all(reference.values()), reference.keys()
    for output in outputs:  # the reference moves aside; reruns write to the same names
        target = output.with_name(output.name + ".reference")
        output.rename(target)
    rng = random.Random(seed)
    # most of a short run is Python starting up: kill in its second half, where it
    # computes and writes
    delays = [rng.uniform(0.5, 1.0) * duration for _ in range(kills)]
    for delay in delays:
        process = subprocess.Popen(
            [*console_script(), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        for output in outputs:
            for name, data in files_under(output).items():
                expected = reference[str(output)].get(name)
                assert expected is not None and comparable(name, data) == comparable(
                    name, expected
                ), f"after a kill at {delay:.2f} s: {output}/{name} is partial"
    watcher = Watcher(outputs, reference)
    watcher.start()
    try:
        _, rerun = run_console(args)
    finally:
        watcher.stop.set()
        watcher.join()
    assert rerun.returncode == 0, rerun.stderr
    assert not watcher.problems, watcher.problems[:5]
    assert watcher.observations > 0  # it looked while the outputs were being written
    for output in outputs:
        found = files_under(output)
        assert set(found) == set(reference[str(output)])
        for name, data in found.items():
            assert comparable(name, data) == comparable(name, reference[str(output)][name]), name


# ------------------------------------------------------------ kill -9 tests


@pytest.mark.slow
def test_kill_measure(corpus_workspace: Workspace, tmp_path: Path) -> None:
    ws = corpus_workspace
    out = tmp_path / "measure"
    args = [
        "measure",
        str(ws.ct_path),
        str(ws.labels_path),
        "-o",
        str(out),
        "--subject",
        "S1",
        "--timepoint",
        "baseline",
        "--date",
        "2024-01-15",
    ]
    crash_and_rerun(args, [out], kills=1, seed=1)


@pytest.mark.slow
def test_kill_respond(corpus_workspace: Workspace, tmp_path: Path) -> None:
    ws = corpus_workspace
    out = tmp_path / "response.json"
    args = ["respond", str(ws.baseline_measure), str(ws.follow_up_measure), "-o", str(out)]
    crash_and_rerun(args, [out], kills=1, seed=2)


@pytest.mark.slow
def test_kill_report(corpus_workspace: Workspace, tmp_path: Path) -> None:
    ws = corpus_workspace
    response = tmp_path / "response.json"
    assert (
        run_cli(
            "respond", ws.baseline_measure, ws.follow_up_measure, "-o", response, "-q"
        ).exit_code
        == 0
    )
    out = tmp_path / "report.html"
    args = [
        "report",
        str(ws.baseline_measure),
        str(ws.follow_up_measure),
        "--images",
        str(ws.ct_path),
        str(ws.ct_path),
        "--response",
        str(response),
        "-o",
        str(out),
    ]
    crash_and_rerun(args, [out], kills=1, seed=3)


@pytest.mark.slow
def test_kill_segment(corpus_workspace: Workspace, tmp_path: Path) -> None:
    ws = corpus_workspace
    seg = tmp_path / "segmentation.nii.gz"
    args = fast_segment_args(ws.ct_path, seg, ws.bundle)
    crash_and_rerun(args, [seg, tmp_path / "segmentation.json"], kills=1, seed=4)


# ----------------------------------------------------- reruns are identical


def _twice(run: Callable[[Path], list[Path]], tmp_path: Path) -> None:
    first = run(tmp_path / "first")
    second = run(tmp_path / "second")
    for a, b in zip(first, second, strict=True):
        fa, fb = files_under(a), files_under(b)
        assert fa and set(fa) == set(fb), (a, sorted(fa), sorted(fb))
        for name in fa:
            assert comparable(name, fa[name]) == comparable(name, fb[name]), (
                f"{name} differs between two runs"
            )


def _ok(*args: object) -> None:
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr


def test_measure_respond_report_cohort_reruns_are_identical(
    corpus_workspace: Workspace, tmp_path: Path
) -> None:
    ws = corpus_workspace

    def run(folder: Path) -> list[Path]:
        measured = [folder / "baseline", folder / "fu1"]
        _ok(
            "measure",
            ws.ct_path,
            ws.labels_path,
            "-o",
            measured[0],
            "--subject",
            "S1",
            "--timepoint",
            "baseline",
            "--date",
            "2024-01-15",
            "-q",
        )
        _ok(
            "measure",
            ws.ct_path,
            ws.follow_up_labels_path,
            "-o",
            measured[1],
            "--subject",
            "S1",
            "--timepoint",
            "fu1",
            "--date",
            "2024-04-15",
            "-q",
        )
        os.chdir(folder)  # response.json names its inputs as given: give the same relative names
        _ok("respond", "baseline", "fu1", "-o", "response.json", "-q")
        _ok(
            "report",
            "baseline",
            "fu1",
            "--images",
            ws.ct_path,
            ws.ct_path,
            "--response",
            "response.json",
            "-o",
            "report.html",
            "-q",
        )
        _ok(
            "cohort",
            "baseline",
            "fu1",
            "--responses",
            "response.json",
            "-o",
            "cohort.csv",
            "--figures",
            "figures",
            "-q",
        )
        return [
            *measured,
            folder / "response.json",
            folder / "report.html",
            folder / "cohort.csv",
            folder / "figures",
        ]

    cwd = os.getcwd()
    try:
        _twice(run, tmp_path)
    finally:
        os.chdir(cwd)


def test_evaluate_and_phantom_reruns_are_identical(
    corpus_workspace: Workspace, tmp_path: Path
) -> None:
    ws = corpus_workspace

    def run(folder: Path) -> list[Path]:
        _ok(
            "evaluate",
            ws.follow_up_labels_path,
            ws.labels_path,
            "-o",
            folder / "metrics.json",
            "-q",
        )
        _ok(
            "phantom", folder / "phantoms", "--subjects", "1", "--size", "tiny", "--seed", "5", "-q"
        )
        return [folder / "metrics.json", folder / "phantoms"]

    _twice(run, tmp_path)


def test_segment_reruns_are_identical(corpus_workspace: Workspace, tmp_path: Path) -> None:
    """The label map byte for byte; the provenance JSON except its wall-clock timings_s."""
    ws = corpus_workspace

    def run(folder: Path) -> list[Path]:
        _ok(*fast_segment_args(ws.ct_path, folder / "segmentation.nii.gz", ws.bundle), "-q")
        return [folder / "segmentation.nii.gz", folder / "segmentation.json"]

    _twice(run, tmp_path)


def test_dicom_seg_reruns_are_identical(corpus_workspace: Workspace, tmp_path: Path) -> None:
    ws = corpus_workspace

    def run(folder: Path) -> list[Path]:
        _ok("dicom-seg", ws.labels_path, ws.dicom_folder, "-o", folder / "segmentation.dcm", "-q")
        return [folder / "segmentation.dcm"]

    _twice(run, tmp_path)
    import pydicom

    seg = pydicom.dcmread(tmp_path / "first" / "segmentation.dcm")
    source = pydicom.dcmread(next(p for p in sorted(ws.dicom_folder.iterdir()) if p.is_file()))
    source_date = source.get("SeriesDate") or source.get("StudyDate")
    assert source_date and seg.ContentDate == source_date  # from the source, not the clock
    assert seg.InstanceCreationDate == seg.ContentDate
    # another label map on the same series: other UIDs
    other = tmp_path / "other.dcm"
    _ok("dicom-seg", ws.follow_up_labels_path, ws.dicom_folder, "-o", other, "-q")
    changed = pydicom.dcmread(other)
    assert changed.SeriesInstanceUID != seg.SeriesInstanceUID
    assert changed.SOPInstanceUID != seg.SOPInstanceUID
    assert changed.StudyInstanceUID == seg.StudyInstanceUID == source.StudyInstanceUID


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            [{"SeriesDate": "20240115", "SeriesTime": "101500", "StudyDate": "20240114"}],
            ("20240115", "101500"),
        ),
        ([{"StudyDate": "20240114", "StudyTime": "0930"}], ("20240114", "093000")),
        ([{"SeriesDate": "20240230", "ContentDate": "20240116"}], ("20240116", "000000")),
        (
            [{"ContentDate": "20240116", "ContentTime": "1200"}, {"ContentDate": "20240117"}],
            ("20240117", "000000"),
        ),
        ([{}], ("19000101", "000000")),
    ],
)
def test_seg_dates_come_from_the_source_series(
    headers: list[dict[str, str]], expected: tuple[str, str]
) -> None:
    import pydicom

    from pipeline.report.dicom_seg import content_date_time

    datasets = []
    for header in headers:
        dataset = pydicom.Dataset()
        for keyword, value in header.items():
            setattr(dataset, keyword, value)
        datasets.append(dataset)
    assert content_date_time(datasets) == expected
    assert content_date_time(datasets) == content_date_time(list(reversed(datasets)))


# -------------------------------------------------- never overwrite an input


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    for name, data in sorted(files_under(path).items()):
        digest.update(name.encode() + data)
    return digest.hexdigest()


def _overwrite_cases(ws: Workspace, tmp: Path) -> dict[str, tuple[list[object], Path]]:
    """name -> (arguments, the input the output points at)."""
    import shutil

    measured = tmp / "measured"
    shutil.copytree(ws.baseline_measure, measured / "baseline")
    shutil.copytree(ws.follow_up_measure, measured / "fu1")
    ct = tmp / "ct.nii.gz"
    shutil.copyfile(ws.ct_path, ct)
    labels = tmp / "labels.nii.gz"
    shutil.copyfile(ws.labels_path, labels)
    dicom = tmp / "dicom"
    shutil.copytree(ws.dicom_folder, dicom)
    settings = tmp / "settings.yaml"
    settings.write_text("phantom:\n  size: tiny\n", encoding="utf-8")
    base, fu = measured / "baseline", measured / "fu1"
    return {
        "segment-onto-its-ct": (
            ["segment", ct, "-o", ct, "--model", ws.bundle, "--device", "cpu"],
            ct,
        ),
        "segment-into-dicom-folder": (
            ["segment", dicom, "-o", dicom / "seg.nii.gz", "--model", ws.bundle, "--device", "cpu"],
            dicom,
        ),
        "measure-into-folder-of-ct": (
            ["measure", ct, labels, "-o", tmp, "--date", "2024-01-15"],
            ct,
        ),
        "measure-onto-labels": (
            ["measure", ct, labels, "-o", labels, "--date", "2024-01-15"],
            labels,
        ),
        "measure-onto-dicom-folder": (["measure", dicom, labels, "-o", dicom], dicom),
        "respond-onto-measurements": (
            ["respond", base, fu, "-o", base / "measurements.json"],
            base,
        ),
        "report-onto-response-input": (["report", base, fu, "-o", base / "report.html"], base),
        "cohort-figures-into-input": (
            ["cohort", base, fu, "-o", tmp / "cohort.csv", "--figures", fu],
            fu,
        ),
        "evaluate-into-prediction-folder": (
            ["evaluate", measured, measured, "-o", base / "metrics.json"],
            base,
        ),
        "dicom-seg-onto-a-slice": (
            ["dicom-seg", labels, dicom, "-o", dicom / "slice0000.dcm"],
            dicom,
        ),
        "phantom-over-its-settings": (
            ["phantom", tmp, "--settings", settings, "--subjects", "1"],
            settings,
        ),
        "train-cache-onto-the-ct": (["train", "prepare", tmp / "cases.tsv", "--cache", ct], ct),
    }


OVERWRITE_CASES = [
    "segment-onto-its-ct",
    "segment-into-dicom-folder",
    "measure-into-folder-of-ct",
    "measure-onto-labels",
    "measure-onto-dicom-folder",
    "respond-onto-measurements",
    "report-onto-response-input",
    "cohort-figures-into-input",
    "evaluate-into-prediction-folder",
    "dicom-seg-onto-a-slice",
    "phantom-over-its-settings",
    "train-cache-onto-the-ct",
]


@pytest.mark.parametrize("name", OVERWRITE_CASES)
def test_outputs_pointed_at_inputs_are_refused(
    name: str, corpus_workspace: Workspace, tmp_path: Path
) -> None:
    cases = _overwrite_cases(corpus_workspace, tmp_path)
    (tmp_path / "cases.tsv").write_text(
        f"image\tlabel\n{tmp_path / 'ct.nii.gz'}\t{tmp_path / 'labels.nii.gz'}\n", encoding="utf-8"
    )
    args, victim = cases[name]
    before = {
        str(p): _digest(p)
        for p in (
            tmp_path / "ct.nii.gz",
            tmp_path / "labels.nii.gz",
            tmp_path / "dicom",
            tmp_path / "measured",
            tmp_path / "settings.yaml",
            victim,
        )
    }
    result = run_cli(*args)
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert "Traceback" not in result.stderr
    assert "overwrite" in result.stderr or "input" in result.stderr, result.stderr
    after = {path: _digest(Path(path)) for path in before}
    assert after == before
    assert not leftover_temporaries(tmp_path)
