"""Measure liver, tumour burden and each lesion of one scan.

Reads a portal-venous CT (file or DICOM folder) and its label map (0
background, 1 liver parenchyma, 2 tumour, on the CT's grid) and writes, into
OUTDIR:

  measurements.json  liver and tumour volumes, involvement %, lesion list with
                     longest axial diameter, short axis, attenuation (and the
                     viable part with --arterial), flags and settings used
  lesions.csv        one row per lesion
  lesions.nii.gz     lesion instance map (uint16, ids 1..N by volume, largest first)
  liver.nii.gz       liver mask including tumour (uint8)
  viable.nii.gz      viable voxels of each lesion by id (with --arterial only)

When SEG was written by `liverburden segment`, its provenance JSON beside it
(segmentation.nii.gz -> segmentation.json) names the model, and the model's
flags (e.g. low_liver_confidence) are carried into measurements.json as
segmentation_<flag> warnings.

Example:
  liverburden measure ct.nii.gz labels.nii.gz -o results/P01/baseline/measure \\
      --date 2024-03-01 --timepoint baseline --subject P01
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
from pathlib import Path
from typing import Any

from pipeline.errors import InputError

log = logging.getLogger(__name__)

MEASUREMENTS_FILE = "measurements.json"
LESIONS_TABLE_FILE = "lesions.csv"
LESION_MAP_FILE = "lesions.nii.gz"
LIVER_MASK_FILE = "liver.nii.gz"
VIABLE_MAP_FILE = "viable.nii.gz"

#: Largest length accepted for --subject and --timepoint.
MAX_LABEL_LENGTH = 128


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "image",
        type=Path,
        metavar="IMAGE",
        help="portal-venous CT: NIfTI/NRRD/MHA file or DICOM folder",
    )
    parser.add_argument(
        "segmentation", type=Path, metavar="SEG", help="label map on the CT's grid (0/1/2)"
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUTDIR", help="output folder"
    )
    parser.add_argument(
        "--date", help="study date YYYY-MM-DD (default: the DICOM StudyDate, if any)"
    )
    parser.add_argument("--timepoint", metavar="LABEL", help="time point label (e.g. baseline)")
    parser.add_argument("--subject", metavar="ID", help="subject id (never a patient identifier)")
    parser.add_argument(
        "--arterial",
        type=Path,
        metavar="IMAGE",
        help="arterial-phase CT of the same examination (mRECIST viable tumour)",
    )
    parser.add_argument(
        "--series",
        metavar="UID",
        help="SeriesInstanceUID to read when IMAGE is a DICOM folder with several series",
    )
    parser.add_argument(
        "--settings",
        type=Path,
        metavar="FILE.yaml",
        help="settings: the workflow config or its measure: section",
    )
    parser.add_argument(
        "--min-lesion-volume-ml",
        type=float,
        metavar="V",
        help="components below V mL are noise (default 0.05)",
    )
    parser.add_argument(
        "--split-touching",
        action="store_true",
        default=None,
        help="split touching lesions by a watershed of the distance map",
    )


def _label(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if len(text) > MAX_LABEL_LENGTH or not text.isprintable():
        raise InputError(
            option,
            f"not a usable label: {value!r}",
            f"printable text up to {MAX_LABEL_LENGTH} characters",
        )
    return text


def lesion_table(lesions: list[dict[str, Any]]) -> str:
    """``lesions.csv``: the lesion fields flattened, one row per lesion.

    Points become ``<name>_x_mm`` ..., endpoint pairs ``<name>_1_x_mm`` ...
    (``<name>`` without its ``_endpoints_mm`` suffix), the bounding box
    ``bounding_box_x0 ... bounding_box_z1``; empty cells for null values.
    """
    from pipeline.measure.scan import LESION_KEYS

    columns: list[str] = []
    for key in LESION_KEYS:
        if key == "centroid_mm":
            columns += [f"centroid_{a}_mm" for a in "xyz"]
        elif key.endswith("_endpoints_mm"):
            stem = key.removesuffix("_endpoints_mm")
            columns += [f"{stem}_{end}_{a}_mm" for end in (1, 2) for a in "xyz"]
        elif key == "bounding_box_index":
            columns += [f"bounding_box_{a}{end}" for end in (0, 1) for a in "xyz"]
        else:
            columns.append(key)

    def cell(value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return repr(value) if math.isfinite(value) else ""
        return str(value)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for lesion in lesions:
        row: list[Any] = []
        for key in LESION_KEYS:
            value = lesion.get(key)
            if key == "centroid_mm":
                row += list(value) if value is not None else [None] * 3
            elif key.endswith("_endpoints_mm"):
                row += [c for point in value for c in point] if value is not None else [None] * 6
            elif key == "bounding_box_index":
                row += [c for corner in value for c in corner] if value is not None else [None] * 6
            else:
                row.append(value)
        writer.writerow([cell(v) for v in row])
    return buffer.getvalue()


#: Suffixes of label maps whose ``liverburden segment`` provenance lies beside them
#: (``segmentation.nii.gz`` -> ``segmentation.json``).
LABEL_MAP_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def segmentation_provenance_path(segmentation: Path) -> Path | None:
    """Where ``liverburden segment`` put the provenance JSON of ``segmentation``."""
    name = segmentation.name
    for suffix in LABEL_MAP_SUFFIXES:
        if name.lower().endswith(suffix):
            return segmentation.with_name(name[: -len(suffix)] + ".json")
    return None


def segmentation_flags(
    segmentation: Path, liver_volume_ml: float
) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """The model and flags of the segmentation's provenance JSON, when there is one.

    The flags ``liverburden segment`` raised (``low_liver_confidence`` ...) travel
    into the measurements as warnings with code ``segmentation_<flag>``, so that
    they reach the response, the cohort table and the report. A JSON beside the
    label map that ``segment`` did not write is ignored. When the label map's
    liver volume differs from the one the model produced, the label map was
    edited afterwards: the flag ``segmentation_edited`` says so (the model's
    flags are kept, as they were raised for the unedited map).

    Returns
    -------
    (summary, flags)
        ``summary`` is ``None`` without a provenance JSON.
    """
    import json

    path = segmentation_provenance_path(segmentation)
    if path is None or not path.is_file():
        return None, []
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.debug("%s is not a segmentation provenance record: ignored", path)
        return None, []
    if not isinstance(record, dict) or record.get("kind") != "segmentation":
        return None, []
    raw_flags = record.get("flags", [])
    descriptions = record.get("flag_descriptions") or {}
    if not isinstance(raw_flags, list) or not all(isinstance(f, str) for f in raw_flags):
        raise InputError(path, f"flags must be a list of names, not {raw_flags!r}")
    flags = [
        {
            "code": f"segmentation_{flag}",
            "severity": "warning",
            "message": "segmentation: "
            + str(descriptions.get(flag, flag) if isinstance(descriptions, dict) else flag),
        }
        for flag in raw_flags
    ]
    model = record.get("model") if isinstance(record.get("model"), dict) else {}
    statistics = record.get("statistics") if isinstance(record.get("statistics"), dict) else {}
    produced = statistics.get("liver_volume_ml")
    if isinstance(produced, int | float) and not math.isclose(
        float(produced), liver_volume_ml, rel_tol=1e-6, abs_tol=1e-6
    ):
        flags.append(
            {
                "code": "segmentation_edited",
                "severity": "info",
                "message": f"the label map's liver ({liver_volume_ml:.1f} mL) differs from the "
                f"model's ({float(produced):.1f} mL): it was edited after segmentation",
            }
        )
    summary = {
        "model": model.get("name"),
        "model_version": model.get("version"),
        "flags": list(raw_flags),
    }
    return summary, flags


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from pipeline import SCHEMA_VERSION, __version__
    from pipeline.io import (
        iso_date,
        output_directory,
        read_ct,
        read_label_map,
        refuse_overwriting_inputs,
        write_image,
        write_json,
        write_text,
    )
    from pipeline.measure.scan import measure_scan
    from pipeline.measure.settings import MeasureSettings, check_settings
    from pipeline.settings import load_settings, override

    # --- check everything before reading images or writing anything
    settings = load_settings(MeasureSettings, args.settings, "measure")
    check_settings(settings, args.settings or "settings")
    if args.min_lesion_volume_ml is not None:
        value = args.min_lesion_volume_ml
        if not math.isfinite(value) or value < 0:
            raise InputError("--min-lesion-volume-ml", f"is {value!r}", "a volume in mL >= 0")
    settings = override(
        settings,
        min_lesion_volume_ml=args.min_lesion_volume_ml,
        split_touching_lesions=args.split_touching,
    )
    date = iso_date(args.date, "--date")
    subject = _label(args.subject, "--subject")
    timepoint = _label(args.timepoint, "--timepoint")
    inputs = [args.image, args.segmentation, args.arterial, args.settings]
    refuse_overwriting_inputs([args.output], inputs)
    for name, path in (("--arterial", args.arterial),):
        if path is not None and Path(path).resolve() == Path(args.image).resolve():
            raise InputError(name, "is the portal-venous image itself", "the arterial-phase CT")

    scan = read_ct(args.image, args.series)
    labels = read_label_map(args.segmentation, scan.image, require_liver=True)
    arterial = read_ct(args.arterial).image if args.arterial is not None else None
    result = measure_scan(
        scan.image,
        labels,
        settings,
        arterial=arterial,
        labels_source=args.segmentation,
        arterial_source=args.arterial or "--arterial",
    )
    measurements: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "liverburden_version": __version__,
        "subject": subject,
        "timepoint": timepoint,
        "study_date": date if date is not None else scan.study_date,
        "series_instance_uid": scan.dicom.series_instance_uid if scan.dicom else None,
        **result.values,
    }
    measurements["settings"] = dataclasses.asdict(settings)
    provenance, provenance_flags = segmentation_flags(
        Path(args.segmentation), float(result.values["liver_volume_ml"])
    )
    measurements["segmentation"] = provenance
    measurements["flags"] = [*provenance_flags, *measurements["flags"]]

    with output_directory(args.output) as folder:
        write_json(measurements, folder / MEASUREMENTS_FILE)
        write_text(lesion_table(measurements["lesions"]), folder / LESIONS_TABLE_FILE)
        write_image(result.lesion_map, folder / LESION_MAP_FILE)
        write_image(result.liver_mask, folder / LIVER_MASK_FILE)
        if result.viable_map is not None:
            write_image(result.viable_map, folder / VIABLE_MAP_FILE)
    values = measurements
    involvement = values["involvement_percent"]
    log.info(
        "liver %.0f mL, tumour %.1f mL (%s %% involvement), %d lesion(s), %d measurable; wrote %s",
        values["liver_volume_ml"],
        values["tumor_volume_ml"],
        "n/a" if involvement is None else f"{involvement:.1f}",
        values["lesion_count"],
        values["measurable_lesion_count"],
        args.output,
    )
    for flag in values["flags"]:
        log.warning("%s: %s", flag["code"], flag["message"])
    return 0
