"""Preprocessing shared byte-for-byte by training and inference: resample a volume onto the model grid
(SimpleITK, linear interpolation, 0 outside the volume) and normalize its intensities per modality.

Local refinement patches are normalized on their own: an MR patch by its own percentiles, so that the same patch
gives the same input whatever the rest of the volume holds."""

from __future__ import annotations

import numpy as np

from LandmarkInitLib.detection.model_grid import ModelGrid
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.geometry import VolumeGeometry

# Intensity normalization, recorded in each model card.
NORMALIZATION = {
    # MR has no absolute scale: robust min-max from the 1st and 99th percentiles of the grid, clipped.
    "mr": {"method": "percentile", "low": 1.0, "high": 99.0, "clip": [-0.5, 2.0]},
    # B-mode US is already display-scaled to 0-255.
    "us": {"method": "scale", "divide_by": 255.0, "clip": [0.0, 1.0]},
}


class InvalidVolumeError(LandmarkInitError, ValueError):
    """A volume that cannot go into a detector (not 3-D, empty, constant, NaN)."""


def check_volume(array: np.ndarray, name: str = "volume") -> None:
    if array.ndim != 3:
        raise InvalidVolumeError(f"{name} is {array.ndim}-D; landmark detection needs a 3-D volume")
    if min(array.shape) < 2:
        raise InvalidVolumeError(f"{name} has shape {array.shape}: a single slice, not a 3-D volume")
    if not np.all(np.isfinite(array)):
        raise InvalidVolumeError(f"{name} contains NaN or infinite values; fix or mask them before detection")
    if float(array.max()) == float(array.min()):
        raise InvalidVolumeError(f"{name} is constant ({float(array.min()):g} everywhere): nothing to detect")


def sitk_image(array: np.ndarray, geometry: VolumeGeometry):
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    geometry.apply_to_sitk_image(image)
    return image


def resample_to_grid(image, grid_geometry: VolumeGeometry) -> np.ndarray:
    """Linear resampling of a SimpleITK image onto ``grid_geometry``; float32 array [k, j, i]."""
    import SimpleITK as sitk

    reference = sitk.Image([int(s) for s in grid_geometry.size_ijk], sitk.sitkFloat32)
    grid_geometry.apply_to_sitk_image(reference)
    out = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def normalize(array: np.ndarray, modality: str, params: dict | None = None) -> np.ndarray:
    p = params or NORMALIZATION[modality]
    if p["method"] == "percentile":
        lo, hi = np.percentile(array, [p["low"], p["high"]])
        scaled = (array - lo) / max(float(hi - lo), 1e-6)
    elif p["method"] == "scale":
        scaled = array / float(p["divide_by"])
    else:
        raise ValueError(f"unknown normalization {p['method']!r}")
    return np.clip(scaled, *p["clip"]).astype(np.float32)


def prepare_input(
    image,
    volume_geometry: VolumeGeometry,
    grid: ModelGrid,
    modality: str,
    normalization: dict | None = None,
    pose: np.ndarray | None = None,
    frame: np.ndarray | None = None,
    centre_ras=None,
):
    """Volume (SimpleITK image) -> (network input [1, 1, D, H, W] float32, grid geometry). ``frame``: the grid's
    axes (default: the grid's own choice for this volume, ModelGrid.frame_for); ``centre_ras``: the grid's centre
    (default: the centre of the volume's extent)."""
    if centre_ras is None:
        grid_geometry = grid.geometry_for(volume_geometry, pose, frame)
    else:
        grid_geometry = grid.geometry_centred_at(volume_geometry, centre_ras, pose, frame)
    array = normalize(resample_to_grid(image, grid_geometry), modality, normalization)
    return array[None, None], grid_geometry


def prepare_patches(
    image,
    volume_geometry: VolumeGeometry,
    grid: ModelGrid,
    centres_ras,
    modality: str,
    normalization: dict | None = None,
    poses=None,
    frame: np.ndarray | None = None,
):
    """One patch per RAS centre (N x 3) -> (network input [N, 1, D, H, W] float32, list of N patch geometries).
    Patches reaching beyond the volume are padded with 0 before normalization (landmarks near a border).
    ``frame``: the patches' axes, as for :func:`prepare_input`."""
    centres = np.asarray(centres_ras, dtype=float).reshape(-1, 3)
    arrays, geometries = [], []
    for n, centre in enumerate(centres):
        geometry = grid.geometry_centred_at(volume_geometry, centre, None if poses is None else poses[n], frame)
        arrays.append(normalize(resample_to_grid(image, geometry), modality, normalization))
        geometries.append(geometry)
    return np.stack(arrays)[:, None], geometries
