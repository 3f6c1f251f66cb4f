"""JSON reports of a landmark fit (what ``landmarkinit register`` writes with --report)."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from LandmarkInitLib import __version__
from LandmarkInitLib.fit.landmark_fit import FitResult
from LandmarkInitLib.io.output_files import atomic_output

CONVENTION = (
    "matrix maps moving (MR) RAS millimetre points to fixed (US) RAS millimetre points; it is the "
    "'to parent' matrix of the MR_to_US transform node"
)


def fit_report(labels, moving_points, fixed_points, fit: FitResult, **extra) -> dict:
    return {
        "software": {"landmarkinit": __version__, "python": platform.python_version()},
        "convention": CONVENTION,
        "mode": fit.mode,
        "matrix": np.round(fit.matrix, 12).tolist(),
        "scale": fit.scale,
        "rms_mm": fit.rms,
        "conditioning": fit.conditioning,
        "landmarks": [
            {
                "label": label,
                "moving_ras": [float(v) for v in m],
                "fixed_ras": [float(v) for v in f],
                "residual_mm": float(r),
            }
            for label, m, f, r in zip(labels, moving_points, fixed_points, fit.residuals, strict=True)
        ],
        **extra,
    }


def write_json(data: dict, path, *, force: bool = False) -> Path:
    with atomic_output(path, force) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return Path(path)


def format_fit(labels, fit: FitResult) -> str:
    """Human-readable summary for the terminal."""
    lines = ["MR_to_US (to parent: MR RAS -> US RAS, mm):"]
    lines += ["  " + " ".join(f"{v:10.4f}" for v in row) for row in fit.matrix]
    if fit.mode == "similarity":
        lines.append(f"scale: {fit.scale:.5f}")
    lines.append("residuals (FRE):")
    lines += [f"  {label:<18s} {r:7.3f} mm" for label, r in zip(labels, fit.residuals, strict=True)]
    lines.append(f"RMS: {fit.rms:.3f} mm   conditioning: {fit.conditioning:.3f}")
    return "\n".join(lines)
