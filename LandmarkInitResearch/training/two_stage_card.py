"""Writing two-stage model cards: a global card and one or more local cards (an ensemble) combined into the card
the runtime opens (LandmarkInitLib.detection.model_card describes the format; the runtime only reads cards)."""

from __future__ import annotations

import json
from pathlib import Path

from LandmarkInitLib.detection.model_card import CARD_SCHEMA, ModelCardError, check_weight, load_card
from LandmarkInitLib.landmarks import LANDMARK_LABELS


def write_two_stage_card(
    global_card,
    local_cards,
    output,
    *,
    iterations: int = 2,
    mid_gland_weight: float = 0.0,
    axis_plane_weight: float = 0.0,
    mirror_average: bool = False,
    name=None,
    force=False,
) -> Path:
    """A two-stage card naming a global card and one or more local cards (an ensemble; stored as paths relative
    to the new card), with the number of refinement passes, the posterior median's mid-gland weight and whether
    the left-right mirror image is detected on too and averaged."""
    import os

    output = Path(output)
    if output.suffix.lower() != ".json":
        raise ModelCardError(f"{output}: a model card is a .json file")
    if output.exists() and not force:
        raise ModelCardError(f"{output} already exists; pass --force to overwrite it")
    if iterations < 1:
        raise ModelCardError("a two-stage detector needs at least one local refinement pass")
    check_weight(mid_gland_weight, "mid-gland", str(output))
    check_weight(axis_plane_weight, "axis-plane", str(output))
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
            "global": {"card": relative(first)},
            "local": {"cards": [relative(c) for c in locals_], "iterations": int(iterations)},
        },
        "posterior_median_mid_gland": float(mid_gland_weight),
        **({"posterior_median_axis_plane": float(axis_plane_weight)} if axis_plane_weight else {}),
        "mirror_average": bool(mirror_average),
        "description": "global detector on a coarse whole-volume grid, then local refinement on fine patches "
        f"centred on each landmark's estimate{ensemble}, {iterations} pass(es)"
        + (
            f"; the posterior median is then pulled {mid_gland_weight:g} of the way to mid-gland height "
            "(halfway between apex and bladder neck)"
            if mid_gland_weight
            else ""
        )
        + (
            f"; then moved {axis_plane_weight:g} of its distance toward the plane through the apex -> bladder-neck "
            "axis parallel to the volume's sagittal (J-K) direction"
            if axis_plane_weight
            else ""
        )
        + (
            "; all of this also runs on the volume's left-right (first index axis) mirror image and the two answers "
            "are averaged"
            if mirror_average
            else ""
        )
        + "; the stage cards hold grids, normalization, training data and weights checksums",
    }
    output.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    load_card(output).stage_cards("local")
    return output
