"""The three prostate landmarks of Fang et al. 2023 (labels, display names, colours) and labelled point sets.

The labels are written to files exactly as given here (``apex``, ``bladder_neck``, ``posterior_median``);
files are matched by these labels, never by point order. A :class:`LandmarkSet` holds RAS millimetre positions
in the coordinate system of the volume the landmarks were placed on. Validation is strict, since a silently
mismatched label gives a wrong transform: labels must be non-empty and unique, and (by default) exactly the
project's three landmarks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from LandmarkInitLib.errors import LandmarkLabelError


@dataclass(frozen=True)
class Landmark:
    label: str
    display_name: str
    definition: str


LANDMARKS: tuple[Landmark, ...] = (
    Landmark("apex", "Apex", "inferior tip of the prostate gland"),
    Landmark(
        "bladder_neck",
        "Bladder neck",
        "where the prostatic urethra meets the bladder, at the base of the gland",
    ),
    Landmark(
        "posterior_median",
        "Posterior median",
        "mid-gland point on the posterior gland surface, in the mid-sagittal plane",
    ),
)

LANDMARK_LABELS: tuple[str, ...] = tuple(lm.label for lm in LANDMARKS)

# Row of each landmark in point arrays ordered as LANDMARK_LABELS (detector outputs, ordered landmark sets).
APEX, BLADDER_NECK, POSTERIOR_MEDIAN = (LANDMARK_LABELS.index(k) for k in ("apex", "bladder_neck", "posterior_median"))

MODALITIES: tuple[str, ...] = ("mr", "us")

# Per-modality colours (RGB, 0-1) of the markups nodes: MR blue, US orange, a pair that stays
# distinguishable for the common colour-vision deficiencies.
MODALITY_COLORS: dict[str, tuple[float, float, float]] = {
    "mr": (0.12, 0.47, 0.71),
    "us": (1.00, 0.50, 0.05),
}
# Slicer draws points whose "selected" flag is on (the default) in the display node's SelectedColor, so
# that holds the modality colour; unselected points get a lighter shade of the same hue.
MODALITY_UNSELECTED_COLORS: dict[str, tuple[float, float, float]] = {
    "mr": (0.55, 0.78, 0.95),
    "us": (1.00, 0.78, 0.50),
}

MODALITY_DISPLAY_NAMES: dict[str, str] = {"mr": "MR", "us": "US"}


def landmark_by_label(label: str) -> Landmark:
    for lm in LANDMARKS:
        if lm.label == label:
            return lm
    raise KeyError(label)


def check_modality(modality: str) -> str:
    """Return the modality in canonical lower case, or raise ValueError naming the valid ones."""
    m = str(modality).lower()
    if m not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}: use one of {', '.join(MODALITIES)}")
    return m


@dataclass(frozen=True)
class LandmarkSet:
    labels: tuple[str, ...]
    points_ras: np.ndarray  # N x 3, RAS mm

    def __post_init__(self):
        pts = np.asarray(self.points_ras, dtype=float).reshape(-1, 3)
        object.__setattr__(self, "points_ras", pts)
        object.__setattr__(self, "labels", tuple(self.labels))
        if len(self.labels) != len(pts):
            raise LandmarkLabelError(f"{len(self.labels)} labels for {len(pts)} points")

    @classmethod
    def from_mapping(cls, points: Mapping[str, Iterable[float]]) -> LandmarkSet:
        return cls(tuple(points), np.array([list(p) for p in points.values()], dtype=float))

    def as_dict(self) -> dict[str, np.ndarray]:
        return {label: self.points_ras[i] for i, label in enumerate(self.labels)}

    def point(self, label: str) -> np.ndarray:
        try:
            return self.points_ras[self.labels.index(label)]
        except ValueError:
            raise LandmarkLabelError(f"no landmark labelled {label!r}; present: {', '.join(self.labels)}") from None

    def ordered(self, labels: Iterable[str]) -> np.ndarray:
        """Points as an array in the given label order."""
        return np.array([self.point(label) for label in labels])


def validate_labels(
    labels: Iterable[str], expected: Iterable[str] | None = LANDMARK_LABELS, source: str = "landmarks"
) -> None:
    """Raise LandmarkLabelError for empty, duplicated, unknown or missing labels."""
    labels = list(labels)
    if any(not label or not label.strip() for label in labels):
        raise LandmarkLabelError(f"{source}: a point has an empty label; label every point")
    dups = sorted(label for label, n in Counter(labels).items() if n > 1)
    if dups:
        raise LandmarkLabelError(
            f"{source}: duplicated label(s) {', '.join(dups)}; each landmark must be placed exactly once"
        )
    if expected is None:
        return
    expected = list(expected)
    unknown = [label for label in labels if label not in expected]
    missing = [label for label in expected if label not in labels]
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(f"unknown label(s) {', '.join(unknown)}")
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        raise LandmarkLabelError(f"{source}: {'; '.join(parts)}; expected exactly the labels {', '.join(expected)}")


def match_landmarks(
    moving: LandmarkSet, fixed: LandmarkSet, expected: Iterable[str] | None = LANDMARK_LABELS
) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """Pair two sets by label. Returns ``(labels, moving_points, fixed_points)`` in a common order
    (``expected`` order, or the moving set's order when ``expected`` is None)."""
    validate_labels(moving.labels, expected, "moving landmarks")
    validate_labels(fixed.labels, expected, "fixed landmarks")
    if expected is None:
        only_moving = [lb for lb in moving.labels if lb not in fixed.labels]
        only_fixed = [lb for lb in fixed.labels if lb not in moving.labels]
        if only_moving or only_fixed:
            raise LandmarkLabelError(
                "the two landmark sets have different labels "
                f"(only in moving: {', '.join(only_moving) or '-'}; only in fixed: {', '.join(only_fixed) or '-'}); "
                "label matching points identically in both"
            )
        order = moving.labels
    else:
        order = tuple(expected)
    return order, moving.ordered(order), fixed.ordered(order)
