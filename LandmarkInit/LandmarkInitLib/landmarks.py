"""The three prostate landmarks of Fang et al. 2023: one place for labels, display names and colours.

The labels are written to files exactly as given here (``apex``, ``bladder_neck``, ``posterior_median``);
files are matched by these labels, never by point order.
"""

from __future__ import annotations

from dataclasses import dataclass


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
