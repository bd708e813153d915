"""``liverburden segment`` and :class:`LiverTumourSegmenter` with the tiny test bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from pipeline.segment.evaluation import dice
from pipeline.segment.predictor import LiverTumourSegmenter
from tests._segment_fixtures import (
    TINY_BUNDLE,
    copy_bundle,
    edit_inference,
    synthetic_ct,
    write_dicom_series,
)
from tests._segment_fixtures import phantom_scan as phantom_scan  # a fixture
from tests.conftest import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def segmenter() -> LiverTumourSegmenter:
    return LiverTumourSegmenter(TINY_BUNDLE, device="cpu")


def _same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-9)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-9)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-12)
    )


def test_segment_phantom_command(phantom_scan, tmp_path: Path) -> None:
    output = tmp_path / "out" / "segmentation.nii.gz"
    result = run_cli(
        "segment", phantom_scan["ct_path"], "-o", output, "--model", TINY_BUNDLE, "--device", "cpu"
    )
    assert result.exit_code == 0, result.stderr
    labels = sitk.ReadImage(str(output))
    assert labels.GetPixelID() == sitk.sitkUInt8
    assert _same_grid(labels, phantom_scan["ct"])
    predicted = sitk.GetArrayFromImage(labels)
    truth = sitk.GetArrayFromImage(phantom_scan["labels"])
    assert set(np.unique(predicted)) <= {0, 1, 2}
    assert dice(predicted > 0, truth > 0) > 0.9
    record = json.loads((tmp_path / "out" / "segmentation.json").read_text(encoding="utf-8"))
    assert record["schema_version"] and record["liverburden_version"]
    assert record["model"]["name"] == "liverburden-tiny-test"
    assert len(record["model"]["weights_sha256"]["liver"]) == 64
    assert record["input_geometry"]["size"] == list(phantom_scan["ct"].GetSize())
    assert record["device"] == "cpu" and record["options"]["fast"] is False
    assert {"read", "liver_network", "lesion_network", "postprocess", "write"} <= set(
        record["timings_s"]
    )
    assert 0.5 < record["statistics"]["mean_liver_probability"] <= 1.0
    text = json.dumps(record)
    assert str(phantom_scan["ct_path"]) not in text and phantom_scan["ct_path"].name not in text


def test_output_grid_for_flipped_anisotropic_and_dicom_inputs(
    phantom_scan, segmenter, tmp_path: Path
) -> None:
    ct = phantom_scan["ct"]
    truth = phantom_scan["labels"]
    # anisotropic, oblique-free: resampled to 2 x 2.5 x 4 mm
    reference = sitk.Image(
        [
            round(s * sp / t)
            for s, sp, t in zip(ct.GetSize(), ct.GetSpacing(), (2.0, 2.5, 4.0), strict=True)
        ],
        sitk.sitkFloat32,
    )
    reference.SetSpacing((2.0, 2.5, 4.0))
    reference.SetOrigin(ct.GetOrigin())
    reference.SetDirection(ct.GetDirection())
    anisotropic = sitk.Resample(ct, reference, sitk.Transform(), sitk.sitkLinear, -1024.0)
    anisotropic_truth = sitk.Resample(
        truth, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0
    )
    result = segmenter.predict(anisotropic)
    assert _same_grid(result.labels, anisotropic)
    assert (
        dice(
            sitk.GetArrayFromImage(result.labels) > 0, sitk.GetArrayFromImage(anisotropic_truth) > 0
        )
        > 0.85
    )
    # flipped storage: x and z reversed, direction (-1, 1, -1)
    flipped = sitk.Flip(ct, [True, False, True])
    assert flipped.GetDirection() != ct.GetDirection()
    result = segmenter.predict(flipped)
    assert _same_grid(result.labels, flipped)
    # DICOM series read through pipeline.io
    folder = write_dicom_series(ct, tmp_path / "dicom")
    output = tmp_path / "dicom_seg.nii.gz"
    cli = run_cli(
        "segment",
        folder,
        "-o",
        output,
        "--model",
        TINY_BUNDLE,
        "--device",
        "cpu",
        "--fast",
        "--threads",
        "1",
    )
    assert cli.exit_code == 0, cli.stderr
    from pipeline.io import read_ct

    dicom_image = read_ct(folder).image
    labels = sitk.ReadImage(str(output))
    assert _same_grid(labels, dicom_image)
    record = json.loads((tmp_path / "dicom_seg.json").read_text(encoding="utf-8"))
    assert record["options"]["fast"] is True and record["threads"] == 1
    assert record["stages"][1]["test_time_flips"] == []


@pytest.mark.parametrize("antialias", [False, True])
def test_same_mask_whatever_the_axis_order(
    phantom_scan, segmenter, antialias: bool, tmp_path: Path
) -> None:
    if antialias:  # block averaging before the 6 mm liver grid (the default design's setting)
        bundle = copy_bundle(tmp_path / "antialias")
        edit_inference(bundle, lambda c: [stage.update(antialias=True) for stage in c["stages"]])
        segmenter = LiverTumourSegmenter(bundle, device="cpu")
    lps = phantom_scan["ct"]
    # the same voxels stored RAS-first (x and y reversed) and with x/z swapped
    ras = sitk.Flip(lps, [True, True, False])
    permuted = sitk.PermuteAxes(lps, [2, 1, 0])
    reference = segmenter.predict(lps).labels
    truth = sitk.GetArrayFromImage(phantom_scan["labels"]) > 0
    assert dice(sitk.GetArrayFromImage(reference) > 0, truth) > 0.9
    for other in (ras, permuted):
        labels = segmenter.predict(other).labels
        back = sitk.Resample(labels, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 255)
        assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(reference))


def test_predictor_statistics_and_no_liver(segmenter, tmp_path: Path) -> None:
    ct, _labels = synthetic_ct()
    result = segmenter.predict(ct)
    assert result.labels.GetSize() == ct.GetSize()
    assert set(result.statistics) >= {
        "mean_liver_probability",
        "uncertain_liver_fraction",
        "liver_volume_ml",
    }
    assert result.network_seconds > 0
    # a liver stage that sees background everywhere: the lesion stage is skipped
    blind = copy_bundle(tmp_path / "blind")
    weights = torch.load(blind / "models" / "liver.pt")
    last_bias = [key for key in weights if key.endswith("conv.bias")][-1]
    weights[last_bias] = torch.tensor([100.0, -100.0])
    torch.save(weights, blind / "models" / "liver.pt")
    result = LiverTumourSegmenter(blind, device="cpu").predict(ct)
    assert result.flags == ["no_liver_found"]
    assert not sitk.GetArrayFromImage(result.labels).any()
    assert result.statistics["liver_volume_ml"] == 0.0
    assert [s.get("skipped") for s in result.stages] == [None, "no foreground from liver"]


def test_segment_writes_nothing_when_the_record_fails(
    phantom_scan, tmp_path: Path, monkeypatch
) -> None:
    import pipeline.segment.command as command

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(command, "provenance_record", broken)
    ct, _labels = synthetic_ct()
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    result = run_cli(
        "segment",
        tmp_path / "ct.nii.gz",
        "-o",
        tmp_path / "seg.nii.gz",
        "--model",
        TINY_BUNDLE,
        "--device",
        "cpu",
    )
    assert result.exit_code == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz"]


def _bad_bundles(tmp_path: Path) -> list[tuple[Path, str]]:
    cases = []
    missing_configs = copy_bundle(tmp_path / "no_configs")
    (missing_configs / "configs" / "inference.json").unlink()
    cases.append((missing_configs, "bundle inference config not found"))
    bad_json = copy_bundle(tmp_path / "bad_json")
    (bad_json / "configs" / "metadata.json").write_text("{not json")
    cases.append((bad_json, "not valid JSON"))
    no_weights = copy_bundle(tmp_path / "no_weights")
    (no_weights / "models" / "lesion.pt").unlink()
    cases.append((no_weights, "weights of stage 'lesion' not found"))
    corrupt = copy_bundle(tmp_path / "corrupt")
    (corrupt / "models" / "liver.pt").write_bytes(b"\x00garbage" * 100)
    cases.append((corrupt, "cannot read the weights of stage 'liver'"))
    mismatch = copy_bundle(tmp_path / "mismatch")
    torch.save({"weight": torch.zeros(3)}, mismatch / "models" / "liver.pt")
    cases.append((mismatch, "weights do not match the network of stage 'liver'"))
    unknown = copy_bundle(tmp_path / "unknown")
    edit_inference(
        unknown,
        lambda c: c["stages"][0]["network"].update({"_target_": "monai.networks.nets.NoSuchNet"}),
    )
    cases.append((unknown, "unknown network _target_ 'monai.networks.nets.NoSuchNet'"))
    cases.append((tmp_path / "nowhere", "model bundle folder not found"))
    return cases


def test_bad_model_folders_are_clean_errors(tmp_path: Path) -> None:
    ct, _labels = synthetic_ct()
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    for bundle, fragment in _bad_bundles(tmp_path):
        output = tmp_path / f"{bundle.name}.nii.gz"
        result = run_cli(
            "segment", tmp_path / "ct.nii.gz", "-o", output, "--model", bundle, "--device", "cpu"
        )
        assert_clean_error(result, fragment)
        assert not output.exists() and not output.with_name(f"{bundle.name}.json").exists()


def test_default_model_missing_is_a_clean_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LIVERBURDEN_MODEL", str(tmp_path / "not_installed"))
    ct, _labels = synthetic_ct()
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    result = run_cli(
        "segment", tmp_path / "ct.nii.gz", "-o", tmp_path / "seg.nii.gz", "--device", "cpu"
    )
    assert_clean_error(result, "the default model bundle is not installed")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_clean_error(tmp_path: Path) -> None:
    ct, _labels = synthetic_ct()
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    result = run_cli(
        "segment",
        tmp_path / "ct.nii.gz",
        "-o",
        tmp_path / "seg.nii.gz",
        "--model",
        TINY_BUNDLE,
        "--device",
        "cuda",
    )
    assert_clean_error(result, "--device: cuda was requested but no CUDA GPU is available")
    assert not (tmp_path / "seg.nii.gz").exists()


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (("-o", "{tmp}/seg.png"), "unsupported label-map file type"),
        (("-o", "{tmp}/ct.nii.gz"), "would overwrite the input"),
        (("-o", "{tmp}/seg.nii.gz", "--threads", "0"), "--threads: must be at least 1"),
        (("-o", "{tmp}/seg.nii.gz", "--device", "tpu"), "unknown device 'tpu'"),
    ],
)
def test_bad_segment_options(tmp_path: Path, arguments: tuple[str, ...], fragment: str) -> None:
    ct, _labels = synthetic_ct()
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    result = run_cli(
        "segment",
        tmp_path / "ct.nii.gz",
        *[a.replace("{tmp}", str(tmp_path)) for a in arguments],
        "--model",
        TINY_BUNDLE,
    )
    assert_clean_error(result, fragment)


def test_settings_file(tmp_path: Path) -> None:
    ct, _labels = synthetic_ct()
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    (tmp_path / "config.yaml").write_text(
        f"segment:\n  model: {TINY_BUNDLE}\n  device: cpu\n  fast: true\nmeasure: {{}}\n"
    )
    result = run_cli(
        "segment",
        tmp_path / "ct.nii.gz",
        "-o",
        tmp_path / "seg.nii.gz",
        "--settings",
        tmp_path / "config.yaml",
    )
    assert result.exit_code == 0, result.stderr
    assert (
        json.loads((tmp_path / "seg.json").read_text(encoding="utf-8"))["options"]["fast"] is True
    )
    (tmp_path / "bad.yaml").write_text("segment:\n  colour: red\n")
    result = run_cli(
        "segment",
        tmp_path / "ct.nii.gz",
        "-o",
        tmp_path / "seg2.nii.gz",
        "--settings",
        tmp_path / "bad.yaml",
    )
    assert_clean_error(result, "unknown setting(s): colour")
