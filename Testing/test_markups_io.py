"""Landmarks as markups nodes and files, through Slicer's own storage nodes and readers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from LandmarkInitLib.errors import LandmarkFileError, LandmarkLabelError, LockedPointError
from LandmarkInitLib.io.markups import (
    create_landmarks_node,
    landmarks_from_node,
    move_landmark,
    read_landmarks_file,
    update_landmarks_node,
    write_landmarks,
    write_landmarks_file,
)
from LandmarkInitLib.io.transforms import create_transform_node
from LandmarkInitLib.landmarks import LANDMARK_LABELS, MODALITY_COLORS, LandmarkSet, match_landmarks

POINTS = LandmarkSet(LANDMARK_LABELS, np.array([[1.5, -2.0, 3.25], [10.0, 20.0, -30.0], [-7.0, 8.0, 9.0]]))


def test_node_has_labelled_points_in_modality_colour(context):
    node = create_landmarks_node(context.scene, POINTS, "us")
    assert [node.GetNthControlPointLabel(i) for i in range(3)] == list(LANDMARK_LABELS)
    np.testing.assert_allclose(node.GetDisplayNode().GetSelectedColor(), MODALITY_COLORS["us"])
    assert node.GetNthControlPointDescription(1) == "Bladder neck"
    got = landmarks_from_node(node)
    np.testing.assert_array_equal(got.points_ras, POINTS.points_ras)


def test_mrk_json_round_trip_through_slicer_reader_and_file_is_lps(context, tmp_path):
    path = write_landmarks(context, POINTS, tmp_path / "us.mrk.json", "us")
    doc = json.loads(path.read_text())
    markup = doc["markups"][0]
    assert doc["@schema"].endswith("markups-schema-v1.0.3.json#")
    assert markup["coordinateSystem"] == "LPS"
    by_label = {cp["label"]: cp["position"] for cp in markup["controlPoints"]}
    np.testing.assert_allclose(by_label["apex"], [-1.5, 2.0, 3.25])  # RAS (1.5, -2, 3.25) in LPS

    node, landmarks = read_landmarks_file(context, path, modality="us")
    assert node.IsA("vtkMRMLMarkupsFiducialNode")
    np.testing.assert_allclose(landmarks.ordered(LANDMARK_LABELS), POINTS.points_ras, atol=1e-12)
    assert context.scene.GetNodesByClass("vtkMRMLMarkupsJsonStorageNode").GetNumberOfItems() >= 1


def test_write_refuses_to_overwrite_and_keeps_the_original(context, tmp_path):
    path = tmp_path / "mr.mrk.json"
    write_landmarks(context, POINTS, path, "mr")
    before = path.read_bytes()
    moved = LandmarkSet(POINTS.labels, POINTS.points_ras + 1.0)
    with pytest.raises(LandmarkFileError, match="already exists.*--force"):
        write_landmarks(context, moved, path, "mr")
    assert path.read_bytes() == before
    write_landmarks(context, moved, path, "mr", force=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mr.mrk.json"]  # no temporary files left


def test_matched_by_label_not_by_order(context, tmp_path):
    shuffled = LandmarkSet(
        ("posterior_median", "apex", "bladder_neck"), POINTS.ordered(("posterior_median", "apex", "bladder_neck"))
    )
    write_landmarks(context, shuffled, tmp_path / "a.mrk.json", "mr")
    _, read = read_landmarks_file(context, tmp_path / "a.mrk.json")
    assert read.labels == ("posterior_median", "apex", "bladder_neck")
    labels, moving, fixed = match_landmarks(read, POINTS)
    assert labels == LANDMARK_LABELS
    np.testing.assert_array_equal(moving, fixed)


@pytest.mark.parametrize(
    "labels, message",
    [
        (("apex", "bladder_neck"), "missing posterior_median"),
        (("apex", "bladder_neck", "posterior_median", "apex"), "duplicated label.*apex"),
        (("apex", "bladder_neck", "posterior_median", "verumontanum"), "unknown label.*verumontanum"),
        (("apex", " ", "posterior_median"), "empty label"),
    ],
)
def test_label_problems_are_named(context, tmp_path, labels, message):
    pts = np.arange(3 * len(labels), dtype=float).reshape(-1, 3)
    node = create_landmarks_node(context.scene, LandmarkSet(labels, pts), "mr")
    if " " in labels:  # AddControlPoint fills in an automatic label for an empty one
        node.SetNthControlPointLabel(labels.index(" "), "")
    with pytest.raises(LandmarkLabelError, match=message):
        landmarks_from_node(node)
    path = tmp_path / "bad.mrk.json"
    write_landmarks_file(context, node, path)
    n_before = context.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")
    with pytest.raises(LandmarkLabelError, match=f"{path}.*{message}"):
        read_landmarks_file(context, path)
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == n_before


def test_any_labels_mode_matches_identical_label_sets():
    a = LandmarkSet(("p1", "p2", "p3", "p4"), np.eye(4, 3))
    b = LandmarkSet(("p4", "p3", "p2", "p1"), np.eye(4, 3)[::-1])
    labels, x, y = match_landmarks(a, b, expected=None)
    np.testing.assert_array_equal(x, y)
    with pytest.raises(LandmarkLabelError, match="only in moving: p4"):
        match_landmarks(a, LandmarkSet(("p1", "p2", "p3", "p5"), np.eye(4, 3)), expected=None)


def test_unplaced_point_is_refused(context):
    node = create_landmarks_node(context.scene, POINTS, "mr")
    node.UnsetNthControlPointPosition(2)
    with pytest.raises(LandmarkLabelError, match="posterior_median.*no position"):
        landmarks_from_node(node)


def test_positions_are_node_coordinates_even_under_a_transform(context):
    node = create_landmarks_node(context.scene, POINTS, "mr")
    shift = np.eye(4)
    shift[:3, 3] = [100, 0, 0]
    node.SetAndObserveTransformNodeID(create_transform_node(context.scene, shift).GetID())
    world = [0.0] * 3
    node.GetNthControlPointPositionWorld(0, world)
    np.testing.assert_allclose(world, POINTS.points_ras[0] + [100, 0, 0])
    np.testing.assert_allclose(landmarks_from_node(node).points_ras, POINTS.points_ras)


def test_legacy_fcsv_is_read_in_lps(context, tmp_path):
    path = tmp_path / "us.fcsv"
    path.write_text(
        "# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n"
        "# columns = id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID\n"
        "1,-1.5,2,3.25,0,0,0,1,1,1,0,apex,,\n"
        "2,-10,-20,-30,0,0,0,1,1,1,0,bladder_neck,,\n"
        "3,7,-8,9,0,0,0,1,1,1,0,posterior_median,,\n"
    )
    _, landmarks = read_landmarks_file(context, path)
    np.testing.assert_allclose(landmarks.ordered(LANDMARK_LABELS), POINTS.points_ras)


@pytest.mark.parametrize("system, sign", [("RAS", 1.0), ("LPS", -1.0)])
def test_csv_in_stated_coordinate_system(context, tmp_path, system, sign):
    path = tmp_path / "p.csv"
    rows = "\n".join(
        f"{lb},{sign * p[0]},{sign * p[1]},{p[2]}" for lb, p in zip(POINTS.labels, POINTS.points_ras, strict=True)
    )
    path.write_text(f"# coordinateSystem = {system}\nlabel,x,y,z\n{rows}\n")
    _, landmarks = read_landmarks_file(context, path)
    np.testing.assert_allclose(landmarks.ordered(LANDMARK_LABELS), POINTS.points_ras)
    # the same numbers with no statement need the option
    path.write_text(f"label,x,y,z\n{rows}\n")
    with pytest.raises(LandmarkFileError, match="does not state its coordinate system"):
        read_landmarks_file(context, path)
    _, landmarks = read_landmarks_file(context, path, csv_coordinate_system=system)
    np.testing.assert_allclose(landmarks.ordered(LANDMARK_LABELS), POINTS.points_ras)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.mrk.json", None, "does not exist"),
        ("x.txt", "1,2,3", "unknown landmarks format"),
        ("broken.mrk.json", "{not json", "could not be read as Slicer markups"),
        ("p.csv", "# coordinateSystem = RAS\nname,r,a,s\napex,1,2,3\n", "header 'label,x,y,z'"),
        ("p.csv", "# coordinateSystem = RAS\nlabel,x,y,z\napex,1,two,3\n", "not numbers"),
        ("p.csv", "# coordinateSystem = XYZ\nlabel,x,y,z\napex,1,2,3\n", "unknown; use RAS or LPS"),
    ],
)
def test_bad_files_give_clear_errors(context, tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(LandmarkFileError, match=message):
        read_landmarks_file(context, path)


def test_curve_markup_is_not_taken_for_landmarks(context, tmp_path):
    import vtk

    curve = context.scene.AddNewNodeByClass("vtkMRMLMarkupsCurveNode", "c")
    for i, label in enumerate(LANDMARK_LABELS):
        curve.AddControlPoint(vtk.vtkVector3d(i, 2 * i, 0), label)
    write_landmarks_file(context, curve, tmp_path / "c.mrk.json")
    with pytest.raises(LandmarkFileError, match="Curve.*point list"):
        read_landmarks_file(context, tmp_path / "c.mrk.json")


def test_locked_points_stay_put(context):
    node = create_landmarks_node(context.scene, POINTS, "us")
    node.SetNthControlPointLocked(0, True)
    with pytest.raises(LockedPointError, match="apex.*locked"):
        move_landmark(node, "apex", [0, 0, 0])
    move_landmark(node, "bladder_neck", [1, 1, 1])
    skipped = update_landmarks_node(node, LandmarkSet(POINTS.labels, np.zeros((3, 3))))
    assert skipped == ["apex"]
    got = landmarks_from_node(node)
    np.testing.assert_array_equal(got.point("apex"), POINTS.point("apex"))
    np.testing.assert_array_equal(got.point("posterior_median"), [0, 0, 0])
