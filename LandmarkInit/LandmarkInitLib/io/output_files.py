"""Output files: their names, defined once, and writing them safely (never overwrite unless asked, never leave a
half-written file)."""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from pathlib import Path

from LandmarkInitLib.errors import LandmarkFileError

# The files of a result. `landmarkinit run` writes all of RUN_FILES into its output folder; Save in the Slicer
# module and the browser app writes SAVED_FILES; dataset cases (io/datasets.py) hold landmarks and the
# ground-truth transform under the same names.
MR_LANDMARKS_FILE = "mr_landmarks.mrk.json"  # Slicer markups, MR RAS
US_LANDMARKS_FILE = "us_landmarks.mrk.json"  # Slicer markups, US RAS
TRANSFORM_FILE = "mr_to_us.h5"  # MR_to_US: its "to parent" maps MR RAS onto US RAS
LANDMARK_TRANSFORM_FILE = "mr_to_us_landmarks.h5"  # with --refine: the landmark transform the refinement started from
REPORT_PNG_FILE = "report.png"
REPORT_HTML_FILE = "report.html"
REPORT_JSON_FILE = "report.json"  # written last: its presence marks a complete result
BATCH_SUMMARY_FILE = "batch_summary.json"  # `run --cases`, beside the case folders
DETECTION_SIDECAR_SUFFIX = ".detection.json"  # `detect`: NAME.mrk.json -> NAME.detection.json
SAVED_FILES = (MR_LANDMARKS_FILE, US_LANDMARKS_FILE, TRANSFORM_FILE)
RUN_FILES = (*SAVED_FILES, LANDMARK_TRANSFORM_FILE, REPORT_PNG_FILE, REPORT_HTML_FILE, REPORT_JSON_FILE)


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


def _atomic_output(path, force: bool = False):
    """Yield a temporary path beside ``path`` (same extension, so writers pick the same format); on success
    it is renamed over ``path`` in one step, on failure it is removed."""
    path = check_writable(path, force)
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)]
    tmp = path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suffix}")
    try:
        yield tmp
        if not tmp.exists():
            raise LandmarkFileError(f"writing {path} produced no file")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def temporary_files(folder, names) -> list[Path]:
    """The temporaries `_atomic_output` made for the files ``names`` in ``folder`` and that are still there: a
    killed process cannot remove its own."""
    patterns = []
    for name in names:
        suffix = full_suffix(Path(name))
        stem = name[: len(name) - len(suffix)]
        patterns.append(re.escape(f".{stem}.tmp-") + "[0-9a-f]{8}" + re.escape(suffix))
    match = re.compile("|".join(patterns)).fullmatch
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if match(p.name)) if folder.is_dir() else []


# Wrapped here rather than decorated, so that mutation testing (`make mutate`; mutmut leaves decorated functions
# alone) reaches the body.
atomic_output = contextlib.contextmanager(_atomic_output)


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
