"""Landmarks as Slicer markups point-list nodes and files (.mrk.json, legacy .fcsv, plain .csv).

Positions are read and written in the markups node's *own* coordinate system, not world: the MR
landmarks stay in MR RAS even after the clinician applies the MR_to_US transform to them for display.
Files go through Slicer's own storage nodes: .mrk.json holds LPS (Slicer's default), which the storage
node converts; the library only ever sees RAS.
"""

from __future__ import annotations

import codecs
import csv
import json
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from LandmarkInitLib.errors import LandmarkFileError, LandmarkLabelError, LockedPointError
from LandmarkInitLib.geometry import lps_to_ras
from LandmarkInitLib.io.output_files import write_with_storage_node
from LandmarkInitLib.landmarks import (
    LANDMARK_LABELS,
    MODALITY_COLORS,
    MODALITY_DISPLAY_NAMES,
    MODALITY_UNSELECTED_COLORS,
    LandmarkSet,
    check_modality,
    landmark_by_label,
    validate_labels,
)

FIDUCIAL_CLASS = "vtkMRMLMarkupsFiducialNode"
READABLE_SUFFIXES = (".mrk.json", ".json", ".fcsv", ".csv")
COORDINATE_SYSTEMS = ("RAS", "LPS")
# Slicer's .fcsv columns; its reader takes them by position (x, y, z at 1-3, label at 11), whatever the header says.
FCSV_COLUMNS = "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"
# Coordinate columns of Slicer's Markups "Export to CSV" tables (label,l,p,s,defined,...): they name the system.
TABLE_COORDINATE_COLUMNS = {("l", "p", "s"): "LPS", ("r", "a", "s"): "RAS"}


# --- nodes ------------------------------------------------------------------------------------------


def create_landmarks_node(scene, landmarks: LandmarkSet, modality: str, name: str | None = None):
    """A new point-list node with one labelled control point per landmark, coloured for its modality."""
    import vtk

    modality = check_modality(modality)
    node = scene.AddNewNodeByClass(FIDUCIAL_CLASS, name or f"{MODALITY_DISPLAY_NAMES[modality]} landmarks")
    with _modifying(node):
        for label, p in zip(landmarks.labels, landmarks.points_ras, strict=True):
            i = node.AddControlPoint(vtk.vtkVector3d(*map(float, p)), label)
            try:
                node.SetNthControlPointDescription(i, landmark_by_label(label).display_name)
            except KeyError:
                pass
    style_landmarks_node(node, modality)
    return node


def style_landmarks_node(node, modality: str) -> None:
    modality = check_modality(modality)
    node.SetAttribute("LandmarkInit.Modality", modality)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    display = node.GetDisplayNode()
    if display is not None:
        display.SetSelectedColor(*MODALITY_COLORS[modality])
        display.SetColor(*MODALITY_UNSELECTED_COLORS[modality])


def landmarks_from_node(node, expected_labels: Iterable[str] | None = LANDMARK_LABELS) -> LandmarkSet:
    """Read the labelled points of a markups node (node coordinates, RAS) and validate the labels."""
    if node is None:
        raise LandmarkLabelError("no landmarks node given")
    source = f"markups {node.GetName()!r}"
    labels, points = [], []
    for i in range(node.GetNumberOfControlPoints()):
        label = node.GetNthControlPointLabel(i)
        status = node.GetNthControlPointPositionStatus(i)
        if status == node.PositionMissing:
            raise LandmarkLabelError(
                f"{source}: point {label or i!r} is marked missing (skipped in Slicer); place it or delete it"
            )
        if status != node.PositionDefined:
            raise LandmarkLabelError(f"{source}: point {label or i!r} has no position yet; place it or delete it")
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(i, p)
        labels.append(label)
        points.append(p)
    validate_labels(labels, expected_labels, source)
    return LandmarkSet(tuple(labels), np.array(points, dtype=float).reshape(-1, 3))


def find_point_index(node, label: str) -> int:
    for i in range(node.GetNumberOfControlPoints()):
        if node.GetNthControlPointLabel(i) == label:
            return i
    raise LandmarkLabelError(f"markups {node.GetName()!r} has no point labelled {label!r}")


def move_landmark(node, label: str, ras) -> None:
    """Move one labelled point (node coordinates, RAS). A locked point is never moved."""
    i = find_point_index(node, label)
    if node.GetLocked() or node.GetNthControlPointLocked(i):
        raise LockedPointError(f"landmark {label!r} in {node.GetName()!r} is locked; unlock it to move it")
    x, y, z = (float(v) for v in ras)
    node.SetNthControlPointPosition(i, x, y, z)


def update_landmarks_node(node, landmarks: LandmarkSet) -> list[str]:
    """Set the positions of the node's points from ``landmarks``, by label; locked points stay put.
    Returns the labels that were skipped because they are locked."""
    skipped = []
    with _modifying(node):
        for label, p in zip(landmarks.labels, landmarks.points_ras, strict=True):
            try:
                move_landmark(node, label, p)
            except LockedPointError:
                skipped.append(label)
    return skipped


class _modifying:
    """StartModify/EndModify: observers see one event for a batch of changes."""

    def __init__(self, node):
        self.node = node

    def __enter__(self):
        self.was = self.node.StartModify()

    def __exit__(self, *exc):
        self.node.EndModify(self.was)


# --- files ------------------------------------------------------------------------------------------


def read_landmarks_file(
    context,
    path,
    *,
    modality: str | None = None,
    csv_coordinate_system: str | None = None,
    expected_labels: Iterable[str] | None = LANDMARK_LABELS,
):
    """Load a landmarks file into a new point-list node of ``context.scene`` and validate its labels.

    Formats: Slicer markups JSON (.mrk.json), legacy Slicer .fcsv, or plain CSV ``label,x,y,z`` whose
    coordinate system is stated in the file (a line ``# coordinateSystem = RAS`` or ``LPS``) or by
    ``csv_coordinate_system``. Returns ``(node, LandmarkSet)``.
    """
    path = Path(path)
    if not path.is_file():
        raise LandmarkFileError(f"landmarks file {path} does not exist")
    name = path.name.lower()
    if not name.endswith(READABLE_SUFFIXES):
        raise LandmarkFileError(
            f"{path}: unknown landmarks format; use Slicer markups (.mrk.json), legacy .fcsv or .csv"
        )
    if name.endswith(".csv"):
        landmarks = _read_csv(path, csv_coordinate_system)
        validate_labels(landmarks.labels, expected_labels, str(path))
        node = create_landmarks_node(context.scene, landmarks, modality or "mr", _node_name(path))
        if modality is None:
            node.RemoveAttribute("LandmarkInit.Modality")
        return node, landmarks

    if name.endswith(".fcsv"):
        _check_fcsv_columns(path)
    else:
        _check_single_markup(path)
    node = _load_markups(context, path)
    if node is None:
        fmt = name.split(".", 1)[1]
        raise LandmarkFileError(f"{path} could not be read as Slicer markups (is it a valid .{fmt} file?)")
    if not node.IsA(FIDUCIAL_CLASS):
        cls = node.GetClassName()
        context.scene.RemoveNode(node)
        raise LandmarkFileError(f"{path} holds a {cls} markup; landmarks must be a point list (Fiducial)")
    try:
        landmarks = landmarks_from_node(node, expected_labels)
    except LandmarkLabelError as e:
        context.scene.RemoveNode(node)
        raise LandmarkLabelError(f"{path}: {e}") from None
    if modality is not None:
        style_landmarks_node(node, modality)
    return node, landmarks


def _load_markups(context, path: Path):
    """Slicer's markups reader, given the file without a UTF-8 byte-order mark (Notepad and Excel write one; Slicer
    then takes a .fcsv for a Slicer 3 file and its header for points). The node keeps the user's file name."""
    if not path.read_bytes().startswith(codecs.BOM_UTF8):
        node_id = context.markups_logic.LoadMarkups(str(path))
        return context.scene.GetNodeByID(node_id) if node_id else None
    with tempfile.TemporaryDirectory(prefix="landmarkinit-") as folder:
        copy = Path(folder) / path.name
        copy.write_bytes(path.read_bytes()[len(codecs.BOM_UTF8) :])
        node_id = context.markups_logic.LoadMarkups(str(copy))
    node = context.scene.GetNodeByID(node_id) if node_id else None
    if node is not None and node.GetStorageNode() is not None:
        node.GetStorageNode().SetFileName(str(path))
    return node


def _node_name(path: Path) -> str:
    name = path.name
    for suffix in READABLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_single_markup(path: Path) -> None:
    """Slicer's reader takes the first markup of a file silently: refuse a file holding several."""
    try:
        markups = json.loads(path.read_text(encoding="utf-8-sig")).get("markups")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return  # not markups JSON: Slicer's reader says so
    if not isinstance(markups, list) or len(markups) < 2:
        return

    def describe(n: int, markup) -> str:
        markup = markup if isinstance(markup, dict) else {}
        points = markup.get("controlPoints") or []
        labels = [str(p.get("label", "")) for p in points[:3] if isinstance(p, dict)]
        name, kind = markup.get("name"), markup.get("type", "?")
        shown = ", ".join(labels) + (", ..." if len(points) > 3 else "")
        return f"{n}: {f'{name!r}, ' if name else ''}{kind} of {len(points)} points ({shown})"

    listed = "; ".join(describe(n, m) for n, m in enumerate(markups, start=1))
    raise LandmarkFileError(
        f"{path} holds {len(markups)} markups ({listed}); save the point list of the landmarks on its own in a "
        ".mrk.json file and give that file"
    )


def _check_fcsv_columns(path: Path) -> None:
    """Slicer reads .fcsv columns by position; refuse a file whose columns are elsewhere (it would be read with
    empty labels or wrong coordinates)."""
    versioned, declared, short = False, None, None
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        for n, raw in enumerate(f, start=1):
            line = raw.strip()
            if line.startswith("# Markups fiducial file version"):
                versioned = True
            elif line.startswith("# columns ="):
                declared = [c.strip() for c in line.partition("=")[2].split(",")]
            elif line and not line.startswith("#") and short is None:
                fields = next(csv.reader([line]))
                if len(fields) < 12:
                    short = (n, line)
    if not versioned:
        return  # a Slicer 3 file (label,x,y,z,sel,vis): Slicer reads it as such
    expected = FCSV_COLUMNS.split(",")
    fix = "save the points from Slicer again, or write a .csv with the header 'label,x,y,z'"
    if declared is not None and (declared[1:4] != expected[1:4] or declared[11:12] != ["label"]):
        raise LandmarkFileError(
            f"{path}: wrong columns for a Slicer .fcsv file: '# columns = {','.join(declared)}', but Slicer reads "
            f"'# columns = {FCSV_COLUMNS}' (by position: x,y,z 2nd to 4th, label 12th); {fix}"
        )
    if short is not None:
        raise LandmarkFileError(
            f"{path}, line {short[0]}: {short[1]!r} has fewer columns than Slicer's .fcsv "
            f"'# columns = {FCSV_COLUMNS}' (the label is the 12th); {fix}"
        )


def _read_csv(path: Path, coordinate_system: str | None) -> LandmarkSet:
    stated = None
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#"):
                key, _, value = line.lstrip("#").partition("=")
                if key.strip().lower() == "coordinatesystem":
                    stated = value.strip().upper()
                continue
            rows.append(line)
    reader = csv.reader(rows)
    header = [h.strip().lower() for h in next(reader, [])]
    columns = ",".join(header[:4])
    in_header = TABLE_COORDINATE_COLUMNS.get(tuple(header[1:4])) if header[:1] == ["label"] else None
    if in_header is None and header[:4] != ["label", "x", "y", "z"]:
        raise LandmarkFileError(
            f"{path}: the first row must be the header 'label,x,y,z' (or 'label,l,p,s' / 'label,r,a,s' as Slicer "
            f"exports it), got {','.join(header)!r}"
        )
    if coordinate_system is not None:
        coordinate_system = coordinate_system.upper()
        if stated is not None and stated != coordinate_system:
            raise LandmarkFileError(
                f"{path} states coordinateSystem = {stated} but {coordinate_system} was requested; "
                "remove one of the two statements"
            )
    if in_header is not None:
        if stated is not None and stated != in_header:
            raise LandmarkFileError(
                f"{path}: its columns '{columns}' are {in_header} coordinates but its line '# coordinateSystem = "
                f"{stated}' says otherwise: a conflict; correct or remove that line"
            )
        if coordinate_system is not None and coordinate_system != in_header:
            raise LandmarkFileError(
                f"{path}: its columns '{columns}' are {in_header} coordinates but --csv-coordinate-system "
                f"{coordinate_system} was given: a conflict; leave the option out (the column names state the system)"
            )
    system = in_header or coordinate_system or stated
    if system is None:
        raise LandmarkFileError(
            f"{path} does not state its coordinate system; add a line '# coordinateSystem = RAS' "
            "(or LPS) or pass --csv-coordinate-system"
        )
    if system not in COORDINATE_SYSTEMS:
        raise LandmarkFileError(f"{path}: coordinate system {system!r} unknown; use RAS or LPS")
    defined = header.index("defined") if in_header is not None and "defined" in header else None
    labels, points = [], []
    for n, row in enumerate(reader, start=2):
        if len(row) < 4:
            raise LandmarkFileError(f"{path}, row {n}: expected {columns}, got {','.join(row)!r}")
        try:
            xyz = [float(v) for v in row[1:4]]
        except ValueError:
            raise LandmarkFileError(f"{path}, row {n}: coordinates {row[1:4]} are not numbers") from None
        if defined is not None and defined < len(row) and row[defined].strip().lower() in ("0", "false"):
            raise LandmarkFileError(
                f"{path}, row {n}: point {row[0].strip()!r} has no position (defined = 0: not placed, or marked "
                "missing in Slicer); place it or delete it"
            )
        labels.append(row[0].strip())
        points.append(xyz)
    if not labels:
        raise LandmarkFileError(f"{path} has no landmark rows")
    pts = np.array(points, dtype=float)
    if system == "LPS":
        pts = lps_to_ras(pts)
    return LandmarkSet(tuple(labels), pts)


def write_landmarks_file(context, node, path, *, force: bool = False) -> Path:
    """Write a point-list node to Slicer markups JSON (.mrk.json) with Slicer's storage node."""
    import slicer

    path = Path(path)
    if not path.name.lower().endswith(".mrk.json"):
        raise LandmarkFileError(f"{path}: landmarks are written as Slicer markups JSON; use a .mrk.json name")
    return write_with_storage_node(
        context, slicer.vtkMRMLMarkupsJsonStorageNode(), node, path, force=force, what="markups"
    )


def write_landmarks(context, landmarks: LandmarkSet, path, modality: str, *, force: bool = False) -> Path:
    """Write a LandmarkSet to .mrk.json through a temporary node (removed afterwards)."""
    node = create_landmarks_node(context.scene, landmarks, modality)
    try:
        return write_landmarks_file(context, node, path, force=force)
    finally:
        context.scene.RemoveNode(node)
