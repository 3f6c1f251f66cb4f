"""Landmark errors split along the gland's own directions, to see where a detector goes wrong.

The frame of a case comes from its ground-truth landmarks (RAS mm, rows in LANDMARK_LABELS order):
- axis: unit vector from the apex to the bladder neck;
- posterior: unit vector from the posterior median's foot on that axis to the posterior median;
- lateral: axis x posterior, normal to the plane through the three landmarks (the mid-sagittal plane).
An error along ``lateral`` is a miss of the mid-sagittal plane; along ``axis``, a wrong height in the gland;
along ``posterior``, a wrong depth. The frame is right-handed whatever the patient's orientation in RAS.
"""

from __future__ import annotations

import numpy as np

from LandmarkInitLib.landmarks import APEX, BLADDER_NECK, LANDMARK_LABELS, POSTERIOR_MEDIAN

COMPONENTS = ("axis", "posterior", "lateral")


def gland_frame(truth_ras) -> np.ndarray:
    """Rows: the axis, posterior and lateral unit vectors (RAS) of one case's ground-truth landmarks."""
    truth = np.asarray(truth_ras, dtype=np.float64)
    axis = truth[BLADDER_NECK] - truth[APEX]
    if np.linalg.norm(axis) == 0.0:
        raise ValueError("apex and bladder neck coincide: the gland axis is undefined")
    axis /= np.linalg.norm(axis)
    offset = truth[POSTERIOR_MEDIAN] - truth[APEX]
    posterior = offset - (offset @ axis) * axis
    if np.linalg.norm(posterior) < 1e-9 * max(1.0, np.linalg.norm(offset)):
        raise ValueError(
            "the posterior median lies on the apex - bladder neck axis: the mid-sagittal plane is undefined"
        )
    posterior /= np.linalg.norm(posterior)
    return np.stack([axis, posterior, np.cross(axis, posterior)])


def error_components(predicted_ras, truth_ras) -> np.ndarray:
    """(landmarks x 3) signed components, in mm, of predicted - truth along (axis, posterior, lateral)."""
    predicted = np.asarray(predicted_ras, dtype=np.float64)
    truth = np.asarray(truth_ras, dtype=np.float64)
    if predicted.shape != truth.shape or truth.shape != (len(LANDMARK_LABELS), 3):
        raise ValueError(
            f"expected two ({len(LANDMARK_LABELS)}, 3) arrays of landmarks in {LANDMARK_LABELS} order, "
            f"got {predicted.shape} and {truth.shape}"
        )
    return (predicted - truth) @ gland_frame(truth).T
