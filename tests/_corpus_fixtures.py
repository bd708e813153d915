"""Fixtures of the corpus tests: the session's corpus workspace and running a case."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from tests.conftest import CliResult, run_cli
from tests.corpus import Invocation, Workspace

#: One workspace per test session (the fixture is imported by several modules, each of
#: which would otherwise get its own session-scoped instance).
_WORKSPACES: dict[Path, Workspace] = {}


@pytest.fixture(scope="session")
def corpus_workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The corpus's workspace: shared inputs are built once per test session."""
    session = tmp_path_factory.getbasetemp()
    if session not in _WORKSPACES:
        _WORKSPACES[session] = Workspace(tmp_path_factory.mktemp("corpus"))
    return _WORKSPACES[session]


def run_samples(*args: str) -> CliResult:
    """``python -m pipeline.samples ARGS`` in this process (the check the Snakefile runs)."""
    from pipeline.samples import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
    return CliResult(code, out.getvalue(), err.getvalue())


def run_invocation(invocation: Invocation, monkeypatch: pytest.MonkeyPatch) -> CliResult:
    """Run a corpus invocation in-process with its environment and working folder."""
    for key, value in invocation.env.items():
        monkeypatch.setenv(key, value)
    if invocation.cwd is not None:
        monkeypatch.chdir(invocation.cwd)
    if invocation.args[0] == "samples":
        return run_samples(*invocation.args[1:])
    return run_cli(*invocation.args)


def output_folders(invocation: Invocation) -> set[Path]:
    """Folders that receive the invocation's outputs (where temporaries would lie)."""
    return {Path(os.path.abspath(p)).parent for p in invocation.outputs}
