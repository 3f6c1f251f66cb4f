"""`landmarkinit evaluate-detectors`: exported detectors on held-out cases -> Table 1 (MRE +- SD per modality and
landmark, SDR at 2 / 2.5 / 3 / 4 mm, Wilcoxon signed-rank tests between methods), plots and a markdown report.

Errors are Euclidean distances in world millimetres between the detected and the ground-truth landmarks, per
case and landmark; the MRE of a method is their mean. Wilcoxon tests pair the per-case mean errors (the three
landmarks averaged) of two methods on the same cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.io.datasets import open_dataset
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitResearch.evaluation.error_components import COMPONENTS, error_components

SDR_THRESHOLDS_MM = (2.0, 2.5, 3.0, 4.0)
OUTLIER_MM = 10.0


def distinct_name(name: str, taken) -> str:
    """``name``, or ``name #2``, ``name #3``... when taken: two cards of one name (two runs of a recipe) keep apart
    in a report."""
    n = 1
    while (candidate := name if n == 1 else f"{name} #{n}") in taken:
        n += 1
    return candidate


def evaluate_cards(
    cards: list, data, *, progress: bool = True, backend: str = "onnx", threads: int | None = None, case_names=None
) -> dict:
    """Errors (cases x landmarks, mm) of each model card on the cases in ``data`` (only ``case_names`` if given)."""
    from tqdm import tqdm

    cases = open_dataset(data)
    if case_names is not None:
        cases = [c for c in cases if c.name in set(case_names)]
    results = {}
    for card_path in cards:
        card = load_card(card_path)
        detector = open_detector(card, backend=backend, threads=threads)
        predicted, truths, spreads, seconds, flagged, visible = [], [], [], [], 0, []
        for case in tqdm(cases, desc=card.name, disable=not progress, unit="case"):
            detection = detector.detect_file(case.images[card.modality])
            predicted.append(detection.points_ras)
            truths.append(case.landmarks(card.modality).ordered(LANDMARK_LABELS))
            spreads.append(detection.spread_mm)
            seconds.append(detection.seconds["total"])
            flagged += bool(detection.flags)
            # phantom cases record which landmarks are inside the US fan; MR and other data: all visible
            fan = case.meta.get("landmarks_in_us_field_of_view", {}) if card.modality == "us" else {}
            visible.append([fan.get(label, True) for label in LANDMARK_LABELS])
        predicted, truths, visible = np.array(predicted), np.array(truths), np.array(visible, dtype=bool)
        results[distinct_name(card.name, results)] = {
            "card": str(card_path),
            "modality": card.modality,
            "method": card.data.get("method"),
            "cases": [c.name for c in cases],
            "predicted_ras": predicted,  # cases x landmarks x 3, RAS mm
            "truth_ras": truths,
            "errors_mm": np.linalg.norm(predicted - truths, axis=2),
            "spread_mm": np.array(spreads),
            "seconds": np.array(seconds),
            "flagged_cases": flagged,
            "visible": visible,  # cases x landmarks: inside the US fan
            "in_view": visible.all(axis=1),
        }
    return results


def evaluate_refiner(card_path, data, *, case_names=None, max_offset_mm: float = 10.0, seed: int = 0) -> dict:
    """A local refinement model alone: start each landmark at its truth plus a random offset (uniform direction,
    radius uniform up to ``max_offset_mm``, fixed by ``seed``) and measure where one pass of refinement lands."""
    import SimpleITK as sitk

    from LandmarkInitLib.detection.detectors import LocalRefiner
    from LandmarkInitLib.geometry import VolumeGeometry

    refiner = LocalRefiner(load_card(card_path))
    cases = open_dataset(data)
    if case_names is not None:
        cases = [c for c in cases if c.name in set(case_names)]
    rng = np.random.default_rng(seed)
    errors, start_errors, spreads = [], [], []
    for case in cases:
        image = sitk.Cast(sitk.ReadImage(str(case.images[refiner.card.modality])), sitk.sitkFloat32)
        truth = case.landmarks(refiner.card.modality).ordered(LANDMARK_LABELS)
        direction = rng.normal(size=truth.shape)
        offsets = direction / np.linalg.norm(direction, axis=1, keepdims=True)
        offsets *= rng.uniform(0.0, max_offset_mm, size=(len(truth), 1))
        refined, spread = refiner.refine(image, VolumeGeometry.from_sitk_image(image), truth + offsets)
        errors.append(np.linalg.norm(refined - truth, axis=1))
        start_errors.append(np.linalg.norm(offsets, axis=1))
        spreads.append(spread)
    return {
        "cases": [c.name for c in cases],
        "errors_mm": np.array(errors),
        "start_errors_mm": np.array(start_errors),
        "spread_mm": np.array(spreads),
    }


def summarize(errors: np.ndarray) -> dict:
    per_case = errors.mean(axis=1)
    return {
        "mre_mm": float(errors.mean()),
        "sd_mm": float(errors.std(ddof=1)) if errors.size > 1 else 0.0,
        "per_landmark_mre_mm": {lb: float(errors[:, i].mean()) for i, lb in enumerate(LANDMARK_LABELS)},
        "per_landmark_sd_mm": {
            lb: float(errors[:, i].std(ddof=1)) if len(errors) > 1 else 0.0 for i, lb in enumerate(LANDMARK_LABELS)
        },
        "sdr": {f"{t:g}mm": float(np.mean(errors <= t)) for t in SDR_THRESHOLDS_MM},
        "outlier_rate": float(np.mean(errors > OUTLIER_MM)),
        "max_mm": float(errors.max()),
        "n_cases": int(len(per_case)),
    }


def rms_along_gland(predicted_ras: np.ndarray, truth_ras: np.ndarray) -> dict:
    """Per landmark, the RMS of the errors' components along each case's gland axis, posterior and lateral
    directions (cases x landmarks x 3 arrays in, mm out)."""
    parts = np.array([error_components(p, t) for p, t in zip(predicted_ras, truth_ras, strict=True)])
    rms = np.sqrt(np.mean(parts**2, axis=0))  # landmarks x components
    return {lb: {c: float(rms[i, j]) for j, c in enumerate(COMPONENTS)} for i, lb in enumerate(LANDMARK_LABELS)}


def wilcoxon_table(results: dict) -> list[dict]:
    from scipy.stats import wilcoxon

    rows = []
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = results[a], results[b]
            if ra["modality"] != rb["modality"] or ra["cases"] != rb["cases"]:
                continue
            ea, eb = ra["errors_mm"].mean(axis=1), rb["errors_mm"].mean(axis=1)
            p = float(wilcoxon(ea, eb).pvalue) if np.any(ea != eb) else 1.0
            rows.append(
                {"modality": ra["modality"], "a": a, "b": b, "median_diff_mm": float(np.median(ea - eb)), "p_value": p}
            )
    return rows


def _in_view_text(s: dict) -> str:
    v = s.get("in_view")
    return f"{v['mre_mm']:.2f} +- {v['sd_mm']:.2f} ({v['n_cases']})" if v else "-"


def write_report(results: dict, output_dir, *, data_description: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        name: {
            **summarize(r["errors_mm"]),
            "modality": r["modality"],
            "method": r["method"],
            "card": r["card"],
            "median_seconds": float(np.median(r["seconds"])),
            "flagged_cases": r["flagged_cases"],
            "in_view": summarize(r["errors_mm"][r["in_view"]]) if r["in_view"].any() else None,
            "rms_along_gland_mm": rms_along_gland(r["predicted_ras"], r["truth_ras"]),
        }
        for name, r in results.items()
    }
    tests = wilcoxon_table(results)
    (out / "detectors.json").write_text(json.dumps({"summary": summary, "wilcoxon": tests}, indent=1), encoding="utf-8")
    np.savez(out / "detector_errors.npz", **{name: r["errors_mm"] for name, r in results.items()})

    lines = [
        "# Landmark detection on held-out phantom cases (Table 1)",
        "",
        f"**Synthetic phantom data, not patient data.** {data_description}".rstrip(),
        "",
        "| model | modality | method | cases | MRE +- SD (mm) | apex | bladder neck | posterior median | "
        "SDR 2 / 2.5 / 3 / 4 mm (%) | > 10 mm (%) | max (mm) | MRE, all landmarks in view (cases) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in summary.items():
        pl = s["per_landmark_mre_mm"]
        sdr = " / ".join(f"{100 * v:.0f}" for v in s["sdr"].values())
        lines.append(
            f"| {name} | {s['modality'].upper()} | {s['method']} | {s['n_cases']} | {s['mre_mm']:.2f} +- "
            f"{s['sd_mm']:.2f} | {pl['apex']:.2f} | {pl['bladder_neck']:.2f} | {pl['posterior_median']:.2f} | "
            f"{sdr} | {100 * s['outlier_rate']:.1f} | {s['max_mm']:.1f} | {_in_view_text(s)} |"
        )
    if tests:
        lines += [
            "",
            "Wilcoxon signed-rank tests on per-case mean errors (same cases):",
            "",
            "| modality | A | B | median(A - B) (mm) | p |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {t['modality'].upper()} | {t['a']} | {t['b']} | {t['median_diff_mm']:+.2f} | {t['p_value']:.2g} |"
            for t in tests
        ]
    lines += [
        "",
        "Errors split along each case's gland frame (RMS, mm; evaluation/error_components.py): along the apex -> "
        "bladder-neck axis, toward the posterior median, and lateral (out of the mid-sagittal plane):",
        "",
        "| model | " + " | ".join(f"{lb.replace('_', ' ')}: {' / '.join(COMPONENTS)}" for lb in LANDMARK_LABELS) + " |",
        "| --- |" + " --- |" * len(LANDMARK_LABELS),
    ]
    for name, s in summary.items():
        parts = s["rms_along_gland_mm"]
        cells = [" / ".join(f"{parts[lb][c]:.2f}" for c in COMPONENTS) for lb in LANDMARK_LABELS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "detectors.md").write_text("\n".join(lines) + "\n", encoding="utf-8")

    for modality in sorted({r["modality"] for r in results.values()}):
        names = [n for n, r in results.items() if r["modality"] == modality]
        fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.8))
        ax.boxplot([results[n]["errors_mm"].ravel() for n in names], showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=20, ha="right")
        ax.set_ylabel("landmark error (mm)")
        ax.set_title(f"{modality.upper()} landmark errors, held-out synthetic phantom cases")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / f"detector_errors_{modality}.png", dpi=100)
        plt.close(fig)
    return out / "detectors.md"
