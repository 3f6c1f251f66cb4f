"""Write docs/bad-input.md by running the `landmarkinit` commands on a catalogue of bad inputs and recording what
each one says: the exit status and the one line on stderr. The page is what the code does, not what we think it
does.

    .venv/bin/python tools/write_bad_input_doc.py            # rewrite docs/bad-input.md
    .venv/bin/python tools/write_bad_input_doc.py --check    # exit 1 if the page is not what the commands say

Each entry also states the exit status it must give; a different status, a traceback, more than one line on
stderr, or a file created by a refusal fails the run (Testing/test_docs.py runs --check).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "bad-input.md"
SAMPLE = ROOT / "Resources" / "SampleData" / "phantom" / "case_0000"
LANDMARKS = ROOT / "Resources" / "SampleData" / "landmarks"
MODELS = ROOT / "Resources" / "Models"
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class BadInput:
    command: str
    what: str  # the bad input, as the docs name it
    argv: tuple[str, ...]  # {W} is the workspace folder, {M} the shipped models folder
    exit: int = EXIT_BAD_INPUT
    usage: bool = False  # an argparse usage error: its usage lines come before the one error line


def register(what, *options, moving="mr.mrk.json", output="out/t.h5", usage=False):
    argv = ("register", "--moving-landmarks", f"{{W}}/{moving}", "--fixed-landmarks", "{W}/us.mrk.json")
    return BadInput("register", what, (*argv, "--output", f"{{W}}/{output}", *options), usage=usage)


def detect(what, volume, *options, modality="mr", output="out/d.mrk.json", usage=False):
    argv = ("detect", "--volume", f"{{W}}/{volume}", "--modality", modality, "--output", f"{{W}}/{output}")
    return BadInput("detect", what, (*argv, *options), usage=usage)


def run(what, *options, mr="mr.nrrd", us="us.nrrd", output="out/run", usage=False):
    pair = ("--mr", f"{{W}}/{mr}", "--us", f"{{W}}/{us}") if mr else ()
    return BadInput("run", what, ("run", *pair, "--output-dir", f"{{W}}/{output}", *options), usage=usage)


def from_mask(what, mask, *options, output="out/m.mrk.json"):
    argv = ("landmarks-from-mask", "--mask", f"{{W}}/{mask}", "--output", f"{{W}}/{output}")
    return BadInput("landmarks-from-mask", what, (*argv, *options))


def batch(what, cases, *options, usage=False):
    return run(what, "--cases", f"{{W}}/{cases}", "--quiet", *options, mr=None, output="out/batch", usage=usage)


CATALOGUE = (
    register("a landmarks file that does not exist", moving="nothing.mrk.json"),
    register("a landmarks file of an unknown format", moving="points.txt"),
    register("a `.mrk.json` that is not JSON", moving="broken.mrk.json"),
    register("a `.mrk.json` holding two point lists", moving="two_lists.mrk.json"),
    register("a `.mrk.json` whose point is marked missing (skipped) in Slicer", moving="skipped.mrk.json"),
    register("a landmark label missing", moving="two_points.mrk.json"),
    register("an `.fcsv` with other columns (`id,x,y,label`)", moving="wrong_columns.fcsv"),
    register("a `.csv` `label,x,y,z` that does not state its coordinate system", moving="unstated.csv"),
    register(
        "Slicer's *Export to CSV* (`label,l,p,s,...`) with `--csv-coordinate-system RAS`",
        "--csv-coordinate-system",
        "RAS",
        moving="slicer_export_lps.csv",
    ),
    register("three points on a line", moving="collinear.mrk.json"),
    register("`--report` naming an input, even with `--force`", "--report", "{W}/mr.mrk.json", "--force"),
    register("`--output` and `--report` naming the same file", "--report", "{W}/out/t.h5"),
    register("an output that exists (without `--force`)", output="existing.h5"),
    register("an output of an unknown format", output="out/t.xfm"),
    register("an output folder that does not exist", output="nowhere/t.h5"),
    register("an output whose folder is a file", output="a_file/t.h5"),
    detect("a volume that does not exist", "nothing.nrrd"),
    detect("a folder without DICOM files as the volume", "empty_folder"),
    detect("a truncated NRRD", "truncated.nrrd"),
    detect("a file that is not an image, named `.nrrd`", "text.nrrd"),
    detect("an MR volume with `--modality us`", "mr.nrrd", modality="us"),
    detect("a volume of constant intensity", "constant.nrrd"),
    detect("an output name other than `.mrk.json`", "mr.nrrd", output="out/d.json"),
    detect("`--threads 0`", "mr.nrrd", "--threads", "0", usage=True),
    from_mask("an empty mask", "empty_mask.nrrd"),
    from_mask("a mask in two separate pieces", "two_pieces.nrrd"),
    from_mask("a mask holding two labels, without `--label`", "two_labels.nrrd"),
    from_mask("`--label` naming a label the mask does not hold", "two_labels.nrrd", "--label", "5"),
    from_mask("an image given as the mask", "mr.nrrd"),
    run("the same file as MR and US", us="mr.nrrd"),
    run("an input that does not exist", mr="nothing.nrrd"),
    run("a folder without DICOM files as a volume", mr="empty_folder"),
    run("MR and US given the wrong way round", mr="us.nrrd", us="mr.nrrd"),
    run("an output folder that is a file", output="a_file"),
    run("an output folder that holds a result (without `--force`)", output="done"),
    run("`--qa-thresholds` that is not JSON", "--qa-thresholds", "{W}/points.txt"),
    batch("a `--cases` CSV with a case named `../escape`", "escape.csv"),
    batch("a `--cases` CSV without the `us` column", "no_us_column.csv"),
    batch("`--workers 0`", "escape.csv", "--workers", "0", usage=True),
    run("neither `--mr`/`--us` nor `--cases`", mr=None, output="out/none"),
    run("`--models` naming a folder that does not exist", "--models", "{W}/nowhere"),
    run("`--models` naming a folder without model cards", "--models", "{W}/empty_folder"),
    run("`--models` whose `us_landmarks.json` is an MR model", "--models", "{W}/swapped_models"),
    BadInput(
        "add-correction",
        "`--case` naming a folder that is not a `run` output",
        ("add-correction", "--case", "{W}/empty_folder", "--site-dataset", "{W}/out/site"),
    ),
    BadInput(
        "calibrate-flags",
        "a `--data` folder without corrected cases",
        ("calibrate-flags", "--data", "{W}/empty_folder", "--output", "{W}/out/qa.json"),
    ),
    BadInput(
        "finetune",
        "a site dataset with fewer than 10 cases",
        ("finetune", "--base", "{M}/mr_landmarks.json", "--data", "{W}/empty_folder", "--output", "{W}/out/m.json"),
    ),
    BadInput(
        "finetune",
        "a local (refinement) card as the base",
        ("finetune", "--base", "{M}/mr_landmarks_g2l-local.json", "--data", "{W}/done", "--output", "{W}/out/m.json"),
    ),
)


def make_workspace(w: Path) -> None:
    """The files the catalogue's commands are given."""
    for name in ("mr.nrrd", "us.nrrd"):
        shutil.copy(SAMPLE / name, w / name)
    shutil.copy(LANDMARKS / "mr_landmarks.mrk.json", w / "mr.mrk.json")
    shutil.copy(LANDMARKS / "us_landmarks.mrk.json", w / "us.mrk.json")
    (w / "out").mkdir()
    (w / "empty_folder").mkdir()
    (w / "a_file").write_text("a file where a folder is expected\n")
    (w / "existing.h5").write_text("an earlier result\n")
    (w / "points.txt").write_text("apex 1 2 3\n")
    (w / "broken.mrk.json").write_text('{"markups": [')
    (w / "text.nrrd").write_text("this is not an image\n")
    data = (SAMPLE / "mr.nrrd").read_bytes()
    (w / "truncated.nrrd").write_bytes(data[: len(data) // 2])
    constant = sitk.Image(40, 40, 20, sitk.sitkInt16) + 100
    constant.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(constant, str(w / "constant.nrrd"))

    masks = np.zeros((20, 30, 30), dtype=np.uint8)  # [k, j, i]
    sitk.WriteImage(sitk.GetImageFromArray(masks), str(w / "empty_mask.nrrd"))
    masks[2:8, 5:15, 5:15] = 1
    masks[12:18, 5:15, 5:15] = 1
    sitk.WriteImage(sitk.GetImageFromArray(masks), str(w / "two_pieces.nrrd"))
    masks[8:12, 5:15, 5:15] = 1
    masks[2:18, 18:25, 5:15] = 3
    sitk.WriteImage(sitk.GetImageFromArray(masks), str(w / "two_labels.nrrd"))

    markups = json.loads((LANDMARKS / "mr_landmarks.mrk.json").read_text())
    points = markups["markups"][0]["controlPoints"]

    def write_markups(name, lists):
        (w / name).write_text(json.dumps({**markups, "markups": lists}, indent=2))

    first = markups["markups"][0]
    write_markups("two_lists.mrk.json", [first, {**first, "name": "second list"}])
    write_markups(
        "skipped.mrk.json", [{**first, "controlPoints": [*points[:2], {**points[2], "positionStatus": "missing"}]}]
    )
    write_markups("two_points.mrk.json", [{**first, "controlPoints": points[:2]}])
    line = [{**p, "position": [0.0, 0.0, 10.0 * i]} for i, p in enumerate(points)]
    write_markups("collinear.mrk.json", [{**first, "controlPoints": line}])
    ras = np.array([p["position"] for p in points]) * [-1, -1, 1]  # the file holds LPS
    labels = [p["label"] for p in points]
    (w / "wrong_columns.fcsv").write_text(
        "# Markups fiducial file version = 4.11\n# CoordinateSystem = LPS\n# columns = id,x,y,label\n"
        + "".join(f"{i},{p[0]},{p[1]},{lab}\n" for i, (p, lab) in enumerate(zip(ras, labels, strict=True)))
    )
    (w / "unstated.csv").write_text(
        "label,x,y,z\n" + "".join(f"{lab},{p[0]},{p[1]},{p[2]}\n" for p, lab in zip(ras, labels, strict=True))
    )
    lps = ras * [-1, -1, 1]
    (w / "slicer_export_lps.csv").write_text(
        "label,l,p,s,defined,selected,visible,locked,description\n"
        + "".join(f"{lab},{p[0]},{p[1]},{p[2]},1,1,1,0,\n" for p, lab in zip(lps, labels, strict=True))
    )
    (w / "escape.csv").write_text("case,mr,us\n../escape,mr.nrrd,us.nrrd\n")
    (w / "no_us_column.csv").write_text("case,mr\nc1,mr.nrrd\n")
    swapped = w / "swapped_models"  # a models folder whose US card holds the MR detector
    swapped.mkdir()
    for card in MODELS.glob("mr_landmarks*.json"):
        shutil.copy(card, swapped / card.name)
    for weights in [*MODELS.glob("mr_landmarks_g2l-*.onnx"), *MODELS.glob("mr_landmarks_g2l-*.pt")]:
        (swapped / weights.name).symlink_to(weights)
    shutil.copy(MODELS / "mr_landmarks.json", swapped / "us_landmarks.json")
    (w / "done").mkdir()
    (w / "done" / "report.json").write_text("{}\n")


def run_command(argv: list[str]) -> tuple[int, str]:
    """Run the command in this process; (exit status, stderr). A traceback is reported, not raised."""
    from LandmarkInitLib.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse
            code = e.code if isinstance(e.code, int) else 2
        except BaseException as e:  # noqa: BLE001 - a traceback is exactly what this catalogue must catch
            return -1, f"TRACEBACK {type(e).__name__}: {e}"
    return code, err.getvalue()


def tree(w: Path) -> dict[str, str]:
    """Relative path -> content hash ("" for folders)."""
    return {
        str(p.relative_to(w)): "" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(w.rglob("*"))
    }


def measure() -> tuple[list[tuple[BadInput, int, str]], list[str]]:
    rows, problems = [], []
    with tempfile.TemporaryDirectory() as tmp:
        pristine, w = Path(tmp).resolve() / "pristine", Path(tmp).resolve() / "w"
        pristine.mkdir()
        make_workspace(pristine)
        before = tree(pristine)
        for case in CATALOGUE:
            shutil.copytree(pristine, w, symlinks=True)  # every entry starts from the same files
            argv = [a.replace("{W}", str(w)).replace("{M}", str(MODELS)) for a in case.argv]
            code, stderr = run_command(argv)
            lines = [line for line in stderr.splitlines() if line.strip()]
            said = lines[-1] if lines else ""
            said = said.replace(str(w) + os.sep, "").replace(str(w), ".").replace(str(MODELS), "Resources/Models")
            if code != case.exit:
                problems.append(f"{case.command}: {case.what}: exit {code}, expected {case.exit}: {said}")
            message_lines = [line for line in lines if line.startswith("landmarkinit")] if case.usage else lines
            if len(message_lines) != 1 or "Traceback" in stderr or said.startswith("TRACEBACK"):
                problems.append(f"{case.command}: {case.what}: stderr is not one line: {stderr!r}")
            after = tree(w)
            created = sorted(set(after) - set(before))
            changed = sorted(p for p in before if after.get(p) != before[p])
            if created or changed:
                problems.append(f"{case.command}: {case.what}: created {created}, changed or removed {changed}")
            shutil.rmtree(w)
            rows.append((case, code, said))
    return rows, problems


def render(rows) -> str:
    lines = [
        "# Bad input: what each command says",
        "",
        "Generated by `tools/write_bad_input_doc.py`, which runs every command below on the bad input named and",
        "records its exit status and the one line it prints on stderr (paths are shown relative to the folder the",
        "commands ran in). Every refusal happens before anything is computed or written: no output file and no",
        "folder is created, and inputs are never modified. Exit status 2 means bad input or bad usage.",
        "",
    ]
    for command in dict.fromkeys(case.command for case, _, _ in rows):
        lines += [f"## `landmarkinit {command}`", "", "| given | exit | says |", "| --- | --- | --- |"]
        for case, code, said in rows:
            if case.command == command:
                text = said.replace("|", "\\|")
                lines.append(
                    f"| {case.what} | {code} | `{text}` |" if "`" not in text else f"| {case.what} | {code} | {text} |"
                )
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with docs/bad-input.md instead of writing it")
    args = parser.parse_args()
    rows, problems = measure()
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    text = render(rows)
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(
                f"{OUTPUT.relative_to(ROOT)} is not what the commands say: run tools/write_bad_input_doc.py",
                file=sys.stderr,
            )
            return 1
        return 1 if problems else 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(rows)} bad inputs)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
