"""Coordinate systems at every boundary: IJK voxel indices, RAS (Slicer, MRML) and LPS (ITK, DICOM, files).

Conventions used throughout the project:
- World coordinates inside the library are RAS millimetres (Slicer's convention).
- Files written by ITK/SimpleITK and Slicer's markups/transform writers hold LPS; conversion is a sign flip
  of the first two axes, ``lps = diag(-1, -1, 1) @ ras``.
- IJK are continuous voxel indices whose integer values are voxel *centres* (ITK and Slicer agree): voxel
  (0, 0, 0) covers [-0.5, 0.5] along each index axis.
- numpy arrays of volumes are indexed [k, j, i] (slowest axis first), as slicer.util.arrayFromVolume and
  SimpleITK.GetArrayFromImage both return them; ``VolumeGeometry.size_ijk`` is (I, J, K).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])  # its own inverse


def ras_to_lps(points) -> np.ndarray:
    """RAS <-> LPS for an N x 3 array or a 3-vector (the same sign flip both ways)."""
    p = np.array(points, dtype=float)
    p[..., :2] *= -1.0
    return p


lps_to_ras = ras_to_lps


def convert_matrix_ras_lps(matrix) -> np.ndarray:
    """A 4x4 point transform expressed in RAS, re-expressed in LPS (and vice versa)."""
    return LPS_FROM_RAS @ np.asarray(matrix, dtype=float) @ LPS_FROM_RAS


def to_parent_ras_from_sitk_transform(tx) -> np.ndarray:
    """A linear SimpleITK/ITK transform (resampling direction in LPS: maps fixed points to moving points) as the
    RAS "to parent" matrix Slicer shows for it (moving -> fixed): ``LPS inverse(T) LPS``.
    The transform is sampled at the origin and unit points (exact for any linear ITK type); ValueError if it
    is not linear."""
    basis = np.vstack([np.zeros(3), np.eye(3), [[17.0, -23.0, 31.0]]])
    mapped = np.array([tx.TransformPoint([float(v) for v in p]) for p in basis])
    m = np.eye(4)
    m[:3, 3] = mapped[0]
    m[:3, :3] = (mapped[1:4] - mapped[0]).T
    if not np.allclose(m[:3, :3] @ basis[4] + m[:3, 3], mapped[4], atol=1e-6):
        raise ValueError("not a linear transform")
    return convert_matrix_ras_lps(np.linalg.inv(m))


@dataclass(frozen=True)
class VolumeGeometry:
    """Voxel grid of a 3-D volume: size (I, J, K), spacing (mm), origin (RAS of voxel 0,0,0's centre) and
    direction (3x3, column c is the unit RAS direction of index axis c)."""

    size_ijk: tuple[int, int, int]
    spacing: np.ndarray
    origin_ras: np.ndarray
    direction_ras: np.ndarray

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """Shape of the numpy voxel array, (K, J, I)."""
        return tuple(reversed(self.size_ijk))

    @property
    def ijk_to_ras(self) -> np.ndarray:
        m = np.eye(4)
        m[:3, :3] = self.direction_ras * self.spacing[None, :]
        m[:3, 3] = self.origin_ras
        return m

    @property
    def ras_to_ijk(self) -> np.ndarray:
        return np.linalg.inv(self.ijk_to_ras)

    def ijk_to_ras_points(self, ijk) -> np.ndarray:
        m = self.ijk_to_ras
        return np.asarray(ijk, dtype=float) @ m[:3, :3].T + m[:3, 3]

    def ras_to_ijk_points(self, ras) -> np.ndarray:
        m = self.ras_to_ijk
        return np.asarray(ras, dtype=float) @ m[:3, :3].T + m[:3, 3]

    def contains_ras(self, ras, margin_voxels: float = 0.0) -> np.ndarray:
        """True for RAS points inside the volume's extent (voxel edges, -0.5 .. size - 0.5)."""
        ijk = np.atleast_2d(self.ras_to_ijk_points(ras))
        lo = -0.5 + margin_voxels
        hi = np.asarray(self.size_ijk, dtype=float) - 0.5 - margin_voxels
        return np.all((ijk >= lo) & (ijk <= hi), axis=1)

    @classmethod
    def from_ijk_to_ras(cls, matrix, size_ijk) -> VolumeGeometry:
        m = np.asarray(matrix, dtype=float)
        spacing = np.linalg.norm(m[:3, :3], axis=0)
        return cls(tuple(int(s) for s in size_ijk), spacing, m[:3, 3].copy(), m[:3, :3] / spacing)

    @classmethod
    def from_volume_node(cls, node) -> VolumeGeometry:
        """Geometry of a vtkMRMLVolumeNode (its own IJK-to-RAS, not including any parent transform)."""
        import vtk

        m = vtk.vtkMatrix4x4()
        node.GetIJKToRASMatrix(m)
        image = node.GetImageData()
        if image is None:
            raise ValueError(f"volume node {node.GetName()!r} has no image data")
        return cls.from_ijk_to_ras(numpy_from_vtk_matrix(m), image.GetDimensions())

    @classmethod
    def from_sitk_image(cls, image) -> VolumeGeometry:
        """Geometry of a SimpleITK image, whose origin and direction are in LPS."""
        direction_lps = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
        flip = LPS_FROM_RAS[:3, :3]
        return cls(
            tuple(int(s) for s in image.GetSize()),
            np.array(image.GetSpacing(), dtype=float),
            flip @ np.array(image.GetOrigin(), dtype=float),
            flip @ direction_lps,
        )

    def apply_to_sitk_image(self, image) -> None:
        """Set a SimpleITK image's spacing, origin and direction (LPS) from this geometry."""
        flip = LPS_FROM_RAS[:3, :3]
        image.SetSpacing([float(s) for s in self.spacing])
        image.SetOrigin([float(v) for v in flip @ self.origin_ras])
        image.SetDirection([float(v) for v in (flip @ self.direction_ras).ravel()])


def numpy_from_vtk_matrix(m) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])
