"""Global-to-local localization (Noothout et al. 2020) and two-stage detection: exact values of the vote decoding
and of the patch geometry on anisotropic, flipped volumes, patches at volume borders, smoke training of the new
methods, and the two-stage runtime against its stages run by hand."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy.spatial.transform import Rotation

from LandmarkInitLib.detection.detectors import LandmarkDetector, LocalRefiner, TwoStageDetector, open_detector
from LandmarkInitLib.detection.mid_gland import pull_posterior_median_to_mid_gland
from LandmarkInitLib.detection.model_card import ModelCardError, load_card
from LandmarkInitLib.detection.model_grid import ModelGrid
from LandmarkInitLib.detection.preprocess import prepare_input, prepare_patches, sitk_image
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitResearch.training.export import export_run
from LandmarkInitResearch.training.patch_votes import cell_centres, decode_votes, presence_labels
from LandmarkInitResearch.training.train import TrainConfig, train
from LandmarkInitResearch.training.two_stage_card import write_two_stage_card

# An oblique, anisotropic, left-handed (flipped) volume geometry.
DIRECTION = Rotation.from_euler("zyx", [30, -20, 10], degrees=True).as_matrix() @ np.diag([1.0, -1.0, 1.0])
FLIPPED = VolumeGeometry((20, 14, 9), np.array([0.7, 1.3, 2.5]), np.array([10.0, -30.0, 5.0]), DIRECTION)


def test_decode_votes_exact_weighted_average():
    # two cells at x = 0 and x = 10 mm; their votes land at (1, 2, 3) and (5, 2, 3) with posteriors 0.75 and 0.25
    centres = torch.tensor([[0.0, 10.0], [0.0, 0.0], [0.0, 0.0]]).reshape(3, 1, 1, 2)
    displacement = torch.tensor([[1.0, -5.0], [2.0, 2.0], [3.0, 3.0]]).reshape(1, 1, 3, 1, 1, 2)
    logits = torch.logit(torch.tensor([0.75, 0.25])).reshape(1, 1, 1, 1, 2)
    estimate, spread = decode_votes(centres, displacement, logits)
    np.testing.assert_allclose(estimate.numpy()[0, 0], [0.75 * 1 + 0.25 * 5, 2.0, 3.0], rtol=1e-5)
    np.testing.assert_allclose(float(spread[0, 0]), np.sqrt(0.75 * 1.0**2 + 0.25 * 3.0**2), rtol=1e-4)
    # equal posteriors: the plain mean; one dominant posterior: its vote
    estimate, _ = decode_votes(centres, displacement, torch.zeros(1, 1, 1, 1, 2))
    np.testing.assert_allclose(estimate.numpy()[0, 0, 0], 3.0, rtol=1e-5)
    estimate, _ = decode_votes(centres, displacement, torch.tensor([-30.0, 30.0]).reshape(1, 1, 1, 1, 2))
    np.testing.assert_allclose(estimate.numpy()[0, 0], [5.0, 2.0, 3.0], atol=1e-5)


def test_cell_centres_exact_and_presence_labels():
    grid = ModelGrid((8, 4, 12), 2.0)
    # axis 0: 8 voxels at -7..7 mm, cells of 4 voxels -> centres -4, 4; axis 1: one cell at 0
    np.testing.assert_allclose(grid.cell_centres_mm(4, 0), [-4.0, 4.0])
    np.testing.assert_allclose(grid.cell_centres_mm(4, 1), [0.0])
    np.testing.assert_allclose(grid.cell_centres_mm(4, 2), [-8.0, 0.0, 8.0])
    with pytest.raises(ValueError, match="not a multiple"):
        ModelGrid((10, 8, 8), 1.0).cell_centres_mm(4, 0)
    centres = cell_centres(grid, 4)
    assert centres.shape == (3, 3, 1, 2)  # (xyz, K cells, J cells, I cells)
    assert centres[:, 2, 0, 1].tolist() == [4.0, 0.0, 8.0]
    # the landmark at (3.9, -1, 4) lies in the cell centred at (4, 0, 8): x in [0, 8), z in [4, 12)
    labels = presence_labels(centres, torch.tensor([[[3.9, -1.0, 4.0]]]), cell_mm=8.0)
    assert labels.sum() == 1 and labels[0, 0, 2, 0, 1] == 1


def test_cell_centres_are_the_mean_of_their_voxels_in_ras_on_a_flipped_anisotropic_volume():
    grid = ModelGrid((8, 8, 4), 1.5)
    geometry = grid.geometry_for(FLIPPED)
    centres = cell_centres(grid, 4).numpy()  # (3, Kc, Jc, Ic)
    for kc, jc, ic in [(0, 0, 0), (0, 1, 1), (0, 1, 0)]:
        voxels = np.array(
            [[i, j, k] for i in range(4 * ic, 4 * ic + 4) for j in range(4 * jc, 4 * jc + 4) for k in range(4)]
        )
        expected = geometry.ijk_to_ras_points(voxels).mean(axis=0)
        got = grid.grid_mm_to_ras(geometry, centres[:, kc, jc, ic][None])[0]
        np.testing.assert_allclose(got, expected, atol=1e-9)


@pytest.mark.parametrize("shape", [(9, 9, 9), (8, 6, 4)])
def test_patch_geometry_centred_on_a_ras_point(shape):
    grid = ModelGrid(shape, 0.8)
    centre = np.array([3.0, -12.5, 40.0])
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_rotvec([0.0, 0.1, 0.05]).as_matrix()
    for p in (None, pose):
        geometry = grid.geometry_centred_at(FLIPPED, centre, p)
        np.testing.assert_allclose(grid.grid_mm_to_ras(geometry, [[0.0, 0.0, 0.0]])[0], centre, atol=1e-9)
        np.testing.assert_allclose(grid.ras_to_grid_mm(geometry, centre[None])[0], 0.0, atol=1e-9)
    geometry = grid.geometry_centred_at(FLIPPED, centre)
    np.testing.assert_allclose(geometry.direction_ras, FLIPPED.direction_ras)  # the volume's own (flipped) axes
    # one step along the patch's I axis is 0.8 mm along the volume's I direction
    step = grid.grid_mm_to_ras(geometry, [[0.8, 0.0, 0.0]])[0] - centre
    np.testing.assert_allclose(step, 0.8 * FLIPPED.direction_ras[:, 0], atol=1e-9)


def test_patches_at_volume_borders_are_zero_padded_and_exact_inside():
    # a volume whose intensity is linear in RAS: linear interpolation reproduces it exactly inside the volume
    k, j, i = np.meshgrid(*[np.arange(n) for n in FLIPPED.array_shape], indexing="ij")
    ijk = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    ras = FLIPPED.ijk_to_ras_points(ijk)
    a, b = np.array([1.5, -0.8, 2.0]), 120.0
    array = (ras @ a + b).reshape(FLIPPED.array_shape).astype(np.float32)
    assert array.min() > 0 and array.max() < 255
    image = sitk_image(array, FLIPPED)
    grid = ModelGrid((12, 12, 12), 1.0)
    corner = FLIPPED.ijk_to_ras_points([[0, 0, 0]])[0]
    inner = FLIPPED.ijk_to_ras_points([[10, 7, 4]])[0]
    x, geometries = prepare_patches(image, FLIPPED, grid, [corner, inner], "us")
    assert x.shape == (2, 1, 12, 12, 12) and x.dtype == np.float32
    for patch, geometry in zip(x[:, 0], geometries, strict=True):
        pk, pj, pi = np.meshgrid(*[np.arange(n) for n in grid.array_shape], indexing="ij")
        points = geometry.ijk_to_ras_points(np.stack([pi.ravel(), pj.ravel(), pk.ravel()], axis=1))
        # within the hull of the voxel centres: exact; beyond the voxel edges: the zero padding
        inside = FLIPPED.contains_ras(points, margin_voxels=0.51)
        expected = (points @ a + b) / 255.0
        np.testing.assert_allclose(patch.ravel()[inside], expected[inside], atol=2e-4)
        outside = ~FLIPPED.contains_ras(points, margin_voxels=-0.01)
        assert np.all(patch.ravel()[outside] == 0.0)
    corner_inside = FLIPPED.contains_ras(
        geometries[0].ijk_to_ras_points(np.argwhere(np.ones(grid.shape_ijk))), margin_voxels=0.0
    )
    assert 0 < corner_inside.mean() < 0.5  # the corner patch is mostly padding, and no crash


TINY_GLOBAL = dict(grid_shape=[16, 16, 16], grid_spacing_mm=6.0, channels=[4, 8, 16], batch_size=2, threads=1)
TINY_LOCAL = dict(grid_shape=[16, 16, 16], grid_spacing_mm=1.5, channels=[4, 8, 16], batch_size=3, threads=1)


@pytest.fixture(scope="module")
def g2l_runs(tiny_dataset, tmp_path_factory):
    runs = tmp_path_factory.mktemp("g2l")
    common = dict(data=str(tiny_dataset), modality="us", val_fraction=0.25, lr=3e-3, augment=False)
    results = {}
    for method, size, epochs in (
        ("g2l-global", TINY_GLOBAL, 10),
        ("dsnt-local", TINY_LOCAL, 8),
        ("g2l-local", TINY_LOCAL, 8),
    ):
        cfg = TrainConfig(method=method, output=str(runs / method), epochs=epochs, max_offset_mm=6.0, **common, **size)
        results[method] = train(cfg, progress=False)
    return runs, results


@pytest.mark.parametrize("method", ["g2l-global", "dsnt-local", "g2l-local"])
def test_new_methods_train_and_reduce_the_loss(g2l_runs, method):
    runs, results = g2l_runs
    history = results[method]["history"]
    assert history[-1]["train_loss"] < 0.9 * history[0]["train_loss"], history
    assert np.isfinite(results[method]["best_val_mre_mm"])
    cfg = json.loads((runs / method / "config.json").read_text())
    assert cfg["grid"]["spacing_mm"] == (6.0 if method == "g2l-global" else 1.5)


@pytest.fixture(scope="module")
def two_stage_card(g2l_runs, tmp_path_factory):
    runs, _ = g2l_runs
    models = tmp_path_factory.mktemp("models")
    for method in ("g2l-global", "dsnt-local", "g2l-local"):
        export_run(runs / method, models / f"us_{method}")
    return write_two_stage_card(
        models / "us_g2l-global.json", models / "us_dsnt-local.json", models / "two" / "us.json"
    )


def test_local_cards_describe_patches_and_exports_agree(two_stage_card):
    models = two_stage_card.parent.parent
    for method in ("dsnt-local", "g2l-local"):
        card = load_card(models / f"us_{method}.json")
        assert card.stage == "local" and card.data["training"]["max_offset_mm"] == 6.0
        assert (
            "--method " + method in card.data["training"]["command"]
            and "--max-offset 6" in card.data["training"]["command"]
        )
        assert max(card.data["export"]["max_abs_diff_mm"].values()) < 1e-3
        assert np.isfinite(card.data["validation"]["onnx_mre_mm"])
    card = load_card(two_stage_card)
    assert card.stage == "two-stage" and card.data["stages"]["global"]["card"] == "../us_g2l-global.json"


def test_two_stage_output_matches_the_stages_run_by_hand(two_stage_card, tiny_dataset):
    volume = tiny_dataset / "case_0002" / "us.nrrd"
    detector = open_detector(two_stage_card)
    assert isinstance(detector, TwoStageDetector) and detector.iterations == 2
    detection = detector.detect_file(volume)
    models = two_stage_card.parent.parent
    coarse = LandmarkDetector.from_card(models / "us_g2l-global.json").detect_file(volume)
    refiner = LocalRefiner(load_card(models / "us_dsnt-local.json"))
    image = sitk.Cast(sitk.ReadImage(str(volume)), sitk.sitkFloat32)
    geometry = VolumeGeometry.from_sitk_image(image)
    once, _ = refiner.refine(image, geometry, coarse.points_ras)
    twice, spread = refiner.refine(image, geometry, once)
    np.testing.assert_allclose(detection.global_points_ras, coarse.points_ras, atol=1e-9)
    np.testing.assert_allclose(detection.points_ras, twice, atol=1e-6)
    np.testing.assert_allclose(detection.spread_mm, spread, atol=1e-6)
    assert set(detection.seconds) == {"global", "local", "total"}
    # TorchScript runs the same two stages
    ts = open_detector(two_stage_card, backend="torchscript").detect_file(volume)
    np.testing.assert_allclose(ts.points_ras, detection.points_ras, atol=1e-3)


def test_a_second_global_pass_runs_on_a_grid_centred_on_the_first_answer(two_stage_card, tiny_dataset, tmp_path):
    models = two_stage_card.parent.parent
    card = write_two_stage_card(
        models / "us_g2l-global.json", models / "us_dsnt-local.json", tmp_path / "two.json", global_passes=2
    )
    assert load_card(card).data["stages"]["global"]["passes"] == 2 and "2 passes" in load_card(card).data["description"]
    volume = tiny_dataset / "case_0001" / "us.nrrd"
    detection = open_detector(card).detect_file(volume)
    stage = LandmarkDetector.from_card(models / "us_g2l-global.json")
    first = stage.detect_file(volume)
    image = sitk.Cast(sitk.ReadImage(str(volume)), sitk.sitkFloat32)
    geometry = VolumeGeometry.from_sitk_image(image)
    grid = stage.card.grid
    centre = first.points_ras.mean(axis=0)
    x, grid_geometry = prepare_input(
        image, geometry, grid, "us", stage.card.normalization, frame=grid.frame_for(geometry), centre_ras=centre
    )
    np.testing.assert_allclose(grid.grid_mm_to_ras(grid_geometry, [[0.0, 0.0, 0.0]])[0], centre, atol=1e-9)
    coords, _ = stage.run_network(x)
    np.testing.assert_allclose(detection.global_points_ras, grid.grid_mm_to_ras(grid_geometry, coords), atol=1e-6)
    assert np.abs(detection.global_points_ras - first.points_ras).max() > 1e-3  # the second pass did move it


def test_the_centred_global_input_is_the_patch_at_that_centre():
    """prepare_input with a centre samples exactly what prepare_patches samples there (exact on a flipped,
    anisotropic, oblique volume: test_patches_at_volume_borders_are_zero_padded_and_exact_inside)."""
    rng = np.random.default_rng(3)
    array = rng.uniform(0, 255, FLIPPED.size_ijk[::-1]).astype(np.float32)
    image = sitk_image(array, FLIPPED)
    grid = ModelGrid((12, 10, 8), 1.1, "LPS")
    centre = FLIPPED.ijk_to_ras_points([[6.5, 3.0, 5.0]])[0]
    params = {"method": "scale", "divide_by": 255.0, "clip": [0.0, 1.0]}
    x, geometry = prepare_input(image, FLIPPED, grid, "mr", params, centre_ras=centre)
    patches, (patch_geometry,) = prepare_patches(image, FLIPPED, grid, [centre], "mr", params)
    np.testing.assert_array_equal(x, patches)
    np.testing.assert_allclose(geometry.ijk_to_ras, patch_geometry.ijk_to_ras, atol=1e-12)


@pytest.mark.parametrize("passes", [0, -1, 1.5, "2", True, None])
def test_a_card_with_a_bad_number_of_global_passes_is_refused(two_stage_card, tmp_path, passes):
    doc = json.loads(two_stage_card.read_text())
    doc["stages"]["global"]["passes"] = passes
    bad = two_stage_card.parent / f"bad_passes_{tmp_path.name}.json"
    bad.write_text(json.dumps(doc))
    try:
        with pytest.raises(ModelCardError, match="stages.global.passes .* whole number, 1 or more"):
            open_detector(bad)
    finally:
        bad.unlink()
    with pytest.raises(ModelCardError, match="at least one global pass"):
        write_two_stage_card(
            two_stage_card.parent.parent / "us_g2l-global.json",
            two_stage_card.parent.parent / "us_dsnt-local.json",
            tmp_path / "x.json",
            global_passes=0,
        )


def test_local_ensemble_and_mid_gland_match_the_stages_run_by_hand(two_stage_card, tiny_dataset, tmp_path):
    models = two_stage_card.parent.parent
    card = write_two_stage_card(
        models / "us_g2l-global.json",
        [models / "us_dsnt-local.json", models / "us_g2l-local.json"],
        tmp_path / "ensemble.json",
        iterations=1,
        postprocessing=[{"step": "mid_gland", "weight": 0.5}],
    )
    doc = load_card(card)
    assert [c.path.resolve() for c in doc.stage_cards("local")] == [
        (models / f"us_{m}.json").resolve() for m in ("dsnt-local", "g2l-local")
    ]
    assert doc.postprocessing == [{"step": "mid_gland", "weight": 0.5}] and "ensemble of 2" in doc.data["description"]
    with pytest.raises(ModelCardError, match="use stage_cards"):
        doc.stage_card("local")
    volume = tiny_dataset / "case_0002" / "us.nrrd"
    detection = open_detector(card).detect_file(volume)
    coarse = LandmarkDetector.from_card(models / "us_g2l-global.json").detect_file(volume)
    image = sitk.Cast(sitk.ReadImage(str(volume)), sitk.sitkFloat32)
    geometry = VolumeGeometry.from_sitk_image(image)
    answers = [
        LocalRefiner(load_card(models / f"us_{m}.json")).refine(image, geometry, coarse.points_ras)
        for m in ("dsnt-local", "g2l-local")
    ]
    mean = (answers[0][0] + answers[1][0]) / 2
    np.testing.assert_allclose(detection.points_ras, pull_posterior_median_to_mid_gland(mean, 0.5), atol=1e-6)
    # the pooled spread: members' spreads and their distance from the mean
    half_gap2 = np.sum((answers[0][0] - mean) ** 2, axis=1)
    pooled = np.sqrt((answers[0][1] ** 2 + answers[1][1] ** 2) / 2 + half_gap2)
    np.testing.assert_allclose(detection.spread_mm, pooled, atol=1e-6)
    with pytest.raises(ModelCardError, match="between 0 and 1"):
        write_two_stage_card(
            models / "us_g2l-global.json",
            models / "us_g2l-local.json",
            tmp_path / "w.json",
            postprocessing=[{"step": "mid_gland", "weight": 1.5}],
        )
    bad = json.loads(card.read_text()) | {"postprocessing": [{"step": "mid_gland", "weight": -0.1}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ModelCardError, match="between 0 and 1"):
        load_card(tmp_path / "bad.json")


def test_mid_gland_pull_exact_values():
    # apex -> bladder neck along an oblique axis u; the posterior median 5 mm above mid-gland and 12 mm behind it
    u = np.array([2.0, -1.0, 2.0]) / 3.0
    n = np.array([1.0, 2.0, 0.0]) / np.sqrt(5.0)  # perpendicular to u
    apex = np.array([10.0, -20.0, 30.0])
    bladder_neck = apex + 36.0 * u
    mid = apex + 18.0 * u
    points = np.array([apex, bladder_neck, mid + 5.0 * u + 12.0 * n])
    original = points.copy()
    np.testing.assert_allclose(pull_posterior_median_to_mid_gland(points, 1.0)[2], mid + 12.0 * n, atol=1e-12)
    np.testing.assert_allclose(pull_posterior_median_to_mid_gland(points, 0.5)[2], mid + 2.5 * u + 12.0 * n, atol=1e-12)
    np.testing.assert_allclose(pull_posterior_median_to_mid_gland(points, 1.0)[:2], points[:2], atol=0)
    np.testing.assert_array_equal(pull_posterior_median_to_mid_gland(points, 0.0), original)
    np.testing.assert_array_equal(points, original)  # the input is not modified
    with pytest.raises(ValueError, match="between 0 and 1"):
        pull_posterior_median_to_mid_gland(points, -0.5)


def test_refinement_maps_patch_coordinates_back_to_ras(two_stage_card, tiny_dataset):
    refiner = LocalRefiner(load_card(two_stage_card.parent.parent / "us_g2l-local.json"))
    image = sitk.Cast(sitk.ReadImage(str(tiny_dataset / "case_0001" / "us.nrrd")), sitk.sitkFloat32)
    geometry = VolumeGeometry.from_sitk_image(image)
    start = geometry.ijk_to_ras_points([[10, 20, 30], [40, 40, 40], [0, 0, 0]])  # the last one at a corner
    refined, spread = refiner.refine(image, geometry, start)
    grid = refiner.card.grid
    x, patches = prepare_patches(image, geometry, grid, start, "us")
    coords, _ = refiner.network.run(x)
    for n in range(3):
        np.testing.assert_allclose(refined[n], grid.grid_mm_to_ras(patches[n], coords[n][None])[0], atol=1e-9)
    assert refined.shape == (3, 3) and np.all(np.isfinite(refined)) and spread.shape == (3,)


def test_two_stage_cards_are_checked(two_stage_card, tmp_path):
    models = two_stage_card.parent.parent
    with pytest.raises(ModelCardError, match="not a global one"):
        write_two_stage_card(models / "us_dsnt-local.json", models / "us_g2l-local.json", tmp_path / "x.json")
    with pytest.raises(ModelCardError, match="already exists"):
        write_two_stage_card(models / "us_g2l-global.json", models / "us_g2l-local.json", two_stage_card)
    with pytest.raises(ModelCardError, match="needs starting points"):
        open_detector(models / "us_g2l-local.json")
    with pytest.raises(ModelCardError, match="open_detector"):
        LandmarkDetector.from_card(two_stage_card)
    # a local stage of another modality
    copy = tmp_path / "copy"
    shutil.copytree(models, copy, ignore=shutil.ignore_patterns("two"))
    doc = json.loads((copy / "us_dsnt-local.json").read_text())
    doc["modality"] = "mr"
    (copy / "us_dsnt-local.json").write_text(json.dumps(doc))
    with pytest.raises(ModelCardError, match="same modality"):
        write_two_stage_card(copy / "us_g2l-global.json", copy / "us_dsnt-local.json", tmp_path / "y.json")
    # altered weights of a stage are caught through the two-stage card
    card = write_two_stage_card(copy / "us_g2l-global.json", copy / "us_g2l-local.json", copy / "z.json")
    onnx = copy / "us_g2l-local.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ModelCardError, match="does not match its model card"):
        open_detector(card)
    (copy / "us_g2l-global.json").unlink()
    with pytest.raises(ModelCardError, match="does not exist"):
        open_detector(card)


def test_refinement_beyond_its_training_range_is_flagged(two_stage_card, tiny_dataset, tmp_path):
    models = two_stage_card.parent.parent
    copy = tmp_path / "copy"
    shutil.copytree(models, copy, ignore=shutil.ignore_patterns("two"))
    doc = json.loads((copy / "us_dsnt-local.json").read_text())
    doc["training"]["max_offset_mm"] = 0.001  # any move is now beyond the trained range
    (copy / "us_dsnt-local.json").write_text(json.dumps(doc))
    card = write_two_stage_card(copy / "us_g2l-global.json", copy / "us_dsnt-local.json", copy / "t.json")
    detection = open_detector(card).detect_file(tiny_dataset / "case_0000" / "us.nrrd")
    assert sum("more than the 0.001 mm it was trained for" in f for f in detection.flags) == 3


def test_cli_two_stage_and_detect(two_stage_card, tiny_dataset, tmp_path):
    models = two_stage_card.parent.parent
    cli = [sys.executable, "-m", "LandmarkInitLib.cli"]
    card = tmp_path / "us_two.json"
    r = subprocess.run(
        [
            *cli,
            "two-stage",
            "--global",
            str(models / "us_g2l-global.json"),
            "--local",
            str(models / "us_g2l-local.json"),
            "--output",
            str(card),
            "--iterations",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [
            *cli,
            "detect",
            "--volume",
            str(tiny_dataset / "case_0003" / "us.nrrd"),
            "--modality",
            "us",
            "--model",
            str(card),
            "--output",
            str(tmp_path / "p.mrk.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    sidecar = json.loads((tmp_path / "p.detection.json").read_text())
    assert len(sidecar["global_stage_ras"]) == 3 and sidecar["model"] == "us_two"
    r = subprocess.run(
        [
            *cli,
            "two-stage",
            "--global",
            str(models / "us_g2l-local.json"),
            "--local",
            str(models / "us_g2l-local.json"),
            "--output",
            str(tmp_path / "bad.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "not a global one" in r.stderr
