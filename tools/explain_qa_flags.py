"""Why a `landmarkinit run` result is flagged for review, for `make demo`: the run's QA features against the
shipped thresholds, how often the same thresholds flag the good cases of the published synthetic test set
(docs/results/registration/registration.json, written by `make results`), and, when the case has a ground truth
(a phantom case folder such as the shipped sample case), how far the result really is from it.

    .venv/bin/python tools/explain_qa_flags.py build/demo/run/report.json --case Resources/SampleData/phantom/case_0000

Everything printed is computed from those files; nothing here changes a threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from LandmarkInitLib.pipeline.quality import FEATURES, assess

ROOT = Path(__file__).resolve().parents[1]
TEST_RESULTS = ROOT / "docs" / "results" / "registration" / "registration.json"


def good_test_cases(results_path: Path) -> tuple[list[dict], float]:
    """QA features of the test cases that are good initializations by the definition the thresholds were
    calibrated with (detected-landmark SRE at most BAD_SRE_MM), and that bound."""
    from LandmarkInitResearch.evaluation.initialization_accuracy import BAD_SRE_MM

    rows = json.loads(results_path.read_text(encoding="utf-8"))["cases"]
    good = [r["qa_features"] for r in rows if r["metrics"]["detected"]["sre_known_mm"] <= BAD_SRE_MM]
    return [{k: np.nan if v is None else v for k, v in f.items()} for f in good], BAD_SRE_MM


def ground_truth_errors(report: dict, case_dir: Path) -> dict:
    """Errors of the run's landmark result against a phantom case's ground truth (the evaluation's metrics)."""
    from LandmarkInitLib.io.datasets import gland_mask, open_case
    from LandmarkInitLib.landmarks import LANDMARK_LABELS
    from LandmarkInitResearch.evaluation.metrics import gland_surface_points, sre_mm, tre_mm

    case = open_case(case_dir)
    truth = {m: case.landmarks(m).ordered(LANDMARK_LABELS) for m in ("mr", "us")}
    matrix = np.array(report["landmark_matrix"])
    surface = gland_surface_points(*gland_mask(case, "mr"))
    errors = {"sre_mm": sre_mm(case.mr_to_us, matrix, surface), "tre_mm": tre_mm(matrix, truth["mr"], truth["us"])}
    for m in ("mr", "us"):
        detected = np.array([lm["ras"] for lm in report[m]["landmarks"]])
        errors[m] = np.linalg.norm(detected - truth[m], axis=1)
        if report[m].get("global_stage_ras") is not None:
            errors[f"{m}_global"] = np.linalg.norm(np.array(report[m]["global_stage_ras"]) - truth[m], axis=1)
    return errors


def explain_feature(name: str, report: dict, errors: dict | None) -> str:
    """What lies behind one flagged feature of this run, from the report (and the ground truth if known)."""
    if name == "disagreement_mm":
        worst = max(
            (
                (float(np.linalg.norm(np.subtract(g, lm["ras"]))), m, i, lm["label"])
                for m in ("mr", "us")
                if report[m].get("global_stage_ras") is not None
                for i, (g, lm) in enumerate(zip(report[m]["global_stage_ras"], report[m]["landmarks"], strict=True))
            ),
        )
        distance, m, i, label = worst
        text = f"the {m.upper()} {label}'s global-stage point is {distance:.2f} mm from the refined one"
        if errors is not None:
            text += (
                f"; against the truth the global stage is {errors[f'{m}_global'][i]:.2f} mm off and the refined point "
                f"{errors[m][i]:.2f} mm: the local refinement corrected the global stage"
            )
        return text
    if name == "conditioning":
        from LandmarkInitLib.fit.landmark_fit import point_set_conditioning

        weights = np.array(report["fit"]["weights"], float)
        labels = [lm["label"] for lm in report["us"]["landmarks"]]
        low = int(np.argmin(weights))
        unweighted = min(
            point_set_conditioning(np.array([lm["ras"] for lm in report[m]["landmarks"]]))[1] for m in ("mr", "us")
        )
        return (
            f"the {labels[low]} has a wide heatmap spread, so the spread weighting gives it "
            f"{weights[low] / weights.max():.0%} of the largest weight and the weighted triangle looks flatter than "
            f"the landmarks are (conditioning {unweighted:.3g} without weights)"
        )
    return FEATURES[name][1]


def explain(report: dict, results_path: Path = TEST_RESULTS, case_dir: Path | None = None) -> list[str]:
    quality = report["quality"]
    features, thresholds = quality["features"], quality["thresholds"]
    good, bad_sre = good_test_cases(results_path)
    source = results_path.relative_to(ROOT) if results_path.is_relative_to(ROOT) else results_path
    lines = [
        f"QA features of this run against the shipped thresholds, and how often each threshold flags the {len(good)} "
        f"good synthetic test cases ({source}):",
        f"  {'feature':<18} {'this run':>9}  {'flags when':<12} {'flagged':<8} good test cases flagged",
    ]
    flagged_here = []
    for name, (direction, _) in FEATURES.items():
        value, limit = features.get(name), thresholds.get(name)
        if value is None or limit is None:
            continue
        flagged = assess({name: value}, {name: limit}).review
        flagged_here += [name] if flagged else []
        n = sum(assess(row, {name: limit}).review for row in good)
        rule = f"{'>' if direction == 'high' else '<'} {limit:.3g}"
        lines.append(
            f"  {name:<18} {value:>9.3g}  {rule:<12} {'yes' if flagged else 'no':<8} {n} of {len(good)} "
            f"({n / len(good):.0%})"
        )
    any_flag = sum(assess(row, thresholds).review for row in good)
    lines.append(
        f"  {any_flag} of {len(good)} good test cases ({any_flag / len(good):.0%}) raise at least one flag (the "
        "thresholds file states its calibration and held-out figures: docs/results/quality-flags/report.md)."
    )
    errors = None if case_dir is None else ground_truth_errors(report, case_dir)
    if errors is not None:
        good_here = errors["sre_mm"] <= bad_sre
        verdict = "good" if good_here else "a FAILED initialization"
        lines.append(
            f"Against this case's ground truth the landmark result is {verdict}"
            f": gland surface error {errors['sre_mm']:.2f} mm (failed means > {bad_sre:g} mm), landmark error "
            f"{errors['tre_mm']:.2f} mm." + (" The flags are false alarms here:" if good_here and flagged_here else "")
        )
    for name in flagged_here:
        lines.append(f"  {name}: {explain_feature(name, report, errors)}.")
    if not flagged_here:
        lines.append("No QA feature is flagged.")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="report.json of a `landmarkinit run`")
    parser.add_argument("--case", type=Path, help="the phantom case folder of that run (ground truth)")
    parser.add_argument("--results", type=Path, default=TEST_RESULTS, help="registration.json of `make results`")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text(encoding="utf-8"))
    print("\n".join(explain(report, args.results, args.case)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
