"""`landmarkinit run`: one pair end to end with the shipped models, files read back by Slicer's readers, bad
input, batch mode (process pool and a local Dask cluster, failures isolated, resume), and the intensity
registration conventions."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.errors import IntensityRegistrationError, LandmarkFileError, LandmarkInitError
from LandmarkInitLib.fit.intensity import matrix_to_sitk, register_rigid_mi, sitk_to_matrix
from LandmarkInitLib.fit.landmark_fit import apply_transform, fit_rigid
from LandmarkInitLib.io.datasets import open_case
from LandmarkInitLib.io.markups import read_landmarks_file
from LandmarkInitLib.io.transforms import load_transform, transform_matrix
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitLib.pipeline.batch import RunOptions, read_cases, run_batch
from LandmarkInitLib.pipeline.quality import FEATURES, assess, load_thresholds
from LandmarkInitLib.pipeline.run import overlap_fraction, run_case
from LandmarkInitLib.resources import default_model_card, sample_case_dir

COMMAND = shutil.which("landmarkinit", path=os.path.dirname(sys.executable)) or "landmarkinit"
NO_QA = {}  # tests of failures and of the batch machinery; the sample run below uses the shipped thresholds


def run_cli(*args, timeout=300):
    return subprocess.run([COMMAND, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    case = sample_case_dir()
    out = tmp_path_factory.mktemp("run") / "out"
    result = run_case(case / "mr.nrrd", case / "us.nrrd", out, refine=True)  # shipped QA thresholds
    return out, result


def test_run_assesses_quality_with_the_shipped_thresholds(sample_run):
    out, result = sample_run
    quality = json.loads((out / "report.json").read_text())["quality"]
    shipped = load_thresholds()
    assert quality["thresholds"] == shipped and set(shipped) == set(FEATURES)
    detector_flags = [f for f in quality["flags"] if f.startswith(("MR: ", "US: "))]
    features = {k: np.nan if v is None else v for k, v in quality["features"].items()}
    assert quality["flags"] == assess(features, shipped, detector_flags).flags
    assert quality["review_recommended"] == bool(quality["flags"]) == result.quality.review


def test_run_writes_every_file_and_slicer_reads_them(sample_run, context):
    out, result = sample_run
    report = json.loads((out / "report.json").read_text())
    assert set(report["files"]) == {p.name for p in out.iterdir()}
    _, mr = read_landmarks_file(context, out / "mr_landmarks.mrk.json")
    _, us = read_landmarks_file(context, out / "us_landmarks.mrk.json")
    np.testing.assert_allclose(mr.ordered(LANDMARK_LABELS), [lm["ras"] for lm in report["mr"]["landmarks"]], atol=1e-6)
    landmark_matrix = transform_matrix(load_transform(context, out / "mr_to_us_landmarks.h5"))
    weights = report["fit"]["weights"]  # the default spread weighting: 1 / (s_MR^2 + s_US^2)
    pairs = zip(report["mr"]["landmarks"], report["us"]["landmarks"], strict=True)
    spreads = [(m["spread_mm"], u["spread_mm"]) for m, u in pairs]
    np.testing.assert_allclose(weights, [1 / (a**2 + b**2) for a, b in spreads], rtol=1e-9)
    expected = fit_rigid(mr.ordered(LANDMARK_LABELS), us.ordered(LANDMARK_LABELS), weights=weights)
    np.testing.assert_allclose(landmark_matrix, expected.matrix, atol=1e-6)
    np.testing.assert_allclose(
        transform_matrix(load_transform(context, out / "mr_to_us.h5")), report["matrix"], atol=1e-9
    )
    assert report["refinement"]["method"].startswith("SimpleITK rigid, Mattes")
    assert report["models"]["mr"]["weights"][0]["sha256"] and report["quality"]["features"]["fre_mm"] >= 0
    # every weights file behind the shipped cards is recorded (US: global + two local models), and the mid-gland step
    for modality in ("mr", "us"):
        card = load_card(default_model_card(modality))
        cards = card.stage_cards("global") + card.stage_cards("local")
        recorded = {(w["card"], w["sha256"]) for w in report["models"][modality]["weights"]}
        assert recorded == {(c.name, f["sha256"]) for c in cards for f in c.data["files"].values()}
        assert report["models"][modality]["posterior_median_mid_gland"] == card.mid_gland_weight
        assert report["models"][modality]["mirror_average"] is card.mirror_average
    png = sitk.ReadImage(str(out / "report.png"))
    assert png.GetSize()[0] > 300 and png.GetNumberOfComponentsPerPixel() == 3
    assert "MR_to_US" in (out / "report.html").read_text()


def test_run_is_accurate_on_the_sample_case(sample_run):
    _, result = sample_run
    case = open_case(sample_case_dir())
    mr, us = (case.landmarks(m).ordered(LANDMARK_LABELS) for m in ("mr", "us"))
    tre = np.linalg.norm(apply_transform(result.landmark_matrix, mr) - us, axis=1)
    # measured 0.84 mm; the global stages alone give 1.35 mm and the single-stage dsnt-dist detectors 1.64 mm, so
    # this fails when the local refinement is skipped or a convention is broken (centimetres)
    assert tre.mean() < 1.1, tre


def test_run_refuses_existing_results_and_leaves_inputs_alone(sample_run, tmp_path):
    out, _ = sample_run
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    case = sample_case_dir()
    inputs = {p: p.read_bytes() for p in (case / "mr.nrrd", case / "us.nrrd")}
    r = run_cli("run", "--mr", case / "mr.nrrd", "--us", case / "us.nrrd", "--output-dir", out)
    assert r.returncode == 2 and "already holds results" in r.stderr and "--force" in r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert all(p.read_bytes() == b for p, b in inputs.items())


def test_bad_inputs_get_clear_errors(tmp_path):
    case = sample_case_dir()
    with pytest.raises(LandmarkInitError, match="swapped"):
        run_case(case / "us.nrrd", case / "mr.nrrd", tmp_path / "a", qa_thresholds=NO_QA)
    assert not any((tmp_path / "a").iterdir())
    (tmp_path / "broken.nrrd").write_bytes(b"NRRD0004\ntype: garbage\n")
    with pytest.raises(LandmarkFileError, match="could not be read"):
        run_case(tmp_path / "broken.nrrd", case / "us.nrrd", tmp_path / "b", qa_thresholds=NO_QA)
    with pytest.raises(LandmarkFileError, match="does not exist"):
        run_case(tmp_path / "none.nrrd", case / "us.nrrd", tmp_path / "c", qa_thresholds=NO_QA)

    def run_sample(out, *extra):
        return run_cli("run", "--mr", case / "mr.nrrd", "--us", case / "us.nrrd", "-o", out, *extra)

    r = run_sample(tmp_path / "d", "--mr-model", tmp_path / "x.json")
    assert r.returncode == 2 and "x.json does not exist" in r.stderr
    r = run_sample(
        tmp_path / "e", "--mr-model", Path(__file__).parents[1] / "Resources" / "Models" / "us_landmarks.json"
    )
    assert r.returncode == 2 and "swap the two model cards" in r.stderr
    r = run_cli("run", "--mr", case / "mr.nrrd", "-o", tmp_path / "f")
    assert r.returncode == 2 and "either --mr and --us" in r.stderr


def test_overlap_fraction():
    case = sample_case_dir()
    mr, us = sitk.ReadImage(str(case / "mr.nrrd")), sitk.ReadImage(str(case / "us.nrrd"))
    truth = open_case(case).mr_to_us
    assert overlap_fraction(truth, mr, us) > 0.5
    far = truth.copy()
    far[:3, 3] += [1000.0, 0.0, 0.0]
    assert overlap_fraction(far, mr, us) == 0.0


def test_sitk_transform_conversion_round_trip_and_direction():
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", [12, -30, 47], degrees=True).as_matrix()
    m[:3, 3] = [5.0, -7.0, 9.0]
    for centre in ((0.0, 0.0, 0.0), (10.0, 20.0, -30.0)):
        np.testing.assert_allclose(sitk_to_matrix(matrix_to_sitk(m, centre)), m, atol=1e-12)
    # SimpleITK maps a US LPS point to the MR LPS point that m sends there
    mr_ras = np.array([1.0, 2.0, 3.0])
    us_lps = apply_transform(m, mr_ras) * [-1, -1, 1]
    np.testing.assert_allclose(
        np.array(matrix_to_sitk(m).TransformPoint(list(us_lps))) * [-1, -1, 1], mr_ras, atol=1e-12
    )


def test_mi_refinement_improves_a_perturbed_start():
    case = open_case(sample_case_dir())
    mr, us = (sitk.ReadImage(str(case.images[m])) for m in ("mr", "us"))
    mr_lm, us_lm = (case.landmarks(m).ordered(LANDMARK_LABELS) for m in ("mr", "us"))
    start = fit_rigid(mr_lm, us_lm).matrix
    start[:3, 3] += [3.0, -2.0, 4.0]
    result = register_rigid_mi(mr, us, start)

    def tre(matrix):
        return np.linalg.norm(apply_transform(matrix, mr_lm) - us_lm, axis=1).mean()

    assert tre(result.matrix) < tre(start) - 1.0, (tre(start), tre(result.matrix))
    assert result.iterations > 0 and result.metric < 0
    # the sampled metric is seeded: the same seed repeats the result (to the rounding of multi-threaded sums; an
    # unseeded sampler moves it by millimetres)
    again = register_rigid_mi(mr, us, start)
    np.testing.assert_allclose(again.matrix, result.matrix, atol=1e-6)
    with pytest.raises(ValueError, match="wall clock"):
        register_rigid_mi(mr, us, start, seed=0)
    far = start.copy()
    far[:3, 3] += 500.0  # the MR ends up nowhere near the US fan
    with pytest.raises(IntensityRegistrationError, match="do not overlap"):
        register_rigid_mi(mr, us, far)


def _cases_csv(tmp_path, tiny_dataset) -> Path:
    rows = [{"case": c.name, "mr": c / "mr.nrrd", "us": c / "us.nrrd"} for c in sorted(tiny_dataset.glob("case_*"))[:2]]
    rows.append({"case": "broken", "mr": tmp_path / "missing_mr.nrrd", "us": rows[0]["us"]})
    path = tmp_path / "cases.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["case", "mr", "us"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_batch_isolates_failures_and_resumes(tiny_dataset, tmp_path):
    cases = _cases_csv(tmp_path, tiny_dataset)
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps({"thresholds": {}}))
    out = tmp_path / "batch"
    r = run_cli("run", "--cases", cases, "-o", out, "--workers", "2", "--qa-thresholds", qa, "--quiet")
    assert r.returncode == 1, r.stderr  # one case failed
    assert "FAILED broken" in r.stdout and "does not exist" in r.stdout
    summary = json.loads((out / "batch_summary.json").read_text())
    assert summary["counts"]["ok"] + summary["counts"]["review"] == 2 and summary["counts"]["failed"] == 1
    for name in ("case_0000", "case_0001"):
        assert (out / name / "report.json").is_file() and (out / name / "mr_to_us.h5").is_file()
    assert not (out / "broken").exists() or not any((out / "broken").iterdir())
    again = run_batch(cases, out, RunOptions(qa_thresholds=str(qa)), progress=False)
    assert again["counts"]["skipped"] == 2 and again["counts"]["failed"] == 1


def test_batch_on_a_local_dask_cluster(tiny_dataset, tmp_path):
    qa = tmp_path / "qa.json"
    qa.write_text(json.dumps({"thresholds": {}}))
    folder = tmp_path / "two"
    folder.mkdir()
    for c in sorted(tiny_dataset.glob("case_*"))[:2]:
        (folder / c.name).symlink_to(c)
    summary = run_batch(
        folder, tmp_path / "out", RunOptions(qa_thresholds=str(qa)), workers=2, dask="local", progress=False
    )
    assert summary["engine"] == "dask (local)"
    assert summary["counts"]["failed"] == 0, summary["outcomes"]
    assert sorted(o["case"] for o in summary["outcomes"]) == ["case_0000", "case_0001"]


def test_read_cases_errors(tmp_path):
    with pytest.raises(LandmarkFileError, match="does not exist"):
        read_cases(tmp_path / "nothing")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,mr\nx,y\n")
    with pytest.raises(LandmarkFileError, match="lacks the column"):
        read_cases(bad)
