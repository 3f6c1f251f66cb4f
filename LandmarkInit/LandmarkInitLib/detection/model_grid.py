"""The model input grid and the coordinate convention of the network outputs, defined once.

Model grid: ``shape_ijk`` voxels of isotropic ``spacing_mm``, centred on the centre of the volume's extent (global
detectors; a probe-frame grid on the centre of the imaged fan, detection/probe_frame.py, and a two-stage card's
further global passes on the last answer) or on a RAS point (local refinement patches, ``geometry_centred_at``).
Its axes ("frame", 3x3, columns the RAS directions of grid I, J, K) are either
- the patient's axes, when the card's grid names them (``"axes": "LPS"``: grid I points to the patient's left, J
  posterior, K superior): the network then sees the same anatomy however the volume is stored (any voxel axis order
  or flip, axial, sagittal, coronal or oblique series of the same physical image); or
- the TRUS probe's frame (``"axes": "probe"``: grid I lateral, J depth, K along the probe), which the detectors
  find from the imaged fan (detection/probe_frame.py): US files carry no patient orientation, and their axis
  order differs between vendors and converters. From the geometry alone (:meth:`ModelGrid.frame_for`: training
  data, whose files are stored in the probe's frame, and volumes without a fan) it is the volume's own axes; or
- the volume's own index axes (the volume's IJK-to-RAS direction columns, not permuted) when the card names none:
  the network sees the volume as it was stored (cards made before the patient frame).
The frame is chosen once per volume (:meth:`ModelGrid.frame_for`) and passed on, so that the detectors' mirror
view (a reflected geometry, detection/mirror_average.py) keeps the original volume's frame.

Network coordinates ("grid mm"): (x, y, z) along the grid's (I, J, K) axes, in millimetres, relative to the
grid centre. Voxel centre k of an axis with n voxels sits at ``(k - (n - 1) / 2) * spacing_mm``.
For reference, dsntnn's normalized coordinate of the same voxel centre is ``(2k + 1) / n - 1``, so
``grid_mm = normalized * n * spacing_mm / 2`` (+-1 are the outer voxel edges there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from LandmarkInitLib.geometry import VolumeGeometry

PROBE_AXES = "PROBE"  # a card's grid "axes": "probe"
FAN_CENTRE = (
    "centre of the imaged fan's bounding box along the probe frame's axes (the volume's centre when it shows no fan; "
    "the phantom's US files are cut to the fan, so in training it was the volume's centre)"
)
# RAS direction of each patient-axis letter of a grid's "axes" code.
PATIENT_DIRECTIONS = {
    "R": (1.0, 0.0, 0.0),
    "L": (-1.0, 0.0, 0.0),
    "A": (0.0, 1.0, 0.0),
    "P": (0.0, -1.0, 0.0),
    "S": (0.0, 0.0, 1.0),
    "I": (0.0, 0.0, -1.0),
}


def patient_frame(axes: str) -> np.ndarray:
    """The 3x3 frame (columns: RAS directions of grid I, J, K) of an axes code such as "LPS" or "RAS"; ValueError
    unless it names each of the patient's three axes once."""
    code = str(axes).upper()
    if len(code) != 3 or any(c not in PATIENT_DIRECTIONS for c in code):
        raise ValueError(
            f"grid axes {axes!r}: expected three letters from R/L, A/P, S/I such as 'LPS' (or 'probe' for a US grid "
            "in the probe's frame)"
        )
    frame = np.array([PATIENT_DIRECTIONS[c] for c in code]).T
    if abs(np.linalg.det(frame)) != 1.0:
        raise ValueError(f"grid axes {axes!r} name a patient axis twice: each of R/L, A/P, S/I must appear once")
    return frame


@dataclass(frozen=True)
class ModelGrid:
    shape_ijk: tuple[int, int, int]
    spacing_mm: float
    axes: str | None = None  # patient axes code ("LPS"), or None: the volume's index axes

    @property
    def in_probe_frame(self) -> bool:
        return self.axes == PROBE_AXES

    def frame_for(self, volume: VolumeGeometry) -> np.ndarray:
        """The grid's axes on ``volume`` as far as its geometry tells (3x3, columns RAS directions of grid I, J,
        K); a probe-frame grid takes the volume's own axes here, the detectors find the probe's from the fan."""
        if self.axes is None or self.in_probe_frame:
            return volume.direction_ras.copy()
        return patient_frame(self.axes)

    def lateral_direction_ras(self, frame: np.ndarray) -> np.ndarray:
        """The left-right direction the detectors' mirror view and axis plane use: the grid's I axis (the
        patient's left-right in a patient frame, the probe's lateral axis in the probe frame; the volume's first
        index axis otherwise)."""
        return np.asarray(frame, dtype=float)[:, 0].copy()

    @property
    def array_shape(self) -> tuple[int, int, int]:
        """Shape of the network input, (K, J, I) = (D, H, W)."""
        return tuple(reversed(self.shape_ijk))

    def axis_mm(self, axis: int) -> np.ndarray:
        """Grid-mm coordinate of every voxel centre along axis 0 (I, x), 1 (J, y) or 2 (K, z)."""
        n = self.shape_ijk[axis]
        return (np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * self.spacing_mm

    def geometry_for(
        self, volume: VolumeGeometry, pose: np.ndarray | None = None, frame: np.ndarray | None = None
    ) -> VolumeGeometry:
        """The grid placed on ``volume``: centred on its extent, axes ``frame`` (default :meth:`frame_for`).
        ``pose`` (4x4, optional) moves the grid rigidly about its own centre, in grid-mm coordinates (training
        augmentation)."""
        centre_ijk = (np.asarray(volume.size_ijk, dtype=float) - 1.0) / 2.0
        return self.geometry_centred_at(volume, volume.ijk_to_ras_points(centre_ijk), pose, frame)

    def geometry_centred_at(
        self, volume: VolumeGeometry, centre_ras, pose: np.ndarray | None = None, frame: np.ndarray | None = None
    ) -> VolumeGeometry:
        """The grid with axes ``frame`` (default :meth:`frame_for`), its centre voxel at ``centre_ras`` (moved by
        ``pose``)."""
        centre = np.asarray(centre_ras, dtype=float).reshape(3)
        direction = self.frame_for(volume) if frame is None else np.array(frame, dtype=float)
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
        if self.axes is None:
            orientation = "volume index axes (IJK-to-RAS direction columns, not permuted)"
        elif self.in_probe_frame:
            orientation = (
                "the TRUS probe's frame: grid I lateral, J depth, K along the probe, found from the imaged fan "
                "whatever the storage (LandmarkInitLib/detection/probe_frame.py)"
            )
        else:
            orientation = (
                f"patient axes: grid I, J, K point to {', '.join(self.axes)} (R/L, A/P, S/I), whatever the storage"
            )
        return {
            "shape_ijk": list(self.shape_ijk),
            "spacing_mm": self.spacing_mm,
            **({} if self.axes is None else {"axes": self.axes}),
            "orientation": orientation,
            "centre": FAN_CENTRE if self.in_probe_frame else "centre of the volume extent",
            "interpolation": "linear",
            "padding_value": 0.0,
            "coordinates": "grid mm: (x, y, z) along grid (I, J, K), relative to the grid centre",
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelGrid:
        axes = d.get("axes")
        if axes is not None:
            axes = str(axes).upper()
            if axes != PROBE_AXES:
                patient_frame(axes)  # refuse a bad code when the card is read
        return cls(tuple(int(v) for v in d["shape_ijk"]), float(d["spacing_mm"]), axes)
