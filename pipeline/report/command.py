"""Write a subject's self-contained HTML report.

Reads the measure folders of one subject (one per time point, any order), the
CT of each time point (same order, for the lesion slices) and, with two or
more time points, the subject's response.json. The report embeds every figure,
so the one HTML file opens offline in any browser.

Example:

  liverburden report results/P01/baseline/measure results/P01/fu1/measure \\
      --images P01/base.nii.gz P01/fu1.nii.gz --response results/P01/response.json \\
      --treatment "fu1=TACE 2023-02-01" -o results/P01/report.html
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "measure", nargs="+", type=Path, help="measure folders of the subject's time points"
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="HTML file to write")
    parser.add_argument(
        "--images",
        nargs="+",
        type=Path,
        metavar="CT",
        help="CT of each time point, in the order of the measure folders (file or DICOM folder); "
        "without them the report has no lesion slices",
    )
    parser.add_argument(
        "--response", type=Path, help="the subject's response.json (two or more time points)"
    )
    parser.add_argument(
        "--subject", help="subject id shown in the report (default: from the measurements)"
    )
    parser.add_argument(
        "--treatment",
        action="append",
        default=[],
        metavar="TIMEPOINT=TEXT",
        help="treatment text of a time point, shown in the report (repeatable)",
    )
    parser.add_argument(
        "--settings",
        type=Path,
        help="YAML settings: the workflow config or its report: section",
    )


def run(args: argparse.Namespace) -> int:
    from pipeline.errors import InputError
    from pipeline.io import refuse_overwriting_inputs, write_text
    from pipeline.measure.records import read_measurements
    from pipeline.report.inputs import MeasuredScan, read_response
    from pipeline.report.settings import ReportSettings, involvement_bands
    from pipeline.report.subject import build_report
    from pipeline.settings import load_settings

    settings = load_settings(ReportSettings, args.settings, "report")
    output: Path = args.output
    if output.suffix.lower() not in (".html", ".htm"):
        raise InputError(
            output, "report file name must end in .html", "a file name ending in .html or .htm"
        )
    if args.images is not None and len(args.images) != len(args.measure):
        raise InputError(
            "--images",
            f"{len(args.images)} CT(s) for {len(args.measure)} measure folder(s)",
            "one CT per measure folder, in the same order",
        )
    refuse_overwriting_inputs([output], [*args.measure, *(args.images or []), args.response])
    scans = []
    for index, folder in enumerate(args.measure):
        measurements = read_measurements(folder)
        image = args.images[index] if args.images else None
        if image is not None and not image.exists():
            raise InputError(image, "CT not found", "the CT that was measured")
        scans.append(MeasuredScan(folder=folder, measurements=measurements, image=image))
    subjects = {scan.subject for scan in scans if scan.subject}
    if len(subjects) > 1:
        raise InputError(
            "measure folders",
            f"belong to different subjects ({', '.join(sorted(subjects))})",
            "one subject's folders",
        )
    subject = args.subject or (subjects.pop() if subjects else None)
    if not subject:
        raise InputError(
            "--subject",
            "no subject id given and none in the measurements",
            "--subject ID, or measurements written with measure --subject",
        )
    if args.subject and subjects and args.subject not in subjects:
        raise InputError(
            "--subject",
            f"{args.subject!r} differs from the measurements' subject {sorted(subjects)[0]!r}",
            "the subject id of the measurements (or no --subject)",
        )
    timepoints = [scan.timepoint for scan in scans]
    if len(set(timepoints)) != len(timepoints):
        raise InputError(
            "measure folders",
            f"time points repeat ({', '.join(timepoints)})",
            "one folder per time point",
        )
    for item in args.treatment:
        name, separator, text = item.partition("=")
        if not separator or name not in timepoints:
            raise InputError(
                "--treatment",
                f"{item!r} does not name a time point",
                "TIMEPOINT=TEXT with one of " + ", ".join(timepoints),
            )
        scans[timepoints.index(name)].treatment = " ".join(text.split())
    response = read_response(args.response) if args.response else None
    if response is not None and response.get("subject") not in (None, subject):
        raise InputError(
            args.response,
            f"is for subject {response.get('subject')!r}, not {subject!r}",
            f"the response.json of subject {subject!r}",
        )
    bands = involvement_bands([scan.measurements for scan in scans])
    html = build_report(subject, scans, response, settings, bands)
    write_text(html, output)
    log.info("wrote %s (%d time points, %.0f kB)", output, len(scans), len(html) / 1024)
    return 0
