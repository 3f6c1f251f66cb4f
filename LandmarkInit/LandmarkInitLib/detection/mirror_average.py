"""Test-time mirror averaging: detect on the volume and on its left-right mirror image, and average.

The three landmarks lie on the gland's mid-sagittal plane, and the mirror image of a prostate is as plausible a
prostate as the original, so a detector should be mirror-equivariant; trained networks are not exactly. Averaging
the answer on the volume with the (mapped back) answer on its mirror image makes the detector exactly
equivariant and cancels the left-right asymmetric part of its errors (measured in docs/history.md).

Which axis is left-right: the volume's first index axis I. The networks see volumes in their own index axes
(detection/model_grid.py), and in both modalities I is the patient's (MR, axial series) or the probe's (TRUS,
lateral) left-right axis, so the mirror is taken in index space: the mirrored array keeps the geometry, and its
voxel (i, j, k) holds the original's voxel (n_I - 1 - i, j, k). A point found at continuous index i in the
mirror image is at index n_I - 1 - i in the original (voxel centres at integer indices).
"""

from __future__ import annotations

import numpy as np

from LandmarkInitLib.geometry import VolumeGeometry


def mirror_array(array: np.ndarray) -> np.ndarray:
    """The numpy volume [k, j, i] mirrored along I (a new contiguous array; the input is not touched)."""
    return np.ascontiguousarray(np.asarray(array)[:, :, ::-1])


def unmirror_points(points_ras, geometry: VolumeGeometry) -> np.ndarray:
    """RAS points found in the I-mirror of a volume with this geometry -> the same anatomical points in the
    original volume. The map is its own inverse."""
    ijk = np.atleast_2d(geometry.ras_to_ijk_points(points_ras))
    ijk[:, 0] = (geometry.size_ijk[0] - 1) - ijk[:, 0]
    return geometry.ijk_to_ras_points(ijk)


def combine_views(points, spreads) -> tuple[np.ndarray, np.ndarray]:
    """(views x L x 3 RAS points, views x L spreads in mm) -> (mean points, pooled spread): the RMS of the views'
    spreads and of their distances to the mean, as for an ensemble (detection/detectors.py, LocalEnsemble)."""
    points = np.asarray(points, dtype=np.float64)
    spreads = np.asarray(spreads, dtype=np.float64)
    mean = points.mean(axis=0)
    pooled = np.sqrt(np.mean(spreads**2, axis=0) + np.mean(np.sum((points - mean) ** 2, axis=2), axis=0))
    return mean, pooled
