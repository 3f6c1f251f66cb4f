"""Output files are written under a temporary name and renamed when complete: a failed write never leaves a
half-written file and never touches the file it would have replaced."""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.output_files import (
    _fsync,
    atomic_output,
    check_distinct_paths,
    check_folder_writable,
    check_writable,
    free_bytes,
    full_suffix,
    temporary_files,
    write_failure_message,
    write_with_storage_node,
)
from mounts import nearly_full_disk, read_only_folder


def folder_state(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_the_target_is_only_replaced_once_the_write_is_complete(tmp_path):
    target = tmp_path / "mr_to_us.h5"
    target.write_bytes(b"previous result")
    with atomic_output(target, force=True) as tmp:
        assert tmp != target and tmp.parent == target.parent and tmp.name.endswith(".h5")
        tmp.write_bytes(b"new result")
        assert target.read_bytes() == b"previous result"  # nothing replaced while writing
    assert folder_state(tmp_path) == {"mr_to_us.h5": b"new result"}  # renamed, no temporary file left


def test_a_failing_write_leaves_the_previous_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_bytes(b"previous result")
    with pytest.raises(RuntimeError, match="disk full"), atomic_output(target, force=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert folder_state(tmp_path) == {"report.json": b"previous result"}


def test_a_failing_first_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_output(tmp_path / "report.json") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert folder_state(tmp_path) == {}


def test_a_writer_that_writes_nothing_is_an_error_and_keeps_the_previous_file(tmp_path):
    target = tmp_path / "report.png"
    target.write_bytes(b"previous")
    with pytest.raises(LandmarkFileError, match="produced no file"), atomic_output(target, force=True):
        pass
    assert folder_state(tmp_path) == {"report.png": b"previous"}


def test_existing_files_folders_and_missing_parents_are_refused(tmp_path):
    (tmp_path / "a.json").write_text("keep")
    with pytest.raises(LandmarkFileError, match="already exists.*--force"), atomic_output(tmp_path / "a.json"):
        pytest.fail("must refuse before yielding")
    (tmp_path / "d").mkdir()
    with pytest.raises(LandmarkFileError, match="is a directory"):
        check_writable(tmp_path / "d", force=True)
    with pytest.raises(LandmarkFileError, match="does not exist; create it first"):
        check_writable(tmp_path / "missing" / "x.json")
    assert (tmp_path / "a.json").read_text() == "keep"


@pytest.mark.parametrize(
    "name, suffix",
    [("a.mrk.json", ".mrk.json"), ("b.NII.GZ", ".NII.GZ"), ("c.h5", ".h5"), ("d.seg.nrrd", ".seg.nrrd"), ("e", "")],
)
def test_full_suffix_keeps_double_extensions(tmp_path, name, suffix):
    assert full_suffix(tmp_path / name) == suffix


def test_a_storage_node_that_fails_to_write_keeps_the_previous_file(context, tmp_path):
    """Slicer's writer refusing (here: a markups JSON writer given a transform node) must not replace the file."""
    import slicer

    target = tmp_path / "points.mrk.json"
    target.write_bytes(b"previous")
    node = context.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    storage = slicer.vtkMRMLMarkupsJsonStorageNode()
    with pytest.raises(LandmarkFileError, match="could not write"):
        write_with_storage_node(context, storage, node, target, force=True, what="markups")
    assert folder_state(tmp_path) == {"points.mrk.json": b"previous"}
    assert storage.GetScene() is None  # the temporary storage node is removed from the scene again


def exactly(message):
    return "^" + re.escape(message) + "$"


@pytest.mark.parametrize(
    "name, pattern",
    [
        ("mr_to_us.h5", r"\.mr_to_us\.tmp-[0-9a-f]{8}\.h5"),
        ("us.mrk.json", r"\.us\.tmp-[0-9a-f]{8}\.mrk\.json"),
        ("notes", r"\.notes\.tmp-[0-9a-f]{8}"),
    ],
)
def test_the_temporary_file_is_hidden_beside_the_target_with_its_extension(tmp_path, name, pattern):
    names = []
    for _ in range(2):
        with atomic_output(tmp_path / name, force=True) as tmp:
            assert tmp.parent == tmp_path and re.fullmatch(pattern, tmp.name), tmp.name
            names.append(tmp.name)
            tmp.write_text("x")
    assert names[0] != names[1]  # a fresh name each time
    assert folder_state(tmp_path) == {name: b"x"}


def test_refusals_are_exact_and_need_force_by_default(tmp_path):
    (tmp_path / "a.json").write_text("keep")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(f"{tmp_path / 'a.json'} already exists; choose another name or pass --force to overwrite it"),
    ):
        check_writable(tmp_path / "a.json")
    assert check_writable(str(tmp_path / "a.json"), force=True) == tmp_path / "a.json"
    (tmp_path / "d").mkdir()
    with pytest.raises(LandmarkFileError, match=exactly(f"{tmp_path / 'd'} is a directory; give a file name")):
        check_writable(tmp_path / "d", force=True)
    with pytest.raises(LandmarkFileError, match=exactly(f"folder {tmp_path / 'no'} does not exist; create it first")):
        check_writable(tmp_path / "no" / "x.json")
    with pytest.raises(LandmarkFileError, match=exactly(f"writing {tmp_path / 'b.json'} produced no file")):
        with atomic_output(tmp_path / "b.json"):
            pass


def test_storage_node_writes_default_to_refusing_and_name_the_writer(context, tmp_path):
    import slicer

    node = context.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    target = tmp_path / "t.h5"
    target.write_bytes(b"previous")
    with pytest.raises(LandmarkFileError, match="already exists"):
        write_with_storage_node(context, slicer.vtkMRMLTransformStorageNode(), node, target)
    with pytest.raises(
        LandmarkFileError, match=exactly(f"Slicer's file writer could not write {tmp_path / 'x.mrk.json'}")
    ):
        write_with_storage_node(context, slicer.vtkMRMLMarkupsJsonStorageNode(), node, tmp_path / "x.mrk.json")
    assert folder_state(tmp_path) == {"t.h5": b"previous"}


def test_the_storage_node_is_in_the_scene_while_it_writes(context, tmp_path):
    import slicer

    node = context.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    storage = slicer.vtkMRMLTransformStorageNode()
    scenes = []
    tag = storage.AddObserver("ModifiedEvent", lambda caller, event: scenes.append(caller.GetScene()))
    written = write_with_storage_node(context, storage, node, str(tmp_path / "t.h5"))
    storage.RemoveObserver(tag)
    assert written == tmp_path / "t.h5" and (tmp_path / "t.h5").stat().st_size > 0
    assert scenes and all(s is context.scene for s in scenes)  # SetFileName happened in the scene
    assert storage.GetScene() is None


def png_writer():
    """VTK's PNG writer (the one the run report uses) on a noise image that does not compress, so the file spans
    many disk blocks."""
    import vtk
    from vtk.util import numpy_support

    width, height = 300, 200
    image = vtk.vtkImageData()
    image.SetDimensions(width, height, 1)
    noise = np.random.default_rng(0).integers(0, 255, (width * height, 3), dtype=np.uint8)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(noise, deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    writer = vtk.vtkPNGWriter()
    writer.SetInputData(image)
    return writer


def png_bytes() -> bytes:
    from vtk.util import numpy_support

    writer = png_writer()
    writer.WriteToMemoryOn()
    writer.Write()
    return bytes(numpy_support.vtk_to_numpy(writer.GetResult()))


def write_png(path) -> None:
    writer = png_writer()
    writer.SetFileName(str(path))
    writer.Write()


def test_a_truncated_png_is_never_renamed_into_place(tmp_path):
    """VTK's PNG writer ignores a short write; the end of the PNG is checked before the rename."""
    data = png_bytes()
    target = tmp_path / "report.png"
    target.write_bytes(b"previous")
    with pytest.raises(LandmarkFileError, match=exactly(f"writing {target} left an incomplete file")):
        with atomic_output(target, force=True) as tmp:
            tmp.write_bytes(data[: len(data) // 2])
    assert folder_state(tmp_path) == {"report.png": b"previous"}
    with atomic_output(target, force=True) as tmp:  # the whole file passes
        tmp.write_bytes(data)
    assert folder_state(tmp_path) == {"report.png": data}


@pytest.mark.parametrize("writer", ["vtk png", "slicer transform", "python"])
def test_a_full_disk_is_one_clear_error_and_leaves_no_file(context, tmp_path, writer):
    """On a real nearly full file system every kind of writer ends in the same one-line error, and neither a
    truncated file nor a temporary file is left (before: a truncated report.png under its final name, or a raw
    OSError)."""
    import slicer

    from LandmarkInitLib.io.transforms import create_transform_node

    disk = tmp_path / "disk"
    with nearly_full_disk(disk, free_kib=8):
        out = disk / "out"
        out.mkdir()
        names = {"vtk png": "report.png", "slicer transform": "mr_to_us.h5", "python": "report.json"}
        target = out / names[writer]
        with pytest.raises(LandmarkFileError) as error:
            if writer == "slicer transform":
                node = create_transform_node(context.scene, np.eye(4))
                storage = slicer.vtkMRMLTransformStorageNode()
                # an 8 KB HDF5 file does not fit in what is left once the folder has its block
                (out / "more").write_bytes(b"\0" * 4096)
                write_with_storage_node(context, storage, node, target, what="transform")
            else:
                with atomic_output(target) as tmp:
                    if writer == "vtk png":
                        write_png(tmp)
                    else:
                        tmp.write_bytes(b"{}" * 50_000)
        assert str(error.value) == f"not enough space in {out}; free some space or choose another output folder"
        assert not target.exists() and not [p for p in out.iterdir() if p.name.startswith(".")]


def test_an_error_while_cleaning_up_never_hides_the_error_that_stopped_the_write(tmp_path):
    with pytest.raises(RuntimeError, match="the real problem"):
        with atomic_output(tmp_path / "a.json") as tmp:
            tmp.mkdir()  # the temporary path cannot be unlinked now
            (tmp / "inside").write_text("x")
            raise RuntimeError("the real problem")


def test_a_read_only_folder_is_refused_before_writing_in_one_line(tmp_path):
    with read_only_folder(tmp_path / "ro") as ro:
        with pytest.raises(LandmarkFileError, match=exactly(f"cannot write in folder {ro}: Read-only file system")):
            with atomic_output(ro / "a.json") as tmp:
                tmp.write_text("{}")
        with pytest.raises(
            LandmarkFileError, match=exactly(f"cannot create folder {ro / 'x' / 'y'} in {ro}: Read-only file system")
        ):
            check_folder_writable(ro / "x" / "y")
        assert list(ro.iterdir()) == []


def test_folders_that_are_files_are_refused_and_nothing_is_created(tmp_path):
    (tmp_path / "file").write_text("keep")
    with pytest.raises(LandmarkFileError, match=exactly(f"{tmp_path / 'file'} is a file, not a folder; give a folder")):
        check_folder_writable(tmp_path / "file")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(f"cannot create folder {tmp_path / 'file' / 'a' / 'b'}: {tmp_path / 'file'} is a file"),
    ):
        check_folder_writable(tmp_path / "file" / "a" / "b")
    with pytest.raises(
        LandmarkFileError, match=exactly(f"{tmp_path / 'file'} is a file, not a folder; give a path in a folder")
    ):
        check_writable(tmp_path / "file" / "x.json")
    assert check_folder_writable(tmp_path / "new" / "sub") == tmp_path / "new" / "sub"
    assert folder_state(tmp_path) == {"file": b"keep"}


def test_upper_case_extensions_are_written_in_the_format_they_name(context, tmp_path):
    """Slicer's writers pick the format by a case-sensitive extension: .H5 and .TFM used to fail after the fit."""
    from LandmarkInitLib.io.transforms import create_transform_node, load_transform, save_transform, transform_matrix

    matrix = np.eye(4)
    matrix[:3, 3] = [1, 2, 3]
    node = create_transform_node(context.scene, matrix)
    for name, head in (("A.H5", b"\x89HDF"), ("B.TFM", b"#Insight"), ("C.TXT", b"#Insight")):
        save_transform(context, node, tmp_path / name)
        assert (tmp_path / name).read_bytes().startswith(head), name
        np.testing.assert_allclose(transform_matrix(load_transform(context, tmp_path / name)), matrix, atol=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.H5", "B.TFM", "C.TXT"]


def test_outputs_that_are_inputs_or_each_other_are_refused(tmp_path):
    (tmp_path / "in.json").write_text("input")
    (tmp_path / "link.json").symlink_to(tmp_path / "in.json")
    os.link(tmp_path / "in.json", tmp_path / "hard.json")
    inputs = {"--moving-landmarks": tmp_path / "in.json", "--model": None}
    for output in (
        tmp_path / "in.json",
        tmp_path / "link.json",
        tmp_path / "hard.json",
        tmp_path / "x" / ".." / "in.json",
    ):
        with pytest.raises(
            LandmarkFileError,
            match=exactly(
                f"--report {output} is also the input --moving-landmarks; inputs are never overwritten: choose another "
                "--report"
            ),
        ):
            check_distinct_paths(inputs, {"--output": tmp_path / "t.h5", "--report": output})
    with pytest.raises(
        LandmarkFileError,
        match=exactly(f"--output and --report are the same file ({tmp_path / 'link.json'}); give them different names"),
    ):
        check_distinct_paths({}, {"--output": tmp_path / "in.json", "--report": tmp_path / "link.json"})
    check_distinct_paths(inputs, {"--output": tmp_path / "t.h5", "--report": tmp_path / "r.json"})
    check_distinct_paths(inputs, [("--output", tmp_path / "t.h5"), ("--output", None)])


@pytest.mark.parametrize(
    "damage",
    ["signature", "cut in a chunk header", "cut at a chunk boundary", "chunk after IEND", "chunk length over 2**31"],
)
def test_damaged_pngs_are_never_renamed_into_place(tmp_path, damage):
    """Only a PNG that starts with its signature and whose chunks run exactly to the end of IEND is complete."""
    data = png_bytes()
    content = {
        "signature": b"\0" + data[1:],  # the chunks are all there, the file still is no PNG
        "cut in a chunk header": data[:-10],  # 2 bytes of the 12-byte IEND chunk
        "cut at a chunk boundary": data[:33],  # signature + IHDR: every chunk there is whole, IEND is missing
        "chunk after IEND": data + struct.pack(">I4sI", 0, b"tEXt", 0),
        # a length read as signed (-1) would end this chunk at byte 19, the end of the file
        "chunk length over 2**31": b"\x89PNG\r\n\x1a\n" + b"\xff\xff\xff\xffIEND" + b"\0\0\0",
    }[damage]
    target = tmp_path / "report.png"
    with pytest.raises(LandmarkFileError, match=exactly(f"writing {target} left an incomplete file")):
        with atomic_output(target) as tmp:
            tmp.write_bytes(content)
    assert folder_state(tmp_path) == {}


def test_an_itk_writer_failure_is_one_line_naming_the_file(tmp_path):
    """SimpleITK raises RuntimeError with a source location; the error names the file and ITK's reason only."""
    import SimpleITK as sitk

    target = tmp_path / "volume.unknownext"
    with pytest.raises(LandmarkFileError) as error, atomic_output(target) as tmp:
        sitk.WriteImage(sitk.Image(4, 4, sitk.sitkUInt8), str(tmp))  # no ITK writer for this extension
    assert str(error.value) == f'writing {target} failed: Unable to determine ImageIO writer for "{tmp}"'
    assert folder_state(tmp_path) == {}


@pytest.fixture
def fsynced(monkeypatch):
    """Record what os.fsync flushes (the real os.fsync still runs): (is a folder, inode)."""
    calls = []
    real_fsync = os.fsync

    def spy(fd):
        st = os.fstat(fd)
        calls.append((stat.S_ISDIR(st.st_mode), st.st_ino))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def test_the_file_and_then_its_folder_are_flushed_to_disk(tmp_path, fsynced):
    """The data before the rename, the folder (holding the rename) after it: both survive a power cut."""
    with atomic_output(tmp_path / "a.json") as tmp:
        tmp.write_text("{}")
        tmp_inode = tmp.stat().st_ino
    assert fsynced == [(False, tmp_inode), (True, tmp_path.stat().st_ino)]
    assert (tmp_path / "a.json").stat().st_ino == tmp_inode


def test_a_folder_that_cannot_be_flushed_does_not_fail_a_completed_write(tmp_path, monkeypatch):
    """fsync on a folder fails on some file systems (EINVAL); the rename is done by then, so the write succeeds.
    (A failing fsync cannot be produced cheaply on a real file system: simulated.)"""
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_output(tmp_path / "a.json") as tmp:
        tmp.write_text("{}")
    assert folder_state(tmp_path) == {"a.json": b"{}"}


def test_on_windows_folders_are_not_opened_for_fsync_but_files_are(tmp_path, monkeypatch, fsynced):
    """Windows cannot open a folder (and has no O_DIRECTORY): only the file is flushed there. Windows is simulated
    by os.name and the missing flag, the rest is the real OS."""
    (tmp_path / "a.json").write_text("{}")
    with monkeypatch.context() as windows:
        windows.setattr(os, "name", "nt")
        windows.delattr(os, "O_DIRECTORY")
        _fsync(tmp_path, directory=True)
        _fsync(tmp_path / "a.json")
    assert fsynced == [(False, (tmp_path / "a.json").stat().st_ino)]
    _fsync(tmp_path, directory=True)  # elsewhere a folder is flushed
    assert fsynced[1:] == [(True, tmp_path.stat().st_ino)]


def test_what_native_writers_print_is_passed_on_after_success_and_dropped_after_failure(tmp_path, capfd, monkeypatch):
    """libpng and HDF5 print their own lines on fd 2 when they fail: held back during the write, passed on whole
    when it succeeds, dropped when it fails (the failure is one line of ours); stderr is restored either way."""
    stderr = os.fstat(2)
    with atomic_output(tmp_path / "a.json") as tmp:
        os.write(2, b"libpng warning: iCCP: known incorrect sRGB profile\n")
        assert capfd.readouterr().err == ""  # held back while writing
        tmp.write_text("{}")
        # the OS may write less than asked (a pipe, a signal): passing it on goes on until all is written
        real_write = os.write
        monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, bytes(data[:5])))
    monkeypatch.undo()
    assert capfd.readouterr().err == "libpng warning: iCCP: known incorrect sRGB profile\n"
    assert (os.fstat(2).st_dev, os.fstat(2).st_ino) == (stderr.st_dev, stderr.st_ino)
    with pytest.raises(RuntimeError, match="write failed"), atomic_output(tmp_path / "b.json"):
        os.write(2, b"HDF5-DIAG: Error detected in HDF5\n")
        raise RuntimeError("write failed")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"
    assert (os.fstat(2).st_dev, os.fstat(2).st_ino) == (stderr.st_dev, stderr.st_ino)


def test_temporary_files_finds_exactly_the_temporaries_of_the_named_files(tmp_path):
    names = ("mr_to_us.h5", "us_landmarks.mrk.json", "notes")
    leftovers = [".mr_to_us.tmp-0123abcd.h5", ".us_landmarks.tmp-89abcdef.mrk.json", ".notes.tmp-deadbeef"]
    others = [
        "mr_to_us.h5",  # the file itself
        ".mr_to_us.tmp-0123ABCD.h5",  # uuid hex is lower case
        ".mr_to_us.tmp-0123abc.h5",  # 7 digits
        ".mr_to_us.h5.tmp-0123abcd.h5",  # the extension is not part of the stem
        ".mr_to_us.tmp-0123abcd.mrk.json",  # another extension
        ".report.tmp-0123abcd.json",  # a file not asked about
        ".notes.tmp-deadbeef.h5",
    ]
    for name in leftovers + others:
        (tmp_path / name).write_text("x")
    expected = sorted(tmp_path / name for name in leftovers)
    assert temporary_files(tmp_path, names) == expected
    assert temporary_files(tmp_path, ["mr_to_us.h5"]) == [tmp_path / ".mr_to_us.tmp-0123abcd.h5"]
    with atomic_output(tmp_path / "notes", force=True) as tmp:  # a live one, as _atomic_output names it
        tmp.write_text("x")
        assert temporary_files(tmp_path, ["notes"]) == sorted([tmp, tmp_path / ".notes.tmp-deadbeef"])
    assert temporary_files(tmp_path / "missing", names) == []
    assert temporary_files(tmp_path / "mr_to_us.h5", names) == []  # a file, not a folder


def test_a_writer_failing_silently_is_reported_as_a_full_disk_below_one_mib_free(tmp_path):
    """On a real tmpfs with exactly 1 MiB free the writer's own message stands; with less, the disk is named full."""
    with nearly_full_disk(tmp_path / "disk", free_kib=1024, size_kib=2048) as disk:
        assert free_bytes(disk) == 1024 * 1024
        assert write_failure_message(disk / "report.png", "the writer failed") == "the writer failed"
        (disk / "more").write_bytes(b"\0" * 4096)
        assert write_failure_message(disk / "report.png", "the writer failed") == (
            f"not enough space in {disk}; free some space or choose another output folder"
        )


def test_storage_nodes_write_a_scratch_file_in_a_landmarkinit_folder_of_the_system_temp(context, tmp_path):
    """Slicer's writer writes in a scratch folder named for LandmarkInit (recognisable if a crash leaves it) in the
    system's temporary folder, removed after the copy."""
    import slicer

    node = context.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    storage = slicer.vtkMRMLTransformStorageNode()
    names = []
    tag = storage.AddObserver("ModifiedEvent", lambda caller, event: names.append(caller.GetFileName()))
    write_with_storage_node(context, storage, node, tmp_path / "t.h5")
    storage.RemoveObserver(tag)
    scratch = {Path(name) for name in names if name}
    assert len(scratch) == 1
    (scratch,) = scratch
    assert scratch.parent.parent == Path(tempfile.gettempdir()) and scratch.parent.name.startswith("landmarkinit-")
    assert re.fullmatch(r"\.t\.tmp-[0-9a-f]{8}\.h5", scratch.name) and not scratch.parent.exists()
