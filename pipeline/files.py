"""Atomic output and JSON, without SimpleITK (usable where only torch and monai exist).

Every output of the project is written through these helpers: a temporary
file or folder beside the final name, renamed onto it only when complete, so
an interrupted run never leaves a half-written file under its final name and
an earlier output is replaced only by a complete new one. Final outputs get
the permissions the user's umask gives any new file (``mkstemp`` alone would
leave them private to the user).

:mod:`pipeline.io` re-exports these names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import InputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _give_default_permissions(path: Path) -> None:
    """mkstemp/mkdtemp create private (0600/0700) entries: give the final output the
    permissions any new file or folder would have (the user's umask), so that a
    group sharing a cluster project folder can read the results."""
    mode = (0o777 if path.is_dir() else 0o666) & ~_umask()
    os.chmod(path, mode)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    The temporary name keeps the final suffix so that writers which choose
    their format by extension (``.nii.gz``) work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".gz") else path.suffix
    handle, name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent
    )
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if temporary.exists():
            _give_default_permissions(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def json_ready(value: Any) -> Any:
    """Convert numpy scalars and arrays, paths and tuples into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_ready(dataclasses.asdict(value))
    return value


def dumps_json(value: Any) -> str:
    return json.dumps(json_ready(value), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(value: Any, path: str | os.PathLike[str]) -> Path:
    """Write JSON atomically (UTF-8, indented, NaN written as null)."""
    return write_text(dumps_json(value), path)


def write_text(text: str, path: str | os.PathLike[str]) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return path


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Read a JSON file, with a clear error when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found", "an existing file (check the path)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            path, f"not valid JSON ({exc})", f"the {what} as written by liverburden"
        ) from None


@contextlib.contextmanager
def output_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Build an output folder completely in a temporary folder, then swap it in.

    Yields the temporary folder. On success it replaces ``path`` (an earlier
    output there is removed only after the new one is complete); on any
    exception the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_dir():
        raise InputError(path, "output exists and is not a folder")
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield temporary
        _give_default_permissions(temporary)
        if path.exists():
            retired = Path(
                tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent)
            )
            os.replace(path, retired / "previous")
            os.replace(temporary, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temporary, path)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
