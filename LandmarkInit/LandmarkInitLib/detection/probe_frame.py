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


def fan_corner_candidates_ras(array: np.ndarray, geometry: VolumeGeometry) -> np.ndarray:
    """RAS centres of the fan voxels that can be corners of its convex hull: a corner lies between no two other
    points, so it is the first or last non-zero voxel of its row along each of the three index axes. Rows map to
    rows however the voxel axes are ordered or flipped, so these are the same physical points in any storage, and
    the frame found from them is too."""
    fan = array != 0
    ends = np.ones_like(fan)
    for axis in range(3):
        n = fan.shape[axis]
        index = np.arange(n).reshape([-1 if a == axis else 1 for a in range(3)])
        first = np.where(fan, index, n).min(axis=axis, keepdims=True)
        last = np.where(fan, index, -1).max(axis=axis, keepdims=True)
        ends &= fan & ((index == first) | (index == last))
    k, j, i = np.nonzero(ends)
    return geometry.ijk_to_ras_points(np.stack([i, j, k], axis=1).astype(float))


def shows_fan(array: np.ndarray) -> bool:
    """Whether the volume has the zero background around an imaged sector that the probe's frame is found from."""
    return not (np.mean(array == 0) < MIN_BACKGROUND or np.count_nonzero(array) < 100)


def fan_centre_ras(fan_points_ras: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The centre of the fan's bounding box along the axes of ``frame`` (3x3, columns RAS directions), from the
    RAS points of :func:`fan_corner_candidates_ras`: where the US grid is centred, so that the field of view
    around the fan (a converter's larger box, zero outside the sector) does not move what the network sees. The
    phantom's US files are cut to the fan, so there it is the volume's centre (within 1.6 mm), as in training."""
    frame = np.asarray(frame, dtype=float)
    along = np.asarray(fan_points_ras, dtype=float) @ frame  # coordinates along the frame's axes
    return frame @ ((along.min(axis=0) + along.max(axis=0)) / 2.0)


def _sphere_directions(n: int) -> np.ndarray:
    """``n`` unit vectors spread evenly over the sphere (Fibonacci lattice)."""
    z = 1.0 - (2.0 * np.arange(n) + 1.0) / n
    azimuth = np.pi * (3.0 - np.sqrt(5.0)) * np.arange(n)
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(azimuth), r * np.sin(azimuth), z], axis=1)


def convex_hull(points: np.ndarray, directions: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """(vertices V x 3, triangles T x 3 indices) of the convex hull of the points that are extreme along
    ``directions`` directions: corners of the hull, so the polytope they span is the hull up to the sampling of
    its curved parts. VTK's 3-D Delaunay triangulation (alpha 0: the convex hull) on those few hundred points."""
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkPolyData
    from vtkmodules.vtkFiltersCore import vtkDelaunay3D
    from vtkmodules.vtkFiltersGeometry import vtkDataSetSurfaceFilter

    extreme = np.unique(np.argmax(points @ _sphere_directions(directions).T, axis=0))
    vtk_points = vtkPoints()
    vtk_points.SetData(numpy_to_vtk(np.ascontiguousarray(points[extreme], dtype=np.float64), deep=True))
    cloud = vtkPolyData()
    cloud.SetPoints(vtk_points)
    delaunay = vtkDelaunay3D()
    delaunay.SetInputData(cloud)
    delaunay.SetAlpha(0.0)
    surface = vtkDataSetSurfaceFilter()
    surface.SetInputConnection(delaunay.GetOutputPort())
    surface.Update()
    hull = surface.GetOutput()
    # the surface of a tetrahedralization: triangles only
    triangles = vtk_to_numpy(hull.GetPolys().GetConnectivityArray()).reshape(-1, 3)
    return vtk_to_numpy(hull.GetPoints().GetData()).astype(float), triangles


def hull_second_moments(vertices: np.ndarray, triangles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centroid, 3x3 covariance) of the solid polyhedron bounded by ``triangles``, exact: a sum over the
    tetrahedra joining an interior point to each triangle."""
    apex = vertices.mean(axis=0)
    tri = vertices[triangles] - apex  # (T, 3 corners, 3)
    volume = np.abs(np.einsum("ti,ti->t", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))) / 6.0
    corner_sum = tri.sum(axis=1)
    total = volume.sum()
    mean = (volume[:, None] * corner_sum).sum(axis=0) / 4.0 / total
    # second moment of a tetrahedron with one corner at the origin: V/20 (sum a a^T + s s^T), s = a + b + c
    second = np.einsum("t,tci,tcj->ij", volume, tri, tri) + np.einsum("t,ti,tj->ij", volume, corner_sum, corner_sum)
    covariance = second / 20.0 / total - np.outer(mean, mean)
    return mean + apex, covariance


def candidate_frames(array: np.ndarray, geometry: VolumeGeometry, fan_points_ras=None) -> np.ndarray | None:
    """The 8 candidate probe frames (8 x 3 x 3, columns lateral, depth, along the probe in RAS) of a B-mode
    volume, or None when it shows no fan (too little zero background); ``fan_points_ras``: the volume's
    :func:`fan_corner_candidates_ras`, when the caller has them already."""
    if not shows_fan(array):
        return None
    if fan_points_ras is None:
        fan_points_ras = fan_corner_candidates_ras(array, geometry)
    vertices, triangles = convex_hull(fan_points_ras)
    _, covariance = hull_second_moments(vertices, triangles)
    _, vectors = np.linalg.eigh(covariance)
    depth, e1 = vectors[:, 0], vectors[:, 1]
    e2 = np.cross(depth, e1)
    # fourfold moment of the faces' normals across depth, weighted by face area (a normal's sign does not matter)
    corners = vertices[triangles]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    area = 0.5 * np.linalg.norm(cross, axis=1)
    normals = cross / np.maximum(2.0 * area, 1e-12)[:, None]
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
