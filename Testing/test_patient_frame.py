"""Detection in the patient's frame (detection/model_grid.py): exact values of the grid axes a card names, the same
points whatever the storage order of the same physical MR image, the old volume-axes cards unchanged, and the flag
for a volume whose orientation cannot be known."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from LandmarkInitLib.detection.detectors import FLAG_NO_ORIENTATION, open_detector
from LandmarkInitLib.detection.model_card import ModelCardError, load_card
from LandmarkInitLib.detection.model_grid import ModelGrid, patient_frame
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.resources import default_model_card, sample_case_dir
from LandmarkInitResearch.evaluation.reacquire import (
    FIELD_OF_VIEW_EXTENSIONS,
    field_of_view_name,
    larger_field_of_view,
    permute_flip,
)

DIRECTION = Rotation.from_euler("zyx", [30, -20, 10], degrees=True).as_matrix() @ np.diag([-1.0, 1.0, 1.0])
OBLIQUE = VolumeGeometry((11, 7, 5), np.array([0.7, 1.3, 2.5]), np.array([10.0, -30.0, 5.0]), DIRECTION)


def test_patient_frame_exact_values():
    np.testing.assert_array_equal(patient_frame("LPS"), np.diag([-1.0, -1.0, 1.0]))
    np.testing.assert_array_equal(patient_frame("asr"), [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    for bad in ("LPX", "LLS", "LP", "RAI S"):
        with pytest.raises(ValueError, match="grid axes"):
            patient_frame(bad)


def test_a_patient_frame_grid_ignores_the_volume_axes():
    grid = ModelGrid((4, 6, 2), 1.5, "LPS")
    placed = grid.geometry_for(OBLIQUE)
    np.testing.assert_array_equal(placed.direction_ras, np.diag([-1.0, -1.0, 1.0]))
    centre = OBLIQUE.ijk_to_ras_points([5.0, 3.0, 2.0])
    # voxel (0, 0, 0) of the grid: half the grid (1.5, 2.5, 0.5 voxels of 1.5 mm) to the right, anterior, inferior
    np.testing.assert_allclose(placed.origin_ras, centre + [2.25, 3.75, -0.75], atol=1e-12)
    # a card without axes keeps the volume's own axes (cards made before the patient frame)
    np.testing.assert_array_equal(ModelGrid((4, 6, 2), 1.5).geometry_for(OBLIQUE).direction_ras, DIRECTION)
    assert ModelGrid.from_dict(grid.to_dict()) == grid and "axes" not in ModelGrid((4, 6, 2), 1.5).to_dict()


def test_a_card_with_bad_axes_is_refused(tmp_path):
    card = json.loads((default_model_card("mr").parent / "mr_landmarks_g2l-global.json").read_text())
    card["input_grid"]["axes"] = "LPQ"
    (tmp_path / "bad.json").write_text(json.dumps(card))
    with pytest.raises(ModelCardError, match="input_grid cannot be used .*three letters"):
        load_card(tmp_path / "bad.json")


def test_shipped_mr_detector_gives_the_same_points_however_the_image_is_stored():
    image = sitk.ReadImage(str(sample_case_dir() / "mr.nrrd"))
    detector = open_detector(default_model_card("mr"))
    reference = detector.detect_image(image).points_ras
    for order, flips in itertools.islice(
        zip(itertools.permutations(range(3)), itertools.cycle([(True, False, False), (False, True, True)])), 1, None
    ):
        moved = detector.detect_image(permute_flip(image, order, flips)).points_ras  # the same physical image
        np.testing.assert_allclose(moved, reference, atol=1e-3, err_msg=f"axes {order}, flips {flips}")


def test_shipped_mr_detector_finds_the_gland_in_a_larger_field_of_view():
    """The same MR voxels in a field of view 40 mm larger on one side (the gland off the volume's centre): the
    shipped card's further global passes (stages.global.passes) centre the grid on the gland, so the points stay
    within 1.5 mm (0.9 mm on this case; one pass moves them by up to 24 mm)."""
    card = load_card(default_model_card("mr"))
    assert card.data["stages"]["global"]["passes"] == 3
    image = sitk.ReadImage(str(sample_case_dir() / "mr.nrrd"))
    detector = open_detector(card)
    reference = detector.detect_image(image).points_ras
    for axis, after in FIELD_OF_VIEW_EXTENSIONS:
        moved = detector.detect_image(larger_field_of_view(image, axis, after)).points_ras
        distance = np.linalg.norm(moved - reference, axis=1)
        assert distance.max() < 1.5, (field_of_view_name(axis, after), distance)


def test_a_volume_without_geometry_is_flagged():
    image = sitk.ReadImage(str(sample_case_dir() / "mr.nrrd"))
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    detector = open_detector(default_model_card("mr"))
    bare = VolumeGeometry(tuple(reversed(array.shape)), np.ones(3), np.zeros(3), np.diag([-1.0, -1.0, 1.0]))
    assert FLAG_NO_ORIENTATION in detector.detect_array(array, bare).flags
    assert FLAG_NO_ORIENTATION not in detector.detect_array(array, VolumeGeometry.from_sitk_image(image)).flags


def test_a_two_stage_card_whose_stages_use_different_axes_is_refused(tmp_path):
    models = default_model_card("mr").parent
    for f in [models / "mr_landmarks.json", *models.glob("mr_landmarks_g2l-*")]:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    local = json.loads((tmp_path / "mr_landmarks_g2l-local.json").read_text())
    del local["input_grid"]["axes"]
    (tmp_path / "mr_landmarks_g2l-local.json").write_text(json.dumps(local))
    with pytest.raises(ModelCardError, match=r"different axes \(LPS, None\)"):
        open_detector(tmp_path / "mr_landmarks.json")
