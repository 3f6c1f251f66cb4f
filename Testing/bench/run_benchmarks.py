"""`make bench`: speed figures measured on this machine, written as a markdown table.

Benchmarks are not tests: targets are reported beside the measurement (met / NOT met), never asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from LandmarkInitLib import __version__
from LandmarkInitLib.fit.landmark_fit import apply_transform, fit_rigid
from LandmarkInitLib.fit.live import LiveRegistration
from LandmarkInitLib.io.markups import create_landmarks_node
from LandmarkInitLib.io.scene import create_context
from LandmarkInitLib.io.transforms import create_transform_node, transform_matrix
from LandmarkInitLib.landmarks import LANDMARK_LABELS, LandmarkSet


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_fit(n: int, repeats: int) -> list[float]:
    rng = np.random.default_rng(n)
    x = rng.normal(0, 20, (n, 3))
    y = x + rng.normal(0, 1, (n, 3)) + 10
    return timed(lambda: fit_rigid(x, y), repeats)


def bench_live_update(repeats: int) -> list[float]:
    """Time from SetNthControlPointPosition (what a drag does) until the transform node holds the new fit.
    Observers run synchronously, so the call returns after the update; each sample checks it happened."""
    ctx = create_context()
    mr_pts = np.array([[0.0, -20, -25], [0, 5, 20], [0, -15, 0]])
    mr = create_landmarks_node(ctx.scene, LandmarkSet(LANDMARK_LABELS, mr_pts), "mr")
    us = create_landmarks_node(ctx.scene, LandmarkSet(LANDMARK_LABELS, mr_pts + 5), "us")
    t = create_transform_node(ctx.scene)
    live = LiveRegistration(mr, us, t)
    rng = np.random.default_rng(0)
    samples = []
    for k in range(repeats):
        p = mr_pts[2] + 5 + rng.normal(0, 1.0, 3)
        before = live.update_count
        t0 = time.perf_counter()
        us.SetNthControlPointPosition(2, *p)
        samples.append(time.perf_counter() - t0)
        assert live.update_count == before + 1
        if k % 500 == 0:  # spot-check that the node holds the fit of the moved point
            m = transform_matrix(t)
            assert np.linalg.norm(apply_transform(m, mr_pts[2]) - p) < 5
    live.detach()
    return samples


def bench_phantom_case(repeats: int) -> list[float]:
    """Generating one phantom case (anatomy, MR and US rendering, ground truth) on one core, no file IO."""
    from LandmarkInitResearch.phantom.case import generate_case

    return [generate_case(2026, i).meta["generation_seconds"] for i in range(repeats)]


def bench_detection(modality: str, repeats: int) -> list[str]:
    """Shipped models of a modality on the sample case, per backend (separate processes): the default detector and,
    when it is two-stage, its global stage alone."""

    from LandmarkInitLib.detection.model_card import load_card
    from LandmarkInitLib.resources import default_model_card, sample_case_dir

    default = load_card(default_model_card(modality))
    runs = [(default, ("onnx", "torchscript") if default.stage == "two-stage" else ("onnx", "torchscript", "eager"))]
    if default.stage == "two-stage":
        runs.insert(0, (default.stage_card("global"), ("onnx", "torchscript", "eager")))
    volume = sample_case_dir() / f"{modality}.nrrd"
    rows = []
    for card, backends in runs:
        two_stage = card.stage == "two-stage"
        for backend in backends:
            r = run_bench_detection(card, volume, backend, repeats)
            target = (1.0 if two_stage else 0.5) if backend == "onnx" else None
            status = "" if target is None else ("met" if r["median_s"] <= target else "NOT met")
            mirror = ", on the volume and its mirror image" if card.mirror_average else ""
            again = f" x {card.global_passes} passes" if card.global_passes > 1 else ""
            what = f"two-stage (global{again} + local refinement{mirror})" if two_stage else "whole-volume"
            rows.append(
                f"| detect {modality.upper()} volume, {card.name} ({what}), {r['backend']} (resample + inference + "
                f"decode; peak RSS {r['peak_rss_mb']:.0f} MB, {r['peak_rss_mb'] - r['rss_before_model_mb']:.0f} MB "
                f"above start) | {r['n']} | {1000 * r['median_s']:.1f} | {1000 * r['p95_s']:.1f} | ms | "
                f"{f'median <= {1000 * target:.0f} ms' if target else ''} | {status} |"
            )
    if default.stage == "two-stage":
        rows.append(compare_backends(default, volume, repeats))
    return rows


def run_bench_detection(card, volume, backend: str, repeats: int) -> dict:
    """bench_detection.py in its own process (a fresh interpreter, so that peak memory is the detector's): its JSON."""
    import json
    import subprocess
    import sys

    script = str(Path(__file__).with_name("bench_detection.py"))
    command = [sys.executable, script, str(card.path), str(volume), "--backend", backend, "--repeats", str(repeats)]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


ONNX_SPEEDUP_TARGET = 1.3  # issue 22: what Slicer users get (ONNX) should be the fast path


def compare_backends(card, volume, repeats: int) -> str:
    """ONNX vs TorchScript on the same two-stage card in one process, interleaved (bench_detection.py compare):
    TorchScript's median time over ONNX's."""
    r = run_bench_detection(card, volume, "compare", repeats)
    ratio = r["torchscript_over_onnx"]
    int8 = any(c.onnx_quantization for c in card.stage_cards("local"))
    return (
        f"| two-stage detection {card.modality.upper()}, {card.name}"
        + (" (int8 ONNX local networks, float TorchScript: docs/results/quantization)" if int8 else "")
        + ": TorchScript time / ONNX time, both in one "
        f"process, runs interleaved (median ONNX {1000 * r['onnx_median_s']:.1f} ms, TorchScript "
        f"{1000 * r['torchscript_median_s']:.1f} ms) | {r['n']} | {ratio:.2f} | - | x | >= {ONNX_SPEEDUP_TARGET:g}x | "
        f"{'met' if ratio >= ONNX_SPEEDUP_TARGET else 'NOT met'} |"
    )


def bench_run_pair(repeats: int) -> list[float]:
    """`landmarkinit run` on the sample pair with the shipped models: both detections, fit, QA, figure and every
    file written (detectors opened once, as in a batch worker)."""
    import tempfile

    from LandmarkInitLib.pipeline.initialize import Detectors
    from LandmarkInitLib.pipeline.run import run_case
    from LandmarkInitLib.resources import sample_case_dir

    case = sample_case_dir()
    detectors = Detectors.open(threads=2)
    with tempfile.TemporaryDirectory() as tmp:
        run_case(case / "mr.nrrd", case / "us.nrrd", Path(tmp) / "warm-up", detectors=detectors)
        return timed(
            lambda: run_case(case / "mr.nrrd", case / "us.nrrd", Path(tmp) / "out", detectors=detectors, force=True),
            repeats,
        )


def bench_run_process(repeats: int) -> tuple[list[float], float]:
    """The `landmarkinit run` command on the sample pair, one process per run as a user starts it (interpreter
    start, imports, model loading and checksums, both detections, fit, QA, figure, files): wall times and the
    largest peak RSS of those processes. The peak is the process's own VmHWM, read as it exits: its ru_maxrss
    would start at this (large) benchmark process's RSS, which Linux carries over through fork and exec."""
    import subprocess
    import sys
    import tempfile

    from LandmarkInitLib.resources import sample_case_dir

    case = sample_case_dir()
    report_peak = (
        "import atexit, sys; from LandmarkInitLib.cli import main; "
        "atexit.register(lambda: sys.stderr.write(next(line for line in open('/proc/self/status') "
        "if line.startswith('VmHWM:')))); sys.exit(main(sys.argv[1:]))"
    )
    command = [sys.executable, "-c", report_peak, "run", "--mr", str(case / "mr.nrrd")]
    command += ["--us", str(case / "us.nrrd"), "--threads", "2", "--quiet", "--force", "--output-dir"]
    times, peak_kib = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            t0 = time.perf_counter()
            child = subprocess.run(
                [*command, str(Path(tmp) / "out")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
            )
            times.append(time.perf_counter() - t0)
            if child.returncode not in (0, 3):  # 3: done, and flagged for review
                raise RuntimeError(f"landmarkinit run exited with {child.returncode}: {child.stderr[-500:]}")
            peak_kib = max(peak_kib, int(child.stderr.split("VmHWM:")[-1].split()[0]))
    return times, peak_kib / 1024.0


def bench_batch(cases: int, workers: int = 2) -> tuple[float, dict]:
    """Cases per minute of `run --cases` with ``workers`` processes on freshly generated phantom cases."""
    import tempfile

    from LandmarkInitLib.pipeline.batch import RunOptions, run_batch
    from LandmarkInitResearch.phantom.generator import generate_dataset

    with tempfile.TemporaryDirectory() as tmp:
        generate_dataset(Path(tmp) / "data", cases, 4242, workers=workers, progress=False)
        summary = run_batch(Path(tmp) / "data", Path(tmp) / "out", RunOptions(), workers=workers, progress=False)
    return cases / summary["seconds"] * 60.0, summary["counts"]


def bench_app_drag(repeats: int) -> list[str]:
    """Browser app: a dragged point's new position on the server -> MR_to_US updated -> fused view re-rendered
    (and JPEG-encoded for the page); its own process (bench_app_drag.py: EGL views, trame server objects)."""
    import json
    import subprocess
    import sys

    script = Path(__file__).with_name("bench_app_drag.py")
    out = subprocess.run(
        [sys.executable, str(script), "--repeats", str(repeats)], capture_output=True, text=True, check=True
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    width, height = r["view_size"]

    def ms(part):
        return 1000 * r[part]["median_s"], 1000 * r[part]["p95_s"]

    total, refit, render, encode = ms("total"), ms("refit"), ms("render"), ms("encode")
    status = "met" if total[0] <= 100 else "NOT met"
    return [
        f"| browser app: point drag received -> MR_to_US re-fitted, panel state updated, fused view "
        f"({width}x{height}) re-rendered offscreen (EGL, Mesa CPU) and JPEG-encoded for the page; median parts: "
        f"re-fit {refit[0]:.1f} ms, render + read-back {render[0]:.1f} ms, encode {encode[0]:.1f} ms; "
        f"{r['frames_changed']}/{r['n']} frames changed | {r['n']} | {total[0]:.1f} | {total[1]:.1f} | ms | "
        f"median <= 100 ms | {status} |"
    ]


def row(name, samples, unit_scale, unit, target=None):
    med = statistics.median(samples) * unit_scale
    p95 = float(np.percentile(samples, 95)) * unit_scale
    status = "" if target is None else ("met" if med <= target else "NOT met")
    target_text = "" if target is None else f"median <= {target:g} {unit}"
    return f"| {name} | {len(samples)} | {med:.3f} | {p95:.3f} | {unit} | {target_text} | {status} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--phantom-cases", type=int, default=6)
    parser.add_argument("--detect-repeats", type=int, default=20)
    parser.add_argument("--run-repeats", type=int, default=5)
    parser.add_argument("--batch-cases", type=int, default=8)
    parser.add_argument("--app-drags", type=int, default=30)
    args = parser.parse_args()

    rows = [
        row("rigid fit, 3 points", bench_fit(3, args.repeats), 1e6, "us"),
        row("rigid fit, 100 points", bench_fit(100, args.repeats), 1e6, "us"),
        row(
            "live update: point moved -> transform node updated (3 landmarks, real MRML scene)",
            bench_live_update(args.repeats),
            1e3,
            "ms",
            target=1.0,
        ),
        row(
            "phantom: generate one MR/US case (one core, no file IO)",
            bench_phantom_case(args.phantom_cases),
            1.0,
            "s",
            target=10.0,
        ),
    ]
    rows.append(
        row(
            "run one pair: detect MR + US, fit, QA, report figure, write all files (shipped models, 2 threads)",
            bench_run_pair(args.run_repeats),
            1.0,
            "s",
            target=1.0,
        )
    )
    process_times, peak_mb = bench_run_process(args.run_repeats)
    rows.append(
        row(
            f"`landmarkinit run` on one pair as a command: its own process (start, imports, models opened and "
            f"checked, detection, fit, QA, figure, files; ONNX, 2 threads); peak memory (max RSS) {peak_mb:.0f} MB",
            process_times,
            1.0,
            "s",
        )
    )
    rows += bench_app_drag(args.app_drags)
    per_minute, counts = bench_batch(args.batch_cases)
    rows.append(
        f"| run --cases with 2 worker processes: {args.batch_cases} phantom cases ({counts['ok']} ok, "
        f"{counts['review']} flagged) | 1 | {per_minute:.1f} | - | cases/min | | |"
    )
    for modality in ("mr", "us"):
        try:
            rows += bench_detection(modality, args.detect_repeats)
        except Exception as e:  # no shipped model yet: say so in the table rather than fail the other rows
            rows.append(f"| detect {modality.upper()} volume | - | - | - | - | | not measured: {e} |")
    header = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; landmarkinit {__version__}, "
        f"Python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPU cores "
        f"({platform.machine()}). Wall-clock times; median and 95th percentile over N runs.",
        "",
        "| what | N | median | p95 | unit | target | status |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    text = "\n".join(header + rows) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
