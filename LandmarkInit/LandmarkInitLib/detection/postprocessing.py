"""The post-processing steps a two-stage model card may name, resolved through one registry.

A two-stage card lists its steps in order under ``"postprocessing"``, each as ``{"step": NAME, ...parameters}``;
they run after the last local refinement pass. The runtime (detection/detectors.py) and the research tools (card
writer, docs) both read :data:`STEPS`; a card that names an unknown step, misses a parameter or gives a bad value
is refused when it is read.

Two kinds of step:
- point steps move the detected points (L x 3 RAS mm, rows in LANDMARK_LABELS order) given the model grid's
  lateral direction (detection/model_grid.py): ``mid_gland`` (detection/mid_gland.py), ``axis_plane``
  (detection/axis_plane.py);
- ``mirror_average`` (detection/mirror_average.py) runs the stages and the steps listed before it on the volume's
  left-right mirror image too, and averages the two answers; the steps after it act on the average.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from LandmarkInitLib.detection.axis_plane import shrink_posterior_median_to_axis_plane
from LandmarkInitLib.detection.mid_gland import pull_posterior_median_to_mid_gland
from LandmarkInitLib.errors import LandmarkInitError

MIRROR_AVERAGE = "mirror_average"


class PostprocessingError(LandmarkInitError, ValueError):
    """A model card's post-processing list that cannot be run."""


def _weight(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a number between 0 and 1, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Step:
    name: str
    parameters: dict[str, Callable]  # parameter name -> checker (value -> checked value, ValueError if bad)
    apply: Callable | None  # point steps: (points_ras, lateral_ras, **parameters) -> points_ras; None: a view step
    describe: Callable[..., str]


STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step(
            "mid_gland",
            {"weight": _weight},
            lambda points, lateral, weight: pull_posterior_median_to_mid_gland(points, weight),
            lambda weight: (
                f"posterior median pulled {weight:g} of the way to mid-gland height (halfway between apex "
                "and bladder neck)"
            ),
        ),
        Step(
            "axis_plane",
            {"weight": _weight},
            lambda points, lateral, weight: shrink_posterior_median_to_axis_plane(points, lateral, weight),
            lambda weight: (
                f"posterior median moved {weight:g} of its distance toward the plane through the apex -> "
                "bladder-neck axis whose normal is the grid's left-right axis"
            ),
        ),
        Step(
            MIRROR_AVERAGE,
            {},
            None,
            lambda: "all of the above also run on the volume's left-right mirror image, the two answers averaged",
        ),
    )
}


def check_postprocessing(steps, where: str) -> list[dict]:
    """A card's ``postprocessing`` list, checked against the registry (PostprocessingError saying what is wrong
    and what the registry offers); returns it with parameters normalized."""
    if not isinstance(steps, list):
        raise PostprocessingError(f"{where}: postprocessing must be a list of steps, not {type(steps).__name__}")
    checked = []
    for n, entry in enumerate(steps, 1):
        name = entry.get("step") if isinstance(entry, dict) else None
        if name not in STEPS:
            raise PostprocessingError(
                f"{where}: post-processing step {n} is {name!r}, which this version of LandmarkInit does not know "
                f"(known steps: {', '.join(STEPS)}); update LandmarkInit or use a card made for this version"
            )
        step = STEPS[name]
        given = {k: v for k, v in entry.items() if k != "step"}
        if set(given) != set(step.parameters):
            raise PostprocessingError(
                f"{where}: post-processing step {n} ({name}) takes "
                f"{', '.join(step.parameters) or 'no parameters'}, not {', '.join(given) or 'none'}"
            )
        try:
            params = {k: check(given[k]) for k, check in step.parameters.items()}
        except ValueError as e:
            raise PostprocessingError(f"{where}: post-processing step {n} ({name}): {e}") from None
        checked.append({"step": name, **params})
    if sum(entry["step"] == MIRROR_AVERAGE for entry in checked) > 1:
        raise PostprocessingError(f"{where}: {MIRROR_AVERAGE} may appear once in postprocessing")
    return checked


def apply_point_steps(steps: list[dict], points_ras: np.ndarray, lateral_ras: np.ndarray) -> np.ndarray:
    """Run the point steps of ``steps`` (checked, no view step among them) in order."""
    for entry in steps:
        params = {k: v for k, v in entry.items() if k != "step"}
        points_ras = STEPS[entry["step"]].apply(points_ras, lateral_ras, **params)
    return points_ras


def split_at_mirror(steps: list[dict]) -> tuple[list[dict], list[dict], bool]:
    """(steps run on each view, steps run on the averaged answer, whether to mirror-average)."""
    names = [entry["step"] for entry in steps]
    if MIRROR_AVERAGE not in names:
        return list(steps), [], False
    at = names.index(MIRROR_AVERAGE)
    return list(steps[:at]), list(steps[at + 1 :]), True


def describe(steps: list[dict]) -> str:
    """One sentence per step, in order, for card descriptions and docs."""
    return "; ".join(
        STEPS[entry["step"]].describe(**{k: v for k, v in entry.items() if k != "step"}) for entry in steps
    )
