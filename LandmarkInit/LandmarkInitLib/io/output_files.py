"""Output files: their names, defined once, and writing them safely (never overwrite unless asked, never leave a
half-written file)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import struct
import sys
import tempfile
import uuid
from pathlib import Path

from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError

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

NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# A writer that fails without saying why, with less than this left on the disk, most likely ran out of space.
LOW_SPACE = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def full_suffix(path: Path) -> str:
    """``.mrk.json`` for ``a.mrk.json``, ``.nii.gz`` for ``b.nii.gz``, ``.h5`` for ``c.h5``."""
    name = path.name
    for double in (".mrk.json", ".nii.gz", ".seg.nrrd"):
        if name.lower().endswith(double):
            return name[-len(double) :]
    return path.suffix


def check_writable(path, force: bool = False) -> Path:
    """Refuse, before anything is computed, an output that cannot or must not be written (exists without
    ``force``, is a folder, its folder is missing, is a file, is read-only or full). Creates nothing."""
    path = Path(path)
    if path.exists() and not force:
        raise LandmarkFileError(f"{path} already exists; choose another name or pass --force to overwrite it")
    if path.exists() and path.is_dir():
        raise LandmarkFileError(f"{path} is a directory; give a file name")
    if not path.parent.is_dir():
        if os.path.lexists(path.parent):
            raise LandmarkFileError(f"{path.parent} is a file, not a folder; give a path in a folder")
        raise LandmarkFileError(f"folder {path.parent} does not exist; create it first")
    check_folder_writable(path.parent)
    return path


def check_folder_writable(folder) -> Path:
    """Refuse a folder that files cannot be written in: one that is a file, read-only, or on a full disk. A folder
    that does not exist yet is checked where it would be created (its nearest existing parent). Creates nothing."""
    folder = Path(folder)
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        if existing == folder:
            raise LandmarkFileError(f"{folder} is a file, not a folder; give a folder")
        raise LandmarkFileError(f"cannot create folder {folder}: {existing} is a file")
    reason = _unwritable_reason(existing)
    if reason:
        where = f"write in folder {folder}" if existing == folder else f"create folder {folder} in {existing}"
        raise LandmarkFileError(f"cannot {where}: {reason}")
    if free_bytes(existing) < _block_size(existing):
        raise LandmarkFileError(no_space_message(existing))
    return folder


def _unwritable_reason(folder: Path) -> str | None:
    # Root passes os.access's permission checks; a read-only mount is recognised by its flag, whoever asks.
    if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY:
        return os.strerror(errno.EROFS)
    if not os.access(folder, os.W_OK | os.X_OK):
        return os.strerror(errno.EACCES)
    return None


def free_bytes(folder) -> int:
    """Bytes this process may still write on the file system of ``folder`` (root may use the reserved blocks)."""
    if hasattr(os, "statvfs"):
        st = os.statvfs(folder)
        if st.f_blocks == 0:  # a file system that reports no sizes (some FUSE ones): unknown, not full
            return sys.maxsize
        return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize
    return shutil.disk_usage(folder).free


def _block_size(folder) -> int:
    return os.statvfs(folder).f_frsize if hasattr(os, "statvfs") else 4096


def no_space_message(folder) -> str:
    return f"not enough space in {folder}; free some space or choose another output folder"


def os_error_message(error: OSError, path=None) -> str:
    """One line for an OSError: the file and the reason ("not enough space in DIR" for a full disk or quota).
    ``path``: the file being written, named instead of the error's own file (a temporary name)."""
    if error.errno in NO_SPACE_ERRNOS:  # shutil.copyfile names its source first, the file written second
        written = next((p for p in (path, error.filename2, error.filename) if p is not None), None)
        return no_space_message(Path(written).parent if written is not None else "the output folder")
    reason = error.strerror or (str(error).splitlines() or [type(error).__name__])[0]
    if path is not None:
        return f"{path}: {reason}"
    if error.filename is None:
        return reason
    return f"{error.filename}" + (f" -> {error.filename2}" if error.filename2 is not None else "") + f": {reason}"


def same_file(a, b) -> bool:
    """Whether two paths name the same file: the same path once symlinks are resolved, or (existing files) the
    same inode, as for hard links."""
    a, b = Path(a), Path(b)
    try:
        if os.path.normcase(a.resolve()) == os.path.normcase(b.resolve()):
            return True
    except (OSError, RuntimeError):  # a symlink loop
        if os.path.normcase(a.absolute()) == os.path.normcase(b.absolute()):
            return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_distinct_paths(inputs, outputs) -> None:
    """Refuse an output that is one of the inputs or another output, before anything is computed. ``inputs`` and
    ``outputs``: {what the user gave, e.g. "--report": path or None}, or (what, path) pairs."""
    given = [(what, path) for what, path in _pairs(outputs) if path is not None]
    for i, (what, path) in enumerate(given):
        for input_what, input_path in _pairs(inputs):
            if input_path is not None and same_file(path, input_path):
                raise LandmarkFileError(
                    f"{what} {path} is also the input {input_what}; inputs are never overwritten: choose another {what}"
                )
        for other_what, other in given[:i]:
            if same_file(path, other):
                raise LandmarkFileError(
                    f"{other_what} and {what} are the same file ({path}); give them different names"
                )


def _pairs(paths):
    return list(paths.items() if isinstance(paths, dict) else paths)


def _check_complete(tmp: Path, suffix: str) -> None:
    """A PNG must run to its IEND chunk: VTK's PNG writer ignores a short write on a full disk and leaves a
    truncated file. (Python's writers raise; Slicer's storage nodes write through a copy, see
    write_with_storage_node.)"""
    if suffix.lower() != ".png":
        return
    data = tmp.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        raise _IncompleteFile
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        offset += 12 + length
        if kind == b"IEND":
            break
    else:  # the data ended (at a chunk boundary or inside a chunk header) before the IEND chunk
        raise _IncompleteFile
    if offset != len(data):
        raise _IncompleteFile


class _IncompleteFile(Exception):
    pass


def _fsync(path: Path, directory: bool = False) -> None:
    if directory and os.name == "nt":  # Windows cannot open a folder; NTFS journals the rename
        return
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY if directory else os.O_RDWR)  # Windows flushes writers only
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_failure_message(path, fallback: str) -> str:
    """The message for a writer that failed without saying why: a full disk or an unwritable folder where ``path``
    was to be written if that is the case (the likely cause), else ``fallback``."""
    folder = Path(path).parent
    try:
        check_folder_writable(folder)
        if free_bytes(folder) < LOW_SPACE:
            return no_space_message(folder)
    except LandmarkFileError as e:
        return str(e)
    except OSError:
        pass
    return fallback


def _atomic_output(path, force: bool = False):
    """Yield a temporary path beside ``path`` (same extension, in lower case, so writers pick the same format);
    on success it is checked, flushed to disk and renamed over ``path`` in one step, on failure it is removed.
    OS errors (disk full, read-only, ...) become one-line LandmarkFileErrors."""
    path = check_writable(path, force)
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)]
    # Slicer's writers choose the format by a case-sensitive extension (.H5 fails), so the temporary name is
    # lower-case and the rename gives the file the user's name.
    tmp = path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suffix.lower()}")
    try:
        try:
            with _held_back_stderr():
                yield tmp
                if not tmp.exists():
                    raise LandmarkFileError(write_failure_message(path, f"writing {path} produced no file"))
                _check_complete(tmp, suffix)
                _fsync(tmp)  # a deferred write error (NFS, delayed allocation) surfaces here, before the rename
                os.replace(tmp, path)
        except _IncompleteFile:
            raise LandmarkFileError(write_failure_message(path, f"writing {path} left an incomplete file")) from None
        except RuntimeError as e:  # ITK's writers (SimpleITK) raise RuntimeError, the OS reason in its text
            from LandmarkInitLib.io.images import itk_reason

            if not str(e).startswith("Exception thrown in SimpleITK"):
                raise
            # a full disk is recognised by write_failure_message (free space), as for the writers that do not raise
            raise LandmarkFileError(write_failure_message(path, f"writing {path} failed: {itk_reason(e)}")) from None
        except OSError as e:
            if isinstance(e, LandmarkInitError):
                raise
            raise LandmarkFileError(os_error_message(e, path)) from e
        with contextlib.suppress(OSError):  # the rename is done; making it durable is best effort
            _fsync(path.parent, directory=True)
    finally:
        with contextlib.suppress(OSError):  # never hide the error that got us here (EROFS, ...)
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


def _hold_back_stderr():
    """Hold back what native libraries print on stderr themselves while a file is written (libpng and HDF5 print
    their own error lines on a full disk): passed on if the write succeeds, dropped if it fails (the failure is
    reported in one line)."""
    try:
        capture = tempfile.TemporaryFile()
    except OSError:  # no room for the capture: nothing held back
        yield
        return
    with capture:
        try:
            saved = os.dup(2)
        except OSError:  # no stderr (a GUI process)
            yield
            return
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)  # reached only when the write succeeded
        held = memoryview(capture.read())
        while held:
            held = held[os.write(2, held) :]


_held_back_stderr = contextlib.contextmanager(_hold_back_stderr)


def write_with_storage_node(context, storage, node, path, *, force: bool = False, what: str = "file") -> Path:
    """Write ``node`` to ``path`` with a Slicer storage node (added to the scene for the write, then removed),
    through :func:`atomic_output`.

    The native writer writes a scratch file in the system's temporary folder, which Python then copies into
    place: on a full output disk the native writers do not all say so (ITK's .tfm writer reports success and
    leaves an empty file) or fail badly (ITK's HDF5 leaves a file open whose close crashes the process at exit),
    while Python's copy raises the error."""
    context.scene.AddNode(storage)
    try:
        with atomic_output(path, force) as tmp, tempfile.TemporaryDirectory(prefix="landmarkinit-") as scratch_dir:
            scratch = Path(scratch_dir) / tmp.name
            storage.SetFileName(str(scratch))
            if not storage.WriteData(node):
                fallback = f"Slicer's {what} writer could not write {path}"
                raise LandmarkFileError(write_failure_message(scratch_dir, write_failure_message(path, fallback)))
            shutil.copyfile(scratch, tmp)
    finally:
        context.scene.RemoveNode(storage)
    return Path(path)
