"""Real gland shapes in the phantom (issue 22, "widen the anatomy"): a mask's normalised radial surface, read in the
patient's frame whatever the storage; a phantom case built on it; the command's refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.cli import EXIT_BAD_INPUT, main
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitResearch.phantom.anatomy import Anatomy, sample_parameters
from LandmarkInitResearch.phantom.case import PhantomOptions, generate_case
from LandmarkInitResearch.phantom.gland_shapes import (
    N_PHI,
    N_THETA,
    GlandShape,
    directions,
    read_gland_shape,
    shape_from_mask,
)
from test_mask_landmarks import ellipsoid, reoriented, write_mask

# Flipped R and A, anisotropic, 1 mm in plane and 2 mm slices: R 24..-24, A 20..-20, S -24..24
GRID = VolumeGeometry((49, 41, 25), np.array([1.0, 1.0, 2.0]), np.array([24.0, 20.0, -24.0]), np.diag([-1.0, -1, 1]))
SEMI = np.array([20.0, 14.0, 18.0])


def lobed(geometry):
    """An ellipsoid with a lobe on the patient's right-anterior side (not symmetric in any axis)."""
    lobe = ellipsoid(geometry, np.array([12.0, 8.0, 0.0]), np.array([10.0, 8.0, 8.0]))
    return np.maximum(ellipsoid(geometry, np.zeros(3), SEMI), lobe)


def test_an_ellipsoid_is_the_unit_sphere_once_normalised_to_its_half_extents():
    shape = shape_from_mask(ellipsoid(GRID, np.zeros(3), SEMI), GRID, "ellipsoid")
    assert shape.radii.shape == directions().shape[:2]
    # round within voxels (unnormalised it would be 20/14 = 1.43 times longer in R than in A): the smoothing erodes
    # the single voxels at the tips by up to a 2 mm slice's half
    assert shape.radii.max() / shape.radii.min() < 1.1
    np.testing.assert_allclose(shape.radii, 1.0, atol=0.11)


def test_radius_in_mm_scales_the_normalised_shape_to_the_case_semi_axes_exactly():
    sphere = GlandShape("sphere", np.ones(directions().shape[:2]))
    u = np.array([[1.0, 0, 0], [0, -1.0, 0], [0, 0, 1.0], [0.6, 0.0, 0.8]])
    a, b, c = 20.0, 15.0, 18.0
    expected = [a, b, c, 1.0 / np.hypot(0.6 / a, 0.8 / c)]  # the ellipsoid x^2/a^2 + y^2/b^2 + z^2/c^2 = 1
    np.testing.assert_allclose(sphere.radius(u, (a, b, c)), expected, rtol=1e-12)


def test_the_direction_grid_interpolates_exactly_at_its_centres_and_smoothly_across_seam_and_poles():
    rng = np.random.default_rng(1)
    shape = GlandShape("random", rng.uniform(0.5, 1.5, directions().shape[:2]))
    np.testing.assert_allclose(shape.radius_normalised(directions().reshape(-1, 3)), shape.radii.ravel(), atol=1e-12)
    # across the azimuth seam (-pi = pi) the radius is the mean of the two edge columns, from either side
    t = (np.arange(N_THETA) + 0.5) * np.pi / N_THETA
    for side in (np.pi - 1e-12, -np.pi + 1e-12):
        seam = np.stack([np.sin(t) * np.cos(side), np.sin(t) * np.sin(side), np.cos(t)], axis=1)
        np.testing.assert_allclose(shape.radius_normalised(seam), 0.5 * (shape.radii[:, 0] + shape.radii[:, -1]))
    # through a pole: approached from azimuth phi or from phi + pi (the same line), the radius is the same
    phi = (np.arange(N_PHI // 2) + 0.3) * 2.0 * np.pi / N_PHI - np.pi
    for z in (1.0, -1.0):
        ends = [np.stack([1e-9 * np.cos(a), 1e-9 * np.sin(a), np.full_like(a, z)], axis=1) for a in (phi, phi + np.pi)]
        np.testing.assert_allclose(shape.radius_normalised(ends[0]), shape.radius_normalised(ends[1]), atol=1e-6)


def test_the_apex_is_the_urethra_line_s_last_exit_when_a_real_shape_makes_it_leave_and_re_enter():
    theta = np.degrees(np.arccos(directions()[..., 2]))
    notched = GlandShape("notched", np.where((theta > 140) & (theta < 170), 0.45, 1.0))  # a waist above the apex
    for seed in range(5):
        params = sample_parameters(np.random.default_rng(seed), gland_shape=notched)
        gland = Anatomy(params, notched).gland
        apex = gland.exit_height(-1.0)
        below = gland.urethra_centre(np.arange(-3.0 * gland.c, apex - 1e-3, 0.05))
        assert (gland.sdf(below) > 0).all() and abs(gland.sdf(gland.urethra_centre(np.array([apex])))[0]) < 1e-6
    # seed 1's line leaves at the waist (about -6 mm) and comes back in: its apex is the lower, final exit
    gland = Anatomy(sample_parameters(np.random.default_rng(1), gland_shape=notched), notched).gland
    assert gland.exit_height(-1.0) < -0.9 * gland.c


@pytest.mark.parametrize("perm, flips", [((0, 1, 2), (False, False, False)), ((1, 2, 0), (True, False, True))])
def test_the_shape_is_read_in_ras_whatever_the_storage(perm, flips):
    mask, geometry = reoriented(lobed(GRID), GRID, perm, flips)
    shape = shape_from_mask(mask, geometry, "lobed")
    reference = shape_from_mask(lobed(GRID), GRID, "lobed")
    np.testing.assert_allclose(shape.radii, reference.radii, atol=0.02)
    # the lobe is right-anterior: the shape reaches farther towards +R+A than towards -R-A (and than to +R-A)
    toward = shape.radius_normalised(np.array([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0], [1.0, -1.0, 0.0]]) / np.sqrt(2))
    assert toward[0] > toward[1] + 0.15 and toward[0] > toward[2] + 0.15


def test_a_phantom_case_on_a_real_shape_keeps_its_landmarks_on_that_gland(tmp_path):
    (tmp_path / "lobed").mkdir()
    path = write_mask(tmp_path / "lobed" / "gland.nii.gz", lobed(GRID), GRID)
    shape = read_gland_shape(str(path))
    assert shape.name == "lobed"
    rng = np.random.default_rng(5)
    params = sample_parameters(rng, gland_shape=shape)
    anatomy = Anatomy(params, shape)
    assert anatomy.describe()["gland_shape"] == "lobed"
    lm = np.array([anatomy.landmarks[label] for label in LANDMARK_LABELS])
    np.testing.assert_allclose(anatomy.gland_sdf(lm), 0.0, atol=1e-5)  # on the real-shaped surface
    # the gland keeps the case's size: its extent along the gland frame's x is the drawn 2a
    q = np.array([[1.0, 0, 0], [-1.0, 0, 0]])
    width = anatomy.gland.radius(q).sum()
    assert 0.8 * 2 * params.gland_semi_axes[0] < width < 1.2 * 2 * params.gland_semi_axes[0]
    with pytest.raises(ValueError, match="gland shape"):
        Anatomy(params)  # parameters of a real-shaped gland without the shape


def test_gland_mask_fraction_draws_shapes_from_its_own_stream(tmp_path):
    (tmp_path / "lobed").mkdir()
    path = str(write_mask(tmp_path / "lobed" / "gland.nii.gz", lobed(GRID), GRID))
    plain = generate_case(7, 3)
    shaped = generate_case(7, 3, PhantomOptions(gland_mask_fraction=1.0, gland_masks=[path]))
    assert "gland_shape" not in plain.meta["anatomy"] and shaped.meta["anatomy"]["gland_shape"] == "lobed"
    assert not np.array_equal(plain.mr_gland, shaped.mr_gland)
    # the rest of the draws are the case's own: same MR field of view and US probe settings
    assert plain.meta["mr"] == shaped.meta["mr"] and plain.meta["us"] == shaped.meta["us"]
    # a fraction of 0 draws nothing, as mr_detector.json's data_train passes the mask options with the shapes off
    none = generate_case(7, 3, PhantomOptions(gland_mask_fraction=0.0, gland_masks=[path]))
    np.testing.assert_array_equal(none.mr_image, plain.mr_image)
    np.testing.assert_array_equal(none.us_image, plain.us_image)


def promise12_like(root, cases, array=None, geometry=GRID):
    for case in cases:
        (root / case).mkdir(parents=True)
        write_mask(root / case / "gland.nii.gz", lobed(GRID) if array is None else array, geometry)
    return root


def test_command_uses_only_the_named_folds_and_records_them(tmp_path, capsys):
    split = {"held_out_test": ["t0"], "cross_validation": [["a0", "a1"], ["b0"]]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    data = promise12_like(tmp_path / "p12", ["t0", "a0", "a1", "b0"])
    out = tmp_path / "out"
    argv = ["phantom", "-o", str(out), "--count", "1", "--seed", "4", "--gland-masks", str(data)]
    argv += ["--gland-mask-split", str(tmp_path / "split.json"), "--gland-mask-fraction", "1", "--quiet"]
    assert main([*argv, "--gland-mask-folds", "0"]) == 0
    options = json.loads((out / "dataset.json").read_text())["options"]
    assert options["gland_mask_fraction"] == 1.0
    assert options["gland_masks"] == [str((data / c / "gland.nii.gz").resolve()) for c in ("a0", "a1")]
    assert json.loads((out / "case_0000" / "case.json").read_text())["anatomy"]["gland_shape"] in ("a0", "a1")
    capsys.readouterr()


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "--gland-masks needs --gland-mask-folds K"),
        (["--gland-mask-folds", "2"], "real-MR fold(s) 2 do not exist"),
        (["--gland-mask-folds", "1", "--gland-mask-fraction", "2"], "--gland-mask-fraction must be between 0 and 1"),
    ],
)
def test_command_refuses_what_it_cannot_use(tmp_path, capsys, extra, message):
    split = {"held_out_test": ["t0"], "cross_validation": [["a0"], ["b0"]]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    data = promise12_like(tmp_path / "p12", ["t0", "a0", "b0"])
    argv = ["phantom", "-o", str(tmp_path / "out"), "--gland-masks", str(data)]
    assert main([*argv, "--gland-mask-split", str(tmp_path / "split.json"), *extra]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_missing_or_unusable_mask_is_named(tmp_path, capsys):
    split = {"held_out_test": [], "cross_validation": [["a0"], ["e0"]]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    data = promise12_like(tmp_path / "p12", ["e0"], array=np.zeros(GRID.array_shape, np.uint8))
    argv = ["phantom", "-o", str(tmp_path / "out"), "--gland-masks", str(data), "--gland-mask-fraction", "1"]
    argv += ["--gland-mask-split", str(tmp_path / "split.json"), "--quiet"]
    assert main([*argv, "--gland-mask-folds", "0"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no gland mask" in err and str((data / "a0" / "gland.nii.gz").resolve()) in err
    assert main([*argv, "--gland-mask-folds", "1"]) == EXIT_BAD_INPUT
    assert "is empty" in capsys.readouterr().err


def test_a_mask_file_written_in_lps_keeps_its_lobe_on_the_patient_right(tmp_path):
    (tmp_path / "x").mkdir()
    path = write_mask(tmp_path / "x" / "gland.nii.gz", lobed(GRID), GRID)
    assert sitk.ReadImage(str(path)).GetDirection()[0] == 1.0  # LPS +x (patient left) = the grid's RAS -x
    diagonals = np.array([[1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]]) / np.sqrt(2)
    right_anterior, left_posterior = read_gland_shape(str(path)).radius_normalised(diagonals)
    assert right_anterior > left_posterior + 0.15


def test_a_committed_held_out_case_never_shapes_a_phantom_even_through_another_split(tmp_path, capsys):
    from LandmarkInitResearch.evaluation.real_mr import load_split

    held_out = load_split()["held_out_test"][0]
    split = {"held_out_test": [], "cross_validation": [["a0", held_out]]}
    (tmp_path / "split.json").write_text(json.dumps(split))
    data = promise12_like(tmp_path / "p12", ["a0", held_out])
    argv = ["phantom", "-o", str(tmp_path / "out"), "--gland-masks", str(data), "--gland-mask-folds", "0"]
    assert main([*argv, "--gland-mask-split", str(tmp_path / "split.json")]) == EXIT_BAD_INPUT
    assert f"{held_out} belong(s) to the held-out real test set" in capsys.readouterr().err


def test_a_card_says_when_phantom_glands_had_real_shapes():
    from LandmarkInitResearch.training.export import training_data

    shaped = {"options": {"gland_mask_fraction": 0.5, "gland_masks": ["/data/train01/gland.nii.gz"]}}
    assert "real expert gland masks" in training_data({"data_description": [{"options": {}}, shaped]})["data"]
    assert "real expert" not in training_data({"data_description": {"options": {"gland_mask_fraction": 0.0}}})["data"]


def test_mask_options_without_the_masks_folder_are_refused(tmp_path, capsys):
    for extra in (["--gland-mask-folds", "0"], ["--gland-mask-split", str(tmp_path / "split.json")]):
        assert main(["phantom", "-o", str(tmp_path / "out"), *extra]) == EXIT_BAD_INPUT
        assert "need --gland-masks DIR" in capsys.readouterr().err
