"""Which local models to ensemble, and which posterior-median weights, for one global stage: every subset of the
given local cards and every mid-gland / axis-plane weight, scored on phantom cases without re-running networks.

    .venv/bin/python tools/compare_local_ensembles.py --global G.json --local A.json B.json C.json \
        --data data/val_qa --reference 0 1 --output build/ensembles_val_qa

Each local model refines once from the global estimate, on the volume and on its left-right mirror image (one
pass, mirror-averaged: the shipped US set-up); the answers are saved (OUTPUT/answers.npz). A two-stage detector
with one pass is then exactly: per view, the members' mean, the mid-gland pull (detection/mid_gland.py), the
axis-plane step (detection/axis_plane.py); then the two views' mean. The script checks that on the first case
against TwoStageDetector run on a card with every member, and writes OUTPUT/ensembles.md: MRE, in view, posterior
median, out-of-fan landmarks and a Wilcoxon test of per-case MRE against --reference (member indices) at the
reference weights. Research aid behind docs/detection.md ("Local models on the partial views"): use validation
cases, never the test cases, for anything a choice is based on; confirm the choice with `landmarkinit
evaluate-detectors` on a written card.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.stats import wilcoxon

from LandmarkInitLib.dataset import open_dataset
from LandmarkInitLib.detection.axis_plane import shrink_posterior_median_to_axis_plane
from LandmarkInitLib.detection.mid_gland import pull_posterior_median_to_mid_gland
from LandmarkInitLib.detection.mirror_average import mirror_array, unmirror_points
from LandmarkInitLib.detection.model_card import load_card, write_two_stage_card
from LandmarkInitLib.detection.preprocess import sitk_image
from LandmarkInitLib.detection.runtime import LandmarkDetector, LocalRefiner, TwoStageDetector
from LandmarkInitLib.geometry import VolumeGeometry
from LandmarkInitLib.landmarks import LANDMARK_LABELS


def member_answers(global_card, local_cards, folders):
    """Per case: (views x members x L x 3) refined RAS points, the volume's first index axis (RAS), the truth,
    visibility in the US fan, the case name."""
    coarse_stage = LandmarkDetector(load_card(global_card))
    members = [LocalRefiner(load_card(c)) for c in local_cards]
    rows = {"answers": [], "lateral": [], "truth": [], "visible": [], "case": []}
    for folder in folders:
        for case in open_dataset(folder):
            image = sitk.ReadImage(str(case.images["us"]))
            array = sitk.GetArrayFromImage(image).astype(np.float32)
            geometry = VolumeGeometry.from_sitk_image(image)
            views = []
            for mirrored in (False, True):
                view = mirror_array(array) if mirrored else array
                start = coarse_stage.detect_array(view, geometry).points_ras
                answers = [m.refine(sitk_image(view, geometry), geometry, start)[0] for m in members]
                views.append([unmirror_points(a, geometry) if mirrored else a for a in answers])
            fan = case.meta.get("landmarks_in_us_field_of_view", {})
            rows["answers"].append(views)
            rows["lateral"].append(geometry.direction_ras[:, 0])
            rows["truth"].append(case.landmarks("us").ordered(LANDMARK_LABELS))
            rows["visible"].append([fan.get(label, True) for label in LANDMARK_LABELS])
            rows["case"].append(f"{folder}/{case.name}")
            print(rows["case"][-1], flush=True)
    return {k: np.array(v) for k, v in rows.items()}


def combine(answers, lateral, subset, mid_gland, axis_plane) -> np.ndarray:
    """The one-pass, mirror-averaged two-stage answer of the members in ``subset`` (cases x L x 3)."""
    out = []
    for views, direction in zip(answers, lateral, strict=True):
        per_view = []
        for view in views:
            points = pull_posterior_median_to_mid_gland(view[list(subset)].mean(axis=0), mid_gland)
            per_view.append(shrink_posterior_median_to_axis_plane(points, direction, axis_plane))
        out.append(np.mean(per_view, axis=0))
    return np.array(out)


def check_against_runtime(args, first_case_dir) -> np.ndarray:
    """TwoStageDetector's points on the first case, with every member and the last weights given."""
    with tempfile.TemporaryDirectory() as tmp:
        card = write_two_stage_card(
            args.global_card,
            args.local_cards,
            Path(tmp) / "all.json",
            iterations=1,
            mid_gland_weight=args.mid_gland[0],
            axis_plane_weight=args.axis_plane[-1],
            mirror_average=True,
        )
        detection = TwoStageDetector(load_card(card)).detect_file(Path(first_case_dir) / "us.nrrd")
    return detection.points_ras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--global", dest="global_card", required=True)
    parser.add_argument("--local", dest="local_cards", nargs="+", required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--reference", nargs="+", type=int, required=True, help="member indices of the reference")
    parser.add_argument("--mid-gland", nargs="+", type=float, default=[0.75], help="first one: reference weight")
    parser.add_argument("--axis-plane", nargs="+", type=float, default=[0.0], help="first one: reference weight")
    parser.add_argument("--output", required=True, type=Path)
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    saved = args.output / "answers.npz"
    if saved.exists():
        data = dict(np.load(saved))
        if list(data["cards"]) != args.local_cards:
            raise SystemExit(f"{saved} holds other local cards; remove it or choose another --output")
    else:
        data = member_answers(args.global_card, args.local_cards, args.data) | {"cards": np.array(args.local_cards)}
        np.savez(saved, **data)
    answers, lateral, truth, visible = data["answers"], data["lateral"], data["truth"], data["visible"]
    runtime = check_against_runtime(args, data["case"][0])
    offline = combine(answers[:1], lateral[:1], range(len(args.local_cards)), args.mid_gland[0], args.axis_plane[-1])
    gap = float(np.abs(runtime - offline[0]).max())
    if gap > 1e-4:
        raise SystemExit(f"offline combination differs from TwoStageDetector by {gap:.2g} mm on the first case")

    def errors(subset, mg, ap):
        return np.linalg.norm(combine(answers, lateral, subset, mg, ap) - truth, axis=2)

    reference = errors(args.reference, args.mid_gland[0], args.axis_plane[0]).mean(axis=1)
    in_view = visible.all(axis=1)
    names = [Path(c).stem for c in args.local_cards]
    lines = [
        f"Local ensembles on {len(truth)} cases ({', '.join(args.data)}; synthetic phantom), global stage "
        f"{Path(args.global_card).stem}, one pass, mirror-averaged; offline combination checked against "
        f"TwoStageDetector on the first case (largest difference {gap:.1e} mm). Wilcoxon: per-case MRE against "
        f"members {args.reference} at mid-gland {args.mid_gland[0]:g}, axis plane {args.axis_plane[0]:g}.",
        "",
        "| members | mid-gland | axis plane | MRE (mm) | all in view | posterior median | outside the fan | "
        "median gain | p |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size in range(1, len(names) + 1):
        for subset in itertools.combinations(range(len(names)), size):
            for mg in args.mid_gland:
                for ap in args.axis_plane:
                    e = errors(subset, mg, ap)
                    per_case = e.mean(axis=1)
                    p = wilcoxon(reference, per_case).pvalue if np.any(reference != per_case) else 1.0
                    lines.append(
                        f"| {' + '.join(names[i] for i in subset)} | {mg:g} | {ap:g} | {e.mean():.3f} | "
                        f"{e[in_view].mean():.3f} | {e[:, 2].mean():.3f} | "
                        f"{e[~visible].mean() if (~visible).any() else float('nan'):.2f} | "
                        f"{np.median(reference - per_case):+.3f} | {p:.2g} |"
                    )
    (args.output / "ensembles.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
