"""Fixtures shared by every test module.

Topic-specific fixtures live in ``tests/_<topic>_fixtures.py`` modules that the
topic's tests import; keep this file small.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Real CT data beside the checkout (``../shared/data``); absent on end users' clones.
SHARED_DATA = Path(os.environ.get("LIVERBURDEN_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_data(relative: str) -> Path:
    """Path of a file under ``../shared/data``; skips the test when it is absent."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(
            f"real CT data not available: {path} is absent "
            "(only CI and developers have ../shared/data)"
        )
    return path


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(*args: str | os.PathLike[str]) -> CliResult:
    """Run ``liverburden ARGS`` in this process and capture exit code and output."""
    from pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture
def cli() -> Callable[..., CliResult]:
    """``cli("measure", image, seg, "-o", out)`` runs the command in-process."""
    return run_cli


def assert_clean_error(result: CliResult, *fragments: str) -> None:
    """A bad-input failure: exit code 2, one or two lines on stderr, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


def console_script() -> list[str]:
    """The installed ``liverburden`` console script, else ``python -m pipeline``."""
    script = Path(sys.executable).parent / "liverburden"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline"]


def run_text(
    command: Sequence[str | os.PathLike[str]], **options: object
) -> subprocess.CompletedProcess[str]:
    """Run a command to its end with stdout and stderr captured as UTF-8 text, whatever
    the locale (undecodable bytes replaced); never raises on a non-zero exit code."""
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
        **options,  # type: ignore[arg-type]
    )
