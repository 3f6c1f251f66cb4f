"""`landmarkinit evaluate-real-mr` end to end on a PROMISE12-like folder made from the phantom sample case (its MR
as t2.nii.gz, its gland as gland.nii.gz), and the committed real-MR split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from LandmarkInitLib.cli import EXIT_BAD_INPUT, EXIT_OK, main
from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitLib.mask_landmarks import landmarks_from_mask_file
from LandmarkInitLib.resources import sample_case_dir
from LandmarkInitResearch.evaluation import real_mr

MR_CARD = sample_case_dir().parents[2] / "Models" / "mr_landmarks.json"
PROMISE12_CSV = Path("/work/shared/data/promise12/cases.csv")


@pytest.fixture(scope="module")
def real_like(tmp_path_factory):
    """Two cases (the same sample MR), one held out and one in a cross-validation fold, and their split file."""
    root = tmp_path_factory.mktemp("promise12")
    data = root / "data"
    for case in ("caseA", "caseB"):
        (data / case).mkdir(parents=True)
        sitk.WriteImage(sitk.ReadImage(str(sample_case_dir() / "mr.nrrd")), str(data / case / "t2.nii.gz"))
        sitk.WriteImage(sitk.ReadImage(str(sample_case_dir() / "mr_gland.nrrd")), str(data / case / "gland.nii.gz"))
    split = root / "split.json"
    split.write_text(json.dumps({"held_out_test": ["caseA"], "cross_validation": [["caseB"], []]}))
    return data, split


def test_evaluate_real_mr_reports_the_errors_against_the_mask_landmarks(real_like, tmp_path, capsys):
    data, split = real_like
    out = tmp_path / "out"
    args = ["evaluate-real-mr", "--data", str(data), "--models", str(MR_CARD), "--output-dir", str(out)]
    assert main([*args, "--split", str(split), "--quiet"]) == EXIT_OK
    # what the figures must be: the detector on t2.nii.gz against the landmarks of gland.nii.gz
    detection = open_detector(MR_CARD).detect_file(data / "caseA" / "t2.nii.gz")
    reference = landmarks_from_mask_file(data / "caseA" / "gland.nii.gz").ordered(LANDMARK_LABELS)
    errors = np.linalg.norm(detection.points_ras - reference, axis=1)
    length = np.linalg.norm(reference[0] - reference[1])  # apex to bladder neck
    flagged = real_mr.landmark_flagged(detection.flags)

    doc = json.loads((out / "results.json").read_text())
    (name,) = doc["cases"]
    for case, group, fold in (("caseA", "held_out_test", None), ("caseB", "cross_validation", 0)):
        row = doc["cases"][name][case]
        assert (row["group"], row["fold"]) == (group, fold)
        assert row["apex_to_bladder_neck_mm"] == pytest.approx(length, abs=1e-3)
        for lb, e in zip(LANDMARK_LABELS, errors, strict=True):
            assert row["errors_mm"][lb] == pytest.approx(e, abs=1e-3)
            assert row["errors_pct"][lb] == pytest.approx(100 * e / length, abs=1e-3)
        assert row["flagged"] == flagged and row["flags"] == detection.flags
    s = doc["summary"][name]["held_out_test"]["all"]
    assert s["mean_mm"] == pytest.approx(errors.mean(), abs=1e-3) and s["n"] == 3
    assert s["within_5mm_pct"] == pytest.approx(100 * np.mean(errors <= 5))
    assert s["over_10mm"] == int(np.sum(errors > 10))
    assert s["over_10mm_flagged"] == sum(flagged[lb] for lb, e in zip(LANDMARK_LABELS, errors, strict=True) if e > 10)
    # no coordinate leaves the data folder: neither the reference nor the detected points are in the outputs
    text = (out / "results.json").read_text() + (out / "report.md").read_text()
    for value in np.concatenate([reference.ravel(), detection.points_ras.ravel()]):
        assert f"{value:.3f}" not in text and f"{value:.2f}" not in text

    report = (out / "report.md").read_text()
    assert report == capsys.readouterr().out.rstrip("\n") + "\n"
    assert "Real patient images: PROMISE12 T2-weighted prostate MR, under the data's nominal geometry" in report
    assert "Reference: the landmarks derived from each expert gland mask" in report
    assert f"{name} (`{MR_CARD}`)" in report
    pl = dict(zip(LANDMARK_LABELS, errors, strict=True))
    assert (
        f"| apex | {name} | 1 | {pl['apex']:.1f} | {pl['apex']:.1f} | {100 * pl['apex'] / length:.1f} | "
        f"{100 * pl['apex'] / length:.1f} | {100 * (pl['apex'] <= 5):.0f} | {100 * (pl['apex'] <= 10):.0f} |"
    ) in report
    assert f"| all | {name} | 3 | {errors.mean():.1f} | {np.median(errors):.1f} |" in report
    assert report.count("## ") == 3 and "No cases." not in report


def test_cross_validation_detects_each_pool_case_with_its_own_fold_s_card_only(real_like, tmp_path, capsys):
    data, _ = real_like
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"held_out_test": ["caseA"], "cross_validation": [["caseB"], []]}))
    other = MR_CARD.with_name("mr_landmarks_dsnt-dist.json")  # another MR network: other errors
    args = ["evaluate-real-mr", "--data", str(data), "--split", str(split), "-o", str(tmp_path / "o"), "--quiet"]
    models = ["--models", str(MR_CARD), str(MR_CARD)]  # the same card twice: two runs of one recipe, kept apart
    assert main([*args, *models, "--cross-validation", str(other), str(MR_CARD)]) == EXIT_OK
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    name = load_card(MR_CARD).name
    assert list(doc["cases"]) == [name, f"{name} #2", real_mr.CROSS_VALIDATED]
    reference = landmarks_from_mask_file(data / "caseB" / "gland.nii.gz").ordered(LANDMARK_LABELS)
    errors = np.linalg.norm(
        open_detector(other).detect_file(data / "caseB" / "t2.nii.gz").points_ras - reference, axis=1
    )
    (row,) = doc["cases"][real_mr.CROSS_VALIDATED].values()  # caseB only: the held-out case is not in the pool
    assert (row["group"], row["fold"]) == ("cross_validation", 0)
    assert [row["errors_mm"][lb] for lb in LANDMARK_LABELS] == pytest.approx(errors, abs=1e-3)
    assert doc["summary"][real_mr.CROSS_VALIDATED]["held_out_test"] == {}
    report = (tmp_path / "o" / "report.md").read_text()
    assert f"| all | {real_mr.CROSS_VALIDATED} | 3 | {errors.mean():.1f} |" in report
    capsys.readouterr()
    assert main([*args, "--cross-validation", str(other)]) == EXIT_BAD_INPUT
    assert (
        "--cross-validation needs one card per fold of the split (2), in fold order; got 1" in capsys.readouterr().err
    )
    assert main(args) == EXIT_BAD_INPUT
    assert "needs --models CARD ... or --cross-validation CARD" in capsys.readouterr().err


def test_evaluate_real_mr_refuses_a_folder_without_the_split_s_cases(real_like, tmp_path, capsys):
    data, _ = real_like
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"held_out_test": ["caseA", "train99"], "cross_validation": [["caseA"]]}))
    args = ["evaluate-real-mr", "--data", str(data), "--models", str(MR_CARD), "-o", str(tmp_path / "o"), "--quiet"]
    assert main([*args, "--split", str(split)]) == EXIT_BAD_INPUT
    assert f"{split}: cases in more than one place: caseA" in capsys.readouterr().err
    split.write_text(json.dumps({"held_out_test": ["caseA", "train99"], "cross_validation": []}))
    assert main([*args, "--split", str(split)]) == EXIT_BAD_INPUT
    assert f"{data} lacks 2 file(s) the split names: train99/t2.nii.gz, train99/gland.nii.gz" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_committed_split_holds_out_10_of_the_35_cases_and_folds_the_rest():
    split = real_mr.load_split()
    folds = split["cross_validation"]
    assert len(split["held_out_test"]) == 10 and [len(f) for f in folds] == [5] * 5
    assert len({*split["held_out_test"], *(c for f in folds for c in f)}) == 35
    assert "rule" in split and split["seed"] == 22
    if PROMISE12_CSV.is_file():  # the data is outside the repository; its case list rebuilds the split exactly
        rebuilt = real_mr.build_split(real_mr.read_cases_csv(PROMISE12_CSV), seed=split["seed"])
        assert {k: rebuilt[k] for k in ("held_out_test", "cross_validation", "rule")} == {
            k: split[k] for k in ("held_out_test", "cross_validation", "rule")
        }
