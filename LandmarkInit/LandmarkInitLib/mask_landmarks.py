"""The three landmarks derived from a gland segmentation (a label map), with one fixed definition so that results are
comparable across projects (issue 22).

Convention: the mask's voxels are taken as points at their *centres*, in RAS millimetres (the volume's own
geometry; a file without direction information has the identity direction), and S (RAS z) is the patient's
superior axis. Distances are compared with a tolerance of 1 micrometre, so a voxel exactly at a threshold is in.

- apex: the centroid of the voxels within 1.6 mm (in S) of the lowest one;
- bladder neck: the centroid of the voxels within 1.6 mm (in S) of the highest one;
- posterior median: take the voxels within 1.6 mm (in S) of mid-height between apex and bladder neck (the mean of
  their S); where no voxel is that close, those of the nearest slice (the voxels at the smallest S distance; both
  slices when two are equally near). Keep those within 2 mm (in R) of their mean R. The landmark is the most
  posterior of them (smallest A); when several share the smallest A, their centroid.

Refused (MaskError, saying what is wrong and what to do): an empty mask; several non-zero labels without a chosen
label, or a chosen label that is absent; non-integer values (an image or a probability map, not a label map); a
mask on a single slice, or too flat in S to tell apex from bladder neck; and a fragmented mask. Pieces are the
connected components with full (26-neighbour) connectivity; the largest must hold at least 99 % of the voxels. The
other pieces (stray voxels, at most 1 % in all) are then ignored: the landmarks are those of the largest piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.landmarks import LandmarkSet

BAND_S_MM = 1.6  # half-height of the apex, bladder-neck and mid-gland bands
BAND_R_MM = 2.0  # half-width of the mid-sagittal band
TOLERANCE_MM = 1e-3
MIN_LARGEST_PIECE = 0.99  # fraction of the mask's voxels the largest connected piece must hold
MANY_LABELS = 20  # more distinct values than a segmentation has: most likely an image


class MaskError(LandmarkInitError, ValueError):
    """A gland mask from which the landmarks cannot be derived: empty, fragmented, not a label map, flat, ..."""


@dataclass(frozen=True)
class MaskLandmarks:
    """The landmarks, and how they were obtained (for notes to the user)."""

    landmarks: LandmarkSet
    label: int  # the mask's label that was used (1 for a 0/1 mask)
    voxels: int  # voxels of the piece the landmarks come from
    pieces: int  # connected pieces of the mask
    ignored_voxels: int  # voxels of the other (stray) pieces, ignored
    nearest_slice: bool  # no voxel within 1.6 mm of mid-height: the posterior median comes from the nearest slice


def _pct(fraction: float) -> str:
    return f"{100.0 * fraction:.1f} %"


def _select_label(array: np.ndarray, label, name: str) -> tuple[np.ndarray, int]:
    """The boolean mask of the gland's label, or MaskError."""
    if array.dtype == bool:
        values = array
    elif np.issubdtype(array.dtype, np.integer):
        values = array
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise MaskError(f"{name} holds NaN or infinite values: it is not a label map; give a gland segmentation")
        fractional = array[array != np.round(array)]
        if fractional.size:
            raise MaskError(
                f"{name} holds non-integer values (e.g. {float(fractional.flat[0]):g}): it is not a label map; give a "
                "gland segmentation (0 outside the gland, a whole number inside), not an image or a probability map"
            )
        values = array
    else:
        raise MaskError(f"{name} has voxels of type {array.dtype}: it is not a label map; give a gland segmentation")
    present = np.unique(values[values != 0]).astype(np.int64)
    listed = ", ".join(str(v) for v in present[:10]) + (f", ... ({len(present)} in all)" if len(present) > 10 else "")
    if len(present) == 0:
        raise MaskError(f"{name} is empty (no non-zero voxel); give the gland segmentation, or check the file")
    if label is None:
        if len(present) > MANY_LABELS:
            raise MaskError(
                f"{name} holds {len(present)} different non-zero values: it looks like an image, not a segmentation; "
                "give the gland segmentation (a label map)"
            )
        if len(present) > 1:
            raise MaskError(f"{name} holds several labels ({listed}); say which one is the gland with --label N")
        return values != 0, int(present[0])
    label = int(label)
    if label == 0:
        raise MaskError("label 0 is the background; give the gland's label (a non-zero value)")
    if label not in present:
        raise MaskError(
            f"{name} has no voxel labelled {label}: it holds label(s) {listed}; give one of these with --label N"
        )
    return values == label, label


def _pieces(mask: np.ndarray, name: str) -> tuple[np.ndarray, int, int]:
    """(the largest connected piece, number of pieces, voxels ignored), or MaskError when fragmented."""
    import SimpleITK as sitk

    components = sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), True)
    relabel = sitk.RelabelComponentImageFilter()  # sorts the pieces by size, largest first (label 1)
    largest = relabel.Execute(components)
    sizes = list(relabel.GetSizeOfObjectsInPixels())
    total = int(sum(sizes))
    if sizes[0] < MIN_LARGEST_PIECE * total:
        raise MaskError(
            f"{name} is in {len(sizes)} separate pieces: the largest holds {_pct(sizes[0] / total)} of the voxels, "
            f"the second-largest {_pct(sizes[1] / total)}; the gland must be one piece (the largest holding at least "
            f"{_pct(MIN_LARGEST_PIECE)}; smaller stray pieces are ignored): keep only the gland's piece, e.g. with "
            "Slicer's Segment Editor (Islands: keep largest island), and try again"
        )
    if len(sizes) == 1:
        return mask, 1, 0
    return sitk.GetArrayViewFromImage(largest) == 1, len(sizes), total - int(sizes[0])


def _within(values: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    return np.abs(values - centre) <= half_width + TOLERANCE_MM


def derive_mask_landmarks(array_kji, geometry: VolumeGeometry, label=None, name: str = "the mask") -> MaskLandmarks:
    """The landmarks of a gland mask (numpy array indexed [k, j, i] on ``geometry``) and how they were obtained.
    ``label``: the gland's value in a multi-label map (default: the only non-zero value). ``name`` names the mask
    in messages. Raises MaskError (see the module's docstring)."""
    array = np.asarray(array_kji)
    if array.shape != tuple(geometry.array_shape):
        raise ValueError(f"mask array of shape {array.shape} on a grid of shape {geometry.array_shape}")
    if 1 in geometry.size_ijk:
        size = " x ".join(str(n) for n in geometry.size_ijk)
        raise MaskError(
            f"{name} is a single slice (size {size}): the landmarks need the gland segmented in 3-D, on every slice "
            "it spans; give the whole segmentation volume"
        )
    mask, used = _select_label(array, label, name)
    mask, pieces, ignored = _pieces(mask, name)
    idx = np.argwhere(mask)  # (k, j, i)
    for axis, letter in ((2, "i"), (1, "j"), (0, "k")):
        if idx[:, axis].min() == idx[:, axis].max():
            raise MaskError(
                f"{name}: the gland is segmented on a single slice ({letter} = {idx[0, axis]}); the landmarks need it "
                "segmented in 3-D, on every slice it spans"
            )
    ras = geometry.ijk_to_ras_points(idx[:, ::-1].astype(float))
    s = ras[:, 2]
    low, high = float(s.min()), float(s.max())
    if high - low <= 2.0 * BAND_S_MM + TOLERANCE_MM:
        raise MaskError(
            f"{name}: the gland is only {high - low:.1f} mm tall in S (the patient's superior axis), too little to "
            f"tell apex from bladder neck (more than {2.0 * BAND_S_MM:g} mm needed); segment it on every slice it "
            "spans, and check the volume's orientation"
        )
    apex = ras[s <= low + BAND_S_MM + TOLERANCE_MM].mean(axis=0)
    neck = ras[s >= high - BAND_S_MM - TOLERANCE_MM].mean(axis=0)
    mid = 0.5 * (apex[2] + neck[2])
    band = ras[_within(s, mid, BAND_S_MM)]
    nearest_slice = len(band) == 0
    if nearest_slice:
        distance = np.abs(s - mid)
        band = ras[distance <= distance.min() + TOLERANCE_MM]
    band = band[_within(band[:, 0], float(band[:, 0].mean()), BAND_R_MM)]
    if len(band) == 0:
        raise MaskError(
            f"{name}: no voxel of the mid-gland section lies within {BAND_R_MM:g} mm (in R) of its mean R (the "
            "section is split left and right), so there is no posterior median; check the segmentation"
        )
    a = band[:, 1]
    posterior = band[a <= a.min() + TOLERANCE_MM].mean(axis=0)
    landmarks = LandmarkSet(("apex", "bladder_neck", "posterior_median"), np.array([apex, neck, posterior]))
    return MaskLandmarks(landmarks, used, int(len(idx)), pieces, ignored, nearest_slice)


def landmarks_from_mask(array_kji, geometry: VolumeGeometry, label=None) -> LandmarkSet:
    """Apex, bladder neck and posterior median (RAS mm) of a gland mask, a numpy array indexed [k, j, i] on
    ``geometry``; ``label``: the gland's value in a multi-label map. The definition and the refusals
    (MaskError) are in the module's docstring."""
    return derive_mask_landmarks(array_kji, geometry, label).landmarks


def _image_landmarks(image, label, name: str) -> MaskLandmarks:
    import SimpleITK as sitk

    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise MaskError(
            f"{name} is a {image.GetDimension()}-D image"
            + (f" of {image.GetNumberOfComponentsPerPixel()}-component voxels" if image.GetDimension() == 3 else "")
            + ": give a 3-D label map (one value per voxel)"
        )
    return derive_mask_landmarks(
        sitk.GetArrayViewFromImage(image), VolumeGeometry.from_sitk_image(image), label, name=name
    )


def landmarks_from_mask_image(sitk_image, label=None) -> LandmarkSet:
    """:func:`landmarks_from_mask` of a SimpleITK image (its geometry: origin and direction in LPS, as ITK has
    them)."""
    return _image_landmarks(sitk_image, label, "the mask").landmarks


def read_mask_landmarks(path, label=None) -> MaskLandmarks:
    """:func:`derive_mask_landmarks` of a mask file (NRRD, NIfTI, MetaImage) or a folder holding one DICOM series.
    Raises LandmarkFileError for a file that cannot be read, MaskError for a mask that cannot be used."""
    from LandmarkInitLib.io.images import read_image

    return _image_landmarks(read_image(path, "mask", constant_ok=True), label, f"mask {path}")


def landmarks_from_mask_file(path, label=None) -> LandmarkSet:
    """:func:`landmarks_from_mask` of a mask file or DICOM folder (see :func:`read_mask_landmarks`)."""
    return read_mask_landmarks(path, label).landmarks
