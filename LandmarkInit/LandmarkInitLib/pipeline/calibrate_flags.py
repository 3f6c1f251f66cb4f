"""`landmarkinit calibrate-flags`: a site recalibrates its quality flags on its own cases.

Cases: a site dataset (the corrections log: ``case_*/`` folders with ``mr.nrrd``/``us.nrrd``, the corrected
``*_landmarks.mrk.json`` and what the detector said, ``*_landmarks_predicted.mrk.json``) or an evaluation set
(phantom layout: ground-truth ``*_landmarks.mrk.json``). The distance between a predicted and a corrected landmark
is the detector's error. A case is a failed initialization when the fit of the predicted landmarks maps the
corrected MR landmarks more than ``FAILED_TRE_MM`` (mean) from the corrected US ones.

Predicted landmarks recorded in the case are used as they are (the error of the model that was in use); the fit
residual and the conditioning are then computed from them (unweighted: spreads are not recorded), the other
features need a detection. Cases without recorded predictions are detected with the current models.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from LandmarkInitLib.errors import LandmarkFileError
from LandmarkInitLib.pipeline.quality import FEATURES, PREFERRED, QA_SCHEMA, choose_thresholds

FAILED_TRE_MM = 5.0
PREDICTED_SUFFIX = "_landmarks_predicted.mrk.json"


def case_folders(root) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise LandmarkFileError(f"dataset folder {root} does not exist; give a site dataset or an evaluation set")
    folders = [root] if (root / "case.json").is_file() else sorted(p for p in root.iterdir() if p.is_dir())
    folders = [
        f for f in folders if (f / "mr_landmarks.mrk.json").is_file() and (f / "us_landmarks.mrk.json").is_file()
    ]
    if not folders:
        raise LandmarkFileError(
            f"{root} holds no case with both corrected landmark files (case folders with mr_landmarks.mrk.json and "
            "us_landmarks.mrk.json); give a site dataset or an evaluation set"
        )
    return folders


def measure_case(folder: Path, detectors_factory) -> dict:
    """Features and errors of one case (both modalities' corrected landmarks needed)."""
    from LandmarkInitLib.fit.landmark_fit import apply_transform, fit_rigid
    from LandmarkInitLib.io.datasets import read_mrk_json
    from LandmarkInitLib.landmarks import LANDMARK_LABELS

    corrected = {m: read_mrk_json(folder / f"{m}_landmarks.mrk.json").ordered(LANDMARK_LABELS) for m in ("mr", "us")}
    recorded = all((folder / f"{m}{PREDICTED_SUFFIX}").is_file() for m in ("mr", "us"))
    if recorded:
        predicted = {m: read_mrk_json(folder / f"{m}{PREDICTED_SUFFIX}").ordered(LANDMARK_LABELS) for m in ("mr", "us")}
        fit = fit_rigid(predicted["mr"], predicted["us"])
        features = {"fre_mm": float(fit.rms), "conditioning": float(fit.conditioning)}
    else:
        from LandmarkInitLib.io.images import read_image
        from LandmarkInitLib.pipeline.initialize import initialize
        from LandmarkInitLib.pipeline.quality import features as qa_features

        images = {m: read_image(folder / f"{m}.nrrd", m.upper()) for m in ("mr", "us")}
        init = initialize(images["mr"], images["us"], detectors_factory(), refuse_swapped=False)
        predicted = {"mr": init.mr.points_ras, "us": init.us.points_ras}
        fit, features = init.fit, qa_features(init, images["us"])
    moved = apply_transform(fit.matrix, corrected["mr"])
    return {
        "case": folder.name,
        "source": "recorded predictions" if recorded else "detected now",
        "tre_mm": float(np.mean(np.linalg.norm(moved - corrected["us"], axis=1))),
        "landmark_errors_mm": {
            m: [float(e) for e in np.linalg.norm(np.asarray(predicted[m]) - corrected[m], axis=1)] for m in ("mr", "us")
        },
        "features": features,
    }


def calibrate_flags(data, *, false_alarm_rate: float = 0.1, detectors_factory=None, progress=None) -> dict:
    """Measure every case, choose the thresholds; the thresholds file's content (see quality.load_thresholds)."""
    if not 0.0 < false_alarm_rate < 1.0:
        raise LandmarkFileError(f"--false-alarm-rate {false_alarm_rate:g} is not between 0 and 1; give e.g. 0.1")
    rows = []
    for i, folder in enumerate(case_folders(data)):
        if progress:
            progress(i, folder.name)
        rows.append(measure_case(folder, detectors_factory))
    bad = [r["tre_mm"] > FAILED_TRE_MM for r in rows]
    # Only features every case has: a recorded case has no detection to measure a spread on.
    candidates = [f for f in PREFERRED if all(f in r["features"] for r in rows)]
    thresholds, figures = choose_thresholds([r["features"] for r in rows], bad, false_alarm_rate, candidates)
    errors = np.array([e for r in rows for m in ("mr", "us") for e in r["landmark_errors_mm"][m]])
    return {
        "schema": QA_SCHEMA,
        "thresholds": thresholds,
        "features": {name: FEATURES[name][1] for name in thresholds},
        "false_alarm_rate": false_alarm_rate,
        "rule": (
            "a case is a failed initialization when the fit of its predicted landmarks maps the corrected MR "
            f"landmarks more than {FAILED_TRE_MM:g} mm (mean) from the corrected US ones; the smallest set of features "
            "that flags every failed case, each feature's threshold the split-conformal bound for "
            f"{false_alarm_rate:g} / (number of features) of the good cases (quality.choose_thresholds)"
        ),
        "calibrated_on": {
            "data": str(data),
            "cases": len(rows),
            "failed_cases": int(sum(bad)),
            "recorded_predictions": sum(r["source"] == "recorded predictions" for r in rows),
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "calibration_figures": figures
        | {
            "landmarks": int(errors.size),
            "landmark_error_mean_mm": float(errors.mean()),
            "landmarks_over_10mm": int((errors > 10).sum()),
        },
        "held_out": None,
        "cases": rows,
    }


def summary_lines(result: dict) -> list[str]:
    f, c = result["calibration_figures"], result["calibrated_on"]
    lines = [
        f"{c['cases']} cases ({c['recorded_predictions']} with recorded predictions), {c['failed_cases']} failed "
        f"initialization(s) (corrected-landmark error > {FAILED_TRE_MM:g} mm)",
        "thresholds: "
        + ", ".join(f"{n} {'>' if FEATURES[n][0] == 'high' else '<'} {v:.3g}" for n, v in result["thresholds"].items()),
        f"on these cases: {f['failed_flagged']} of {f['failed']} failed cases flagged, {f['good_flagged']} of "
        f"{f['cases'] - f['failed']} good cases flagged ({f['false_alarm_rate']:.0%}; stated rate "
        f"{result['false_alarm_rate']:.0%} on new cases)",
        f"detector error: mean {f['landmark_error_mean_mm']:.2f} mm over {f['landmarks']} landmarks, "
        f"{f['landmarks_over_10mm']} more than 10 mm off",
    ]
    return lines


def write_thresholds(result: dict, path, force: bool = False) -> None:
    from LandmarkInitLib.io.output_files import atomic_output

    with atomic_output(Path(path), force=force) as tmp:  # per-case errors and features only: no image, no point
        tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
