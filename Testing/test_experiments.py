"""The experiment runner: the shipped smoke experiment runs end to end, resumes, and refuses what it cannot do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from LandmarkInitLib.cli import EXIT_BAD_INPUT, EXIT_OK, main
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitResearch.experiments.runner import LOG_FILE, load_experiment, run_experiment

EXPERIMENTS = Path(__file__).resolve().parents[1] / "LandmarkInitResearch" / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.json")), ids=lambda p: p.stem)
def test_every_shipped_experiment_parses_into_valid_commands(path, tmp_path):
    from LandmarkInitLib.cli import build_parser

    experiment = load_experiment(path, tmp_path)
    parser = build_parser()
    for step in experiment.steps:
        parser.parse_args(list(step.argv))  # exits (SystemExit) on an unknown command or option
        assert all(o.startswith(str(tmp_path)) for o in step.outputs), step


@pytest.mark.slow
def test_smoke_experiment_runs_end_to_end_and_resumes(tiny_dataset, tmp_path):
    work = tmp_path / "smoke"
    (work / "data").mkdir(parents=True)
    # the data are the suite's tiny dataset (the same seed and count as the file's data_train step; as test data a
    # smoke run does not care that they are the training cases): the data steps find their outputs and are skipped,
    # as in a resumed experiment
    for name in ("train", "test"):
        (work / "data" / name).symlink_to(tiny_dataset, target_is_directory=True)
    args = ["experiment", str(EXPERIMENTS / "smoke.json"), "--work-dir", str(work), "--quiet"]
    assert main([*args, "--set", "epochs=1"]) == EXIT_OK
    log = json.loads((work / LOG_FILE).read_text())
    assert [s["status"] for s in log["steps"]] == ["skipped: outputs present"] * 2 + ["ran"] * 6
    assert log["variables"]["epochs"] == "1" and log["file_sha256"]
    assert "best validation MRE" in (work / log["steps"][2]["output"]).read_text()  # what the step printed
    card = load_card(work / "models" / "us_two-stage.json")
    assert card.stage == "two-stage" and (work / "results" / "detectors.md").is_file()
    results = json.loads((work / "results" / "detectors.json").read_text())["summary"]
    assert results["us_two-stage"]["n_cases"] == 4
    # run again: every step's outputs exist, nothing is redone
    assert main([*args, "--set", "epochs=1"]) == EXIT_OK
    log = json.loads((work / LOG_FILE).read_text())
    assert all(s["status"].startswith("skipped") for s in log["steps"])
    # one step asked for by name is redone when its outputs are gone
    (work / "models" / "us_two-stage.json").unlink()
    assert main([*args, "--only", "two_stage"]) == EXIT_OK
    assert [s["name"] for s in json.loads((work / LOG_FILE).read_text())["steps"]] == ["two_stage"]
    assert load_card(work / "models" / "us_two-stage.json").stage == "two-stage"


def test_bad_experiments_are_refused_with_the_reason(tmp_path, capsys):
    smoke = EXPERIMENTS / "smoke.json"
    with pytest.raises(LandmarkInitError, match="has no variable lr; its variables: cases, test_cases, epochs"):
        load_experiment(smoke, tmp_path, {"lr": "1"})
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"name": "x", "steps": [{"name": "a", "command": ["phantom", "--seed", "{seed}"]}]}))
    with pytest.raises(LandmarkInitError, match=r"step 'a' uses \{seed\}, which is not a variable"):
        load_experiment(broken, tmp_path)
    failing = tmp_path / "failing.json"
    failing.write_text(
        json.dumps(
            {
                "name": "failing",
                "steps": [
                    {
                        "name": "missing_data",
                        "command": [
                            "evaluate-detectors",
                            "--models",
                            "{work}/none.json",
                            "--data",
                            "{work}/none",
                            "--output-dir",
                            "{work}/out",
                        ],
                    },
                    {"name": "never_reached", "command": ["phantom", "--output", "{work}/d"]},
                ],
            }
        )
    )
    with pytest.raises(LandmarkInitError, match=r"step 'missing_data' failed \(exit status 2: .*does not exist"):
        run_experiment(load_experiment(failing, tmp_path / "w"), progress=False)
    log = json.loads((tmp_path / "w" / LOG_FILE).read_text())
    assert [s["name"] for s in log["steps"]] == ["missing_data"] and log["steps"][0]["exit"] == 2
    assert main(["experiment", str(tmp_path / "nothing.json"), "--work-dir", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "does not exist" in capsys.readouterr().err


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path, capsys):
    assert main(["experiment", str(EXPERIMENTS / "smoke.json"), "--work-dir", str(tmp_path / "w"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("landmarkinit ") == 8 and "train_global: landmarkinit train" in out
    assert not (tmp_path / "w").exists()
