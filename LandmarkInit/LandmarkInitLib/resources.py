"""Where shipped files (models, sample data) are found: the repository's Resources/ folder (development and pip
editable installs), the Slicer module's Resources/ folder (extension install), or LANDMARKINIT_MODELS."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import LandmarkFileError

_HERE = Path(__file__).resolve().parent
_CANDIDATES = (_HERE.parent.parent / "Resources", _HERE.parent / "Resources")


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


def sample_case_dir() -> Path:
    return resources_dir() / "SampleData" / "phantom" / "case_0000"
