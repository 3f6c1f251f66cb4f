"""The TRUS probe's frame from the imaged fan (detection/probe_frame.py): exact moments, synthetic end-fire and
side-fire fans on rotated, anisotropic, flipped grids, the choice between candidates and what is flagged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.detection.model_grid import ModelGrid
from LandmarkInitLib.detection.probe_frame import (
    AMBIGUITY_RATIO,
    FLAG_NO_FAN,
    candidate_frames,
    choose_frame,
    convex_hull,
    fan_centre_ras,
    fan_corner_candidates_ras,
    hull_second_moments,
)
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.resources import default_model_card

# the probe's true frame in RAS (columns lateral, depth, along the probe): a proper rotation, far from any axis
PROBE = Rotation.from_euler("xyz", [25.0, -40.0, 70.0], degrees=True).as_matrix()


def test_hull_moments_of_a_box_are_exact():
    corners = np.array([[x, y, z] for x in (0.0, 4.0) for y in (-1.0, 2.0) for z in (3.0, 13.0)])
    inside = np.random.default_rng(0).uniform([0, -1, 3], [4, 2, 13], (200, 3))  # interior points change nothing
    vertices, triangles = convex_hull(np.vstack([corners, inside]))
    assert len(vertices) == 8 and len(triangles) == 12  # the interior points are not corners
    mean, covariance = hull_second_moments(vertices, triangles)
    np.testing.assert_allclose(mean, [2.0, 0.5, 8.0], atol=1e-12)
    np.testing.assert_allclose(covariance, np.diag([16.0, 9.0, 100.0]) / 12.0, atol=1e-12)


def _fan_volume(kind: str, direction: np.ndarray, spacing) -> tuple[np.ndarray, VolumeGeometry]:
    """A B-mode-like volume (speckle inside the fan, 0 outside) whose probe frame is PROBE, tip / axis at RAS
    (10, -20, 5), stored on a grid with ``direction`` and ``spacing``."""
    spacing = np.asarray(spacing, dtype=float)
    tip = np.array([10.0, -20.0, 5.0])
    size = np.ceil(150.0 / spacing).astype(int)
    centre = tip + PROBE @ [0.0, 40.0, 0.0]
    origin = centre - direction @ ((size - 1) / 2.0 * spacing)
    geometry = VolumeGeometry(tuple(int(s) for s in size), spacing, origin, direction)
    k, j, i = np.indices(geometry.array_shape)
    ras = geometry.ijk_to_ras_points(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1).astype(float))
    lateral, depth, along = ((ras - tip) @ PROBE).T
    if kind == "end-fire":  # cone: both beam angles within 40 degrees, 70 mm deep
        h = np.tan(np.radians(40.0))
        inside = (depth > 0) & (np.abs(lateral) <= h * depth) & (np.abs(along) <= h * depth)
        inside &= np.sqrt(lateral**2 + depth**2 + along**2) <= 70.0
    else:  # side-fire: +-60 degrees about the probe axis, 10-60 mm from it, 60 mm along it
        r, angle = np.hypot(lateral, depth), np.degrees(np.arctan2(lateral, depth))
        inside = (r >= 10.0) & (r <= 60.0) & (np.abs(angle) <= 60.0) & (np.abs(along) <= 30.0)
    speckle = np.random.default_rng(1).uniform(1.0, 255.0, inside.size)
    return np.where(inside, speckle, 0.0).reshape(geometry.array_shape).astype(np.float32), geometry


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1.0) / 2.0, -1.0, 1.0))))


@pytest.mark.parametrize("kind", ["end-fire", "side-fire"])
def test_one_candidate_is_the_probes_frame_however_the_fan_is_stored(kind):
    # a rotated, anisotropic grid, and one with a reflected (left-handed) index frame
    stored = Rotation.from_euler("zyx", [15.0, 30.0, -20.0], degrees=True).as_matrix()
    for direction, spacing in [(stored, (1.3, 1.0, 1.6)), (stored @ np.diag([1.0, -1.0, 1.0]), (1.5, 1.2, 1.0))]:
        frames = candidate_frames(*_fan_volume(kind, direction, spacing))
        assert frames.shape == (8, 3, 3)
        for frame in frames:  # proper rotations, in the order lateral, depth, along the probe
            np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-9)
            assert np.linalg.det(frame) == pytest.approx(1.0)
        angles = sorted(_angle_deg(frame, PROBE) for frame in frames)
        assert angles[0] < 2.0, angles  # voxels of 1-1.6 mm on a 70 mm fan
        assert angles[1] > 85.0  # the others are turns of 90 / 180 degrees


def test_choose_frame_keeps_the_lowest_score_and_flags_a_close_runner_up():
    assert choose_frame([3.0, 2.0, 4.0]) == (1, None)
    index, flag = choose_frame([3.0, 2.0, 2.0 / AMBIGUITY_RATIO - 1e-9, 5.0])
    assert index == 1 and "ambiguous" in flag and "2.00 vs 2.11 mm" in flag
    assert choose_frame([2.0, 2.0 / AMBIGUITY_RATIO + 1e-9])[1] is None  # just beyond the ratio: resolved
    # a tie is broken by closeness (to the file's axes), among the candidates within the ratio only
    index, flag = choose_frame([2.0, 2.05, 9.0, 2.01], closeness=[0.0, 3.0, 5.0, 1.0])
    assert index == 1 and "nearest the file's own axes" in flag


def test_probe_axes_in_a_card_grid():
    grid = ModelGrid.from_dict({"shape_ijk": [8, 8, 8], "spacing_mm": 2.0, "axes": "probe"})
    assert grid.in_probe_frame and grid.to_dict()["axes"] == "PROBE" and "probe" in grid.to_dict()["orientation"]
    volume = VolumeGeometry((4, 4, 4), np.ones(3), np.zeros(3), PROBE)
    np.testing.assert_array_equal(grid.frame_for(volume), PROBE)  # from the geometry alone: the volume's axes
    with pytest.raises(ValueError, match="'probe' for a US grid"):
        ModelGrid.from_dict({"shape_ijk": [8, 8, 8], "spacing_mm": 2.0, "axes": "PRB"})


def test_a_volume_without_a_fan_is_detected_in_its_own_axes_and_flagged():
    array, geometry = _fan_volume("end-fire", np.eye(3), (2.0, 2.0, 2.0))
    filled = np.where(array > 0, array, 30.0).astype(np.float32)  # no zero background: no fan to find
    assert candidate_frames(filled, geometry) is None
    detection = open_detector(load_card(default_model_card("us"))).detect_array(filled, geometry)
    assert FLAG_NO_FAN in detection.flags


def test_fan_centre_is_the_centre_of_its_bounding_box_along_the_frame():
    """Points filling a box of known extent along a rotated frame: the centre is exact, and points inside the box
    change nothing."""
    lo, hi = np.array([-3.0, 5.0, -20.0]), np.array([9.0, 65.0, 12.0])
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    inside = np.random.default_rng(2).uniform(lo, hi, (300, 3))
    offset = np.array([4.0, -7.0, 30.0])
    points = np.vstack([corners, inside]) @ PROBE.T + offset  # box coordinates -> RAS
    np.testing.assert_allclose(fan_centre_ras(points, PROBE), PROBE @ ((lo + hi) / 2.0) + offset, atol=1e-9)


@pytest.mark.parametrize("kind", ["end-fire", "side-fire"])
def test_the_fan_centre_does_not_move_when_the_field_of_view_grows(kind):
    """The same fan in a box grown on two sides (zero outside the fan, as a converter's larger box): the same fan
    voxels at the same places, so the same centre; on a rotated, anisotropic, left-handed grid."""
    direction = Rotation.from_euler("zyx", [15.0, 30.0, -20.0], degrees=True).as_matrix() @ np.diag([1, -1, 1])
    array, geometry = _fan_volume(kind, direction, (1.5, 1.2, 1.0))
    grown = np.pad(array, ((0, 25), (12, 0), (0, 0)))  # k after, j before
    origin = geometry.origin_ras - direction @ np.array([0.0, 12 * 1.2, 0.0])
    grown_geometry = VolumeGeometry(grown.shape[::-1], geometry.spacing, origin, direction)
    frame = candidate_frames(array, geometry)[0]
    centre = fan_centre_ras(fan_corner_candidates_ras(array, geometry), frame)
    grown_centre = fan_centre_ras(fan_corner_candidates_ras(grown, grown_geometry), frame)
    np.testing.assert_allclose(grown_centre, centre, atol=1e-9)
    volume_centre = geometry.ijk_to_ras_points((np.array(geometry.size_ijk) - 1) / 2.0)
    grown_volume_centre = grown_geometry.ijk_to_ras_points((np.array(grown_geometry.size_ijk) - 1) / 2.0)
    assert np.linalg.norm(grown_volume_centre - volume_centre) > 10.0  # the volume's centre did move
