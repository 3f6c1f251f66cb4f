"""The `landmarkinit` command line: clinical commands listed before research ones, shared options that mean the
same in every command, and every command name of the previous release still there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from LandmarkInitLib.cli import build_parser
from LandmarkInitLib.detection.detectors import BACKEND_CHOICES

COMMAND = shutil.which("landmarkinit", path=os.path.dirname(sys.executable)) or "landmarkinit"
CLINICAL = ["run", "register", "detect", "app"]
RESEARCH = ["phantom", "train", "export", "two-stage", "evaluate-detectors", "evaluate", "experiment"]


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
    assert threads.type is int and threads.metavar == "N"


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


def test_a_missing_optional_package_names_the_extra_to_install(tmp_path):
    code = (
        "import sys\n"
        "sys.modules['scipy'] = None\n"  # as in an install without the research extra
        "from LandmarkInitLib.cli import main\n"
        f"sys.exit(main(['phantom', '--output', {str(tmp_path / 'd')!r}, '--quiet']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert (
        r.stderr.strip()
        == "landmarkinit phantom: error: this command needs scipy: pip install 'landmarkinit[research]'"
    )
    assert not (tmp_path / "d").exists()
