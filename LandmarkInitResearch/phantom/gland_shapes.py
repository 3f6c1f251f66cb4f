"""Real gland shapes for phantom cases: an expert gland segmentation as a star-shaped surface.

A mask becomes the radius of its surface seen from the gland's centroid, on a grid of directions, after scaling each
patient axis (R, A, S) by the gland's half-extent along it: the shape normalised to unit semi-axes. A phantom case
takes the mask's R, A, S as its gland frame's x, y, z, scales the shape back to the semi-axes it drew (its size), and
then tilts it like any phantom gland. The real shape brings its contour, asymmetry and apex and base taper; its
size comes from the phantom's ranges, because the PROMISE12 geometry is nominal (about +-25 % in scale).

Radius along a direction = the farthest point of the (lightly smoothed) mask along that ray, so a mask that is not
quite star-shaped from its centroid is filled rather than cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

N_THETA, N_PHI = 48, 96  # polar angle from +z (superior), azimuth from +x (right) towards +y (anterior)
SMOOTHING_MM = 1.0  # Gaussian blur of the mask before reading its surface: no voxel or slice staircase in the shape
RAY_STEP = 0.005  # along each ray, in units of the half-extent
RAY_MAX = 1.6


@dataclass(frozen=True, eq=False)
class GlandShape:
    name: str
    radii: np.ndarray  # N_THETA x N_PHI: surface radius of the normalised shape at each grid direction

    def radius_normalised(self, v: np.ndarray) -> np.ndarray:
        """Radius of the normalised shape along unit directions v (N x 3), bilinear on the direction grid."""
        theta = np.arccos(np.clip(v[:, 2], -1.0, 1.0)) / np.pi * N_THETA - 0.5
        phi = (np.arctan2(v[:, 1], v[:, 0]) + np.pi) / (2.0 * np.pi) * N_PHI - 0.5
        return ndimage.map_coordinates(self._padded, [theta + 1.0, phi + 1.0], order=1, mode="nearest")

    @cached_property
    def _padded(self) -> np.ndarray:
        """The radii with one more row and column on each side, built once: interpolation across the edges."""
        r = self.radii
        # beyond the first and last polar rows lie those rows half a turn round (across the pole, not along it)
        r = np.concatenate([np.roll(r[:1], N_PHI // 2, axis=1), r, np.roll(r[-1:], N_PHI // 2, axis=1)], axis=0)
        return np.concatenate([r[:, -1:], r, r[:, :1]], axis=1)  # azimuth wraps round

    def radius(self, u: np.ndarray, semi_axes) -> np.ndarray:
        """Distance (mm) from the centre to the surface along unit directions u (N x 3) of the shape scaled to
        ``semi_axes`` (x, y, z in mm): a point t*u lies at t*u/semi_axes in the normalised shape."""
        w = u / np.asarray(semi_axes, dtype=float)
        norm = np.linalg.norm(w, axis=1)
        return self.radius_normalised(w / norm[:, None]) / norm


def directions() -> np.ndarray:
    """N_THETA x N_PHI x 3 unit vectors at the centres of the direction grid (RAS)."""
    theta = (np.arange(N_THETA) + 0.5) * np.pi / N_THETA
    phi = (np.arange(N_PHI) + 0.5) * 2.0 * np.pi / N_PHI - np.pi
    t, p = np.meshgrid(theta, phi, indexing="ij")
    return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)


def shape_from_mask(mask_kji: np.ndarray, geometry, name: str) -> GlandShape:
    """The normalised shape of a binary gland mask (numpy [k, j, i] on ``geometry``, a VolumeGeometry in RAS)."""
    mask = np.asarray(mask_kji) > 0
    ras = geometry.ijk_to_ras_points(np.argwhere(mask)[:, ::-1].astype(float))
    centre = ras.mean(axis=0)
    half = 0.5 * (ras.max(axis=0) - ras.min(axis=0)) + 0.5 * np.abs(geometry.ijk_to_ras[:3, :3]).sum(axis=1)
    sigma_vox = SMOOTHING_MM / np.asarray(geometry.spacing, dtype=float)[::-1]  # [k, j, i]
    smooth = ndimage.gaussian_filter(mask.astype(np.float32), sigma_vox)
    t = np.arange(RAY_STEP, RAY_MAX, RAY_STEP)
    dirs = directions().reshape(-1, 3)
    points = centre + (dirs[:, None, :] * t[None, :, None] * half).reshape(-1, 3)
    ijk = geometry.ras_to_ijk_points(points)
    inside = ndimage.map_coordinates(smooth, ijk[:, ::-1].T, order=1, mode="constant", cval=0.0) >= 0.5
    inside = inside.reshape(len(dirs), len(t))
    last = np.where(inside.any(axis=1), len(t) - 1 - np.argmax(inside[:, ::-1], axis=1), 0)
    radii = np.where(inside.any(axis=1), t[last], RAY_STEP).reshape(N_THETA, N_PHI)
    return GlandShape(name, radii)


@lru_cache(maxsize=64)
def read_gland_shape(path: str) -> GlandShape:
    """The shape of a gland mask file (refused, with the reason, if it is empty, fragmented or flat: the checks
    of ``landmarkinit landmarks-from-mask``). Cached: a dataset draws each mask many times."""
    import SimpleITK as sitk

    from LandmarkInitLib.geometry import VolumeGeometry
    from LandmarkInitLib.io.images import read_image
    from LandmarkInitLib.mask_landmarks import derive_mask_landmarks

    image = read_image(path, "mask", constant_ok=True)
    array = sitk.GetArrayFromImage(image)
    geometry = VolumeGeometry.from_sitk_image(image)
    derive_mask_landmarks(array, geometry, name=f"gland mask {path}")  # raises MaskError for an unusable mask
    # the largest piece only, as the landmarks have it: a stray voxel would move the centroid and the extents
    pieces = sitk.RelabelComponent(sitk.ConnectedComponent(sitk.Cast(image > 0, sitk.sitkUInt8), True))
    return shape_from_mask(sitk.GetArrayFromImage(pieces) == 1, geometry, Path(path).parent.name)
