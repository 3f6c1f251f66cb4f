"""A user's volume as `run` and `detect` read it (io/images.py): ITK's own reason for a file it cannot read, a
folder (DICOM series or not), a missing or unreadable file, the same volume given as MR and US, a volume of the
other modality, a constant volume. Real files, the installed readers, the shipped models."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.cli import EXIT_BAD_INPUT, EXIT_OK, main
from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.images import read_image, volume_fingerprint
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitLib.resources import sample_case_dir

ROOT = Path(__file__).resolve().parents[1]
CASE = sample_case_dir()
NO_LOCATION = re.compile(r"Exception thrown|\.cxx|\.h:\d|ITK ERROR|sitk::ERROR|0x[0-9a-f]{6}")


def exactly(message):
    return "^" + re.escape(message) + "$"


def write_dicom_series(image, folder: Path, series_uid: str, prefix: str = "s") -> Path:
    """One DICOM file per slice, with the position, orientation and spacing tags a series reader needs."""
    folder.mkdir(parents=True, exist_ok=True)
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.10g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetSize()[2]):
        s = image[:, :, k]
        s.SetSpacing(image.GetSpacing()[:2])
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "MR",
            "0020|000d": series_uid + ".0",
            "0020|000e": series_uid,
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0037": orientation,
            "0020|0032": "\\".join(f"{v:.10g}" for v in position),
            "0018|0050": f"{image.GetSpacing()[2]:.10g}",
        }
        for tag, value in tags.items():
            s.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{prefix}{k:03d}.dcm"))
        writer.Execute(s)
    return folder


@pytest.fixture(scope="module")
def mr_image():
    return sitk.ReadImage(str(CASE / "mr.nrrd"))


@pytest.fixture(scope="module")
def mr_dicom(mr_image, tmp_path_factory):
    return write_dicom_series(mr_image, tmp_path_factory.mktemp("dicom") / "MR series", "1.2.826.0.1.3680043.2.1125.7")


def detect(tmp_path, volume, modality, *extra):
    out = tmp_path / f"detected_{modality}.mrk.json"
    return main(["detect", "--volume", str(volume), "--modality", modality, "--output", str(out), *map(str, extra)])


def cli_error(capsys_or_capfd, command="detect") -> str:
    err = capsys_or_capfd.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    prefix = f"landmarkinit {command}: error: "
    assert lines[0].startswith(prefix), err
    return lines[0][len(prefix) :]


def truncated(source: Path, path: Path, keep: int) -> Path:
    path.write_bytes(source.read_bytes()[:keep])
    return path


# --- ITK's reason, without ITK's source location ------------------------------------------------------------------


def test_truncated_nrrd_says_what_itk_found(mr_image, tmp_path, capsys):
    gz = truncated(CASE / "mr.nrrd", tmp_path / "gz.nrrd", 3000)  # the sample is gzip-encoded
    assert detect(tmp_path, gz, "mr") == EXIT_BAD_INPUT
    assert re.fullmatch(
        rf"MR volume {re.escape(str(gz))} could not be read: expected \d+ bytes but received \d+", cli_error(capsys)
    )
    sitk.WriteImage(mr_image, str(tmp_path / "raw.nrrd"), useCompression=False)
    raw = truncated(tmp_path / "raw.nrrd", tmp_path / "raw_cut.nrrd", 5000)
    with pytest.raises(LandmarkFileError) as e:
        read_image(raw, "US")
    assert re.fullmatch(
        rf"US volume {re.escape(str(raw))} could not be read: fread got only \d+ 2-sized things, not 1572864 .*",
        str(e.value),
    )
    broken = tmp_path / "header.nrrd"
    broken.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4\nencoding: raw\n\n")
    with pytest.raises(
        LandmarkFileError, match=exactly(f"MR volume {broken} could not be read: parsed 2 values, but dimension is 3")
    ):
        read_image(broken, "MR")


def test_truncated_nifti_and_metaimage_are_refused(mr_image, tmp_path):
    """ITK reads a truncated NIfTI without complaint, the missing voxels as zeros: it must not reach a detector."""
    for suffix in (".nii", ".nii.gz", ".mha"):
        whole = tmp_path / f"whole{suffix}"
        sitk.WriteImage(mr_image, str(whole))
        read_image(whole, "MR")  # the complete file is fine
        cut = truncated(whole, tmp_path / f"cut{suffix}", 6000)
        with pytest.raises(LandmarkFileError) as e:
            read_image(cut, "MR")
        message = str(e.value)
        assert not NO_LOCATION.search(message), message
        if suffix == ".nii":
            assert message == (
                f"MR volume {cut} is incomplete: its header announces 3146080 bytes, the file has 6000; copy the file "
                "again"
            )
        elif suffix == ".nii.gz":
            assert message.startswith(f"MR volume {cut} is incomplete: the compressed data ends early or is damaged")
        else:
            assert message == (
                f"MR volume {cut} could not be read: File cannot be read: {cut} for reading. Reason: the file is "
                "incomplete or damaged"
            )
    # a gzip stream that is whole but shorter than the header says
    whole = tmp_path / "whole.nii"
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(whole.read_bytes()[:100000]))
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"MR volume {short} is incomplete: its header announces 3146080 bytes, the decompressed file has fewer; "
            "copy the file again"
        ),
    ):
        read_image(short, "MR")


@pytest.mark.parametrize("name", ["notes.nrrd", "notes.xyz", "notes.dcm"])
def test_a_file_of_unknown_format_says_itk_has_no_reader(tmp_path, capsys, name):
    path = tmp_path / name
    path.write_text("not an image\n")
    assert detect(tmp_path, path, "us") == EXIT_BAD_INPUT
    assert cli_error(capsys) == (
        f'US volume {path} could not be read: Unable to determine ImageIO reader for "{path}" (not a volume file ITK '
        "can read, or a damaged one; use NRRD, NIfTI, MetaImage or a folder holding one DICOM series)"
    )


def test_missing_file_does_not_exist_for_detect_and_run(tmp_path, capsys):
    missing = tmp_path / "none.nrrd"
    assert detect(tmp_path, missing, "mr") == EXIT_BAD_INPUT
    assert cli_error(capsys) == f"MR volume {missing} does not exist"
    assert main(["run", "--mr", str(CASE / "mr.nrrd"), "--us", str(missing), "-o", str(tmp_path / "o")]) == 2
    assert cli_error(capsys, "run") == f"US volume {missing} does not exist"


def test_unreadable_file_says_permission_denied(tmp_path):
    """ITK says such a file "does not exist". Root reads any file, so as root the check runs as user nobody."""
    folder = Path(tempfile.mkdtemp(prefix="landmarkinit-perm-"))  # under /tmp, not the root-only pytest folder
    try:
        folder.chmod(0o755)
        locked = folder / "mr.nrrd"
        shutil.copyfile(CASE / "mr.nrrd", locked)
        locked.chmod(0)
        expected = (
            f"MR volume {locked} cannot be read: permission denied; make the file readable by this user or copy it"
        )
        if os.geteuid() != 0:
            with pytest.raises(LandmarkFileError, match=exactly(expected)):
                read_image(locked, "MR")
            return
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: cannot read as another user")
        code = (
            "from LandmarkInitLib.io.images import read_image\n"
            f"try:\n    read_image({str(locked)!r}, 'MR')\nexcept Exception as e:\n    print(e)\n"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "LandmarkInit"), str(ROOT)])}
        r = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=env,
            cwd=folder,
            timeout=60,
        )
        if "No module named" in r.stderr or "Permission denied" in r.stderr:
            pytest.skip(f"user nobody cannot run this checkout's Python: {r.stderr.strip().splitlines()[-1]}")
        assert r.stdout.strip() == expected, r.stderr
    finally:
        shutil.rmtree(folder)


# --- folders: a DICOM series, or not --------------------------------------------------------------------------------


def test_folder_without_dicom_says_it_is_a_folder_without_hdf5_noise(tmp_path, capfd):
    folder = tmp_path / "scans"
    folder.mkdir()
    (folder / "notes.txt").write_text("no image here")
    expected = (
        f"{{what}} volume {folder} is a folder, not a volume file, and holds no DICOM series; give a volume file "
        "(.nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd) or a folder holding one DICOM series"
    )
    assert main(["run", "--mr", str(folder), "--us", str(CASE / "us.nrrd"), "-o", str(tmp_path / "o")]) == 2
    assert cli_error(capfd, "run") == expected.format(what="MR")  # one line: nothing from ITK or HDF5 on stderr
    assert detect(tmp_path, folder, "us") == EXIT_BAD_INPUT
    assert cli_error(capfd) == expected.format(what="US")


def test_dicom_series_folder_reads_as_the_volume(mr_image, mr_dicom, tmp_path, capsys):
    image = read_image(mr_dicom, "MR")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(mr_image))
    for a, b in ((image.GetOrigin(), mr_image.GetOrigin()), (image.GetDirection(), mr_image.GetDirection())):
        np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), mr_image.GetSpacing(), atol=1e-6)
    # detect and run take the folder where they take a volume file, with the same result
    (tmp_path / "file").mkdir()
    assert detect(tmp_path / "file", CASE / "mr.nrrd", "mr") == EXIT_OK
    assert detect(tmp_path, mr_dicom, "mr") == EXIT_OK
    printed = [line.split() for line in capsys.readouterr().out.splitlines() if " RAS " in line]  # the points
    assert len(printed) == 6 and [p[0] for p in printed[:3]] == [p[0] for p in printed[3:]] == list(LANDMARK_LABELS)
    # the same to the print's 0.01 mm, but for int8 rounding: the DICOM geometry is the file's to 1e-6 mm, and the
    # int8 MR local networks (docs/results/quantization) can turn such a change into a hundredth of a millimetre
    points = np.array([[float(v) for v in p[2:5]] for p in printed])
    np.testing.assert_allclose(points[:3], points[3:], atol=0.05)
    code = main(["run", "--mr", str(mr_dicom), "--us", str(CASE / "us.nrrd"), "-o", str(tmp_path / "run")])
    assert code in (0, 3) and (tmp_path / "run" / "report.json").is_file()
    # the folder's fingerprint (a batch redoes a case whose inputs changed) covers every file of the series
    recorded = json.loads((tmp_path / "run" / "report.json").read_text())["inputs"]["fingerprints"]["mr"]
    assert recorded == volume_fingerprint(mr_dicom)
    assert recorded["size"] == sum(p.stat().st_size for p in mr_dicom.iterdir())
    copy = shutil.copytree(mr_dicom, tmp_path / "copy")
    assert volume_fingerprint(copy)["sha256"] == recorded["sha256"]
    last = sorted(copy.iterdir())[-1]
    last.write_bytes(last.read_bytes() + b"\0")
    assert volume_fingerprint(copy)["sha256"] != recorded["sha256"]


def test_folder_of_several_dicom_series_is_refused_listing_them(mr_image, tmp_path):
    folder = tmp_path / "two"
    small = mr_image[:8, :8, :4]
    write_dicom_series(small, folder, "1.2.826.0.1.3680043.2.1125.1", prefix="a")
    write_dicom_series(small[:, :, :3], folder, "1.2.826.0.1.3680043.2.1125.2", prefix="b")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"MR volume {folder} holds 2 DICOM series (1.2.826.0.1.3680043.2.1125.1 (4 files); "
            "1.2.826.0.1.3680043.2.1125.2 (3 files)); give a folder holding one series only"
        ),
    ):
        read_image(folder, "MR")


# --- the same volume twice, the other modality, a constant volume ---------------------------------------------------


def test_the_same_volume_as_mr_and_us_is_refused_before_anything_is_written(tmp_path, capsys):
    mr = CASE / "mr.nrrd"
    out = tmp_path / "out"
    assert main(["run", "--mr", str(mr), "--us", str(mr), "-o", str(out)]) == EXIT_BAD_INPUT
    assert cli_error(capsys, "run") == (
        f"the MR and US volumes are the same file ({mr}); give the MR volume and the US volume of the case"
    )
    assert not out.exists()
    copy = tmp_path / "us.nrrd"
    shutil.copyfile(mr, copy)
    assert main(["run", "--mr", str(mr), "--us", str(copy), "-o", str(out)]) == EXIT_BAD_INPUT
    assert cli_error(capsys, "run") == (
        f"the MR volume {mr} and the US volume {copy} are identical files; give the MR volume and the US volume of "
        "the case"
    )
    assert not out.exists()
    link = tmp_path / "link.nrrd"
    link.symlink_to(mr)
    assert main(["run", "--mr", str(mr), "--us", str(link), "-o", str(out)]) == EXIT_BAD_INPUT
    assert "are the same file" in cli_error(capsys, "run") and not out.exists()


def test_detect_refuses_a_volume_of_the_other_modality_unless_told(tmp_path, capsys):
    mr, us = CASE / "mr.nrrd", CASE / "us.nrrd"
    assert detect(tmp_path, mr, "us") == EXIT_BAD_INPUT
    assert cli_error(capsys) == (
        f"{mr} was given as --modality us but it does not look like B-mode ultrasound (values from 0 to 1397, not "
        "0-255; ultrasound is 0-255 with a zero background); check the volume and --modality, or pass "
        "--modality-mismatch-ok to detect anyway"
    )
    assert detect(tmp_path, us, "mr") == EXIT_BAD_INPUT
    assert cli_error(capsys) == (
        f"{us} was given as --modality mr but it looks like 8-bit ultrasound (values 0 to 255, 39% of voxels exactly "
        "0: the background around an ultrasound fan); check the volume and --modality, or pass "
        "--modality-mismatch-ok to detect anyway"
    )
    assert not list(tmp_path.glob("detected_*"))
    # the override detects and still flags it
    assert detect(tmp_path, mr, "us", "--modality-mismatch-ok") == EXIT_OK
    assert "warning: volume does not look like B-mode ultrasound" in capsys.readouterr().err
    # the right modality passes, both ways
    for volume, modality in ((mr, "mr"), (us, "us")):
        assert detect(tmp_path, volume, modality, "--force") == EXIT_OK


def test_a_constant_volume_is_named(tmp_path, capsys, context):
    path = tmp_path / "blank.nrrd"
    sitk.WriteImage(sitk.Image([16, 16, 8], sitk.sitkUInt8) + 7, str(path))
    assert detect(tmp_path, path, "us") == EXIT_BAD_INPUT
    assert cli_error(capsys) == f"US volume {path} is constant (7 everywhere): nothing to detect; is it the right file?"
    # in Slicer (a volume node) the message names the modality and the node
    from LandmarkInitLib.detection.detectors import open_detector
    from LandmarkInitLib.detection.preprocess import InvalidVolumeError
    from LandmarkInitLib.io.volumes import load_volume
    from LandmarkInitLib.resources import default_model_card

    node = load_volume(context, path, "Blank US")
    with pytest.raises(
        InvalidVolumeError,
        match=exactly("the US volume is constant (7 everywhere): nothing to detect (volume 'Blank US')"),
    ):
        open_detector(default_model_card("us")).detect(node)


def test_slicer_side_loading_gives_the_same_reasons(context, tmp_path):
    from LandmarkInitLib.io.volumes import load_volume

    cut = truncated(CASE / "mr.nrrd", tmp_path / "cut.nrrd", 3000)
    with pytest.raises(LandmarkFileError) as e:
        load_volume(context, cut)
    assert re.fullmatch(
        rf"{re.escape(str(cut))} could not be read as a volume: expected \d+ bytes but received \d+", str(e.value)
    )
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(
        LandmarkFileError,
        match=exactly(f"{folder} is a folder, not a volume file; give one of .nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd"),
    ):
        load_volume(context, folder)
    whole = tmp_path / "whole.nii"
    sitk.WriteImage(sitk.ReadImage(str(CASE / "us.nrrd")), str(whole))
    nifti = truncated(whole, tmp_path / "cut.nii", 20000)
    n_before = context.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    with pytest.raises(LandmarkFileError, match=f"^{re.escape(str(nifti))} is incomplete: its header announces"):
        load_volume(context, nifti)
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == n_before
