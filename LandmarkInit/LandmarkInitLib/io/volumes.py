"""Volumes in and out of the MRML scene through Slicer's own volumes logic and storage nodes.

Reading keeps the file's true geometry: NRRD and NIfTI headers (flipped, oblique, anisotropic) become the
node's IJK-to-RAS matrix exactly (see geometry.VolumeGeometry).
"""

from __future__ import annotations

from pathlib import Path

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.output_files import write_with_storage_node

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
# Written files are single files: a detached header (.nhdr, .mhd) names a data file that an atomic write (a
# temporary name, renamed) would leave behind under the temporary name.
WRITABLE_VOLUME_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha")


def load_volume(context, path, name: str | None = None, *, labelmap: bool = False):
    """Load a 3-D volume file as a scalar (or label map) volume node."""
    import vtk

    from LandmarkInitLib.io.images import check_volume_path, itk_read_failure, nifti_file_incomplete

    path = Path(path)
    if not path.exists():
        raise LandmarkFileError(f"volume file {path} does not exist")
    if path.is_dir():
        raise LandmarkFileError(f"{path} is a folder, not a volume file; give one of {', '.join(VOLUME_SUFFIXES)}")
    check_volume_path(path)
    if not path.name.lower().endswith(VOLUME_SUFFIXES):
        raise LandmarkFileError(f"{path}: unsupported volume format; use one of {', '.join(VOLUME_SUFFIXES)}")
    node_name = name or path.name.split(".")[0]
    options = 1 if labelmap else 0  # bit 0 of the archetype loading options: label map
    node = context.volumes_logic.AddArchetypeVolume(str(path), node_name, options, vtk.vtkStringArray())
    if node is None or node.GetImageData() is None:
        # Slicer reads with ITK too but keeps the reason to its log: read again with SimpleITK to tell the user why
        reason = itk_read_failure(path) or "is the file complete and 3-D?"
        raise LandmarkFileError(f"{path} could not be read as a volume: {reason}")
    incomplete = nifti_file_incomplete(path)
    if incomplete:
        context.scene.RemoveNode(node)
        raise LandmarkFileError(f"{path} is incomplete: {incomplete}; copy the file again")
    dims = node.GetImageData().GetDimensions()
    if min(dims) < 2:
        context.scene.RemoveNode(node)
        raise LandmarkFileError(f"{path} is not a 3-D volume (size {dims}); load a 3-D image")
    return node


def image_from_volume_node(node):
    """A SimpleITK image (LPS geometry) with the voxels and the node's own IJK-to-RAS geometry; a parent transform
    of the node is not applied. The voxels are copied: the node is never modified."""
    import SimpleITK as sitk
    import slicer

    from LandmarkInitLib.geometry import VolumeGeometry

    if node is None or node.GetImageData() is None:
        raise LandmarkFileError("the volume node has no image data; load a volume first")
    image = sitk.GetImageFromArray(slicer.util.arrayFromVolume(node).copy())
    VolumeGeometry.from_volume_node(node).apply_to_sitk_image(image)
    return image


def save_volume(context, node, path, *, force: bool = False) -> Path:
    """Write a volume node with Slicer's volume archetype storage node (format from the extension)."""
    import slicer

    path = Path(path)
    if not path.name.lower().endswith(WRITABLE_VOLUME_SUFFIXES):
        raise LandmarkFileError(
            f"{path}: volumes are written as one file; use one of {', '.join(WRITABLE_VOLUME_SUFFIXES)}"
        )
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetWriteFileFormat(path.name.split(".", 1)[1])
    return write_with_storage_node(context, storage, node, path, force=force, what="volume")
