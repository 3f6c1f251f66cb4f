"""Model cards: the JSON file that describes a shipped detector and names its weights files.

The runtime trusts nothing it has not checked: the card's schema, its landmark list (must be the project's
three landmarks, in the order the outputs use), the modality, and the sha256 of each weights file before the
file is opened.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import LandmarkInitError
from ..landmarks import LANDMARK_LABELS
from .model_grid import ModelGrid

CARD_SCHEMA = "landmarkinit-model-card/1"


class ModelCardError(LandmarkInitError, ValueError):
    """A model card or weights file that is missing, altered or inconsistent."""


def sha256_of(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelCard:
    path: Path
    data: dict

    @property
    def modality(self) -> str:
        return self.data["modality"]

    @property
    def landmarks(self) -> tuple[str, ...]:
        return tuple(self.data["landmarks"])

    @property
    def grid(self) -> ModelGrid:
        return ModelGrid.from_dict(self.data["input_grid"])

    @property
    def normalization(self) -> dict:
        return self.data["intensity_normalization"]

    @property
    def name(self) -> str:
        return self.data.get("name", self.path.stem)

    def weights_path(self, backend: str) -> Path:
        files = self.data.get("files", {})
        if backend not in files:
            raise ModelCardError(f"model card {self.path} has no {backend} file (it has: {', '.join(files) or 'none'})")
        return (self.path.parent / files[backend]["path"]).resolve()

    def verified_weights(self, backend: str) -> Path:
        """Path of the backend's weights file after checking its sha256 against the card."""
        path = self.weights_path(backend)
        if not path.is_file():
            raise ModelCardError(f"weights file {path} named by {self.path} is missing")
        expected = self.data["files"][backend]["sha256"]
        actual = sha256_of(path)
        if actual != expected:
            raise ModelCardError(
                f"{path} does not match its model card (sha256 {actual[:12]}... instead of {expected[:12]}...): "
                "the file was altered or belongs to another model; reinstall the model files"
            )
        return path


def load_card(path) -> ModelCard:
    path = Path(path)
    if not path.is_file():
        raise ModelCardError(f"model card {path} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ModelCardError(f"model card {path} is not valid JSON ({e})") from None
    if data.get("schema") != CARD_SCHEMA:
        raise ModelCardError(f"{path} is not a LandmarkInit model card (schema {data.get('schema')!r})")
    for key in ("modality", "landmarks", "input_grid", "intensity_normalization", "files"):
        if key not in data:
            raise ModelCardError(f"model card {path} lacks {key!r}")
    if tuple(data["landmarks"]) != LANDMARK_LABELS:
        raise ModelCardError(
            f"model card {path} lists landmarks {data['landmarks']}; this version of LandmarkInit needs exactly "
            f"{list(LANDMARK_LABELS)} in that order"
        )
    if data["modality"] not in ("mr", "us"):
        raise ModelCardError(f"model card {path}: unknown modality {data['modality']!r}")
    return ModelCard(path, data)
