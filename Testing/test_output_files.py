"""Output files are written under a temporary name and renamed when complete: a failed write never leaves a
half-written file and never touches the file it would have replaced."""

from __future__ import annotations

import re

import pytest

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.output_files import atomic_output, check_writable, full_suffix, write_with_storage_node


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
