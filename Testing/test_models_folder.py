"""A models folder (``--models DIR``; the Models folder setting of the Slicer module and the browser app): its cards
replace the shipped ones, report.json and the status lines name the model that ran and where it came from, a folder
that cannot be used is refused in one line before any work, and a batch redoes its cases when the folder changes.
Real shipped models, copied into tmp_path."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from LandmarkInitLib.cli import main
from LandmarkInitLib.resources import default_model_card, sample_case_dir

MODELS = default_model_card("mr").parent
CASE = sample_case_dir()


def copy_card(card: Path, folder: Path, as_name: str | None = None) -> Path:
    """Copy a shipped card, its stage cards and their weights files into ``folder`` (the card as ``as_name``)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.loads(card.read_text())
    names = [entry.get("card") for entry in data.get("stages", {}).values()]
    names += [c for entry in data.get("stages", {}).values() for c in entry.get("cards", [])]
    for name in filter(None, names):
        copy_card(MODELS / name, folder)
    for entry in data.get("files", {}).values():
        shutil.copyfile(MODELS / entry["path"], folder / entry["path"])
    target = folder / (as_name or card.name)
    shutil.copyfile(card, target)
    return target


def fast_folder(folder: Path, modality: str = "mr", as_modality: str | None = None) -> Path:
    """A models folder whose <as_modality>_landmarks.json is the shipped global stage of ``modality`` (tens of ms)."""
    copy_card(MODELS / f"{modality}_landmarks_g2l-global.json", folder, f"{as_modality or modality}_landmarks.json")
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_pair(out: Path, *extra) -> int:
    return main(["run", "--mr", str(CASE / "mr.nrrd"), "--us", str(CASE / "us.nrrd"), "-o", str(out)] + list(extra))


def test_run_with_a_copy_of_the_shipped_cards_names_the_folder(tmp_path, capsys):
    site = tmp_path / "site"
    card = copy_card(MODELS / "mr_landmarks.json", site)  # the shipped two-stage MR detector; no US card
    assert run_pair(tmp_path / "out", "--models", str(site)) in (0, 3)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    mr, us = report["models"]["mr"], report["models"]["us"]
    assert (mr["name"], mr["folder"], mr["card_sha256"]) == (
        "mr_landmarks_two-stage",
        str(site.resolve()),
        sha256(card),
    )
    assert mr["card"] == str(card) and len(mr["weights"]) == 6  # the weights of its stages are still listed
    assert (us["name"], us["folder"]) == ("us_landmarks_two-stage", "shipped")  # absent from the folder: shipped
    assert us["card_sha256"] == sha256(MODELS / "us_landmarks.json")
    printed = capsys.readouterr().out
    line = (
        f"MR model: mr_landmarks_two-stage (from {site.resolve()}, card sha256 {sha256(card)[:12]}); "
        f"US model: us_landmarks_two-stage (shipped, card sha256 {us['card_sha256'][:12]})"
    )
    assert line in printed.splitlines()
    html = (tmp_path / "out" / "report.html").read_text()
    assert f"MR model: mr_landmarks_two-stage (from {site.resolve()}" in html


def test_an_explicit_card_wins_over_the_folder_and_detect_takes_the_folder(tmp_path, capsys):
    site = fast_folder(tmp_path / "site", "us")
    mr_card = MODELS / "mr_landmarks_g2l-global.json"
    assert run_pair(tmp_path / "out", "--models", str(site), "--mr-model", str(mr_card)) in (0, 3)
    models = json.loads((tmp_path / "out" / "report.json").read_text())["models"]
    assert (models["mr"]["name"], models["mr"]["folder"]) == ("mr_landmarks_g2l-global", "shipped")
    assert (models["us"]["name"], models["us"]["folder"]) == ("us_landmarks_g2l-global", str(site.resolve()))
    out = tmp_path / "us.mrk.json"
    args = ["detect", "--volume", str(CASE / "us.nrrd"), "--modality", "us", "--output", str(out)]
    assert main(args + ["--models", str(site)]) == 0
    sidecar = json.loads((tmp_path / "us.detection.json").read_text())
    assert sidecar["model_folder"] == str(site.resolve())
    assert sidecar["model_card_sha256"] == sha256(site / "us_landmarks.json")
    assert f"US model: us_landmarks_g2l-global (from {site.resolve()}, card sha256 " in capsys.readouterr().out


def tampered(folder: Path) -> str:
    fast_folder(folder)
    with (folder / "mr_landmarks_g2l-global.onnx").open("ab") as f:
        f.write(b"\0")
    actual = sha256(folder / "mr_landmarks_g2l-global.onnx")
    expected = json.loads((MODELS / "mr_landmarks_g2l-global.json").read_text())["files"]["onnx"]["sha256"]
    return (
        f"models folder {folder}: mr_landmarks.json cannot be used: {(folder / 'mr_landmarks_g2l-global.onnx')} "
        f"does not match its model card (sha256 {actual[:12]}... instead of {expected[:12]}...): the file was "
        "altered or belongs to another model; reinstall the model files"
    )


def swapped(folder: Path) -> str:
    fast_folder(folder, "mr", as_modality="us")  # an MR card as us_landmarks.json
    return (
        f"models folder {folder}: us_landmarks.json is an MR model (modality 'mr'), not US; put the MR card in "
        "mr_landmarks.json"
    )


def missing(folder: Path) -> str:
    return (
        f"models folder {folder} does not exist; give the folder that holds mr_landmarks.json and/or "
        "us_landmarks.json (what finetune --output wrote), or give no models folder to use the shipped models"
    )


def empty(folder: Path) -> str:
    folder.mkdir()
    (folder / "mr_landmarks_g2l-global.json").write_text("{}")  # not named as a models folder's card
    return (
        f"models folder {folder} holds neither mr_landmarks.json nor us_landmarks.json; give the folder finetune "
        "--output wrote into, or give no models folder to use the shipped models"
    )


def no_stage_cards(folder: Path) -> str:
    folder.mkdir()
    shutil.copyfile(MODELS / "mr_landmarks.json", folder / "mr_landmarks.json")  # the two-stage card alone
    return (
        f"models folder {folder}: mr_landmarks.json names the global stage card mr_landmarks_g2l-global.json, which "
        "is not in the folder; copy every file finetune wrote (cards and weights) into it"
    )


@pytest.mark.parametrize("make", [tampered, swapped, missing, empty, no_stage_cards])
def test_a_folder_that_cannot_be_used_is_refused_before_any_work(make, tmp_path, capsys):
    expected = make(tmp_path / "site")
    out = tmp_path / "out"
    assert run_pair(out, "--models", str(tmp_path / "site")) == 2
    assert capsys.readouterr().err == f"landmarkinit run: error: {expected}\n"
    assert not out.exists()
    cases = tmp_path / "cases.csv"
    cases.write_text(f"case,mr,us\na,{CASE / 'mr.nrrd'},{CASE / 'us.nrrd'}\n")
    assert main(["run", "--cases", str(cases), "-o", str(out), "--quiet", "--models", str(tmp_path / "site")]) == 2
    assert capsys.readouterr().err == f"landmarkinit run: error: {expected}\n"  # once, not once per case
    assert not out.exists()


def test_a_batch_redoes_its_cases_when_the_models_folder_changes(tmp_path, capsys):
    fast = ["--mr-model", str(MODELS / "mr_landmarks_g2l-global.json")]
    site = fast_folder(tmp_path / "site", "us")  # the shipped US global stage, copied: same weights
    with (tmp_path / "cases.csv").open("w", newline="") as f:
        csv.writer(f).writerows([["case", "mr", "us"], ["a", CASE / "mr.nrrd", CASE / "us.nrrd"]])
    out = tmp_path / "out"

    def run(*extra) -> dict:
        main(["run", "--cases", str(tmp_path / "cases.csv"), "-o", str(out), "--quiet", *fast, *extra])
        return json.loads((out / "batch_summary.json").read_text())

    run("--us-model", str(MODELS / "us_landmarks_g2l-global.json"))
    capsys.readouterr()
    summary = run("--models", str(site))
    assert summary["outcomes"][0]["redone"] == "settings changed since the earlier result (US model); redone"
    assert summary["models"]["us"]["folder"] == str(site.resolve())
    printed = capsys.readouterr().out
    assert f"US model: us_landmarks_g2l-global (from {site.resolve()}, card sha256 " in printed
    assert run("--models", str(site))["outcomes"][0].get("resumed")
    other = fast_folder(tmp_path / "other", "us")  # the same card file in another folder: another setting
    assert run("--models", str(other))["outcomes"][0]["redone"].endswith("(US model); redone")


def test_the_session_uses_the_models_folder_and_names_it(context, tmp_path):
    """The Slicer module and the browser app hand their Models folder setting to the session."""
    from LandmarkInitLib.detection.models_folder import ModelsFolderError
    from LandmarkInitLib.io.volumes import load_volume
    from LandmarkInitLib.session import LandmarkSession

    mr = load_volume(context, CASE / "mr.nrrd", "MR")
    us = load_volume(context, CASE / "us.nrrd", "US")
    site = fast_folder(tmp_path / "site", "mr")
    session = LandmarkSession(context, mr, us, detector="g2l-global", backend="onnx", models_folder=Path("."))
    assert session.models_folder is None  # an empty path field (Slicer's Path() is ".") means the shipped models
    session.detect()
    assert session.models_text.startswith("MR model: mr_landmarks_g2l-global (shipped, card sha256 ")
    session.models_folder = site
    session.detect(overwrite_edits=True)
    assert session.models_text.startswith(f"MR model: mr_landmarks_g2l-global (from {site.resolve()}, card sha256 ")
    assert "; US model: us_landmarks_g2l-global (shipped, card sha256 " in session.models_text
    session.models_folder = tmp_path / "nowhere"
    with pytest.raises(ModelsFolderError, match="does not exist"):
        session.detect(overwrite_edits=True)
    session.close()


def test_the_slicer_module_hands_its_models_folder_to_the_session():
    """modelsFolder (connected to its widget: test_slicer_module.py) reaches the session when it is opened and at
    every Detect, and the status label shows which models made the detections."""
    import ast

    module = Path(__file__).resolve().parents[1] / "LandmarkInit" / "LandmarkInit.py"
    functions = {
        n.name: ast.unparse(n) for n in ast.walk(ast.parse(module.read_text())) if isinstance(n, ast.FunctionDef)
    }
    assert "models_folder=p.modelsFolder" in functions["_openSession"]
    assert "self.session.models_folder = p.modelsFolder" in functions["onDetect"]
    assert "s.models_text" in functions["updateGui"]
