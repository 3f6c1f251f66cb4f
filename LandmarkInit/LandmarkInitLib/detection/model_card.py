"""Model cards: the JSON file that describes a shipped detector and names its weights files.

The runtime trusts nothing it has not checked: the card's schema, its landmark list (must be the project's
three landmarks, in the order the outputs use), the modality, and the sha256 of each weights file before the
file is opened.

A card is one of three stages: "global" (whole volume -> landmarks), "local" (patches around current estimates ->
refined landmarks) or "two-stage", which names a global and a local card (paths relative to itself) and holds
no weights of its own.
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
STAGES = ("global", "local", "two-stage")
REQUIRED_KEYS = ("modality", "landmarks", "input_grid", "intensity_normalization", "files")


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

    @property
    def stage(self) -> str:
        return self.data.get("stage", "global")

    def stage_card(self, stage: str) -> ModelCard:
        """The global or local card a two-stage card names, loaded and checked against this card."""
        entry = self.data["stages"][stage]
        card = load_card(self.path.parent / entry["card"])
        if card.stage != stage:
            raise ModelCardError(f"{self.path}: its {stage} stage {card.path} is a {card.stage} model")
        if card.modality != self.modality:
            raise ModelCardError(
                f"{self.path}: its {stage} stage {card.path} is a {card.modality.upper()} model, not "
                f"{self.modality.upper()}"
            )
        return card

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
    stage = data.get("stage", "global")
    if stage not in STAGES:
        raise ModelCardError(f"model card {path}: unknown stage {stage!r} (expected one of {', '.join(STAGES)})")
    required = ("modality", "landmarks", "stages") if stage == "two-stage" else REQUIRED_KEYS
    for key in required:
        if key not in data:
            raise ModelCardError(f"model card {path} lacks {key!r}")
    if stage == "two-stage":
        for name in ("global", "local"):
            if "card" not in data["stages"].get(name, {}):
                raise ModelCardError(f"two-stage model card {path} names no {name} card")
    if tuple(data["landmarks"]) != LANDMARK_LABELS:
        raise ModelCardError(
            f"model card {path} lists landmarks {data['landmarks']}; this version of LandmarkInit needs exactly "
            f"{list(LANDMARK_LABELS)} in that order"
        )
    if data["modality"] not in ("mr", "us"):
        raise ModelCardError(f"model card {path}: unknown modality {data['modality']!r}")
    return ModelCard(path, data)


def write_two_stage_card(global_card, local_card, output, *, iterations: int = 2, name=None, force=False) -> Path:
    """A two-stage card naming a global and a local card (stored as paths relative to the new card)."""
    import os

    output = Path(output)
    if output.suffix.lower() != ".json":
        raise ModelCardError(f"{output}: a model card is a .json file")
    if output.exists() and not force:
        raise ModelCardError(f"{output} already exists; pass --force to overwrite it")
    if iterations < 1:
        raise ModelCardError("a two-stage detector needs at least one local refinement pass")
    cards = {"global": load_card(global_card), "local": load_card(local_card)}
    for stage, card in cards.items():
        if card.stage != stage:
            raise ModelCardError(f"{card.path} is a {card.stage} model card, not a {stage} one")
    if cards["global"].modality != cards["local"].modality:
        raise ModelCardError(
            f"{cards['global'].path} is {cards['global'].modality.upper()} but {cards['local'].path} is "
            f"{cards['local'].modality.upper()}: both stages must be of the same modality"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "schema": CARD_SCHEMA,
        "name": name or output.stem,
        "modality": cards["global"].modality,
        "method": f"{cards['global'].data.get('method')} + {cards['local'].data.get('method')}",
        "stage": "two-stage",
        "landmarks": list(LANDMARK_LABELS),
        "stages": {
            "global": {"card": os.path.relpath(cards["global"].path.resolve(), output.parent.resolve())},
            "local": {
                "card": os.path.relpath(cards["local"].path.resolve(), output.parent.resolve()),
                "iterations": int(iterations),
            },
        },
        "description": "global detector on a coarse whole-volume grid, then local refinement on fine patches "
        f"centred on each landmark's estimate, {iterations} pass(es); the stage cards hold grids, normalization, "
        "training data and weights checksums",
    }
    output.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    load_card(output).stage_card("local")
    return output
