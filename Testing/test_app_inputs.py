"""Volumes given to the browser app: DICOM folders (trame-slicer's DICOM reader) and refused inputs, on the app's
own Slicer runtime (no browser needed)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("trame_slicer")


@pytest.fixture(scope="module")
def runtime():
    from LandmarkInitLib.app.slicer_app import create_runtime

    slicer_app, context = create_runtime()
    yield slicer_app, context
    context.clear()


def write_dicom_series(array: np.ndarray, spacing, origin_lps, folder) -> None:
    """One file per slice with the geometry tags a scanner writes (LPS, as DICOM states it)."""
    import SimpleITK as sitk

    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    series = "1.2.826.0.1.3680043.2.1125.1.20261122"
    for k in range(array.shape[0]):
        image = sitk.GetImageFromArray(array[k : k + 1])
        z = origin_lps[2] + k * spacing[2]
        image.SetSpacing(spacing)  # the writer takes the pixel spacing from the image itself
        image.SetOrigin((origin_lps[0], origin_lps[1], z))
        for tag, value in {
            "0008|0060": "MR",
            "0020|000d": series + ".1",
            "0020|000e": series + ".2",
            "0020|0013": str(k + 1),
            "0020|0032": f"{origin_lps[0]}\\{origin_lps[1]}\\{z}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
            "0018|0050": str(spacing[2]),
        }.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(image)


def test_dicom_folder_loads_as_a_3d_volume_with_its_geometry(runtime, tmp_path):
    from LandmarkInitLib.app.inputs import load_input
    from LandmarkInitLib.geometry import VolumeGeometry

    slicer_app, context = runtime
    rng = np.random.default_rng(3)
    array = rng.integers(0, 1000, (6, 20, 24)).astype(np.int16)
    write_dicom_series(array, (0.8, 0.8, 2.5), (-10.0, -20.0, 30.0), tmp_path / "dicom")

    node = load_input(context, slicer_app.io_manager, tmp_path / "dicom", "MR")
    geometry = VolumeGeometry.from_volume_node(node)
    assert geometry.size_ijk == (24, 20, 6)
    np.testing.assert_allclose(geometry.spacing, [0.8, 0.8, 2.5], atol=1e-4)
    # First voxel: LPS (-10, -20, 30) is RAS (10, 20, 30).
    np.testing.assert_allclose(geometry.ijk_to_ras_points([[0, 0, 0]])[0], [10.0, 20.0, 30.0], atol=1e-3)
    import slicer

    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), array)


def test_folders_without_dicom_and_2d_files_are_refused_with_a_reason(runtime, tmp_path):
    import SimpleITK as sitk

    from LandmarkInitLib.app.inputs import load_input, load_upload
    from LandmarkInitLib.errors import LandmarkFileError

    slicer_app, context = runtime
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    # A damaged file with the DICOM preamble: refused in one message, without pydicom's warnings on the console.
    (tmp_path / "empty" / "broken.dcm").write_bytes(
        b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x04\x00abcd" + b"x" * 40
    )
    with warnings.catch_warnings(record=True) as shown, pytest.raises(LandmarkFileError, match="no DICOM file found"):
        warnings.simplefilter("always")
        load_input(context, slicer_app.io_manager, tmp_path / "empty", "US")
    assert [str(w.message) for w in shown] == []

    flat = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.Image(16, 12, sitk.sitkUInt8), str(flat))
    with pytest.raises(LandmarkFileError, match=r"flat\.nrrd is not a 3-D volume"):
        load_upload(context, slicer_app.io_manager, [{"name": "flat.nrrd", "content": flat.read_bytes()}], "US")
    with pytest.raises(LandmarkFileError, match="no file was received"):
        load_upload(context, slicer_app.io_manager, [], "US")


def test_app_command_refuses_half_a_pair_before_starting(tmp_path, capsys):
    from LandmarkInitLib.cli import EXIT_BAD_INPUT, main

    assert main(["app", "--mr", str(tmp_path / "mr.nrrd")]) == EXIT_BAD_INPUT
    assert "give both --mr and --us" in capsys.readouterr().err
