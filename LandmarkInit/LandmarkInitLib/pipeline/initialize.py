"""MR + US volumes -> detected landmarks on both -> rigid MR-to-US fit: the initialization itself, without files.

:func:`initialize` is the one entry point for "detect on both, then fit": `landmarkinit run` and the batch call it
on SimpleITK images, the interactive session (Slicer module, browser app) on volume nodes.

Convention: the fit maps MR RAS points onto US RAS points (the "to parent" matrix of the MR_to_US node). A volume
node is detected on its own IJK-to-RAS grid; a parent transform of the node is not applied.

Weighting: ``weighting="spread"`` weighs landmark i by 1 / (s_MR,i^2 + s_US,i^2), the inverse of the summed
variances implied by the detectors' spreads, so that a landmark the detectors are unsure of pulls the fit less.
It is the default because it registered better on the phantom's validation cases (docs/history.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from LandmarkInitLib.detection.detectors import (
    FLAG_LOOKS_LIKE_ULTRASOUND,
    FLAG_NOT_ULTRASOUND,
    Detection,
    VolumeDetector,
    open_detector,
)
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.fit.landmark_fit import FitResult, fit_rigid
from LandmarkInitLib.resources import default_model_card

WEIGHTINGS = ("none", "spread")
DEFAULT_WEIGHTING = "spread"


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
    def open(
        cls, mr_card=None, us_card=None, backend: str = "onnx", threads: int | None = None, models=None
    ) -> Detectors:
        """``models``: a models folder (detection/models_folder.py), checked first; an explicit card wins over it."""
        from LandmarkInitLib.detection.models_folder import resolve_cards

        cards = resolve_cards(models, mr_card, us_card)
        detectors = {}
        for modality, card in cards.items():
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
    if FLAG_LOOKS_LIKE_ULTRASOUND in mr.flags and FLAG_NOT_ULTRASOUND in us.flags:
        raise LandmarkInitError(
            "the MR volume looks like ultrasound and the US volume like MR: are the MR and US inputs swapped?"
        )


ProgressCallback = Callable[[float, str], None]


def initialize(
    mr_volume,
    us_volume,
    detectors: Detectors,
    *,
    weighting: str = DEFAULT_WEIGHTING,
    progress: ProgressCallback | None = None,
    refuse_swapped: bool = True,
) -> Initialization:
    """Detect the landmarks on both volumes (SimpleITK images or Slicer scalar volume nodes) and fit the rigid
    MR-to-US transform.

    ``progress(fraction, message)`` is called before each step; it may raise to cancel (nothing is kept).
    Raises LandmarkInitError for a swapped pair (unless ``refuse_swapped`` is False: evaluations score every case)
    or weights that cannot be formed. (Both detections list the same
    landmarks in the same order: model cards are refused unless they list exactly LANDMARK_LABELS.)"""
    report = progress or (lambda fraction, message: None)
    t0 = time.perf_counter()
    report(0.1, "Detecting landmarks on the MR volume")
    mr = detectors.mr.detect(mr_volume)
    t1 = time.perf_counter()
    report(0.5, "Detecting landmarks on the US volume")
    us = detectors.us.detect(us_volume)
    t2 = time.perf_counter()
    report(0.9, "Fitting the MR-to-US transform")
    if refuse_swapped:
        check_not_swapped(mr, us)
    weights = fit_weights(mr, us, weighting)
    fit = fit_rigid(mr.points_ras, us.points_ras, weights=weights)
    t3 = time.perf_counter()
    return Initialization(
        mr, us, fit, weights, weighting, {"detect_mr": t1 - t0, "detect_us": t2 - t1, "fit": t3 - t2, "total": t3 - t0}
    )
