"""The pretrained detectors shipped in Resources/Models: cards valid, files intact, and they find the landmarks
of the shipped sample case (a phantom case that none of them was trained on)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.detection import detectors
from LandmarkInitLib.detection.detectors import (
    BACKENDS,
    LandmarkDetector,
    LocalEnsemble,
    TwoStageDetector,
    open_detector,
)
from LandmarkInitLib.detection.mirror_average import Reflection, combine_views
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.detection.preprocess import prepare_input, prepare_patches, sitk_image
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.io.datasets import open_case
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitLib.resources import default_model_card, sample_case_dir


@pytest.mark.parametrize("modality", ["mr", "us"])
def test_shipped_default_is_a_two_stage_detector_with_intact_stages(modality):
    card = load_card(default_model_card(modality))
    assert card.stage == "two-stage" and card.modality == modality and card.landmarks == LANDMARK_LABELS
    for stage_card in card.stage_cards("global") + card.stage_cards("local"):
        training = stage_card.data["training"]
        if "real_mr" in training:  # the card says plainly that it was trained on patient images (data terms)
            assert training["data"].startswith("REAL patient images (PROMISE12") and "SYNTHETIC" in training["data"]
            assert "--real-mr " in training["command"] and training["real_mr"]["train_cases"]
        else:
            assert training["data"].startswith("SYNTHETIC")
        assert "landmarkinit train" in stage_card.data["training"]["command"]
        for backend in ("onnx", "torchscript"):
            stage_card.verified_weights(backend)  # sha256 matches
        assert stage_card.data["qa"]["spread_limit_mm"] > 0


@pytest.mark.parametrize("modality", ["mr", "us"])
def test_shipped_models_find_the_sample_case_landmarks(modality):
    case = open_case(sample_case_dir())
    truth = case.landmarks(modality).ordered(LANDMARK_LABELS)
    detector = open_detector(default_model_card(modality))
    assert isinstance(detector, TwoStageDetector)
    detection = detector.detect_file(case.images[modality])
    errors = np.linalg.norm(detection.points_ras - truth, axis=1)
    # Bounds about twice what the shipped models give on this case (MR 0.45-0.77 mm, US 0.65-1.22 mm). A broken
    # convention (flipped axis, LPS/RAS, wrong grid or patch centre) gives centimetres; the global stage alone
    # (MR up to 4.6 mm, US 1.55 mm mean) fails them too, so they fail if the local refinement is skipped.
    assert errors.max() < 2.0 and errors.mean() < 1.25, errors
    assert not detection.flags
    # the global stage by hand: its first pass, then (stages.global.passes) again on grids centred on the answer
    image = sitk.ReadImage(str(case.images[modality]))
    array, geometry = sitk.GetArrayFromImage(image).astype(np.float32), VolumeGeometry.from_sitk_image(image)
    global_stage = LandmarkDetector(detector.card.stage_card("global"))
    global_only = global_stage.detect_file(case.images[modality])
    grid = global_stage.card.grid
    # the frame is chosen once, on the volume (the probe's, found from the fan, for US), and kept for the mirror
    frame = global_stage.detect_in_probe_frame(array, geometry)[1] if grid.in_probe_frame else grid.frame_for(geometry)

    def global_passes(view_geometry):
        points = global_stage.detect_array(array, view_geometry, frame).points_ras
        for _ in range(detector.global_passes - 1):
            x, grid_geometry = prepare_input(
                sitk_image(array, view_geometry),
                view_geometry,
                grid,
                modality,
                global_stage.card.normalization,
                frame=frame,
                centre_ras=points.mean(axis=0),
            )
            points = grid.grid_mm_to_ras(grid_geometry, global_stage.run_network(x)[0])
        return points

    assert detector.global_passes == {"mr": 3, "us": 1}[modality]
    expected = global_passes(geometry)
    if detector.mirror_average:  # the global points reported are the mean over the volume and its mirror image
        mirror = Reflection.about_centre(geometry, grid.lateral_direction_ras(frame))
        expected = (expected + mirror.points(global_passes(mirror.geometry(geometry)))) / 2
    np.testing.assert_allclose(expected, detection.global_points_ras, atol=1e-6)
    global_errors = np.linalg.norm(global_only.points_ras - truth, axis=1)
    assert global_errors.max() < 6.0 and global_errors.mean() > errors.mean()  # the refinement helps here


@pytest.mark.parametrize("modality", ["mr", "us"])
def test_shipped_onnx_and_torchscript_backends_give_the_same_points(modality):
    """The ONNX files are exported with another convolution layout than the TorchScript files (training/export.py,
    fold_depth); both must still be the same model: the same points on the sample case to 1e-3 mm. Where a local
    network's ONNX file is int8 (training/quantize.py), points and spreads may differ by up to twice what its card
    records as measured on its check cases; the global stage is float in both."""
    pytest.importorskip("torch")
    path = sample_case_dir() / f"{modality}.nrrd"
    card = load_card(default_model_card(modality))
    records = [c.onnx_quantization for c in card.stage_cards("local") if c.onnx_quantization]
    # twice the largest difference the cards record on their check cases: the ensemble averages its members
    points_atol = 2 * max([r["points_max_mm"] for r in records] + [5e-4])
    spread_atol = 2 * max([r["spread_max_mm"] for r in records] + [5e-4])
    onnx, torchscript = (open_detector(card, b).detect_file(path) for b in BACKENDS)
    assert (onnx.backend, torchscript.backend) == BACKENDS
    np.testing.assert_allclose(onnx.points_ras, torchscript.points_ras, atol=points_atol)
    np.testing.assert_allclose(onnx.global_points_ras, torchscript.global_points_ras, atol=1e-3)
    np.testing.assert_allclose(onnx.spread_mm, torchscript.spread_mm, atol=spread_atol)
    if any(records):  # the int8 networks really run on the ONNX path
        assert not np.allclose(onnx.points_ras, torchscript.points_ras, atol=1e-4)


def test_ensemble_members_on_one_grid_resample_the_patches_once(monkeypatch):
    """The shipped US ensemble's members read patches on the same grid: the resampling is done once per pass."""
    card = load_card(default_model_card("us"))
    ensemble = LocalEnsemble(card.stage_cards("local"))
    assert len(ensemble.members) == 2 and len({m.patch_key for m in ensemble.members}) == 1
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[3])
        return prepare_patches(*args, **kwargs)

    monkeypatch.setattr(detectors, "prepare_patches", counted)
    image = sitk.ReadImage(str(sample_case_dir() / "us.nrrd"), sitk.sitkFloat32)
    geometry = VolumeGeometry.from_sitk_image(image)
    start = open_case(sample_case_dir()).landmarks("us").ordered(LANDMARK_LABELS)
    points, spread = ensemble.refine(image, geometry, start)
    assert len(calls) == 1
    separate = [m.refine(image, geometry, start) for m in ensemble.members]
    expected = combine_views([p for p, _ in separate], [s for _, s in separate])
    np.testing.assert_array_equal(points, expected[0])
    np.testing.assert_array_equal(spread, expected[1])
