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
commands train the same networks with ``--grid-axes probe``). Testing/test_make_models.py runs the check.
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


def data_steps(cards: dict, variables: dict) -> list[dict]:
    folders = {VALIDATION["folder"]: VALIDATION}
    for card in cards.values():
        if "training" not in card:
            continue
        datasets = card["training"]["dataset"]
        datasets = [datasets] if isinstance(datasets, dict) else datasets
        argv = shlex.split(card["training"]["command"])
        names = [Path(a).name for a in argv[argv.index("--data") + 1 : argv.index("--val-data")]]
        if len(names) != len(datasets):
            sys.exit(f"{card['name']}: {len(names)} --data folders but {len(datasets)} dataset entries")
        for name, d in zip(names, datasets, strict=True):
            if d.get("first_index", 0) != 0:
                sys.exit(f"{card['name']}: dataset {name} does not start at case 0")
            entry = {"folder": name, "seed": d["seed"], "count": d["count"], "options": d.get("options", {})}
            known = folders.setdefault(name, entry)
            defaults = {"rectum_lateral_mm": 4.0}  # the generator's default, omitted by early cards
            if {**defaults, **known["options"]} != {**defaults, **entry["options"]} or known["seed"] != d["seed"]:
                sys.exit(f"data/{name} means two datasets: {known} and {entry}")
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


def train_steps(stem: str, card: dict, variables: dict) -> tuple[list[dict], str]:
    """The card's chain as train steps; returns them and the last run's folder."""
    short = stem.replace("_landmarks", "")
    steps, previous = [], None
    for k, command in enumerate(chain(card["training"]), start=1):
        run, argv, out = f"{short}_{k}", shlex.split(command)[1:], []
        if argv[0] != "train":
            sys.exit(f"{stem}: not a train command: {command}")
        i = 0
        while i < len(argv):
            a = argv[i]
            if a in ("--data", "--val-data"):
                out.append(a)
                i += 1
                while i < len(argv) and not argv[i].startswith("--"):
                    out.append(f"{{work}}/data/{Path(argv[i]).name}")
                    i += 1
                continue
            if a == "--epochs":
                epochs = variable("epochs", run)
                variables[epochs] = argv[i + 1]
                out += [a, f"{{{epochs}}}"]
            elif a == "--init-weights":
                if previous is None:
                    sys.exit(f"{stem}: the innermost command of its chain fine-tunes ({command})")
                out += [a, f"{{work}}/runs/{previous}"]
            elif a == "--output":
                out += [a, f"{{work}}/runs/{run}"]
            else:
                out.append(a)
                i += 1
                continue
            i += 2
        if previous is not None and "--init-weights" not in out:
            sys.exit(f"{stem}: stage {k} of its chain does not fine-tune stage {k - 1}")
        if card["modality"] == "us":
            out[-2:-2] = ["--grid-axes", "probe"]
        steps.append(
            {
                "name": f"train_{run}",
                "command": [*out[:-2], "--quiet", *out[-2:]],
                "outputs": [f"{{work}}/runs/{run}/best.pt"],
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
    steps = data_steps(cards, variables)
    exports, two_stage = [], []
    for stem, card in sorted(cards.items()):
        if card.get("stage") == "two-stage":
            two_stage.append(two_stage_step(stem, card))
            continue
        trains, last = train_steps(stem, card, variables)
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
