"""Re-acquire a phantom volume the way other scanners and converters would store it (``evaluate-robustness``).

All functions take and return SimpleITK images (geometry in LPS, as ITK keeps it):

- :func:`permute_flip`: the same physical image with its voxel axes reordered and/or reversed: no resampling,
  every voxel keeps its value and its world position (spacing, direction and origin follow the voxels).
- :func:`header_kept`: the voxel axes reordered and/or reversed while the header (spacing, direction, origin)
  stays as it was: another vendor's or converter's axis order, written with the header the volume had. This is
  another physical image (the anatomy turned, or mirrored when the reordering is a reflection); its detections
  map back to the native image through the voxel indices (US, whose files carry no patient orientation).
- :func:`oblique_reslice`: linear resampling onto a grid rotated about an oblique axis, same spacing, covering
  the whole volume (zero outside it).
- :func:`clinical_series`: an MR series in a patient orientation (axial, sagittal, coronal) at clinical
  resolution, stored in the axis order a scanner writes (DICOM image orientation: rows along the first axis,
  columns along the second, slices along their cross product), with a Gaussian slice profile, as integers.
- :func:`isotropic`: the same orientation resampled to another isotropic spacing (US), as integers.
- :func:`larger_field_of_view`: the same voxels in a field of view extended beyond one side of an index axis, so
  that the anatomy lies off the volume's centre. The new voxels hold the image's minimum (its background): a real
  scan would show anatomy there, so this tests where the detectors look, not what they make of new anatomy.
"""

from __future__ import annotations

import itertools

import numpy as np

AXES = "ijk"
HEADER_KEPT = "vendor axis order, header kept (anatomy turned)"
HEADER_KEPT_MIRRORED = "vendor axis order, header kept (anatomy mirrored)"
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))
LARGER_FIELD_OF_VIEW = "larger field of view"
FIELD_OF_VIEW_EXTENSIONS = ((2, True), (2, False), (1, True))  # (index axis, beyond its last voxel)
FIELD_OF_VIEW_EXTENSION_MM = 40.0

# Index-axis directions (LPS columns: first axis, second axis, slice normal) of a scanner's series, as DICOM's
# image orientation (patient) gives them: axial 1\0\0\0\1\0, sagittal 0\1\0\0\0\-1, coronal 1\0\0\0\0\-1.
SERIES_DIRECTIONS_LPS = {
    "axial": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),  # i -> L, j -> P, slices toward S
    "sagittal": ((0, 1, 0), (0, 0, -1), (-1, 0, 0)),  # i -> P, j -> I, slices toward R
    "coronal": ((1, 0, 0), (0, 0, -1), (0, 1, 0)),  # i -> L, j -> I, slices toward P
}


def axis_variant_name(order, flips) -> str:
    """``+k-i+j``: new axis 0 is old axis k, new axis 1 is old axis i reversed, new axis 2 is old axis j."""
    return "".join(("-" if f else "+") + AXES[o] for o, f in zip(order, flips, strict=True))


def axis_variants() -> list[tuple[str, tuple[int, int, int], tuple[bool, bool, bool]]]:
    """A representative set of the 48 storage orders, without the native one: every axis permutation, unflipped
    and with all axes flipped, plus each single-axis flip of the native order (14 variants)."""
    out = []
    for order in itertools.permutations(range(3)):
        for flips in ((False,) * 3, (True,) * 3):
            out.append((order, flips))
    out += [((0, 1, 2), tuple(a == f for a in range(3))) for f in range(3)]
    return [(axis_variant_name(o, f), o, f) for o, f in out if (o, f) != ((0, 1, 2), (False,) * 3)]


def permute_flip(image, order, flips):
    """The same physical image with new index axis ``a`` = old axis ``order[a]``, reversed where ``flips[a]``.

    The voxel at new index n holds the value of old index m (m[order[a]] = n[a], or size - 1 - n[a] where
    flipped), and both sit at the same world position: column a of the new direction is the old column
    order[a] (negated where flipped), and the origin moves to the old position of the new first voxel."""
    import SimpleITK as sitk

    order, flips = tuple(int(o) for o in order), tuple(bool(f) for f in flips)
    if sorted(order) != [0, 1, 2] or len(flips) != 3:
        raise ValueError(f"order {order} is not a permutation of (0, 1, 2), or flips {flips} is not 3 values")
    ijk = sitk.GetArrayFromImage(image).transpose(2, 1, 0).transpose(order)
    ijk = np.flip(ijk, axis=[a for a in range(3) if flips[a]])
    out = sitk.GetImageFromArray(np.ascontiguousarray(ijk.transpose(2, 1, 0)))
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    columns = direction * spacing[None, :]  # world step per old index
    new_direction = np.stack([direction[:, o] * (-1 if f else 1) for o, f in zip(order, flips, strict=True)], axis=1)
    origin = np.array(image.GetOrigin()) + sum(
        columns[:, o] * (size[o] - 1) for o, f in zip(order, flips, strict=True) if f
    )
    out.SetSpacing([float(spacing[o]) for o in order])
    out.SetDirection([float(v) for v in new_direction.ravel()])
    out.SetOrigin([float(v) for v in origin])
    return out


def header_kept(image, order, flips):
    """(the voxels of :func:`permute_flip` under the native header, a function mapping RAS points detected in it
    to the native image's RAS: through the voxel index they sit at)."""
    from LandmarkInitLib.geometry import VolumeGeometry

    moved = permute_flip(image, order, flips)
    same_physical = VolumeGeometry.from_sitk_image(moved)
    moved.SetSpacing(image.GetSpacing())
    moved.SetDirection(image.GetDirection())
    moved.SetOrigin(image.GetOrigin())
    kept = VolumeGeometry.from_sitk_image(moved)
    return moved, lambda points_ras: same_physical.ijk_to_ras_points(kept.ras_to_ijk_points(points_ras))


def rotation_matrix(axis, angle_deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    axis = np.asarray(axis, dtype=float)
    return Rotation.from_rotvec(np.deg2rad(angle_deg) * axis / np.linalg.norm(axis)).as_matrix()


def _corners_lps(image) -> np.ndarray:
    size = np.array(image.GetSize())
    corners = np.array(list(itertools.product(*[(-0.5, s - 0.5) for s in size])))  # voxel edges
    m = np.array(image.GetDirection()).reshape(3, 3) * np.array(image.GetSpacing())[None, :]
    return corners @ m.T + np.array(image.GetOrigin())


def covering_grid(image, direction_lps, spacing):
    """An empty float image with this direction and spacing whose voxels cover all of ``image``'s extent."""
    import SimpleITK as sitk

    direction_lps, spacing = np.asarray(direction_lps, dtype=float), np.asarray(spacing, dtype=float)
    along = _corners_lps(image) @ direction_lps  # corner coordinates along the new axes
    lo, hi = along.min(axis=0), along.max(axis=0)
    size = np.maximum(np.ceil((hi - lo) / spacing).astype(int), 1)
    first = (lo + hi) / 2.0 - (size - 1) * spacing / 2.0  # centred on the volume's extent
    grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    grid.SetSpacing([float(s) for s in spacing])
    grid.SetDirection([float(v) for v in direction_lps.ravel()])
    grid.SetOrigin([float(v) for v in direction_lps @ first])
    return grid


def resample_onto(image, grid, pixel_id=None):
    """Linear resampling of ``image`` onto ``grid`` (zero outside), stored as ``pixel_id`` (rounded, clipped to
    the type's range) or float32."""
    import SimpleITK as sitk

    out = sitk.Resample(image, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return out if pixel_id is None else store_as(out, pixel_id)


def store_as(image, pixel_id):
    """Round and clip a float image into an integer pixel type (what a scanner writes)."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)
    dtype = sitk.GetArrayViewFromImage(sitk.Image([1, 1, 1], pixel_id)).dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        array = np.clip(np.rint(array), info.min, info.max)
    out = sitk.GetImageFromArray(array.astype(dtype))
    out.CopyInformation(image)
    return out


def oblique_reslice(image, angle_deg: float = 20.0, axis=(1.0, 1.0, 1.0)):
    """Linear reslice onto the image's grid rotated by ``angle_deg`` about ``axis`` (world, LPS), same spacing,
    enlarged to cover the whole volume; float32 (no rounding, so that only the interpolation differs)."""
    direction = rotation_matrix(axis, angle_deg) @ np.array(image.GetDirection()).reshape(3, 3)
    return resample_onto(image, covering_grid(image, direction, image.GetSpacing()))


def clinical_series(image, orientation: str, inplane_mm: float = 0.55, slice_mm: float = 3.0, pixel_id=None):
    """An MR series in ``orientation`` (axial, sagittal or coronal) at ``inplane_mm`` x ``inplane_mm`` x
    ``slice_mm``, covering the volume. Each slice integrates a Gaussian slice profile whose FWHM is the slice
    thickness (= ``slice_mm``): the volume is first resampled at ``inplane_mm`` along the slice normal too,
    blurred along it, then sampled at the slice centres. Stored as ``pixel_id`` (default: the input's type)."""
    import SimpleITK as sitk
    from scipy.ndimage import gaussian_filter1d

    if orientation not in SERIES_DIRECTIONS_LPS:
        raise ValueError(f"unknown orientation {orientation!r}; one of {', '.join(SERIES_DIRECTIONS_LPS)}")
    direction = np.array(SERIES_DIRECTIONS_LPS[orientation], dtype=float).T  # columns = index axes
    fine = resample_onto(image, covering_grid(image, direction, (inplane_mm,) * 3))
    kji = sitk.GetArrayFromImage(fine)
    sigma_voxels = slice_mm / FWHM_PER_SIGMA / inplane_mm
    blurred = sitk.GetImageFromArray(gaussian_filter1d(kji, sigma_voxels, axis=0, mode="nearest"))
    blurred.CopyInformation(fine)
    series = covering_grid(image, direction, (inplane_mm, inplane_mm, slice_mm))
    out = sitk.Resample(blurred, series, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return store_as(out, image.GetPixelID() if pixel_id is None else pixel_id)


def isotropic(image, spacing_mm: float):
    """The same orientation and extent at ``spacing_mm`` isotropic (linear), stored in the input's type."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return resample_onto(image, covering_grid(image, direction, (spacing_mm,) * 3), image.GetPixelID())


def larger_field_of_view(image, axis: int, after: bool, mm: float = FIELD_OF_VIEW_EXTENSION_MM):
    """The image with ``mm`` more field of view beyond the last (``after``) or before the first voxel of index
    axis ``axis``: every voxel keeps its value and its world position (the origin moves when the new voxels come
    first); the new voxels hold the image's minimum."""
    import SimpleITK as sitk

    pad = [0, 0, 0]
    pad[axis] = int(round(mm / image.GetSpacing()[axis]))
    background = float(sitk.GetArrayViewFromImage(image).min())
    return sitk.ConstantPad(image, [0, 0, 0] if after else pad, pad if after else [0, 0, 0], background)


def field_of_view_name(axis: int, after: bool, mm: float = FIELD_OF_VIEW_EXTENSION_MM) -> str:
    return f"+{mm:g} mm {'after' if after else 'before'} axis {AXES[axis]}"


def slice_normal_lps(image) -> np.ndarray:
    """The world (LPS) direction of the image's third index axis."""
    return np.array(image.GetDirection()).reshape(3, 3)[:, 2]


def variants(image, modality: str):
    """(family, name, image, map of its RAS points to the native image's RAS or None: the same physical image)
    of every re-acquisition ``evaluate-robustness`` measures for ``modality``."""
    for name, order, flips in axis_variants():
        yield "axis order / flip (exact)", name, permute_flip(image, order, flips), None
    yield "oblique reslice", "20 deg about (1,1,1)", oblique_reslice(image), None
    for axis, after in FIELD_OF_VIEW_EXTENSIONS:
        yield LARGER_FIELD_OF_VIEW, field_of_view_name(axis, after), larger_field_of_view(image, axis, after), None
    if modality == "mr":
        for orientation in SERIES_DIRECTIONS_LPS:
            yield "clinical series", f"{orientation} 0.55x0.55x3 mm", clinical_series(image, orientation), None
    else:
        for spacing in (0.3, 1.0):
            yield "spacing", f"{spacing:g} mm isotropic", isotropic(image, spacing), None
        for name, order, flips in axis_variants():
            mirrored = _parity(order) * np.prod(np.where(flips, -1, 1)) < 0
            family = HEADER_KEPT_MIRRORED if mirrored else HEADER_KEPT
            yield family, f"{name}, header kept", *header_kept(image, order, flips)


def _parity(order) -> int:
    """+1 for an even permutation of (0, 1, 2), -1 for an odd one."""
    return int(round(np.linalg.det(np.eye(3)[list(order)])))
