"""The real console script on corpus cases: what a user's terminal shows.

The in-process corpus tests call ``pipeline.cli.main``; these run the installed
``liverburden`` script as a subprocess, once attached to a pseudo-terminal, to
prove that no traceback reaches a real terminal (and that ``--debug`` shows it).
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
from pathlib import Path

from tests._corpus_fixtures import corpus_workspace
from tests.conftest import console_script, run_text
from tests.corpus import Workspace, get_case
from tests.corpus.base import BASE_DATE, leftover_temporaries

__all__ = ["corpus_workspace"]


def run_in_terminal(args: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run the console script with stdout and stderr on a pseudo-terminal."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*console_script(), *args],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
    )
    os.close(terminal)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([controller], [], [], timeout)
        if not ready:
            process.kill()
            raise TimeoutError(args)
        try:
            data = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    os.close(controller)
    return process.wait(timeout=timeout), b"".join(chunks).decode("utf-8", "replace")


def test_truncated_ct_on_a_terminal(corpus_workspace: Workspace, tmp_path: Path) -> None:
    invocation = get_case("measure:truncated-gzip").build(corpus_workspace)
    code, text = run_in_terminal(invocation.args)
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 2, text
    assert len(lines) == 1 and "Traceback" not in text, text
    assert "truncated.nii.gz" in lines[0] and "truncated" in lines[0]
    assert not invocation.outputs[0].exists()
    assert not leftover_temporaries(invocation.outputs[0].parent)


def test_mixed_subjects_through_a_pipe(corpus_workspace: Workspace) -> None:
    invocation = get_case("respond:mixed-subjects").build(corpus_workspace)
    result = run_text(
        [*console_script(), *invocation.args],
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "different subjects" in result.stderr


def test_debug_shows_the_traceback(corpus_workspace: Workspace, tmp_path: Path) -> None:
    ws = corpus_workspace
    args = [
        "measure",
        str(tmp_path / "absent.nii.gz"),
        str(ws.labels_path),
        "-o",
        str(tmp_path / "out"),
        "--date",
        BASE_DATE,
        "--debug",
    ]
    result = run_text(
        [*console_script(), *args],
        timeout=120,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "InputError" in result.stderr
    assert not (tmp_path / "out").exists()
