"""Landmarks as markups nodes and files, through Slicer's own storage nodes and readers."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from LandmarkInitLib.errors import LandmarkFileError, LandmarkLabelError, LockedPointError
from LandmarkInitLib.io.markups import (
    create_landmarks_node,
    find_point_index,
    landmarks_from_node,
    move_landmark,
    read_landmarks_file,
    style_landmarks_node,
    update_landmarks_node,
    write_landmarks,
    write_landmarks_file,
)
from LandmarkInitLib.io.transforms import create_transform_node
from LandmarkInitLib.landmarks import (
    LANDMARK_LABELS,
    MODALITY_COLORS,
    MODALITY_UNSELECTED_COLORS,
    LandmarkSet,
    check_modality,
    landmark_by_label,
    match_landmarks,
    validate_labels,
)

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


def exactly(message):
    return "^" + re.escape(message) + "$"


EXPECTED = "expected exactly the labels apex, bladder_neck, posterior_median"


# --- labels and landmark sets (landmarks.py) -------------------------------------------------------------------------


def test_landmark_set_normalizes_labels_and_points():
    s = LandmarkSet(["a", "b"], [1, 2, 3, 4, 5, 6])  # a list and flat integers
    assert s.labels == ("a", "b")
    assert s.points_ras.dtype == np.float64 and s.points_ras.shape == (2, 3)
    np.testing.assert_array_equal(s.point("b"), [4.0, 5.0, 6.0])
    assert {k: list(v) for k, v in s.as_dict().items()} == {"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]}
    m = LandmarkSet.from_mapping({"apex": (1, 2, 3), "bladder_neck": [4.5, 5, 6]})
    assert m.labels == ("apex", "bladder_neck")
    np.testing.assert_array_equal(m.points_ras, [[1, 2, 3], [4.5, 5, 6]])
    assert m.points_ras.dtype == np.float64
    with pytest.raises(LandmarkLabelError, match=exactly("2 labels for 1 points")):
        LandmarkSet(("a", "b"), [1.0, 2.0, 3.0])
    with pytest.raises(LandmarkLabelError, match=exactly("no landmark labelled 'c'; present: a, b")):
        s.point("c")


def test_landmark_and_modality_lookups():
    assert landmark_by_label("bladder_neck").display_name == "Bladder neck"
    with pytest.raises(KeyError) as e:
        landmark_by_label("verumontanum")
    assert e.value.args == ("verumontanum",)
    assert check_modality("US") == "us"
    with pytest.raises(ValueError, match=exactly("unknown modality 'CT': use one of mr, us")):
        check_modality("CT")


@pytest.mark.parametrize(
    "labels, message",
    [
        (["apex", " ", "posterior_median"], "landmarks: a point has an empty label; label every point"),
        (["apex", ""], "landmarks: a point has an empty label; label every point"),
        (
            ["b", "a", "b", "a", "c"],
            "landmarks: duplicated label(s) a, b; each landmark must be placed exactly once",
        ),
        (["apex"], f"landmarks: missing bladder_neck, posterior_median; {EXPECTED}"),
        (
            ["apex", "x", "bladder_neck", "y"],
            f"landmarks: unknown label(s) x, y; missing posterior_median; {EXPECTED}",
        ),
    ],
)
def test_validate_labels_exact_messages(labels, message):
    with pytest.raises(LandmarkLabelError, match=exactly(message)):
        validate_labels(labels)


def test_match_landmarks_names_the_set_at_fault():
    extra = LandmarkSet((*LANDMARK_LABELS, "verumontanum"), np.arange(12.0).reshape(4, 3))
    with pytest.raises(
        LandmarkLabelError, match=exactly(f"moving landmarks: unknown label(s) verumontanum; {EXPECTED}")
    ):
        match_landmarks(extra, POINTS)
    with pytest.raises(
        LandmarkLabelError, match=exactly(f"fixed landmarks: unknown label(s) verumontanum; {EXPECTED}")
    ):
        match_landmarks(POINTS, extra)
    four = LandmarkSet(("p1", "p2", "p3", "p4"), np.eye(4, 3))
    three = LandmarkSet(("p3", "p2", "p1"), np.eye(3))
    for moving, fixed, parts in [
        (four, three, "only in moving: p4; only in fixed: -"),
        (three, four, "only in moving: -; only in fixed: p4"),
    ]:
        with pytest.raises(
            LandmarkLabelError,
            match=exactly(
                f"the two landmark sets have different labels ({parts}); label matching points identically in both"
            ),
        ):
            match_landmarks(moving, fixed, expected=None)
    two_each = LandmarkSet(("p1", "p2", "p5", "p6"), np.eye(4, 3))
    with pytest.raises(LandmarkLabelError, match=r"\(only in moving: p3, p4; only in fixed: p5, p6\)"):
        match_landmarks(four, two_each, expected=None)
    dup = LandmarkSet(("p1", "p1", "p2"), np.eye(3))
    with pytest.raises(
        LandmarkLabelError,
        match=exactly("fixed landmarks: duplicated label(s) p1; each landmark must be placed exactly once"),
    ):
        match_landmarks(three, dup, expected=None)


# --- nodes -----------------------------------------------------------------------------------------------------------


def test_node_names_attributes_and_styling(context):
    node = create_landmarks_node(context.scene, POINTS, "US")
    assert node.GetName() == "US landmarks" and node.GetAttribute("LandmarkInit.Modality") == "us"
    assert create_landmarks_node(context.scene, POINTS, "mr", "planning").GetName() == "planning"
    # a node whose display node was deleted gets a new one, in the modality's colours
    bare = context.scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode")
    context.scene.RemoveNode(bare.GetDisplayNode())
    assert bare.GetDisplayNode() is None
    style_landmarks_node(bare, "mr")
    assert bare.GetAttribute("LandmarkInit.Modality") == "mr"
    np.testing.assert_allclose(bare.GetDisplayNode().GetSelectedColor(), MODALITY_COLORS["mr"])
    np.testing.assert_allclose(bare.GetDisplayNode().GetColor(), MODALITY_UNSELECTED_COLORS["mr"])


def test_node_errors_exact(context):
    with pytest.raises(LandmarkLabelError, match=exactly("no landmarks node given")):
        landmarks_from_node(None)
    node = create_landmarks_node(context.scene, POINTS, "mr")
    with pytest.raises(
        LandmarkLabelError, match=exactly("markups 'MR landmarks' has no point labelled 'verumontanum'")
    ):
        find_point_index(node, "verumontanum")
    node.RemoveNthControlPoint(2)
    with pytest.raises(
        LandmarkLabelError, match=exactly(f"markups 'MR landmarks': missing posterior_median; {EXPECTED}")
    ):
        landmarks_from_node(node)
    any_labels = landmarks_from_node(node, expected_labels=None)
    assert any_labels.labels == ("apex", "bladder_neck")


# --- files -----------------------------------------------------------------------------------------------------------


def write_csv(path, text):
    path.write_text(text, encoding="utf-8")
    return path


CSV_ROWS = "".join(f"{lb},{p[0]},{p[1]},{p[2]}\n" for lb, p in zip(POINTS.labels, POINTS.points_ras, strict=True))


def test_csv_node_name_modality_and_label_check(context, tmp_path):
    path = write_csv(tmp_path / "Case 7.CSV", "# coordinateSystem = RAS\nlabel,x,y,z\n" + CSV_ROWS)
    node, landmarks = read_landmarks_file(context, path)
    assert node.GetName() == "Case 7" and node.GetAttribute("LandmarkInit.Modality") is None
    np.testing.assert_array_equal(landmarks_from_node(node).points_ras, POINTS.points_ras)
    node, _ = read_landmarks_file(context, path, modality="us")
    assert node.GetAttribute("LandmarkInit.Modality") == "us"
    two = write_csv(tmp_path / "two.csv", "# coordinateSystem = RAS\nlabel,x,y,z\napex,1,2,3\nbladder_neck,4,5,6\n")
    n_before = context.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode")
    with pytest.raises(LandmarkLabelError, match=exactly(f"{two}: missing posterior_median; {EXPECTED}")):
        read_landmarks_file(context, two)
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == n_before
    _, any_labels = read_landmarks_file(context, two, expected_labels=None)
    assert any_labels.labels == ("apex", "bladder_neck")


def test_csv_as_spreadsheets_write_it(context, tmp_path):
    """Excel's "CSV UTF-8" starts with a byte-order mark; blank lines, extra columns and a second '=' in a comment are
    allowed; Windows line ends too."""
    text = (
        "\ufeff# coordinateSystem = LPS\r\n# exported = 2026-01-05 = a Monday\r\n\r\n"
        "Label, X, Y, Z, note\r\n"
        + "".join(
            f"{lb},{-p[0]},{-p[1]},{p[2]},from the plan\r\n\r\n"
            for lb, p in zip(POINTS.labels, POINTS.points_ras, strict=True)
        )
    )
    path = tmp_path / "excel.csv"
    path.write_bytes(text.encode("utf-8"))
    _, landmarks = read_landmarks_file(context, path)
    assert landmarks.labels == LANDMARK_LABELS
    np.testing.assert_allclose(landmarks.points_ras, POINTS.points_ras)


def test_csv_stated_and_requested_systems(context, tmp_path):
    path = write_csv(tmp_path / "p.csv", "# coordinateSystem = LPS\nlabel,x,y,z\n" + CSV_ROWS)
    _, landmarks = read_landmarks_file(context, path, csv_coordinate_system="lps")  # agrees: fine
    np.testing.assert_allclose(landmarks.points_ras, POINTS.points_ras * [-1, -1, 1])
    with pytest.raises(
        LandmarkFileError,
        match=exactly(f"{path} states coordinateSystem = LPS but RAS was requested; remove one of the two statements"),
    ):
        read_landmarks_file(context, path, csv_coordinate_system="ras")


NO_SYSTEM = (
    "{path} does not state its coordinate system; add a line '# coordinateSystem = RAS' (or LPS) or pass "
    "--csv-coordinate-system"
)


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "label,x,y,z\n" + CSV_ROWS,
            NO_SYSTEM,
        ),
        (
            "#XcoordinateSystem = RAS\nlabel,x,y,z\n" + CSV_ROWS,
            NO_SYSTEM,
        ),
        (
            "# coordinateSystem = LPS = RAS\nlabel,x,y,z\n" + CSV_ROWS,
            "{path}: coordinate system 'LPS = RAS' unknown; use RAS or LPS",
        ),
        (
            "# coordinateSystem = RAS\n",
            "{path}: the first row must be the header 'label,x,y,z' (or 'label,l,p,s' / 'label,r,a,s' as Slicer "
            "exports it), got ''",
        ),
        (
            "# coordinateSystem = RAS\nname, r,a,s\n",
            "{path}: the first row must be the header 'label,x,y,z' (or 'label,l,p,s' / 'label,r,a,s' as Slicer "
            "exports it), got 'name,r,a,s'",
        ),
        ("# coordinateSystem = RAS\nlabel,x,y,z\n", "{path} has no landmark rows"),
        (
            "# coordinateSystem = RAS\nlabel,x,y,z\napex,1,2,3\nbladder_neck,4\n",
            "{path}, row 3: expected label,x,y,z, got 'bladder_neck,4'",
        ),
        (
            "# coordinateSystem = RAS\nlabel,x,y,z,note\napex,1,two,3,n\n",
            "{path}, row 2: coordinates ['1', 'two', '3'] are not numbers",
        ),
    ],
)
def test_csv_errors_exact(context, tmp_path, content, message):
    path = write_csv(tmp_path / "p.csv", content)
    with pytest.raises(LandmarkFileError, match=exactly(message.format(path=path))):
        read_landmarks_file(context, path)


def test_markups_file_errors_exact_and_nothing_left_in_the_scene(context, tmp_path):
    broken = tmp_path / "broken.mrk.json"
    broken.write_text("{not json")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(f"{broken} could not be read as Slicer markups (is it a valid .mrk.json file?)"),
    ):
        read_landmarks_file(context, broken)
    import vtk

    curve = context.scene.AddNewNodeByClass("vtkMRMLMarkupsCurveNode", "c")
    for i, label in enumerate(LANDMARK_LABELS):
        curve.AddControlPoint(vtk.vtkVector3d(i, 2 * i, 0), label)
    write_landmarks_file(context, curve, tmp_path / "c.mrk.json")
    n_before = context.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{tmp_path / 'c.mrk.json'} holds a vtkMRMLMarkupsCurveNode markup; landmarks must be a point list "
            "(Fiducial)"
        ),
    ):
        read_landmarks_file(context, tmp_path / "c.mrk.json")
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode") == n_before  # the curve read is removed again
    other = create_landmarks_node(context.scene, LandmarkSet(("p1", "p2", "p3"), np.eye(3)), "mr")
    write_landmarks_file(context, other, tmp_path / "any.mrk.json")
    node, landmarks = read_landmarks_file(context, tmp_path / "any.mrk.json", expected_labels=None)
    assert landmarks.labels == ("p1", "p2", "p3") and node.GetAttribute("LandmarkInit.Modality") is None


def test_writing_landmarks_exact_errors_and_no_temporary_node(context, tmp_path):
    path = write_landmarks(context, POINTS, tmp_path / "us.mrk.json", "us")
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsFiducialNode") == 0  # the temporary node is gone
    node = create_landmarks_node(context.scene, POINTS, "us")
    with pytest.raises(
        LandmarkFileError, match=exactly(f"{path} already exists; choose another name or pass --force to overwrite it")
    ):
        write_landmarks_file(context, node, path)  # never overwrites unless asked
    with pytest.raises(
        LandmarkFileError,
        match=exactly(f"{tmp_path / 'us.json'}: landmarks are written as Slicer markups JSON; use a .mrk.json name"),
    ):
        write_landmarks_file(context, node, tmp_path / "us.json")
    transform = create_transform_node(context.scene)
    with pytest.raises(
        LandmarkFileError, match=exactly(f"Slicer's markups writer could not write {tmp_path / 't.mrk.json'}")
    ):
        write_landmarks_file(context, transform, tmp_path / "t.mrk.json")


# --- files as Slicer writes them: missing points, exported tables, several lists, .fcsv columns ---------------------


def test_a_point_marked_missing_is_called_missing(context, tmp_path):
    """Slicer 5 lets a user skip a point on purpose ("missing"); that is not a point still to be placed."""
    node = create_landmarks_node(context.scene, POINTS, "mr")
    node.SetNthControlPointPositionMissing(1)
    message = "point 'bladder_neck' is marked missing (skipped in Slicer); place it or delete it"
    with pytest.raises(LandmarkLabelError, match=exactly(f"markups 'MR landmarks': {message}")):
        landmarks_from_node(node)
    path = write_landmarks_file(context, node, tmp_path / "skipped.mrk.json")
    with pytest.raises(LandmarkLabelError, match=exactly(f"{path}: markups 'skipped': {message}")):
        read_landmarks_file(context, path)
    node.UnsetNthControlPointPosition(2)  # never placed: still "no position yet"
    node.SetNthControlPointPosition(1, 0.0, 0.0, 0.0)
    with pytest.raises(LandmarkLabelError, match="'posterior_median' has no position yet; place it or delete it"):
        landmarks_from_node(node)


@pytest.mark.parametrize("lps, columns", [(True, "label,l,p,s"), (False, "label,r,a,s")])
def test_slicer_export_to_csv_is_read_in_the_system_its_columns_name(context, tmp_path, lps, columns):
    node = create_landmarks_node(context.scene, POINTS, "mr")
    path = tmp_path / "exported.csv"
    assert context.markups_logic.ExportControlPointsToCSV(node, str(path), lps)  # Markups module "Export to CSV"
    assert path.read_text().splitlines()[0].replace('"', "").startswith(columns + ",defined,")
    _, landmarks = read_landmarks_file(context, path)
    np.testing.assert_allclose(landmarks.points_ras, POINTS.points_ras, atol=1e-9)
    system, other = ("LPS", "RAS") if lps else ("RAS", "LPS")
    _, landmarks = read_landmarks_file(context, path, csv_coordinate_system=system)  # agrees: fine
    np.testing.assert_allclose(landmarks.points_ras, POINTS.points_ras, atol=1e-9)
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{path}: its columns '{columns}' are {system} coordinates but --csv-coordinate-system {other} was "
            "given: a conflict; leave the option out (the column names state the system)"
        ),
    ):
        read_landmarks_file(context, path, csv_coordinate_system=other)
    stated = write_csv(tmp_path / "stated.csv", f"# coordinateSystem = {other}\n" + path.read_text())
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{stated}: its columns '{columns}' are {system} coordinates but its line '# coordinateSystem = {other}' "
            "says otherwise: a conflict; correct or remove that line"
        ),
    ):
        read_landmarks_file(context, stated)
    # a point skipped in Slicer is exported with defined = 0
    node.SetNthControlPointPositionMissing(2)
    context.markups_logic.ExportControlPointsToCSV(node, str(path), lps)
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{path}, row 4: point 'posterior_median' has no position (defined = 0: not placed, or marked missing in "
            "Slicer); place it or delete it"
        ),
    ):
        read_landmarks_file(context, path)


def test_a_markups_file_of_several_point_lists_is_refused(context, tmp_path):
    first = create_landmarks_node(context.scene, POINTS, "mr")
    path = write_landmarks_file(context, first, tmp_path / "two.mrk.json")
    data = json.loads(path.read_text())
    second = json.loads(json.dumps(data["markups"][0]))
    second["controlPoints"][0]["label"] = "F-1"
    data["markups"].append(second)
    path.write_text(json.dumps(data))
    n_before = context.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{path} holds 2 markups (1: Fiducial of 3 points (apex, bladder_neck, posterior_median); 2: Fiducial of "
            "3 points (F-1, bladder_neck, posterior_median)); save the point list of the landmarks on its own in a "
            ".mrk.json file and give that file"
        ),
    ):
        read_landmarks_file(context, path)
    assert context.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsNode") == n_before


FCSV_HEADER = "# Markups fiducial file version = 5.6\n# CoordinateSystem = LPS\n"
FCSV_FIX = "save the points from Slicer again, or write a .csv with the header 'label,x,y,z'"
SLICER_COLUMNS = "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"


# the last: the declared columns are everything after the first '=', even if they hold another '='
@pytest.mark.parametrize("columns", ["id,x,y,label", "id,x,y,z,label", "label,x,y,z", "label,x,y,z = Slicer 3 order"])
def test_fcsv_with_other_columns_names_the_columns_slicer_reads(context, tmp_path, columns):
    rows = "".join(f"{i},{lb},1,2,3\n" for i, lb in enumerate(LANDMARK_LABELS))
    path = write_csv(tmp_path / "p.fcsv", f"{FCSV_HEADER}# columns = {columns}\n{rows}")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{path}: wrong columns for a Slicer .fcsv file: '# columns = {columns}', but Slicer reads "
            f"'# columns = {SLICER_COLUMNS}' (by position: x,y,z 2nd to 4th, label 12th); {FCSV_FIX}"
        ),
    ):
        read_landmarks_file(context, path)


def test_fcsv_rows_too_short_for_a_label_are_refused_and_slicer_3_files_still_read(context, tmp_path):
    path = write_csv(tmp_path / "p.fcsv", FCSV_HEADER + "1,1,2,3,apex\n")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{path}, line 3: '1,1,2,3,apex' has fewer columns than Slicer's .fcsv '# columns = {SLICER_COLUMNS}' "
            f"(the label is the 12th); {FCSV_FIX}"
        ),
    ):
        read_landmarks_file(context, path)
    # no version line: Slicer 3's label,x,y,z,sel,vis (RAS), which Slicer reads
    rows = "".join(f"{lb},{p[0]},{p[1]},{p[2]},1,1\n" for lb, p in zip(POINTS.labels, POINTS.points_ras, strict=True))
    _, landmarks = read_landmarks_file(context, write_csv(tmp_path / "old.fcsv", rows))
    np.testing.assert_allclose(landmarks.points_ras, POINTS.points_ras)


# --- mutation-testing survivors: the file checks before Slicer's readers, and the exported-table columns ------------

TWELVE_COLUMN_ROWS = [  # LPS; id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label: no desc, no node ID
    f"{i},{-p[0]},{-p[1]},{p[2]},0,0,0,1,1,1,0,{lb}"
    for i, (lb, p) in enumerate(zip(POINTS.labels, POINTS.points_ras, strict=True), start=1)
]


def test_fcsv_checks_read_files_with_a_bom_latin_1_bytes_or_only_12_columns(context, tmp_path):
    # twelve columns reach the label (the 12th): not "fewer columns" than Slicer needs
    twelve = "".join(f"{row}\n" for row in TWELVE_COLUMN_ROWS)
    path = write_csv(tmp_path / "twelve.fcsv", FCSV_HEADER + f"# columns = {SLICER_COLUMNS}\n" + twelve)
    _, landmarks = read_landmarks_file(context, path)
    np.testing.assert_allclose(landmarks.ordered(LANDMARK_LABELS), POINTS.points_ras)
    # a description in Latin-1 (not UTF-8) is no reason to refuse the file: the check reads it leniently
    latin = FCSV_HEADER + "".join(f"{row},caf\xe9,\n" for row in TWELVE_COLUMN_ROWS)
    path = tmp_path / "latin.fcsv"
    path.write_bytes(latin.encode("latin-1"))
    _, landmarks = read_landmarks_file(context, path)
    np.testing.assert_allclose(landmarks.ordered(LANDMARK_LABELS), POINTS.points_ras)
    # a byte-order mark before the version line (Windows editors) still makes it a versioned file, so checked
    path = tmp_path / "bom.fcsv"
    path.write_bytes(("\ufeff" + FCSV_HEADER + "1,1,2,3,apex\n").encode("utf-8"))
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{path}, line 3: '1,1,2,3,apex' has fewer columns than Slicer's .fcsv '# columns = {SLICER_COLUMNS}' "
            f"(the label is the 12th); {FCSV_FIX}"
        ),
    ):
        read_landmarks_file(context, path)


def test_several_markups_are_described_by_name_type_and_first_three_labels(context, tmp_path):
    """Written with a byte-order mark (utf-8-sig), as Windows editors save JSON; entries as hand-edited files have
    them: a name, four points, a point without a label, a markup without a type, an entry that is not a markup."""
    doc = {
        "markups": [
            {
                "type": "Fiducial",
                "name": "MR landmarks",
                "controlPoints": [{"label": lb} for lb in ("apex", "bladder_neck", "posterior_median", "extra")],
            },
            {"controlPoints": [{"position": [0, 0, 0]}, {"label": "b"}]},
            None,
        ]
    }
    path = tmp_path / "several.mrk.json"
    path.write_bytes(json.dumps(doc).encode("utf-8-sig"))
    listed = (
        "1: 'MR landmarks', Fiducial of 4 points (apex, bladder_neck, posterior_median, ...); "
        "2: ? of 2 points (, b); 3: ? of 0 points ()"
    )
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{path} holds 3 markups ({listed}); save the point list of the landmarks on its own in a .mrk.json file "
            "and give that file"
        ),
    ):
        read_landmarks_file(context, path)


def test_defined_column_only_in_slicer_tables_and_false_counts_as_zero(context, tmp_path):
    rows = [f"{lb},{p[0]},{p[1]},{p[2]}" for lb, p in zip(POINTS.labels, POINTS.points_ras, strict=True)]
    # a plain label,x,y,z file: extra columns are the user's own, even one called "defined"
    plain = write_csv(
        tmp_path / "plain.csv", "# coordinateSystem = RAS\nlabel,x,y,z,defined\n" + "".join(f"{r},0\n" for r in rows)
    )
    _, landmarks = read_landmarks_file(context, plain)
    np.testing.assert_allclose(landmarks.points_ras, POINTS.points_ras)
    # a Slicer table (label,r,a,s,defined) whose rows stop before the defined column: those points count as placed
    table = write_csv(tmp_path / "table.csv", "label,r,a,s,defined\n" + "\n".join(rows) + "\n")
    _, landmarks = read_landmarks_file(context, table)
    np.testing.assert_allclose(landmarks.points_ras, POINTS.points_ras)
    # defined = FALSE (as a spreadsheet writes a boolean) is defined = 0
    write_csv(table, "label,r,a,s,defined\n" + rows[0] + ",1\n" + rows[1] + ",FALSE\n" + rows[2] + "\n")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{table}, row 3: point 'bladder_neck' has no position (defined = 0: not placed, or marked missing in "
            "Slicer); place it or delete it"
        ),
    ):
        read_landmarks_file(context, table)


def test_files_with_a_byte_order_mark_are_read_as_without(context, tmp_path):
    """A valid .fcsv saved with a UTF-8 byte-order mark (Notepad, Excel) was taken by Slicer's reader for a Slicer 3
    file, its header lines for points ("unknown label(s) \\ufeff# Markups fiducial file version ..."). A .mrk.json with
    one is read too, and the node keeps the user's file name."""
    rows = "".join(f"{row},,\n" for row in TWELVE_COLUMN_ROWS)
    fcsv = tmp_path / "bom14.fcsv"
    fcsv.write_bytes(("\ufeff" + FCSV_HEADER + f"# columns = {SLICER_COLUMNS}\n" + rows).encode("utf-8"))
    node, landmarks = read_landmarks_file(context, fcsv)
    np.testing.assert_allclose(landmarks.ordered(LANDMARK_LABELS), POINTS.points_ras)
    assert node.GetStorageNode().GetFileName() == str(fcsv)
    plain = tmp_path / "plain.mrk.json"
    write_landmarks(context, POINTS, plain, "mr")
    bom = tmp_path / "bom.mrk.json"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    node, landmarks = read_landmarks_file(context, bom)
    np.testing.assert_allclose(landmarks.ordered(LANDMARK_LABELS), POINTS.points_ras)
    assert node.GetName() == "bom" and node.GetStorageNode().GetFileName() == str(bom)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bom.mrk.json", "bom14.fcsv", "plain.mrk.json"]


def test_a_broken_markups_file_with_a_byte_order_mark_is_refused_as_one_without(context, tmp_path):
    """The copy read in place of a file with a byte-order mark may fail to load: the same one-line refusal."""
    for name, head in (("plain.mrk.json", b""), ("bom.mrk.json", b"\xef\xbb\xbf")):
        path = tmp_path / name
        path.write_bytes(head + b'{"markups": [')
        with pytest.raises(LandmarkFileError, match="could not be read as Slicer markups"):
            read_landmarks_file(context, path)
