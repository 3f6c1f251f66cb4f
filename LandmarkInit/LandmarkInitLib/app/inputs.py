"""Volumes the user gives the app: a file (NRRD, NIfTI, MetaImage), a DICOM folder, or files uploaded from the
page. Inputs are only read; uploads are copied to a temporary folder that is deleted once loaded."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.io.volumes import VOLUME_SUFFIXES, load_volume

ACCEPTED_UPLOADS = ", ".join((*VOLUME_SUFFIXES, ".dcm"))
_HEADER_SUFFIXES = (".nhdr", ".mhd")  # headers whose voxels are in a companion file uploaded alongside


def load_input(context, io_manager, path, name: str):
    """Load a volume file, or the one DICOM series of a folder (read with trame-slicer's DICOM reader)."""
    path = Path(path)
    check_readable(path)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.is_file())
        return _load_dicom(context, io_manager, files, str(path), name)
    return load_volume(context, path, name)


def check_readable(path) -> None:
    """Refuse a missing path, a folder that cannot be listed or a file that cannot be opened, with the system's
    reason (Slicer's reader would only say it failed). Needs no runtime: the command line checks before building
    one."""
    path = Path(path)
    if not path.exists():
        raise LandmarkFileError(f"volume file {path} does not exist")  # as load_volume says it
    try:
        if path.is_dir():
            with os.scandir(path) as entries:
                next(entries, None)
        else:
            path.open("rb").close()
    except OSError as e:
        raise _unreadable(path, e) from None


def _unreadable(path, e: OSError) -> LandmarkFileError:
    return LandmarkFileError(f"{path} cannot be read ({e.strerror or e}); check its permissions")


def load_upload(context, io_manager, files: list[dict], name: str):
    """Load files uploaded from the page (trame file dicts with ``name`` and ``content``)."""
    if not files:
        raise LandmarkFileError("no file was received; choose a volume file or the files of a DICOM series")
    with tempfile.TemporaryDirectory(prefix="landmarkinit-upload-") as tmp:
        paths = []
        for f in files:
            path = Path(tmp) / Path(str(f.get("name") or "upload")).name  # never a path outside tmp
            content = f.get("content") or b""
            path.write_bytes(bytes(content) if not isinstance(content, list) else b"".join(content))
            paths.append(path)
        label = ", ".join(p.name for p in paths[:3]) + (" ..." if len(paths) > 3 else "")
        volumes = [p for p in paths if p.name.lower().endswith(VOLUME_SUFFIXES)]
        headers = [p for p in volumes if p.name.lower().endswith(_HEADER_SUFFIXES)]
        if len(paths) == 1 or (len(headers) == 1 and len(volumes) == 1):
            try:
                return load_volume(context, (headers or paths)[0], name)
            except LandmarkFileError as e:
                raise LandmarkFileError(str(e).replace(str(tmp) + "/", "")) from None
        return _load_dicom(context, io_manager, [str(p) for p in paths], label, name)


def _load_dicom(context, io_manager, files: list[str], what: str, name: str):
    dicom = [f for f in files if _is_dicom(f)]
    if not dicom:
        raise LandmarkFileError(
            f"{what}: no DICOM file found; give one volume file ({', '.join(VOLUME_SUFFIXES)}) or a DICOM series"
        )
    try:
        with warnings.catch_warnings():  # pydicom warns about each odd tag; the outcome is reported below
            warnings.simplefilter("ignore")
            nodes = io_manager.load_volumes(dicom)
    except Exception as e:  # the DICOM reader raises many kinds; the user needs to know it failed and why
        raise LandmarkFileError(f"{what}: the DICOM series could not be read ({e})") from None
    if not nodes:
        raise LandmarkFileError(f"{what}: the DICOM files hold no readable image series")
    if len(nodes) > 1:
        for extra in nodes:
            context.scene.RemoveNode(extra)
        raise LandmarkFileError(f"{what} holds {len(nodes)} DICOM series; give the files of one series only")
    node = nodes[0]
    dims = node.GetImageData().GetDimensions() if node.GetImageData() is not None else (0, 0, 0)
    if min(dims) < 2:
        context.scene.RemoveNode(node)
        raise LandmarkFileError(f"{what} is not a 3-D volume (size {dims}); load a 3-D image")
    node.SetName(name)
    return node


def _is_dicom(file: str) -> bool:
    from trame_slicer.core.volumes_reader import VolumesReader

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return VolumesReader.is_dcm_file(file)
    except OSError as e:
        raise _unreadable(file, e) from None
    except Exception:  # pydicom raises many kinds on damaged or foreign files: not a DICOM file we can use
        return False
