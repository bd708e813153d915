"""Errors that the command line turns into one line on stderr and exit code 2."""

from __future__ import annotations

from os import PathLike


class InputError(Exception):
    """Bad or unusable input: a file, a folder, a value or a setting.

    The command line prints ``liverburden <command>: error: <source>: <problem>``
    (plus ``; expected <expected>`` when given) and exits with code 2, without a
    traceback and without leaving output files behind.

    Parameters
    ----------
    source
        The file, folder or setting that is wrong (a path, or a name such as
        ``--date``). ``None`` when no single source is to blame.
    problem
        What is wrong, in words a user understands.
    expected
        What would be accepted instead (optional).
    """

    def __init__(
        self,
        source: str | PathLike[str] | None,
        problem: str,
        expected: str | None = None,
    ) -> None:
        self.source = None if source is None else str(source)
        self.problem = problem
        self.expected = expected
        super().__init__(self.message)

    @property
    def message(self) -> str:
        text = self.problem if self.source is None else f"{self.source}: {self.problem}"
        if self.expected:
            text += f"; expected {self.expected}"
        return " ".join(text.split())  # one line, always


class DeviceError(InputError):
    """A requested compute device is not available (for example ``--device cuda``
    on a machine without a GPU)."""
