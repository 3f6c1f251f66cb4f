"""`landmarkinit finetune`: site adaptation of a shipped detector under the held-out guard. The base is a two-stage
card over shipped MR stages (global + one local member, one pass, no mirror view: the cheapest real detector); the
site cases are the shipped sample case moved in space (the volume and its landmarks together), one epoch each."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.cli import main
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitResearch.training.finetune import guard_decision, split_cases
from LandmarkInitResearch.training.two_stage_card import write_two_stage_card

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "Resources" / "SampleData" / "phantom" / "case_0000"
MODELS = ROOT / "Resources" / "Models"


@pytest.fixture(scope="module")
def base_card(tmp_path_factory):
    return write_two_stage_card(
        MODELS / "mr_landmarks_g2l-global.json",
        MODELS / "mr_landmarks_g2l-local.json",
        tmp_path_factory.mktemp("base") / "mr_base.json",
        iterations=1,
    )


def write_site_dataset(root: Path, n: int, label_shift_mm, modality: str = "mr") -> Path:
    """``n`` site cases: the sample case's volume translated by a few mm (its landmarks with it), with a little
    noise of its own; corrected landmarks = the truth + ``label_shift_mm(i, key)`` (RAS mm)."""
    image = sitk.ReadImage(str(SAMPLE / f"{modality}.nrrd"))
    sigma = 0.02 * float(np.percentile(sitk.GetArrayViewFromImage(image), 99))
    doc = json.loads((SAMPLE / f"{modality}_landmarks.mrk.json").read_text())
    rng = np.random.default_rng(5)
    for i in range(n):
        key = f"{i:02d}" + "ab" * 31
        case = root / f"case_{key[:12]}"
        case.mkdir(parents=True)
        move = rng.uniform(-4, 4, 3)  # RAS mm
        moved = sitk.Cast(sitk.AdditiveGaussianNoise(image, sigma, 0.0, i + 1), image.GetPixelID())
        if modality == "us":
            moved = sitk.Mask(moved, sitk.Cast(image > 0, sitk.sitkUInt8))  # the fan's zero background stays 0
        moved.SetOrigin(tuple(np.array(image.GetOrigin()) + move * [-1, -1, 1]))
        sitk.WriteImage(moved, str(case / f"{modality}.nrrd"))
        shift = np.asarray(label_shift_mm(i, key), dtype=float)
        out = json.loads(json.dumps(doc))
        for point in out["markups"][0]["controlPoints"]:  # the file is LPS
            point["position"] = list(np.array(point["position"]) + (move + shift) * [-1, -1, 1])
        (case / f"{modality}_landmarks.mrk.json").write_text(json.dumps(out))
        (case / "case.json").write_text(json.dumps({"kind": "site-correction", "key": key}))
    return root


def test_split_is_fixed_by_the_case_keys():
    class C:
        def __init__(self, key):
            self.key = key

    keys = [f"{i:03d}" for i in range(23)]
    train, held = split_cases([C(k) for k in reversed(keys)])
    assert [c.key for c in held] == keys[::4] and len(train) == 17
    train, held = split_cases([C(k) for k in keys[:10]])
    assert [c.key for c in held] == keys[0:10:2]  # at least 5 held out
    train, held = split_cases([C(k) for k in keys[:17]])
    assert [c.key for c in held] == keys[0:17:3]


def test_guard_decision_exact_figures():
    base = [3.0, 4.0, 5.0, 6.0, 7.0]
    better = guard_decision(base, [2.0, 3.0, 4.0, 5.0, 6.0], 0.05)
    assert better["accepted"] and better["wilcoxon_p"] == pytest.approx(1 / 32)  # exact: all 5 lower
    assert better["base_mean_mm"] == 5.0 and better["finetuned_mean_mm"] == 4.0
    # lower mean, not significant: one case much better, the others a little worse (T+ = 1+2+3+4; 25 of the 32
    # sign patterns have T+ <= 10)
    mixed = guard_decision(base, [0.0, 4.1, 5.2, 6.3, 7.4], 0.05)
    assert not mixed["accepted"] and mixed["finetuned_mean_mm"] < 5.0 and "not significant" in mixed["reason"]
    assert mixed["wilcoxon_p"] == pytest.approx(25 / 32)
    # four of five better, one worse (rank 2): p = 3/32 > 0.05, refused; accepted at --alpha 0.1
    close = [2.9, 4.2, 4.7, 5.6, 6.5]
    assert guard_decision(base, close, 0.05)["wilcoxon_p"] == pytest.approx(3 / 32)
    assert not guard_decision(base, close, 0.05)["accepted"] and guard_decision(base, close, 0.1)["accepted"]
    worse = guard_decision(base, [4.0, 5.0, 6.0, 7.0, 8.0], 0.05)
    assert not worse["accepted"] and worse["wilcoxon_p"] == pytest.approx(1.0) and "not lower" in worse["reason"]
    same = guard_decision(base, base, 0.05)
    assert not same["accepted"] and same["wilcoxon_p"] == 1.0
    assert not guard_decision(base, [2.0, 3.0, 4.0, 5.0, 6.0], 0.01)["accepted"]  # --alpha is honoured


def test_guard_refuses_a_detector_fine_tuned_on_bad_corrections(base_card, tmp_path, capsys):
    """Training corrections 20 mm off (a bad site), held-out corrections true: the fine-tuned detector is worse
    on the held-out cases, and nothing is written."""
    held_out = {f"{i:02d}" + "ab" * 31 for i in range(0, 10, 2)}
    site = write_site_dataset(
        tmp_path / "site", 10, lambda i, key: [0.0, 0.0, 0.0] if key in held_out else [0.0, 20.0, 0.0]
    )
    out = tmp_path / "models" / "mr_landmarks.json"
    args = ["finetune", "--base", str(base_card), "--data", str(site), "--output", str(out), "--epochs", "1"]
    code = main([*args, "--lr", "1e-3", "--threads", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1, captured
    assert "refused: the fine-tuned detector does not beat the base on the 5 held-out site cases" in captured.err
    lines = captured.out.splitlines()
    mean = next(line for line in lines if line.startswith("mean"))
    base_mm, tuned_mm = map(float, mean.split()[1:])
    assert tuned_mm > base_mm + 1.0, captured.out  # the bad corrections made it worse
    assert "decision: refused" in captured.out and "Wilcoxon" in captured.out
    assert not (tmp_path / "models").exists()


def test_finetune_writes_a_card_with_provenance(tmp_path, capsys):
    """A site whose convention is 10 mm anterior of the shipped model's: fine-tuning the shipped MR global detector
    learns it, the guard accepts, and the card (in a models folder) records base, split and figures."""
    site = write_site_dataset(tmp_path / "site", 10, lambda i, key: [0.0, 10.0, 0.0])
    base = MODELS / "mr_landmarks_g2l-global.json"
    out = tmp_path / "models" / "mr_landmarks.json"
    args = ["finetune", "--base", str(base), "--data", str(site), "--output", str(out), "--epochs", "3"]
    code = main([*args, "--lr", "1e-3", "--threads", "2", "--quiet"])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "decision: accepted" in captured.out and f"wrote {out}" in captured.out
    assert sorted(p.name for p in out.parent.iterdir()) == ["mr_landmarks.json", "mr_landmarks.onnx", "mr_landmarks.pt"]
    card, shipped = load_card(out), load_card(base)
    assert card.stage == "global" and card.modality == "mr" and card.name == "mr_landmarks_g2l-global_site"
    assert card.grid == shipped.grid and card.grid.axes == "LPS" and card.normalization == shipped.normalization
    card.verified_weights("onnx"), card.verified_weights("torchscript")
    provenance = card.data["site_adaptation"]
    assert provenance["base"] == {
        "card": "mr_landmarks_g2l-global",
        "path": str(base),
        "sha256": hashlib.sha256(base.read_bytes()).hexdigest(),
    }
    assert provenance["site_cases"] == 10 and provenance["site_dataset"] == str(site)
    keys = sorted(json.loads((p / "case.json").read_text())["key"] for p in site.iterdir())
    assert provenance["split"]["held_out_cases"] == keys[::2] and provenance["split"]["train_cases"] == keys[1::2]
    guard = provenance["guard"]
    assert guard["accepted"] and guard["wilcoxon_p"] == pytest.approx(1 / 32) and guard["alpha"] == 0.05
    assert guard["finetuned_mean_mm"] == pytest.approx(np.mean(guard["finetuned_case_mm"]))
    assert guard["finetuned_mean_mm"] < guard["base_mean_mm"] - 3.0  # the 10 mm convention was learnt
    printed = next(line for line in captured.out.splitlines() if line.startswith("mean")).split()[1:]
    assert [float(v) for v in printed] == [round(guard["base_mean_mm"], 2), round(guard["finetuned_mean_mm"], 2)]
    assert provenance["command"].startswith(f"landmarkinit finetune --base {base} --data {site} --output {out}")
    assert provenance["date"].endswith("+00:00")
    trained = card.data["training"]
    assert trained["fine_tuned_from"]["sha256"] == shipped.data["files"]["torchscript"]["sha256"]
    assert trained["epochs"] == 3 and trained["lr"] == 1e-3 and trained["domain_randomization"] is True
    assert card.data["qa"]["spread_limit_mm"] == shipped.data["qa"]["spread_limit_mm"]


def test_clear_errors_before_any_training(base_card, tmp_path, capsys):
    out = tmp_path / "m" / "mr_landmarks.json"
    few = write_site_dataset(tmp_path / "few", 7, lambda i, key: [0.0, 0.0, 0.0])
    assert main(["finetune", "--base", str(base_card), "--data", str(few), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "has 7 usable MR case(s)" in err and "needs at least 10" in err
    us_only = write_site_dataset(tmp_path / "us", 10, lambda i, key: [0.0, 0.0, 0.0], modality="us")
    assert main(["finetune", "--base", str(base_card), "--data", str(us_only), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "is an MR detector but the site dataset" in err and "holds no MR cases (10 US case(s))" in err
    local = MODELS / "mr_landmarks_g2l-local.json"
    assert main(["finetune", "--base", str(local), "--data", str(few), "--output", str(out)]) == 2
    assert "is a local model card: give a two-stage card" in capsys.readouterr().err
    assert not out.parent.exists()
    out.parent.mkdir()
    (out.parent / "mr_landmarks_g2l-local.pt").write_bytes(b"a file of the folder")  # a stage file would be replaced
    assert main(["finetune", "--base", str(base_card), "--data", str(few), "--output", str(out)]) == 2
    assert "mr_landmarks_g2l-local.pt already exist(s); pass --force to overwrite" in capsys.readouterr().err
