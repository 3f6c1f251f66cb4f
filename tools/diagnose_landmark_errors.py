"""Where a detector's errors come from, on phantom cases: in- vs out-of-fan landmarks, each error split along
the gland's axis / posterior / lateral directions (LandmarkInitLib.evaluation.error_components), and the phantom
parameters (case.json) the posterior median's lateral error follows most closely (Pearson r).

    .venv/bin/python tools/diagnose_landmark_errors.py Resources/Models/us_landmarks.json data/val data/val2

Research aid behind docs/detection.md ("Where the remaining US error is"); prints markdown. Use validation
cases, never the test cases, for anything a choice is based on.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import pearsonr

from LandmarkInitLib.dataset import open_dataset
from LandmarkInitLib.evaluation.detectors import evaluate_cards
from LandmarkInitLib.evaluation.error_components import COMPONENTS, error_components
from LandmarkInitLib.landmarks import LANDMARK_LABELS


def numeric_parameters(meta: dict, prefix: str = "") -> dict[str, float]:
    """Flatten case.json: numbers and lists of numbers, keyed like anatomy.gland_semi_axes[0]."""
    out = {}
    for key, value in meta.items():
        name = prefix + key
        if isinstance(value, dict):
            out.update(numeric_parameters(value, name + "."))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, (int, float)):
            out[name] = float(value)
        elif isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
            out.update({f"{name}[{i}]": float(v) for i, v in enumerate(value)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("card")
    parser.add_argument("data", nargs="+", help="phantom dataset folders")
    parser.add_argument("--top", type=int, default=8, help="how many correlated parameters to list")
    args = parser.parse_args()
    runs = [evaluate_cards([args.card], folder, progress=False) for folder in args.data]
    name = next(iter(runs[0]))
    predicted, truth, visible, errors = (
        np.concatenate([run[name][key] for run in runs])
        for key in ("predicted_ras", "truth_ras", "visible", "errors_mm")
    )
    metas = [case.meta for folder in args.data for case in open_dataset(folder)]
    parts = np.array([error_components(p, t) for p, t in zip(predicted, truth, strict=True)])  # cases x landmarks x 3

    print(f"# {name} on {', '.join(args.data)} ({len(errors)} cases, synthetic phantom)\n")
    full = visible.all(1)
    others = f"{errors[~full].mean():.2f} mm" if (~full).any() else "none"
    print(
        f"MRE {errors.mean():.2f} mm; cases with every landmark in the fan: {full.sum()} "
        f"({errors[full].mean():.2f} mm), others: {others}\n"
    )
    print(
        "| landmark | in view: n, mean error (mm) | outside the US fan: n, mean error (mm) | "
        + " | ".join(f"{c} RMS (mean) mm" for c in COMPONENTS)
        + " |"
    )
    print("| --- | --- | --- | " + " | ".join("---" for _ in COMPONENTS) + " |")
    for k, label in enumerate(LANDMARK_LABELS):
        inside, outside = errors[visible[:, k], k], errors[~visible[:, k], k]
        out_text = f"{len(outside)}, {outside.mean():.2f}" if len(outside) else "0, -"
        comps = parts[visible[:, k], k]
        cells = [f"{np.sqrt((comps[:, c] ** 2).mean()):.2f} ({comps[:, c].mean():+.2f})" for c in range(3)]
        print(f"| {label} | {len(inside)}, {inside.mean():.2f} | {out_text} | " + " | ".join(cells) + " |")

    pm = LANDMARK_LABELS.index("posterior_median")
    lateral = parts[:, pm, COMPONENTS.index("lateral")]
    without_lateral = errors.copy()
    without_lateral[:, pm] = np.linalg.norm(np.delete(parts[:, pm], COMPONENTS.index("lateral"), axis=1), axis=1)
    print(f"\nMRE if the posterior median's lateral error were zero: {without_lateral.mean():.2f} mm")
    params = [numeric_parameters(m) for m in metas]
    names = sorted(set.intersection(*(set(p) for p in params)))
    rows = []
    for name in names:
        values = np.array([p[name] for p in params])
        if values.std() > 0:
            r, p_value = pearsonr(values, lateral)
            rows.append((abs(r), r, p_value, name))
    print(f"\nPosterior median, lateral error vs phantom parameters ({len(rows)} tested; the top {args.top}):\n")
    print("| parameter | Pearson r | p | p, Bonferroni over all parameters |\n| --- | --- | --- | --- |")
    for _, r, p_value, name in sorted(rows, reverse=True)[: args.top]:
        print(f"| {name} | {r:+.2f} | {p_value:.1g} | {min(1.0, p_value * len(rows)):.1g} |")


if __name__ == "__main__":
    main()
