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
from LandmarkInitLib.detection.mirror_average import combine_views, mirror_array, unmirror_points
from LandmarkInitLib.detection.model_card import ModelCardError, load_card
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.resources import models_dir, sample_case_dir
from LandmarkInitResearch.training.two_stage_card import write_two_stage_card

DIRECTION = Rotation.from_euler("zyx", [30, -20, 10], degrees=True).as_matrix() @ np.diag([-1.0, 1.0, 1.0])
FLIPPED = VolumeGeometry((11, 7, 5), np.array([0.7, 1.3, 2.5]), np.array([10.0, -30.0, 5.0]), DIRECTION)


def test_mirror_maps_voxel_centres_exactly():
    # voxel (2, 3, 4) of the mirror image holds voxel (11 - 1 - 2, 3, 4) = (8, 3, 4) of the original
    found = FLIPPED.ijk_to_ras_points([[2.0, 3.0, 4.0], [5.0, 0.0, 0.0], [-0.5, 6.0, 1.25]])
    expected = FLIPPED.ijk_to_ras_points([[8.0, 3.0, 4.0], [5.0, 0.0, 0.0], [10.5, 6.0, 1.25]])
    np.testing.assert_allclose(unmirror_points(found, FLIPPED), expected, atol=1e-12)
    # its own inverse, and it moves points only along the I direction (by whole voxels at voxel centres)
    np.testing.assert_allclose(unmirror_points(unmirror_points(found, FLIPPED), FLIPPED), found, atol=1e-12)
    np.testing.assert_allclose(found[0] - expected[0], -6 * 0.7 * DIRECTION[:, 0], atol=1e-12)


def test_mirrored_array_and_point_map_agree():
    array = np.zeros(FLIPPED.array_shape, dtype=np.float32)
    array[4, 3, 2] = 1.0  # [k, j, i]: voxel (2, 3, 4)
    mirrored = mirror_array(array)
    assert mirrored.flags["C_CONTIGUOUS"] and array[4, 3, 2] == 1.0  # the input is untouched
    k, j, i = np.argwhere(mirrored == 1.0)[0]
    assert (i, j, k) == (8, 3, 4)
    seen_in_mirror = FLIPPED.ijk_to_ras_points([[i, j, k]])
    np.testing.assert_allclose(unmirror_points(seen_in_mirror, FLIPPED), FLIPPED.ijk_to_ras_points([[2, 3, 4]]))


def test_combine_views_exact_values():
    points = np.array([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], [[2.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    spreads = np.array([[1.0, 2.0], [3.0, 2.0]])
    mean, pooled = combine_views(points, spreads)
    np.testing.assert_allclose(mean, [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # RMS of the spreads (sqrt 5, 2) and the views' distance to the mean (1, 0)
    np.testing.assert_allclose(pooled, [np.sqrt(5.0 + 1.0), 2.0])


def _shipped_us_stages(out, mirror_average: bool):
    """The shipped US two-stage detector written again, with mirror averaging on or off."""
    shipped = load_card(models_dir() / "us_landmarks.json")
    return write_two_stage_card(
        shipped.stage_card("global").path,
        [c.path for c in shipped.stage_cards("local")],
        out,
        iterations=int(shipped.data["stages"]["local"]["iterations"]),
        mid_gland_weight=shipped.mid_gland_weight,
        axis_plane_weight=shipped.axis_plane_weight,
        mirror_average=mirror_average,
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
    on_volume = averaged.detect_array(array, geometry)
    on_mirror = averaged.detect_array(mirror_array(array), geometry)
    np.testing.assert_allclose(unmirror_points(on_mirror.points_ras, geometry), on_volume.points_ras, atol=1e-6)
    np.testing.assert_allclose(on_mirror.spread_mm, on_volume.spread_mm, atol=1e-6)
    # the plain networks are not: the test would catch the averaging being skipped
    a, b = plain.detect_array(array, geometry), plain.detect_array(mirror_array(array), geometry)
    assert np.abs(unmirror_points(b.points_ras, geometry) - a.points_ras).max() > 1e-2


def test_mirror_averaged_detector_matches_both_views_run_by_hand(mirror_card, plain_card):
    array, geometry = _sample_us()
    plain = open_detector(plain_card)
    detection = open_detector(mirror_card).detect_array(array, geometry)
    a, b = plain.detect_array(array, geometry), plain.detect_array(mirror_array(array), geometry)
    b_back = unmirror_points(b.points_ras, geometry)
    np.testing.assert_allclose(detection.points_ras, (a.points_ras + b_back) / 2, atol=1e-6)
    half_gap2 = np.sum((a.points_ras - (a.points_ras + b_back) / 2) ** 2, axis=1)
    np.testing.assert_allclose(
        detection.spread_mm, np.sqrt((a.spread_mm**2 + b.spread_mm**2) / 2 + half_gap2), atol=1e-6
    )
    np.testing.assert_allclose(
        detection.global_points_ras,
        (a.global_points_ras + unmirror_points(b.global_points_ras, geometry)) / 2,
        atol=1e-6,
    )
    assert detection.seconds["total"] >= detection.seconds["global"] > 0


def test_mirror_average_in_the_card_and_the_command(mirror_card, tmp_path):
    doc = load_card(mirror_card)
    assert doc.data["mirror_average"] is True and "mirror image" in doc.data["description"]
    assert load_card(models_dir() / "mr_landmarks.json").mirror_average is True  # the shipped detectors use it
    assert load_card(models_dir() / "mr_landmarks_g2l-global.json").mirror_average is False  # not a two-stage card
    bad = json.loads(mirror_card.read_text()) | {"mirror_average": "yes"}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ModelCardError, match="mirror_average must be true or false"):
        load_card(tmp_path / "bad.json")
    models = models_dir()
    out = tmp_path / "cli.json"
    args = ["two-stage", "--global", str(models / "us_landmarks_g2l-global.json")]
    args += ["--local", str(models / "us_landmarks_g2l-local.json"), "--output", str(out), "--mirror-average"]
    assert main(args) == EXIT_OK
    assert load_card(out).mirror_average
