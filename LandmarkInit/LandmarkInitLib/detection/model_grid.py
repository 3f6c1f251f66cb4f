"""The model input grid and the coordinate convention of the network outputs, defined once.

Model grid: ``shape_ijk`` voxels of isotropic ``spacing_mm``, whose index axes are the input volume's own index
axes (the volume's IJK-to-RAS direction columns, not permuted), centred on the centre of the volume's extent
(global detectors) or on a RAS point (local refinement patches, ``geometry_centred_at``).
Networks therefore see a volume as it was acquired (MR: axial series; US: probe-aligned axes).

Network coordinates ("grid mm"): (x, y, z) along the grid's (I, J, K) axes, in millimetres, relative to the
grid centre. Voxel centre k of an axis with n voxels sits at ``(k - (n - 1) / 2) * spacing_mm``.
For reference, dsntnn's normalized coordinate of the same voxel centre is ``(2k + 1) / n - 1``, so
``grid_mm = normalized * n * spacing_mm / 2`` (+-1 are the outer voxel edges there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from LandmarkInitLib.geometry import VolumeGeometry


@dataclass(frozen=True)
class ModelGrid:
    shape_ijk: tuple[int, int, int]
    spacing_mm: float

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """Shape of the network input, (K, J, I) = (D, H, W)."""
        return tuple(reversed(self.shape_ijk))

    def axis_mm(self, axis: int) -> np.ndarray:
        """Grid-mm coordinate of every voxel centre along axis 0 (I, x), 1 (J, y) or 2 (K, z)."""
        n = self.shape_ijk[axis]
        return (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * self.spacing_mm

    def geometry_for(self, volume: VolumeGeometry, pose: np.ndarray | None = None) -> VolumeGeometry:
        """The grid placed on ``volume``: its axes, centred on its extent. ``pose`` (4x4, optional) moves the
        grid rigidly about its own centre, in grid-mm coordinates (training augmentation)."""
        centre_ijk = (np.asarray(volume.size_ijk, dtype=float) - 1.0) / 2.0
        return self.geometry_centred_at(volume, volume.ijk_to_ras_points(centre_ijk), pose)

    def geometry_centred_at(self, volume: VolumeGeometry, centre_ras, pose: np.ndarray | None = None) -> VolumeGeometry:
        """The grid with ``volume``'s axes, its centre voxel position at ``centre_ras`` (moved by ``pose``)."""
        centre = np.asarray(centre_ras, dtype=float).reshape(3)
        direction = volume.direction_ras.copy()
        if pose is not None:
            centre = centre + direction @ pose[:3, 3]
            direction = direction @ pose[:3, :3]
        half = (np.asarray(self.shape_ijk, dtype=float) - 1.0) / 2.0 * self.spacing_mm
        origin = centre - direction @ half
        return VolumeGeometry(self.shape_ijk, np.full(3, float(self.spacing_mm)), origin, direction)

    def grid_mm_to_ras(self, grid_geometry: VolumeGeometry, points_mm) -> np.ndarray:
        """Network coordinates (N x 3 grid mm) -> RAS, through the grid's geometry."""
        ijk = np.asarray(points_mm, dtype=float) / self.spacing_mm + (np.asarray(self.shape_ijk) - 1) / 2.0
        return grid_geometry.ijk_to_ras_points(ijk)

    def ras_to_grid_mm(self, grid_geometry: VolumeGeometry, points_ras) -> np.ndarray:
        ijk = grid_geometry.ras_to_ijk_points(points_ras)
        return (ijk - (np.asarray(self.shape_ijk) - 1) / 2.0) * self.spacing_mm

    def cell_centres_mm(self, stride: int, axis: int) -> np.ndarray:
        """Grid-mm centres of the patches ("cells") of a fully convolutional network with total ``stride``:
        cell c of an axis covers voxels c*stride ... c*stride + stride - 1, and its centre is their mean."""
        n = self.shape_ijk[axis]
        if n % stride:
            raise ValueError(f"grid axis {axis} has {n} voxels, not a multiple of the network stride {stride}")
        first = np.arange(n // stride, dtype=np.float64) * stride
        return (first + (stride - 1) / 2.0 - (n - 1) / 2.0) * self.spacing_mm

    def to_dict(self) -> dict:
        return {
            "shape_ijk": list(self.shape_ijk),
            "spacing_mm": self.spacing_mm,
            "orientation": "volume index axes (IJK-to-RAS direction columns, not permuted)",
            "centre": "centre of the volume extent",
            "interpolation": "linear",
            "padding_value": 0.0,
            "coordinates": "grid mm: (x, y, z) along grid (I, J, K), relative to the grid centre",
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelGrid:
        return cls(tuple(int(v) for v in d["shape_ijk"]), float(d["spacing_mm"]))
