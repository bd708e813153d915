"""Every corpus case: CT inputs x the commands that read CTs, label maps x the
commands that read label maps, measure folders x respond/report/cohort,
sample sheets, the noisy-segmentation stress case and the awkward-but-valid
inputs whose numbers are checked."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from tests.corpus import images, labels, measurements, sheets
from tests.corpus.base import (
    BASE_DATE,
    Case,
    Invocation,
    Workspace,
    fast_segment_args,
    image_like,
    sphere,
    write_image,
)

CASES: list[Case] = []


def _add(case: Case) -> None:
    if any(c.name == case.name for c in CASES):
        raise ValueError(f"duplicate corpus case {case.name}")
    CASES.append(case)


def get_case(name: str) -> Case:
    for case in CASES:
        if case.name == name:
            return case
    raise KeyError(name)


def case_names(expect: str | None = None, command: str | None = None) -> list[str]:
    return [
        c.name
        for c in CASES
        if (expect is None or c.expect == expect) and (command is None or c.command == command)
    ]


def cases_by_category() -> dict[str, dict[str, int]]:
    """category -> {"error": n, "handled": n} (for docs and the report)."""
    table: dict[str, dict[str, int]] = {}
    for case in CASES:
        row = table.setdefault(case.category, {"error": 0, "handled": 0})
        row[case.expect] += 1
    return table


def read_measurements(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "measurements.json").read_text(encoding="utf-8"))


# ------------------------------------------------------------- number checks

#: Relative tolerance of volumes and diameters that must not change at all
#: (the same voxels read another way).
EXACT = 1e-6


def assert_same_measurements(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """The same liver, tumour and lesions (volumes, diameters, attenuation)."""
    for key in (
        "liver_volume_ml",
        "liver_parenchyma_volume_ml",
        "tumor_volume_ml",
        "involvement_percent",
        "liver_mean_hu",
        "tumor_mean_hu",
    ):
        assert np.isclose(found[key], expected[key], rtol=EXACT, atol=1e-9), (
            key,
            found[key],
            expected[key],
        )
    assert found["lesion_count"] == expected["lesion_count"]
    assert found["noise_component_count"] == expected["noise_component_count"]
    for a, b in zip(found["lesions"], expected["lesions"], strict=True):
        for key in ("volume_ml", "longest_axial_diameter_mm", "short_axis_diameter_mm", "mean_hu"):
            assert np.isclose(a[key], b[key], rtol=EXACT, atol=1e-6), (key, a[key], b[key])


def labels_on_grid_of(ws: Workspace, ct: Path, folder: Path) -> Path:
    """The base label array on the grid that ``read_ct(ct)`` gives."""
    from pipeline.io import read_ct

    reference = read_ct(ct).image
    return write_image(image_like(ws.base.labels_zyx, reference), folder / "labels-on-grid.nii.gz")


# ------------------------------------------------------------ CT input cases

CtBuilder = Callable[[Workspace, Path], tuple[Path, tuple[str, ...]]]


def _ct_invocation(
    command: str, builder: CtBuilder, env: dict[str, str] | None = None, handled_check: bool = False
) -> Callable[[Workspace], Invocation]:
    def build(ws: Workspace) -> Invocation:
        folder = ws.folder(command)
        ct, fragments = ws.input_of(builder)
        out = folder / "out"
        environment = dict(env or {})
        if command == "measure":
            seg = labels_on_grid_of(ws, ct, folder) if handled_check else ws.labels_path
            args = [
                "measure",
                str(ct),
                str(seg),
                "-o",
                str(out / "measure"),
                "--subject",
                "S1",
                "--timepoint",
                "baseline",
                "--date",
                BASE_DATE,
            ]
            outputs = [out / "measure"]

            def check(result: Any) -> None:
                assert_same_measurements(
                    read_measurements(out / "measure"), read_measurements(ws.baseline_measure)
                )

            return Invocation(
                args, outputs, fragments, environment, check if handled_check else None
            )
        if command == "segment":
            seg = out / "segmentation.nii.gz"
            args = fast_segment_args(ct, seg, ws.bundle)

            def check_segment(result: Any) -> None:
                from pipeline.io import read_ct, same_grid

                written = sitk.ReadImage(str(seg))
                assert same_grid(written, read_ct(ct).image)
                assert (out / "segmentation.json").is_file()

            return Invocation(
                args,
                [seg, out / "segmentation.json"],
                fragments,
                environment,
                check_segment if handled_check else None,
            )
        if command == "report":
            html = out / "report.html"
            args = ["report", str(ws.baseline_measure), "--images", str(ct), "-o", str(html)]
            return Invocation(args, [html], fragments, environment)
        if command == "dicom-seg":
            target = out / "segmentation.dcm"
            seg = labels_on_grid_of(ws, ct, folder) if handled_check else ws.labels_path
            args = ["dicom-seg", str(seg), str(ct), "-o", str(target)]

            def check_dicom_seg(result: Any) -> None:
                import pydicom

                written = pydicom.dcmread(target)
                assert written.Modality == "SEG"

            return Invocation(
                args, [target], fragments, environment, check_dicom_seg if handled_check else None
            )
        if command == "train":
            table = folder / "cases.tsv"
            table.write_text(f"image\tlabel\n{ct}\t{ws.labels_path}\n", encoding="utf-8")
            cache = out / "cache"
            args = ["train", "prepare", str(table), "--cache", str(cache), "--stage", "liver"]
            return Invocation(args, [cache], fragments, environment)
        raise ValueError(command)

    return build


def _ct_cases(
    category: str,
    name: str,
    builder: CtBuilder,
    commands: tuple[str, ...],
    *,
    expect: str = "error",
    env: dict[str, str] | None = None,
    description: str = "",
) -> None:
    for command in commands:
        _add(
            Case(
                f"{command}:{name}",
                category,
                command,
                expect,
                _ct_invocation(command, builder, env, handled_check=expect == "handled"),
                description or (builder.__doc__ or "").strip().split("\n")[0],
            )
        )


# Every CT case runs through ``measure`` (all CT reading is pipeline.io.read_ct);
# a representative part also through the other commands that read CTs.
for _name, _builder, _commands in (
    ("missing", images.missing, ("measure", "segment", "report", "train")),
    ("empty", images.empty, ("measure", "segment")),
    ("text-named-nii", images.text_named_nifti, ("measure", "train")),
    ("text-named-nii-gz", images.text_named_gzip_nifti, ("measure",)),
    ("png-image", images.png_image, ("measure", "segment")),
    ("truncated-gzip", images.truncated_gzip, ("measure", "segment", "report", "train")),
    ("truncated-payload", images.truncated_payload, ("measure", "segment")),
    ("corrupt-gzip", images.corrupt_gzip, ("measure",)),
    ("truncated-nrrd", images.truncated_nrrd, ("measure",)),
    ("truncated-mha", images.truncated_mha, ("measure",)),
    ("mhd-without-raw", images.mhd_without_raw, ("measure",)),
    ("empty-folder", images.empty_folder, ("measure", "segment", "dicom-seg")),
    ("folder-without-dicom", images.folder_without_dicom, ("measure", "dicom-seg")),
):
    _ct_cases("files", _name, _builder, _commands)

for _name, _builder, _commands in (
    ("corrupt-dicom", images.corrupt_dicom, ("measure", "segment", "dicom-seg")),
    ("truncated-dicom-pixels", images.truncated_dicom_pixels, ("measure", "dicom-seg")),
    ("two-series-same-size", images.two_series_same_size, ("measure", "dicom-seg")),
    ("missing-slice", images.missing_slice, ("measure", "segment", "dicom-seg")),
    ("duplicated-slice", images.duplicated_slice, ("measure", "dicom-seg")),
    ("uneven-spacing", images.uneven_spacing, ("measure", "dicom-seg")),
    ("gantry-tilt", images.gantry_tilt, ("measure", "segment", "dicom-seg")),
    ("modality-mr", images.magnetic_resonance, ("measure", "segment", "dicom-seg")),
    ("modality-pt", images.positron_emission, ("measure", "dicom-seg")),
    ("no-rescale", images.no_rescale, ("measure", "dicom-seg")),
):
    _ct_cases("dicom", _name, _builder, _commands)
for _name, _builder, _commands in (
    ("oblique", images.oblique, ("measure", "segment", "dicom-seg")),
    (
        "localizer-and-secondary-capture",
        images.localizer_and_secondary_capture,
        ("measure", "dicom-seg"),
    ),
    ("two-series-different-sizes", images.two_series_different_sizes, ("measure",)),
):
    _ct_cases("dicom", _name, _builder, _commands, expect="handled")

for _name, _builder, _commands in (
    ("two-dimensional", images.two_dimensional, ("measure", "segment", "train")),
    ("four-dimensional", images.four_dimensional, ("measure", "segment")),
    ("vector-image", images.vector_image, ("measure",)),
    ("zero-spacing", images.zero_spacing, ("measure", "segment")),
    ("negative-spacing", images.negative_spacing, ("measure",)),
    ("nan-spacing", images.nan_spacing, ("measure",)),
    ("implausible-spacing", images.implausible_spacing, ("measure",)),
    ("sheared-direction", images.sheared_direction, ("measure",)),
    ("nan-voxels", images.nan_voxels, ("measure", "segment", "report", "train")),
    ("infinite-voxels", images.infinite_voxels, ("measure",)),
    ("implausible-hounsfield", images.implausible_hounsfield, ("measure",)),
    ("unscaled-values", images.unscaled_values, ("measure", "segment", "train")),
    ("too-small", images.too_small, ("measure", "segment")),
    ("huge-header-only-nifti", images.huge_header_only_nifti, ("measure", "segment")),
    ("huge-header-only-mha", images.huge_header_only_mha, ("measure",)),
):
    _ct_cases("geometry", _name, _builder, _commands)
_ct_cases(
    "geometry",
    "over-voxel-limit",
    images.over_voxel_limit,
    ("measure", "segment"),
    env={"LIVERBURDEN_MAX_VOXELS": "100000"},
)
_ct_cases(
    "geometry",
    "four-dimensional-single-volume",
    images.four_dimensional_single_volume,
    ("measure",),
    expect="handled",
)


# ----------------------------------------------------------- label-map cases

LabelBuilder = Callable[[Workspace, Path], tuple[Path, tuple[str, ...]]]


def _label_invocation(
    command: str, builder: LabelBuilder, check: Callable[[Workspace, Path, Path], None] | None
) -> Callable[[Workspace], Invocation]:
    def build(ws: Workspace) -> Invocation:
        folder = ws.folder(command)
        seg, fragments = ws.input_of(builder)
        out = folder / "out"
        if command == "measure":
            args = [
                "measure",
                str(ws.ct_path),
                str(seg),
                "-o",
                str(out / "measure"),
                "--subject",
                "S1",
                "--timepoint",
                "baseline",
                "--date",
                BASE_DATE,
            ]
            outputs = [out / "measure"]
            target = out / "measure"
        elif command == "evaluate":
            target = out / "metrics.json"
            args = ["evaluate", str(seg), str(ws.labels_path), "-o", str(target)]
            outputs = [target]
        elif command == "dicom-seg":
            target = out / "segmentation.dcm"
            args = ["dicom-seg", str(seg), str(ws.dicom_folder), "-o", str(target)]
            outputs = [target]
        else:
            raise ValueError(command)
        return Invocation(
            args,
            outputs,
            fragments,
            {},
            None if check is None else (lambda result: check(ws, target, seg)),
        )

    return build


def _label_cases(
    name: str,
    builder: LabelBuilder,
    commands: tuple[str, ...],
    *,
    expect: str = "error",
    check: Callable[[Workspace, Path, Path], None] | None = None,
) -> None:
    for command in commands:
        _add(
            Case(
                f"{command}:{name}",
                "segmentation",
                command,
                expect,
                _label_invocation(command, builder, check),
                (builder.__doc__ or "").strip().split("\n")[0],
            )
        )


for _name, _builder, _commands in (
    ("labels-missing", labels.missing, ("measure", "evaluate", "dicom-seg")),
    ("labels-truncated", labels.truncated, ("measure", "evaluate", "dicom-seg")),
    ("labels-other-grid", labels.other_grid, ("measure", "evaluate", "dicom-seg")),
    ("labels-shifted-origin", labels.shifted_origin, ("measure", "evaluate")),
    ("labels-value-3", labels.label_three, ("measure", "evaluate", "dicom-seg")),
    ("labels-value-255", labels.label_255, ("measure", "evaluate")),
    ("labels-negative", labels.negative_labels, ("measure", "evaluate")),
    ("labels-fractional", labels.fractional_labels, ("measure", "evaluate")),
    ("labels-four-dimensional", labels.four_dimensional, ("measure", "evaluate")),
    ("labels-no-liver", labels.no_liver, ("measure", "dicom-seg")),
    ("labels-tumour-outside-liver", labels.tumour_outside_liver, ("measure",)),
):
    _label_cases(_name, _builder, _commands)


def _check_flipped(ws: Workspace, target: Path, seg: Path) -> None:
    if target.name == "metrics.json":
        metrics = json.loads(target.read_text(encoding="utf-8"))
        case = next(iter(metrics["cases"].values()))
        assert case["liver_dice"] == 1.0 and case["tumour_dice"] == 1.0
    else:
        assert_same_measurements(read_measurements(target), read_measurements(ws.baseline_measure))


def _check_fills_liver(ws: Workspace, target: Path, seg: Path) -> None:
    found = read_measurements(target)
    expected = read_measurements(ws.baseline_measure)
    assert found["involvement_percent"] == 100.0
    assert found["tumor_volume_ml"] == found["liver_volume_ml"]
    assert np.isclose(found["liver_volume_ml"], expected["liver_volume_ml"], rtol=EXACT)
    assert found["liver_parenchyma_volume_ml"] == 0.0
    assert found["involvement_band"] == ">=75"
    assert found["liver_mean_hu"] is None
    assert "no_liver_parenchyma" in {f["code"] for f in found["flags"]}
    assert found["lesion_count"] == 1


_label_cases(
    "labels-flipped-storage",
    labels.flipped_storage,
    ("measure", "evaluate"),
    expect="handled",
    check=_check_flipped,
)
_label_cases(
    "labels-tumour-fills-liver",
    labels.tumour_fills_liver,
    ("measure",),
    expect="handled",
    check=_check_fills_liver,
)


# ------------------------------------------------- 10 000 one-voxel specks

SPECKS = 10_000
SPECK_SPACING_MM = (1.5, 1.5, 2.0)
SPECK_SHAPE_ZYX = (60, 160, 160)


def _specks(ws: Workspace) -> Invocation:
    """A liver sprinkled with 10 000 isolated one-voxel tumour specks and one real lesion."""
    folder = ws.folder("specks")
    shape = SPECK_SHAPE_ZYX
    _, y, x = np.indices(shape, dtype=float)
    body = ((x - 80) / 72) ** 2 + ((y - 80) / 60) ** 2 < 1
    hu = np.where(body, 40.0, -1000.0).astype(np.float32)
    hu[body & (((x - 80) / 72) ** 2 + ((y - 80) / 60) ** 2 > 0.8)] = -100.0  # subcutaneous fat
    liver = np.zeros(shape, bool)
    liver[5:55, 30:130, 30:130] = True
    hu[liver] = 110.0
    labels_zyx = liver.astype(np.uint8)
    lattice = np.argwhere(liver)
    lattice = lattice[np.all(lattice % 2 == 0, axis=1)]  # isolated: no two specks touch
    lesion = sphere(shape, (30, 80, 80), 8.0)
    near_lesion = sphere(shape, (30, 80, 80), 10.0)
    free = lattice[~near_lesion[tuple(lattice.T)]]
    rng = np.random.default_rng(0)
    chosen = free[rng.choice(len(free), SPECKS, replace=False)]
    labels_zyx[tuple(chosen.T)] = 2
    labels_zyx[lesion] = 2
    reference = sitk.GetImageFromArray(hu)
    reference.SetSpacing(SPECK_SPACING_MM)
    ct = write_image(reference, folder / "ct.nii.gz")
    seg = write_image(image_like(labels_zyx, reference), folder / "specks.nii.gz")
    out = folder / "out" / "measure"
    voxel_ml = float(np.prod(SPECK_SPACING_MM)) / 1000.0
    lesion_voxels = int(lesion.sum())
    started = {"t": time.perf_counter()}

    def check(result: Any) -> None:
        seconds = time.perf_counter() - started["t"]
        found = read_measurements(out)
        assert found["noise_component_count"] == SPECKS
        assert found["lesion_count"] == 1
        assert found["lesions"][0]["voxel_count"] == lesion_voxels
        assert np.isclose(found["noise_volume_ml"], SPECKS * voxel_ml)
        assert np.isclose(found["tumor_volume_ml"], (SPECKS + lesion_voxels) * voxel_ml)
        assert np.isclose(
            found["lesion_volume_ml"] + found["noise_volume_ml"], found["tumor_volume_ml"]
        )
        assert "many_noise_components" in {f["code"] for f in found["flags"]}
        # a guard against pathological (per-speck) slowness, not a benchmark
        assert seconds < 60, seconds

    invocation = Invocation(
        [
            "measure",
            str(ct),
            str(seg),
            "-o",
            str(out),
            "--subject",
            "S1",
            "--timepoint",
            "baseline",
            "--date",
            BASE_DATE,
        ],
        [out],
        (),
        {},
        check,
    )
    started["t"] = time.perf_counter()
    return invocation


_add(
    Case(
        "measure:ten-thousand-specks",
        "segmentation",
        "measure",
        "handled",
        _specks,
        _specks.__doc__ or "",
    )
)


# --------------------------------------------------------- response cases


def _respond(
    name: str,
    folders: Callable[[Workspace, Path], list[Path]],
    fragments: Callable[[Workspace, list[Path]], tuple[str, ...]],
    commands: tuple[str, ...] = ("respond",),
    known: dict[str, str] | None = None,
) -> None:
    for command in commands:

        def build(ws: Workspace, command: str = command) -> Invocation:
            folder = ws.folder(command)
            inputs = folders(ws, folder)
            out = folder / "out"
            if command == "respond":
                target = out / "response.json"
                args = ["respond", *map(str, inputs), "-o", str(target)]
            elif command == "report":
                target = out / "report.html"
                args = ["report", *map(str, inputs), "-o", str(target)]
            else:
                target = out / "cohort.csv"
                args = [
                    "cohort",
                    *map(str, inputs),
                    "-o",
                    str(target),
                    "--figures",
                    str(out / "figures"),
                ]
            outputs = [target] + ([out / "figures"] if command == "cohort" else [])
            return Invocation(args, outputs, fragments(ws, inputs))

        _add(
            Case(
                f"{command}:{name}",
                "response",
                command,
                "error",
                build,
                known_failure=(known or {}).get(command, ""),
            )
        )


_respond(
    "mixed-subjects",
    lambda ws, f: [ws.baseline_measure, measurements.other_subject(ws, f)],
    lambda ws, i: ("S1", "S2", "different subjects"),
    ("respond", "report"),
)
_respond(
    "duplicate-dates",
    lambda ws, f: [ws.baseline_measure, measurements.same_date(ws, f)],
    lambda ws, i: ("fu1-same-date", BASE_DATE),
)
_respond(
    "missing-timepoint-folder",
    lambda ws, f: [ws.baseline_measure, f / "fu2"],
    lambda ws, i: ("fu2",),
    ("respond", "report", "cohort"),
)
_respond(
    "folder-without-measurements",
    lambda ws, f: [ws.baseline_measure, measurements.no_measurements(ws, f)],
    lambda ws, i: ("fu1-incomplete", "measurements.json"),
    ("respond", "report", "cohort"),
)
_respond(
    "invalid-measurements-json",
    lambda ws, f: [ws.baseline_measure, measurements.invalid_json(ws, f)],
    lambda ws, i: ("fu1-bad-json", "JSON"),
    ("respond", "report", "cohort"),
)
_respond(
    "measurements-without-lesions",
    lambda ws, f: [ws.baseline_measure, measurements.lacks_lesions_key(ws, f)],
    lambda ws, i: ("fu1-old-format", "lesions"),
    ("respond", "report", "cohort"),
)
_respond(
    "no-lesion-map",
    lambda ws, f: [ws.baseline_measure, measurements.no_lesion_map(ws, f)],
    lambda ws, i: ("fu1-no-map", "lesions.nii.gz"),
)
_respond(
    "negative-lesion-volume",
    lambda ws, f: [ws.baseline_measure, measurements.negative_volume(ws, f)],
    lambda ws, i: ("fu1-edited", "volume_ml", "-3.0"),
    ("respond", "report", "cohort"),
)


def _reversed_order(ws: Workspace) -> Invocation:
    """The follow-up given before the baseline: ordered by date, same response."""
    folder = ws.folder("respond")
    target = folder / "response.json"
    reference = folder / "in-order.json"

    def check(result: Any) -> None:
        from tests.conftest import run_cli

        in_order = run_cli(
            "respond", ws.baseline_measure, ws.follow_up_measure, "-o", reference, "-q"
        )
        assert in_order.exit_code == 0, in_order.stderr
        assert target.read_bytes() == reference.read_bytes()
        response = json.loads(target.read_text(encoding="utf-8"))
        assert (
            response["baseline"]["date"] == BASE_DATE
            if isinstance(response["baseline"], dict) and "date" in response["baseline"]
            else True
        )
        assert [t["timepoint"] for t in response["timepoints"]] == ["fu1"]

    return Invocation(
        ["respond", str(ws.follow_up_measure), str(ws.baseline_measure), "-o", str(target)],
        [],
        (),
        {},
        check,
    )


def _no_measurable_baseline(ws: Workspace) -> Invocation:
    """No lesion at baseline is measurable: RECIST target response NE, with the reason."""
    folder = ws.folder("respond")
    target = folder / "response.json"
    inputs = [measurements.no_measurable_baseline(ws), measurements.no_measurable_follow_up(ws)]

    def check(result: Any) -> None:
        response = json.loads(target.read_text(encoding="utf-8"))
        recist = response["timepoints"][0]["recist"]
        assert recist["target_response"] == "NE", recist
        text = " ".join(recist["reasons"]).lower()
        assert "measurable" in text or "target" in text, recist["reasons"]

    return Invocation(["respond", *map(str, inputs), "-o", str(target)], [], (), {}, check)


_add(
    Case(
        "respond:follow-up-before-baseline",
        "response",
        "respond",
        "handled",
        _reversed_order,
        _reversed_order.__doc__ or "",
    )
)
_add(
    Case(
        "respond:no-measurable-lesion-at-baseline",
        "response",
        "respond",
        "handled",
        _no_measurable_baseline,
        _no_measurable_baseline.__doc__ or "",
    )
)


# ------------------------------------------------------------ sample sheets


def _sheet_case(name: str, builder: sheets.SheetBuilder) -> None:
    def build(ws: Workspace) -> Invocation:
        folder = ws.folder("samples")
        sheet, fragments = builder(ws, folder)
        return Invocation(["samples", str(sheet)], [], fragments)

    _add(Case(f"samples:{name}", "sheet", "samples", "error", build))


for _name, _builder in sheets.SHEET_CASES.items():
    _sheet_case(_name, _builder)


def _awkward_paths(ws: Workspace) -> Invocation:
    """Spaces, non-ASCII letters and paths relative to the sheet's folder: handled."""
    folder = ws.folder("samples")
    sheet, paths = sheets.awkward_paths_sheet(ws, folder)

    def check(result: Any) -> None:
        from pipeline.samples import load_samples

        loaded = load_samples(sheet)
        assert [s.timepoint for s in loaded.scans] == ["baseline", "fu_1"]
        assert loaded.scans[0].image == paths["baseline"]
        assert loaded.scans[1].image == paths["fu_1"]
        assert loaded.scans[1].date == "2024-04-15"
        assert loaded.scans[0].mask == paths["mask"]
        assert "2 scans of 1 subjects" in result.stdout

    # run from another folder: paths in the sheet are relative to the sheet, not to the
    # working folder
    return Invocation(["samples", str(sheet.relative_to(ws.root))], [], (), {}, check, cwd=ws.root)


_add(
    Case(
        "samples:paths-with-spaces-unicode-relative",
        "sheet",
        "samples",
        "handled",
        _awkward_paths,
        _awkward_paths.__doc__ or "",
    )
)


# ------------------------------------------------------- options and values


def _options_case(
    name: str,
    command: str,
    arguments: Callable[[Workspace, Path], list[str]],
    outputs: Callable[[Path], list[Path]],
    fragments: tuple[str, ...],
    known_failure: str = "",
) -> None:
    def build(ws: Workspace) -> Invocation:
        folder = ws.folder(command)
        return Invocation([command, *arguments(ws, folder)], outputs(folder), fragments)

    _add(Case(f"{command}:{name}", "options", command, "error", build, known_failure=known_failure))


def _phantom_out(folder: Path) -> list[Path]:
    return [folder / "phantoms"]


_options_case(
    "seed-negative",
    "phantom",
    lambda ws, f: [str(f / "phantoms"), "--seed", "-1", "--size", "tiny"],
    _phantom_out,
    ("--seed", "-1"),
)
_options_case(
    "seed-not-a-number",
    "phantom",
    lambda ws, f: [str(f / "phantoms"), "--seed", "1e3x", "--size", "tiny"],
    _phantom_out,
    ("--seed", "1e3x"),
)
_options_case(
    "size-unknown",
    "phantom",
    lambda ws, f: [str(f / "phantoms"), "--size", "huge"],
    _phantom_out,
    ("--size", "huge"),
)
_options_case(
    "subjects-zero",
    "phantom",
    lambda ws, f: [str(f / "phantoms"), "--subjects", "0", "--size", "tiny"],
    _phantom_out,
    ("--subjects", "0"),
)
_options_case(
    "timepoints-five",
    "phantom",
    lambda ws, f: [str(f / "phantoms"), "--timepoints", "5", "--size", "tiny"],
    _phantom_out,
    ("--timepoints", "5"),
)
_options_case(
    "outdir-is-a-file",
    "phantom",
    lambda ws, f: [str(_file(f / "phantoms")), "--subjects", "1", "--size", "tiny"],
    lambda f: [],
    ("phantoms",),
)
_options_case(
    "date-impossible",
    "measure",
    lambda ws, f: [
        str(ws.ct_path),
        str(ws.labels_path),
        "-o",
        str(f / "measure"),
        "--date",
        "2024-02-30",
    ],
    lambda f: [f / "measure"],
    ("--date", "2024-02-30"),
)
_options_case(
    "subject-with-newline",
    "measure",
    lambda ws, f: [
        str(ws.ct_path),
        str(ws.labels_path),
        "-o",
        str(f / "measure"),
        "--subject",
        "P01\nP02",
    ],
    lambda f: [f / "measure"],
    ("--subject",),
)
_options_case(
    "min-lesion-volume-nan",
    "measure",
    lambda ws, f: [
        str(ws.ct_path),
        str(ws.labels_path),
        "-o",
        str(f / "measure"),
        "--min-lesion-volume-ml",
        "nan",
    ],
    lambda f: [f / "measure"],
    ("--min-lesion-volume-ml", "nan"),
)
_options_case(
    "min-lesion-volume-nan",
    "evaluate",
    lambda ws, f: [
        str(ws.follow_up_labels_path),
        str(ws.labels_path),
        "-o",
        str(f / "metrics.json"),
        "--min-lesion-volume-ml",
        "nan",
    ],
    lambda f: [f / "metrics.json"],
    ("--min-lesion-volume-ml", "nan"),
)
_options_case(
    "crop-margin-nan",
    "train",
    lambda ws, f: [
        "prepare",
        str(_text(f / "cases.tsv", f"image\tlabel\n{ws.ct_path}\t{ws.labels_path}\n")),
        "--cache",
        str(f / "cache"),
        "--stage",
        "lesion",
        "--crop-margin",
        "nan",
    ],
    lambda f: [f / "cache"],
    ("--crop-margin", "nan"),
)
_options_case(
    "learning-rate-infinite",
    "train",
    lambda ws, f: [
        "fit",
        "--cache",
        str(f / "cache"),
        "-o",
        str(f / "bundle"),
        "--learning-rate",
        "inf",
    ],
    lambda f: [f / "bundle"],
    ("--learning-rate", "inf"),
)
_options_case(
    "table-empty",
    "train",
    lambda ws, f: ["prepare", str(_text(f / "cases.tsv", "")), "--cache", str(f / "cache")],
    lambda f: [f / "cache"],
    ("cases.tsv", "empty"),
)
_options_case(
    "table-not-utf8",
    "train",
    lambda ws, f: [
        "prepare",
        str(_bytes(f / "cases.tsv", b"image\tlabel\n\xff\xfe.nii.gz\tx.nii.gz\n")),
        "--cache",
        str(f / "cache"),
    ],
    lambda f: [f / "cache"],
    ("cases.tsv", "UTF-8"),
)
for _command, _setting, _outputs in (
    ("respond", "response:\n  progression_percent", "response.json"),
    ("report", "report:\n  crop_margin_mm", "report.html"),
):
    _options_case(
        "settings-nan",
        _command,
        lambda ws, f, s=_setting, o=_outputs: [
            str(ws.baseline_measure),
            *([str(ws.follow_up_measure)] if o == "response.json" else []),
            "-o",
            str(f / o),
            "--settings",
            str(_text(f / "settings.yaml", f"{s}: .nan\n")),
        ],
        lambda f, o=_outputs: [f / o],
        (_setting.split()[-1], "nan"),
    )
_options_case(
    "settings-unknown-key",
    "measure",
    lambda ws, f: [
        str(ws.ct_path),
        str(ws.labels_path),
        "-o",
        str(f / "measure"),
        "--settings",
        str(_text(f / "settings.yaml", "measure:\n  min_lesion_volume: 0.1\n")),
    ],
    lambda f: [f / "measure"],
    ("settings.yaml", "min_lesion_volume"),
)
_options_case(
    "settings-not-yaml",
    "respond",
    lambda ws, f: [
        str(ws.baseline_measure),
        str(ws.follow_up_measure),
        "-o",
        str(f / "response.json"),
        "--settings",
        str(_text(f / "settings.yaml", "response: [unclosed\n")),
    ],
    lambda f: [f / "response.json"],
    ("settings.yaml",),
)
_options_case(
    "table-without-columns",
    "respond",
    lambda ws, f: [
        "--table",
        str(_text(f / "reads.csv", "patient,date\nP01,2024-01-15\n")),
        "-o",
        str(f / "response.json"),
    ],
    lambda f: [f / "response.json"],
    ("reads.csv",),
)
_options_case(
    "table-measurement-not-a-number",
    "respond",
    lambda ws, f: [
        "--table",
        str(
            _text(
                f / "reads.csv",
                "patient_id,study_date,measurement,lesion_label_alias,lesion_category\n"
                "P01,2024-01-15,twelve,A,target\n"
                "P01,2024-04-15,10,A,target\n",
            )
        ),
        "-o",
        str(f / "response.json"),
    ],
    lambda f: [f / "response.json"],
    ("reads.csv", "twelve"),
)
_options_case(
    "report-not-html",
    "report",
    lambda ws, f: [str(ws.baseline_measure), "-o", str(f / "report.pdf")],
    lambda f: [f / "report.pdf"],
    ("report.pdf", ".html"),
)
_options_case(
    "treatment-unknown-timepoint",
    "report",
    lambda ws, f: [
        str(ws.baseline_measure),
        "-o",
        str(f / "report.html"),
        "--treatment",
        "fu9=TACE",
    ],
    lambda f: [f / "report.html"],
    ("--treatment", "fu9"),
)
_options_case(
    "images-count-mismatch",
    "report",
    lambda ws, f: [
        str(ws.baseline_measure),
        str(ws.follow_up_measure),
        "--images",
        str(ws.ct_path),
        "-o",
        str(f / "report.html"),
    ],
    lambda f: [f / "report.html"],
    ("--images",),
)
_options_case(
    "cohort-not-csv",
    "cohort",
    lambda ws, f: [str(ws.baseline_measure), "-o", str(f / "cohort.xlsx")],
    lambda f: [f / "cohort.xlsx"],
    ("cohort.xlsx", ".csv"),
)
_options_case(
    "device-unknown",
    "segment",
    lambda ws, f: [
        str(ws.ct_path),
        "-o",
        str(f / "seg.nii.gz"),
        "--model",
        str(ws.bundle),
        "--device",
        "tpu",
    ],
    lambda f: [f / "seg.nii.gz"],
    ("--device", "tpu"),
)
_options_case(
    "device-cuda-absent",
    "segment",
    lambda ws, f: [
        str(ws.ct_path),
        "-o",
        str(f / "seg.nii.gz"),
        "--model",
        str(ws.bundle),
        "--device",
        "cuda:99",
    ],
    lambda f: [f / "seg.nii.gz"],
    ("--device", "cuda:99"),
)
_options_case(
    "model-missing",
    "segment",
    lambda ws, f: [
        str(ws.ct_path),
        "-o",
        str(f / "seg.nii.gz"),
        "--model",
        str(f / "no-such-bundle"),
        "--device",
        "cpu",
    ],
    lambda f: [f / "seg.nii.gz"],
    ("no-such-bundle",),
)
_options_case(
    "output-not-an-image",
    "segment",
    lambda ws, f: [
        str(ws.ct_path),
        "-o",
        str(f / "seg.png"),
        "--model",
        str(ws.bundle),
        "--device",
        "cpu",
    ],
    lambda f: [f / "seg.png"],
    ("seg.png",),
)
_options_case(
    "dicom-seg-not-dcm",
    "dicom-seg",
    lambda ws, f: [str(ws.labels_path), str(ws.dicom_folder), "-o", str(f / "seg.nii.gz")],
    lambda f: [f / "seg.nii.gz"],
    ("seg.nii.gz", ".dcm"),
)
_options_case(
    "series-uid-absent",
    "measure",
    lambda ws, f: [
        str(ws.dicom_folder),
        str(ws.labels_path),
        "-o",
        str(f / "measure"),
        "--series",
        "1.2.3.4",
    ],
    lambda f: [f / "measure"],
    ("1.2.3.4",),
)


def _file(path: Path, text: str = "not a folder\n") -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
