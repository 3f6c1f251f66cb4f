"""`landmarkinit calibrate-flags` on a tiny site dataset made from the shipped sample case (issue 23, item 4)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from LandmarkInitLib.cli import main
from LandmarkInitLib.fit.landmark_fit import fit_rigid
from LandmarkInitLib.io.datasets import read_mrk_json
from LandmarkInitLib.pipeline.quality import load_thresholds
from LandmarkInitLib.resources import sample_case_dir

SAMPLE = sample_case_dir()


def write_markups(path, moves_lps=None):
    """The sample case's landmark file of ``path``'s modality, its points moved by ``moves_lps`` (mm, LPS)."""
    modality = path.name[:2]
    doc = json.loads((SAMPLE / f"{modality}_landmarks.mrk.json").read_text(encoding="utf-8"))
    for point, move in zip(
        doc["markups"][0]["controlPoints"], moves_lps if moves_lps is not None else np.zeros((3, 3)), strict=True
    ):
        point["position"] = list(np.add(point["position"], move))
    path.write_text(json.dumps(doc), encoding="utf-8")


def test_calibrate_flags_on_a_tiny_site_dataset(tmp_path, capsys):
    """Before: no way for a site to recalibrate its flags (`calibrate-flags` did not exist)."""
    site = tmp_path / "site"
    moved_apex = [[-3.0, 0, 0], [0, 0, 0], [0, 0, 0]]  # LPS x -3 = 3 mm to the right
    far_off = [[-12.0, 0, 0], [12.0, 0, 0], [0, 0, 0]]
    for name, us_prediction in (("case_a", None), ("case_b", moved_apex), ("case_c", far_off)):
        (site / name).mkdir(parents=True)
        for modality in ("mr", "us"):  # corrected = the sample's true landmarks; predictions recorded
            write_markups(site / name / f"{modality}_landmarks.mrk.json")
        write_markups(site / name / "mr_landmarks_predicted.mrk.json")
        write_markups(site / name / "us_landmarks_predicted.mrk.json", us_prediction)
    (site / "case_d").mkdir()  # no recorded prediction: the current models detect it
    for f in ("mr.nrrd", "us.nrrd", "mr_landmarks.mrk.json", "us_landmarks.mrk.json"):
        shutil.copy(SAMPLE / f, site / "case_d" / f)
    out = tmp_path / "qa.json"
    assert main(["calibrate-flags", "--data", str(site), "--output", str(out), "--quiet"]) == 0

    mr, us = (read_mrk_json(SAMPLE / f"{m}_landmarks.mrk.json").points_ras for m in ("mr", "us"))
    fre = {
        "case_a": fit_rigid(mr, us).rms,
        "case_b": fit_rigid(mr, us + [[3.0, 0, 0], [0, 0, 0], [0, 0, 0]]).rms,
        "case_c": fit_rigid(mr, us + [[12.0, 0, 0], [-12.0, 0, 0], [0, 0, 0]]).rms,
    }
    doc = json.loads(out.read_text(encoding="utf-8"))
    rows = {r["case"]: r for r in doc["cases"]}
    assert [rows[c]["source"] for c in sorted(rows)] == ["recorded predictions"] * 3 + ["detected now"]
    for case, value in fre.items():
        assert rows[case]["features"]["fre_mm"] == pytest.approx(value, abs=1e-9)
    assert rows["case_b"]["landmark_errors_mm"]["us"] == pytest.approx([3.0, 0.0, 0.0])
    assert rows["case_c"]["tre_mm"] > 5.0 > max(rows[c]["tre_mm"] for c in ("case_a", "case_b", "case_d"))
    # three good cases, rate 0.1: the conformal rule's k = max(floor(0.1 * 4), 1) = 1, the largest good value; the
    # fit residual alone catches the far-off case (only it and the conditioning exist for recorded predictions)
    good = max(rows[c]["features"]["fre_mm"] for c in ("case_a", "case_b", "case_d"))
    assert doc["thresholds"] == {"fre_mm": good}
    assert doc["schema"] == "landmarkinit-qa-thresholds/2" and doc["false_alarm_rate"] == 0.1
    assert doc["calibrated_on"] | {"written": None} == {
        "data": str(site),
        "cases": 4,
        "failed_cases": 1,
        "recorded_predictions": 3,
        "written": None,
    }
    assert doc["calibration_figures"]["failed_flagged"] == 1 and doc["calibration_figures"]["good_flagged"] == 0
    assert load_thresholds(out) == {"fre_mm": good}  # the product reads what it wrote
    text = capsys.readouterr().out
    assert "1 of 1 failed cases flagged, 0 of 3 good cases flagged (0%; stated rate 10% on new cases)" in text
    assert f"wrote {out}; use it with `landmarkinit run --qa-thresholds {out}`" in text


def test_calibrate_flags_refuses_a_folder_without_cases(tmp_path, capsys):
    (tmp_path / "empty" / "case_x").mkdir(parents=True)
    assert main(["calibrate-flags", "--data", str(tmp_path / "empty"), "--output", str(tmp_path / "q.json")]) == 2
    assert capsys.readouterr().err == (
        f"landmarkinit calibrate-flags: error: {tmp_path / 'empty'} holds no case with both corrected landmark files "
        "(case folders with mr_landmarks.mrk.json and us_landmarks.mrk.json); give a site dataset or an evaluation "
        "set\n"
    )
    assert not (tmp_path / "q.json").exists()
