"""DICOM SEG writing (liverburden dicom-seg): round trips and a comparison with a real SEG."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from _dicom_fixtures import FAKE_IDENTIFIERS, abdomen_like_volume, write_ct_series
from conftest import assert_clean_error, run_cli, shared_data

from pipeline.io import read_ct
from pipeline.report.dicom_seg import (
    labels_from_masks,
    labels_on_source,
    read_source_datasets,
    segment_masks,
)


def _labels_zyx(shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """Liver (1) with two tumours (2), asymmetric so that any flip or shift shows."""
    z, y, x = np.indices(shape_zyx)
    labels = np.zeros(shape_zyx, dtype=np.uint8)
    liver = ((y - 30) / 18.0) ** 2 + ((x - 24) / 14.0) ** 2 + ((z - 5) / 4.0) ** 2 <= 1.0
    labels[liver] = 1
    labels[liver & ((y - 26) ** 2 + (x - 20) ** 2 <= 16) & (z >= 3) & (z <= 6)] = 2
    labels[liver & (y > 40) & (x > 25) & (z == 5)] = 2
    return labels


def _series(tmp_path: Path, **options: object) -> tuple[Path, Path, np.ndarray]:
    """A DICOM series and a label map (NIfTI) on its grid; returns (folder, label file, labels)."""
    hu = abdomen_like_volume((10, 64, 56))
    folder = tmp_path / "dicom"
    write_ct_series(folder, hu, **options)  # type: ignore[arg-type]
    scan = read_ct(folder)
    labels = _labels_zyx(tuple(reversed(scan.image.GetSize())))  # type: ignore[arg-type]
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(scan.image)
    path = tmp_path / "segmentation.nii.gz"
    sitk.WriteImage(image, str(path))
    return folder, path, labels


def test_masks_and_labels_are_inverse() -> None:
    labels = _labels_zyx((10, 64, 56))
    masks = segment_masks(labels)
    assert masks.shape == (*labels.shape, 2)
    assert np.array_equal(masks[..., 0], labels > 0) and np.array_equal(masks[..., 1], labels == 2)
    assert np.array_equal(labels_from_masks(masks), labels)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="axial"),
        pytest.param({"column_direction": (0.0, -1.0, 0.0)}, id="flipped-rows"),
        pytest.param(
            {
                "row_direction": (-1.0, 0.0, 0.0),
                "column_direction": (0.0, 0.0, -1.0),
                "spacing_xyz": (2.0, 2.0, 12.0),
            },
            id="coronal",
        ),
    ],
)
def test_round_trip_frames_map_back_to_the_same_voxels(
    tmp_path: Path, options: dict[str, object]
) -> None:
    folder, labels_path, labels = _series(tmp_path, **options)
    output = tmp_path / "out" / "seg.dcm"
    result = run_cli("dicom-seg", labels_path, folder, "-o", output)
    assert result.exit_code == 0, result.stderr
    scan = read_ct(folder)
    assert scan.dicom is not None
    sources = read_source_datasets(scan.dicom.files)
    segmentation = hd.seg.segread(output)
    assert np.array_equal(labels_on_source(segmentation, sources), labels)
    # each frame lies where its source image lies, in the source's frame of reference
    positions = {
        str(ds.SOPInstanceUID): [float(v) for v in ds.ImagePositionPatient] for ds in sources
    }
    for frame in segmentation.PerFrameFunctionalGroupsSequence:
        source_uid = str(
            frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        )
        position = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, positions[source_uid], atol=1e-3)
    assert segmentation.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert segmentation.SegmentsOverlap == "YES"
    descriptions = {int(s.SegmentNumber): s for s in segmentation.SegmentSequence}
    liver, tumour = descriptions[1], descriptions[2]
    assert liver.SegmentLabel == "Liver" and tumour.SegmentLabel == "Tumour"
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert tumour.SegmentedPropertyTypeCodeSequence[0].CodeValue == "108369006"
    assert tumour.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert tumour.AnatomicRegionSequence[0].CodeValue == "10200004"
    assert all(
        s.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == "SCT"
        for s in descriptions.values()
    )
    assert liver.SegmentAlgorithmType == "MANUAL"  # no provenance JSON beside the label map


def test_seg_carries_the_patient_module_but_logs_do_not(tmp_path: Path) -> None:
    folder, labels_path, _ = _series(tmp_path)
    output = tmp_path / "seg.dcm"
    result = run_cli("dicom-seg", labels_path, folder, "-o", output)
    assert result.exit_code == 0
    ds = pydicom.dcmread(output)
    assert str(ds.PatientName) == FAKE_IDENTIFIERS["PatientName"]
    assert ds.PatientID == FAKE_IDENTIFIERS["PatientID"]
    source = pydicom.dcmread(sorted(folder.iterdir())[0], stop_before_pixels=True)
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    for value in FAKE_IDENTIFIERS.values():
        assert value not in result.stdout + result.stderr


def test_algorithm_from_provenance(tmp_path: Path) -> None:
    folder, labels_path, _ = _series(tmp_path)
    labels_path.with_name("segmentation.json").write_text(
        '{"model": {"name": "liverburden-ct", "version": "1.2.0"}}', encoding="utf-8"
    )
    output = tmp_path / "seg.dcm"
    assert run_cli("dicom-seg", labels_path, folder, "-o", output).exit_code == 0
    ds = pydicom.dcmread(output, stop_before_pixels=True)
    segment = ds.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "liverburden-ct"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "1.2.0"


def test_bad_inputs(tmp_path: Path) -> None:
    folder, labels_path, labels = _series(tmp_path)
    assert_clean_error(
        run_cli("dicom-seg", labels_path, folder, "-o", tmp_path / "seg.nii"), "must end in .dcm"
    )
    assert_clean_error(
        run_cli("dicom-seg", labels_path, folder, "-o", folder / "seg.dcm"),
        "would overwrite the input",
    )
    other = sitk.GetImageFromArray(labels[:, :, :-4].copy())
    sitk.WriteImage(other, str(tmp_path / "other.nii.gz"))
    assert_clean_error(
        run_cli("dicom-seg", tmp_path / "other.nii.gz", folder, "-o", tmp_path / "a.dcm"),
        "different grid",
    )
    empty = sitk.GetImageFromArray(np.zeros_like(labels))
    empty.CopyInformation(read_ct(folder).image)
    sitk.WriteImage(empty, str(tmp_path / "empty.nii.gz"))
    assert_clean_error(
        run_cli("dicom-seg", tmp_path / "empty.nii.gz", folder, "-o", tmp_path / "b.dcm"),
        "no liver",
    )
    assert_clean_error(
        run_cli("dicom-seg", labels_path, tmp_path / "nowhere", "-o", tmp_path / "c.dcm"),
        "not a folder",
    )
    assert not any(p.suffix == ".dcm" for p in tmp_path.iterdir())


@pytest.mark.realdata
def test_matches_a_real_dicom_seg(tmp_path: Path) -> None:
    """Write the liver of dcmqi's liver_seg.dcm with our writer; compare with the original."""
    reference_path = shared_data("dicom-seg-liver/liver_seg.dcm")
    folder = reference_path.parent
    reference = hd.seg.segread(reference_path)
    scan = read_ct(folder)
    assert scan.dicom is not None
    sources = read_source_datasets(scan.dicom.files)
    uids = [str(ds.SOPInstanceUID) for ds in sources]
    reference_liver = reference.get_pixels_by_source_instance(
        uids, segment_numbers=[1], ignore_spatial_locations=True
    )[..., 0]
    assert reference_liver.sum() > 10_000  # a real liver on three slices
    image = sitk.GetImageFromArray(reference_liver.astype(np.uint8))
    image.CopyInformation(scan.image)
    sitk.WriteImage(image, str(tmp_path / "liver.nii.gz"))
    output = tmp_path / "ours.dcm"
    result = run_cli("dicom-seg", tmp_path / "liver.nii.gz", folder, "-o", output)
    assert result.exit_code == 0, result.stderr
    ours = hd.seg.segread(output)
    # pixel for pixel the same liver on the same source instances
    our_liver = ours.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0]
    assert np.array_equal(our_liver.astype(bool), reference_liver.astype(bool))
    assert not ours.get_pixels_by_source_instance(uids, segment_numbers=[2]).any()
    # the same structure and references as the real one
    for keyword in (
        "SOPClassUID",
        "Modality",
        "SegmentationType",
        "FrameOfReferenceUID",
        "StudyInstanceUID",
        "PatientID",
        "Rows",
        "Columns",
        "BitsAllocated",
        "PhotometricInterpretation",
    ):
        assert getattr(ours, keyword) == getattr(reference, keyword), keyword
    assert int(ours.NumberOfFrames) == int(reference.NumberOfFrames) == 3
    ours_series, reference_series = (
        ours.ReferencedSeriesSequence[0],
        reference.ReferencedSeriesSequence[0],
    )
    assert ours_series.SeriesInstanceUID == reference_series.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in ours_series.ReferencedInstanceSequence} == {
        i.ReferencedSOPInstanceUID for i in reference_series.ReferencedInstanceSequence
    }
    shared, reference_shared = (
        ours.SharedFunctionalGroupsSequence[0],
        reference.SharedFunctionalGroupsSequence[0],
    )
    assert np.allclose(
        [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient],
        [float(v) for v in reference_shared.PlaneOrientationSequence[0].ImageOrientationPatient],
    )
    assert np.allclose(
        [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing],
        [float(v) for v in reference_shared.PixelMeasuresSequence[0].PixelSpacing],
    )

    def positions(seg: hd.seg.Segmentation) -> set[tuple[float, ...]]:
        return {
            tuple(round(float(v), 2) for v in frame.PlanePositionSequence[0].ImagePositionPatient)
            for frame in seg.PerFrameFunctionalGroupsSequence
        }

    assert positions(ours) == positions(reference)
    assert (
        ours.SegmentSequence[0].SegmentLabel == reference.SegmentSequence[0].SegmentLabel == "Liver"
    )
    assert (
        ours.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning
        == reference.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning
        == "Liver"
    )
