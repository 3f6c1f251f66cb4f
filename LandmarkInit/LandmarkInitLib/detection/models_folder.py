"""A models folder (``--models DIR``, the "Models folder" setting of the Slicer module and the browser app): a site's
own detectors, in the layout of Resources/Models.

The folder holds ``mr_landmarks.json`` and/or ``us_landmarks.json`` (each a top-level model card with its stage cards
and weights beside it, as ``landmarkinit finetune --output DIR/mr_landmarks.json`` writes them). Each card present
replaces the shipped card of its modality; a modality without one keeps the shipped card; a folder with neither is
refused. An explicit card (``--mr-model``/``--us-model``) wins over the folder for its modality.

The whole folder is checked when it is chosen, before any detection: every card's schema and modality, every stage
card it names, and the sha256 of every weights file (ModelCard.verified_weights), so that a broken or altered
folder is refused at once with what is wrong, not in the middle of a batch.
"""

from __future__ import annotations

from pathlib import Path

from LandmarkInitLib.detection.model_card import ModelCard, ModelCardError, load_card, sha256_of
from LandmarkInitLib.landmarks import MODALITIES

SHIPPED = "shipped"  # what report.json's ``folder`` says for a shipped card


def folder_card_name(modality: str) -> str:
    return f"{modality}_landmarks.json"


class ModelsFolderError(ModelCardError):
    """A models folder that is missing, empty, or holds a card that cannot be used."""


def models_folder_or_none(value) -> Path | None:
    """A models-folder setting as a path, or None for "the shipped models": None, "" and "." (what an empty path
    field gives, e.g. Slicer's parameter node for an unset path) all mean no folder."""
    if value is None or str(value).strip() in ("", "."):
        return None
    return Path(str(value).strip()).expanduser()


def check_models_folder(folder) -> dict[str, Path]:
    """{modality: card path} of the cards a models folder holds, after checking all of them (see the module's
    docstring); {} for no folder. Raises ModelsFolderError with what is wrong and what to do."""
    folder = models_folder_or_none(folder)
    if folder is None:
        return {}
    if not folder.exists():
        raise ModelsFolderError(
            f"models folder {folder} does not exist; give the folder that holds mr_landmarks.json and/or "
            "us_landmarks.json (what finetune --output wrote), or give no models folder to use the shipped models"
        )
    if not folder.is_dir():
        raise ModelsFolderError(f"models folder {folder} is a file; give the folder that holds the model cards")
    cards = {m: folder / folder_card_name(m) for m in MODALITIES if (folder / folder_card_name(m)).is_file()}
    if not cards:
        raise ModelsFolderError(
            f"models folder {folder} holds neither mr_landmarks.json nor us_landmarks.json; give the folder "
            "finetune --output wrote into, or give no models folder to use the shipped models"
        )
    for modality, path in cards.items():
        _check_card(folder, modality, path)
    return cards


def _an(modality: str) -> str:
    return {"mr": "an MR", "us": "a US"}[modality]


def _check_card(folder: Path, modality: str, path: Path) -> None:
    name = path.name
    try:
        card = load_card(path)
    except ModelCardError as e:
        raise ModelsFolderError(f"models folder {folder}: {name} cannot be used: {e}") from None
    if card.modality != modality:
        raise ModelsFolderError(
            f"models folder {folder}: {name} is {_an(card.modality)} model (modality {card.modality!r}), "
            f"not {modality.upper()}; put the {card.modality.upper()} card in {folder_card_name(card.modality)}"
        )
    if card.stage == "two-stage":
        for stage in ("global", "local"):
            entry = card.data["stages"][stage]
            for stage_name in entry.get("cards", [entry.get("card")]):
                if not (path.parent / stage_name).is_file():
                    raise ModelsFolderError(
                        f"models folder {folder}: {name} names the {stage} stage card {stage_name}, which is not "
                        "in the folder; copy every file finetune wrote (cards and weights) into it"
                    )
    try:
        stage_cards = card.stage_cards("global") + card.stage_cards("local") if card.stage == "two-stage" else [card]
        for c in stage_cards:
            for backend in c.data["files"]:
                c.verified_weights(backend)
    except ModelCardError as e:
        raise ModelsFolderError(f"models folder {folder}: {name} cannot be used: {e}") from None


def resolve_cards(models=None, mr_card=None, us_card=None) -> dict[str, Path | None]:
    """The card of each modality: the explicit one, else the models folder's (checked), else None (the caller's
    default: the shipped card)."""
    folder_cards = check_models_folder(models)
    explicit = {"mr": mr_card, "us": us_card}
    return {m: Path(explicit[m]) if explicit[m] else folder_cards.get(m) for m in MODALITIES}


def card_origin(card: ModelCard) -> str:
    """ "shipped" for a card of the shipped models (resources.models_dir()), else the folder it came from."""
    from LandmarkInitLib.resources import models_dir

    folder = card.path.resolve().parent
    try:
        shipped = models_dir().resolve()
    except OSError:
        shipped = None
    return SHIPPED if folder == shipped else str(folder)


def model_identity(card: ModelCard) -> dict:
    """Which model this is, as report.json and the status lines name it: card name, sha256 of the card file, and
    the folder it came from ("shipped" or a path)."""
    return {"name": card.name, "card_sha256": sha256_of(card.path), "folder": card_origin(card)}


def model_weights(card: ModelCard) -> list[dict]:
    """Every weights file behind a card (both stages of a two-stage card): its card, file and sha256, int8 ONNX
    files marked, as report.json records them."""
    cards = card.stage_cards("global") + card.stage_cards("local") if card.stage == "two-stage" else [card]
    return [
        {"card": c.name, "file": f["path"], "sha256": f["sha256"]} | ({"int8": True} if "quantization" in f else {})
        for c in cards
        for f in c.data["files"].values()
    ]


def describe_model(modality: str, identity: dict) -> str:
    """One line for a status: "MR model: <name> (shipped, card sha256 0123456789ab)"."""
    where = "shipped" if identity["folder"] == SHIPPED else f"from {identity['folder']}"
    return f"{modality.upper()} model: {identity['name']} ({where}, card sha256 {identity['card_sha256'][:12]})"


def describe_detectors(detectors) -> str:
    """Both models of a Detectors pair, for a status line."""
    return "; ".join(describe_model(m, model_identity(getattr(detectors, m).card)) for m in MODALITIES)
