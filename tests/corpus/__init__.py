"""A generated corpus of broken (and awkward but valid) inputs for every command.

Nothing here is committed data: every case is built on demand, in a temporary
folder, from one small synthetic scan (a ``tiny`` phantom of
:func:`pipeline.phantom.generate_scan` with two painted lesions) and from
:func:`tests._dicom_fixtures.write_ct_series`.

A :class:`Case` names a category, the command it runs, what is expected and a
``build`` function that writes the inputs into a :class:`Workspace` and returns
the :class:`Invocation` (command-line arguments, the outputs that must not
exist after a refusal, environment variables, and for handled cases a check of
the numbers). ``CASES`` lists every case; the tests in ``tests/test_corpus*.py``
run them.

Expectations:

``error``
    exit code 2, one or two lines on stderr naming the file or value (the
    case's ``fragments`` must all appear), no traceback, no output and no
    temporary file left beside the output;
``handled``
    exit code 0 and the case's ``check`` (the numbers are right).
"""

from tests.corpus.base import Case, Invocation, Workspace
from tests.corpus.registry import CASES, case_names, cases_by_category, get_case

__all__ = [
    "CASES",
    "Case",
    "Invocation",
    "Workspace",
    "case_names",
    "cases_by_category",
    "get_case",
]
