"""MR + US volumes -> detected landmarks on both -> rigid MR-to-US fit: the initialization itself, without files.

Convention: the fit maps MR RAS points onto US RAS points (the "to parent" matrix of the MR_to_US node).

Weighting: ``weighting="spread"`` weighs landmark i by 1 / (s_MR,i^2 + s_US,i^2), the inverse of the summed
variances implied by the detectors' spreads, so that a landmark the detectors are unsure of pulls the fit less.
On the phantom's validation cases, with the shipped detectors, it lowered the SRE from 3.05 to 2.83 mm (Wilcoxon
p = 0.002, docs/registration.md), so it is the default.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .detection.runtime import Detection, VolumeDetector, open_detector
from .errors import LandmarkInitError
from .registration import FitResult, fit_rigid
from .resources import default_model_card

WEIGHTINGS = ("none", "spread")
DEFAULT_WEIGHTING = "spread"  # measured better on validation cases (docs/registration.md)


@dataclass
class Initialization:
    mr: Detection
    us: Detection
    fit: FitResult
    weights: np.ndarray
    weighting: str
    seconds: dict = field(default_factory=dict)

    @property
    def matrix(self) -> np.ndarray:
        return self.fit.matrix


def fit_weights(mr: Detection, us: Detection, weighting: str) -> np.ndarray:
    if weighting not in WEIGHTINGS:
        raise LandmarkInitError(f"unknown weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")
    if weighting == "none":
        return np.ones(len(mr.labels))
    variance = np.asarray(mr.spread_mm, float) ** 2 + np.asarray(us.spread_mm, float) ** 2
    if not np.all(np.isfinite(variance)) or np.any(variance <= 0):
        raise LandmarkInitError("spread weighting needs detectors that report a spread; use --weighting none")
    return 1.0 / variance


@dataclass
class Detectors:
    """The MR and US detectors of a run (model cards, or the shipped defaults)."""

    mr: VolumeDetector
    us: VolumeDetector

    @classmethod
    def open(cls, mr_card=None, us_card=None, backend: str = "onnx", threads: int | None = None) -> Detectors:
        detectors = {}
        for modality, card in (("mr", mr_card), ("us", us_card)):
            detector = open_detector(card or default_model_card(modality), backend, threads)
            if detector.card.modality != modality:
                raise LandmarkInitError(
                    f"{detector.card.path} is a {detector.card.modality.upper()} model, given as the "
                    f"{modality.upper()} model; swap the two model cards"
                )
            detectors[modality] = detector
        return cls(**detectors)


def check_not_swapped(mr: Detection, us: Detection) -> None:
    """Refuse a pair whose detectors both say it looks like the other modality."""
    from .detection.runtime import FLAG_LOOKS_LIKE_ULTRASOUND, FLAG_NOT_ULTRASOUND

    if FLAG_LOOKS_LIKE_ULTRASOUND in mr.flags and FLAG_NOT_ULTRASOUND in us.flags:
        raise LandmarkInitError(
            "the MR volume looks like ultrasound and the US volume like MR: are the MR and US inputs swapped?"
        )


def initialize(mr_image, us_image, detectors: Detectors, *, weighting: str = DEFAULT_WEIGHTING) -> Initialization:
    """Detect the landmarks on both SimpleITK images and fit the rigid MR-to-US transform."""
    t0 = time.perf_counter()
    mr = detectors.mr.detect_image(mr_image)
    t1 = time.perf_counter()
    us = detectors.us.detect_image(us_image)
    t2 = time.perf_counter()
    if mr.labels != us.labels:
        raise LandmarkInitError(f"the MR and US models detect different landmarks ({mr.labels} vs {us.labels})")
    weights = fit_weights(mr, us, weighting)
    fit = fit_rigid(mr.points_ras, us.points_ras, weights=weights)
    t3 = time.perf_counter()
    return Initialization(
        mr, us, fit, weights, weighting, {"detect_mr": t1 - t0, "detect_us": t2 - t1, "fit": t3 - t2, "total": t3 - t0}
    )
