"""The TRUS probe's frame, found from the shape of the imaged fan, so that US detection does not depend on how
the file's voxel axes are ordered or flipped (vendors and converters differ) nor on any reslice of the image.

Probe frame: three RAS directions, the columns of a proper rotation, in the order (lateral, depth, along the
probe): the US model grid's I, J, K when the card's grid says ``"axes": "probe"``. It is the frame the US
networks were trained in: the phantom's US volumes are stored with I lateral, J depth (away from the probe) and K
along the probe (LandmarkInitResearch/phantom/ultrasound.py), and the grid then followed the index axes.

From the fan (the non-zero voxels: B-mode is zero outside the imaged sector) alone:
- depth is the fan's axis of least spread: end-fire cones (half-angle 38-48 degrees, 68-80 mm deep) and side-fire
  cylindrical sectors (sweep +-55-70 degrees) are both wider than deep. Second moments of the fan's convex hull
  (interior anechoic regions, which are also zero, do not change the hull);
- the lateral and probe axes, up to a multiple of 90 degrees about depth: the fan's flat faces are the sector's
  edges, so their normals, projected onto the plane across depth, point along lateral or along the probe; the
  fourfold moment of those normals (area-weighted) gives that direction modulo 90 degrees.
This leaves 8 candidate frames (depth either way, times 4 turns about it). The content decides between them:
:func:`choose_frame` keeps the one in which the global network is most confident (smallest mean heatmap spread;
``LandmarkDetector.detect_in_probe_frame``).
When two candidates score within 5 % of each other the image cannot decide; the one nearest the file's own axes is
kept and the detection is flagged. On 50 held-out phantom cases the best-scoring frame was within 1.3 degrees of
the probe's true frame in 49; the 50th, a partial view (bladder neck outside the fan), was such a tie.
"""

from __future__ import annotations

import numpy as np

from LandmarkInitLib.geometry import VolumeGeometry

# A fan is recognised when at least this fraction of the volume is zero (the background around the sector).
MIN_BACKGROUND = 0.05
# The best candidate's score must be below this fraction of the runner-up's, or the orientation is ambiguous.
AMBIGUITY_RATIO = 0.95
FLAG_NO_FAN = (
    "US orientation: no imaged fan found (under 5 % of the voxels are zero), so the probe's frame cannot be found "
    "from the image; the volume's own axes were taken as the probe's (lateral, depth, along the probe): check the "
    "landmarks"
)


def flag_ambiguous(best: float, runner_up: float) -> str:
    return (
        f"US orientation ambiguous: two orientations of the probe fit almost equally well (mean heatmap spread "
        f"{best:.2f} vs {runner_up:.2f} mm), so the one nearest the file's own axes was kept; check the landmarks, "
        "in particular apex vs bladder neck"
    )


def fan_boundary_ras(array: np.ndarray, geometry: VolumeGeometry) -> np.ndarray:
    """RAS centres of the fan's boundary voxels: non-zero with a zero face neighbour or on the volume's border.
    They have the same convex hull as the whole fan, and they are the same physical points however the voxel
    axes are ordered or flipped, so the frame found from them is too."""
    from scipy import ndimage

    fan = array != 0
    boundary = fan & ~ndimage.binary_erosion(fan, border_value=0)
    k, j, i = np.nonzero(boundary)
    return geometry.ijk_to_ras_points(np.stack([i, j, k], axis=1).astype(float))


def hull_second_moments(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, object]:
    """(centroid, 3x3 covariance, scipy ConvexHull) of the solid convex hull of ``points``, exact: a sum over
    the tetrahedra joining an interior point to each hull triangle."""
    from scipy.spatial import ConvexHull

    hull = ConvexHull(points)
    apex = points[hull.vertices].mean(axis=0)
    tri = points[hull.simplices] - apex  # (T, 3 corners, 3)
    volume = np.abs(np.einsum("ti,ti->t", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))) / 6.0
    corner_sum = tri.sum(axis=1)
    total = volume.sum()
    mean = (volume[:, None] * corner_sum).sum(axis=0) / 4.0 / total
    # second moment of a tetrahedron with one corner at the origin: V/20 (sum a a^T + s s^T), s = a + b + c
    second = np.einsum("t,tci,tcj->ij", volume, tri, tri) + np.einsum("t,ti,tj->ij", volume, corner_sum, corner_sum)
    covariance = second / 20.0 / total - np.outer(mean, mean)
    return mean + apex, covariance, hull


def candidate_frames(array: np.ndarray, geometry: VolumeGeometry) -> np.ndarray | None:
    """The 8 candidate probe frames (8 x 3 x 3, columns lateral, depth, along the probe in RAS) of a B-mode
    volume, or None when it shows no fan (too little zero background)."""
    if np.mean(array == 0) < MIN_BACKGROUND or np.count_nonzero(array) < 100:
        return None
    _, covariance, hull = hull_second_moments(fan_boundary_ras(array, geometry))
    _, vectors = np.linalg.eigh(covariance)
    depth, e1 = vectors[:, 0], vectors[:, 1]
    e2 = np.cross(depth, e1)
    # fourfold moment of the faces' normals across depth, weighted by face area
    normals = hull.equations[:, :3]
    corners = hull.points[hull.simplices]
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    z = normals @ e1 + 1j * (normals @ e2)
    phi = np.angle(np.sum(area * z**4)) / 4.0
    frames = []
    for d in (depth, -depth):
        for quarter in range(4):
            angle = phi + quarter * np.pi / 2.0
            lateral = np.cos(angle) * e1 + np.sin(angle) * e2
            lateral -= (lateral @ d) * d
            lateral /= np.linalg.norm(lateral)
            frames.append(np.stack([lateral, d, np.cross(lateral, d)], axis=1))
    return np.array(frames)


def choose_frame(scores, closeness=None) -> tuple[int, str | None]:
    """(index of the candidate frame with the lowest score, a flag when the runner-up scores within
    AMBIGUITY_RATIO of it, else None). When ambiguous and ``closeness`` is given (per candidate, e.g. how well it
    agrees with the file's own axes), the closest of the candidates within the ratio is kept instead: the file's
    axes decide what the image cannot, and the flag says so."""
    scores = [float(v) for v in scores]
    order = np.argsort(scores, kind="stable")
    best, runner_up = scores[order[0]], scores[order[1]]
    if best < AMBIGUITY_RATIO * runner_up:
        return int(order[0]), None
    if closeness is not None:
        close = [i for i in order if best >= AMBIGUITY_RATIO * scores[i]]
        return int(max(close, key=lambda i: closeness[i])), flag_ambiguous(best, runner_up)
    return int(order[0]), flag_ambiguous(best, runner_up)
