"""Settings shared by the command line and the workflow's ``config/config.yaml``.

Every stage keeps its settings in a dataclass with documented defaults. A
stage's command accepts ``--settings FILE.yaml``: the file is either the
workflow's whole config (the stage reads its own section, e.g. ``measure:``)
or just that section. Explicit command-line flags override the file.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import InputError

T = TypeVar("T")


def read_yaml(path: str | os.PathLike[str], what: str = "settings file") -> Any:
    """Read a YAML file with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} not found", "an existing YAML file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = " ".join(str(exc).split())
        raise InputError(
            path, f"not valid YAML ({problem})", "a YAML mapping of setting names to values"
        ) from None


def _coerce(value: Any, annotation: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], source, key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise InputError(source, f"setting {key!r} must be true or false, not {value!r}")
    if annotation in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(source, f"setting {key!r} must be a number, not {value!r}")
        if annotation is int and float(value) != int(value):
            raise InputError(source, f"setting {key!r} must be a whole number, not {value!r}")
        return annotation(value)
    if annotation is str:
        if not isinstance(value, str):
            raise InputError(source, f"setting {key!r} must be text, not {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise InputError(source, f"setting {key!r} must be a list, not {value!r}")
        item_type = args[0] if args else Any
        items = [v if item_type is Any else _coerce(v, item_type, source, key) for v in value]
        return tuple(items) if origin is tuple else items
    return value


def settings_from_mapping(
    cls: type[T], mapping: dict[str, Any] | None, source: str = "settings"
) -> T:
    """Build the dataclass ``cls`` from ``mapping``, refusing unknown keys and wrong types."""
    mapping = dict(mapping or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise InputError(
            source,
            f"unknown setting(s): {', '.join(unknown)}",
            "one of: " + ", ".join(sorted(names)),
        )
    values = {key: _coerce(value, hints[key], source, key) for key, value in mapping.items()}
    return cls(**values)


def load_settings(cls: type[T], path: str | os.PathLike[str] | None, section: str) -> T:
    """Settings of one stage from a YAML file (whole config or just the section)."""
    if path is None:
        return cls()
    data = read_yaml(path)
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise InputError(path, "settings file must hold a mapping of names to values")
    if section in data:
        data = data[section]
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise InputError(path, f"section {section!r} must be a mapping of names to values")
    elif any(isinstance(v, dict) for v in data.values()) and not any(
        f.name in data
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
    ):
        return cls()  # a whole workflow config without this stage's section: defaults
    return settings_from_mapping(cls, data, str(path))


def override(settings: T, **changes: Any) -> T:
    """Copy of ``settings`` with the non-``None`` values in ``changes`` applied."""
    applied = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(settings, **applied) if applied else settings  # type: ignore[type-var]
