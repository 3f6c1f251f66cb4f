"""The posterior median's height from its definition: the mid-gland point of the posterior surface.

"Mid-gland" is halfway between apex and bladder neck, so the detected apex and bladder neck give a second
estimate of where the posterior median sits along the apex -> bladder-neck axis, independent of the
network's. A local patch (32-48 mm) rarely sees both ends of a ~40 mm gland, so along that axis the network's
own estimate is the weak one (docs/history.md). Only the along-axis component is changed; the depth and the
lateral position stay the network's. Points are RAS mm, rows in LANDMARK_LABELS order.
"""

from __future__ import annotations

import numpy as np

from LandmarkInitLib.landmarks import APEX, BLADDER_NECK, POSTERIOR_MEDIAN


def pull_posterior_median_to_mid_gland(points_ras: np.ndarray, weight: float) -> np.ndarray:
    """Move the posterior median along the apex -> bladder-neck axis by ``weight`` (0..1) of its offset from
    the apex/bladder-neck midpoint: 0 keeps it, 1 puts it exactly at mid-gland height. Returns a new array."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"mid-gland weight must be between 0 and 1, not {weight}")
    points = np.array(points_ras, dtype=np.float64)
    axis = points[BLADDER_NECK] - points[APEX]
    length = np.linalg.norm(axis)
    if weight == 0.0 or length == 0.0:
        return points
    axis /= length
    midpoint = 0.5 * (points[APEX] + points[BLADDER_NECK])
    points[POSTERIOR_MEDIAN] += weight * float((midpoint - points[POSTERIOR_MEDIAN]) @ axis) * axis
    return points
