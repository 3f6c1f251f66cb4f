"""`landmarkinit evaluate-real-mr`: MR detectors on real T2 MR (PROMISE12 layout: ``<case>/t2.nii.gz`` and the
expert gland mask ``<case>/gland.nii.gz``) against the landmarks the landmarks-from-mask definition derives from the
mask (LandmarkInitLib/mask_landmarks.py).

Per landmark: the error in mm under the data's geometry (nominal for PROMISE12: +-25 % scale), the error in % of the
case's reference apex-to-bladder-neck distance (scale-free), the fraction within 5 and 10 mm; and the QA question.
A landmark counts as *flagged* when one of the detection's flags names it (its label, with "_" or " ") or when a
flag names no landmark at all (a volume-level flag, e.g. "does not look like MR", which concerns all three).

The held-out real test cases and the cross-validation pool (of the split file) are reported apart; with one card
per fold (``--cross-validation``), each pool case is also detected by the card trained without its fold, pooled as
the "cross-validated" row: the honest figure for the pool. Written:
report.md and results.json, which hold per-case errors only: no image, mask or coordinate leaves the data folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from LandmarkInitLib.detection.detectors import open_detector
from LandmarkInitLib.detection.model_card import load_card
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.landmarks import LANDMARK_LABELS
from LandmarkInitResearch.evaluation.detector_accuracy import distinct_name

DEFAULT_SPLIT = Path(__file__).with_name("real_mr_split.json")
IMAGE_FILE, MASK_FILE = "t2.nii.gz", "gland.nii.gz"
GROUPS = {"held_out_test": "held-out real test", "cross_validation": "cross-validation pool"}
WITHIN_MM = (5.0, 10.0)
QA_MM = 10.0
SPLIT_RULE = (
    "Strata by in-plane matrix (cases.csv). The 10 held-out cases are allocated to the strata in proportion to "
    "their size (largest remainder); within a stratum the cases are sorted by slice spacing (then name), cut into "
    "as many consecutive bins as the stratum's allocation, and one case per bin is drawn with "
    "numpy.random.default_rng(seed). The other 25, sorted by (matrix, slice spacing, name), are dealt in blocks of "
    "5, each block's cases to the 5 folds in an order drawn with the same generator. Made by "
    "LandmarkInitResearch.evaluation.real_mr.build_split(cases.csv rows)."
)


def build_split(rows: list[dict], seed: int = 22, n_test: int = 10, n_folds: int = 5) -> dict:
    """The held-out test cases and cross-validation folds of cases.csv ``rows`` (see SPLIT_RULE)."""
    rng = np.random.default_rng(seed)
    rows = sorted(rows, key=lambda r: (int(r["matrix"]), float(r["spacing_slice_mm"]), r["case"]))
    strata: dict[int, list[dict]] = {}
    for r in rows:
        strata.setdefault(int(r["matrix"]), []).append(r)
    quota = {m: n_test * len(s) / len(rows) for m, s in strata.items()}
    alloc = {m: int(q) for m, q in quota.items()}
    for m in sorted(quota, key=lambda m: (alloc[m] - quota[m], m))[: n_test - sum(alloc.values())]:
        alloc[m] += 1
    test = []
    for m in sorted(strata):
        for chunk in np.array_split(np.arange(len(strata[m])), alloc[m]) if alloc[m] else []:
            test.append(strata[m][int(rng.choice(chunk))]["case"])
    rest = [r["case"] for r in rows if r["case"] not in test]
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    for start in range(0, len(rest), n_folds):
        block = rest[start : start + n_folds]
        for fold, case in zip(rng.permutation(n_folds)[: len(block)], block, strict=True):
            folds[int(fold)].append(case)
    return {
        "description": "Fixed split of the 35 PROMISE12 cases (issue 22): held_out_test is never used for training "
        "or model selection; cross_validation holds the folds (by case) for training and validation.",
        "rule": SPLIT_RULE,
        "seed": seed,
        "held_out_test": sorted(test),
        "cross_validation": [sorted(f) for f in folds],
    }


def read_cases_csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def load_split(path=None) -> dict:
    """The split file (default: the committed one), checked: case names, no case in two places."""
    path = Path(path) if path is not None else DEFAULT_SPLIT
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
        test, folds = list(split["held_out_test"]), [list(f) for f in split["cross_validation"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LandmarkInitError(
            f"{path} is not a readable split file ({e}); it needs a held_out_test list of case names and a "
            "cross_validation list of folds (lists of case names)"
        ) from None
    names = test + [c for f in folds for c in f]
    if not all(isinstance(n, str) and n for n in names) or not names:
        raise LandmarkInitError(f"{path}: the split must name cases (non-empty strings)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LandmarkInitError(f"{path}: cases in more than one place: {', '.join(repeated)}")
    return {**split, "held_out_test": test, "cross_validation": folds, "path": str(path)}


def fold_cases(split: dict, folds: list[int]) -> list[str]:
    """The case names of the given cross-validation folds (0-based)."""
    n = len(split["cross_validation"])
    bad = [f for f in folds if not 0 <= f < n]
    if bad:
        raise LandmarkInitError(
            f"real-MR fold(s) {', '.join(map(str, bad))} do not exist: {split['path']} has folds 0 to {n - 1}"
        )
    return [case for f in folds for case in split["cross_validation"][f]]


def split_cases(split: dict) -> list[tuple[str, str, int | None]]:
    """(case, group, fold) of every case of the split, held-out test first."""
    out = [(c, "held_out_test", None) for c in split["held_out_test"]]
    return out + [(c, "cross_validation", i) for i, fold in enumerate(split["cross_validation"]) for c in fold]


def landmark_flagged(flags: list[str]) -> dict[str, bool]:
    """Per landmark: does a flag name it, or is there a volume-level flag (one naming no landmark)?"""

    def names(flag, label):
        return label in flag or label.replace("_", " ") in flag

    volume_level = any(not any(names(f, lb) for lb in LANDMARK_LABELS) for f in flags)
    return {lb: volume_level or any(names(f, lb) for f in flags) for lb in LANDMARK_LABELS}


def reference_landmarks(data, split: dict, progress: bool = True) -> dict:
    """Per case: the landmarks-from-mask points (RAS) of its gland mask, kept in memory only."""
    from tqdm import tqdm

    from LandmarkInitLib.mask_landmarks import landmarks_from_mask_file

    data = Path(data)
    if not data.is_dir():
        raise LandmarkInitError(f"data folder {data} does not exist")
    missing = [
        f"{case}/{name}"
        for case, _, _ in split_cases(split)
        for name in (IMAGE_FILE, MASK_FILE)
        if not (data / case / name).is_file()
    ]
    if missing:
        raise LandmarkInitError(
            f"{data} lacks {len(missing)} file(s) the split names: {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}; give the folder holding <case>/{IMAGE_FILE} and {MASK_FILE}"
        )
    return {
        case: landmarks_from_mask_file(data / case / MASK_FILE).ordered(LANDMARK_LABELS)
        for case, _, _ in tqdm(split_cases(split), desc="reference landmarks", disable=not progress, unit="case")
    }


CROSS_VALIDATED = "cross-validated"


def _mr_cards(cards: list) -> list:
    loaded = [load_card(c) for c in cards]
    for card in loaded:
        if card.modality != "mr":
            raise LandmarkInitError(f"{card.path} is a {card.modality.upper()} model; evaluate-real-mr needs MR models")
    return loaded


def evaluate_real_mr(
    cards: list,
    data,
    split: dict,
    *,
    cross_validation: list | None = None,
    progress: bool = True,
    backend="onnx",
    threads=None,
) -> dict:
    """Per card and case: errors (mm, % of apex-to-bladder-neck) and flags against the mask landmarks.

    cross_validation: one card per fold of the split, in fold order, each trained without its fold: each
    cross-validation case is detected by the card of its own fold only (out-of-fold), and the cases are pooled as
    one model, "cross-validated" (no held-out test rows: which fold's card would speak for them is arbitrary)."""
    from tqdm import tqdm

    loaded = _mr_cards(cards)
    folds = _mr_cards(cross_validation or [])
    if folds and len(folds) != len(split["cross_validation"]):
        raise LandmarkInitError(
            f"--cross-validation needs one card per fold of the split ({len(split['cross_validation'])}), "
            f"in fold order; got {len(folds)}"
        )
    reference = reference_landmarks(data, split, progress)
    apex, neck = LANDMARK_LABELS.index("apex"), LANDMARK_LABELS.index("bladder_neck")

    def row(detector, case, group, fold):
        detection = detector.detect_file(Path(data) / case / IMAGE_FILE)
        truth = reference[case]
        errors = np.linalg.norm(detection.points_ras - truth, axis=1)
        length = float(np.linalg.norm(truth[apex] - truth[neck]))
        return {
            "group": group,
            "fold": fold,
            "apex_to_bladder_neck_mm": round(length, 3),
            "errors_mm": {lb: round(float(e), 3) for lb, e in zip(LANDMARK_LABELS, errors, strict=True)},
            "errors_pct": {
                lb: round(100 * float(e) / length, 3) for lb, e in zip(LANDMARK_LABELS, errors, strict=True)
            },
            "flagged": landmark_flagged(detection.flags),
            "flags": list(detection.flags),
        }

    results = {}
    for path, card in zip(cards, loaded, strict=True):
        detector = open_detector(card, backend=backend, threads=threads)
        cases = tqdm(split_cases(split), desc=card.name, disable=not progress, unit="case")
        results[distinct_name(card.name, results)] = {
            "card": str(path),
            "cases": {c: row(detector, c, g, f) for c, g, f in cases},
        }
    if folds:
        rows = {}
        for fold, card in enumerate(folds):
            detector = open_detector(card, backend=backend, threads=threads)
            for case in split["cross_validation"][fold]:
                rows[case] = row(detector, case, "cross_validation", fold)
        results[CROSS_VALIDATED] = {"card": ", ".join(str(c) for c in cross_validation), "cases": rows}
    return results


def summarize(rows: list[dict]) -> dict:
    """Per landmark and over all landmarks ("all"): mean / median mm and %, % within 5 / 10 mm, QA counts."""
    if not rows:
        return {}
    out = {}
    for key in (*LANDMARK_LABELS, "all"):
        labels = LANDMARK_LABELS if key == "all" else (key,)
        mm = np.array([r["errors_mm"][lb] for r in rows for lb in labels])
        pct = np.array([r["errors_pct"][lb] for r in rows for lb in labels])
        flagged = np.array([r["flagged"][lb] for r in rows for lb in labels])
        far = mm > QA_MM
        out[key] = {
            "n": int(mm.size),
            "mean_mm": float(mm.mean()),
            "median_mm": float(np.median(mm)),
            "mean_pct": float(pct.mean()),
            "median_pct": float(np.median(pct)),
            **{f"within_{t:g}mm_pct": float(100 * np.mean(mm <= t)) for t in WITHIN_MM},
            "over_10mm": int(far.sum()),
            "over_10mm_flagged": int((far & flagged).sum()),
            "within_10mm_flagged": int((~far & flagged).sum()),
        }
    return out


def write_report(results: dict, output_dir, *, split: dict) -> Path:
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        name: {
            "card": r["card"],
            **{g: summarize([c for c in r["cases"].values() if c["group"] == g]) for g in GROUPS},
        }
        for name, r in results.items()
    }
    doc = {
        "data": "real PROMISE12 T2 MR, nominal geometry (about +-25 % scale uncertainty)",
        "reference": "landmarks derived from the expert gland mask (LandmarkInitLib/mask_landmarks.py definition)",
        "split": {k: split[k] for k in ("held_out_test", "cross_validation")} | {"rule": split.get("rule")},
        "qa": "a landmark is flagged when a detection flag names it or a flag names no landmark (volume level)",
        "labels": list(LANDMARK_LABELS),
        "summary": summary,
        "cases": {name: r["cases"] for name, r in results.items()},
    }
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")

    names = list(results)
    lines = [
        "# MR landmark detection on real T2 MR (PROMISE12)",
        "",
        "**Real patient images: PROMISE12 T2-weighted prostate MR, under the data's nominal geometry** (the spacing "
        "is an assumption, about +-25 % in scale: millimetre figures carry that uncertainty; the % of the "
        "apex-to-bladder-neck distance does not). **Reference: the landmarks derived from each expert gland mask** "
        "with the landmarks-from-mask definition (`LandmarkInitLib/mask_landmarks.py`), not landmarks placed by an "
        "expert. Generated by `landmarkinit evaluate-real-mr` (LandmarkInitResearch/evaluation/real_mr.py).",
        "",
        "Cards: " + ", ".join(f"{n} (`{results[n]['card']}`)" for n in names) + ".",
        "",
        f"Split: `{Path(split['path']).name}`: {len(split['held_out_test'])} held-out test cases (never used for "
        f"training or model selection), {sum(map(len, split['cross_validation']))} cross-validation cases in "
        f"{len(split['cross_validation'])} folds.",
    ]
    for group, title in GROUPS.items():
        lines += ["", f"## {title[0].upper()}{title[1:]}", ""]
        if not any(summary[n][group] for n in names):
            lines.append("No cases.")
            continue
        lines += [
            "| landmark | model | n | mean (mm) | median (mm) | mean (% AB) | median (% AB) | within 5 mm (%) | "
            "within 10 mm (%) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for key in (*LANDMARK_LABELS, "all"):
            for n in (n for n in names if summary[n][group]):
                s = summary[n][group][key]
                lines.append(
                    f"| {key.replace('_', ' ')} | {n} | {s['n']} | {s['mean_mm']:.1f} | {s['median_mm']:.1f} | "
                    f"{s['mean_pct']:.1f} | {s['median_pct']:.1f} | {s['within_5mm_pct']:.0f} | "
                    f"{s['within_10mm_pct']:.0f} |"
                )
    lines += [
        "",
        "% AB: error as a percentage of the case's reference apex-to-bladder-neck distance.",
        "",
        f"## Flags: landmarks more than {QA_MM:g} mm off, and how many were flagged",
        "",
        "A landmark counts as flagged when a flag of its detection names it, or when a flag names no landmark "
        "(a volume-level flag concerns all three). Target (issue 22): every landmark more than 10 mm off flagged.",
        "",
        "| set | model | landmarks > 10 mm | of those flagged | landmarks <= 10 mm flagged |",
        "| --- | --- | --- | --- | --- |",
    ]
    for group, title in GROUPS.items():
        for n in names:
            s = summary[n][group].get("all")
            if s:
                lines.append(
                    f"| {title} | {n} | {s['over_10mm']} / {s['n']} | {s['over_10mm_flagged']} | "
                    f"{s['within_10mm_flagged']} |"
                )
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "report.md"
