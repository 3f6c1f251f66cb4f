"""The `landmarkinit` command line: clinical commands listed before research ones, shared options that mean the
same in every command, and every command name of the previous release still there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from LandmarkInitLib import cli
from LandmarkInitLib.cli import CommandGroup, build_parser
from LandmarkInitLib.cli.options import positive_int
from LandmarkInitLib.detection.detectors import BACKEND_CHOICES

COMMAND = shutil.which("landmarkinit", path=os.path.dirname(sys.executable)) or "landmarkinit"
CLINICAL = ["run", "register", "detect", "landmarks-from-mask", "app", "add-correction", "calibrate-flags"]
RESEARCH = [
    "phantom",
    "train",
    "export",
    "two-stage",
    "quantize-onnx",
    "evaluate-detectors",
    "evaluate-robustness",
    "evaluate-real-mr",
    "evaluate",
    "evaluate-mask-landmarks",
    "experiment",
    "finetune",
    "site-learning-curve",
    "evaluate-quality-flags",
]


def subcommands():
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices


def option(name, command):
    return next((a for a in subcommands()[command]._actions if name in a.option_strings), None)


def test_help_lists_clinical_commands_first_and_research_commands_apart():
    r = subprocess.run([COMMAND, "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    clinical, research = r.stdout.split("research commands")
    assert "clinical commands:" in clinical
    for name in CLINICAL:
        assert f"\n  {name} " in clinical and f"\n  {name} " not in research
    for name in RESEARCH:
        assert f"\n  {name} " in research and f"\n  {name} " not in clinical


def test_every_command_of_the_previous_release_is_there():
    assert set(subcommands()) == set(CLINICAL + RESEARCH)


@pytest.mark.parametrize("command", ["run", "detect", "app", "evaluate-detectors", "evaluate"])
def test_backend_and_threads_mean_the_same_in_every_command_that_runs_detectors(command):
    backend, threads = option("--backend", command), option("--threads", command)
    assert backend is not None and threads is not None, command
    assert tuple(backend.choices) == BACKEND_CHOICES
    assert backend.default == ("auto" if command == "app" else "onnx")  # the app follows the Slicer module
    assert threads.type is positive_int and threads.metavar == "N"


def test_shared_options_are_declared_once():
    """--force and --quiet come from the shared parents: the same help text wherever they appear."""
    texts = {}
    for name in ("--force", "--quiet"):
        texts[name] = {option(name, c).help for c in subcommands() if option(name, c) is not None}
        assert len(texts[name]) == 1, (name, texts[name])
    assert {c for c in subcommands() if option("--force", c)} >= {"run", "register", "detect", "phantom", "export"}


def test_run_passes_backend_and_threads_to_the_detectors(tmp_path):
    """`run --backend torchscript` really runs TorchScript: the report names the backend of each detector."""
    import json

    from LandmarkInitLib.resources import sample_case_dir

    case = sample_case_dir()
    out = tmp_path / "out"
    args = ["run", "--mr", case / "mr.nrrd", "--us", case / "us.nrrd", "-o", out, "--backend", "torchscript"]
    r = subprocess.run([COMMAND, *map(str, args), "--threads", "2"], capture_output=True, text=True, timeout=300)
    assert r.returncode in (0, 3), r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["models"]["mr"]["backend"] == report["models"]["us"]["backend"] == "torchscript"
    assert report["mr"]["backend"] == "torchscript"


def test_a_missing_optional_package_names_the_extra_to_install():
    code = (
        "import sys\n"
        "sys.modules['trame'] = None\n"  # as in an install without the app extra
        "from LandmarkInitLib.cli import main\n"
        "sys.exit(main(['app', '--port', '0']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "landmarkinit app: error: this command needs trame: pip install 'landmarkinit[app]'"


def test_clinical_commands_work_when_the_research_bench_cannot_be_loaded():
    code = (
        "import sys\n"
        "sys.modules['LandmarkInitResearch'] = None\n"  # a broken or partial install
        "from LandmarkInitLib.cli import build_parser\n"
        "parser = build_parser()\n"
        "print(parser.epilog)\n"
        "parser.parse_args(['run', '--mr', 'a', '--us', 'b', '-o', 'c'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "clinical commands:" in r.stdout and "phantom" not in r.stdout
    assert "research commands could not be loaded" in r.stdout


# Every option of release 0.1's `landmarkinit`, with its default: the compatibility the release promises.
RELEASE_0_1_OPTIONS = {
    "app": {
        "--mr": None,
        "--us": None,
        "--host": "127.0.0.1",
        "--port": 0,
        "--output-dir": "landmarkinit-output",
        "--open": False,
        "--backend": "auto",
    },
    "detect": {
        "--volume": None,
        "--modality": None,
        "--model": None,
        "--output": None,
        "--backend": "onnx",
        "--force": False,
    },
    "evaluate": {
        "--data": None,
        "--output-dir": None,
        "--mr-model": None,
        "--us-model": None,
        "--workers": 1,
        "--calibrate-qa": None,
        "--qa-thresholds": None,
        "--description": None,
        "--quiet": False,
    },
    "evaluate-detectors": {
        "--models": None,
        "--data": None,
        "--output-dir": None,
        "--backend": "onnx",
        "--description": None,
        "--quiet": False,
    },
    "export": {"run": None, "--output": None, "--name": None, "--force": False},
    "phantom": {
        "--count": 1,
        "--seed": 0,
        "--start": 0,
        "--output": None,
        "--workers": 1,
        "--probe": "mixed",
        "--partial-fraction": 0.15,
        "--rectum-lateral": 4.0,
        "--preview": None,
        "--force": False,
        "--quiet": False,
    },
    "register": {
        "--fixed-landmarks": None,
        "--moving-landmarks": None,
        "--output": None,
        "--mode": "rigid",
        "--report": None,
        "--csv-coordinate-system": None,
        "--any-labels": False,
        "--force": False,
    },
    "run": {
        "--mr": None,
        "--us": None,
        "--cases": None,
        "--output-dir": None,
        "--mr-model": None,
        "--us-model": None,
        "--weighting": "spread",
        "--refine": False,
        "--qa-thresholds": None,
        "--workers": 1,
        "--dask": None,
        "--threads": 1,
        "--force": False,
        "--quiet": False,
    },
    "train": {
        "--data": None,
        "--val-data": None,
        "--modality": None,
        "--method": None,
        "--output": None,
        "--epochs": 30,
        "--batch-size": 4,
        "--lr": 0.001,
        "--lr-schedule": "constant",
        "--seed": 0,
        "--channels": [16, 32, 64, 128],
        "--reg-weight": None,
        "--grid-shape": None,
        "--grid-spacing": None,
        "--max-cases": None,
        "--threads": None,
        "--max-offset": 10.0,
        "--no-augment": False,
        "--init-weights": None,
        "--resume": False,
        "--quiet": False,
    },
    "two-stage": {
        "--global": None,
        "--local": None,
        "--output": None,
        "--iterations": 2,
        "--mid-gland": 0.0,
        "--axis-plane": 0.0,
        "--mirror-average": False,
        "--name": None,
        "--force": False,
    },
}


@pytest.mark.parametrize("command", sorted(RELEASE_0_1_OPTIONS))
def test_every_option_of_the_previous_release_keeps_its_default(command):
    actions = {}
    for action in subcommands()[command]._actions:
        for name in action.option_strings or [action.dest]:
            actions[name] = action
    for name, default in RELEASE_0_1_OPTIONS[command].items():
        assert name in actions, f"{command} lost {name}"
        new = actions[name].default
        assert (str(new) if default is not None and new is not None else new) == (
            str(default) if default is not None else None
        ), f"{command} {name}: default {new!r}, was {default!r}"


@pytest.mark.parametrize("value", ["0", "-3", "two"])
@pytest.mark.parametrize(
    "args",
    [
        ["run", "-o", "x", "--threads"],
        ["run", "-o", "x", "--workers"],
        ["detect", "--volume", "v.nrrd", "--modality", "mr", "--output", "o.mrk.json", "--threads"],
        ["train", "--threads"],
    ],
)
def test_thread_and_worker_counts_must_be_at_least_one(capsys, args, value):
    """Before: --threads 0 or -3 was accepted silently."""
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*args, value])
    assert exit_.value.code == 2
    assert f"argument {args[-1]}: expected a whole number of at least 1, got '{value}'" in capsys.readouterr().err


def command_that_raises(error):
    """A command group with one command, `fail`, that raises ``error``: a stand-in for a bug, which cannot be
    produced on purpose in the real commands."""

    def fail(args):
        raise error

    def add(sub):
        sub.add_parser("fail").set_defaults(func=fail)
        return [("fail", "raises")]

    return CommandGroup("test", add)


@pytest.mark.parametrize(
    "error, status, line",
    [
        (
            ZeroDivisionError("division by zero\nsecond line"),
            1,
            "internal error: ZeroDivisionError: division by zero (set LANDMARKINIT_DEBUG=1 to see the traceback, and "
            "please report it)",
        ),
        (
            KeyError(),
            1,
            "internal error: KeyError (set LANDMARKINIT_DEBUG=1 to see the traceback, and please report it)",
        ),
        (PermissionError(13, "Permission denied", "/data/out/a.h5"), 2, "error: /data/out/a.h5: Permission denied"),
        (
            OSError(28, "No space left on device", "/data/out/a.h5"),
            2,
            "error: not enough space in /data/out; free some space or choose another output folder",
        ),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
)
def test_no_traceback_reaches_the_user(monkeypatch, capsys, error, status, line):
    monkeypatch.setattr(cli, "command_groups", lambda: ([command_that_raises(error)], []))
    monkeypatch.delenv("LANDMARKINIT_DEBUG", raising=False)
    assert cli.main(["fail"]) == status
    assert capsys.readouterr().err == f"landmarkinit fail: {line}\n"


def test_the_debug_variable_shows_the_traceback_of_an_unexpected_error(monkeypatch):
    monkeypatch.setattr(cli, "command_groups", lambda: ([command_that_raises(ZeroDivisionError("bug"))], []))
    monkeypatch.setenv("LANDMARKINIT_DEBUG", "1")
    with pytest.raises(ZeroDivisionError, match="bug"):
        cli.main(["fail"])


def test_detect_refuses_outputs_it_cannot_write_before_detecting(tmp_path, capsys):
    """Before: a traceback and exit 1 after the detection (read-only folder, a file where the folder should be)."""
    from LandmarkInitLib.resources import sample_case_dir
    from mounts import read_only_folder

    volume = sample_case_dir() / "mr.nrrd"
    (tmp_path / "file").write_text("keep")

    def detect(output):
        code = cli.main(["detect", "--volume", str(volume), "--modality", "mr", "--output", str(output)])
        return code, capsys.readouterr().err

    assert detect(tmp_path / "file" / "m.mrk.json") == (
        2,
        f"landmarkinit detect: error: {tmp_path / 'file'} is a file, not a folder; give a path in a folder\n",
    )
    with read_only_folder(tmp_path / "ro") as ro:
        assert detect(ro / "m.mrk.json") == (
            2,
            f"landmarkinit detect: error: cannot write in folder {ro}: Read-only file system\n",
        )
    sidecar_named_like_the_model = tmp_path / "card.detection.json"
    sidecar_named_like_the_model.write_text("{}")
    code = cli.main(
        ["detect", "--volume", str(volume), "--modality", "mr", "--model", str(sidecar_named_like_the_model)]
        + ["--output", str(tmp_path / "card.mrk.json"), "--force"]
    )
    assert code == 2 and capsys.readouterr().err == (
        f"landmarkinit detect: error: --output {sidecar_named_like_the_model} is also the input --model; inputs are "
        "never overwritten: choose another --output\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.detection.json", "file", "ro"]
