"""`landmarkinit register` end to end: the installed command, real files, Slicer's readers on the outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from LandmarkInitLib.cli import main
from LandmarkInitLib.fit.landmark_fit import apply_transform, fit_rigid
from LandmarkInitLib.io.markups import read_landmarks_file, write_landmarks
from LandmarkInitLib.io.transforms import load_transform, transform_matrix
from LandmarkInitLib.landmarks import LANDMARK_LABELS, LandmarkSet
from mounts import nearly_full_disk, read_only_folder

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "Resources" / "SampleData" / "landmarks"
COMMAND = shutil.which("landmarkinit", path=os.path.dirname(sys.executable)) or "landmarkinit"


def run(*args, cwd=None):
    return subprocess.run([COMMAND, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def sample_register_args(output):
    return [
        "register",
        "--fixed-landmarks",
        SAMPLE / "us_landmarks.mrk.json",
        "--moving-landmarks",
        SAMPLE / "mr_landmarks.mrk.json",
        "--output",
        output,
    ]


def test_installed_command_registers_the_sample_pair(context, tmp_path):
    out, report = tmp_path / "mr_to_us.h5", tmp_path / "report.json"
    r = run(*sample_register_args(out), "--report", report)
    assert r.returncode == 0, r.stderr
    assert "RMS:" in r.stdout and "posterior_median" in r.stdout

    # the transform file loads back through Slicer's reader and maps MR landmarks onto US landmarks
    matrix = transform_matrix(load_transform(context, out))
    _, mr = read_landmarks_file(context, SAMPLE / "mr_landmarks.mrk.json")
    _, us = read_landmarks_file(context, SAMPLE / "us_landmarks.mrk.json")
    expected = fit_rigid(mr.ordered(LANDMARK_LABELS), us.ordered(LANDMARK_LABELS))
    np.testing.assert_allclose(matrix, expected.matrix, atol=1e-9)

    # the shipped pair was made from a known transform + 0.7 mm noise: the fit recovers it closely
    truth = np.array(json.loads((SAMPLE / "truth.json").read_text())["mr_to_us_ras"])
    angle = np.degrees(Rotation.from_matrix(matrix[:3, :3] @ truth[:3, :3].T).magnitude())
    assert angle < 3.0
    displacement = apply_transform(matrix, mr.points_ras) - apply_transform(truth, mr.points_ras)
    assert np.max(np.linalg.norm(displacement, axis=1)) < 2.0

    doc = json.loads(report.read_text())
    assert doc["mode"] == "rigid"
    np.testing.assert_allclose(doc["matrix"], matrix, atol=1e-9)
    assert [lm["label"] for lm in doc["landmarks"]] == list(LANDMARK_LABELS)
    np.testing.assert_allclose([lm["residual_mm"] for lm in doc["landmarks"]], expected.residuals, atol=1e-9)
    assert doc["rms_mm"] == pytest.approx(expected.rms)


def test_similarity_mode_and_mixed_formats(context, tmp_path, rng):
    truth = np.eye(4)
    truth[:3, :3] = 1.1 * Rotation.from_euler("y", 25, degrees=True).as_matrix()
    truth[:3, 3] = [3, 4, 5]
    mr_pts = rng.uniform(-30, 30, (3, 3))
    us_pts = apply_transform(truth, mr_pts)
    (tmp_path / "mr.csv").write_text(
        "# coordinateSystem = LPS\nlabel,x,y,z\n"
        + "".join(f"{lb},{-p[0]},{-p[1]},{p[2]}\n" for lb, p in zip(LANDMARK_LABELS, mr_pts, strict=True))
    )
    write_landmarks(context, LandmarkSet(LANDMARK_LABELS[::-1], us_pts[::-1]), tmp_path / "us.mrk.json", "us")
    code = main(
        [
            "register",
            "--fixed-landmarks",
            str(tmp_path / "us.mrk.json"),
            "--moving-landmarks",
            str(tmp_path / "mr.csv"),
            "--output",
            str(tmp_path / "t.tfm"),
            "--mode",
            "similarity",
        ]
    )
    assert code == 0
    np.testing.assert_allclose(transform_matrix(load_transform(context, tmp_path / "t.tfm")), truth, atol=1e-9)


def test_slicer_exported_tables_register_and_a_conflicting_system_is_refused(context, tmp_path, capsys):
    """Slicer's Markups "Export to CSV" writes label,l,p,s (or label,r,a,s): the columns state the system."""
    _, mr = read_landmarks_file(context, SAMPLE / "mr_landmarks.mrk.json")
    _, us = read_landmarks_file(context, SAMPLE / "us_landmarks.mrk.json")
    for landmarks, name, lps in ((mr, "mr.csv", True), (us, "us.csv", False)):
        node = context.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
        for label, p in zip(landmarks.labels, landmarks.points_ras, strict=True):
            node.AddControlPoint(*map(float, p), label)
        assert context.markups_logic.ExportControlPointsToCSV(node, str(tmp_path / name), lps)
    args = ["register", "--moving-landmarks", str(tmp_path / "mr.csv"), "--fixed-landmarks", str(tmp_path / "us.csv")]
    assert main([*args, "--output", str(tmp_path / "t.h5")]) == 0
    expected = fit_rigid(mr.ordered(LANDMARK_LABELS), us.ordered(LANDMARK_LABELS)).matrix
    matrix = transform_matrix(load_transform(context, tmp_path / "t.h5"))
    np.testing.assert_allclose(matrix, expected, atol=1e-3)  # the export keeps about 6 significant digits
    capsys.readouterr()
    assert main([*args, "--output", str(tmp_path / "u.h5"), "--csv-coordinate-system", "ras"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"landmarkinit register: error: {tmp_path / 'mr.csv'}: its columns 'label,l,p,s' are LPS coordinates but "
        "--csv-coordinate-system RAS was given: a conflict; leave the option out (the column names state the system)"
    ]
    assert not (tmp_path / "u.h5").exists()


def test_fcsv_with_wrong_columns_exits_2_naming_the_columns(tmp_path, capsys):
    (tmp_path / "mr.fcsv").write_text(
        "# Markups fiducial file version = 5.6\n# CoordinateSystem = LPS\n# columns = id,x,y,label\n"
        "1,1,2,apex\n2,4,5,bladder_neck\n3,7,8,posterior_median\n"
    )
    message = (
        "wrong columns for a Slicer .fcsv file: '# columns = id,x,y,label', but Slicer reads '# columns = "
        "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID'"
    )
    args = ["register", "--fixed-landmarks", str(SAMPLE / "us_landmarks.mrk.json")]
    assert main([*args, "--moving-landmarks", str(tmp_path / "mr.fcsv"), "--output", str(tmp_path / "t.h5")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "empty label" not in err[0]


def bad_landmarks(tmp_path, context):
    write_landmarks(
        context,
        LandmarkSet(("apex", "bladder_neck", "posterior_median"), [[0, 0, 0], [10, 0, 0], [20, 0, 0]]),
        tmp_path / "collinear.mrk.json",
        "mr",
    )
    write_landmarks(
        context, LandmarkSet(("apex", "bladder_neck"), [[0, 0, 0], [10, 0, 0]]), tmp_path / "two.mrk.json", "mr"
    )


@pytest.mark.parametrize(
    "moving, fixed, message",
    [
        ("nothere.mrk.json", "us", "does not exist"),
        ("collinear.mrk.json", "us", "moving points are nearly collinear"),
        ("two.mrk.json", "us", "missing posterior_median"),
        ("mr.txt", "us", "unknown landmarks format"),
    ],
)
def test_bad_input_exits_2_with_one_line(context, tmp_path, moving, fixed, message):
    bad_landmarks(tmp_path, context)
    (tmp_path / "mr.txt").write_text("x")
    r = run(
        "register",
        "--fixed-landmarks",
        SAMPLE / "us_landmarks.mrk.json",
        "--moving-landmarks",
        tmp_path / moving,
        "--output",
        tmp_path / "out.h5",
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("landmarkinit register: error:") and message in lines[0]
    assert not (tmp_path / "out.h5").exists()


def test_existing_output_is_never_overwritten_without_force(tmp_path):
    out = tmp_path / "mr_to_us.h5"
    out.write_bytes(b"user data")
    args = sample_register_args(out)
    r = run(*args)
    assert r.returncode == 2 and "already exists" in r.stderr and "--force" in r.stderr
    assert out.read_bytes() == b"user data"
    # an existing report blocks the run before anything is written
    out.unlink()
    (tmp_path / "r.json").write_text("{}")
    r = run(*args, "--report", tmp_path / "r.json")
    assert r.returncode == 2 and not out.exists()
    assert run(*args, "--report", tmp_path / "r.json", "--force").returncode == 0
    assert out.exists() and json.loads((tmp_path / "r.json").read_text())["landmarks"]


def test_usage_errors_and_help():
    r = run("register", "--output", "x.h5")
    assert r.returncode == 2 and "required" in r.stderr
    r = run("register", "--help")
    assert r.returncode == 0
    for option in (
        "--fixed-landmarks",
        "--moving-landmarks",
        "--output",
        "--mode",
        "--report",
        "--force",
        "--csv-coordinate-system",
        "--any-labels",
    ):
        assert option in r.stdout


def register_in_process(capsys, *args):
    """`landmarkinit register` in this process: (exit status, stderr lines)."""
    code = main(["register", *map(str, args)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_an_output_that_is_an_input_or_the_other_output_is_refused_before_anything_is_written(tmp_path, capsys):
    """Before: --report equal to the moving landmarks replaced them with the report (exit 0); --output X --report X
    wrote X and then stopped with a half result, or with --force left JSON in the .h5."""
    for name in ("mr_landmarks.mrk.json", "us_landmarks.mrk.json"):
        shutil.copy(SAMPLE / name, tmp_path / name)
    (tmp_path / "us_link.mrk.json").symlink_to(tmp_path / "us_landmarks.mrk.json")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    args = sample_register_args(tmp_path / "t.h5")[1:]
    args[1], args[3] = tmp_path / "us_landmarks.mrk.json", tmp_path / "mr_landmarks.mrk.json"
    moving = tmp_path / "mr_landmarks.mrk.json"
    code, err = register_in_process(capsys, *args, "--report", moving, "--force")
    assert code == 2 and err == [
        f"landmarkinit register: error: --report {moving} is also the input --moving-landmarks; inputs are never "
        "overwritten: choose another --report"
    ]
    link = tmp_path / "us_link.mrk.json"
    code, err = register_in_process(capsys, *args[:-1], link, "--force")  # a symlink to the fixed landmarks
    assert code == 2 and err[0].endswith(
        f"--output {link} is also the input --fixed-landmarks; inputs are never overwritten: choose another --output"
    )
    for output in ("x.h5", "x"):
        same = tmp_path / output
        code, err = register_in_process(capsys, *args[:-1], same, "--report", same, "--force")
        assert code == 2 and err == [
            f"landmarkinit register: error: --output and --report are the same file ({same}); give them different names"
        ]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_unwritable_output_folders_are_one_line_errors(tmp_path, capsys):
    """Before: a traceback and exit 1 (EROFS from the write, hidden by a second EROFS from the cleanup)."""
    (tmp_path / "file").write_text("keep")
    code, err = register_in_process(capsys, *sample_register_args(tmp_path / "file" / "t.h5")[1:])
    assert code == 2 and err == [
        f"landmarkinit register: error: {tmp_path / 'file'} is a file, not a folder; give a path in a folder"
    ]
    with read_only_folder(tmp_path / "ro") as ro:
        code, err = register_in_process(capsys, *sample_register_args(ro / "t.h5")[1:])
        assert code == 2 and err == [
            f"landmarkinit register: error: cannot write in folder {ro}: Read-only file system"
        ]
        assert list(ro.iterdir()) == []


def test_upper_case_transform_extensions_are_accepted(context, tmp_path, capsys):
    """Before: .H5 and .TFM passed the check, the fit ran, and Slicer's writer failed."""
    for name in ("T.H5", "T.TFM"):
        code, err = register_in_process(capsys, *sample_register_args(tmp_path / name)[1:])
        assert code == 0 and err == []
        assert load_transform(context, tmp_path / name).IsLinear()
    code, err = register_in_process(capsys, *sample_register_args(tmp_path / "T.NRRD")[1:])
    assert code == 2 and "unknown transform format '.NRRD'" in err[0] and not (tmp_path / "T.NRRD").exists()


def test_a_full_disk_is_one_line_and_no_file(tmp_path):
    """The installed command on a real nearly full disk: exit 2 with one line, no transform file, and no crash at
    exit (ITK's HDF5 writer, failing on the full disk, left a file open whose close crashed the process: exit 139)."""
    with nearly_full_disk(tmp_path / "disk", free_kib=8) as disk:
        (disk / "more").write_bytes(b"\0" * 4096)
        r = run(*sample_register_args(disk / "t.h5"), "--report", disk / "r.json")
        assert r.returncode == 2, r.stderr
        assert r.stderr.splitlines() == [
            f"landmarkinit register: error: not enough space in {disk}; free some space or choose another output folder"
        ]
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "more"]
