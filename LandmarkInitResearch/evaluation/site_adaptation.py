"""`landmarkinit site-learning-curve`: a simulated site, whose corrected cases arrive one by one, adapting a detector
with `finetune` (issue 23).

Cases come in a fixed arrival order (numpy.random.default_rng(seed).permutation of the pool). For each count N the
first N cases become a site dataset (io/site_dataset.py, source "simulated"): the volume, the base detector's
prediction and the "correction":
- real MR (``--kind real-mr``, PROMISE12 layout ``<case>/t2.nii.gz`` + ``gland.nii.gz``): the pool is the
  cross-validation cases of the real-MR split; the correction is the landmarks-from-mask points of the expert gland
  mask (mask_landmarks.py); the held-out test is the split's held-out real cases, never in any site;
- phantom (``--kind phantom``, e.g. US rendered with a scanner the shipped model never saw, ``phantom --us-scanner``):
  the pool is a phantom dataset, the correction its ground-truth landmarks; the held-out test another dataset.
`finetune` then runs on the site under its guard. Refused (too few cases, or not better on the site's own
held-out cases), the site keeps the base detector; accepted, the new card. Either way the detector the site
would use is measured on the held-out test: mean error per case, mm.

Written to the output folder: learning_curve.json / .md / .png. Site datasets and cards go to ``--work-dir``
(real images are written there only, never to the repository).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.landmarks import LANDMARK_LABELS, LandmarkSet

KINDS = ("real-mr", "phantom")


def arrival_order(names: list[str], seed: int) -> list[str]:
    """The pool's cases in the order they arrive at the site: a seeded permutation of the sorted names."""
    names = sorted(names)
    return [names[i] for i in np.random.default_rng(seed).permutation(len(names))]


def pool_and_test(kind: str, modality: str, data, test=None, split_path=None):
    """(pool, test): {case name: a function giving (image path, corrected L x 3 RAS points)} for the site's pool
    and the held-out test cases; the points are read (or derived from the mask) only when asked."""
    if kind == "real-mr":
        from LandmarkInitLib.mask_landmarks import landmarks_from_mask_file
        from LandmarkInitResearch.evaluation.real_mr import IMAGE_FILE, MASK_FILE, load_split

        split = load_split(split_path)
        data = Path(data)

        def case(name):
            return data / name / IMAGE_FILE, landmarks_from_mask_file(data / name / MASK_FILE).ordered(LANDMARK_LABELS)

        pool = [c for fold in split["cross_validation"] for c in fold]
        return {n: (lambda n=n: case(n)) for n in pool}, {n: (lambda n=n: case(n)) for n in split["held_out_test"]}
    if kind == "phantom":
        from LandmarkInitLib.io.datasets import open_dataset

        if test is None:
            raise LandmarkInitError("--kind phantom needs --test DIR: the held-out phantom cases")

        def cases(root):
            return {c.name: c for c in open_dataset(root)}

        def lazy(c):
            return lambda: (c.images[modality], c.landmarks(modality).ordered(LANDMARK_LABELS))

        return (
            {n: lazy(c) for n, c in cases(data).items()},
            {n: lazy(c) for n, c in cases(test).items()},
        )
    raise LandmarkInitError(f"unknown --kind {kind!r}: use one of {', '.join(KINDS)}")


def write_site(site: Path, names: list[str], pool: dict, detector, card, progress: bool) -> None:
    """Add the cases ``names`` of ``pool`` to the site dataset ``site`` (cases already there are updated)."""
    from tqdm import tqdm

    from LandmarkInitLib.io.scene import create_context
    from LandmarkInitLib.io.site_dataset import add_case, model_record

    modality = card.modality
    record = model_record(card)
    context = create_context()
    try:
        for name in tqdm(names, desc=f"site of {len(names)}", disable=not progress, unit="case"):
            image, corrected = pool[name]()
            predicted = detector.detect_file(image).points_ras
            add_case(
                site,
                {modality: image},
                {modality: LandmarkSet(LANDMARK_LABELS, predicted)},
                {modality: LandmarkSet(LANDMARK_LABELS, corrected)},
                {modality: record},
                "simulated",
                context=context,
            )
    finally:
        context.clear()


def test_errors(card_path, test: dict, threads, progress: bool) -> dict[str, float]:
    """Mean landmark error (mm) per held-out test case of the detector ``card_path``."""
    from tqdm import tqdm

    from LandmarkInitLib.detection.detectors import open_detector

    detector = open_detector(card_path, threads=threads)
    out = {}
    for name in tqdm(sorted(test), desc=Path(card_path).stem, disable=not progress, unit="case"):
        image, truth = test[name]()
        out[name] = float(np.linalg.norm(detector.detect_file(image).points_ras - truth, axis=1).mean())
    return out


def learning_curve(
    base,
    kind: str,
    data,
    counts: list[int],
    work_dir,
    *,
    test=None,
    split_path=None,
    seed: int = 23,
    epochs: int | None = None,
    lr: float | None = None,
    threads: int | None = None,
    progress: bool = True,
) -> dict:
    """Per count of corrected cases: finetune's decision and the held-out test error of the detector the site
    would then use (the base when finetune refused)."""
    from LandmarkInitLib.detection.detectors import open_detector
    from LandmarkInitLib.detection.model_card import load_card, sha256_of
    from LandmarkInitResearch.training import finetune as ft

    card = load_card(base)
    pool, held_out = pool_and_test(kind, card.modality, data, test, split_path)
    order = arrival_order(list(pool), seed)
    counts = sorted({min(int(n), len(order)) for n in counts})
    work = Path(work_dir)
    detector = open_detector(card, threads=threads)
    rows = [{"corrected_cases": 0, "decision": "base", "card": str(base)}]
    rows[0]["test_case_mm"] = test_errors(base, held_out, threads, progress)
    for n in counts:
        site = work / f"site_{n:02d}"
        write_site(site, order[:n], pool, detector, card, progress)
        output = work / f"models_{n:02d}" / f"{card.modality}_landmarks.json"
        row = {"corrected_cases": n, "site": str(site), "cases": order[:n]}
        try:
            result = ft.finetune(
                base,
                site,
                output,
                force=True,
                threads=threads,
                progress=progress,
                command=f"site-learning-curve ({n} corrected cases)",
                **({"epochs": epochs} if epochs else {}),
                **({"lr": lr} if lr else {}),
            )
        except LandmarkInitError as e:  # too few cases: the site keeps the base
            row.update(decision="refused", reason=str(e), card=str(base))
        else:
            guard = {k: result[k] for k in result if k not in ("written",)}
            accepted = result["written"] is not None
            row.update(decision="accepted" if accepted else "refused", guard=guard)
            row["card"] = result["written"] if accepted else str(base)
            if not accepted:
                row["reason"] = guard.get("reason", "not better on the site's held-out cases")
        row["test_case_mm"] = (
            rows[0]["test_case_mm"]
            if row["card"] == str(base)
            else test_errors(row["card"], held_out, threads, progress)
        )
        rows.append(row)
    for row in rows:
        values = np.array(list(row["test_case_mm"].values()))
        row["test_mean_mm"], row["test_median_mm"] = float(values.mean()), float(np.median(values))
    return {
        "base": {"card": str(base), "name": card.name, "sha256": sha256_of(card.path), "modality": card.modality},
        "kind": kind,
        "data": str(data),
        "test": str(test) if test else "held_out_test of " + str(split_path or "real_mr_split.json"),
        "arrival_seed": seed,
        "finetune_settings": {"epochs": epochs or ft.DEFAULT_EPOCHS, "lr": lr or ft.DEFAULT_LR},
        "rows": rows,
    }


def target_line(rows: list[dict], cases: int, drop: float, mm: float) -> str:
    """The issue's target at ``cases`` corrected cases: the held-out mean falls by ``drop`` or more against the
    base, or reaches ``mm`` or less."""
    base = rows[0]["test_mean_mm"]
    row = next((r for r in rows if r["corrected_cases"] == cases), None)
    if row is None:
        return f"Target ({cases} corrected cases): not measured (no site of {cases} cases)."
    change = (row["test_mean_mm"] - base) / base
    met = change <= -drop or row["test_mean_mm"] <= mm
    return (
        f"Target (issue 23): with {cases} corrected cases the held-out mean error falls by {drop:.0%} or more "
        f"against the base, or reaches {mm:g} mm or less: **{'met' if met else 'not met'}** "
        f"({base:.2f} -> {row['test_mean_mm']:.2f} mm, {change:+.0%})."
    )


REPOSITORY = Path(__file__).resolve().parents[2]


def _shown(text: str) -> str:
    """Paths inside the repository shown relative to it (the report is read there)."""
    return str(text).replace(str(REPOSITORY) + "/", "")


def write_report(result: dict, output_dir, *, description: str = "", target=None) -> Path:
    """learning_curve.json, .md and .png in ``output_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "learning_curve.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    rows = result["rows"]
    base_mean = rows[0]["test_mean_mm"]
    n = [r["corrected_cases"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    ax.plot(n, [r["test_mean_mm"] for r in rows], "o-", label="mean")
    ax.plot(n, [r["test_median_mm"] for r in rows], "s--", label="median")
    for r in rows[1:]:
        if r["decision"] != "accepted":
            ax.annotate("refused", (r["corrected_cases"], r["test_mean_mm"]), textcoords="offset points", xytext=(0, 6))
    ax.set_xlabel("corrected cases at the site")
    ax.set_ylabel("held-out error (mm)")
    ax.set_title(f"{result['base']['modality'].upper()} detector adapted with finetune ({result['kind']})")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "learning_curve.png")
    plt.close(fig)
    lines = [
        f"# Site adaptation: {result['base']['modality'].upper()} learning curve ({result['kind']})",
        "",
        "Generated by `landmarkinit site-learning-curve` (LandmarkInitResearch/evaluation/site_adaptation.py). "
        + description,
        "",
        f"Base: `{result['base']['name']}` (`{_shown(result['base']['card'])}`). "
        f"Held-out test: {_shown(result['test'])}, "
        f"{len(rows[0]['test_case_mm'])} cases, never in a site. Cases arrive in a fixed order "
        f"(seed {result['arrival_seed']}); a site with N cases holds the first N. finetune: "
        f"{result['finetune_settings']['epochs']} epochs, lr {result['finetune_settings']['lr']:g}.",
        "",
        "| corrected cases | finetune | site's held-out cases: base -> fine-tuned (mm), p | held-out test mean "
        "(mm) | median (mm) | change of the mean |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        g = r.get("guard")
        guard = (
            f"{np.mean(g['base_case_mm']):.2f} -> {np.mean(g['finetuned_case_mm']):.2f}, p = {g['wilcoxon_p']:.3g}"
            if g
            else ("-" if r["decision"] == "base" else _shown(r.get("reason", "")).split(" (")[0])
        )
        change = (r["test_mean_mm"] - base_mean) / base_mean
        lines.append(
            f"| {r['corrected_cases']} | {r['decision']} | {guard} | {r['test_mean_mm']:.2f} | "
            f"{r['test_median_mm']:.2f} | {change:+.0%} |"
        )
    if target is not None:
        lines += ["", target(rows)]
    lines += ["", "![learning curve](learning_curve.png)", ""]
    path = out / "learning_curve.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
