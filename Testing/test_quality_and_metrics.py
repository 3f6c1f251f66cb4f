"""Quality-control rules and registration metrics with exact values; `landmarkinit evaluate` on a tiny dataset."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.fit.landmark_fit import fit_rigid
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.pipeline.quality import (
    FEATURES,
    assess,
    calibrate,
    choose_thresholds,
    fan_margin_at,
    features,
    load_thresholds,
    rates,
    us_fan_margin_mm,
)
from LandmarkInitLib.resources import models_dir
from LandmarkInitResearch.evaluation.error_components import error_components, gland_frame
from LandmarkInitResearch.evaluation.metrics import (
    dice_after,
    gland_surface_points,
    icp_matrix,
    rotation_angle_deg,
    sre_mm,
    tre_mm,
)

DIRECTION = Rotation.from_euler("zyx", [25, -15, 40], degrees=True).as_matrix() @ np.diag([1.0, 1.0, -1.0])


def rigid(angles_deg, translation):
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    m[:3, 3] = translation
    return m


def test_assess_flags_each_feature_in_its_direction():
    thresholds = {
        "disagreement_mm": 3.0,
        "spread_mm": 10.0,
        "fre_mm": 2.0,
        "conditioning": 0.2,
        "us_fan_margin_mm": 1.0,
    }
    fine = {"disagreement_mm": 1.0, "spread_mm": 5.0, "fre_mm": 1.0, "conditioning": 0.5, "us_fan_margin_mm": 8.0}
    assert not assess(fine, thresholds).review
    for name, value in [
        ("disagreement_mm", 3.5),
        ("spread_mm", 11),
        ("fre_mm", 2.5),
        ("conditioning", 0.1),
        ("us_fan_margin_mm", -np.inf),
    ]:
        report = assess({**fine, name: value}, thresholds)
        assert len(report.flags) == 1 and name in report.flags[0], report.flags
    # a feature the detector cannot give (NaN) and a threshold not calibrated are skipped; detector flags kept
    report = assess({**fine, "disagreement_mm": float("nan")}, {"spread_mm": 10.0}, ["US: detected outside the volume"])
    assert report.flags == ["US: detected outside the volume"]
    assert report.as_dict()["features"]["disagreement_mm"] is None


@pytest.mark.parametrize("name", list(FEATURES))
def test_a_value_exactly_on_its_threshold_is_not_flagged(name):
    """Flagging is strict: beyond the limit (above a "high" one, below a "low" one), never at it."""
    limit = 0.75
    beyond = np.nextafter(limit, np.inf if FEATURES[name][0] == "high" else -np.inf)
    assert not assess({name: limit}, {name: limit}).review
    assert assess({name: beyond}, {name: limit}).flags == [
        f"{FEATURES[name][1]} ({name} = {beyond:.3g}, threshold {limit:.3g})"
    ]


def test_feature_values_of_an_initialization_exact():
    from LandmarkInitLib.detection.detectors import Detection
    from LandmarkInitLib.fit.landmark_fit import fit_rigid
    from LandmarkInitLib.landmarks import LANDMARK_LABELS
    from LandmarkInitLib.pipeline.initialize import Initialization

    array = np.zeros((20, 30, 40), np.uint8)
    array[5:15, 5:25, 5:35] = 100  # the "fan": voxels K 5..14, J 5..24, I 5..34
    geometry = VolumeGeometry((40, 30, 20), np.array([0.5, 1.0, 2.0]), np.array([3.0, -4.0, 5.0]), DIRECTION)
    us_image = sitk.GetImageFromArray(array)
    geometry.apply_to_sitk_image(us_image)
    # US points: one 7 mm inside the fan's nearest edge (I: 14 voxels of 0.5 mm to the last inside voxel centre),
    # the others deeper
    us_points = geometry.ijk_to_ras_points([[20, 15, 9], [19, 12.5, 10], [20, 17, 9.5]])
    mr_points = us_points @ rigid([10, 0, 0], [0, 0, 0])[:3, :3].T + [1.0, 2.0, 3.0]
    mr_points[2] += [0.0, 0.0, 0.6]  # a fit residual

    def detection(points, spreads, global_offsets):
        d = Detection(LANDMARK_LABELS, points, np.array(spreads), "us", "m", "onnx")
        d.global_points_ras = points + np.array(global_offsets)
        return d

    mr = detection(mr_points, [1.0, 2.0, 3.0], [[0, 0, 0], [3.0, 4.0, 0], [0, 0, 1.0]])  # largest gap 5 mm
    us = detection(us_points, [1.5, 2.5, 0.5], [[0, 0, 2.0], [0, 0, 0], [0, 0, 0]])
    fit = fit_rigid(mr_points, us_points)
    values = features(Initialization(mr, us, fit, np.ones(3), "none"), us_image)
    assert values["disagreement_mm"] == pytest.approx(5.0)
    assert values["spread_mm"] == 3.0  # the largest spread of either modality, not a mean
    assert values["fre_mm"] == fit.rms and fit.rms > 0.1
    assert values["conditioning"] == fit.conditioning
    assert values["us_fan_margin_mm"] == pytest.approx(min(us_fan_margin_mm(us_image, us_points)))
    assert values["us_fan_margin_mm"] == pytest.approx(7.0, abs=1e-4)
    # a detector without global stage or spread: those features are not assessed (NaN), the others are
    plain = Detection(LANDMARK_LABELS, mr_points, np.full(3, np.nan), "mr", "m", "onnx")
    values = features(Initialization(plain, plain, fit, np.ones(3), "none"), us_image)
    assert np.isnan(values["disagreement_mm"]) and np.isnan(values["spread_mm"])


def test_calibration_and_rates_exact():
    rows = [{"fre_mm": float(v)} for v in range(1, 21)] + [{"fre_mm": 30.0}, {"fre_mm": 1.5}]
    bad = [False] * 20 + [True, True]
    thresholds = calibrate(rows, bad)
    assert thresholds == {"fre_mm": 19.0}  # split-conformal, rate 0.1: the floor(0.1 * 21) = 2nd largest good value
    r = rates(rows, bad, thresholds)
    assert r["false_alarm_rate"] == pytest.approx(1 / 20)  # only 20 > 19
    assert r["miss_rate"] == pytest.approx(1 / 2)  # 30 is caught, 1.5 is missed
    assert r["per_feature"]["fre_mm"]["detected_bad"] == pytest.approx(0.5)


def test_shipped_thresholds_state_their_evidence():
    """Before: five features at per-feature 2 % quantiles of 29 cases, no held-out figures in the file."""
    doc = json.loads((models_dir() / "qa_thresholds.json").read_text(encoding="utf-8"))
    assert doc["schema"] == "landmarkinit-qa-thresholds/2" and doc["false_alarm_rate"] == 0.1
    assert set(doc["thresholds"]) == set(doc["features"]) and set(doc["thresholds"]) <= set(FEATURES)
    cal, held_out = doc["calibration_figures"], doc["held_out"]
    assert cal["cases"] == doc["calibrated_on"]["cases"] >= 100 and 0 < cal["failed_flagged"] <= cal["failed"]
    assert held_out["cases"] >= 50 and "test_seed3" in held_out["data"] and "rule" in doc
    low, high = held_out["false_alarm_rate_95ci"]
    assert (
        low
        <= held_out["false_alarm_rate"]
        == held_out["good_flagged"] / (held_out["cases"] - held_out["failed"])
        <= high
    )
    assert load_thresholds() == doc["thresholds"]


def test_us_fan_margin_exact_on_a_box():
    array = np.zeros((20, 30, 40), np.uint8)
    array[5:15, 5:25, 5:35] = 100  # a box of voxels: K 5..14, J 5..24, I 5..34
    geometry = VolumeGeometry((40, 30, 20), np.array([0.5, 1.0, 2.0]), np.array([3.0, -4.0, 5.0]), DIRECTION)
    image = sitk.GetImageFromArray(array)
    geometry.apply_to_sitk_image(image)
    # nearest boundary voxel: I = 34, 14 voxels of 0.5 mm away (J: 9 mm, K: 4 slices of 2 mm = 8 mm); ITK measures
    # to the centre of the last inside voxel, so 7 mm, not the 7.25 mm of the voxel edge
    centre = geometry.ijk_to_ras_points([[20, 15, 9]])
    assert float(us_fan_margin_mm(image, centre)[0]) == pytest.approx(7.0, abs=1e-4)
    outside = geometry.ijk_to_ras_points([[20, 15, 1]])  # 4 slices below the box, 2 mm each
    assert float(us_fan_margin_mm(image, outside)[0]) < -6.0
    assert us_fan_margin_mm(image, [[1e4, 0, 0]])[0] == -np.inf


def test_metrics_exact_values():
    points = np.random.default_rng(0).normal(0, 20, (200, 3))
    gt = rigid([5, 10, -20], [1, 2, 3])
    assert sre_mm(gt, gt, points) == pytest.approx(0.0, abs=1e-12)
    shifted = gt.copy()
    shifted[:3, 3] += [3.0, 4.0, 0.0]
    assert sre_mm(gt, shifted, points) == pytest.approx(5.0)
    assert rotation_angle_deg(gt, gt @ rigid([0, 0, 17], [0, 0, 0])) == pytest.approx(17.0)
    assert tre_mm(gt, points[:3], apply(gt, points[:3]) + [0, 0, 2.0]) == pytest.approx(2.0)


def test_error_components_exact_in_the_gland_frame_under_any_pose():
    # gland axis along +S, posterior median 15 mm posterior (-A) of mid-gland: lateral = S x P = +R
    truth = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 43.0], [1.0, -13.0, 23.0]])
    error = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.5, 0.25, -1.0]])
    np.testing.assert_allclose(gland_frame(truth), [[0, 0, 1], [0, -1, 0], [1, 0, 0]], atol=1e-12)
    expected = [[0, 0, 0], [2.0, 0, 0], [-1.0, -0.25, 0.5]]
    np.testing.assert_allclose(error_components(truth + error, truth), expected, atol=1e-12)
    # the components belong to the gland, not to the scanner: the same case in another pose (a rotation with a
    # flip, as in a left-handed index frame, moves both truth and error) gives the same numbers
    moved = rigid([25, -15, 40], [7, -3, 11])
    moved[:3, :3] = moved[:3, :3] @ DIRECTION
    np.testing.assert_allclose(
        error_components(apply(moved, truth + error), apply(moved, truth)),
        np.array(expected) * [1, 1, np.linalg.det(moved[:3, :3])],  # a mirror swaps the side a lateral error is on
        atol=1e-12,
    )
    with pytest.raises(ValueError, match="mid-sagittal plane is undefined"):
        error_components(truth, np.array([[0, 0, 0], [0, 0, 40.0], [0, 0, 20.0]]))
    with pytest.raises(ValueError, match=r"\(3, 3\) arrays"):
        error_components(truth[:2], truth[:2])


def apply(m, p):
    return p @ m[:3, :3].T + m[:3, 3]


def sphere_mask(shape, centre_ijk, radius_vox):
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return ((i - centre_ijk[0]) ** 2 + (j - centre_ijk[1]) ** 2 + (k - centre_ijk[2]) ** 2 <= radius_vox**2).astype(
        np.uint8
    )


def test_gland_surface_is_on_the_boundary_in_ras_on_a_flipped_volume():
    geometry = VolumeGeometry((40, 40, 40), np.array([1.0, 1.0, 1.0]), np.array([10.0, -5.0, 2.0]), DIRECTION)
    mask = sphere_mask((40, 40, 40), (20, 20, 20), 12)
    points = gland_surface_points(mask, geometry)
    centre = geometry.ijk_to_ras_points([[20, 20, 20]])[0]
    radii = np.linalg.norm(points - centre, axis=1)
    # discrete flying edges puts the surface halfway along grid edges that leave the mask (radius <= 12 voxels)
    assert abs(radii.mean() - 12.0) < 0.25 and radii.max() < 13.0 and radii.min() > 11.0


def test_dice_and_icp_recover_a_known_motion():
    geometry = VolumeGeometry((48, 48, 48), np.array([1.0, 1.0, 1.0]), np.array([-24.0, -24.0, -24.0]), np.eye(3))
    k, j, i = np.meshgrid(*[np.arange(48)] * 3, indexing="ij")
    ellipsoid = (((i - 24) / 16.0) ** 2 + ((j - 24) / 11.0) ** 2 + ((k - 24) / 8.0) ** 2 <= 1).astype(np.uint8)
    image = sitk.GetImageFromArray(ellipsoid)
    geometry.apply_to_sitk_image(image)
    assert dice_after(np.eye(4), image, image) == pytest.approx(1.0)
    moved = rigid([0, 0, 0], [3.0, 0, 0])
    assert 0.7 < dice_after(moved, image, image) < 0.95
    surface = gland_surface_points(ellipsoid, geometry)
    truth = rigid([4, -3, 6], [2.0, -1.5, 1.0])
    target = apply(truth, surface)
    found = icp_matrix(surface, target, rigid([0, 0, 0], [1.0, 0, 0]))
    assert sre_mm(truth, found, surface) < 0.3


def test_evaluate_command_on_a_tiny_dataset(tiny_dataset, tmp_path):
    out = tmp_path / "eval"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "LandmarkInitLib.cli",
            "evaluate",
            "--data",
            str(tiny_dataset),
            "--output-dir",
            str(out),
            "--calibrate-qa",
            str(tmp_path / "qa.json"),
            "--workers",
            "2",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads((out / "registration.json").read_text())
    assert len(data["cases"]) == 4
    summary = data["summary"]
    # ground-truth landmarks register far better than identity; moments align centres, not rotations
    assert summary["gt_landmarks"]["sre_known_mm"]["mean"] < 5.0 < summary["identity"]["sre_known_mm"]["mean"]
    assert summary["gt_landmarks"]["dice"]["mean"] > 0.8
    text = (out / "registration.md").read_text()
    assert "Synthetic phantom data, not patient data" in text and "Table 3" in text and "Table 4" in text
    assert (out / "registration_boxplots.png").stat().st_size > 10_000
    thresholds = json.loads((tmp_path / "qa.json").read_text())
    assert thresholds["calibrated_on"] == str(tiny_dataset) and thresholds["thresholds"]
    assert set(thresholds["thresholds"]) <= set(FEATURES)
    for row in data["cases"]:  # the phantom's ICP estimate of T_gt is close to its known transform
        assert row["gt_icp_vs_known_sre_mm"] < 5.0


def exactly(message):
    return "^" + re.escape(message) + "$"


def test_fan_margin_is_read_at_the_nearest_voxel_and_only_inside_the_volume():
    # a "distance map" whose value names the voxel: 100 i + 10 j + k, on a 4 x 5 x 6 grid with index = LPS mm
    i, j, k = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij")
    distance_map = sitk.GetImageFromArray((100 * i + 10 * j + k).transpose(2, 1, 0).astype(np.float32))
    index_points = {  # continuous index (I, J, K) -> value
        (0.0, 0.0, 0.0): 0.0,
        (-0.5, 0.0, 0.0): 0.0,  # the outer face of the first voxel still counts
        (0.0, -0.5, -0.5): 0.0,
        (1.4, 2.6, 0.4): 130.0,
        (3.0, 4.0, 5.0): 345.0,
        (3.5, 4.5, 5.5): 345.0,  # the outer face of the last voxel
        (np.nextafter(-0.5, -1), 0.0, 0.0): -np.inf,
        (-1.0, 0.0, 0.0): -np.inf,
        (4.0, 0.0, 0.0): -np.inf,
        (0.0, 0.0, np.nextafter(5.5, 6)): -np.inf,
    }
    ras = [[-a, -b, c] for a, b, c in index_points]  # LPS -> RAS
    np.testing.assert_array_equal(fan_margin_at(distance_map, ras), list(index_points.values()))


def test_features_of_a_detector_without_spreads_give_no_warning():
    from LandmarkInitLib.detection.detectors import Detection
    from LandmarkInitLib.landmarks import LANDMARK_LABELS
    from LandmarkInitLib.pipeline.initialize import Initialization

    us_image = sitk.Image(8, 8, 8, sitk.sitkUInt8) + 1
    points = np.array([[-1.0, -2.0, 3.0], [-4.0, -1.0, 2.0], [-2.0, -5.0, 5.0]])  # LPS (1, 2, 3) ... inside
    plain = Detection(LANDMARK_LABELS, points, np.full(3, np.nan), "us", "m", "onnx")
    fit = fit_rigid(points, points + [[0.0, 0.0, 0.5], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = features(Initialization(plain, plain, fit, np.ones(3), "none"), us_image)
    assert np.isnan(values["spread_mm"]) and np.isnan(values["disagreement_mm"])
    assert (values["fre_mm"], values["conditioning"]) == (fit.rms, fit.conditioning) and fit.rms > 0.1


def test_quality_report_as_dict_exact():
    report = assess(
        {"fre_mm": 2.5, "conditioning": 0.4, "us_fan_margin_mm": -np.inf, "disagreement_mm": float("nan")},
        {"fre_mm": 2.0, "conditioning": 0.2},
        ["US: detected outside the volume"],
    )
    assert report.review is True
    assert report.as_dict() == {
        "review_recommended": True,
        "flags": [
            "US: detected outside the volume",
            "the fit residual (FRE) is large: MR and US landmark triangles differ in shape (fre_mm = 2.5, threshold 2)",
        ],
        "features": {"fre_mm": 2.5, "conditioning": 0.4, "us_fan_margin_mm": None, "disagreement_mm": None},
        "thresholds": {"fre_mm": 2.0, "conditioning": 0.2},
    }
    assert assess({"fre_mm": 1.0}, {"fre_mm": 2.0}).as_dict()["review_recommended"] is False


def test_load_thresholds_from_a_file(tmp_path):
    path = tmp_path / "qa.json"
    path.write_bytes(json.dumps({"calibrated_on": "données/validation", "thresholds": {"fre_mm": 2.5}}).encode())
    assert load_thresholds(path) == {"fre_mm": 2.5}
    assert load_thresholds(str(path)) == {"fre_mm": 2.5}
    missing = tmp_path / "none.json"
    with pytest.raises(
        LandmarkFileError,
        match=exactly(f"QA thresholds file {missing} not found; write one with `landmarkinit calibrate-flags`"),
    ):
        load_thresholds(missing)


def test_choose_thresholds_exact_for_both_directions_and_missing_values():
    """Before: every feature got its own quantile threshold whether or not it caught a failure."""
    # 20 good cases with values 1..20 (one more without fre_mm, one with None as a JSON report holds it)
    rows = [{"fre_mm": float(v), "conditioning": float(v)} for v in range(1, 21)]
    rows += [{"conditioning": 7.0}, {"fre_mm": None, "conditioning": 7.0}]
    # a failure only a low conditioning shows: conditioning alone is chosen, at the floor(0.1 * 23) = 2nd lowest
    rows += [{"fre_mm": 5.0, "conditioning": -100.0}]
    bad = [False] * 22 + [True]
    thresholds, figures = choose_thresholds(rows, bad, 0.1)
    assert thresholds == {"conditioning": 2.0}
    assert figures == {
        "cases": 23,
        "failed": 1,
        "failed_flagged": 1,
        "good_flagged": 1,  # the good value 1 < 2
        "false_alarm_rate": pytest.approx(1 / 22),
        "recall": 1.0,
    }
    # two failures, each caught by another feature: both features, each at rate 0.1 / 2 (the most extreme value)
    rows += [{"fre_mm": 100.0, "conditioning": 10.0}]
    thresholds, figures = choose_thresholds(rows, bad + [True], 0.1)
    assert thresholds == {"fre_mm": 20.0, "conditioning": 1.0}
    assert figures["failed_flagged"] == 2 and figures["good_flagged"] == 0
    # both catch the one failure: the wider margin (in good cases' interquartile ranges) wins
    rows = [{"fre_mm": float(v), "conditioning": float(v)} for v in range(1, 21)] + [{"fre_mm": 90, "conditioning": 0}]
    assert choose_thresholds(rows, [False] * 20 + [True], 0.1)[0] == {"fre_mm": 19.0}
    # no failure: the first candidate alone
    assert choose_thresholds(rows[:20], [False] * 20, 0.1, candidates=["conditioning", "fre_mm"])[0] == {
        "conditioning": 2.0
    }
    with pytest.raises(ValueError):
        choose_thresholds(rows, [False] * 20)  # one flag per row


def test_rates_exact():
    rows = [{"fre_mm": 1.0}, {"fre_mm": 3.0}, {"fre_mm": 1.0, "conditioning": 0.1}]  # good cases
    rows += [{"fre_mm": 5.0}, {"fre_mm": 6.0}, {"fre_mm": 1.0, "conditioning": 0.1}, {"fre_mm": 1.0}]  # bad cases
    bad = [0, 0, 0, 1, 1, 1, 1]  # flags as 0 / 1 work as well as booleans
    r = rates(rows, bad, {"fre_mm": 2.0, "conditioning": 0.2})
    assert r == {
        "cases": 7,
        "bad_cases": 4,
        "false_alarm_rate": pytest.approx(2 / 3),  # good rows 1 (FRE) and 2 (conditioning)
        "miss_rate": pytest.approx(1 / 4),  # the last row
        "per_feature": {
            "fre_mm": {"false_alarm_rate": pytest.approx(1 / 3), "detected_bad": pytest.approx(2 / 4)},
            "conditioning": {"false_alarm_rate": pytest.approx(1 / 3), "detected_bad": pytest.approx(1 / 4)},
        },
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice": a rate of nothing is NaN
        r = rates(rows[:3], [False] * 3, {"fre_mm": 2.0})
    assert np.isnan(r["miss_rate"]) and np.isnan(r["per_feature"]["fre_mm"]["detected_bad"])
    assert r["false_alarm_rate"] == pytest.approx(1 / 3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/mem is Linux's")
def test_load_thresholds_refuses_bad_files_exactly(tmp_path):
    def refused(path, why):
        message = f"QA thresholds file {path} {why}; give a file written by `landmarkinit calibrate-flags`"
        with pytest.raises(LandmarkFileError, match=exactly(message)):
            load_thresholds(path)

    # a regular file that cannot be read: /proc/self/mem fails with EIO at offset 0 (root ignores a chmod)
    refused("/proc/self/mem", "could not be read (Input/output error)")
    # the JSON error is cut to its first 80 characters: here 85 long, the error being at char 100001
    path = tmp_path / "qa.json"
    path.write_bytes(b" " * 100_000 + b"{x")
    refused(path, "is not JSON (Expecting property name enclosed in double quotes: line 1 column 100002 (char 10)")
    # valid JSON, but not an object: no "thresholds" to look up (a list has no .get)
    for content in ("[]", '["thresholds"]', '"thresholds"', "2"):
        path.write_text(content)
        refused(path, 'has no "thresholds" object')
    # several unknown features: sorted, comma-separated
    path.write_text(json.dumps({"thresholds": {"zeta": 1.0, "fre_mm": 2.0, "alpha": 1.0}}))
    refused(path, "names unknown feature(s) alpha, zeta (known: " + ", ".join(FEATURES) + ")")
    # another schema (a later version's file)
    path.write_text(json.dumps({"schema": "landmarkinit-qa-thresholds/9", "thresholds": {"fre_mm": 2.0}}))
    refused(
        path,
        "has schema \"landmarkinit-qa-thresholds/9\", not 'landmarkinit-qa-thresholds/2' (written by another version?)",
    )


def test_ship_measures_each_held_out_set_and_their_pool_with_an_exact_interval(tmp_path):
    """`evaluate-quality-flags ship` on synthetic rows: the threshold comes from the calibration rows alone; the
    held-out figures are per file and pooled, with the exact (Clopper-Pearson) 95 % interval of the pooled rate."""
    from scipy.stats import beta

    from LandmarkInitResearch.evaluation.quality_flags import write_shipped

    def rows(fres, sre=1.0, flags=()):
        other = {"disagreement_mm": 1.0, "spread_mm": 2.0, "conditioning": 0.5, "us_fan_margin_mm": 10.0}
        return [
            {
                "case": f"case_{round(f)}",
                "sre_mm": sre,
                "gt_landmark_sre_mm": sre / 2,
                "features": {"fre_mm": f, **other},
                "mr": {"flags": []},
                "us": {"flags": list(flags)},
            }
            for f in fres
        ]

    def save(name, data):
        (tmp_path / name).write_text(json.dumps(data))
        return tmp_path / name

    calibration = save("cal.json", rows(np.arange(1.0, 11.0)) + rows([30.0], sre=9.0))  # one failure, FRE 30
    calibration2 = save("cal2.json", rows(np.arange(11.0, 21.0)))  # the same 20 good cases in two files
    a = save("a.json", rows([1.0, 2.0, 25.0, 3.0]))  # one false alarm of 4 good cases
    b = save(
        "b.json",
        rows([4.0, 22.0, 23.0, 5.0, 6.0, 7.0])  # 2 of 6 flagged
        + rows([40.0], sre=7.0)  # a failure the threshold flags
        + rows([8.0], sre=6.0, flags=["apex: detected outside the volume"]),  # one only the detector flags
    )
    write_shipped([calibration, calibration2], [a, b], None, tmp_path / "qa.json", tmp_path / "report", rate=0.1)
    shipped = json.loads((tmp_path / "qa.json").read_text())
    assert list(shipped["thresholds"]) == ["fre_mm"] and shipped["thresholds"]["fre_mm"] < 25.0 - 1e-9
    held = shipped["held_out"]
    assert (held["cases"], held["failed"], held["failed_flagged"], held["good_flagged"]) == (12, 2, 1, 3)
    assert (held["failed_reviewed"], held["good_reviewed"]) == (2, 3)
    low, high = beta.ppf(0.025, 3, 8), beta.ppf(0.975, 4, 7)  # Clopper-Pearson for 3 of 10
    np.testing.assert_allclose(held["false_alarm_rate_95ci"], [low, high], rtol=1e-6)
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| held out: " in report and "a.json | 0 of 0 | 1 of 4 (25%)" in report
    assert "| held out, all | 1 of 2 | 3 of 10 (30%) | 2 of 2 / 3 of 10 (30%) |" in report
    # the threshold (19) is from both calibration files pooled; each is reported apart, then all of them
    assert "cal.json | 1 of 1 | 0 of 10 (0%) |" in report and "cal2.json | 0 of 0 | 1 of 10 (10%) |" in report
    assert "| calibration, all | 1 of 1 | 1 of 20 (5%) |" in report
    # every failure listed once, calibration first, with its true-landmark SRE and what flagged it
    failures = json.loads((tmp_path / "report" / "results.json").read_text())["failed_cases"]
    assert [(Path(f["set"]).name, f["case"], f["sre_mm"], f["true_landmark_sre_mm"]) for f in failures] == [
        ("cal.json", "case_30", 9.0, 4.5),
        ("b.json", "case_40", 7.0, 3.5),
        ("b.json", "case_8", 6.0, 3.0),
    ]
    assert [f["by_thresholds"] for f in failures] == [True, True, False]
    assert failures[2]["detector_flags"] == ["apex: detected outside the volume"]
    assert "| case_8 | 6.00 | 3.00 | 8.00 | no | apex: detected outside the volume |" in report
