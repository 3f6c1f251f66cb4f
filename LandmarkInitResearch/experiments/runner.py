"""The experiment runner (``landmarkinit experiment FILE --work-dir DIR``): one documented way to run a recorded
recipe of landmarkinit commands (data, training, export, model cards, evaluation) instead of a new script per try.

An experiment file (JSON) holds a name, a description, ``variables`` (defaults; ``--set NAME=VALUE`` overrides
them, e.g. fewer epochs for a quick run) and ``steps``. A step is a landmarkinit command (``command``: its argument
list) with the ``outputs`` it must leave; ``{name}`` in either is replaced by a variable, ``{work}`` by the work
folder, ``{models}`` by the shipped models folder and ``{here}`` by the experiment file's folder (these three also
in a variable's value). Steps run in order, each in its own process; a step whose outputs all exist is skipped, so
an interrupted experiment resumes where it stopped (a training step's output is its run's ``finished.json``, which
``train`` writes last; with ``--resume`` an interrupted run continues from its last epoch). Every step is recorded in
WORK/experiment_log.json (command, seconds, exit status, skipped or run) and what it printed in WORK/logs/STEP.log; a
failing step stops the experiment.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from LandmarkInitLib import __version__
from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError
from LandmarkInitLib.resources import models_dir

LOG_FILE = "experiment_log.json"
STEP_LOGS = "logs"  # WORK/logs/STEP.log: what each step printed
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Step:
    name: str
    argv: tuple[str, ...]
    outputs: tuple[str, ...]
    ok_exit: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    path: Path
    work_dir: Path
    variables: dict
    steps: tuple[Step, ...]


def load_experiment(path, work_dir, overrides: dict | None = None) -> Experiment:
    """Read an experiment file and fill its placeholders for a run in ``work_dir``."""
    path, work_dir = Path(path), Path(work_dir).resolve()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LandmarkFileError(f"experiment file {path} does not exist") from None
    except ValueError as e:
        raise LandmarkFileError(f"experiment file {path} is not valid JSON ({e})") from None
    for key in ("name", "steps"):
        if key not in data:
            raise LandmarkFileError(f"experiment file {path} lacks {key!r}")
    variables = {k: str(v) for k, v in data.get("variables", {}).items()}
    unknown = sorted(set(overrides or {}) - set(variables))
    if unknown:
        raise LandmarkInitError(
            f"{path.name} has no variable {', '.join(unknown)}; its variables: {', '.join(variables) or 'none'}"
        )
    variables |= {k: str(v) for k, v in (overrides or {}).items()}
    builtin = {"work": str(work_dir), "models": str(models_dir()), "here": str(path.resolve().parent)}
    # a variable may name a folder by {work}, {models} or {here}, so that its default works from any directory
    variables = {k: _PLACEHOLDER.sub(lambda m: builtin.get(m.group(1), m.group(0)), v) for k, v in variables.items()}
    values = variables | builtin
    steps, names = [], set()
    for i, entry in enumerate(data["steps"]):
        name = entry.get("name") or f"step {i + 1}"
        if name in names:
            raise LandmarkFileError(f"{path.name}: two steps are named {name!r}")
        names.add(name)
        if not entry.get("command"):
            raise LandmarkFileError(f"{path.name}: step {name!r} has no command")

        def fill(text, step=name):
            def value(match):
                key = match.group(1)
                if key not in values:
                    raise LandmarkInitError(f"{path.name}: step {step!r} uses {{{key}}}, which is not a variable")
                return values[key]

            return _PLACEHOLDER.sub(value, str(text))

        steps.append(
            Step(
                name,
                tuple(fill(a) for a in entry["command"]),
                tuple(fill(o) for o in entry.get("outputs", [])),
                tuple(entry.get("ok_exit", [0])),
            )
        )
    return Experiment(data["name"], data.get("description", ""), path, work_dir, variables, tuple(steps))


def run_experiment(experiment: Experiment, *, only=None, progress: bool = True) -> dict:
    """Run (or skip, when their outputs exist) the experiment's steps in its work folder; returns the log."""
    work_dir = experiment.work_dir
    unknown = sorted(set(only or []) - {s.name for s in experiment.steps})
    if unknown:
        raise LandmarkInitError(f"{experiment.path.name} has no step {', '.join(unknown)}")
    work_dir.mkdir(parents=True, exist_ok=True)
    earlier = _earlier_runs(work_dir)
    log = {
        "experiment": experiment.name,
        "file": str(experiment.path),
        "file_sha256": hashlib.sha256(experiment.path.read_bytes()).hexdigest(),
        "landmarkinit": __version__,
        "variables": experiment.variables,
        "steps": [],
    }
    for step in experiment.steps:
        if only and step.name not in only:
            continue
        record = {"name": step.name, "command": ["landmarkinit", *step.argv]}
        if step.outputs and all(Path(o).exists() for o in step.outputs):
            # the outputs were made by an earlier run, perhaps with other variables: keep what that run recorded
            log["steps"].append(record | {"status": "skipped: outputs present", "made_by": earlier.get(step.name)})
            _write_log(work_dir, log)
            continue
        if progress:
            print(f"[{experiment.name}] {step.name}: landmarkinit {' '.join(step.argv)}", flush=True)
        output = work_dir / STEP_LOGS / f"{step.name}.log"
        output.parent.mkdir(exist_ok=True)
        t0 = time.perf_counter()
        with output.open("w", encoding="utf-8") as out:
            done = subprocess.run(
                [sys.executable, "-m", "LandmarkInitLib.cli", *step.argv], cwd=work_dir, stdout=out, stderr=out
            )
        record |= {
            "status": "ran",
            "exit": done.returncode,
            "seconds": round(time.perf_counter() - t0, 1),
            "output": str(output.relative_to(work_dir)),
        }
        log["steps"].append(record)
        _write_log(work_dir, log)
        if done.returncode not in step.ok_exit:
            last = output.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise LandmarkInitError(
                f"step {step.name!r} failed (exit status {done.returncode}: {last[0]}); its output is in {output}. "
                "Fix it and run the experiment again: finished steps are skipped"
            )
        missing = [o for o in step.outputs if not Path(o).exists()]
        if missing:
            raise LandmarkInitError(f"step {step.name!r} finished but did not write {', '.join(missing)}")
    return log


def _earlier_runs(work_dir: Path) -> dict:
    """Step name -> the record of the run that made its outputs, from the log an earlier run left."""
    try:
        steps = json.loads((work_dir / LOG_FILE).read_text(encoding="utf-8"))["steps"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return {}
    runs = {}
    for record in steps:
        if record.get("status") == "ran":
            runs[record["name"]] = {k: record[k] for k in ("command", "exit", "seconds") if k in record}
        elif record.get("made_by"):
            runs[record["name"]] = record["made_by"]
    return runs


def _write_log(work_dir: Path, log: dict) -> None:
    (work_dir / LOG_FILE).write_text(json.dumps(log, indent=1) + "\n", encoding="utf-8")
