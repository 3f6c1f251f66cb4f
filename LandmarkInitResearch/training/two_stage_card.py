"""Writing two-stage model cards: a global card and one or more local cards (an ensemble) combined into the card
the runtime opens (LandmarkInitLib.detection.model_card describes the format; the runtime only reads cards)."""

from __future__ import annotations

import json
from pathlib import Path

from LandmarkInitLib.detection.model_card import CARD_SCHEMA, ModelCardError, load_card
from LandmarkInitLib.detection.postprocessing import PostprocessingError, check_postprocessing, describe
from LandmarkInitLib.landmarks import LANDMARK_LABELS


def write_two_stage_card(
    global_card,
    local_cards,
    output,
    *,
    iterations: int = 2,
    global_passes: int = 1,
    postprocessing=(),
    name=None,
    force=False,
    note: str | None = None,
) -> Path:
    """A two-stage card naming a global card and one or more local cards (an ensemble; stored as paths relative
    to the new card), with the number of global passes (each after the first on a grid centred on the last
    answer), the number of refinement passes and the post-processing steps, in order
    (``[{"step": NAME, ...parameters}]``, detection/postprocessing.py); ``note`` ends the description."""
    import os

    output = Path(output)
    if output.suffix.lower() != ".json":
        raise ModelCardError(f"{output}: a model card is a .json file")
    if output.exists() and not force:
        raise ModelCardError(f"{output} already exists; pass --force to overwrite it")
    if iterations < 1:
        raise ModelCardError("a two-stage detector needs at least one local refinement pass")
    if global_passes < 1:
        raise ModelCardError("a two-stage detector needs at least one global pass")
    try:
        postprocessing = check_postprocessing(list(postprocessing), str(output))
    except PostprocessingError as e:
        raise ModelCardError(str(e)) from None
    local_cards = [local_cards] if isinstance(local_cards, (str, os.PathLike)) else list(local_cards)
    if not local_cards:
        raise ModelCardError("a two-stage detector needs at least one local card")
    first = load_card(global_card)
    cards = [("global", first)] + [("local", load_card(c)) for c in local_cards]
    for stage, card in cards:
        if card.stage != stage:
            raise ModelCardError(f"{card.path} is a {card.stage} model card, not a {stage} one")
        if card.modality != first.modality:
            raise ModelCardError(
                f"{first.path} is {first.modality.upper()} but {card.path} is {card.modality.upper()}: "
                "all stages must be of the same modality"
            )
    output.parent.mkdir(parents=True, exist_ok=True)

    def relative(card):
        return os.path.relpath(card.path.resolve(), output.parent.resolve())

    locals_ = [card for stage, card in cards if stage == "local"]
    methods = sorted({c.data.get("method") for c in locals_}, key=str)
    ensemble = f" (ensemble of {len(locals_)}, answers averaged)" if len(locals_) > 1 else ""
    data = {
        "schema": CARD_SCHEMA,
        "name": name or output.stem,
        "modality": first.modality,
        "method": f"{first.data.get('method')} + {' / '.join(map(str, methods))}",
        "stage": "two-stage",
        "landmarks": list(LANDMARK_LABELS),
        "stages": {
            # one pass is the default the runtime assumes: cards without the key stay as release 0.1 wrote them
            "global": {"card": relative(first), **({"passes": int(global_passes)} if global_passes > 1 else {})},
            "local": {"cards": [relative(c) for c in locals_], "iterations": int(iterations)},
        },
        "postprocessing": postprocessing,
        "description": "global detector on a coarse grid centred on the volume"
        + (f", then again on one centred on its answer ({global_passes} passes)" if global_passes > 1 else "")
        + ", then local refinement on fine patches "
        f"centred on each landmark's estimate{ensemble}, {iterations} pass(es)"
        + (f"; then: {describe(postprocessing)}" if postprocessing else "")
        + "; the stage cards hold grids, normalization, training data and weights checksums"
        + _trained_on([card for _, card in cards])
        + (f". {note}" if note else ""),
    }
    output.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    load_card(output).stage_cards("local")
    return output


def _trained_on(cards) -> str:
    """Say plainly when a stage was trained on real patient images (the data's terms ask for it)."""
    if any((c.data.get("training") or {}).get("real_mr") for c in cards):
        return (
            ". Trained on REAL patient images (PROMISE12 T2 MR, research-use terms: promise12.grand-challenge.org) "
            "plus SYNTHETIC phantom data"
        )
    return ""
