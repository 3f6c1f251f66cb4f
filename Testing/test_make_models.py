"""`make models`: the shipped models rebuilt from scratch. release_chain.json replays the release-0.1 networks'
recorded training chains (tools/write_release_chain.py writes it from the release's cards), mr_detector.json
fine-tunes the MR networks on phantom + real MR, ship_models.json assembles the shipped set. Here at smoke size: one
epoch per step, one of the suite's tiny phantom cases for every data set, copies of the sample MR as the real cases."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from LandmarkInitLib.cli import EXIT_OK, EXIT_REVIEW, main
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitResearch.experiments.runner import LOG_FILE, load_experiment

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "LandmarkInitResearch" / "experiments"
SHIPPED = ROOT / "Resources" / "Models"


def test_the_release_chain_experiment_is_what_the_release_cards_record():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "write_release_chain.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def recipe(training: dict) -> list[list[str]]:
    """A card's training chain, innermost first, without what differs between a rebuild and the original: folder
    paths (their names stay), epochs, the run it fine-tunes, the grid-axes declaration and output options."""
    chain = []
    while training:
        argv, kept, skip = shlex.split(training["command"]), [], 0
        for a in argv:
            if skip:
                skip -= 1
            elif a in ("--epochs", "--init-weights", "--grid-axes", "--output"):
                skip = 1
            elif a != "--quiet":
                kept.append(Path(a).name if "/" in a else a)
        chain.append(kept)
        training = training.get("fine_tuned_from")
    return chain[::-1]


def fake_promise12(tmp_path: Path) -> Path:
    """Copies of the sample MR and its gland mask under the split's cross-validation case names."""
    import SimpleITK as sitk

    from LandmarkInitLib.resources import sample_case_dir
    from LandmarkInitResearch.evaluation.real_mr import load_split

    real = tmp_path / "promise12"
    for name, source in (("t2.nii.gz", "mr.nrrd"), ("gland.nii.gz", "mr_gland.nrrd")):
        sitk.WriteImage(sitk.ReadImage(str(sample_case_dir() / source)), str(tmp_path / name))
    for case in (c for fold in load_split()["cross_validation"] for c in fold):
        (real / case).mkdir(parents=True)
        for name in ("t2.nii.gz", "gland.nii.gz"):
            (real / case / name).symlink_to(tmp_path / name)
    return real


@pytest.mark.slow
def test_make_models_rebuilds_the_shipped_set_from_scratch_at_smoke_size(tiny_dataset, tmp_path):
    from LandmarkInitLib.resources import sample_case_dir

    # 1. release_chain.json, one epoch a step; every training folder holds one of the tiny cases (in turn), the
    # validation folder all four (quantize-onnx calibrates and checks on them), so that the data steps are skipped
    release = tmp_path / "release"
    chain = load_experiment(EXPERIMENTS / "release_chain.json", release)
    cases = sorted(p for p in tiny_dataset.iterdir() if p.is_dir())
    (release / "data").mkdir(parents=True)
    for k, step in enumerate(s for s in chain.steps if s.argv[0] == "phantom"):
        folder = release / "data" / Path(step.argv[step.argv.index("--output") + 1]).name
        if folder.name == "val":
            folder.symlink_to(tiny_dataset)
            continue
        folder.mkdir()
        shutil.copy(tiny_dataset / "dataset.json", folder)
        (folder / cases[k % len(cases)].name).symlink_to(cases[k % len(cases)])
    epochs = [f"{k}=1" for k in chain.variables if k.startswith("epochs_")]
    argv = ["experiment", str(EXPERIMENTS / "release_chain.json"), "--work-dir", str(release), "--quiet"]
    assert main([*argv, *(a for e in epochs for a in ("--set", e))]) == EXIT_OK
    log = json.loads((release / LOG_FILE).read_text())
    ran = [s["name"] for s in log["steps"] if s["status"] == "ran"]
    assert all(s.startswith(("train_", "export_", "two_stage_")) for s in ran) and len(ran) == len(log["steps"]) - 8

    # 2. mr_detector.json's final networks from the rebuilt release (the steps `make models` ships)
    mr = tmp_path / "mr_detector"
    shutil.copytree(release / "models", mr / "base" / "Resources" / "Models")
    steps = ["data_train", "data_val", "train_global_final", "train_local_final"]
    steps += ["export_global_final", "export_local_final", "two_stage_final"]
    argv = ["experiment", str(EXPERIMENTS / "mr_detector.json"), "--work-dir", str(mr), "--quiet", "--only", *steps]
    settings = ("phantom_train=2", "phantom_val=1", "global_epochs=1", "local_epochs=1")
    settings += (f"promise12={fake_promise12(tmp_path)}",)
    assert main([*argv, *(a for s in settings for a in ("--set", s))]) == EXIT_OK
    training = load_card(mr / "models" / "final" / "mr_landmarks_g2l-local.json").data["training"]
    assert training["real_mr"]["train_folds"] == [0, 1, 2, 3, 4] and len(training["real_mr"]["train_cases"]) == 25
    assert training["kept_epoch"] == 1 and training["command"].endswith("--keep last --output RUN")

    # 3. ship_models.json: the shipped names, cards and int8 MR local networks (real-MR evaluation not at smoke size)
    (mr / "data" / "test").symlink_to(tiny_dataset)
    shipped = tmp_path / "shipped"
    ship = load_experiment(EXPERIMENTS / "ship_models.json", shipped)
    argv = ["experiment", str(EXPERIMENTS / "ship_models.json"), "--work-dir", str(shipped), "--quiet", "--only"]
    argv += [s.name for s in ship.steps if s.name != "evaluate_real_mr"]
    settings = (f"release={release}", f"mr_detector={mr}", "quantize_cases=2", "quantize_check_cases=2")
    settings += ("quantize_tolerance_mm=1000",)  # one-epoch networks: the int8 check's figures mean nothing here
    assert main([*argv, *(a for s in settings for a in ("--set", s))]) == EXIT_OK
    models = shipped / "Models"
    assert sorted(p.name for p in models.iterdir()) == sorted(
        p.name for p in SHIPPED.iterdir() if p.name != "qa_thresholds.json"
    )
    for card_path in sorted(SHIPPED.glob("*.json")):
        if card_path.name == "qa_thresholds.json":
            continue
        old, new = json.loads(card_path.read_text()), load_card(models / card_path.name).data
        assert (new["name"], new["modality"], new["method"], new["stage"]) == (
            old["name"],
            old["modality"],
            old["method"],
            old["stage"],
        )
        if old["stage"] == "two-stage":
            assert new["stages"] == old["stages"] and new["postprocessing"] == old["postprocessing"]
            continue
        # the release's MR networks were trained in the phantom's index axes, and their cards say so ("trained_on");
        # a rebuild trains them in the patient frame they run in
        old["input_grid"].pop("trained_on", None)
        assert new["input_grid"] == old["input_grid"] and new["network"] == old["network"], card_path.name
        assert recipe(new["training"]) == recipe(old["training"]), card_path.name  # the same recorded chain
        int8 = load_card(models / card_path.name).onnx_quantization is not None
        assert int8 == (load_card(card_path).onnx_quantization is not None), card_path.name
    report = json.loads((shipped / "results" / "phantom" / "detectors.json").read_text())
    rows = {Path(v["card"]): v["n_cases"] for v in report["summary"].values()}  # shipped and rebuilt, 4 cases each
    assert rows == {p: 4 for d in (SHIPPED, models) for p in (d / "mr_landmarks.json", d / "us_landmarks.json")}
    # the rebuilt set runs as a models folder, before anyone copies it to Resources/Models
    sample = sample_case_dir()
    run = ["run", "--mr", str(sample / "mr.nrrd"), "--us", str(sample / "us.nrrd"), "--models", str(models)]
    # one-epoch networks: their points go to review (exit status 3), which is the point of the flags
    assert main([*run, "--output", str(tmp_path / "run"), "--quiet"]) in (EXIT_OK, EXIT_REVIEW)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert {m: Path(report["models"][m]["card"]) for m in ("mr", "us")} == {
        "mr": models / "mr_landmarks.json",
        "us": models / "us_landmarks.json",
    }
    assert np.asarray(report["matrix"], dtype=float).shape == (4, 4)  # the MR-to-US transform was fitted


def test_the_probe_frame_is_a_us_training_grid_and_trains_in_the_index_axes(tmp_path):
    """`train --grid-axes probe` (how the rebuild trains the US networks): the card declares the probe's frame, the
    grid takes the volume's own axes in training (the phantom's US files are stored in that frame); MR, and data
    that is not the phantom's, are refused."""
    from LandmarkInitLib.detection.model_grid import PROBE_AXES
    from LandmarkInitLib.errors import LandmarkInitError
    from LandmarkInitLib.geometry import VolumeGeometry
    from LandmarkInitResearch.training.train import TrainConfig, train

    grid = TrainConfig(data="d", modality="us", method="g2l-global", output="o", grid_axes="probe").grid()
    assert grid.axes == PROBE_AXES and grid.to_dict()["axes"] == "PROBE"
    turned = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])  # I -> -A, J -> R, K -> -S
    volume = VolumeGeometry((60, 50, 40), np.array([0.4, 0.7, 1.1]), np.array([5.0, -3.0, 2.0]), turned)
    assert np.array_equal(grid.frame_for(volume), turned)  # the volume's own axes, not a patient frame
    with pytest.raises(LandmarkInitError, match="--grid-axes probe is for US"):
        TrainConfig(data="d", modality="mr", method="g2l-global", output="o", grid_axes="probe").grid()
    site = tmp_path / "site"  # no dataset.json: not made by `landmarkinit phantom`
    site.mkdir()
    cfg = TrainConfig(
        data=str(site), modality="us", method="g2l-global", output=str(tmp_path / "run"), grid_axes="probe"
    )
    with pytest.raises(LandmarkInitError, match=f"only for phantom data .*; {site} is not a phantom dataset"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()


def test_ship_models_takes_existing_runs_and_the_shipped_quantization_settings(tmp_path):
    """ship_models.json exports runs that release_chain.json and mr_detector.json make, and quantizes the MR local
    networks as the shipped cards record (the smoke run above overrides these settings)."""
    ship = load_experiment(EXPERIMENTS / "ship_models.json", tmp_path / "shipped")
    runs = set()  # the run folders the two experiments train, where ship_models.json looks for them
    for variable, file in (("release", "release_chain.json"), ("mr_detector", "mr_detector.json")):
        steps = load_experiment(EXPERIMENTS / file, Path(ship.variables[variable]).resolve()).steps
        runs |= {Path(o).parent for s in steps for o in s.outputs if o.endswith("finished.json")}
    for step in (s for s in ship.steps if s.argv[0] == "export"):
        assert Path(step.argv[1]).resolve() in runs, step.name

    def settings(argv):
        return {o: argv[argv.index(o) + 1] for o in ("--cases", "--check-cases", "--tolerance-mm")} | {
            "--data": Path(argv[argv.index("--data") + 1]).name
        }

    (quantize,) = (s for s in ship.steps if s.argv[0] == "quantize-onnx")
    recorded = load_card(SHIPPED / "mr_landmarks_g2l-local.json").onnx_quantization["command"]
    assert settings(list(quantize.argv)) == settings(shlex.split(recorded))
