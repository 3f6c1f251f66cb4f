"""`landmarkinit run`: one pair end to end with the shipped models, files read back by Slicer's readers, bad
input, batch mode (process pool and a local Dask cluster, failures isolated, resume), and the intensity
registration conventions."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from LandmarkInitLib.cli import main
from LandmarkInitLib.detection.detectors import Detection
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.errors import IntensityRegistrationError, LandmarkFileError, LandmarkInitError
from LandmarkInitLib.fit.intensity import matrix_to_sitk, register_rigid_mi, sitk_to_matrix
from LandmarkInitLib.fit.landmark_fit import apply_transform, fit_rigid
from LandmarkInitLib.io.datasets import open_case
from LandmarkInitLib.io.markups import read_landmarks_file
from LandmarkInitLib.io.output_files import RUN_FILES
from LandmarkInitLib.io.transforms import load_transform, transform_matrix
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitLib.pipeline.batch import RunOptions, read_cases, run_batch
from LandmarkInitLib.pipeline.initialize import Detectors
from LandmarkInitLib.pipeline.overlay_figure import figure_height
from LandmarkInitLib.pipeline.quality import FEATURES, assess, load_thresholds
from LandmarkInitLib.pipeline.run import overlap_fraction, run_case
from LandmarkInitLib.resources import default_model_card, sample_case_dir
from mounts import nearly_full_disk, read_only_folder

ROOT = Path(__file__).resolve().parents[1]
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
    assert quality["thresholds"] == shipped and set(shipped) <= set(FEATURES)
    detector_flags = [f for f in quality["flags"] if f.startswith(("MR: ", "US: "))]
    features = {k: np.nan if v is None else v for k, v in quality["features"].items()}
    assert quality["flags"] == assess(features, shipped, detector_flags).flags
    assert quality["review_recommended"] == bool(quality["flags"]) == result.quality.review


def test_the_demo_explains_why_the_sample_case_is_flagged(sample_run):
    """`make demo` ends "review" on the sample case; tools/explain_qa_flags.py says why, from measured numbers."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("explain_qa_flags", ROOT / "tools" / "explain_qa_flags.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out, result = sample_run
    report = json.loads((out / "report.json").read_text())
    lines = tool.explain(report, case_dir=sample_case_dir())
    text = "\n".join(lines)
    good, _ = tool.good_test_cases(tool.TEST_RESULTS)  # the published test cases' features
    shipped = result.quality.thresholds  # calibrated on evidence (issue 23): the fit residual alone
    flagged = [name for name in FEATURES if any(f.startswith(FEATURES[name][1]) for f in result.quality.flags)]
    # each flag is marked and explained (the sample case was flagged with the thresholds of release 0.1; with the
    # thresholds calibrated on evidence it is typical and is not)
    for name in shipped:
        n = sum(assess(row, {name: shipped[name]}).review for row in good)
        row = next(line for line in lines if line.startswith(f"  {name} "))
        assert row.split()[4] == ("yes" if name in flagged else "no") and f"{n} of {len(good)} (" in row
        assert (f"  {name}: " in text) == (name in flagged)
    n_any = sum(assess(row, shipped).review for row in good)
    assert f"{n_any} of {len(good)} good test cases" in text
    # its ground truth: the landmark error is the one test_run_is_accurate_on_the_sample_case measures
    case = open_case(sample_case_dir())
    mr, us = (case.landmarks(m).ordered(LANDMARK_LABELS) for m in ("mr", "us"))
    tre = np.linalg.norm(apply_transform(result.landmark_matrix, mr) - us, axis=1).mean()
    assert f"landmark error {tre:.2f} mm" in text
    assert ("The flags are false alarms here:" in text) == bool(flagged)
    assert ("No QA feature is flagged." in text) == (not flagged)


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
        assert report["models"][modality]["postprocessing"] == card.postprocessing
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
    assert not (tmp_path / "a").exists()  # a refusal creates nothing, not even the output folder
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
    assert again["counts"]["resumed"] == 2 and again["counts"]["failed"] == 1


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


# --- the pipeline's own logic, on the sample pair with the shipped whole-volume detectors (fast, real) --------------


def exactly(message):
    return "^" + re.escape(message) + "$"


@pytest.fixture(scope="module")
def global_detectors():
    """The shipped global stages: real ONNX detectors, a few tens of milliseconds per volume."""
    models = default_model_card("mr").parent
    return Detectors.open(models / "mr_landmarks_g2l-global.json", models / "us_landmarks_g2l-global.json")


@pytest.fixture(scope="module")
def sample_images():
    case = sample_case_dir()
    return sitk.ReadImage(str(case / "mr.nrrd")), sitk.ReadImage(str(case / "us.nrrd"))


def spread_weights(mr, us):
    """The default weighting, written out: 1 / (s_MR^2 + s_US^2) per landmark."""
    return [1.0 / (a * a + b * b) for a, b in zip(mr.spread_mm, us.spread_mm, strict=True)]


def test_initialize_detects_both_volumes_reports_progress_and_fits_with_spread_weights(global_detectors, sample_images):
    from LandmarkInitLib.pipeline.initialize import initialize

    mr_image, us_image = sample_images
    calls = []
    init = initialize(mr_image, us_image, global_detectors, progress=lambda f, m: calls.append((f, m)))
    assert calls == [
        (0.1, "Detecting landmarks on the MR volume"),
        (0.5, "Detecting landmarks on the US volume"),
        (0.9, "Fitting the MR-to-US transform"),
    ]
    # each detector ran on its own volume: the same answers as running them by hand
    np.testing.assert_array_equal(init.mr.points_ras, global_detectors.mr.detect(mr_image).points_ras)
    np.testing.assert_array_equal(init.us.points_ras, global_detectors.us.detect(us_image).points_ras)
    assert (init.mr.modality, init.us.modality, init.weighting) == ("mr", "us", "spread")
    weights = spread_weights(init.mr, init.us)
    assert max(weights) > 1.5 * min(weights)  # unequal spreads, so the weighting shows in the fit
    np.testing.assert_allclose(init.weights, weights, rtol=1e-12)
    expected = fit_rigid(init.mr.points_ras, init.us.points_ras, weights=weights)
    np.testing.assert_allclose(init.matrix, expected.matrix, atol=1e-12)
    assert init.matrix is init.fit.matrix and init.fit.mode == "rigid"
    seconds = init.seconds
    assert set(seconds) == {"detect_mr", "detect_us", "fit", "total"}
    assert all(0.0 <= v < 60.0 for v in seconds.values())
    assert seconds["total"] == pytest.approx(seconds["detect_mr"] + seconds["detect_us"] + seconds["fit"], abs=1e-9)
    # unweighted, and without a progress callback
    plain = initialize(mr_image, us_image, global_detectors, weighting="none")
    np.testing.assert_array_equal(plain.weights, [1.0, 1.0, 1.0])
    np.testing.assert_allclose(plain.matrix, fit_rigid(plain.mr.points_ras, plain.us.points_ras).matrix, atol=1e-12)
    assert not np.allclose(plain.matrix, init.matrix, atol=1e-4)


def test_fit_weights_exact_and_refusals():
    from LandmarkInitLib.pipeline.initialize import fit_weights

    def detection(modality, spreads):
        return Detection(LANDMARK_LABELS, np.zeros((3, 3)), np.array(spreads, float), modality, "m", "onnx")

    mr, us = detection("mr", [1.0, 2.0, 3.0]), detection("us", [2.0, 0.0, 4.0])
    np.testing.assert_allclose(fit_weights(mr, us, "spread"), [1 / 5, 1 / 4, 1 / 25], rtol=1e-12)
    np.testing.assert_array_equal(fit_weights(mr, us, "none"), [1.0, 1.0, 1.0])
    small = fit_weights(detection("mr", [0.3, 0.4, 0.5]), detection("us", [0.4, 0.3, 0.0]), "spread")
    np.testing.assert_allclose(small, [4.0, 4.0, 4.0], rtol=1e-12)  # variances below 1 mm^2 are fine
    with pytest.raises(LandmarkInitError, match=exactly("unknown weighting 'equal': use one of none, spread")):
        fit_weights(mr, us, "equal")
    message = exactly("spread weighting needs detectors that report a spread; use --weighting none")
    for bad in ([1.0, np.nan, 3.0], [1.0, 0.0, 3.0], [np.inf, 1.0, 1.0]):
        with pytest.raises(LandmarkInitError, match=message):
            fit_weights(detection("mr", bad), detection("us", [0.0, 0.0, 1.0]), "spread")


def test_a_pair_is_refused_as_swapped_only_when_both_detectors_say_so(global_detectors, sample_images):
    from LandmarkInitLib.detection.detectors import FLAG_LOOKS_LIKE_ULTRASOUND, FLAG_NOT_ULTRASOUND
    from LandmarkInitLib.pipeline.initialize import initialize

    mr_image, us_image = sample_images
    swapped = "the MR volume looks like ultrasound and the US volume like MR: are the MR and US inputs swapped?"
    with pytest.raises(LandmarkInitError, match=exactly(swapped)):
        initialize(us_image, mr_image, global_detectors)
    scored = initialize(us_image, mr_image, global_detectors, refuse_swapped=False)  # as the evaluations do
    assert FLAG_LOOKS_LIKE_ULTRASOUND in scored.mr.flags and FLAG_NOT_ULTRASOUND in scored.us.flags
    both_mr = initialize(mr_image, mr_image, global_detectors)  # only the US detector objects
    assert FLAG_NOT_ULTRASOUND in both_mr.us.flags and FLAG_LOOKS_LIKE_ULTRASOUND not in both_mr.mr.flags
    both_us = initialize(us_image, us_image, global_detectors)  # only the MR detector objects
    assert FLAG_LOOKS_LIKE_ULTRASOUND in both_us.mr.flags and FLAG_NOT_ULTRASOUND not in both_us.us.flags


def test_detectors_open_the_given_or_default_cards_on_the_given_runtime():
    models = default_model_card("mr").parent
    detectors = Detectors.open()
    assert detectors.mr.card.path == default_model_card("mr") and detectors.us.card.path == default_model_card("us")
    assert detectors.mr.backend == detectors.us.backend == "onnx"
    mr_card, us_card = models / "mr_landmarks_g2l-global.json", models / "us_landmarks_g2l-global.json"
    chosen = Detectors.open(mr_card, us_card, backend="torchscript", threads=1)
    assert (chosen.mr.card.path, chosen.us.card.path) == (mr_card, us_card)
    assert chosen.mr.backend == chosen.us.backend == "torchscript"
    onnx = Detectors.open(mr_card, us_card, threads=3)
    assert onnx.us.network._session.get_session_options().intra_op_num_threads == 3
    with pytest.raises(
        LandmarkInitError, match=exactly(f"{us_card} is a US model, given as the MR model; swap the two model cards")
    ):
        Detectors.open(us_card, mr_card)
    with pytest.raises(
        LandmarkInitError, match=exactly(f"{mr_card} is a MR model, given as the US model; swap the two model cards")
    ):
        Detectors.open(mr_card, mr_card)


def test_model_info_lists_every_weights_file_of_the_card():
    from LandmarkInitLib.detection.detectors import open_detector
    from LandmarkInitLib.pipeline.run import _model_info

    models = default_model_card("mr").parent
    two_stage = json.loads((models / "mr_landmarks.json").read_text())
    stage_files = {}
    for name in (two_stage["stages"]["global"]["card"], *two_stage["stages"]["local"]["cards"]):
        card = json.loads((models / name).read_text())
        stage_files[card["name"]] = card["files"]
    info = _model_info(open_detector(models / "mr_landmarks.json", backend="torchscript"))
    assert info == {
        "card": str(models / "mr_landmarks.json"),
        "name": two_stage["name"],
        "card_sha256": hashlib.sha256((models / "mr_landmarks.json").read_bytes()).hexdigest(),
        "folder": "shipped",
        "method": two_stage["method"],
        "backend": "torchscript",
        "postprocessing": two_stage["postprocessing"],
        "weights": [
            {"card": name, "file": f["path"], "sha256": f["sha256"], **({"int8": True} if "quantization" in f else {})}
            for name, files in stage_files.items()
            for f in files.values()
        ],
    }
    assert sum(w.get("int8", False) for w in info["weights"]) == 2  # the shipped MR local networks' ONNX files
    single = json.loads((models / "mr_landmarks_dsnt-dist.json").read_text())
    info = _model_info(open_detector(models / "mr_landmarks_dsnt-dist.json"))
    assert info["weights"] == [
        {"card": single["name"], "file": f["path"], "sha256": f["sha256"]} for f in single["files"].values()
    ]
    assert (info["name"], info["method"], info["postprocessing"], info["backend"]) == (
        single["name"],
        single["method"],
        [],
        "onnx",
    )


def test_read_image_and_check_output_dir_errors_exact(tmp_path):
    from LandmarkInitLib.pipeline.run import check_output_dir, read_image

    assert read_image(sample_case_dir() / "mr.nrrd", "MR").GetSize() == (128, 128, 96)
    missing = tmp_path / "none.nrrd"
    with pytest.raises(LandmarkFileError, match=exactly(f"MR volume {missing} does not exist")):
        read_image(missing, "MR")
    broken = tmp_path / "broken.nrrd"
    broken.write_bytes(b"NRRD0004\ntype: garbage\n")
    with pytest.raises(
        LandmarkFileError, match=exactly(f'US volume {broken} could not be read: couldn\'t parse type "garbage"')
    ):  # ITK's reason, not its source location (Testing/test_volume_input.py)
        read_image(broken, "US")
    flat = tmp_path / "flat.nrrd"
    sitk.WriteImage(sitk.Image(5, 6, sitk.sitkFloat32), str(flat))
    vector = tmp_path / "rgb.nrrd"
    sitk.WriteImage(sitk.Image([5, 6, 7], sitk.sitkVectorFloat32, 3), str(vector))
    for path in (flat, vector):
        with pytest.raises(LandmarkFileError, match=exactly(f"US volume {path} is not a 3-D scalar image")):
            read_image(path, "US")
    out = tmp_path / "out"
    out.mkdir()
    check_output_dir(out, force=False)
    (out / "report.json").write_text("{}")
    (out / "mr_landmarks.mrk.json").write_text("{}")
    (out / "unrelated.txt").write_text("")
    with pytest.raises(
        LandmarkFileError,
        match=exactly(
            f"{out} already holds results (mr_landmarks.mrk.json, report.json); choose another --output-dir or pass "
            "--force"
        ),
    ):
        check_output_dir(out, force=False)
    check_output_dir(out, force=True)


def test_overlap_fraction_exact():
    def image(array, origin):
        im = sitk.GetImageFromArray(array)
        im.SetOrigin(origin)
        return im

    # US: 8 x 8 x 8 unit voxels at LPS 0..7; its "fan" is the voxels with I < 5 (non-zero). MR: a slab that covers
    # LPS x from -0.5 to 1.5, i.e. voxels I = 0 and 1 of the US volume: 2 of the 5 fan columns.
    us_array = np.zeros((8, 8, 8), np.uint8)
    us_array[:, :, :5] = 1
    us = image(us_array, (0.0, 0.0, 0.0))
    mr = image(np.zeros((8, 8, 2), np.float32), (0.0, 0.0, 0.0))
    assert overlap_fraction(np.eye(4), mr, us, step=1) == 0.4
    assert overlap_fraction(np.eye(4), mr, us) == 0.5  # every 4th voxel: I = 0 (covered) and I = 4 (not covered)
    assert overlap_fraction(np.eye(4), mr, us, step=5) == 1.0  # I = 0 and I = 5 (not in the fan)
    shift = np.eye(4)
    shift[0, 3] = 3.0  # MR RAS x + 3 = US RAS x, i.e. US LPS x - 3: MR covers US LPS -3.5 to -1.5, none of the fan
    assert overlap_fraction(shift, mr, us, step=1) == 0.0
    shift[0, 3] = -2.0  # US LPS x + 2: MR covers US I = 2 and 3
    assert overlap_fraction(shift, mr, us, step=1) == 0.4
    assert overlap_fraction(np.eye(4), mr, image(np.zeros((8, 8, 8), np.uint8), (0.0, 0.0, 0.0))) == 0.0
    us_array[:, :, :5] = 200  # any non-zero value is fan, 1 too
    us_array[:, :, 4] = 1
    assert overlap_fraction(np.eye(4), mr, image(us_array, (0.0, 0.0, 0.0)), step=1) == 0.4


def test_render_html_shows_every_part_of_the_report():
    from LandmarkInitLib.pipeline.run import render_html

    def landmarks(spreads):
        return [
            {"label": label, "ras": [1.25 + i, -2.0, 3.04], "spread_mm": s}
            for i, (label, s) in enumerate(zip(("apex", "a<b", "posterior_median"), spreads, strict=True))
        ]

    report = {
        "quality": {"review_recommended": True, "flags": ["US: fan <edge>", "second"]},
        "mr": {"landmarks": landmarks([1.26, None, 0.0])},
        "us": {"landmarks": landmarks([2.0, 3.0, 4.0])},
        "fit": {"residuals_mm": [0.125, 1.0, 2.5], "rms_mm": 1.5, "conditioning": 0.4567, "weighting": "spread"},
        "matrix": [[1.0, 0.0, 0.0, 12.34567], [0.0, 1.0, 0.0, -2.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]],
        "refinement": {"method": "x"},
        "inputs": {"mr": "a&b/mr.nrrd", "us": "us.nrrd"},
        "synthetic_models": "synthetic",
        "software": {"landmarkinit": "9.9"},
        "models": {
            "mr": {"name": "m<r", "card_sha256": "0123456789abcdef", "folder": "/site&x"},
            "us": {"name": "u", "card_sha256": "f" * 64, "folder": "shipped"},
        },
    }
    page = render_html(report, figure=True)
    assert (
        "<p>MR model: m&lt;r (from /site&amp;x, card sha256 0123456789ab)<br>"
        "US model: u (shipped, card sha256 ffffffffffff)</p>" in page
    )
    assert "<h2>Quality: REVIEW RECOMMENDED</h2><ul><li>US: fan &lt;edge&gt;</li><li>second</li></ul>" in page
    assert "<tr><td>MR</td><td>apex</td><td>1.2, -2.0, 3.0</td><td>1.3</td></tr>" in page
    assert "<tr><td>MR</td><td>a&lt;b</td><td>2.2, -2.0, 3.0</td><td>-</td></tr>" in page
    assert "<tr><td>MR</td><td>posterior_median</td><td>3.2, -2.0, 3.0</td><td>0.0</td></tr>" in page
    assert "<tr><td>US</td><td>posterior_median</td><td>3.2, -2.0, 3.0</td><td>4.0</td></tr>" in page
    assert "Fit residuals (mm): 0.12, 1.00, 2.50; RMS 1.50 mm" in page
    assert "   1.0000    0.0000    0.0000   12.3457<br>   0.0000    1.0000    0.0000   -2.0000<br>" in page
    assert (
        '<img src="report.png" alt="MR edges mapped onto the US, before and after the fit"><br>Rows: before (MR as '
        "acquired, no transform), after the landmark fit, after the landmark fit + MI refinement. Columns:" in page
    )
    assert "MR: a&amp;b/mr.nrrd<br>US: us.nrrd" in page
    assert "<td>1.3</td></tr><tr><td>MR</td><td>a&lt;b</td>" in page  # rows one after the other
    assert (
        "Columns: axial, sagittal and coronal planes (as Slicer shows them) through the centre of the US landmarks. "
        "Green: edges of the MR mapped into the US; orange rings: US landmarks; cyan crosses: MR landmarks mapped into "
        "the US (A apex, BN bladder neck, PM posterior median; shown within 5 mm of a plane). Bar: 20 mm.</p>\n"
    ) in page
    report |= {"quality": {"review_recommended": False, "flags": []}, "refinement": None}
    page = render_html(report, figure=True)
    assert "<h2>Quality: no quality flag raised</h2><ul><li>none</li></ul>" in page
    assert "Rows: before (MR as acquired, no transform), after the landmark fit. Columns:" in page
    assert "<img" not in render_html(report, figure=False)
    assert "</pre>\n\n<p><small>" in render_html(report, figure=False)  # nothing in the picture's place


def run_sample(out, **kwargs):
    case = sample_case_dir()
    kwargs.setdefault("qa_thresholds", {})
    kwargs.setdefault("figure", False)
    return run_case(kwargs.pop("mr", case / "mr.nrrd"), kwargs.pop("us", case / "us.nrrd"), out, **kwargs)


def png_rows(path):
    """Number of image rows of the overlay figure (overlay_figure.figure_height of its number of figure rows)."""
    return sitk.ReadImage(str(path)).GetSize()[1]


def row_title_shown(path, row, title):
    """Whether figure row ``row`` of the PNG is titled ``title`` (drawn alone there, it gives the same pixels)."""
    from LandmarkInitLib.pipeline import overlay_figure

    picture = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    canvas = overlay_figure._Canvas(*picture.shape[:2])
    y = overlay_figure.row_top(row) - overlay_figure.ROW_TITLE + 6
    width = canvas.text(overlay_figure.MARGIN, y, title, 18, bold=True)
    region = (slice(y, y + 24), slice(0, overlay_figure.MARGIN + width + 20))
    return bool(np.array_equal(picture[region], canvas.rgb[region]))


def fingerprint(path):
    """What report.json records of an input volume file, worked out from the file."""
    import hashlib

    return {
        "size": path.stat().st_size,
        "mtime_ns": path.stat().st_mtime_ns,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }


def test_run_case_writes_the_result_and_a_complete_report(global_detectors, tmp_path, context, monkeypatch):
    import platform

    from LandmarkInitLib import __version__
    from LandmarkInitLib.detection.detectors import FLAG_NOT_ULTRASOUND
    from LandmarkInitLib.pipeline.report import CONVENTION

    case = sample_case_dir()
    out = tmp_path / "new" / "case"  # made, with its parents
    result = run_sample(out, detectors=global_detectors, qa_thresholds={"fre_mm": 1e-6, "spread_mm": 100.0})
    assert sorted(p.name for p in out.iterdir()) == [
        "mr_landmarks.mrk.json",
        "mr_to_us.h5",
        "report.html",
        "report.json",
        "us_landmarks.mrk.json",
    ]
    report = json.loads((out / "report.json").read_text())
    assert report == result.report
    mr_points = np.array([lm["ras"] for lm in report["mr"]["landmarks"]])
    us_points = np.array([lm["ras"] for lm in report["us"]["landmarks"]])
    weights = [
        1 / (m["spread_mm"] ** 2 + u["spread_mm"] ** 2)
        for m, u in zip(report["mr"]["landmarks"], report["us"]["landmarks"], strict=True)
    ]
    expected = fit_rigid(mr_points, us_points, weights=weights)
    np.testing.assert_allclose(result.matrix, expected.matrix, atol=1e-9)
    assert result.output_dir == out and result.landmark_matrix is result.matrix
    assert report["software"] == {"landmarkinit": __version__, "python": platform.python_version()}
    assert report["inputs"] == {
        "mr": str(case / "mr.nrrd"),
        "us": str(case / "us.nrrd"),
        "fingerprints": {"mr": fingerprint(case / "mr.nrrd"), "us": fingerprint(case / "us.nrrd")},
    }
    assert report["convention"] == CONVENTION
    assert report["matrix"] == report["landmark_matrix"] == np.round(result.matrix, 12).tolist()
    assert report["fit"] == {
        "weighting": "spread",
        "weights": pytest.approx(weights, rel=1e-9),
        "residuals_mm": pytest.approx(list(expected.residuals), abs=1e-9),
        "rms_mm": pytest.approx(expected.rms, abs=1e-9),
        "conditioning": pytest.approx(expected.conditioning, rel=1e-9),
    }
    assert report["refinement"] is None
    direct = global_detectors.mr.detect(sitk.ReadImage(str(case / "mr.nrrd"))).as_dict()
    assert report["mr"]["landmarks"] == direct["landmarks"] and report["mr"]["model"] == "mr_landmarks_g2l-global"
    assert report["models"]["mr"]["name"] == "mr_landmarks_g2l-global"
    assert report["models"]["us"]["name"] == "us_landmarks_g2l-global"
    quality = report["quality"]
    assert quality["thresholds"] == {"fre_mm": 1e-6, "spread_mm": 100.0} and quality["review_recommended"] is True
    assert quality["flags"] == [
        "the fit residual (FRE) is large: MR and US landmark triangles differ in shape "
        f"(fre_mm = {expected.rms:.3g}, threshold 1e-06)"
    ]
    assert quality["features"]["spread_mm"] == max(
        lm["spread_mm"] for m in ("mr", "us") for lm in report[m]["landmarks"]
    )
    assert result.quality.flags == quality["flags"]
    seconds = report["seconds"]
    assert set(seconds) == {"detect_mr", "detect_us", "fit", "total", "compute_total", "total_with_files"}
    assert all(type(v) is float and v == round(v, 4) and 0.0 <= v < 60.0 for v in seconds.values())
    assert seconds["total"] <= seconds["compute_total"] <= seconds["total_with_files"]
    assert report["files"] == [
        "mr_landmarks.mrk.json",
        "us_landmarks.mrk.json",
        "mr_to_us.h5",
        "report.html",
        "report.json",
    ]
    assert report["synthetic_models"] == "detectors trained on a synthetic phantom; check every result"
    _, mr = read_landmarks_file(context, out / "mr_landmarks.mrk.json")
    _, us = read_landmarks_file(context, out / "us_landmarks.mrk.json")
    np.testing.assert_allclose(mr.ordered(LANDMARK_LABELS), mr_points, atol=1e-6)
    np.testing.assert_allclose(us.ordered(LANDMARK_LABELS), us_points, atol=1e-6)
    matrix = transform_matrix(load_transform(context, out / "mr_to_us.h5"))
    np.testing.assert_allclose(matrix, expected.matrix, atol=1e-9)
    page = (out / "report.html").read_bytes().decode("utf-8")
    assert "<h2>Quality: REVIEW RECOMMENDED</h2>" in page and "<img" not in page
    # the same again is refused; with force it is replaced
    with pytest.raises(LandmarkFileError, match="already holds results"):
        run_sample(out, detectors=global_detectors)
    # ... and the temporaries a killed run left go, even one that something else (another cleanup) removes just
    # before run_case does: simulated by removing it first inside os.unlink, which then fails as it would
    stale = [out / ".report.tmp-0123abcd.json", out / ".mr_to_us.tmp-89abcdef.h5"]
    for path in stale:
        path.write_bytes(b"left by a killed run")
    real_unlink = os.unlink

    def unlink_after_someone_else(path, *args, **kwargs):
        if Path(path) == stale[0]:
            real_unlink(path)
        real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", unlink_after_someone_else)
    again = run_sample(out, detectors=global_detectors, force=True, weighting="none")
    monkeypatch.undo()
    assert not any(path.exists() for path in stale)
    assert again.report["fit"]["weighting"] == "none" and again.report["fit"]["weights"] == [1.0, 1.0, 1.0]
    assert json.loads((out / "report.json").read_text())["fit"]["weighting"] == "none"
    # a detector's own flags reach the report, marked with the modality (an MR volume given as US; not the same
    # file, which is refused)
    mr_as_us = tmp_path / "mr_as_us.nrrd"
    sitk.WriteImage(sitk.ReadImage(str(case / "mr.nrrd")) + 1, str(mr_as_us))
    flagged = run_sample(tmp_path / "flagged", detectors=global_detectors, us=mr_as_us)
    assert f"US: {FLAG_NOT_ULTRASOUND}" in flagged.report["quality"]["flags"]
    assert all(f.startswith("US: ") for f in flagged.report["quality"]["flags"])


def test_run_case_with_refinement_and_figure(global_detectors, tmp_path, context):
    out = tmp_path / "refined"
    result = run_sample(out, detectors=global_detectors, refine=True, figure=True)
    assert not np.allclose(result.matrix, result.landmark_matrix, atol=1e-3)  # MI moved it
    # ... from the landmark transform, by millimetres (the volumes start tens of millimetres apart)
    assert np.abs(result.matrix[:3, 3] - result.landmark_matrix[:3, 3]).max() < 10.0
    report = result.report
    assert report["matrix"] == np.round(result.matrix, 12).tolist() != report["landmark_matrix"]
    refinement = report["refinement"]
    assert refinement["method"] == "SimpleITK rigid, Mattes mutual information, US fan mask, 2 levels"
    assert (
        refinement["metric"] < 0 and refinement["iterations"] > 0 and refinement["stop"] and refinement["seconds"] > 0
    )
    assert report["files"] == list(RUN_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(RUN_FILES)
    np.testing.assert_allclose(transform_matrix(load_transform(context, out / "mr_to_us.h5")), result.matrix, atol=1e-9)
    landmark_node = load_transform(context, out / "mr_to_us_landmarks.h5")
    np.testing.assert_allclose(transform_matrix(landmark_node), result.landmark_matrix, atol=1e-9)
    assert sitk.ReadImage(str(out / "report.png")).GetNumberOfComponentsPerPixel() == 3
    page = (out / "report.html").read_bytes().decode("utf-8")
    assert "landmark fit + MI refinement. Columns" in page
    # the figure has a titled row per matrix: before (identity), after the landmarks, after the refinement
    three_rows = png_rows(out / "report.png")
    run_sample(tmp_path / "plain", detectors=global_detectors, figure=True)
    two_rows = png_rows(tmp_path / "plain" / "report.png")
    assert (two_rows, three_rows) == (figure_height(2), figure_height(3))
    assert row_title_shown(out / "report.png", 1, "After landmark fit")
    assert row_title_shown(out / "report.png", 2, "After landmark fit + MI refinement")
    assert not row_title_shown(out / "report.png", 2, "After landmark fit")
    assert row_title_shown(tmp_path / "plain" / "report.png", 0, "Before: MR as acquired (no transform)")
    # a forced re-run replaces every file, the landmark transform and the figure too
    figure_before = (out / "report.png").read_bytes()
    again = run_sample(out, detectors=global_detectors, refine=True, force=True, weighting="none", figure=True)
    np.testing.assert_allclose(
        transform_matrix(load_transform(context, out / "mr_to_us_landmarks.h5")), again.landmark_matrix, atol=1e-9
    )
    assert not np.allclose(again.landmark_matrix, result.landmark_matrix, atol=1e-6)
    assert (out / "report.png").read_bytes() != figure_before  # other matrices, other overlays
    assert png_rows(out / "report.png") == three_rows
    # ... and the refinement's landmark transform and the figure do not stay beside a result that has neither
    run_sample(out, detectors=global_detectors, force=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(set(RUN_FILES) - {"mr_to_us_landmarks.h5", "report.png"})


def test_run_case_defaults_are_the_shipped_thresholds_the_spread_weighting_and_the_figure(global_detectors, tmp_path):
    case = sample_case_dir()
    result = run_case(case / "mr.nrrd", case / "us.nrrd", tmp_path / "defaults", detectors=global_detectors)
    assert result.report["quality"]["thresholds"] == load_thresholds()
    assert result.report["fit"]["weighting"] == "spread" and result.report["refinement"] is None
    assert "report.png" in result.report["files"] and (tmp_path / "defaults" / "report.png").is_file()


def test_run_case_refuses_a_fit_that_misses_the_us_fan_and_writes_nothing(global_detectors, sample_images, tmp_path):
    _, us_image = sample_images
    array = np.zeros(sitk.GetArrayFromImage(us_image).shape, np.uint8)
    array[:3, :3, :3] = 100  # a "fan" of a few voxels in a corner, far from what the detectors find
    corner = sitk.GetImageFromArray(array)
    corner.CopyInformation(us_image)
    sitk.WriteImage(corner, str(tmp_path / "corner.nrrd"))
    out = tmp_path / "far"
    with pytest.raises(
        LandmarkInitError,
        match=exactly(
            "after the fit the MR volume does not overlap the US field of view at all: the detections are wrong or the "
            "two volumes do not belong to the same patient/session; check the inputs (nothing was written)"
        ),
    ):
        run_sample(out, detectors=global_detectors, us=tmp_path / "corner.nrrd")
    assert not out.exists()


def test_run_case_names_the_input_that_is_missing(global_detectors, tmp_path):
    missing = tmp_path / "none.nrrd"
    with pytest.raises(LandmarkFileError, match=exactly(f"MR volume {missing} does not exist")):
        run_sample(tmp_path / "a", detectors=global_detectors, mr=missing)
    with pytest.raises(LandmarkFileError, match=exactly(f"US volume {missing} does not exist")):
        run_sample(tmp_path / "b", detectors=global_detectors, us=missing)


def test_run_case_never_writes_over_an_input_volume(global_detectors, tmp_path):
    """An input volume that one of the result files would replace is refused before anything is read or written
    (with --force too, which allows replacing results, not inputs)."""
    case = sample_case_dir()
    out = tmp_path / "out"
    out.mkdir()
    for what, name, kwargs in (
        ("MR volume", "report.png", {"mr": out / "report.png"}),
        ("US volume", "us_landmarks.mrk.json", {"us": out / "us_landmarks.mrk.json"}),
    ):
        shutil.copy(case / f"{what[:2].lower()}.nrrd", out / name)
        message = (
            f"--output-dir {out / name} is also the input {what}; inputs are never overwritten: choose another "
            "--output-dir"
        )
        with pytest.raises(LandmarkFileError, match=exactly(message)):
            run_sample(out, detectors=global_detectors, force=True, **kwargs)
        assert (out / name).read_bytes() == (case / f"{what[:2].lower()}.nrrd").read_bytes()
    assert sorted(p.name for p in out.iterdir()) == ["report.png", "us_landmarks.mrk.json"]


def run_in_process(capsys, *args):
    """`landmarkinit run` on the sample pair in this process: (exit status, stderr lines)."""
    case = sample_case_dir()
    code = main(["run", "--mr", str(case / "mr.nrrd"), "--us", str(case / "us.nrrd"), *map(str, args)])
    return code, capsys.readouterr().err.strip().splitlines()


def test_run_refusals_create_nothing(tmp_path, capsys):
    """Before: `run -o out/sub` with a missing input created out/sub."""
    out = tmp_path / "out" / "sub"
    code = main(
        ["run", "--mr", str(tmp_path / "none.nrrd"), "--us", str(sample_case_dir() / "us.nrrd"), "-o", str(out)]
    )
    assert code == 2 and capsys.readouterr().err.strip() == (
        f"landmarkinit run: error: MR volume {tmp_path / 'none.nrrd'} does not exist"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{", "is not JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        ('{"thresholds": [1, 2]}', 'has no "thresholds" object'),
        ('{"thresholds": {"fre": 1.5}}', "names unknown feature(s) fre (known: " + ", ".join(FEATURES) + ")"),
        ('{"thresholds": {"fre_mm": "1.5"}}', 'gives fre_mm = "1.5", not a finite number'),
        ('{"thresholds": {"fre_mm": NaN}}', "gives fre_mm = NaN, not a finite number"),
    ],
)
def test_a_bad_thresholds_file_is_one_line_before_any_work(tmp_path, capsys, content, problem):
    """Before: a traceback (JSONDecodeError, KeyError) after the detectors were opened, or silently no check."""
    (tmp_path / "qa.json").write_text(content)
    code, err = run_in_process(capsys, "-o", tmp_path / "out", "--qa-thresholds", tmp_path / "qa.json")
    assert code == 2 and err == [
        f"landmarkinit run: error: QA thresholds file {tmp_path / 'qa.json'} {problem}; give a file written by "
        "`landmarkinit calibrate-flags`"
    ]
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folders_are_refused_before_any_work(tmp_path, capsys):
    """Before: the whole run, then a traceback and exit 1 (FileExistsError, NotADirectoryError, EROFS)."""
    (tmp_path / "file").write_text("keep")
    code, err = run_in_process(capsys, "-o", tmp_path / "file")
    assert code == 2 and err == [f"landmarkinit run: error: {tmp_path / 'file'} is a file, not a folder; give a folder"]
    code, err = run_in_process(capsys, "-o", tmp_path / "file" / "sub")
    assert code == 2 and err == [
        f"landmarkinit run: error: cannot create folder {tmp_path / 'file' / 'sub'}: {tmp_path / 'file'} is a file"
    ]
    with read_only_folder(tmp_path / "ro") as ro:
        for out, message in (
            (ro, f"cannot write in folder {ro}: Read-only file system"),
            (ro / "out", f"cannot create folder {ro / 'out'} in {ro}: Read-only file system"),
        ):
            code, err = run_in_process(capsys, "-o", out)
            assert code == 2 and err == [f"landmarkinit run: error: {message}"]
            code = main(["run", "--cases", str(tmp_path), "-o", str(out)])  # batch mode too
            assert code == 2 and capsys.readouterr().err == f"landmarkinit run: error: {message}\n"
        assert list(ro.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "ro"]


def test_run_inputs_are_never_outputs(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    qa = tmp_path / "out" / "report.json"
    qa.write_text(json.dumps({"thresholds": {}}))
    code, err = run_in_process(capsys, "-o", tmp_path / "out", "--qa-thresholds", qa, "--force")
    assert code == 2 and err == [
        f"landmarkinit run: error: --output-dir {qa} is also the input --qa-thresholds; inputs are never overwritten: "
        "choose another --output-dir"
    ]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["report.json"]


def test_a_full_disk_is_one_line_and_leaves_no_truncated_file(tmp_path, capsys):
    """Before: a truncated report.png under its final name, then a traceback and exit 1. The disk here holds the
    landmarks and the transform but not the figure. With --force over an earlier result, the earlier report.json
    is gone (it would mark the mix of old and new files as a complete result)."""
    with nearly_full_disk(tmp_path / "disk", free_kib=40, size_kib=1024) as disk:
        out = disk / "out"
        out.mkdir()
        (out / "report.json").write_text("{}")  # an earlier result
        code, err = run_in_process(capsys, "-o", out, "--force")
        assert code == 2
        assert err == [
            f"landmarkinit run: error: not enough space in {out}; free some space or choose another output folder"
        ]
        assert sorted(p.name for p in out.iterdir()) == [
            "mr_landmarks.mrk.json",
            "mr_to_us.h5",
            "us_landmarks.mrk.json",
        ]
        (disk / "filler").unlink()
        (disk / "filler").write_bytes(b"\0" * (os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize))
        code, err = run_in_process(capsys, "-o", disk / "new")  # a full disk is refused before any work
        assert code == 2 and err == [f"landmarkinit run: error: {no_space(disk)}"]
        assert not (disk / "new").exists()


def no_space(folder):
    return f"not enough space in {folder}; free some space or choose another output folder"
