"""Test-time mirror averaging (detection/mirror_average.py): exact values of the index-space mirror on an
oblique, anisotropic, left-handed geometry, the pooled spread, and the shipped networks run through it: the
averaged detector is exactly mirror-equivariant and equals the plain detector run by hand on both views."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from LandmarkInitLib.cli import EXIT_OK, main
from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.mirror_average import Reflection, combine_views
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.detection.model_grid import ModelGrid
from LandmarkInitLib.detection.preprocess import prepare_input
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.resources import models_dir, sample_case_dir
from LandmarkInitResearch.training.two_stage_card import write_two_stage_card

DIRECTION = Rotation.from_euler("zyx", [30, -20, 10], degrees=True).as_matrix() @ np.diag([-1.0, 1.0, 1.0])
FLIPPED = VolumeGeometry((11, 7, 5), np.array([0.7, 1.3, 2.5]), np.array([10.0, -30.0, 5.0]), DIRECTION)


def _flip_i(array):
    """The numpy volume [k, j, i] mirrored along I: the anatomy mirrored, the geometry kept."""
    return np.ascontiguousarray(array[:, :, ::-1])


def test_reflection_about_the_first_index_axis_maps_voxel_centres_exactly():
    # through the centre, normal I: voxel (2, 3, 4) <-> voxel (11 - 1 - 2, 3, 4) = (8, 3, 4)
    mirror = Reflection.about_centre(FLIPPED, -3.0 * DIRECTION[:, 0])  # any length or sign of the normal
    found = FLIPPED.ijk_to_ras_points([[2.0, 3.0, 4.0], [5.0, 0.0, 0.0], [-0.5, 6.0, 1.25]])
    expected = FLIPPED.ijk_to_ras_points([[8.0, 3.0, 4.0], [5.0, 0.0, 0.0], [10.5, 6.0, 1.25]])
    np.testing.assert_allclose(mirror.points(found), expected, atol=1e-12)
    np.testing.assert_allclose(mirror.points(mirror.points(found)), found, atol=1e-12)  # its own inverse
    np.testing.assert_allclose(found[0] - expected[0], -6 * 0.7 * DIRECTION[:, 0], atol=1e-12)
    # the mirror image's geometry puts every voxel of the same array at its reflected position
    reflected = mirror.geometry(FLIPPED)
    np.testing.assert_allclose(reflected.ijk_to_ras_points([[2.0, 3.0, 4.0]]), expected[:1], atol=1e-12)
    assert np.linalg.det(reflected.direction_ras) == pytest.approx(-np.linalg.det(FLIPPED.direction_ras))


def test_reflection_about_the_patients_left_right_plane():
    mirror = Reflection.about_centre(FLIPPED, [1.0, 0.0, 0.0])
    centre = FLIPPED.ijk_to_ras_points([5.0, 3.0, 2.0])
    point = centre + np.array([4.0, -2.0, 7.5])
    np.testing.assert_allclose(mirror.points(point), centre + np.array([-4.0, -2.0, 7.5]), atol=1e-12)


def test_the_network_sees_the_mirror_image_in_the_original_frame():
    """A reflected geometry resampled on the model grid in the original volume's frame gives the original's grid
    array mirrored along the grid's I axis: what the mirror view feeds the networks, for both frames."""
    rng = np.random.default_rng(0)
    array = rng.random(FLIPPED.array_shape).astype(np.float32) * 100
    image = sitk.GetImageFromArray(array)
    FLIPPED.apply_to_sitk_image(image)
    for axes in (None, "LPS"):
        grid = ModelGrid((6, 4, 4), 1.1, axes)
        frame = grid.frame_for(FLIPPED)
        mirror = Reflection.about_centre(FLIPPED, grid.lateral_direction_ras(frame))
        reflected = sitk.GetImageFromArray(array)
        mirror.geometry(FLIPPED).apply_to_sitk_image(reflected)
        plain, _ = prepare_input(image, FLIPPED, grid, "mr", frame=frame)
        seen, _ = prepare_input(reflected, mirror.geometry(FLIPPED), grid, "mr", frame=frame)
        np.testing.assert_allclose(seen, plain[..., ::-1], atol=1e-5)
        assert np.abs(seen - plain).max() > 0.1  # not symmetric by accident


def test_combine_views_exact_values():
    points = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], [[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    spreads = np.array([[1.0, 2.0], [3.0, 2.0]])
    mean, pooled = combine_views(points, spreads)
    np.testing.assert_allclose(mean, [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # RMS of the spreads (sqrt 5, 2) and the views' distance to the mean (1, 0)
    np.testing.assert_allclose(pooled, [np.sqrt(5.0 + 1.0), 2.0])


def _in_index_axes(card, folder):
    """A copy of a stage card (weights linked) whose grid follows the volume's index axes: the mirror machinery is
    tested on its own, exactly, without the probe frame's estimate (detection/probe_frame.py) in between."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(card.path.read_text(encoding="utf-8"))
    data["input_grid"].pop("axes", None)
    for f in data["files"].values():
        target = folder / f["path"]
        if not target.exists():
            target.symlink_to(card.path.parent / f["path"])
    out = folder / card.path.name
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


def _shipped_us_stages(out, mirror_average: bool):
    """The shipped US two-stage detector written again in the volume's index axes, with mirror averaging on or
    off."""
    shipped = load_card(models_dir() / "us_landmarks.json")
    stages = out.parent / "stages"
    return write_two_stage_card(
        _in_index_axes(shipped.stage_card("global"), stages),
        [_in_index_axes(c, stages) for c in shipped.stage_cards("local")],
        out,
        iterations=int(shipped.data["stages"]["local"]["iterations"]),
        postprocessing=shipped.postprocessing
        if mirror_average
        else [s for s in shipped.postprocessing if s["step"] != "mirror_average"],
    )


@pytest.fixture(scope="module")
def mirror_card(tmp_path_factory):
    return _shipped_us_stages(tmp_path_factory.mktemp("mirror") / "us_mirror.json", True)


@pytest.fixture(scope="module")
def plain_card(tmp_path_factory):
    return _shipped_us_stages(tmp_path_factory.mktemp("plain") / "us_plain.json", False)


def _sample_us():
    image = sitk.ReadImage(str(sample_case_dir() / "us.nrrd"))
    return sitk.GetArrayFromImage(image).astype(np.float32), VolumeGeometry.from_sitk_image(image)


def test_mirror_averaged_detector_is_mirror_equivariant(mirror_card, plain_card):
    array, geometry = _sample_us()
    plain = open_detector(plain_card)
    averaged = open_detector(mirror_card)
    assert averaged.mirror_average and not plain.mirror_average
    mirror = Reflection.about_centre(geometry, geometry.direction_ras[:, 0])  # the US grid: volume index axes
    on_volume = averaged.detect_array(array, geometry)
    on_mirror = averaged.detect_array(_flip_i(array), geometry)
    np.testing.assert_allclose(mirror.points(on_mirror.points_ras), on_volume.points_ras, atol=1e-6)
    np.testing.assert_allclose(on_mirror.spread_mm, on_volume.spread_mm, atol=1e-6)
    # the plain networks are not: the test would catch the averaging being skipped
    a, b = plain.detect_array(array, geometry), plain.detect_array(_flip_i(array), geometry)
    assert np.abs(mirror.points(b.points_ras) - a.points_ras).max() > 1e-2


def test_mirror_averaged_detector_matches_both_views_run_by_hand(mirror_card, plain_card):
    array, geometry = _sample_us()
    plain = open_detector(plain_card)
    detection = open_detector(mirror_card).detect_array(array, geometry)
    mirror = Reflection.about_centre(geometry, geometry.direction_ras[:, 0])
    a, b = plain.detect_array(array, geometry), plain.detect_array(_flip_i(array), geometry)
    b_back = mirror.points(b.points_ras)
    np.testing.assert_allclose(detection.points_ras, (a.points_ras + b_back) / 2, atol=1e-6)
    half_gap2 = np.sum((a.points_ras - (a.points_ras + b_back) / 2) ** 2, axis=1)
    np.testing.assert_allclose(
        detection.spread_mm, np.sqrt((a.spread_mm**2 + b.spread_mm**2) / 2 + half_gap2), atol=1e-6
    )
    np.testing.assert_allclose(
        detection.global_points_ras,
        (a.global_points_ras + mirror.points(b.global_points_ras)) / 2,
        atol=1e-6,
    )
    assert detection.seconds["total"] >= detection.seconds["global"] > 0


def test_mirror_average_in_the_card_and_the_command(mirror_card, tmp_path):
    doc = load_card(mirror_card)
    assert doc.postprocessing[-1] == {"step": "mirror_average"} and "mirror image" in doc.data["description"]
    assert load_card(models_dir() / "mr_landmarks.json").mirror_average is True  # the shipped detectors use it
    assert load_card(models_dir() / "mr_landmarks_g2l-global.json").mirror_average is False  # not a two-stage card
    models = models_dir()
    out = tmp_path / "cli.json"
    args = ["two-stage", "--global", str(models / "us_landmarks_g2l-global.json")]
    args += ["--local", str(models / "us_landmarks_g2l-local.json"), "--output", str(out), "--step", "mirror_average"]
    assert main(args) == EXIT_OK
    assert load_card(out).mirror_average
