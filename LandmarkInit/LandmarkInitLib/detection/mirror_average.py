"""Test-time mirror averaging: detect on the volume and on its left-right mirror image, and average.

The three landmarks lie on the gland's mid-sagittal plane, and the mirror image of a prostate is as plausible a
prostate as the original, so a detector should be mirror-equivariant; trained networks are not exactly. Averaging
the answer on the volume with the (mapped back) answer on its mirror image makes the detector exactly
equivariant and cancels the left-right asymmetric part of its errors (measured in docs/history.md).

The mirror image is a reflection of the volume's *geometry*, not of its voxels: the plane through the centre of the
volume's extent whose normal is the model grid's lateral axis (ModelGrid.lateral_direction_ras: the patient's
left-right in a patient-frame grid, the volume's first index axis otherwise). The voxel array is shared, the
reflected geometry has a left-handed direction matrix (SimpleITK resamples it like any other), and the model grid
keeps the original volume's frame, so the network sees the original grid mirrored along its I axis. A point found
in the reflected volume is reflected back by the same map (its own inverse).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from LandmarkInitLib.geometry import VolumeGeometry


@dataclass(frozen=True)
class Reflection:
    """The reflection through the plane containing ``point_ras`` with unit normal ``normal_ras`` (RAS mm)."""

    normal_ras: np.ndarray
    point_ras: np.ndarray

    @classmethod
    def about_centre(cls, geometry: VolumeGeometry, normal_ras) -> Reflection:
        """The reflection through the centre of ``geometry``'s extent, normal ``normal_ras``."""
        normal = np.asarray(normal_ras, dtype=float)
        centre = geometry.ijk_to_ras_points((np.asarray(geometry.size_ijk, dtype=float) - 1.0) / 2.0)
        return cls(normal / np.linalg.norm(normal), centre)

    @property
    def matrix(self) -> np.ndarray:
        return np.eye(3) - 2.0 * np.outer(self.normal_ras, self.normal_ras)

    def points(self, points_ras) -> np.ndarray:
        """N x 3 RAS points (or one) reflected."""
        p = np.asarray(points_ras, dtype=float)
        return (p - self.point_ras) @ self.matrix.T + self.point_ras

    def geometry(self, geometry: VolumeGeometry) -> VolumeGeometry:
        """The mirror image's geometry: every voxel of the same array placed at its reflected position."""
        return VolumeGeometry(
            geometry.size_ijk,
            geometry.spacing.copy(),
            self.points(geometry.origin_ras),
            self.matrix @ geometry.direction_ras,
        )


def combine_views(points, spreads) -> tuple[np.ndarray, np.ndarray]:
    """(views x L x 3 RAS points, views x L spreads in mm) -> (mean points, pooled spread): the RMS of the views'
    spreads and of their distances to the mean, as for an ensemble (detection/detectors.py, LocalEnsemble)."""
    points = np.asarray(points, dtype=np.float64)
    spreads = np.asarray(spreads, dtype=np.float64)
    mean = points.mean(axis=0)
    pooled = np.sqrt(np.mean(spreads**2, axis=0) + np.mean(np.sum((points - mean) ** 2, axis=2), axis=0))
    return mean, pooled
