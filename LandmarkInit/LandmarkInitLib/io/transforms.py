"""The MR_to_US result as a Slicer linear transform node, and transform files (.h5, .tfm, .txt).

Convention: the node's "to parent" matrix maps points in MR RAS to points in US RAS (the matrix of
:func:`registration.fit_transform` with MR as moving and US as fixed). Putting the MR volume under this node
shows it aligned with the US volume.

Files are ITK transform files written and read by Slicer's vtkMRMLTransformStorageNode. ITK stores the
*resampling* transform in LPS, i.e. US LPS -> MR LPS, so the numbers in a file are not the RAS "to parent"
matrix; the storage node converts both ways, and SimpleITK reads the file as that resampling transform.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import numpy as np

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.geometry import numpy_from_vtk_matrix
from LandmarkInitLib.io.output_files import write_with_storage_node

TRANSFORM_SUFFIXES = (".h5", ".hdf5", ".tfm", ".txt", ".mat")
DEFAULT_TRANSFORM_NAME = "MR_to_US"


def vtk_matrix(matrix):
    import vtk

    m = np.asarray(matrix, dtype=float)
    if m.shape != (4, 4) or not np.all(np.isfinite(m)):
        raise ValueError(f"expected a finite 4x4 matrix, got shape {m.shape}")
    vm = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            vm.SetElement(r, c, float(m[r, c]))
    return vm


def create_transform_node(scene, matrix=None, name: str = DEFAULT_TRANSFORM_NAME):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    if matrix is not None:
        set_transform_matrix(node, matrix)
    return node


def set_transform_matrix(node, matrix) -> None:
    """Set the node's "to parent" matrix (for MR_to_US: MR RAS -> US RAS)."""
    node.SetMatrixTransformToParent(vtk_matrix(matrix))


def transform_matrix(node) -> np.ndarray:
    """The node's "to parent" matrix as a 4x4 numpy array (linear transforms only)."""
    import vtk

    if not node.IsLinear():
        raise ValueError(f"transform {node.GetName()!r} is not linear")
    m = vtk.vtkMatrix4x4()
    node.GetMatrixTransformToParent(m)
    return numpy_from_vtk_matrix(m)


def check_transform_suffix(path) -> None:
    """The one extension check of transform files, in any case (.H5 is .h5)."""
    path = Path(path)
    if path.suffix.lower() not in TRANSFORM_SUFFIXES:
        raise LandmarkFileError(
            f"{path}: unknown transform format {path.suffix!r}; use one of {', '.join(TRANSFORM_SUFFIXES)}"
        )


def _lower_case_suffix_copy(path: Path):
    """ITK chooses the transform reader by a case-sensitive extension (a .TXT file is not read): read such a file
    through a copy whose extension is in lower case. (Writing gets the same from atomic_output's temporary name.)"""
    if path.suffix == path.suffix.lower():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="landmarkinit-") as folder:
        copy = Path(folder) / (path.stem + path.suffix.lower())
        shutil.copyfile(path, copy)
        yield copy


_lower_case_suffix = contextlib.contextmanager(_lower_case_suffix_copy)


def save_transform(context, node, path, *, force: bool = False) -> Path:
    """Write a transform node with Slicer's transform storage node (ITK format chosen by extension)."""
    import slicer

    path = Path(path)
    check_transform_suffix(path)
    return write_with_storage_node(
        context, slicer.vtkMRMLTransformStorageNode(), node, path, force=force, what="transform"
    )


def load_transform(context, path, name: str | None = None):
    """Read a linear transform file into a new vtkMRMLLinearTransformNode."""
    import slicer

    path = Path(path)
    if not path.is_file():
        raise LandmarkFileError(f"transform file {path} does not exist")
    check_transform_suffix(path)
    node = create_transform_node(context.scene, None, name or path.stem)
    storage = slicer.vtkMRMLTransformStorageNode()
    context.scene.AddNode(storage)
    try:
        with _lower_case_suffix(path) as readable:
            storage.SetFileName(str(readable))
            ok = storage.ReadData(node)
    finally:
        context.scene.RemoveNode(storage)
    if not ok or not node.IsLinear():
        context.scene.RemoveNode(node)
        raise LandmarkFileError(f"{path} could not be read as a linear transform")
    return node


def harden_copy(context, node, transform_node, name: str | None = None):
    """A copy of ``node`` (volume, markups, model) with ``transform_node`` hardened into it.

    The original node, its data and its parent transform are left exactly as they were.
    """
    scene = context.scene
    if node.IsA("vtkMRMLScalarVolumeNode"):
        copy = context.volumes_logic.CloneVolume(scene, node, name or f"{node.GetName()} (registered)")
    else:
        copy = scene.AddNewNodeByClass(node.GetClassName(), name or f"{node.GetName()} (registered)")
        copy.CopyContent(node, True)
        if hasattr(copy, "CreateDefaultDisplayNodes"):
            copy.CreateDefaultDisplayNodes()
    copy.SetAndObserveTransformNodeID(transform_node.GetID())
    context.transforms_logic.hardenTransform(copy)
    return copy
