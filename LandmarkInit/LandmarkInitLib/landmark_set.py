"""Labelled landmark positions, matched by label (never by order).

A :class:`LandmarkSet` holds RAS millimetre positions in the coordinate system of the volume the
landmarks were placed on. Validation is strict, since a silently mismatched label gives a wrong transform:
labels must be non-empty and unique, and (by default) exactly the project's three landmarks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from .errors import LandmarkLabelError
from .landmarks import LANDMARK_LABELS


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
