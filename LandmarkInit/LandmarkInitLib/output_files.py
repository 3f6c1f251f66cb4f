"""Writing output files safely: never overwrite unless asked, never leave a half-written file."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from .errors import LandmarkFileError


def full_suffix(path: Path) -> str:
    """``.mrk.json`` for ``a.mrk.json``, ``.nii.gz`` for ``b.nii.gz``, ``.h5`` for ``c.h5``."""
    name = path.name
    for double in (".mrk.json", ".nii.gz", ".seg.nrrd"):
        if name.lower().endswith(double):
            return name[-len(double) :]
    return path.suffix


def check_writable(path, force: bool = False) -> Path:
    path = Path(path)
    if path.exists() and not force:
        raise LandmarkFileError(f"{path} already exists; choose another name or pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise LandmarkFileError(f"{path} is a directory; give a file name")
    if not path.parent.exists():
        raise LandmarkFileError(f"folder {path.parent} does not exist; create it first")
    return path


@contextlib.contextmanager
def atomic_output(path, force: bool = False):
    """Yield a temporary path beside ``path`` (same extension, so writers pick the same format); on success
    it is renamed over ``path`` in one step, on failure it is removed."""
    path = check_writable(path, force)
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise LandmarkFileError(f"writing {path} produced no file")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_with_storage_node(context, storage, node, path, *, force: bool = False, what: str = "file") -> Path:
    """Write ``node`` to ``path`` with a Slicer storage node (added to the scene for the write, then removed),
    through :func:`atomic_output`."""
    context.scene.AddNode(storage)
    try:
        with atomic_output(path, force) as tmp:
            storage.SetFileName(str(tmp))
            if not storage.WriteData(node):
                raise LandmarkFileError(f"Slicer's {what} writer could not write {path}")
    finally:
        context.scene.RemoveNode(storage)
    return Path(path)
