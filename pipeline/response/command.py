"""Match lesions over time and classify treatment response (RECIST 1.1, mRECIST, Choi, volumetric).

Mask mode: give one subject's `liverburden measure` folders (any order: the
earliest study date is the baseline):

    liverburden respond base/ fu1/ fu2/ -o response.json [--overrides reader.yaml]

Table mode: a reader's measurement table (pyrecist columns patient_id,
study_date, measurement, lesion_label_alias, lesion_category; optional
new_lesion, non_target_status, viable_measurement, mean_hu, organ):

    liverburden respond --table measurements.csv -o response.json

Every threshold is a setting of the `response:` section (--settings).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import logging
from pathlib import Path
from typing import Any

from pipeline import SCHEMA_VERSION, __version__
from pipeline.errors import InputError
from pipeline.io import refuse_overwriting_inputs, write_json
from pipeline.settings import load_settings

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "measure_dirs",
        nargs="*",
        metavar="MEASURE_DIR",
        help="liverburden measure output folders of one subject (one per time point)",
    )
    parser.add_argument(
        "--table",
        metavar="MEASUREMENTS.csv",
        help="a reader's measurement table instead of folders",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="RESPONSE.json", help="response file to write"
    )
    parser.add_argument(
        "--subject",
        metavar="ID",
        help="subject id to report (table mode: the one patient to assess)",
    )
    parser.add_argument(
        "--settings", metavar="FILE.yaml", help="settings (the response: section of config.yaml)"
    )
    parser.add_argument(
        "--overrides",
        metavar="FILE.yaml",
        help="reader overrides (mask mode; see docs/cli/respond.md)",
    )


def exclude_from_scan(scan: Any, reasons: dict[int, str]) -> Any:
    """``scan`` without the lesions ``reasons`` names (tumour volume and involvement reduced)."""
    if not reasons:
        return scan
    removed = sum(scan.lesions[i].volume_ml or 0.0 for i in reasons)
    total = None if scan.tumor_volume_ml is None else max(scan.tumor_volume_ml - removed, 0.0)
    involvement = scan.involvement_percent
    if total is not None and scan.liver_volume_ml:
        involvement = total / scan.liver_volume_ml * 100.0
    flags = [
        *scan.flags,
        *(
            {
                "code": "lesion_excluded_by_reader",
                "severity": "info",
                "message": f"lesion {i} excluded by the reader: {reason}",
            }
            for i, reason in reasons.items()
        ),
    ]
    return dataclasses.replace(
        scan,
        lesions={i: r for i, r in scan.lesions.items() if i not in reasons},
        tumor_volume_ml=total,
        involvement_percent=involvement,
        flags=flags,
    )


def respond_masks(
    folders: list[Path],
    settings: Any,
    *,
    subject: str | None = None,
    overrides_path: Path | None = None,
) -> dict[str, Any]:
    """The response object of one subject from its measure folders."""
    from pipeline.response.assess import assess_subject
    from pipeline.response.matching import track_lesions
    from pipeline.response.measurements import read_measure_folder, read_scan_masks
    from pipeline.response.overrides import read_overrides, resolve_overrides

    measured = [read_measure_folder(folder) for folder in folders]
    subjects = sorted({m.subject for m in measured if m.subject is not None})
    if len(subjects) > 1:
        listing = ", ".join(f"{m.path} ({m.subject})" for m in measured)
        raise InputError(
            None,
            f"the folders belong to different subjects: {listing}",
            "one subject's time points",
        )
    name = subject or (subjects[0] if subjects else None)
    if not name:
        raise InputError("--subject", "the measurements name no subject", "--subject ID")
    measured.sort(key=lambda m: m.scan.date)
    for earlier, later in itertools.pairwise(measured):
        if earlier.scan.date == later.scan.date:
            raise InputError(
                later.path,
                f"has the same study date ({later.scan.date}) as {earlier.path}",
                "one measure folder per study date",
            )
    labels = [m.scan.label for m in measured]
    if len(set(labels)) != len(labels):  # labels must identify time points (overrides, report)
        for m in measured:
            if labels.count(m.scan.label) > 1:
                m.scan.label = f"{m.scan.label} ({m.scan.date.isoformat()})"
    scans = [m.scan for m in measured]
    overrides_record = None
    resolved = None
    if overrides_path is not None:
        overrides = read_overrides(overrides_path, name)
        resolved = resolve_overrides(overrides, scans)
        overrides_record = overrides.as_dict()
    if resolved is not None:
        for index, reasons in resolved.excluded_at.items():
            scans[index] = exclude_from_scan(scans[index], reasons)
            measured[index].scan = scans[index]
    flags: list[dict[str, Any]] = []
    for scan in scans:
        flags.extend({"timepoint": scan.label, **flag} for flag in scan.flags)
    if len(scans) == 1:
        flags.append(
            {
                "code": "single_timepoint",
                "severity": "info",
                "message": "only one time point: baseline measurements, no response",
            }
        )

    def load(index: int) -> Any:
        return read_scan_masks(measured[index])

    if len(scans) > 1:
        for m in measured:  # fail early, before any registration, on a missing image
            for path in (m.lesion_map_path, m.liver_mask_path):
                if not path.is_file():
                    raise InputError(
                        m.path,
                        f"holds no {path.name}",
                        "a complete liverburden measure output folder",
                    )
        tracking = track_lesions(
            scans,
            load,
            settings,
            subject=name,
            excluded_baseline_ids=resolved.excluded_baseline if resolved else None,
        )
    else:
        from pipeline.response.model import (
            BASELINE,
            LesionKey,
            Observation,
            TrackedTimePoint,
            Tracking,
        )

        excluded = resolved.excluded_baseline if resolved else {}
        keys = {
            f"L{i}": LesionKey(
                f"L{i}", i, 0, excluded=i in excluded, exclusion_reason=excluded.get(i)
            )  # type: ignore[arg-type]
            for i in scans[0].lesions
        }
        observations = {
            f"L{i}": Observation(f"L{i}", BASELINE, (r,)) for i, r in scans[0].lesions.items()
        }
        tracking = Tracking(name, [TrackedTimePoint(scans[0], observations)], keys)
    result = assess_subject(
        tracking, settings, resolved=resolved, overrides_record=overrides_record, flags=flags
    )
    result["inputs"] = [
        {"timepoint": m.scan.label, "date": m.scan.date.isoformat(), "measure_dir": str(m.path)}
        for m in measured
    ]
    return result


def respond_table(path: Path, settings: Any, *, subject: str | None = None) -> dict[str, Any]:
    """Response objects of every patient of a reader's table."""
    from pipeline.response.assess import assess_subject
    from pipeline.response.table import patient_tables, read_table

    tables = patient_tables(read_table(path), str(path))
    if subject is not None:
        if subject not in tables:
            raise InputError(
                "--subject", f"patient {subject!r} is not in {path}", f"one of {', '.join(tables)}"
            )
        tables = {subject: tables[subject]}
    patients = []
    for patient in tables.values():
        flags = list(patient.flags)
        if len(patient.tracking.timepoints) == 1:
            flags.append(
                {
                    "code": "single_timepoint",
                    "severity": "info",
                    "message": "only one date: baseline measurements, no response",
                }
            )
        patients.append(
            assess_subject(patient.tracking, settings, reader_targets=patient.targets, flags=flags)
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "liverburden_version": __version__,
        "patients": patients,
    }


def run(args: argparse.Namespace) -> int:
    from pipeline.response.settings import ResponseSettings

    settings = load_settings(ResponseSettings, args.settings, "response")
    output = Path(args.output)
    if output.is_dir():
        raise InputError(output, "is a folder", "a file name such as response.json")
    if args.table and args.measure_dirs:
        raise InputError("--table", "give either measure folders or --table, not both")
    if not args.table and not args.measure_dirs:
        raise InputError(
            None, "no input", "one subject's measure folders, or --table MEASUREMENTS.csv"
        )
    if args.table and args.overrides:
        raise InputError(
            "--overrides",
            "overrides apply to measure folders; in table mode edit the table instead",
        )
    folders = [Path(p) for p in args.measure_dirs]
    refuse_overwriting_inputs([output], [*folders, args.table, args.settings, args.overrides])
    if args.table:
        result = respond_table(Path(args.table), settings, subject=args.subject)
        count = len(result["patients"])
        log.info("%d patient(s) assessed from %s", count, args.table)
    else:
        subject_result = respond_masks(
            folders,
            settings,
            subject=args.subject,
            overrides_path=Path(args.overrides) if args.overrides else None,
        )
        result = {
            "schema_version": SCHEMA_VERSION,
            "liverburden_version": __version__,
            **subject_result,
        }
        best = result["best_overall_response"]
        log.info(
            "%s: %d follow-up(s); best overall response RECIST %s, mRECIST %s, Choi %s, "
            "volumetric %s",
            result["subject"],
            len(result["timepoints"]),
            best["recist"],
            best["mrecist"],
            best["choi"],
            best["volumetric"],
        )
    write_json(result, output)
    log.info("wrote %s", output)
    return 0
