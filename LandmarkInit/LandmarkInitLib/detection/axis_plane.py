"""The posterior median's lateral position, shrunk toward the volume's sagittal plane through the gland axis.

The posterior median lies on the gland's mid-sagittal plane, which the networks find least well: a local patch
sees a nearly flat stretch of the posterior surface, so the lateral error of the global estimate survives the
refinement (docs/history.md measures it). A second, independent estimate of that plane: the plane through the
detected apex -> bladder-neck axis that is parallel to the volume's sagittal direction, i.e. whose normal is the
volume's first index axis I (the patient's left-right in an axial MR series, the probe's lateral axis in TRUS;
detection/mirror_average.py makes the same assumption) made orthogonal to the gland axis.
On the validation cases the networks' lateral offsets from that plane follow the true ones but spread more, so
moving the posterior median part of the way toward it is a least-squares correction; how far is a card setting
chosen on validation. Only the component along the plane's normal is changed: the height along the axis and the
depth stay as they were. Points are RAS mm, rows in LANDMARK_LABELS order.
"""

from __future__ import annotations

import numpy as np

from LandmarkInitLib.landmarks import APEX, BLADDER_NECK, POSTERIOR_MEDIAN


def axis_plane_normal(points_ras: np.ndarray, lateral_direction_ras) -> np.ndarray | None:
    """Unit normal (RAS) of the plane through the apex -> bladder-neck axis whose normal is as close to
    ``lateral_direction_ras`` as a plane containing the axis allows; None when the axis has no length or runs
    along the lateral direction (no such plane)."""
    points = np.asarray(points_ras, dtype=np.float64)
    axis = points[BLADDER_NECK] - points[APEX]
    length = np.linalg.norm(axis)
    lateral = np.asarray(lateral_direction_ras, dtype=np.float64)
    lateral = lateral / np.linalg.norm(lateral)
    if length == 0.0:
        return None
    axis /= length
    normal = lateral - (lateral @ axis) * axis
    size = np.linalg.norm(normal)
    if size < 1e-6:
        return None
    return normal / size


def shrink_posterior_median_to_axis_plane(points_ras: np.ndarray, lateral_direction_ras, weight: float) -> np.ndarray:
    """Move the posterior median toward the axis plane (:func:`axis_plane_normal`) by ``weight`` (0..1) of its
    signed distance from it: 0 keeps it, 1 puts it on the plane. Returns a new array; the apex and bladder neck
    are not moved."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"axis-plane weight must be between 0 and 1, not {weight}")
    points = np.array(points_ras, dtype=np.float64)
    normal = axis_plane_normal(points, lateral_direction_ras)
    if weight == 0.0 or normal is None:
        return points
    offset = float((points[POSTERIOR_MEDIAN] - points[APEX]) @ normal)
    points[POSTERIOR_MEDIAN] -= weight * offset * normal
    return points
