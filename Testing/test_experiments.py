"""The experiment runner: the shipped experiment files hold valid commands; the runner runs real steps, resumes,
reruns a step by name and refuses what it cannot do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from LandmarkInitLib.cli import EXIT_BAD_INPUT, EXIT_OK, main
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.resources import models_dir
from LandmarkInitResearch.experiments.runner import LOG_FILE, load_experiment, run_experiment

EXPERIMENTS = Path(__file__).resolve().parents[1] / "LandmarkInitResearch" / "experiments"


@pytest.mark.parametrize("path", sorted(EXPERIMENTS.glob("*.json")), ids=lambda p: p.stem)
def test_every_shipped_experiment_parses_into_valid_commands(path, tmp_path):
    from LandmarkInitLib.cli import build_parser

    experiment = load_experiment(path, tmp_path)
    parser = build_parser()
    for step in experiment.steps:
        parser.parse_args(list(step.argv))  # exits (SystemExit) on an unknown command or option
        # outputs stay in the work folder, or are the generated results pages of docs/results
        results = (EXPERIMENTS.parents[1] / "docs" / "results").resolve()
        assert all(o.startswith(str(tmp_path)) or Path(o).resolve().is_relative_to(results) for o in step.outputs), step


def test_an_experiment_runs_its_steps_resumes_and_reruns_a_step_by_name(tiny_dataset, tmp_path):
    """The runner on real commands (a two-stage card from the shipped stages, evaluated on the suite's tiny dataset);
    the training chain of smoke.json is exercised by the training tests, and smoke.json's commands by the parse test
    above."""
    models = load_card(EXPERIMENTS.parents[1] / "Resources" / "Models" / "us_landmarks.json").path.parent
    file = tmp_path / "two_stage.json"
    file.write_text(
        json.dumps(
            {
                "name": "two_stage",
                "variables": {"passes": "2"},
                "steps": [
                    {
                        "name": "card",
                        "command": [
                            "two-stage",
                            "--global",
                            "{models}/us_landmarks_g2l-global.json",
                            "--local",
                            "{models}/us_landmarks_g2l-local.json",
                            "--iterations",
                            "{passes}",
                            "--output",
                            "{work}/us.json",
                        ],
                        "outputs": ["{work}/us.json"],
                    },
                    {
                        "name": "evaluate",
                        "command": [
                            "evaluate-detectors",
                            "--models",
                            "{work}/us.json",
                            "--data",
                            str(tiny_dataset),
                            "--output-dir",
                            "{work}/results",
                            "--quiet",
                        ],
                        "outputs": ["{work}/results/detectors.md"],
                    },
                ],
            }
        )
    )
    work = tmp_path / "work"
    args = ["experiment", str(file), "--work-dir", str(work), "--quiet"]
    assert main([*args, "--set", "passes=1"]) == EXIT_OK
    log = json.loads((work / LOG_FILE).read_text())
    assert [s["status"] for s in log["steps"]] == ["ran", "ran"] and log["variables"] == {"passes": "1"}
    assert log["file_sha256"] and log["steps"][0]["command"][:2] == ["landmarkinit", "two-stage"]
    assert f"{models}/us_landmarks_g2l-global.json" in log["steps"][0]["command"]
    assert "wrote" in (work / log["steps"][0]["output"]).read_text()  # what the step printed
    card = load_card(work / "us.json")
    assert card.stage == "two-stage" and card.data["stages"]["local"]["iterations"] == 1
    assert json.loads((work / "results" / "detectors.json").read_text())["summary"]["us"]["n_cases"] == 4
    # run again: every step's outputs exist, nothing is redone
    assert main(args) == EXIT_OK
    log = json.loads((work / LOG_FILE).read_text())
    assert [s["status"] for s in log["steps"]] == ["skipped: outputs present"] * 2
    assert "--iterations" in log["steps"][0]["made_by"]["command"]  # what made the outputs: the first run
    assert log["steps"][0]["made_by"]["command"][log["steps"][0]["made_by"]["command"].index("--iterations") + 1] == "1"
    # one step asked for by name is redone when its outputs are gone, with the file's default variables
    (work / "us.json").unlink()
    assert main([*args, "--only", "card"]) == EXIT_OK
    assert [s["name"] for s in json.loads((work / LOG_FILE).read_text())["steps"]] == ["card"]
    assert load_card(work / "us.json").data["stages"]["local"]["iterations"] == 2


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


def test_a_variable_may_name_a_folder_by_the_work_models_or_experiment_folder(tmp_path):
    file = tmp_path / "x.json"
    command = ["phantom", "--output", "{out}"]
    file.write_text(json.dumps({"name": "x", "variables": {"out": "{here}/a/{work}"}, "steps": [{"command": command}]}))
    (step,) = load_experiment(file, tmp_path / "w").steps
    assert step.argv[-1] == f"{tmp_path}/a/{tmp_path / 'w'}"
    (step,) = load_experiment(file, tmp_path / "w", {"out": "{models}/b"}).steps
    assert step.argv[-1] == f"{models_dir()}/b"


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path, capsys):
    assert main(["experiment", str(EXPERIMENTS / "smoke.json"), "--work-dir", str(tmp_path / "w"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("landmarkinit ") == 8 and "train_global: landmarkinit train" in out
    assert "--description 'smoke run: toy sizes, figures meaningless'" in out  # quoted, ready to paste
    assert not (tmp_path / "w").exists()
