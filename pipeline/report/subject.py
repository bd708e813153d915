"""One subject's self-contained HTML report.

Summary first (subject id, treatment, per time point involvement and band,
lesion count, each criterion's response, best overall response, flags), then
per time point the axial slices through the target lesions with liver and
tumour contours and RECIST calipers, the lesion table with identities across
time points, and the time courses of the sum of diameters, tumour volume and
involvement with the response thresholds marked.

Only subject ids and time-point names from the sample sheet appear; no DICOM
header field and no input path is printed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from pipeline.io import onto_grid_of, read_ct, read_image_file
from pipeline.report import figures
from pipeline.report.html import (
    badge,
    escape,
    figure,
    number_text,
    page,
    signed_text,
    table,
)
from pipeline.report.inputs import (
    CRITERIA,
    MeasuredScan,
    best_overall,
    flag_list,
    number,
    response_timepoint,
    response_word,
    sort_by_date,
)
from pipeline.report.settings import ReportSettings

log = logging.getLogger(__name__)

SEVERITY_ORDER = {"error": 0, "critical": 0, "warning": 1, "info": 2}


# ------------------------------------------------------------ lesion identities


@dataclasses.dataclass
class LesionTrack:
    """A lesion followed over time: its key, whether it is a target, ids per time point."""

    key: str
    target: bool
    ids: dict[str, list[Any]]  # timepoint -> lesion ids at that time point
    status: dict[str, str]  # timepoint -> matched / new / disappeared / split / merged ...


def _key_of(item: Any) -> str | None:
    if isinstance(item, dict):
        for name in ("key", "lesion", "name"):
            if item.get(name) is not None:
                return str(item[name])
        if item.get("id") is not None:
            return f"L{item['id']}"
        return None
    if item is None:
        return None
    return str(item) if not isinstance(item, int) else f"L{item}"


def _baseline_id(item: Any) -> Any:
    if isinstance(item, dict):
        for name in ("id", "baseline_id", "lesion_id"):
            if item.get(name) is not None:
                return item[name]
        ids = item.get("ids")
        if isinstance(ids, list) and ids:
            return ids[0]
    if isinstance(item, int):
        return item
    if isinstance(item, str) and item.startswith("L") and item[1:].isdigit():
        return int(item[1:])
    return None


def _entry_lesions(entry: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``lesions`` of a response time point as key -> {status, ids}."""
    if not entry:
        return {}
    lesions = entry.get("lesions")
    result: dict[str, dict[str, Any]] = {}
    if isinstance(lesions, dict):
        for key, value in lesions.items():
            result[str(key)] = (
                value if isinstance(value, dict) else {"status": str(value), "ids": []}
            )
    elif isinstance(lesions, list):
        for value in lesions:
            if isinstance(value, dict):
                key = _key_of(value)
                if key is not None:
                    result[key] = value
    return result


def lesion_tracks(
    scans: Sequence[MeasuredScan], response: dict[str, Any] | None
) -> list[LesionTrack]:
    """Lesion identities over time from ``response.json`` (targets first).

    Without a response (one time point) every lesion of the scan is its own
    track, the largest measurable ones first.
    """
    if not response or not scans:
        tracks = []
        for scan in scans:
            for lesion in scan.lesions:
                tracks.append(
                    LesionTrack(
                        key=f"L{lesion.get('id')}",
                        target=False,
                        ids={scan.timepoint: [lesion.get("id")]},
                        status={scan.timepoint: "baseline"},
                    )
                )
        return tracks
    baseline = response.get("baseline") or {}
    target_items = baseline.get("targets") or []
    targets = [k for k in (_key_of(t) for t in target_items) if k]
    target_baseline_ids = {_key_of(t): _baseline_id(t) for t in target_items}
    tracks: dict[str, LesionTrack] = {}

    def track(key: str) -> LesionTrack:
        if key not in tracks:
            tracks[key] = LesionTrack(key=key, target=key in targets, ids={}, status={})
        return tracks[key]

    for key in targets:
        track(key)
    first = scans[0]
    for item in [*target_items, *(baseline.get("non_targets") or [])]:
        key = _key_of(item)
        if key is None:
            continue
        lesion_id = (
            target_baseline_ids.get(key) if key in target_baseline_ids else _baseline_id(item)
        )
        entry = track(key)
        if lesion_id is not None:
            entry.ids.setdefault(first.timepoint, [lesion_id])
            entry.status.setdefault(first.timepoint, "baseline")
    for index, scan in enumerate(scans):
        entry_of_scan = (
            baseline
            if index == 0 and baseline.get("lesions")
            else response_timepoint(response, scan)
        )
        for key, value in _entry_lesions(entry_of_scan).items():
            entry = track(key)
            ids = value.get("ids")
            if ids is None and value.get("id") is not None:
                ids = [value["id"]]
            entry.ids[scan.timepoint] = list(ids or [])
            entry.status[scan.timepoint] = str(value.get("status", ""))
            if value.get("role") == "target":
                entry.target = True
    # baseline lesions that the response does not list (for example excluded ones)
    listed = {str(i) for t in tracks.values() for i in t.ids.get(first.timepoint, [])}
    for lesion in first.lesions:
        if str(lesion.get("id")) not in listed:
            track(f"L{lesion.get('id')}").ids[first.timepoint] = [lesion.get("id")]
            tracks[f"L{lesion.get('id')}"].status.setdefault(first.timepoint, "baseline")
    ordered = [tracks[k] for k in targets if k in tracks] + [
        t for k, t in tracks.items() if k not in targets
    ]
    return ordered


def lesions_to_show(
    scan: MeasuredScan, tracks: Sequence[LesionTrack], limit: int
) -> list[tuple[dict[str, Any], str]]:
    """``(lesion, label)`` of the lesions drawn for a scan.

    Every target present at the scan, then the largest other lesions
    (measurable first) until ``limit`` lesions are shown.
    """
    chosen: list[tuple[dict[str, Any], str]] = []
    seen: set[str] = set()
    for track in tracks:
        if not track.target:
            continue
        for lesion_id in track.ids.get(scan.timepoint, []):
            lesion = scan.lesion(lesion_id)
            if lesion is not None and str(lesion_id) not in seen:
                chosen.append((lesion, f"target {track.key}"))
                seen.add(str(lesion_id))
    key_of_id = {str(i): t.key for t in tracks for i in t.ids.get(scan.timepoint, [])}
    others = sorted(
        (lesion for lesion in scan.lesions if str(lesion.get("id")) not in seen),
        key=lambda lesion: (
            not bool(lesion.get("measurable")),
            -(number(lesion.get("longest_axial_diameter_mm")) or 0.0),
        ),
    )
    for lesion in others:
        if len(chosen) >= limit:
            break
        label = f"lesion {key_of_id.get(str(lesion.get('id')), 'L' + str(lesion.get('id')))}"
        chosen.append((lesion, label))
    return chosen


# ---------------------------------------------------------------- images


def _load_oriented(scan: MeasuredScan) -> figures.OrientedScan:
    """CT and the measure folder's liver and lesion maps of a scan, reoriented to LPS."""
    assert scan.image is not None
    ct = read_ct(scan.image).image
    maps = []
    for name in ("liver.nii.gz", "lesions.nii.gz"):
        path = scan.folder / name
        image = read_image_file(path, what=name)
        image = onto_grid_of(
            image, ct, path, "is not on the grid of the time point's CT", "the CT that was measured"
        )
        maps.append(image)
    return figures.oriented_scan(ct, maps[0], maps[1])


def _lesion_caption(lesion: dict[str, Any], label: str) -> str:
    parts = [f"<b>{escape(label)}</b> (id {escape(lesion.get('id'))})"]
    parts.append(f"longest {number_text(number(lesion.get('longest_axial_diameter_mm')), 1, 'mm')}")
    parts.append(f"short axis {number_text(number(lesion.get('short_axis_diameter_mm')), 1, 'mm')}")
    parts.append(f"volume {number_text(number(lesion.get('volume_ml')), 2, 'mL')}")
    parts.append(f"mean {number_text(number(lesion.get('mean_hu')), 0, 'HU')}")
    viable = number(lesion.get("viable_longest_axial_diameter_mm"))
    if viable is not None:
        parts.append(f"viable {number_text(viable, 1, 'mm')}")
    if lesion.get("measurable") is False:
        parts.append("not measurable")
    return ", ".join(parts)


def _lesion_view(lesion: dict[str, Any], label: str) -> figures.LesionView | None:
    longest = lesion.get("longest_axial_diameter_endpoints_mm")
    short = lesion.get("short_axis_endpoints_mm")
    point = None
    if isinstance(longest, list) and len(longest) == 2:
        point = [(a + b) / 2 for a, b in zip(longest[0], longest[1], strict=True)]
    elif isinstance(lesion.get("centroid_mm"), list):
        point = lesion["centroid_mm"]
    if point is None or lesion.get("id") is None:
        return None
    try:
        lesion_id = int(lesion["id"])
    except (TypeError, ValueError):
        return None
    return figures.LesionView(
        lesion_id=lesion_id,
        title=label,
        slice_point_xyz_mm=point,
        longest_endpoints_xyz_mm=longest
        if isinstance(longest, list) and len(longest) == 2
        else None,
        short_axis_endpoints_xyz_mm=short if isinstance(short, list) and len(short) == 2 else None,
    )


# ------------------------------------------------------------------- the page


def _response_cells(entry: dict[str, Any] | None, is_baseline: bool) -> list[str]:
    if is_baseline:
        return ['<span class="muted">baseline</span>'] * len(CRITERIA)
    if entry is None:
        return [badge(None)] * len(CRITERIA)
    return [badge(response_word(entry.get(key))) for key in CRITERIA]


def _collect_flags(
    scans: Sequence[MeasuredScan], response: dict[str, Any] | None
) -> list[tuple[str, dict[str, str]]]:
    flags: list[tuple[str, dict[str, str]]] = []
    for scan in scans:
        for flag in flag_list(scan.measurements.get("flags")):
            flags.append((scan.timepoint, flag))
    if response:
        for item in response.get("flags") or []:
            where = (
                str(item.get("timepoint") or "response") if isinstance(item, dict) else "response"
            )
            for flag in flag_list([item]):
                flags.append((where, flag))
        for entry in response.get("timepoints", []):
            if not isinstance(entry, dict):
                continue
            where = str(entry.get("timepoint") or entry.get("date") or "")
            matching = entry.get("matching")
            if isinstance(matching, dict):
                for flag in flag_list(matching.get("flags")):
                    flags.append((f"{where} matching", flag))
            for flag in flag_list(entry.get("flags")):
                flags.append((where, flag))
    unique: dict[tuple[str, str, str], tuple[str, dict[str, str]]] = {}
    for where, flag in flags:
        unique.setdefault((where, flag["code"], flag["message"]), (where, flag))
    return sorted(
        unique.values(), key=lambda item: SEVERITY_ORDER.get(item[1]["severity"].lower(), 1)
    )


def _flags_html(flags: Sequence[tuple[str, dict[str, str]]], notes: Sequence[str]) -> str:
    if not flags and not notes:
        return '<div class="flags none">No flags or warnings.</div>'
    has_error = any(flag["severity"].lower() in ("error", "critical") for _, flag in flags)
    items = []
    for where, flag in flags:
        severity = flag["severity"].lower()
        code = f" <code>{escape(flag['code'])}</code>" if flag["code"] else ""
        items.append(
            f'<li class="{escape(severity)}"><b>{escape(severity.upper())}</b> '
            f"({escape(where)}){code}: "
            f"{escape(flag['message'])}</li>"
        )
    for note in notes:
        items.append(f"<li><b>NOTE</b>: {escape(note)}</li>")
    css = "flags error" if has_error else "flags"
    return f'<div class="{css}"><b>Flags and warnings</b><ul>{"".join(items)}</ul></div>'


def _summary_table(scans: Sequence[MeasuredScan], response: dict[str, Any] | None) -> str:
    header = [
        "time point",
        "date",
        "treatment",
        "involvement",
        "band",
        "lesions",
        "tumour volume",
        "liver volume",
        "sum of target diameters",
        "change from baseline",
        *CRITERIA.values(),
    ]
    rows = []
    for index, scan in enumerate(scans):
        m = scan.measurements
        entry = response_timepoint(response, scan)
        recist = entry.get("recist") if isinstance(entry, dict) else None
        target_sum = number(recist.get("target_sum_mm")) if isinstance(recist, dict) else None
        if target_sum is None and index == 0 and response:
            target_sum = number((response.get("baseline") or {}).get("sum_mm"))
        change = (
            number(recist.get("change_from_baseline_percent")) if isinstance(recist, dict) else None
        )
        rows.append(
            [
                f"<b>{escape(scan.timepoint)}</b>",
                escape(scan.date or "n/a"),
                escape(scan.treatment) or '<span class="muted">-</span>',
                number_text(number(m.get("involvement_percent")), 1, "%"),
                escape(m.get("involvement_band") or "n/a"),
                escape(m.get("lesion_count")),
                number_text(number(m.get("tumor_volume_ml")), 1, "mL"),
                number_text(number(m.get("liver_volume_ml")), 0, "mL"),
                number_text(target_sum, 1, "mm") if response else '<span class="muted">-</span>',
                signed_text(change) if index > 0 else '<span class="muted">-</span>',
                *(
                    _response_cells(entry, index == 0)
                    if response
                    else ['<span class="muted">-</span>'] * len(CRITERIA)
                ),
            ]
        )
    return table(header, rows, numeric=[3, 5, 6, 7, 8, 9])


def _best_html(response: dict[str, Any] | None) -> str:
    if not response:
        return ""
    best = best_overall(response)
    boxes = "".join(
        f'<div><span class="label">{escape(name)}</span>{badge(best[key])}</div>'
        for key, name in CRITERIA.items()
    )
    return f'<h3>Best overall response</h3><div class="best">{boxes}</div>'


def _lesion_table(scans: Sequence[MeasuredScan], tracks: Sequence[LesionTrack]) -> str:
    header = ["lesion", "role"] + [escape(scan.timepoint) for scan in scans]
    rows = []
    for track in tracks:
        cells = [f"<b>{escape(track.key)}</b>", "target" if track.target else "non-target"]
        for scan in scans:
            ids = track.ids.get(scan.timepoint)
            status = track.status.get(scan.timepoint, "")
            if not ids:
                cells.append(f'<span class="muted">{escape(status) if status else "-"}</span>')
                continue
            parts = []
            for lesion_id in ids:
                lesion = scan.lesion(lesion_id) or {}
                parts.append(
                    f"id {escape(lesion_id)}: "
                    f"{number_text(number(lesion.get('longest_axial_diameter_mm')), 1, 'mm')}"
                    f" / {number_text(number(lesion.get('volume_ml')), 2, 'mL')}"
                )
            label = (
                f' <span class="muted">({escape(status)})</span>'
                if status and status != "baseline"
                else ""
            )
            cells.append("<br>".join(parts) + label)
        rows.append(cells)
    if not rows:
        return '<p class="muted">No lesions found at any time point.</p>'
    return table(header, rows)


def _timecourse_html(
    scans: Sequence[MeasuredScan],
    response: dict[str, Any] | None,
    settings: ReportSettings,
    bands: Sequence[float],
) -> str:
    dates = [scan.date for scan in scans]
    if any(d is None for d in dates):
        return '<p class="muted">Time courses need a study date for every time point.</p>'
    response_settings = (response or {}).get("settings") or {}
    entries = [response_timepoint(response, scan) for scan in scans]
    plots = []

    def criterion_value(entry: dict[str, Any] | None, criterion: str, name: str) -> float | None:
        block = entry.get(criterion) if isinstance(entry, dict) else None
        return number(block.get(name)) if isinstance(block, dict) else None

    if response:
        sums = [criterion_value(e, "recist", "target_sum_mm") for e in entries]
        baseline_sum = number((response.get("baseline") or {}).get("sum_mm"))
        if sums and sums[0] is None:
            sums[0] = baseline_sum
        viable = [criterion_value(e, "mrecist", "target_sum_mm") for e in entries]
        pr = number(response_settings.get("partial_response_percent")) or -30.0
        pd_percent = number(response_settings.get("progression_percent")) or 20.0
        pd_mm = number(response_settings.get("progression_minimum_increase_mm"))
        pd_mm = 5.0 if pd_mm is None else pd_mm
        nadirs = []
        nadir: float | None = None
        for value in sums:
            nadirs.append(
                None if nadir is None else max(nadir * (1 + pd_percent / 100), nadir + pd_mm)
            )
            if value is not None:
                nadir = value if nadir is None else min(nadir, value)
        series = [figures.Series("RECIST sum of target diameters", sums)]
        if any(v is not None for v in viable[1:]):
            series.append(
                figures.Series(
                    "mRECIST sum of viable diameters", viable, colour="#b45309", style="--"
                )
            )
        thresholds = []
        if baseline_sum:
            thresholds.append(
                figures.ThresholdLine(
                    f"PR: {pr:+g} % from baseline", [baseline_sum * (1 + pr / 100)], "#1a9850"
                )
            )
        thresholds.append(
            figures.ThresholdLine(
                f"PD: {pd_percent:+g} % and +{pd_mm:g} mm over nadir", nadirs, "#d73027"
            )
        )
        annotations = [None] + [
            response_word(e.get("recist")) if isinstance(e, dict) else None for e in entries[1:]
        ]
        png = figures.timecourse_png(
            dates,
            series,
            thresholds,
            title="Sum of target diameters",
            ylabel="mm",
            dpi=settings.figure_dpi,
            annotations=annotations,
        )
        plots.append(
            figure(
                png,
                "sum of target diameters over time",
                "RECIST 1.1 targets; dashed: thresholds",
                plot=True,
            )
        )
    volumes = [number(scan.measurements.get("tumor_volume_ml")) for scan in scans]
    volume_thresholds = []
    if len(volumes) > 1 and volumes[0]:
        vol_pr = number(response_settings.get("volumetric_partial_response_percent")) or -65.0
        vol_pd = number(response_settings.get("volumetric_progression_percent")) or 73.0
        volume_thresholds.append(
            figures.ThresholdLine(
                f"PR: {vol_pr:+g} % from baseline", [volumes[0] * (1 + vol_pr / 100)], "#1a9850"
            )
        )
        nadir_line = []
        nadir = None
        for value in volumes:
            nadir_line.append(None if nadir is None else nadir * (1 + vol_pd / 100))
            if value is not None:
                nadir = value if nadir is None else min(nadir, value)
        volume_thresholds.append(
            figures.ThresholdLine(f"PD: {vol_pd:+g} % over nadir", nadir_line, "#d73027")
        )
    annotations = [None] + [
        response_word(e.get("volumetric")) if isinstance(e, dict) else None for e in entries[1:]
    ]
    png = figures.timecourse_png(
        dates,
        [figures.Series("total tumour volume", volumes, colour="#7b3294")],
        volume_thresholds,
        title="Tumour volume",
        ylabel="mL",
        dpi=settings.figure_dpi,
        annotations=annotations if response else (),
    )
    caption = "all lesions" + ("; dashed: volumetric thresholds" if volume_thresholds else "")
    plots.append(figure(png, "tumour volume over time", caption, plot=True))
    involvement = [number(scan.measurements.get("involvement_percent")) for scan in scans]
    png = figures.timecourse_png(
        dates,
        [figures.Series("hepatic involvement", involvement, colour="#c2410c")],
        [],
        title="Hepatic involvement",
        ylabel="% of liver volume",
        dpi=settings.figure_dpi,
        bands=bands,
    )
    plots.append(
        figure(png, "hepatic involvement over time", "dotted: involvement bands", plot=True)
    )
    return f'<div class="figures">{"".join(plots)}</div>'


def _swatch(colour: str, label: str) -> str:
    return f'<span><span class="swatch" style="background:{colour}"></span>{escape(label)}</span>'


def build_report(
    subject: str,
    scans: Sequence[MeasuredScan],
    response: dict[str, Any] | None,
    settings: ReportSettings,
    bands: Sequence[float] = (25.0, 50.0, 75.0),
) -> str:
    """The HTML of a subject's report.

    Parameters
    ----------
    subject
        Subject id (from the sample sheet).
    scans
        Each time point's measure folder, measurements and CT (any order).
    response
        ``response.json`` of the subject, or ``None`` (one time point).
    settings
        Display settings.
    bands
        Hepatic involvement band thresholds in % (the measurement's).
    """
    scans = sort_by_date(list(scans))
    tracks = lesion_tracks(scans, response)
    notes = []
    if response is None:
        notes.append(
            "one time point only: measured, no response assessment"
            if len(scans) == 1
            else "no response file given: no response assessment"
        )
    distinct = list(dict.fromkeys(scan.treatment for scan in scans if scan.treatment))
    if len(distinct) == 1:
        treatments = distinct
    else:
        treatments = [f"{scan.timepoint}: {scan.treatment}" for scan in scans if scan.treatment]
    parts = [
        f"<h1>Liver tumour burden: {escape(subject)}</h1>",
        f'<p class="muted">{len(scans)} time point(s), {escape(scans[0].date or "n/a")} to '
        f"{escape(scans[-1].date or 'n/a')}"
        + (
            f" &middot; treatment: {escape('; '.join(treatments))}"
            if treatments
            else " &middot; treatment: not recorded"
        )
        + "</p>",
        _flags_html(_collect_flags(scans, response), notes),
        "<h2>Summary</h2>",
        _summary_table(scans, response),
        _best_html(response),
    ]
    if response:
        reasons = []
        for scan in scans[1:]:
            entry = response_timepoint(response, scan)
            recist = entry.get("recist") if isinstance(entry, dict) else None
            why = recist.get("reasons") if isinstance(recist, dict) else None
            if why:
                text = "; ".join(str(r) for r in why) if isinstance(why, list) else str(why)
                reasons.append(f"<li><b>{escape(scan.timepoint)}</b>: {escape(text)}</li>")
        if reasons:
            parts.append(
                '<p class="muted">RECIST 1.1 reasoning:</p>'
                f'<ul class="muted">{"".join(reasons)}</ul>'
            )
    parts.append("<h2>Time courses</h2>")
    parts.append(_timecourse_html(scans, response, settings, bands))
    parts.append("<h2>Lesions</h2>")
    parts.append(
        '<p class="muted">Lesion keys follow a lesion across time points '
        "(matched by the response stage); "
        "ids are the lesion numbers of each scan's measurement.</p>"
    )
    parts.append(_lesion_table(scans, tracks))
    parts.append("<h2>Lesion slices</h2>")
    parts.append(
        '<p class="legend">'
        + _swatch(figures.LIVER_COLOUR, "liver")
        + _swatch(figures.TUMOUR_COLOUR, "tumour")
        + _swatch(figures.HIGHLIGHT_COLOUR, "longest axial diameter")
        + _swatch(figures.SHORT_AXIS_COLOUR, "short axis")
        + f"<span>CT window W{settings.window_width_hu:g} / L{settings.window_level_hu:g} HU, "
        "patient's right on the left</span></p>"
    )
    for scan in scans:
        parts.append(f"<h3>{escape(scan.timepoint)} ({escape(scan.date or 'n/a')})</h3>")
        shown = lesions_to_show(scan, tracks, settings.lesions_per_timepoint)
        if scan.image is None:
            parts.append('<p class="muted">No CT given for this time point.</p>')
            continue
        if not shown:
            parts.append('<p class="muted">No lesion at this time point.</p>')
            continue
        oriented = _load_oriented(scan)
        items = []
        for lesion, label in shown:
            view = _lesion_view(lesion, label)
            if view is None:
                continue
            png = figures.lesion_slice_png(
                oriented,
                view,
                window_width_hu=settings.window_width_hu,
                window_level_hu=settings.window_level_hu,
                crop_margin_mm=settings.crop_margin_mm,
                dpi=settings.figure_dpi,
            )
            items.append(figure(png, f"{scan.timepoint} {label}", _lesion_caption(lesion, label)))
        del oriented
        parts.append(f'<div class="figures">{"".join(items)}</div>')
    return page(f"liverburden report {subject}", "\n".join(parts))
