"""Options shared by several ``landmarkinit`` sub-commands, declared once so that they mean the same everywhere.

Each function returns a parent parser (``argparse.ArgumentParser(parents=[...])``); a sub-command takes the groups
it needs. Only the default backend differs, by design: batch commands default to ONNX (what a Slicer without
torch runs, and what the shipped figures were measured with), the interactive app to ``auto`` (as the Slicer
module)."""

from __future__ import annotations

import argparse
from pathlib import Path

from LandmarkInitLib.detection.detectors import BACKEND_CHOICES


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a count of threads or processes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def force() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return p


def quiet() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def runtime(default_backend: str = "onnx", default_threads: int | None = None) -> argparse.ArgumentParser:
    """How the detectors run: ``--backend`` and ``--threads``."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("detector runtime")
    g.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        default=default_backend,
        help=f"onnx (onnxruntime), torchscript (needs torch), or auto: ONNX when onnxruntime is installed, else "
        f"TorchScript when torch is (default {default_backend})",
    )
    _add_threads(g, default_threads)
    return p


def threads(default: int | None = None) -> argparse.ArgumentParser:
    """``--threads`` alone, for commands that run networks without choosing a backend (training)."""
    p = argparse.ArgumentParser(add_help=False)
    _add_threads(p, default)
    return p


def _add_threads(container, default: int | None) -> None:
    container.add_argument(
        "--threads",
        type=positive_int,
        default=default,
        metavar="N",
        help="CPU threads per process for the networks (default "
        + ("all cores" if default is None else str(default))
        + ")",
    )


def models() -> argparse.ArgumentParser:
    """The detectors of a pair: ``--mr-model`` and ``--us-model`` (model cards), and ``--models`` (a folder)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--mr-model", type=Path, metavar="CARD", help="MR model card (default: the shipped one)")
    p.add_argument("--us-model", type=Path, metavar="CARD", help="US model card (default: the shipped one)")
    _add_models_folder(p, "--mr-model/--us-model win over it for their modality")
    return p


def models_folder() -> argparse.ArgumentParser:
    """``--models DIR`` alone, for commands that choose their detectors otherwise (detect: --model; app)."""
    p = argparse.ArgumentParser(add_help=False)
    _add_models_folder(p)
    return p


def _add_models_folder(container, note: str = "") -> None:
    container.add_argument(
        "--models",
        type=Path,
        metavar="DIR",
        help="models folder: its mr_landmarks.json / us_landmarks.json (e.g. written by finetune) replace the shipped "
        "card of their modality, a modality it lacks keeps the shipped one; checked (modality, stage cards, weights "
        "checksums) before anything runs" + (f"; {note}" if note else ""),
    )


def output_dir(required: bool = True, default=None, help: str = "folder for the outputs") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--output-dir", "-o", type=Path, required=required, default=default, help=help)
    return p


def workers() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--workers", type=positive_int, default=1, help="parallel worker processes (default 1)")
    return p
