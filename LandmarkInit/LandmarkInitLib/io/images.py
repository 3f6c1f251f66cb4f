"""A user's volume read with SimpleITK, for the command line and the pipeline (``run``, ``detect``, batches): a
volume file or a folder holding one DICOM series. Every failure says what is wrong with the input in ITK's own
words, without ITK's source locations, and what to do.
"""

from __future__ import annotations

import filecmp
import gzip
import hashlib
import os
import re
import zlib
from contextlib import contextmanager
from pathlib import Path

from LandmarkInitLib.errors import LandmarkFileError

VOLUME_FORMATS = ".nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd"
# "Exception thrown in SimpleITK ImageFileReader_Execute: /path/itkNrrdImageIO.cxx:935:" and the like
_ITK_LOCATION = re.compile(r"^Exception thrown in .*?: \S+:\d+:?\s*$")
# "ITK ERROR: NrrdImageIO(0x55...): Read: " / "itk::ERROR: ..." / "sitk::ERROR: "
_ITK_PREFIX = re.compile(r"^(?:s?itk::ERROR|ITK ERROR): (?:\w+\(0x[0-9a-fA-F]+\): )?")
_TEEM_LINE = re.compile(r"^\[\w+\] (\w+): ?(.*)$")  # NRRD (teem) error stack: "[nrrd] function: message"


def volume_label(what: str) -> str:
    return "volume" if what == "volume" else f"{what} volume"


def itk_reason(error: BaseException | str, path=None) -> str:
    """ITK's description of a read failure, without the source location that starts SimpleITK's message."""
    lines = [line.strip() for line in str(error).splitlines()]
    lines = [_ITK_PREFIX.sub("", line) for line in lines if line and not _ITK_LOCATION.match(line)]
    teem = [m.group(2) for m in map(_TEEM_LINE.match, lines) if m and m.group(2)]
    if teem:
        return teem[-1]  # teem lists its stack from the outside in: the last line is the cause
    reason = " ".join(lines) or "no reason given by ITK"
    if path is not None and "Reason: No such file or directory" in reason and os.path.isfile(path):
        # MetaImage reports a short read with a stale errno: the file is there, its data is not all there
        reason = reason.replace("No such file or directory", "the file is incomplete or damaged")
    if reason.startswith("Unable to determine ImageIO reader"):
        reason += (
            " (not a volume file ITK can read, or a damaged one; use NRRD, NIfTI, MetaImage or a folder "
            "holding one DICOM series)"
        )
    return reason


@contextmanager
def _itk_warnings_off():
    """ITK prints its warnings (e.g. "No Series were found") to the console; the messages raised here say it all."""
    import SimpleITK as sitk

    was = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(was)


def check_volume_path(path, what: str = "volume") -> Path:
    """Refuse a path that is missing or cannot be read by this user, before any reader sees it."""
    path = Path(path)
    label = volume_label(what)
    if not path.exists():
        raise LandmarkFileError(f"{label} {path} does not exist")
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        kind = "folder" if path.is_dir() else "file"
        raise LandmarkFileError(
            f"{label} {path} cannot be read: permission denied; make the {kind} readable by this user or copy it"
        )
    return path


def read_image(path, what: str = "volume", *, constant_ok: bool = False):
    """Read a 3-D scalar volume: a file (NRRD, NIfTI, MetaImage, ...) or a folder holding one DICOM series.
    ``what`` ("MR", "US" or "volume") names it in messages. Raises LandmarkFileError saying what is wrong.
    ``constant_ok``: accept a constant volume (a mask, whose caller says what an empty one means)."""
    import SimpleITK as sitk

    path = check_volume_path(path, what)
    label = volume_label(what)
    with _itk_warnings_off():
        if path.is_dir():
            image = _read_dicom_folder(path, label)
        else:
            try:
                image = sitk.ReadImage(str(path))
            except RuntimeError as e:
                raise LandmarkFileError(f"{label} {path} could not be read: {itk_reason(e, path)}") from None
            incomplete = nifti_incomplete(path, image)
            if incomplete:
                raise LandmarkFileError(f"{label} {path} is incomplete: {incomplete}; copy the file again")
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise LandmarkFileError(f"{label} {path} is not a 3-D scalar image")
    if constant_ok:
        return image
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if stats.GetMinimum() == stats.GetMaximum():
        raise LandmarkFileError(
            f"{label} {path} is constant ({stats.GetMinimum():g} everywhere): nothing to detect; is it the right file?"
        )
    return image


def _read_dicom_folder(path: Path, label: str):
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(path))
    if not series:
        raise LandmarkFileError(
            f"{label} {path} is a folder, not a volume file, and holds no DICOM series; give a volume file "
            f"({VOLUME_FORMATS}) or a folder holding one DICOM series"
        )
    if len(series) > 1:
        listed = "; ".join(f"{uid} ({len(reader.GetGDCMSeriesFileNames(str(path), uid))} files)" for uid in series)
        raise LandmarkFileError(
            f"{label} {path} holds {len(series)} DICOM series ({listed}); give a folder holding one series only"
        )
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path), series[0]))
    try:
        return reader.Execute()
    except RuntimeError as e:
        raise LandmarkFileError(f"{label} {path}: the DICOM series could not be read: {itk_reason(e)}") from None


def nifti_incomplete(path, image) -> str | None:
    """Why a NIfTI file holds less voxel data than its header announces, or None (``image``: the SimpleITK image
    or an ImageFileReader that read the header). ITK reads a truncated NIfTI without complaint and fills the
    missing voxels with zeros."""
    path = Path(path)
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")) or not image.HasMetaDataKey("vox_offset"):
        return None
    try:
        offset = int(float(image.GetMetaData("vox_offset")))
        bits = int(image.GetMetaData("bitpix"))
    except (RuntimeError, ValueError):
        return None
    voxels = 1
    for n in image.GetSize():
        voxels *= n
    end = offset + voxels * bits // 8
    if name.endswith(".nii"):
        size = path.stat().st_size
        return None if size >= end else f"its header announces {end} bytes, the file has {size}"
    try:
        with gzip.open(path, "rb") as f:
            f.seek(end - 1)
            if len(f.read(1)) == 1:
                return None
        return f"its header announces {end} bytes, the decompressed file has fewer"
    except (EOFError, OSError, zlib.error) as e:
        return f"the compressed data ends early or is damaged ({e})"


def nifti_file_incomplete(path) -> str | None:
    """nifti_incomplete() from the file's header alone (the voxels are not read by ITK)."""
    import SimpleITK as sitk

    if not Path(path).name.lower().endswith((".nii", ".nii.gz")):
        return None
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _itk_warnings_off():
            reader.ReadImageInformation()
    except RuntimeError:
        return None  # not readable at all: the reader that loads it says so
    return nifti_incomplete(path, reader)


def itk_read_failure(path) -> str | None:
    """Why SimpleITK cannot read a volume file, or None."""
    import SimpleITK as sitk

    try:
        with _itk_warnings_off():
            sitk.ReadImage(str(path))
    except RuntimeError as e:
        return itk_reason(e, path)
    return None


def check_distinct_volumes(mr_path, us_path) -> None:
    """Refuse the same volume given as both MR and US (the same file, or two identical files)."""
    mr, us = Path(mr_path), Path(us_path)
    try:
        same = os.path.samefile(mr, us)
    except OSError:
        return  # a missing input is reported when it is read
    if same:
        where = str(mr) if str(mr) == str(us) else f"{mr} and {us}"
        raise LandmarkFileError(
            f"the MR and US volumes are the same file ({where}); give the MR volume and the US volume of the case"
        )
    try:
        identical = mr.is_file() and us.is_file() and filecmp.cmp(mr, us, shallow=False)
    except OSError:
        return  # an unreadable input is reported when it is read
    if identical:
        raise LandmarkFileError(
            f"the MR volume {mr} and the US volume {us} are identical files; give the MR volume and the US volume "
            "of the case"
        )


def volume_fingerprint(path) -> dict:
    """What identifies a volume's content, recorded in report.json so that a batch notices changed inputs: size,
    newest modification time and sha256 of the file, or of every file of a DICOM folder (names and contents, in
    name order). Hashing a volume costs milliseconds."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    stats = [file.stat() for file in files]
    return {
        "size": sum(s.st_size for s in stats),
        "mtime_ns": max((s.st_mtime_ns for s in stats), default=0),
        "sha256": digest.hexdigest(),
    }
