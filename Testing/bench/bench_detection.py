"""Detection time per volume (resample + inference + decode) and peak memory, per backend, each backend in its
own process so that peak RSS is its own. Prints one JSON line.

``--backend compare``: ONNX and TorchScript on the same card in one process, interleaved run by run, so that both
see the same machine load (a shared machine's load moves more than the difference); medians and their ratio."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def status_mb(key: str) -> float:
    """VmRSS (current) or VmHWM (peak) of this process; unlike ru_maxrss, VmHWM starts afresh at exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def eager_detector(card_path):
    """Eager torch: the card's network rebuilt with MONAI and loaded with the TorchScript file's weights."""
    import torch

    from LandmarkInitLib.detection.detectors import LandmarkDetector
    from LandmarkInitLib.detection.model_card import load_card
    from LandmarkInitResearch.training.networks import ExportWrapper, build_model

    card = load_card(card_path)
    detector = LandmarkDetector(card, "torchscript")
    state = torch.jit.load(str(card.verified_weights("torchscript"))).state_dict()
    model = ExportWrapper(build_model(card.data["method"], card.grid, 3, card.data["network"]["channels"])).eval()
    model.load_state_dict(state, strict=False)  # the traced module also holds the fixed grid axes
    missing = [k for k in model.state_dict() if k not in state]
    assert not missing, missing
    detector._module = model
    detector.backend = "eager torch"
    return detector


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("card")
    parser.add_argument("volume")
    parser.add_argument("--backend", choices=("onnx", "torchscript", "eager", "compare"), required=True)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import SimpleITK as sitk

    from LandmarkInitLib.detection.detectors import open_detector

    image = sitk.ReadImage(args.volume)
    if args.backend == "compare":
        return compare(args.card, image, args.repeats, args.threads)
    before = status_mb("VmRSS")
    if args.backend == "eager":
        import torch

        torch.set_num_threads(args.threads)
        detector = eager_detector(args.card)
    else:
        detector = open_detector(args.card, args.backend, threads=args.threads)
    detector.detect_image(image)  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        detector.detect_image(image)
        times.append(time.perf_counter() - t0)
    peak = status_mb("VmHWM")
    print(
        json.dumps(
            {
                "backend": detector.backend,
                "median_s": statistics.median(times),
                "p95_s": sorted(times)[-1],
                "n": len(times),
                "peak_rss_mb": peak,
                "rss_before_model_mb": before,
            }
        )
    )


def compare(card, image, repeats: int, threads: int) -> None:
    from LandmarkInitLib.detection.detectors import open_detector

    detectors = {b: open_detector(card, b, threads=threads) for b in ("onnx", "torchscript")}
    for detector in detectors.values():
        for _ in range(3):  # warm-up (TorchScript's profiling executor optimizes after its first runs)
            detector.detect_image(image)
    times = {b: [] for b in detectors}
    for _ in range(repeats):
        for backend, detector in detectors.items():
            t0 = time.perf_counter()
            detector.detect_image(image)
            times[backend].append(time.perf_counter() - t0)
    medians = {b: statistics.median(t) for b, t in times.items()}
    print(
        json.dumps(
            {
                "n": repeats,
                "onnx_median_s": medians["onnx"],
                "torchscript_median_s": medians["torchscript"],
                "torchscript_over_onnx": medians["torchscript"] / medians["onnx"],
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
