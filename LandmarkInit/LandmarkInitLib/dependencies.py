"""Which inference runtime runs the detectors inside Slicer, and installing onnxruntime with the user's consent.

Slicer bundles numpy, vtk and SimpleITK but not onnxruntime. It is installed on first use, never at import time,
and only after the user agreed; a declined or failed install leaves the module working (it says what is missing).
ONNX Runtime is the fast path (int8 local networks for MR: docs/results/quantization); when it is missing but torch
is present (e.g. from Slicer's PyTorch extension), the TorchScript files run instead and nothing is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

from LandmarkInitLib.errors import LandmarkInitError

ONNXRUNTIME_REQUIREMENT = "onnxruntime>=1.17"


class DependencyError(LandmarkInitError):
    """A runtime dependency is missing and was not installed."""


def is_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def available_backend(module: str = "onnxruntime") -> str | None:
    """The backend "auto" runs without installing anything: ONNX when ``module`` (onnxruntime) is importable, the
    fast path; else TorchScript when torch is; else None."""
    if is_available(module):
        return "onnx"
    return "torchscript" if is_available("torch") else None


def consent_question(requirement: str) -> str:
    return (
        f"LandmarkInit runs its landmark detectors with {requirement.split('>')[0]}, which is not installed in this "
        f"Slicer yet.\n\nInstall it now from the Python Package Index ({requirement}, about 20 MB)?"
    )


def ensure_inference_runtime(
    ask_consent: Callable[[str], bool],
    install: Callable[[str], None],
    *,
    preferred: str = "auto",
    module: str = "onnxruntime",
    requirement: str = ONNXRUNTIME_REQUIREMENT,
) -> str:
    """Return the backend to run ("torchscript" or "onnx"), installing onnxruntime if needed and agreed.

    ``preferred``: "auto" (ONNX when onnxruntime is importable, else TorchScript when torch is, else ONNX after
    installing onnxruntime), "onnx" or "torchscript".
    ``ask_consent(question)`` shows the question and returns True to install; ``install(requirement)`` installs
    (in Slicer: slicer.packaging.pip_ensure / slicer.util.pip_install). Raises DependencyError with a message
    for the user when nothing can run.
    """
    if preferred not in ("auto", "onnx", "torchscript"):
        raise LandmarkInitError(f"unknown backend {preferred!r}: use auto, onnx or torchscript")
    if preferred == "auto" and (backend := available_backend(module)):
        return backend  # nothing to install
    if preferred == "torchscript" and is_available("torch"):
        return "torchscript"
    if preferred == "torchscript":
        raise DependencyError("the TorchScript backend needs torch (Slicer's PyTorch extension); choose ONNX instead")
    if is_available(module):
        return "onnx"
    if not ask_consent(consent_question(requirement)):
        raise DependencyError(
            f"{module} was not installed, so the detectors cannot run. You can still place and edit landmarks by hand "
            f"and fit the transform; press Detect landmarks again to install it."
        )
    try:
        install(requirement)
    except Exception as e:  # pip's errors reach the user as they are
        raise DependencyError(f"installing {requirement} failed ({e}); check the network connection and retry") from e
    importlib.invalidate_caches()
    if not is_available(module):
        raise DependencyError(f"{requirement} was installed but cannot be imported yet: restart Slicer and retry")
    return "onnx"
