"""Where shipped files (models, sample data) are found: the repository's Resources/ folder (development and pip
editable installs), Resources/LandmarkInit/ beside the Slicer module (extension install), or LANDMARKINIT_MODELS."""

from __future__ import annotations

import os
from pathlib import Path

from LandmarkInitLib.errors import LandmarkFileError

_HERE = Path(__file__).resolve().parent
_CANDIDATES = (
    _HERE.parent.parent / "Resources",  # repository, editable install
    _HERE.parent / "Resources" / "LandmarkInit",  # Slicer extension (see LandmarkInit/CMakeLists.txt)
)


def resources_dir() -> Path:
    for candidate in _CANDIDATES:
        if (candidate / "Models").is_dir() or (candidate / "SampleData").is_dir():
            return candidate
    raise LandmarkFileError("the LandmarkInit Resources folder (models, sample data) was not found next to the library")


def models_dir() -> Path:
    env = os.environ.get("LANDMARKINIT_MODELS")
    return Path(env) if env else resources_dir() / "Models"


def default_model_card(modality: str) -> Path:
    """The shipped default detector of a modality (Resources/Models/<modality>_landmarks.json)."""
    path = models_dir() / f"{modality}_landmarks.json"
    if not path.is_file():
        raise LandmarkFileError(
            f"no default {modality.upper()} model at {path}; pass --model CARD.json or set LANDMARKINIT_MODELS"
        )
    return path


# Detectors offered to users, by name: the model card suffix in Resources/Models (<modality>_landmarks<suffix>.json).
DETECTOR_CHOICES: dict[str, str] = {
    "two-stage": "",  # shipped default: Noothout global patch votes + local refinement
    "g2l-global": "_g2l-global",  # the global stage alone (faster, less accurate)
    "dsnt-dist": "_dsnt-dist",  # Fang 2023 U-Net + DSNT with distance-map regularization (single stage)
}
DEFAULT_DETECTOR = "two-stage"


def detector_card(choice: str, modality: str) -> Path:
    """The model card of a named detector (see DETECTOR_CHOICES) for one modality."""
    if choice not in DETECTOR_CHOICES:
        raise LandmarkFileError(f"unknown detector {choice!r}: use one of {', '.join(DETECTOR_CHOICES)}")
    path = models_dir() / f"{modality}_landmarks{DETECTOR_CHOICES[choice]}.json"
    if not path.is_file():
        raise LandmarkFileError(f"the {choice} detector's {modality.upper()} model card {path} is missing")
    return path


def sample_case_dir() -> Path:
    return resources_dir() / "SampleData" / "phantom" / "case_0000"
