"""MR_to_US transform nodes and files (.h5, .tfm) through Slicer's transform storage node, cross-checked with
SimpleITK reading the same file; hardening on a copy."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.fit.landmark_fit import apply_transform
from LandmarkInitLib.geometry import VolumeGeometry, ras_to_lps
from LandmarkInitLib.io.markups import create_landmarks_node, landmarks_from_node
from LandmarkInitLib.io.transforms import (
    create_transform_node,
    harden_copy,
    load_transform,
    save_transform,
    set_transform_matrix,
    transform_matrix,
)
from LandmarkInitLib.landmarks import LANDMARK_LABELS, LandmarkSet


def mr_to_us(rng):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", rng.uniform(-30, 30, 3), degrees=True).as_matrix()
    m[:3, 3] = rng.uniform(-40, 40, 3)
    return m


@pytest.mark.parametrize("suffix", [".h5", ".tfm", ".txt"])
def test_round_trip_through_slicer_storage(context, tmp_path, rng, suffix):
    matrix = mr_to_us(rng)
    node = create_transform_node(context.scene, matrix)
    path = save_transform(context, node, tmp_path / f"mr_to_us{suffix}")
    loaded = load_transform(context, path)
    np.testing.assert_allclose(transform_matrix(loaded), matrix, atol=1e-10)


def test_file_holds_the_itk_resampling_transform_in_lps(context, tmp_path, rng):
    """SimpleITK reads the file as US LPS -> MR LPS (the inverse of 'to parent', in LPS)."""
    matrix = mr_to_us(rng)
    path = save_transform(context, create_transform_node(context.scene, matrix), tmp_path / "t.h5")
    itk = sitk.ReadTransform(str(path))
    mr_points = rng.uniform(-60, 60, (5, 3))
    us_points = apply_transform(matrix, mr_points)
    for mr, us in zip(mr_points, us_points, strict=True):
        np.testing.assert_allclose(itk.TransformPoint([float(v) for v in ras_to_lps(us)]), ras_to_lps(mr), atol=1e-9)


def test_mr_volume_under_the_transform_lands_on_us_positions(context, tmp_path, rng):
    """Parenting the MR volume to MR_to_US moves its voxels to matrix @ their MR RAS position."""
    import vtk

    matrix = mr_to_us(rng)
    t = create_transform_node(context.scene, matrix)
    img = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.float32))
    VolumeGeometry((5, 4, 3), np.array([0.5, 0.5, 1.0]), np.array([1.0, 2.0, 3.0]), np.eye(3)).apply_to_sitk_image(img)
    sitk.WriteImage(img, str(tmp_path / "mr.nrrd"))
    from LandmarkInitLib.io.volumes import load_volume

    vol = load_volume(context, tmp_path / "mr.nrrd")
    vol.SetAndObserveTransformNodeID(t.GetID())
    to_world = vtk.vtkGeneralTransform()
    vol.GetParentTransformNode().GetTransformToWorld(to_world)
    p = [1.0, 2.0, 3.0]
    np.testing.assert_allclose(to_world.TransformPoint(p), apply_transform(matrix, p), atol=1e-9)


def test_harden_copy_leaves_the_original_untouched(context, rng):
    matrix = mr_to_us(rng)
    t = create_transform_node(context.scene, matrix)
    pts = LandmarkSet(LANDMARK_LABELS, rng.uniform(-30, 30, (3, 3)))
    original = create_landmarks_node(context.scene, pts, "mr")
    copy = harden_copy(context, original, t)
    assert copy.GetParentTransformNode() is None
    np.testing.assert_allclose(landmarks_from_node(copy).points_ras, apply_transform(matrix, pts.points_ras), atol=1e-9)
    np.testing.assert_array_equal(landmarks_from_node(original).points_ras, pts.points_ras)
    assert original.GetParentTransformNode() is None


def test_harden_copy_of_a_volume(context, tmp_path, rng):
    import slicer

    from LandmarkInitLib.io.volumes import load_volume

    matrix = mr_to_us(rng)
    t = create_transform_node(context.scene, matrix)
    img = sitk.GetImageFromArray(rng.normal(size=(3, 4, 5)).astype(np.float32))
    sitk.WriteImage(img, str(tmp_path / "mr.nrrd"))
    vol = load_volume(context, tmp_path / "mr.nrrd")
    before = VolumeGeometry.from_volume_node(vol).ijk_to_ras
    copy = harden_copy(context, vol, t)
    np.testing.assert_allclose(VolumeGeometry.from_volume_node(copy).ijk_to_ras, matrix @ before, atol=1e-9)
    np.testing.assert_array_equal(VolumeGeometry.from_volume_node(vol).ijk_to_ras, before)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(copy), slicer.util.arrayFromVolume(vol))
    assert copy.GetImageData() is not vol.GetImageData()


def test_transform_file_errors(context, tmp_path):
    node = create_transform_node(context.scene, np.eye(4))
    with pytest.raises(LandmarkFileError, match="unknown transform format"):
        save_transform(context, node, tmp_path / "t.json")
    save_transform(context, node, tmp_path / "t.h5")
    with pytest.raises(LandmarkFileError, match="already exists"):
        save_transform(context, node, tmp_path / "t.h5")
    with pytest.raises(LandmarkFileError, match="does not exist"):
        load_transform(context, tmp_path / "none.h5")
    (tmp_path / "junk.tfm").write_text("not a transform\n")
    with pytest.raises(LandmarkFileError, match="could not be read as a linear transform"):
        load_transform(context, tmp_path / "junk.tfm")
    with pytest.raises(LandmarkFileError, match="folder .* does not exist"):
        save_transform(context, node, tmp_path / "nowhere" / "t.h5")


def exactly(message):
    return "^" + re.escape(message) + "$"


def test_transform_nodes_names_and_matrix_checks(context):
    assert create_transform_node(context.scene).GetName() == "MR_to_US"
    assert create_transform_node(context.scene, np.eye(4), name="plan").GetName() == "plan"
    node = create_transform_node(context.scene)
    for bad, shape in [(np.eye(3), "(3, 3)"), (np.full((4, 4), np.nan), "(4, 4)")]:
        with pytest.raises(ValueError, match=exactly(f"expected a finite 4x4 matrix, got shape {shape}")):
            set_transform_matrix(node, bad)
    grid = context.scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    with pytest.raises(ValueError, match=exactly("transform 'warp' is not linear")):
        transform_matrix(grid)


def storage_nodes_seen(context, action):
    """Classes of the nodes added to and removed from the scene while ``action`` runs."""
    import vtk

    seen = []

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def added(scene, event, node):
        seen.append(("added", node.GetClassName()))

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def removed(scene, event, node):
        seen.append(("removed", node.GetClassName()))

    tags = [
        context.scene.AddObserver(context.scene.NodeAddedEvent, added),
        context.scene.AddObserver(context.scene.NodeRemovedEvent, removed),
    ]
    try:
        action()
    finally:
        for tag in tags:
            context.scene.RemoveObserver(tag)
    return [s for s in seen if "Storage" in s[1]]


def test_transform_files_go_through_a_storage_node_in_the_scene(context, tmp_path):
    """The storage node is in the scene while it reads or writes (Slicer resolves file names through the scene) and
    is removed afterwards."""
    node = create_transform_node(context.scene, np.eye(4))
    path = tmp_path / "t.h5"
    during = [("added", "vtkMRMLTransformStorageNode"), ("removed", "vtkMRMLTransformStorageNode")]
    assert storage_nodes_seen(context, lambda: save_transform(context, node, path)) == during
    assert storage_nodes_seen(context, lambda: load_transform(context, path)) == during


def test_transform_file_names_overwrite_and_exact_errors(context, tmp_path, rng):
    matrix = mr_to_us(rng)
    node = create_transform_node(context.scene, np.eye(4))
    path = save_transform(context, node, tmp_path / "result.tfm")
    set_transform_matrix(node, matrix)
    with pytest.raises(
        LandmarkFileError, match=exactly(f"{path} already exists; choose another name or pass --force to overwrite it")
    ):
        save_transform(context, node, path)
    save_transform(context, node, path, force=True)
    loaded = load_transform(context, path)
    assert loaded.GetName() == "result"
    np.testing.assert_allclose(transform_matrix(loaded), matrix, atol=1e-10)
    assert load_transform(context, path, name="again").GetName() == "again"
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{tmp_path / 't.json'}: unknown transform format '.json'; use one of .h5, .hdf5, .tfm, .txt, .mat"
        ),
    ):
        save_transform(context, node, tmp_path / "t.json")
    markups = create_landmarks_node(context.scene, LandmarkSet(LANDMARK_LABELS, np.eye(3)), "mr")
    with pytest.raises(
        LandmarkFileError, match=exactly(f"Slicer's transform writer could not write {tmp_path / 'm.h5'}")
    ):
        save_transform(context, markups, tmp_path / "m.h5")
    (tmp_path / "junk.tfm").write_text("not a transform\n")
    n_before = context.scene.GetNumberOfNodes()
    with pytest.raises(
        LandmarkFileError, match=exactly(f"{tmp_path / 'junk.tfm'} could not be read as a linear transform")
    ):
        load_transform(context, tmp_path / "junk.tfm")
    assert context.scene.GetNumberOfNodes() == n_before  # the node made for it is removed again


def test_hardened_copies_are_named_displayed_and_independent(context, tmp_path, rng):
    import vtk

    from LandmarkInitLib.io.volumes import load_volume

    matrix = mr_to_us(rng)
    t = create_transform_node(context.scene, matrix)
    # a volume: its display settings come along (a clone, not a new volume with default window/level)
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(60, dtype=np.float32).reshape(3, 4, 5)), str(tmp_path / "mr.nrrd"))
    vol = load_volume(context, tmp_path / "mr.nrrd", "MR")
    vol.GetDisplayNode().SetAutoWindowLevel(0)
    vol.GetDisplayNode().SetWindowLevel(7.0, 3.0)
    copy = harden_copy(context, vol, t)
    assert copy.GetName() == "MR (registered)" and copy.IsA("vtkMRMLScalarVolumeNode")
    assert (copy.GetDisplayNode().GetWindow(), copy.GetDisplayNode().GetLevel()) == (7.0, 3.0)
    assert harden_copy(context, vol, t, name="moved").GetName() == "moved"
    # a model: a deep copy, so hardening moves the copy's points only, and it gets a display node
    points = vtk.vtkPoints()
    points.InsertNextPoint(1.0, 2.0, 3.0)
    poly = vtk.vtkPolyData()
    poly.SetPoints(points)
    model = context.scene.AddNewNodeByClass("vtkMRMLModelNode", "gland")
    model.SetAndObservePolyData(poly)
    moved = harden_copy(context, model, t)
    assert moved.GetName() == "gland (registered)" and moved.GetDisplayNode() is not None
    np.testing.assert_allclose(moved.GetPolyData().GetPoint(0), apply_transform(matrix, [1.0, 2.0, 3.0]), atol=1e-9)
    assert model.GetPolyData().GetPoint(0) == (1.0, 2.0, 3.0)
    assert harden_copy(context, model, t, name="g2").GetName() == "g2"


def test_a_transform_file_with_an_upper_case_suffix_is_read_through_a_named_temporary_copy(context, tmp_path, rng):
    """ITK picks its reader by a case-sensitive extension, so T.TFM is read from a copy T.tfm in a temporary folder
    named landmarkinit-* (recognizable as ours if a crash leaves it behind), removed after the read."""
    import tempfile

    import vtk

    matrix = mr_to_us(rng)
    path = save_transform(context, create_transform_node(context.scene, matrix), tmp_path / "T.TFM")
    read_from = []

    def file_name_set(storage, event):
        if storage.GetFileName():
            read_from.append(Path(storage.GetFileName()))

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def added(scene, event, node):
        if node.IsA("vtkMRMLTransformStorageNode"):
            node.AddObserver(vtk.vtkCommand.ModifiedEvent, file_name_set)

    tag = context.scene.AddObserver(context.scene.NodeAddedEvent, added)
    try:
        loaded = load_transform(context, path)
    finally:
        context.scene.RemoveObserver(tag)
    np.testing.assert_allclose(transform_matrix(loaded), matrix, atol=1e-10)
    (copy,) = set(read_from)
    assert copy.name == "T.tfm" and copy.parent.name.startswith("landmarkinit-")
    assert copy.parent.parent == Path(tempfile.gettempdir()) and not copy.parent.exists()
