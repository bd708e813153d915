"""Reader overrides of the automated response assessment (``--overrides FILE.yaml``).

One subject's overrides::

    subject: NET-007            # optional: refused when it names another subject
    targets: [1, 3]             # baseline lesion ids chosen as RECIST/Choi targets
    mrecist_targets: [1]        # baseline lesion ids chosen as mRECIST targets
    treated:                    # treated locoregionally (TACE, TARE, ablation):
      - 2                       #   not chosen as targets automatically
      - {lesion: 5, reason: TARE 2023-02}
    exclude:
      - {lesion: 4, reason: hepatic cyst}            # a baseline lesion, at every time point
      - {timepoint: fu1, lesion: 2, reason: motion}  # one lesion of one follow-up scan
    new_lesions:
      - {timepoint: fu2, lesion: 6, decision: confirm}   # or reject
      - {timepoint: fu2, lesion: 7, decision: reject, reason: perfusion artefact}

Several subjects in one file::

    subjects:
      NET-007: {targets: [1, 3]}
      NET-012: {exclude: [{lesion: 2}]}

``timepoint`` is a time point label (``timepoint`` of the measurements) or
its study date (``YYYY-MM-DD``); lesion ids are those of that time point's
``measurements.json`` (baseline ids when no time point is given).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from pipeline.errors import InputError
from pipeline.response.model import ScanRecord
from pipeline.settings import read_yaml

SUBJECT_KEYS = frozenset(
    {"subject", "targets", "mrecist_targets", "treated", "exclude", "new_lesions"}
)
DECISIONS = ("confirm", "reject")


@dataclasses.dataclass(frozen=True)
class LesionReference:
    """A lesion of one time point (``timepoint`` ``None``: the baseline)."""

    timepoint: str | None
    lesion: int
    reason: str | None = None
    decision: str | None = None


@dataclasses.dataclass
class Overrides:
    """Validated reader overrides of one subject (lesion ids as in the measurements)."""

    source: str
    targets: list[int] | None = None
    mrecist_targets: list[int] | None = None
    treated: list[LesionReference] = dataclasses.field(default_factory=list)
    exclude: list[LesionReference] = dataclasses.field(default_factory=list)
    new_lesions: list[LesionReference] = dataclasses.field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        def refs(items: Sequence[LesionReference]) -> list[dict[str, Any]]:
            return [
                {k: v for k, v in dataclasses.asdict(r).items() if v is not None} for r in items
            ]

        return {
            "source": self.source,
            "targets": self.targets,
            "mrecist_targets": self.mrecist_targets,
            "treated": refs(self.treated),
            "exclude": refs(self.exclude),
            "new_lesions": refs(self.new_lesions),
        }

    @property
    def empty(self) -> bool:
        return not (
            self.targets or self.mrecist_targets or self.treated or self.exclude or self.new_lesions
        )


def _lesion_id(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(where, f"lesion id must be a whole number ≥ 1, not {value!r}")
    return int(value)


def _id_list(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise InputError(where, f"must be a non-empty list of lesion ids, not {value!r}")
    ids = [_lesion_id(v, where) for v in value]
    if len(set(ids)) != len(ids):
        raise InputError(where, f"lists a lesion id twice ({value!r})")
    return ids


def _text(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise InputError(where, f"must be text, not {value!r}")
    return str(value)


def _reference(
    item: Any, where: str, *, allowed: frozenset[str], required: frozenset[str]
) -> LesionReference:
    if isinstance(item, int) and not isinstance(item, bool) and "timepoint" not in required:
        return LesionReference(None, _lesion_id(item, where))
    if not isinstance(item, dict):
        raise InputError(where, f"each entry must be a lesion id or a mapping, not {item!r}")
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise InputError(
            where, f"unknown key(s) {', '.join(unknown)}", "one of " + ", ".join(sorted(allowed))
        )
    missing = sorted(required - set(item))
    if missing:
        raise InputError(where, f"entry {item!r} lacks {', '.join(missing)}")
    timepoint = item.get("timepoint")
    if timepoint is not None:
        timepoint = str(timepoint)
    decision = item.get("decision")
    if "decision" in allowed and decision not in DECISIONS:
        raise InputError(where, f"decision must be confirm or reject, not {decision!r}")
    return LesionReference(
        timepoint, _lesion_id(item.get("lesion"), where), _text(item.get("reason"), where), decision
    )


def parse_overrides(data: Any, source: str, subject: str) -> Overrides:
    """Validate the YAML content ``data`` and return the overrides of ``subject``."""
    if data is None:
        return Overrides(source)
    if not isinstance(data, dict):
        raise InputError(
            source, "overrides must be a mapping", "keys " + ", ".join(sorted(SUBJECT_KEYS))
        )
    if "subjects" in data:
        extra = sorted(set(data) - {"subjects"})
        if extra:
            raise InputError(
                source, f"key(s) {', '.join(extra)} beside 'subjects'", "only 'subjects' at the top"
            )
        subjects = data["subjects"]
        if not isinstance(subjects, dict):
            raise InputError(source, "'subjects' must map subject ids to overrides")
        for name, entry in subjects.items():  # validate every subject's entry, not only ours
            _parse_subject(entry, f"{source}: subjects.{name}", str(name))
        entry = subjects.get(subject)
        if entry is None:
            entry = next((v for k, v in subjects.items() if str(k) == subject), None)
        return _parse_subject(entry, f"{source}: subjects.{subject}", subject, source=source)
    return _parse_subject(data, source, subject)


def _parse_subject(data: Any, where: str, subject: str, source: str | None = None) -> Overrides:
    overrides = Overrides(source or where)
    if data is None:
        return overrides
    if not isinstance(data, dict):
        raise InputError(where, "must be a mapping", "keys " + ", ".join(sorted(SUBJECT_KEYS)))
    unknown = sorted(set(data) - SUBJECT_KEYS)
    if unknown:
        raise InputError(
            where,
            f"unknown key(s) {', '.join(unknown)}",
            "one of " + ", ".join(sorted(SUBJECT_KEYS)),
        )
    if data.get("subject") is not None and str(data["subject"]) != subject:
        raise InputError(where, f"overrides are for subject {data['subject']!r}, not {subject!r}")
    if "targets" in data:
        overrides.targets = _id_list(data["targets"], f"{where}: targets")
    if "mrecist_targets" in data:
        overrides.mrecist_targets = _id_list(data["mrecist_targets"], f"{where}: mrecist_targets")
    for name, allowed, required in (
        ("treated", frozenset({"lesion", "reason"}), frozenset({"lesion"})),
        ("exclude", frozenset({"lesion", "timepoint", "reason"}), frozenset({"lesion"})),
        (
            "new_lesions",
            frozenset({"lesion", "timepoint", "decision", "reason"}),
            frozenset({"lesion", "timepoint", "decision"}),
        ),
    ):
        if name not in data:
            continue
        items = data[name]
        if not isinstance(items, list):
            raise InputError(f"{where}: {name}", f"must be a list, not {items!r}")
        parsed = [
            _reference(item, f"{where}: {name}", allowed=allowed, required=required)
            for item in items
        ]
        setattr(overrides, name, parsed)
    return overrides


def read_overrides(path: str | os.PathLike[str], subject: str) -> Overrides:
    """Read and validate an overrides YAML file for ``subject``."""
    return parse_overrides(read_yaml(path, "overrides file"), str(path), subject)


@dataclasses.dataclass
class ResolvedOverrides:
    """Overrides mapped onto time point indices (0 = baseline) and lesion ids."""

    targets: list[int] | None
    mrecist_targets: list[int] | None
    treated: dict[int, str | None]
    excluded_baseline: dict[int, str]
    excluded_at: dict[int, dict[int, str]]  # time point index -> lesion id -> reason
    new_lesion_decisions: dict[
        tuple[int, int], LesionReference
    ]  # (time point index, id) -> reference


def timepoint_index(reference: str, scans: Sequence[ScanRecord], where: str) -> int:
    """Index of the scan whose label or ISO date is ``reference``."""
    for index, scan in enumerate(scans):
        if reference in (scan.label, scan.date.isoformat()):
            return index
    known = ", ".join(f"{s.label} ({s.date.isoformat()})" for s in scans)
    raise InputError(where, f"no time point {reference!r}", f"one of {known}")


def resolve_overrides(overrides: Overrides, scans: Sequence[ScanRecord]) -> ResolvedOverrides:
    """Check every id against the measurements and map time points to indices."""
    where = overrides.source
    baseline = scans[0]

    def check_baseline(lesion: int, what: str) -> None:
        if lesion not in baseline.lesions:
            raise InputError(
                where,
                f"{what}: baseline ({baseline.label}) has no lesion {lesion}",
                f"one of {sorted(baseline.lesions)}"
                if baseline.lesions
                else "no lesion ids (baseline has none)",
            )

    for name in ("targets", "mrecist_targets"):
        for lesion in getattr(overrides, name) or []:
            check_baseline(lesion, name)
    treated: dict[int, str | None] = {}
    for item in overrides.treated:
        check_baseline(item.lesion, "treated")
        treated[item.lesion] = item.reason
    excluded_baseline: dict[int, str] = {}
    excluded_at: dict[int, dict[int, str]] = {}
    for item in overrides.exclude:
        index = (
            0
            if item.timepoint is None
            else timepoint_index(item.timepoint, scans, f"{where}: exclude")
        )
        if item.lesion not in scans[index].lesions:
            raise InputError(
                f"{where}: exclude",
                f"time point {scans[index].label} has no lesion {item.lesion}",
                f"one of {sorted(scans[index].lesions)}",
            )
        reason = item.reason or "excluded by the reader"
        if index == 0:
            excluded_baseline[item.lesion] = reason
        else:
            excluded_at.setdefault(index, {})[item.lesion] = reason
    for name in ("targets", "mrecist_targets"):
        clash = sorted(set(getattr(overrides, name) or []) & set(excluded_baseline))
        if clash:
            raise InputError(where, f"lesion(s) {clash} are both {name} and excluded")
    decisions: dict[tuple[int, int], LesionReference] = {}
    for item in overrides.new_lesions:
        assert item.timepoint is not None
        index = timepoint_index(item.timepoint, scans, f"{where}: new_lesions")
        if index == 0:
            raise InputError(
                f"{where}: new_lesions", "the baseline has no new lesions", "a follow-up time point"
            )
        if item.lesion not in scans[index].lesions:
            raise InputError(
                f"{where}: new_lesions",
                f"time point {scans[index].label} has no lesion {item.lesion}",
                f"one of {sorted(scans[index].lesions)}",
            )
        decisions[(index, item.lesion)] = item
    return ResolvedOverrides(
        overrides.targets,
        overrides.mrecist_targets,
        treated,
        excluded_baseline,
        excluded_at,
        decisions,
    )
