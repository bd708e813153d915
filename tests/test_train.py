"""``liverburden train``: preparation into a cache, the training loop, resume, bundles."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from tests._segment_fixtures import synthetic_ct
from tests.conftest import REPO_ROOT, assert_clean_error, run_cli, run_text

TINY_NETWORK = '{"channels": [4, 8], "strides": [2], "num_res_units": 0}'
FIT_OPTIONS = (
    "--iterations-per-epoch", "2", "--batch-size", "1", "--samples-per-case", "1",
    "--patch-size", "16", "16", "16", "--roi-size", "32", "32", "32", "--network", TINY_NETWORK,
)  # fmt: skip


BLOCKED_IMPORTS_SCRIPT = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        blocked = ('SimpleITK', 'yaml', 'pydicom', 'scipy', 'skimage')
        if name.split('.')[0] in blocked or name in ('pipeline.io', 'pipeline.settings'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
from pipeline.segment.train_fit import main
sys.exit(main(ARGUMENTS))
"""


def _write_cases(folder: Path, count: int = 3) -> list[tuple[Path, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(count):
        ct, labels = synthetic_ct(shape_zyx=(24, 40, 40), spacing=(4.0, 4.0, 5.0), seed=index)
        image_path, label_path = (
            folder / f"case{index}_ct.nii.gz",
            folder / f"case{index}_labels.nii.gz",
        )
        sitk.WriteImage(ct, str(image_path))
        sitk.WriteImage(labels, str(label_path))
        pairs.append((image_path, label_path))
    return pairs


@pytest.fixture(scope="module")
def prepared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("train")
    pairs = _write_cases(folder / "data")
    table = folder / "cases.tsv"
    table.write_text(
        "image\tlabel\n"
        + "".join(f"data/{image.name}\tdata/{label.name}\n" for image, label in pairs)
    )
    cache = folder / "cache"
    result = run_cli(
        "train", "prepare", table, "--cache", cache,
        "--liver-spacing", "8", "8", "8", "--lesion-spacing", "4", "4", "4",
        "--crop-margin", "8", "--licence", "CC0 test data",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return cache


def test_prepare_writes_resampled_cropped_cases(prepared_cache: Path) -> None:
    manifest = json.loads((prepared_cache / "lesion" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["grid"]["spacing_mm"] == [4.0, 4.0, 4.0]
    assert [c["case"] for c in manifest["cases"]] == ["case0_ct", "case1_ct", "case2_ct"]
    assert manifest["datasets"] == [{"name": "cases", "licence": "CC0 test data", "cases": 3}]
    with np.load(prepared_cache / "lesion" / manifest["cases"][0]["file"]) as arrays:
        image, label = arrays["image"], arrays["label"]
    assert image.dtype == np.int16 and label.dtype == np.uint8
    assert set(np.unique(label)) == {0, 1, 2}
    # the lesion stage keeps the liver's box plus 8 mm (2 voxels): less than the 160 mm field
    assert image.shape[0] < 160 / 4 and image.shape == label.shape
    with np.load(prepared_cache / "liver" / "cases" / "case0_ct.npz") as arrays:
        assert set(np.unique(arrays["label"])) == {0, 1}  # tumour merged into liver
        assert arrays["image"].shape == (20, 20, 15)  # 160 x 160 x 120 mm at 8 mm


def _fit(cache: Path, output: Path, *extra: str) -> None:
    result = run_cli("train", "fit", "--cache", cache, "--output", output, *FIT_OPTIONS, *extra)
    assert result.exit_code == 0, result.stderr


def test_fit_writes_a_bundle_that_segments(prepared_cache: Path, tmp_path: Path) -> None:
    from pipeline.segment.bundle import load_bundle
    from pipeline.segment.predictor import LiverTumourSegmenter

    bundle_dir = tmp_path / "bundle"
    _fit(
        prepared_cache,
        bundle_dir,
        "--epochs",
        "1",
        "--checkpoint-dir",
        str(tmp_path / "checkpoints"),
    )
    bundle = load_bundle(bundle_dir)
    assert [s.name for s in bundle.inference.stages] == ["liver", "lesion"]
    assert bundle.inference.stage("lesion").crop is not None
    metadata = bundle.metadata
    assert metadata["training_data"][0]["licence"] == "CC0 test data"
    assert metadata["metrics"]["validation"]["lesion"]["liver_dice"] is not None
    assert metadata["stages"]["liver"]["training"]["validation_cases"]
    assert (bundle_dir / "README.md").read_text(encoding="utf-8").startswith("# liverburden-ct")
    ct, _labels = synthetic_ct(shape_zyx=(24, 40, 40), spacing=(4.0, 4.0, 5.0), seed=7)
    result = LiverTumourSegmenter(bundle_dir, device="cpu").predict(ct)
    assert result.labels.GetSize() == ct.GetSize()


def test_fit_one_stage_into_an_existing_bundle_keeps_the_other(
    prepared_cache: Path, tmp_path: Path
) -> None:
    from pipeline.segment.bundle import load_bundle

    bundle_dir = tmp_path / "bundle"
    _fit(
        prepared_cache,
        bundle_dir,
        "--epochs",
        "1",
        "--stage",
        "lesion",
        "--checkpoint-dir",
        str(tmp_path / "c1"),
    )
    only_lesion = load_bundle(bundle_dir)
    assert [s.name for s in only_lesion.inference.stages] == ["lesion"]
    assert only_lesion.inference.stage("lesion").crop is None  # no liver stage to crop to
    _fit(
        prepared_cache,
        bundle_dir,
        "--epochs",
        "1",
        "--stage",
        "liver",
        "--checkpoint-dir",
        str(tmp_path / "c2"),
    )
    both = load_bundle(bundle_dir)
    assert [s.name for s in both.inference.stages] == ["liver", "lesion"]
    assert both.weights_sha256["lesion"] == only_lesion.weights_sha256["lesion"]
    assert both.inference.stage("lesion").crop is not None


def test_resume_continues_exactly(prepared_cache: Path, tmp_path: Path, monkeypatch) -> None:
    import pipeline.segment.train_fit as train_fit

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    common = ("--stage", "lesion", "--seed", "3", "--epochs", "2")
    _fit(prepared_cache, straight, "--checkpoint-dir", str(tmp_path / "a"), *common)
    save = train_fit._atomic_torch_save

    def save_then_interrupt(value, path):  # the run is interrupted right after epoch 1's checkpoint
        save(value, path)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_fit, "_atomic_torch_save", save_then_interrupt)
    result = run_cli(
        "train",
        "fit",
        "--cache",
        prepared_cache,
        "--output",
        resumed,
        *FIT_OPTIONS,
        "--checkpoint-dir",
        tmp_path / "b",
        *common,
    )
    assert result.exit_code == 130 and not resumed.exists()
    monkeypatch.setattr(train_fit, "_atomic_torch_save", save)
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    _fit(prepared_cache, resumed, "--checkpoint-dir", str(tmp_path / "b"), "--resume", *common)
    first = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)
    second = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert second["epoch"] == 2 and len(second["history"]) == 2
    for key, value in first["model"].items():
        torch.testing.assert_close(second["model"][key], value, rtol=1e-5, atol=1e-6)
    assert first["history"][1]["loss"] == pytest.approx(second["history"][1]["loss"], rel=1e-5)


def test_resume_with_other_settings_is_refused(prepared_cache: Path, tmp_path: Path) -> None:
    _fit(
        prepared_cache,
        tmp_path / "b",
        "--epochs",
        "1",
        "--stage",
        "lesion",
        "--checkpoint-dir",
        str(tmp_path / "c"),
    )
    result = run_cli(
        "train", "fit", "--cache", prepared_cache, "--output", tmp_path / "b", *FIT_OPTIONS,
        "--epochs", "2", "--stage", "lesion", "--checkpoint-dir", tmp_path / "c", "--resume",
        "--learning-rate", "0.01",
    )  # fmt: skip
    assert_clean_error(result, "checkpoint was made with other settings (learning_rate)")


def test_training_loop_needs_only_torch_and_monai(prepared_cache: Path, tmp_path: Path) -> None:
    """The fit step runs with SimpleITK, pipeline.io and PyYAML made unimportable."""
    arguments = [
        "--cache", str(prepared_cache), "--output", str(tmp_path / "bundle"), "--epochs", "1",
        "--stage", "liver",
        "--checkpoint-dir", str(tmp_path / "c"), *FIT_OPTIONS,
    ]  # fmt: skip
    script = BLOCKED_IMPORTS_SCRIPT.replace("ARGUMENTS", repr(arguments))
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = run_text(
        [sys.executable, "-c", script],
        env=environment,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / "bundle" / "models" / "liver.pt").is_file()


def test_msd_layout(tmp_path: Path) -> None:
    pairs = _write_cases(tmp_path / "raw", count=2)
    root = tmp_path / "Task03_Liver"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    training = []
    for index, (image, label) in enumerate(pairs):
        image.rename(root / "imagesTr" / f"liver_{index}.nii.gz")
        label.rename(root / "labelsTr" / f"liver_{index}.nii.gz")
        training.append(
            {
                "image": f"./imagesTr/liver_{index}.nii.gz",
                "label": f"./labelsTr/liver_{index}.nii.gz",
            }
        )
    dataset = {
        "name": "Liver",
        "licence": "CC-BY-SA 4.0",
        "labels": {"0": "background", "1": "liver", "2": "cancer"},
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(dataset))
    result = run_cli(
        "train",
        "prepare",
        root,
        "--cache",
        tmp_path / "cache",
        "--stage",
        "liver",
        "--liver-spacing",
        "8",
        "8",
        "8",
    )
    assert result.exit_code == 0, result.stderr
    manifest = json.loads(
        (tmp_path / "cache" / "liver" / "manifest.json").read_text(encoding="utf-8")
    )
    assert [c["case"] for c in manifest["cases"]] == ["Liver_liver_0", "Liver_liver_1"]
    assert manifest["datasets"][0]["licence"] == "CC-BY-SA 4.0"
    dataset["labels"] = {"0": "background", "1": "pancreas", "2": "cancer"}
    (root / "dataset.json").write_text(json.dumps(dataset))
    result = run_cli("train", "prepare", root, "--cache", tmp_path / "cache2", "--stage", "liver")
    assert_clean_error(result, "are not liver (1) and tumour (2)")


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        (
            ("train", "fit", "--cache", "{tmp}/nowhere", "--output", "{tmp}/b"),
            "no prepared cache for stage 'liver'",
        ),
        (
            ("train", "prepare", "{tmp}/missing.tsv", "--cache", "{tmp}/c"),
            "training table not found",
        ),
        (("train", "prepare", "--cache", "{tmp}/c"), "no training data"),
        (
            ("train", "prepare", "--phantoms", "2", "--phantom-size", "huge", "--cache", "{tmp}/c"),
            "unknown size 'huge'",
        ),
        (
            ("train", "prepare", "--phantoms", "1", "--stage", "kidney", "--cache", "{tmp}/c"),
            "unknown stage 'kidney'",
        ),
    ],
)
def test_bad_training_input(tmp_path: Path, arguments: tuple[str, ...], fragment: str) -> None:
    result = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in arguments])
    assert_clean_error(result, fragment)


def test_table_with_a_missing_file(tmp_path: Path) -> None:
    table = tmp_path / "cases.csv"
    table.write_text("image,label\nct.nii.gz,labels.nii.gz\n")
    result = run_cli("train", "prepare", table, "--cache", tmp_path / "cache")
    assert_clean_error(result, "line 2: image", "not found")


def test_fine_tuning_starts_from_a_bundles_weights(prepared_cache: Path, tmp_path: Path) -> None:
    """``--initial-weights`` starts from a bundle's stage weights, not random ones;
    a bundle without the stage, or with weights for another network, is refused."""
    import torch

    first = tmp_path / "first"
    _fit(
        prepared_cache,
        first,
        "--epochs",
        "1",
        "--stage",
        "liver",
        "--checkpoint-dir",
        str(tmp_path / "c1"),
    )
    tuned = tmp_path / "tuned"
    _fit(
        prepared_cache,
        tuned,
        "--epochs",
        "1",
        "--stage",
        "liver",
        "--learning-rate",
        "1e-12",
        "--checkpoint-dir",
        str(tmp_path / "c2"),
        "--initial-weights",
        str(first),
    )
    before = torch.load(first / "models" / "liver.pt", weights_only=True)
    after = torch.load(tuned / "models" / "liver.pt", weights_only=True)
    for name, value in before.items():  # a negligible learning rate: the weights stay
        torch.testing.assert_close(after[name], value, atol=1e-5, rtol=1e-4)
    result = run_cli(
        "train",
        "fit",
        "--cache",
        prepared_cache,
        "--output",
        tmp_path / "x",
        *FIT_OPTIONS,
        "--stage",
        "lesion",
        "--checkpoint-dir",
        tmp_path / "c3",
        "--initial-weights",
        first,
    )
    assert_clean_error(result, "has no stage 'lesion'")
