"""Training smoke runs (tiny grid, few cases): the loss goes down, runs resume, torchrun/DDP works, exports agree,
and the runtime reads what export wrote."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from LandmarkInitLib.detection.detectors import LandmarkDetector
from LandmarkInitLib.detection.model_card import ModelCardError, load_card
from LandmarkInitLib.detection.preprocess import InvalidVolumeError
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitResearch.training.export import export_run
from LandmarkInitResearch.training.train import TrainConfig, train

TINY = dict(grid_shape=[16, 16, 16], grid_spacing_mm=6.0, channels=[4, 8, 16], batch_size=2, threads=1)


@pytest.fixture(scope="module")
def smoke_run(tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "us_dsnt_dist"
    cfg = TrainConfig(
        data=str(tiny_dataset),
        modality="us",
        method="dsnt-dist",
        output=str(out),
        epochs=12,
        lr=3e-3,
        augment=False,
        val_fraction=0.25,
        **TINY,
    )
    result = train(cfg, progress=False)
    return out, result


def test_smoke_training_reduces_the_loss(smoke_run):
    out, result = smoke_run
    history = result["history"]
    assert len(history) == 12
    first, last = history[0]["train_loss"], min(h["train_loss"] for h in history[-3:])
    assert last < 0.8 * first, history
    for name in ("config.json", "best.pt", "last.pt", "history.json", "curve.png"):
        assert (out / name).is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["lambda2"] == 1e-2  # the paper's US distance-map weight
    assert len(cfg["train_cases"]) == 3 and len(cfg["val_cases"]) == 1


@pytest.mark.parametrize("method", ["dsnt", "dsnt-var", "regression", "heatmap"])
def test_every_method_trains_one_epoch(tiny_dataset, tmp_path, method):
    cfg = TrainConfig(
        data=str(tiny_dataset),
        modality="mr",
        method=method,
        output=str(tmp_path / method),
        epochs=1,
        val_fraction=0.25,
        **TINY,
    )
    result = train(cfg, progress=False)
    assert np.isfinite(result["history"][0]["train_loss"]) and np.isfinite(result["best_val_mre_mm"])


def test_resume_continues_and_refuses_to_overwrite(tiny_dataset, tmp_path):
    base = dict(
        data=str(tiny_dataset),
        modality="mr",
        method="dsnt",
        output=str(tmp_path / "r"),
        val_fraction=0.25,
        lr_schedule="cosine",  # as every experiment trains: its learning rate is in the checkpoint
        **TINY,
    )
    train(TrainConfig(epochs=1, **base), progress=False)
    with pytest.raises(LandmarkInitError, match="--resume"):
        train(TrainConfig(epochs=2, **base), progress=False)
    resumed = train(TrainConfig(epochs=2, **base), resume=True, progress=False)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    # a fresh two-epoch run with the same seed gives the same second epoch (deterministic seeding)
    fresh = train(TrainConfig(epochs=2, **{**base, "output": str(tmp_path / "f")}), progress=False)
    assert fresh["history"][1]["train_loss"] == pytest.approx(resumed["history"][1]["train_loss"], rel=1e-4)


def test_keep_last_exports_the_last_epoch_and_the_card_says_so(tiny_dataset, tmp_path):
    cfg = TrainConfig(
        data=str(tiny_dataset), modality="mr", method="dsnt", output=str(tmp_path / "r"), val_fraction=0.25, **TINY
    )
    train(TrainConfig(**{**cfg.__dict__, "epochs": 3, "keep": "last"}), progress=False)
    kept, last = (torch.load(tmp_path / "r" / f, weights_only=True) for f in ("best.pt", "last.pt"))
    assert kept["epoch"] == 3
    assert all(torch.equal(kept["model"][k], last["model"][k]) for k in last["model"])
    training = json.loads(export_run(tmp_path / "r", tmp_path / "model", validate=False).read_text())["training"]
    assert training["kept_epoch"] == 3 and "best_epoch" not in training
    assert training["command"].endswith("--keep last --output RUN")


def test_init_weights_fine_tunes_from_another_run(tiny_dataset, tmp_path):
    base = dict(data=str(tiny_dataset), modality="mr", method="dsnt", val_fraction=0.25, **TINY)
    train(TrainConfig(epochs=1, output=str(tmp_path / "source"), **base), progress=False)
    source = torch.load(tmp_path / "source" / "best.pt", weights_only=True)["model"]
    # with a zero learning rate the fine-tuned run's weights are exactly the source's: they were loaded
    train(
        TrainConfig(epochs=1, output=str(tmp_path / "ft"), lr=0.0, init_weights=str(tmp_path / "source"), **base),
        progress=False,
    )
    tuned = torch.load(tmp_path / "ft" / "best.pt", weights_only=True)["model"]
    params = [k for k in source if "weight" in k or "bias" in k]
    assert params and all(torch.equal(source[k], tuned[k]) for k in params)
    assert json.loads((tmp_path / "ft" / "config.json").read_text())["init_weights"] == str(tmp_path / "source")
    # the card's commands reproduce the model: the fine-tuning run, and the run it started from
    card = json.loads(export_run(tmp_path / "ft", tmp_path / "ft_model").read_text())["training"]
    assert card["command"].endswith(f"--init-weights {tmp_path / 'source'} --output RUN")
    assert card["fine_tuned_from"]["weights"] == str(tmp_path / "source")
    assert (
        "--init-weights" not in card["fine_tuned_from"]["command"]
        and "--lr 0 " not in card["fine_tuned_from"]["command"]
    )
    with pytest.raises(LandmarkInitError, match="does not match this run"):
        train(
            TrainConfig(
                epochs=1,
                output=str(tmp_path / "x"),
                init_weights=str(tmp_path / "source"),
                **{**base, "method": "regression"},
            ),
            progress=False,
        )
    with pytest.raises(LandmarkInitError, match="does not exist"):
        train(
            TrainConfig(epochs=1, output=str(tmp_path / "y"), init_weights=str(tmp_path / "none.pt"), **base),
            progress=False,
        )


def test_init_weights_from_an_exported_model_card(tiny_dataset, tmp_path):
    """A shipped stage (card + TorchScript file) is a starting point too: the network inside the TorchScript
    wrapper is loaded exactly, and the new card keeps the source card's checksum and training command."""
    base = dict(data=str(tiny_dataset), modality="mr", method="dsnt", val_fraction=0.25, **TINY)
    train(TrainConfig(epochs=1, output=str(tmp_path / "source"), **base), progress=False)
    source_card = export_run(tmp_path / "source", tmp_path / "shipped" / "mr_model")
    source = torch.load(tmp_path / "source" / "best.pt", weights_only=True)["model"]
    train(
        TrainConfig(epochs=1, output=str(tmp_path / "ft"), lr=0.0, init_weights=str(source_card), **base),
        progress=False,
    )
    tuned = torch.load(tmp_path / "ft" / "best.pt", weights_only=True)["model"]
    params = [k for k in source if "weight" in k or "bias" in k]
    assert params and all(torch.equal(source[k], tuned[k]) for k in params)
    shipped = json.loads(source_card.read_text())
    origin = json.loads(export_run(tmp_path / "ft", tmp_path / "ft_model").read_text())["training"]["fine_tuned_from"]
    assert origin["sha256"] == shipped["files"]["torchscript"]["sha256"]
    assert origin["command"] == shipped["training"]["command"] and origin["card"] == "mr_model"
    # a TorchScript file that is not the one the card names is refused
    (tmp_path / "shipped" / "mr_model.pt").write_bytes(b"not the exported model")
    with pytest.raises(LandmarkInitError, match="does not match its model card"):
        train(TrainConfig(epochs=1, output=str(tmp_path / "x"), init_weights=str(source_card), **base), progress=False)
    # a two-stage card holds no network of its own
    two_stage = os.path.join(os.path.dirname(__file__), "..", "Resources", "Models", "mr_landmarks.json")
    with pytest.raises(LandmarkInitError, match="is a two-stage card"):
        train(TrainConfig(epochs=1, output=str(tmp_path / "y"), init_weights=two_stage, **base), progress=False)


def test_torchrun_distributed_data_parallel(tiny_dataset, tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    out = tmp_path / "ddp"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "LandmarkInitLib.cli",
        "train",
        "--data",
        str(tiny_dataset),
        "--modality",
        "us",
        "--method",
        "dsnt",
        "--output",
        str(out),
        "--epochs",
        "2",
        "--grid-shape",
        "16",
        "16",
        "16",
        "--grid-spacing",
        "6",
        "--channels",
        "4",
        "8",
        "16",
        "--batch-size",
        "1",
        "--threads",
        "1",
        "--quiet",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    history = json.loads((out / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2  # one process would run the whole set alone
    per_rank = -(-len(config["train_cases"]) // 2)  # DistributedSampler: each rank gets ceil(N / 2) cases
    assert len(config["train_cases"]) >= 2 and all(h["train_batches"] == per_rank for h in history)


def test_export_runtime_backends_agree_and_points_are_in_ras(smoke_run, tiny_dataset, tmp_path):
    out, _ = smoke_run
    card_path = export_run(out, tmp_path / "models" / "us_tiny")
    card = load_card(card_path)
    assert card.data["training"]["data"].startswith("SYNTHETIC")
    assert card.data["export"]["max_abs_diff_mm"]["onnx_vs_eager"] < 1e-3
    volume = tiny_dataset / "case_0000" / "us.nrrd"
    onnx = LandmarkDetector(card, "onnx").detect_file(volume)
    ts = LandmarkDetector(card, "torchscript").detect_file(volume)
    np.testing.assert_allclose(onnx.points_ras, ts.points_ras, atol=1e-3)
    assert onnx.backend == "onnx" and ts.backend == "torchscript"
    assert LandmarkDetector(card, "auto").backend == "onnx"  # both runtimes are installed here: the fast path
    from LandmarkInitLib.detection import detectors

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(sys.modules, "onnxruntime", None)  # Python's own way of saying "not importable"
        assert detectors.auto_backend(card) == "torchscript"  # torch, without installing anything
    # the runtime's RAS output equals the network's grid-mm output mapped through the grid geometry by hand
    from LandmarkInitLib.detection.preprocess import prepare_input
    from LandmarkInitLib.geometry import VolumeGeometry

    image = sitk.Cast(sitk.ReadImage(str(volume)), sitk.sitkFloat32)
    geometry = VolumeGeometry.from_sitk_image(image)
    x, grid_geometry = prepare_input(image, geometry, card.grid, "us")
    coords, _ = LandmarkDetector(card, "onnx").run_network(x)
    ijk = coords / card.grid.spacing_mm + (np.array(card.grid.shape_ijk) - 1) / 2
    np.testing.assert_allclose(onnx.points_ras, grid_geometry.ijk_to_ras_points(ijk), atol=1e-6)
    # the model grid follows the volume's own axes: moving the volume rigidly in the world (same voxels, new
    # origin and direction) moves the detected RAS points by exactly that transform
    from scipy.spatial.transform import Rotation

    from LandmarkInitLib.fit.landmark_fit import apply_transform

    move = np.eye(4)
    move[:3, :3] = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    move[:3, 3] = [12.0, -40.0, 7.5]
    moved_geometry = VolumeGeometry(
        geometry.size_ijk,
        geometry.spacing,
        apply_transform(move, geometry.origin_ras),
        move[:3, :3] @ geometry.direction_ras,
    )
    moved = LandmarkDetector(card, "onnx").detect_array(sitk.GetArrayFromImage(image), moved_geometry)
    np.testing.assert_allclose(moved.points_ras, apply_transform(move, onnx.points_ras), atol=1e-3)


def test_runtime_refuses_altered_or_inconsistent_cards(smoke_run, tmp_path):
    out, _ = smoke_run
    card_path = export_run(out, tmp_path / "m" / "us")
    onnx = card_path.with_suffix(".onnx")
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(ModelCardError, match="does not match its model card"):
        LandmarkDetector.from_card(card_path, "onnx")
    doc = json.loads(card_path.read_text())
    doc["landmarks"] = ["apex", "posterior_median", "bladder_neck"]
    card_path.write_text(json.dumps(doc))
    with pytest.raises(ModelCardError, match="needs exactly"):
        load_card(card_path)
    card_path.write_text("{")
    with pytest.raises(ModelCardError, match="not valid JSON"):
        load_card(card_path)
    with pytest.raises(ModelCardError, match="does not exist"):
        load_card(tmp_path / "none.json")
    with pytest.raises(LandmarkInitError, match="already exists"):
        export_run(out, tmp_path / "m" / "us")


def test_bad_volumes_get_clear_errors_or_flags(smoke_run, tiny_dataset, tmp_path):
    out, _ = smoke_run
    detector = LandmarkDetector.from_card(export_run(out, tmp_path / "b" / "us"), "onnx")
    geometry_image = sitk.ReadImage(str(tiny_dataset / "case_0000" / "us.nrrd"))
    from LandmarkInitLib.geometry import VolumeGeometry

    geometry = VolumeGeometry.from_sitk_image(geometry_image)
    shape = geometry.array_shape
    with pytest.raises(InvalidVolumeError, match="constant"):
        detector.detect_array(np.zeros(shape, np.float32), geometry)
    nan = np.ones(shape, np.float32)
    nan[0, 0, 0] = np.nan
    with pytest.raises(InvalidVolumeError, match="NaN"):
        detector.detect_array(nan, geometry)
    with pytest.raises(InvalidVolumeError, match="2-D"):
        detector.detect_image(sitk.Image(32, 32, sitk.sitkFloat32))
    with pytest.raises(InvalidVolumeError, match="4-D"):
        detector.detect_array(np.ones((2, 3, 4, 5), np.float32), geometry)
    # an MR volume given to the US model is flagged
    mr = detector.detect_file(tiny_dataset / "case_0000" / "mr.nrrd")
    assert any("does not look like B-mode ultrasound" in f for f in mr.flags)
    us = detector.detect_file(tiny_dataset / "case_0000" / "us.nrrd")
    assert not any("ultrasound" in f for f in us.flags)


def test_cli_detect_writes_markups_that_slicer_reads(smoke_run, tiny_dataset, tmp_path, context):
    out, _ = smoke_run
    card = export_run(out, tmp_path / "c" / "us")
    exe = [
        sys.executable,
        "-m",
        "LandmarkInitLib.cli",
        "detect",
        "--volume",
        str(tiny_dataset / "case_0001" / "us.nrrd"),
        "--modality",
        "us",
        "--model",
        str(card),
        "--output",
        str(tmp_path / "us.mrk.json"),
    ]
    r = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from LandmarkInitLib.io.markups import read_landmarks_file
    from LandmarkInitLib.landmarks import LANDMARK_LABELS

    node, points = read_landmarks_file(context, tmp_path / "us.mrk.json")
    sidecar = json.loads((tmp_path / "us.detection.json").read_text())
    np.testing.assert_allclose(points.ordered(LANDMARK_LABELS), [lm["ras"] for lm in sidecar["landmarks"]], atol=1e-6)
    assert "spread" in node.GetNthControlPointDescription(0)
    r = subprocess.run(exe, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "already exists" in r.stderr
    mismatch = [*exe[:6], "--modality", "mr", "--model", str(card), "--output", str(tmp_path / "y.mrk.json")]
    r = subprocess.run(mismatch, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "is a US model" in r.stderr


def test_evaluate_detectors_table(smoke_run, tiny_dataset, tmp_path):
    from LandmarkInitLib.io.datasets import open_dataset
    from LandmarkInitLib.landmarks import LANDMARK_LABELS

    out, _ = smoke_run
    a = export_run(out, tmp_path / "m" / "us_a")
    b = export_run(out, tmp_path / "m" / "us_b")
    report_dir = tmp_path / "eval"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "LandmarkInitLib.cli",
            "evaluate-detectors",
            "--models",
            str(a),
            str(b),
            "--data",
            str(tiny_dataset),
            "--output-dir",
            str(report_dir),
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads((report_dir / "detectors.json").read_text())["summary"]
    # recompute the MRE of model a by hand with the runtime
    detector = LandmarkDetector.from_card(a, "onnx")
    errors = [
        np.linalg.norm(
            detector.detect_file(c.images["us"]).points_ras - c.landmarks("us").ordered(LANDMARK_LABELS), axis=1
        )
        for c in open_dataset(tiny_dataset)
    ]
    assert summary["us_a"]["mre_mm"] == pytest.approx(float(np.mean(errors)), rel=1e-6)
    assert summary["us_a"]["sdr"]["4mm"] == pytest.approx(float(np.mean(np.array(errors) <= 4.0)))
    text = (report_dir / "detectors.md").read_text()
    assert "Synthetic phantom data, not patient data" in text and "| us_a | US | dsnt-dist | 4 |" in text
    in_view = [all(c.meta["landmarks_in_us_field_of_view"].values()) for c in open_dataset(tiny_dataset)]
    assert summary["us_a"]["in_view"]["n_cases"] == sum(in_view)
    assert "Wilcoxon" in text  # identical models: p = 1
    assert (report_dir / "detector_errors_us.png").stat().st_size > 10_000
    # two cards of one name are reported apart
    from LandmarkInitResearch.evaluation.detector_accuracy import evaluate_cards

    twice = evaluate_cards([a, a, a], tiny_dataset, progress=False)
    assert list(twice) == ["us_a", "us_a #2", "us_a #3"] and twice["us_a #3"]["card"] == str(a)


def test_training_pools_several_data_folders(tiny_dataset, tmp_path):
    out = tmp_path / "pooled"
    cfg = TrainConfig(
        data=[str(tiny_dataset), str(tiny_dataset)],
        modality="us",
        method="dsnt",
        output=str(out),
        epochs=1,
        val_fraction=0.25,
        **TINY,
    )
    train(cfg, progress=False)
    config = json.loads((out / "config.json").read_text())
    assert len(config["train_cases"]) + len(config["val_cases"]) == 8
    assert isinstance(config["data_description"], list) and len(config["data_description"]) == 2
    card = load_card(export_run(out, tmp_path / "pooled_us"))
    assert card.data["training"]["command"].startswith(f"landmarkinit train --data {tiny_dataset} {tiny_dataset} ")
