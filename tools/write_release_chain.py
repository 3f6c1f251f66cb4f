"""Write LandmarkInitResearch/experiments/release_chain.json from the release-0.1 model cards (commit 7c4e1de): the
phantom data and every network's recorded training chain, replayed from random weights, exported under the
release's names, and the release's two-stage cards. `make models` runs it before mr_detector.json, so that the
shipped models are rebuilt from scratch (docs/research.md).

    .venv/bin/python tools/write_release_chain.py            # rewrite the experiment file
    .venv/bin/python tools/write_release_chain.py --check    # exit 1 if it is not what the cards give

The chain is read from each card's ``training.command`` and its nested ``fine_tuned_from`` (innermost first); each
``--data`` folder is generated from the card's ``training.dataset`` entry at the same position. Two facts the release
cards do not hold are stated here: the validation folder (below) and the US grid's axes (the shipped US cards declare
the probe's frame, commit cdb746d; on phantom data the probe frame is the volume's index axes, so the recorded
commands train the same networks with ``--grid-axes probe``). One thing differs from the release: its MR networks
were trained in the phantom's index axes and later declared to run in the patient frame (their cards' ``trained_on``
note); the rebuild trains them in the patient frame they run in (train's MR default), so they are not the same
training. Testing/test_make_models.py runs the check.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "LandmarkInitResearch" / "experiments" / "release_chain.json"
RELEASE = "7c4e1de"
MODELS = "Resources/Models"
# data/val of every release card: `landmarkinit phantom --count 30 --seed 2` (docs/research.md); the cards record
# only its folder name and case count.
VALIDATION = {"folder": "val", "seed": 2, "count": 30, "options": {"probe": "mixed", "partial_fraction": 0.15}}
GENERATOR_DEFAULTS = {"rectum_lateral_mm": 4.0}  # the phantom's default, which early cards do not list
PHANTOM_OPTIONS = {
    "probe": "--probe",
    "partial_fraction": "--partial-fraction",
    "rectum_lateral_mm": "--rectum-lateral",
}


def release_cards(commit: str = RELEASE) -> dict[str, dict]:
    """The release's model cards by file stem, read from git (the repository's history holds the release)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, MODELS], capture_output=True, check=False)
    if archive.returncode:
        sys.exit(f"git archive {commit} failed ({archive.stderr.decode().strip()}): a full clone is needed")
    cards = {}
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        for member in tar.getmembers():
            if member.name.endswith(".json") and not member.name.endswith("qa_thresholds.json"):
                cards[Path(member.name).stem] = json.loads(tar.extractfile(member).read())
    return cards


def chain(training: dict) -> list[str]:
    """The recorded train commands, innermost (from random weights) first."""
    commands = []
    while training:
        commands.append(training["command"])
        training = training.get("fine_tuned_from")
    return commands[::-1]


def variable(prefix: str, name: str) -> str:
    return prefix + "_" + name.replace("-", "_")


def folder_datasets(cards: dict) -> dict[str, dict]:
    """Data folder name -> the phantom data set it holds, from each card's outermost --data folders and its
    ``training.dataset`` entries (same order); a folder that two cards describe differently is refused."""
    folders = {VALIDATION["folder"]: VALIDATION}
    for card in cards.values():
        if "training" not in card:
            continue
        if card["validation"].get("cases") != VALIDATION["count"] or Path(card["validation"]["data"]).name != "val":
            sys.exit(f"{card['name']}: validated on {card['validation']}, not on {VALIDATION}")
        datasets = card["training"]["dataset"]
        datasets = [datasets] if isinstance(datasets, dict) else datasets
        names = [Path(a).name for a in option_values(shlex.split(card["training"]["command"]), "--data")]
        if len(names) != len(datasets):
            sys.exit(f"{card['name']}: {len(names)} --data folders but {len(datasets)} dataset entries")
        for name, d in zip(names, datasets, strict=True):
            if d.get("first_index", 0) != 0:
                sys.exit(f"{card['name']}: dataset {name} does not start at case 0")
            entry = {"folder": name, "seed": d["seed"], "count": d["count"], "options": d.get("options", {})}
            known = folders.setdefault(name, entry)
            same = (known["seed"], known["count"]) == (entry["seed"], entry["count"])
            if not same or {**GENERATOR_DEFAULTS, **known["options"]} != {**GENERATOR_DEFAULTS, **entry["options"]}:
                sys.exit(f"data/{name} means two datasets: {known} and {entry}")
    return folders


def option_values(argv: list[str], option: str) -> list[str]:
    """The arguments after ``option`` up to the next option."""
    i = argv.index(option) + 1
    values = []
    while i < len(argv) and not argv[i].startswith("--"):
        values.append(argv[i])
        i += 1
    return values


def data_steps(folders: dict, variables: dict) -> list[dict]:
    steps = []
    for name, d in sorted(folders.items()):
        count = variable("cases", name)
        variables[count] = str(d["count"])
        unknown = sorted(set(d["options"]) - set(PHANTOM_OPTIONS))
        if unknown:
            sys.exit(f"data/{name}: phantom options this tool cannot write: {', '.join(unknown)}")
        options = [a for k, v in sorted(d["options"].items()) for a in (PHANTOM_OPTIONS[k], str(v))]
        steps.append(
            {
                "name": f"data_{name}",
                "command": ["phantom", "--count", f"{{{count}}}", "--seed", str(d["seed"]), *options]
                + ["--workers", "{workers}", "--quiet", "--output", f"{{work}}/data/{name}"],
                "outputs": [f"{{work}}/data/{name}/dataset.json"],
            }
        )
    return steps


def replay(argv: list[str], run: str, previous: str | None, folders: dict, variables: dict) -> list[str]:
    """One recorded train command as a step's command: data folders in the work folder (each must have a data
    step), the epochs as a variable, the run it fine-tunes as the previous step's, the output as this run's."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("--data", "--val-data"):
            names = [Path(v).name for v in option_values(argv, a)]
            missing = [n for n in names if n not in folders]
            if missing:
                sys.exit(f"{run}: no data set is known for data/{', data/'.join(missing)}")
            out += [a, *(f"{{work}}/data/{n}" for n in names)]
            i += 1 + len(names)
            continue
        if a == "--epochs":
            variables[variable("epochs", run)] = argv[i + 1]
            out += [a, f"{{{variable('epochs', run)}}}"]
        elif a == "--init-weights":
            out += [a, f"{{work}}/runs/{previous}"]
        elif a == "--grid-axes":
            sys.exit(f"{run}: the recorded command already sets --grid-axes")
        elif a != "--output":
            out.append(a)
            i += 1
            continue
        i += 2
    return out


def train_steps(stem: str, card: dict, folders: dict, variables: dict) -> tuple[list[dict], str]:
    """The card's chain as train steps, each fine-tuning the one before; returns them and the last run's name.
    ``--resume``: a step interrupted by a stopped `make models` continues from its last epoch."""
    short = stem.replace("_landmarks", "")
    steps, previous = [], None
    for k, command in enumerate(chain(card["training"]), start=1):
        run, argv = f"{short}_{k}", shlex.split(command)[1:]
        if argv[0] != "train" or argv[-2:] != ["--output", "RUN"]:
            sys.exit(f"{stem}: not a train command ending in --output RUN: {command}")
        if ("--init-weights" in argv) != (previous is not None):
            sys.exit(f"{stem}: stage {k} of its chain should fine-tune stage {k - 1} and only then: {command}")
        out = replay(argv, run, previous, folders, variables)
        if card["modality"] == "us":
            out += ["--grid-axes", "probe"]
        steps.append(
            {
                "name": f"train_{run}",
                "command": [*out, "--quiet", "--resume", "--output", f"{{work}}/runs/{run}"],
                "outputs": [f"{{work}}/runs/{run}/finished.json"],
            }
        )
        previous = run
    return steps, previous


def two_stage_step(stem: str, card: dict) -> dict:
    stages = card["stages"]
    steps = []
    for s in card.get("postprocessing", []):
        params = ",".join(f"{k}={v:g}" for k, v in s.items() if k != "step")
        steps += ["--step", s["step"] + (f":{params}" if params else "")]
    return {
        "name": f"two_stage_{stem.split('_')[0]}",
        "command": ["two-stage", "--global", f"{{work}}/models/{stages['global']['card']}", "--local"]
        + [f"{{work}}/models/{c}" for c in stages["local"]["cards"]]
        + ["--iterations", str(stages["local"]["iterations"]), *steps, "--name", card["name"]]
        + ["--output", f"{{work}}/models/{stem}.json"],
        "outputs": [f"{{work}}/models/{stem}.json"],
    }


def experiment(cards: dict) -> dict:
    variables = {"workers": "2"}
    folders = folder_datasets(cards)
    steps = data_steps(folders, variables)
    exports, two_stage = [], []
    for stem, card in sorted(cards.items()):
        if card.get("stage") == "two-stage":
            two_stage.append(two_stage_step(stem, card))
            continue
        trains, last = train_steps(stem, card, folders, variables)
        steps += trains
        exports.append(
            {
                "name": f"export_{stem.replace('_landmarks', '')}",
                "command": ["export", f"{{work}}/runs/{last}", "--output", f"{{work}}/models/{stem}"]
                + ["--name", card["name"]],
                "outputs": [f"{{work}}/models/{stem}.json"],
            }
        )
    return {
        "name": "release_chain",
        "description": (
            f"The release-0.1 networks (commit {RELEASE}) rebuilt from random weights: the phantom data sets their "
            "cards list, every network's recorded fine-tuning chain in order, export under the release's names, and "
            "the release's two-stage cards, in {work}/models. Written by tools/write_release_chain.py from the "
            "release's cards (do not edit by hand). `make models` runs it, then mr_detector.json from its output "
            "(docs/research.md). Synthetic phantom data only. 12-16 hours on 2 cores at full size (estimated); "
            "Testing/test_make_models.py runs it with one epoch per step."
        ),
        "variables": variables,
        "steps": steps + exports + two_stage,
    }


def dumps(experiment: dict) -> str:
    """The layout of the other experiment files: one line per step."""
    head = {k: v for k, v in experiment.items() if k != "steps"}
    lines = json.dumps(head, indent=1)[:-2] + ',\n "steps": [\n'
    return lines + ",\n".join("  " + json.dumps(s) for s in experiment["steps"]) + "\n ]\n}\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help=f"exit 1 if {OUTPUT.name} is not what the cards give")
    args = parser.parse_args(argv)
    text = dumps(experiment(release_cards()))
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is not what the release cards give: run tools/write_release_chain.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
