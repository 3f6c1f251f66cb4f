"""Model cards: the JSON file that describes a shipped detector and names its weights files.

The runtime trusts nothing it has not checked: the card's schema, its landmark list (must be the project's
three landmarks, in the order the outputs use), the modality, and the sha256 of each weights file before the
file is opened.

A card is one of three stages: "global" (whole volume -> landmarks), "local" (patches around current estimates ->
refined landmarks) or "two-stage", which names a global card and one or more local cards (paths relative to
itself) and holds no weights of its own. Several local cards form an ensemble: each refines from the same
starting points and their answers are averaged. A two-stage card may also list ``postprocessing`` steps, run in
order after the last refinement pass (detection/postprocessing.py holds the registry of named steps).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from LandmarkInitLib.detection.model_grid import ModelGrid
from LandmarkInitLib.detection.postprocessing import MIRROR_AVERAGE, PostprocessingError, check_postprocessing
from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.landmarks import LANDMARK_LABELS

CARD_SCHEMA = "landmarkinit-model-card/1"
STAGES = ("global", "local", "two-stage")
REQUIRED_KEYS = ("modality", "landmarks", "input_grid", "intensity_normalization", "files")
# Settings of cards made before the post-processing list (refused with a pointer to the list).
LEGACY_STEP_KEYS = ("posterior_median_mid_gland", "posterior_median_axis_plane", "mirror_average")


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

    @property
    def postprocessing(self) -> list[dict]:
        """A two-stage card's post-processing steps, in order (detection/postprocessing.py; [] for other cards)."""
        return check_postprocessing(self.data.get("postprocessing", []), f"model card {self.path}")

    @property
    def global_passes(self) -> int:
        """A two-stage card's number of global passes (``stages.global.passes``, default 1: the global stage once, on
        a grid centred on the volume; each further pass on a grid centred on the last answer); 1 for other cards."""
        passes = self.data.get("stages", {}).get("global", {}).get("passes", 1)
        if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
            raise ModelCardError(
                f"two-stage model card {self.path}: stages.global.passes is {passes!r}; it must be a whole number, 1 "
                "or more (1: the global stage runs once, on a grid centred on the volume)"
            )
        return passes

    @property
    def onnx_quantization(self) -> dict | None:
        """The record of an int8 ONNX file (LandmarkInitResearch/training/quantize.py), None for a float one."""
        return self.data.get("files", {}).get("onnx", {}).get("quantization")

    @property
    def mirror_average(self) -> bool:
        """Whether the card's post-processing includes the mirror view (False for stage cards)."""
        return any(step["step"] == MIRROR_AVERAGE for step in self.postprocessing)

    def stage_cards(self, stage: str) -> list[ModelCard]:
        """The cards of one stage of a two-stage card (the global card, or every local card of the ensemble),
        loaded and checked against this card."""
        entry = self.data["stages"][stage]
        cards = [load_card(self.path.parent / name) for name in entry.get("cards", [entry.get("card")])]
        for card in cards:
            if card.stage != stage:
                raise ModelCardError(f"{self.path}: its {stage} stage {card.path} is a {card.stage} model")
            if card.modality != self.modality:
                raise ModelCardError(
                    f"{self.path}: its {stage} stage {card.path} is a {card.modality.upper()} model, not "
                    f"{self.modality.upper()}"
                )
        return cards

    def stage_card(self, stage: str) -> ModelCard:
        """The global card, or the local card of a two-stage card with a single local model."""
        cards = self.stage_cards(stage)
        if len(cards) != 1:
            raise ModelCardError(f"{self.path} has {len(cards)} {stage} cards; use stage_cards()")
        return cards[0]

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
        stages = data["stages"]
        if "card" not in stages.get("global", {}):
            raise ModelCardError(f"two-stage model card {path} names no global card")
        if not ("card" in stages.get("local", {}) or stages.get("local", {}).get("cards")):
            raise ModelCardError(f"two-stage model card {path} names no local card")
        legacy = [key for key in LEGACY_STEP_KEYS if key in data]
        if legacy:
            raise ModelCardError(
                f"two-stage model card {path} sets {', '.join(legacy)}, which this version of LandmarkInit reads only "
                'as an ordered "postprocessing" list, e.g. [{"step": "mid_gland", "weight": 1.0}, '
                '{"step": "mirror_average"}]; rewrite the card (docs/models.md)'
            )
        try:
            check_postprocessing(data.get("postprocessing", []), f"two-stage model card {path}")
        except PostprocessingError as e:
            raise ModelCardError(str(e)) from None
    if stage != "two-stage":
        try:
            ModelGrid.from_dict(data["input_grid"])
        except (ValueError, KeyError, TypeError) as e:
            raise ModelCardError(f"model card {path}: its input_grid cannot be used ({e})") from None
    if tuple(data["landmarks"]) != LANDMARK_LABELS:
        raise ModelCardError(
            f"model card {path} lists landmarks {data['landmarks']}; this version of LandmarkInit needs exactly "
            f"{list(LANDMARK_LABELS)} in that order"
        )
    if data["modality"] not in ("mr", "us"):
        raise ModelCardError(f"model card {path}: unknown modality {data['modality']!r}")
    return ModelCard(path, data)
