"""MR training data for real images (issue 22): the domain randomization's parts do what they claim, intensity
randomization leaves the landmarks alone, and real PROMISE12-layout cases train only from cross-validation folds
(a held-out test case is refused), recorded in the run's config and the exported card."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LandmarkInitLib.cli import EXIT_BAD_INPUT, EXIT_OK, main
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.io.datasets import open_dataset
from LandmarkInitLib.resources import sample_case_dir
from LandmarkInitResearch.evaluation.real_mr import load_split
from LandmarkInitResearch.training.data import (
    PADDING_LABEL,
    LandmarkDataset,
    LocalPatchDataset,
    MRDomainRandomization,
    load_volumes,
    quantize,
    resample_labels,
    simulate_resolution,
    tissue_intensities,
)
from LandmarkInitResearch.training.real_mr_data import load_real_mr_volumes
from LandmarkInitResearch.training.train import DEFAULT_GRIDS, DEFAULT_LOCAL_GRIDS


@pytest.mark.parametrize("slice_axis", [0, 1, 2])
def test_simulated_slices_mix_voxels_only_along_the_slice_axis(slice_axis):
    rng = np.random.default_rng(0)
    x = rng.random((20, 24, 28)).astype(np.float32)  # (K, J, I)
    spacing = [0.5, 0.5, 0.5]  # in-plane finer than the 2 mm grid: untouched
    spacing[slice_axis] = 5.0
    y = simulate_resolution(x, spacing, 2.0)
    assert not np.allclose(y, x)
    poked = x.copy()
    k, j, i = 7, 11, 13
    poked[k, j, i] += 1.0
    changed = np.argwhere(np.abs(simulate_resolution(poked, spacing, 2.0) - y) > 1e-6)
    array_axis = 2 - slice_axis
    fixed = [a for a in range(3) if a != array_axis]
    assert len(changed) > 1  # spread along the slice axis ...
    assert (changed[:, fixed] == np.array([k, j, i])[fixed]).all()  # ... and nowhere else
    assert np.array_equal(simulate_resolution(x, [0.5, 0.8, 2.0], 2.0), x)  # at or below the grid spacing: nothing


def test_simulated_slices_keep_a_volume_constant_along_the_slice_axis():
    x = np.broadcast_to(np.random.default_rng(1).random((1, 24, 28)), (20, 24, 28)).astype(np.float32)
    np.testing.assert_allclose(simulate_resolution(x, [0.5, 0.5, 6.0], 2.0), x, atol=1e-6)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_quantization_stores_the_number_of_levels_asked(bits):
    ramp = np.linspace(-0.3, 1.7, 300_000, dtype=np.float64).reshape(60, 50, 100)
    q = quantize(ramp, bits)
    assert len(np.unique(q)) == 2**bits
    assert q.min() == pytest.approx(-0.3, abs=1e-6) and q.max() == pytest.approx(1.7, abs=1e-6)
    assert np.abs(q - ramp).max() <= 2.0 / (2**bits - 1) / 2 + 1e-6


def test_domain_randomization_is_seeded_and_keeps_the_inference_normalization():
    x = np.random.default_rng(2).random((1, 20, 24, 28)).astype(np.float32)
    dr = MRDomainRandomization(2.0)
    a = dr.set_random_state(5)(x)
    b = dr.set_random_state(5)(x)
    c = dr.set_random_state(6)(x)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == x.shape and a.dtype == np.float32 and np.isfinite(a).all()
    assert a.min() >= -0.5 and a.max() <= 2.0  # the card's MR clip range


@pytest.mark.parametrize("dataset, grid", [(LandmarkDataset, DEFAULT_GRIDS["mr"]), (LocalPatchDataset, None)])
def test_intensity_randomization_leaves_the_landmark_targets_alone(dataset, grid):
    grid = grid or DEFAULT_LOCAL_GRIDS["mr"]
    volumes = load_volumes(open_dataset(sample_case_dir()), "mr")
    plain = dataset(volumes, grid, "mr", augment=True, seed=3)
    randomized = dataset(volumes, grid, "mr", augment=True, seed=3, domain_randomization=True)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        randomized.set_epoch(epoch)
        x0, t0, c0 = plain[0]
        x1, t1, c1 = randomized[0]
        assert torch.equal(t0, t1) and c0 == c1  # same pose, same targets
        assert not torch.equal(x0, x1)


def test_labels_resample_by_nearest_neighbour_with_padding_outside():
    from LandmarkInitLib.geometry import VolumeGeometry

    labels = np.random.default_rng(1).integers(0, 17, (6, 7, 8)).astype(np.uint8)  # [k, j, i]
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.5, 0.7, 3.0))
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # LPS-flipped, anisotropic: a DICOM-like axial
    image.SetOrigin((10.0, -4.0, 2.0))
    geometry = VolumeGeometry.from_sitk_image(image)
    np.testing.assert_array_equal(resample_labels(image, geometry), labels)
    origin = geometry.ijk_to_ras_points(np.array([[3.0, 0.0, 0.0]]))[0]  # three voxels along I
    shifted = VolumeGeometry(geometry.size_ijk, geometry.spacing, origin, geometry.direction_ras)
    moved = resample_labels(image, shifted)
    np.testing.assert_array_equal(moved[:, :, :5], labels[:, :, 3:])
    assert (moved[:, :, 5:] == PADDING_LABEL).all()


def test_tissue_intensities_draw_any_contrast_and_keep_the_padding_dark():
    labels = np.zeros((12, 12, 36), np.uint8)
    labels[:, :, 12:24], labels[:, :, 24:] = 1, PADDING_LABEL
    brighter = []
    for seed in range(40):
        x = tissue_intensities(labels, np.random.default_rng(seed))
        assert x.shape == labels.shape and x.dtype == np.float32
        a, b, pad = x[:, :, 3:9].mean(), x[:, :, 15:21].mean(), x[:, :, 28:].mean()
        assert abs(pad) < 1e-6 and -0.1 <= min(a, b) and max(a, b) <= 1.1
        assert x[:, :, 3:9].std() <= 0.1 and x[:, :, 15:21].std() <= 0.1
        brighter.append(a > b)
    assert 10 < sum(brighter) < 30  # either tissue may be the brighter: no fixed contrast
    np.testing.assert_array_equal(
        tissue_intensities(labels, np.random.default_rng(3)), tissue_intensities(labels, np.random.default_rng(3))
    )


@pytest.mark.parametrize("dataset, grid", [(LandmarkDataset, DEFAULT_GRIDS["mr"]), (LocalPatchDataset, None)])
def test_phantom_cases_with_tissue_labels_are_rerendered_with_random_tissue_intensities(dataset, grid, tmp_path):
    import shutil

    from LandmarkInitResearch.phantom.case import generate_case
    from LandmarkInitResearch.phantom.tissues import TISSUES_FILE
    from LandmarkInitResearch.phantom.write import write_volume

    grid = grid or DEFAULT_LOCAL_GRIDS["mr"]
    case_dir = tmp_path / "case_0000"
    shutil.copytree(sample_case_dir(), case_dir)
    plain = load_volumes(open_dataset(case_dir), "mr")
    sample = generate_case(2026, 0)  # the sample case again (same seed and index), with its tissue labels
    write_volume(sample.mr_tissues, sample.mr_geometry, case_dir / TISSUES_FILE)
    labelled = load_volumes(open_dataset(case_dir), "mr")
    assert plain[0].tissues is None and labelled[0].tissues is not None
    dr = dict(augment=True, seed=3, domain_randomization=True)
    a = dataset(plain, grid, "mr", **dr, tissue_intensities=1.0)[0]
    b = dataset(labelled, grid, "mr", **dr, tissue_intensities=1.0)[0]
    again = dataset(labelled, grid, "mr", **dr, tissue_intensities=1.0)[0]
    assert torch.equal(dataset(labelled, grid, "mr", **dr)[0][0], a[0])  # off by default
    assert torch.equal(a[1], b[1]) and a[2] == b[2]  # same pose, same targets
    assert not torch.equal(a[0], b[0]) and torch.equal(b[0], again[0])
    assert b[0].min() >= -0.5 and b[0].max() <= 2.0
    # without domain randomization the labels are not used
    c = dataset(plain, grid, "mr", augment=True, seed=3)[0]
    d = dataset(labelled, grid, "mr", augment=True, seed=3, tissue_intensities=1.0)[0]
    assert torch.equal(c[0], d[0])


@pytest.fixture(scope="module")
def promise12_like(tmp_path_factory):
    """Three cases (the sample MR as t2.nii.gz, its gland as gland.nii.gz): caseA held out, caseB fold 0, caseC
    fold 1."""
    root = tmp_path_factory.mktemp("promise12")
    data = root / "data"
    image = sitk.ReadImage(str(sample_case_dir() / "mr.nrrd"))
    gland = sitk.ReadImage(str(sample_case_dir() / "mr_gland.nrrd"))
    for case in ("caseA", "caseB", "caseC"):
        (data / case).mkdir(parents=True)
        sitk.WriteImage(image, str(data / case / "t2.nii.gz"))
        sitk.WriteImage(gland, str(data / case / "gland.nii.gz"))
    split = root / "split.json"
    split.write_text(json.dumps({"held_out_test": ["caseA"], "cross_validation": [["caseB"], ["caseC"]]}))
    return data, split


def test_a_held_out_real_case_is_refused(promise12_like):
    data, split_path = promise12_like
    split = load_split(split_path)
    with pytest.raises(LandmarkInitError, match="caseA belong.*held-out real test set"):
        load_real_mr_volumes(data, ["caseB", "caseA"], split)
    (volume,) = load_real_mr_volumes(data, ["caseB"], split)
    assert volume.name == "real:caseB" and volume.landmarks_ras.shape == (3, 3)


def test_training_on_real_folds_records_them_in_config_and_card(promise12_like, tmp_path, capsys):
    data, split = promise12_like
    run = tmp_path / "run"
    tiny = ["--grid-shape", "16", "16", "16", "--grid-spacing", "6", "--channels", "4", "8", "16", "--threads", "1"]
    argv = ["train", "--data", str(sample_case_dir()), "--val-data", str(sample_case_dir()), "--modality", "mr"]
    argv += ["--method", "g2l-global", "--epochs", "1", "--domain-randomization", "--real-mr", str(data)]
    argv += ["--real-mr-split", str(split), "--real-mr-val-folds", "1", "--real-mr-repeat", "2", *tiny, "--quiet"]
    assert main([*argv, "--real-mr-folds", "2", "--output", str(tmp_path / "bad")]) == EXIT_BAD_INPUT
    assert "fold(s) 2 do not exist" in capsys.readouterr().err
    assert main([*argv, "--real-mr-folds", "0", "--output", str(run)]) == EXIT_OK
    config = json.loads((run / "config.json").read_text())
    assert (
        config["real_mr_train_cases"] == ["caseB"]
        and config["real_mr_repeat"] == 2
        and config["real_mr_val_cases"] == ["caseC"]
    )
    assert config["grid"]["axes"] == "LPS"
    history = json.loads((run / "history.json").read_text())
    assert {"val_mre_phantom_mm", "val_mre_real_mm"} <= set(history[0])
    assert main(["export", str(run), "--output", str(tmp_path / "mr_g")]) == EXIT_OK
    training = load_card(tmp_path / "mr_g.json").data["training"]
    assert training["data"].startswith("REAL patient images (PROMISE12")
    assert training["real_mr"]["train_cases"] == ["caseB"] and training["real_mr"]["validation_cases"] == ["caseC"]
    assert load_card(tmp_path / "mr_g.json").data["input_grid"]["axes"] == "LPS"
    assert f"--domain-randomization --real-mr {data} --real-mr-folds 0 --real-mr-val-folds 1" in training["command"]


def test_the_step_selection_fold_is_a_cross_validation_fold_of_the_committed_split():
    from LandmarkInitResearch.evaluation.real_mr import DEFAULT_SPLIT

    split = load_split()
    fold = load_split(DEFAULT_SPLIT.with_name("real_mr_split_fold4.json"))
    assert fold["held_out_test"] == [] and fold["cross_validation"] == [split["cross_validation"][4]]


def test_tissue_intensities_need_mr_domain_randomization_and_labelled_cases(tmp_path, capsys):
    tiny = ["--grid-shape", "16", "16", "16", "--grid-spacing", "6", "--channels", "4", "8", "16", "--threads", "1"]
    argv = ["train", "--data", str(sample_case_dir()), "--val-data", str(sample_case_dir()), "--method", "g2l-global"]
    argv += ["--epochs", "1", *tiny, "--quiet", "--output", str(tmp_path / "run"), "--tissue-intensities", "0.5"]
    assert main([*argv, "--modality", "mr"]) == EXIT_BAD_INPUT
    assert "use it with --modality mr and --domain-randomization" in capsys.readouterr().err
    assert main([*argv, "--modality", "mr", "--domain-randomization"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no training case has tissue labels (mr_tissues.nrrd); regenerate the phantom data" in err
    assert not (tmp_path / "run" / "last.pt").exists()
