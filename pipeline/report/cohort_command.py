"""Collect subjects into cohort.csv and the cohort figures.

Reads every measure folder of the cohort (any order) and the response.json of
each subject with two or more time points; writes one CSV row per subject and
time point and, with --figures, waterfall.png, spider.png and involvement.png.

Example:

  liverburden cohort results/*/*/measure --responses results/*/response.json \\
      -o results/cohort.csv --figures results/cohort
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "measure", nargs="+", type=Path, help="measure folders of every subject and time point"
    )
    parser.add_argument(
        "--responses",
        nargs="+",
        type=Path,
        default=[],
        help="response.json of each followed subject",
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="CSV file to write (cohort.csv)"
    )
    parser.add_argument(
        "--figures", type=Path, help="folder for waterfall.png, spider.png, involvement.png"
    )
    parser.add_argument(
        "--settings",
        type=Path,
        help="YAML settings: the workflow config or its report: section",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import InputError
    from pipeline.io import atomic_path, refuse_overwriting_inputs, write_text
    from pipeline.measure.records import read_measurements
    from pipeline.report.cohort import cohort_figures, subject_rows, table_csv
    from pipeline.report.inputs import MeasuredScan, read_response
    from pipeline.report.settings import ReportSettings, involvement_bands
    from pipeline.settings import load_settings

    settings = load_settings(ReportSettings, args.settings, "report")
    if args.output.suffix.lower() != ".csv":
        raise InputError(
            args.output, "cohort table file name must end in .csv", "a file name ending in .csv"
        )
    outputs = [args.output] + ([args.figures] if args.figures else [])
    refuse_overwriting_inputs(outputs, [*args.measure, *args.responses])
    by_subject: dict[str, list[MeasuredScan]] = {}
    for folder in args.measure:
        scan = MeasuredScan(folder=folder, measurements=read_measurements(folder))
        if not scan.subject:
            raise InputError(
                folder / "measurements.json",
                "has no subject id",
                "measurements written with --subject",
            )
        by_subject.setdefault(scan.subject, []).append(scan)
    for subject, scans in by_subject.items():
        timepoints = [s.timepoint for s in scans]
        if len(set(timepoints)) != len(timepoints):
            raise InputError(
                "measure folders",
                f"subject {subject!r} has a time point twice ({', '.join(timepoints)})",
                "one measure folder per subject and time point",
            )
    responses = {}
    for path in args.responses:
        response = read_response(path)
        subject = response.get("subject")
        if subject not in by_subject:
            raise InputError(
                path,
                f"is for subject {subject!r}, which has no measure folder here",
                "the response.json of a subject whose measure folders are given",
            )
        if subject in responses:
            raise InputError(
                path,
                f"a second response file for subject {subject!r}",
                "one response.json per subject",
            )
        responses[subject] = response
    rows = []
    for subject, scans in by_subject.items():
        rows += subject_rows(scans, responses.get(subject))
    write_text(table_csv(rows), args.output)
    if args.figures:
        bands = involvement_bands([s.measurements for scans in by_subject.values() for s in scans])
        for name, png in cohort_figures(rows, responses, settings, bands).items():
            with atomic_path(args.figures / f"{name}.png") as temporary:
                temporary.write_bytes(png)
    log.info("wrote %s: %d rows of %d subjects", args.output, len(rows), len(by_subject))
    return 0
