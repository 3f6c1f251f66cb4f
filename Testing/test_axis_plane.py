"""The posterior median moved toward the axis plane (detection/axis_plane.py): exact values on an oblique gland
axis, the degenerate cases, the card setting and the command, and the two-stage runtime against the step applied
by hand on an oblique, anisotropic, left-handed volume geometry (the plane's normal comes from the volume's first
index axis in RAS)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from LandmarkInitLib.cli import EXIT_OK, main
from LandmarkInitLib.detection.axis_plane import axis_plane_normal, shrink_posterior_median_to_axis_plane
from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.model_card import ModelCardError, load_card
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.resources import models_dir, sample_case_dir
from LandmarkInitResearch.training.two_stage_card import write_two_stage_card

# apex -> bladder neck along u; the lateral (first index) direction oblique to it
U = np.array([2.0, -1.0, 2.0]) / 3.0
LATERAL = np.array([3.0, 4.0, 0.0]) / 5.0
APEX = np.array([10.0, -20.0, 30.0])


def _frame():
    n = LATERAL - (LATERAL @ U) * U
    n /= np.linalg.norm(n)
    return n, np.cross(U, n)


def test_axis_plane_shrink_exact_values():
    n, m = _frame()
    np.testing.assert_allclose(axis_plane_normal(np.array([APEX, APEX + 36 * U, APEX]), LATERAL), n, atol=1e-12)
    # posterior median 18 mm up the axis, 12 mm behind it (in the plane), 3 mm off the plane
    points = np.array([APEX, APEX + 36.0 * U, APEX + 18.0 * U + 12.0 * m + 3.0 * n])
    original = points.copy()
    on_plane = shrink_posterior_median_to_axis_plane(points, LATERAL, 1.0)
    np.testing.assert_allclose(on_plane[2], APEX + 18.0 * U + 12.0 * m, atol=1e-12)
    np.testing.assert_allclose(
        shrink_posterior_median_to_axis_plane(points, LATERAL, 0.25)[2],
        APEX + 18.0 * U + 12.0 * m + 2.25 * n,
        atol=1e-12,
    )
    # the lateral direction's sign and length do not matter; apex and bladder neck never move
    np.testing.assert_allclose(shrink_posterior_median_to_axis_plane(points, -7.0 * LATERAL, 1.0), on_plane, atol=1e-12)
    np.testing.assert_array_equal(on_plane[:2], points[:2])
    np.testing.assert_array_equal(shrink_posterior_median_to_axis_plane(points, LATERAL, 0.0), original)
    np.testing.assert_array_equal(points, original)  # the input is not modified
    with pytest.raises(ValueError, match="between 0 and 1"):
        shrink_posterior_median_to_axis_plane(points, LATERAL, 1.5)


def test_axis_plane_undefined_leaves_the_points():
    along_lateral = np.array([APEX, APEX + 30.0 * LATERAL, APEX + [0.0, 0.0, 9.0]])
    assert axis_plane_normal(along_lateral, LATERAL) is None
    np.testing.assert_array_equal(shrink_posterior_median_to_axis_plane(along_lateral, LATERAL, 1.0), along_lateral)
    collapsed = np.array([APEX, APEX, APEX + [1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(shrink_posterior_median_to_axis_plane(collapsed, LATERAL, 1.0), collapsed)


def _us_stages(out, axis_plane_weight):
    shipped = load_card(models_dir() / "us_landmarks.json")
    return write_two_stage_card(
        shipped.stage_card("global").path,
        [c.path for c in shipped.stage_cards("local")],
        out,
        iterations=1,
        postprocessing=[{"step": "mid_gland", "weight": 0.75}]
        + ([{"step": "axis_plane", "weight": axis_plane_weight}] if axis_plane_weight else []),
    )


def test_runtime_applies_the_step_along_the_grids_lateral_axis(tmp_path):
    """The step's lateral axis is the model grid's I axis: for the shipped US cards the probe's lateral axis,
    found from the fan (detection/probe_frame.py), not the volume's first index axis."""
    image = sitk.ReadImage(str(sample_case_dir() / "us.nrrd"))
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    # the sample array on an oblique, anisotropic, left-handed geometry
    direction = Rotation.from_euler("zyx", [30, -20, 10], degrees=True).as_matrix() @ np.diag([1.0, -1.0, 1.0])
    geometry = VolumeGeometry(
        tuple(reversed(array.shape)), np.array([0.8, 0.7, 0.9]), np.array([5, -9, 14.0]), direction
    )
    plain_detector = open_detector(_us_stages(tmp_path / "plain.json", 0.0))
    plain = plain_detector.detect_array(array, geometry)
    shrunk = open_detector(_us_stages(tmp_path / "shrunk.json", 0.4)).detect_array(array, geometry)
    lateral = plain_detector.global_stage.detect_in_probe_frame(array, geometry)[1][:, 0]
    by_hand = shrink_posterior_median_to_axis_plane(plain.points_ras, lateral, 0.4)
    np.testing.assert_allclose(shrunk.points_ras, by_hand, atol=1e-6)
    assert np.linalg.norm(shrunk.points_ras[2] - plain.points_ras[2]) > 1e-3  # the step did something
    wrong_axis = shrink_posterior_median_to_axis_plane(plain.points_ras, direction[:, 1], 0.4)
    assert np.linalg.norm(wrong_axis[2] - shrunk.points_ras[2]) > 1e-3  # and it is the grid's axis that counts


def test_axis_plane_weight_in_the_card_and_the_command(tmp_path):
    card = load_card(_us_stages(tmp_path / "c.json", 0.2))
    assert card.postprocessing[1] == {"step": "axis_plane", "weight": 0.2}
    assert "toward the plane through" in card.data["description"]
    with pytest.raises(ModelCardError, match=r"step 2 \(axis_plane\): must be a number between 0 and 1, not 1.5"):
        _us_stages(tmp_path / "e.json", 1.5)
    bad = json.loads(card.path.read_text())
    bad["postprocessing"][1]["weight"] = "half"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ModelCardError, match="must be a number between 0 and 1, not 'half'"):
        load_card(tmp_path / "bad.json")
    models = models_dir()
    out = tmp_path / "cli.json"
    args = ["two-stage", "--global", str(models / "us_landmarks_g2l-global.json")]
    args += ["--local", str(models / "us_landmarks_g2l-local.json"), "--output", str(out)]
    assert main([*args, "--step", "axis_plane:weight=0.3"]) == EXIT_OK
    assert load_card(out).postprocessing == [{"step": "axis_plane", "weight": 0.3}]
