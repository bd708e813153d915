"""Every command on the generated corpus of broken inputs (tests/corpus).

Each ``error`` case must end in exit code 2 with one or two lines on stderr
that name the file or value, say what is wrong and what would be accepted
(no traceback), and leave no output and no temporary file behind. Each
``handled`` case must succeed with the right numbers (its check).
"""

from __future__ import annotations

import pytest

from tests._corpus_fixtures import corpus_workspace, output_folders, run_invocation
from tests.conftest import assert_clean_error
from tests.corpus import CASES, Workspace, case_names, cases_by_category, get_case
from tests.corpus.base import leftover_temporaries

__all__ = ["corpus_workspace"]


def _params(expect: str) -> list[object]:
    """Case names; a case that fails today because of a reported bug is a strict xfail."""
    params: list[object] = []
    for name in case_names(expect):
        reason = get_case(name).known_failure
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.mark.parametrize("name", _params("error"))
def test_bad_input_is_refused_cleanly(
    name: str, corpus_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = get_case(name)
    invocation = case.build(corpus_workspace)
    result = run_invocation(invocation, monkeypatch)
    assert_clean_error(result, *invocation.fragments)
    assert "internal error" not in result.stderr
    assert "; expected " in result.stderr, result.stderr  # every refusal says what is accepted
    for output in invocation.outputs:
        assert not output.exists(), f"{output} left behind"
    for folder in output_folders(invocation):
        assert not leftover_temporaries(folder), leftover_temporaries(folder)


@pytest.mark.parametrize("name", _params("handled"))
def test_awkward_input_is_handled(
    name: str, corpus_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    invocation = get_case(name).build(corpus_workspace)
    result = run_invocation(invocation, monkeypatch)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert invocation.check is not None
    invocation.check(result)


def test_corpus_covers_every_command_and_category() -> None:
    commands = {case.command for case in CASES}
    assert commands >= {
        "segment",
        "measure",
        "respond",
        "evaluate",
        "report",
        "cohort",
        "dicom-seg",
        "train",
        "samples",
        "phantom",
    }
    table = cases_by_category()
    assert set(table) == {
        "files",
        "dicom",
        "geometry",
        "segmentation",
        "response",
        "sheet",
        "options",
    }
    assert sum(row["error"] for row in table.values()) >= 100
    assert sum(row["handled"] for row in table.values()) >= 10
