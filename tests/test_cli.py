"""The command line itself: help, version, usage errors, termination by a scheduler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import run_cli


def test_help_and_version() -> None:
    result = run_cli()
    assert result.exit_code == 0 and "COMMAND" in result.stdout
    assert run_cli("--version").exit_code == 0


def test_unknown_command_is_a_usage_error() -> None:
    assert run_cli("segmentify").exit_code == 2


def test_every_command_has_help() -> None:
    for command in (
        "phantom",
        "segment",
        "measure",
        "respond",
        "evaluate",
        "train",
        "report",
        "cohort",
        "dicom-seg",
    ):
        result = run_cli(command, "--help")
        assert result.exit_code == 0, (command, result.stderr)
        assert "usage: liverburden" in result.stdout


def test_sigterm_stops_cleanly_without_output(tmp_path: Path) -> None:
    """A job cancelled by a scheduler (SIGTERM) exits 143 and leaves no output."""
    out = tmp_path / "cohort"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline",
            "phantom",
            str(out),
            "--size",
            "medium",
            "--subjects",
            "3",
        ],
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    time.sleep(4.0)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "terminated" in stderr and "Traceback" not in stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
