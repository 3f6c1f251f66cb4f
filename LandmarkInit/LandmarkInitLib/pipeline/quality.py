"""Quality control of an initialization (Fang et al. 2023, section 3.2): measurable reasons to distrust a result.

Features of one initialization, each with the direction that is suspicious:
- ``disagreement_mm`` (high): largest distance between a two-stage detector's global and refined point, either
  modality: two estimates of the same landmark that disagree.
- ``spread_mm`` (high): largest heatmap / vote spread of a landmark, either modality.
- ``fre_mm`` (high): RMS fiducial registration error of the rigid fit (MR and US triangles of different shapes).
- ``conditioning`` (low): sigma_2 / sigma_1 of the landmark triangles (nearly collinear landmarks leave a rotation
  undetermined).
- ``us_fan_margin_mm`` (low): smallest distance of a US landmark inside the imaged fan (negative: outside it),
  a sign that the gland is only partly in view.

Thresholds are chosen on evidence (``choose_thresholds``: the smallest set of features that flags every failed
initialization of the calibration cases at a stated false-alarm rate) and shipped in
Resources/Models/qa_thresholds.json, which also records the data, the rule and the figures measured on held-out
cases (docs/results/quality-flags/report.md). ``landmarkinit calibrate-flags`` recalibrates them on a site's cases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from LandmarkInitLib.errors import LandmarkFileError

FEATURES = {  # name: (direction that flags, description)
    "disagreement_mm": ("high", "global and refined detections of a landmark disagree"),
    "spread_mm": ("high", "a detection heatmap is spread out (low confidence)"),
    "fre_mm": ("high", "the fit residual (FRE) is large: MR and US landmark triangles differ in shape"),
    "conditioning": ("low", "the landmarks are nearly collinear: the rotation is poorly determined"),
    "us_fan_margin_mm": ("low", "a US landmark is at or beyond the edge of the imaged fan (gland partly in view)"),
}
QA_FILE = "qa_thresholds.json"
QA_SCHEMA = "landmarkinit-qa-thresholds/2"
# Order of preference when the evidence cannot choose (no failed case, or ties): the fit residual first, the
# feature that caught every failed initialization so far with the fewest false alarms.
PREFERRED = ("fre_mm", "disagreement_mm", "spread_mm", "us_fan_margin_mm", "conditioning")
RECALIBRATE = "landmarkinit calibrate-flags"


def fan_distance_map(us_image):
    """Signed distance (mm) to the edge of the US fan (non-zero voxels), positive inside. Computed once per US
    volume by interactive front ends, which then ask :func:`fan_margin_at` for every new point position."""
    import SimpleITK as sitk

    from LandmarkInitLib.fit.intensity import fan_mask

    return sitk.SignedMaurerDistanceMap(
        fan_mask(us_image), insideIsPositive=True, squaredDistance=False, useImageSpacing=True
    )


def fan_margin_at(distance_map, points_ras) -> np.ndarray:
    """Value of :func:`fan_distance_map` at each RAS point (nearest voxel); -inf outside the volume."""
    from LandmarkInitLib.geometry import ras_to_lps

    out = []
    size = distance_map.GetSize()
    for p in ras_to_lps(np.atleast_2d(points_ras)):
        index = distance_map.TransformPhysicalPointToContinuousIndex([float(v) for v in p])
        if all(-0.5 <= c <= s - 0.5 for c, s in zip(index, size, strict=True)):
            nearest = [int(round(min(max(c, 0), s - 1))) for c, s in zip(index, size, strict=True)]
            out.append(float(distance_map[nearest]))
        else:
            out.append(-float("inf"))  # outside the US volume altogether
    return np.array(out)


def us_fan_margin_mm(us_image, points_ras) -> np.ndarray:
    """Signed distance (mm) of each RAS point inside the US fan (non-zero voxels); negative outside it."""
    return fan_margin_at(fan_distance_map(us_image), points_ras)


def disagreement_mm(detections) -> float:
    """Largest global-vs-refined distance of any landmark over two-stage detections (NaN: none is two-stage)."""
    values = [
        float(np.max(np.linalg.norm(d.points_ras - d.global_points_ras, axis=1)))
        for d in detections
        if d.global_points_ras is not None
    ]
    return max(values) if values else float("nan")


def features(initialization, us_image) -> dict:
    """QA features (see module docstring) of a pipeline.initialize.Initialization."""
    det = [initialization.mr, initialization.us]
    spreads = np.concatenate([np.asarray(d.spread_mm, float) for d in det])
    return {
        "disagreement_mm": disagreement_mm(det),
        "spread_mm": float(np.nanmax(spreads)) if np.any(np.isfinite(spreads)) else float("nan"),
        "fre_mm": float(initialization.fit.rms),
        "conditioning": float(initialization.fit.conditioning),
        "us_fan_margin_mm": float(np.min(us_fan_margin_mm(us_image, initialization.us.points_ras))),
    }


@dataclass
class QualityReport:
    features: dict
    thresholds: dict
    flags: list[str] = field(default_factory=list)

    @property
    def review(self) -> bool:
        return bool(self.flags)

    def as_dict(self) -> dict:
        return {
            "review_recommended": self.review,
            "flags": list(self.flags),
            "features": {k: _json_float(v) for k, v in self.features.items()},
            "thresholds": {k: _json_float(v) for k, v in self.thresholds.items()},
        }


def _json_float(v):
    v = float(v)
    return None if not np.isfinite(v) else v


def assess(feature_values: dict, thresholds: dict, detection_flags=()) -> QualityReport:
    """Compare features with thresholds; detector flags (wrong modality, point outside the volume, ...) are kept."""
    flags = list(detection_flags)
    for name, (direction, text) in FEATURES.items():
        value, limit = feature_values.get(name), thresholds.get(name)
        if value is None or limit is None or np.isnan(value):
            continue
        bad = value > limit if direction == "high" else value < limit
        if bad:
            flags.append(f"{text} ({name} = {value:.3g}, threshold {limit:.3g})")
    return QualityReport(dict(feature_values), dict(thresholds), flags)


def load_thresholds(path=None) -> dict:
    """Thresholds from a calibration file (default: the shipped Resources/Models/qa_thresholds.json)."""
    if path is None:
        from LandmarkInitLib.resources import models_dir

        path = models_dir() / QA_FILE
    path = Path(path)
    if not path.is_file():
        raise LandmarkFileError(f"QA thresholds file {path} not found; write one with `{RECALIBRATE}`")

    def invalid(why: str) -> LandmarkFileError:
        return LandmarkFileError(f"QA thresholds file {path} {why}; give a file written by `{RECALIBRATE}`")

    try:
        data = json.loads(path.read_bytes())  # json.loads detects the UTF-8 of a JSON file
    except OSError as e:
        raise invalid(f"could not be read ({e.strerror})") from None
    except ValueError as e:  # not JSON, or not text at all
        raise invalid(f"is not JSON ({str(e).splitlines()[0][:80]})") from None
    thresholds = data.get("thresholds") if isinstance(data, dict) else None
    if not isinstance(thresholds, dict):
        raise invalid('has no "thresholds" object')
    schema = data.get("schema", QA_SCHEMA)  # files of release 0.1 have none; their "thresholds" read the same
    if schema != QA_SCHEMA:
        raise invalid(f"has schema {json.dumps(schema)}, not {QA_SCHEMA!r} (written by another version?)")
    unknown = sorted(set(thresholds) - set(FEATURES))
    if unknown:  # a misspelt feature would silently never be checked
        raise invalid(f"names unknown feature(s) {', '.join(unknown)} (known: {', '.join(FEATURES)})")
    for name, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise invalid(f"gives {name} = {json.dumps(value)}, not a finite number")
    return thresholds


def conformal_threshold(values, direction: str, rate: float) -> float:
    """Threshold over the good cases' ``values`` whose expected false-alarm rate on new cases from the same
    distribution is at most ``rate`` (split-conformal rule): the k-th most extreme value, k = floor(rate (n + 1)),
    flagging values beyond it; the most extreme value when n is too small for the rate (the expected rate is then
    1 / (n + 1))."""
    values = np.sort(np.asarray(values, float))
    values = values[np.isfinite(values)]
    k = max(int(np.floor(rate * (values.size + 1))), 1)
    return float(values[-k] if direction == "high" else values[k - 1])


def choose_thresholds(
    feature_rows: list[dict], bad: list[bool], false_alarm_rate: float = 0.1, candidates=None, directions=None
) -> tuple[dict, dict]:
    """The smallest set of features, and their thresholds, that flags every bad case while the good cases' expected
    false-alarm rate stays at most ``false_alarm_rate``: for k = 1, 2, ... features, each at the conformal threshold
    for false_alarm_rate / k (so that k features together stay within the rate), the first k at which some set
    flags every bad case; among those sets the one with the fewest false alarms on these cases, then the widest
    margin between the thresholds and the caught bad cases. When no set flags every bad case: the set that flags
    the most. No bad case: the first candidate alone (``PREFERRED`` order). Returns (thresholds, figures of these
    cases)."""
    from itertools import combinations

    directions = directions or {name: d for name, (d, _) in FEATURES.items()}
    order = [*PREFERRED, *directions]
    candidates = [c for c in (candidates or sorted(directions, key=order.index)) if c in directions]
    bad = np.asarray(bad, bool)
    good_rows = [r for r, b in zip(feature_rows, bad, strict=True) if not b]
    values = {c: np.array([r.get(c) for r in feature_rows], float) for c in candidates}
    usable = [c for c in candidates if np.isfinite(np.array([r.get(c) for r in good_rows], float)).any()]
    if not usable:
        raise LandmarkFileError("no QA feature could be measured on the good cases; nothing to calibrate")

    def flags(name, limit):
        v = values[name]
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(v > limit if directions[name] == "high" else v < limit, nan=0).astype(bool)

    def margin(names, limits) -> float:
        """How far beyond its threshold the least clear caught bad case lies, in interquartile ranges of the good
        cases (a threshold that barely catches a failure is a weak one)."""
        beyond = []
        for n in names:
            good = values[n][~bad & np.isfinite(values[n])]
            scale = max(float(np.subtract(*np.quantile(good, [0.75, 0.25]))), 1e-9)
            v = values[n][bad]
            beyond.append(
                np.nan_to_num((v - limits[n]) if directions[n] == "high" else (limits[n] - v), nan=-np.inf) / scale
            )
        per_case = np.max(beyond, axis=0) if beyond else np.array([])
        caught = per_case[per_case > 0]
        return float(caught.min()) if caught.size else 0.0

    best = None
    for k in range(1, len(usable) + 1 if bad.any() else 2):
        for names in combinations(usable, k):
            limits = {
                n: conformal_threshold([r.get(n, np.nan) for r in good_rows], directions[n], false_alarm_rate / k)
                for n in names
            }
            flagged = np.any([flags(n, limits[n]) for n in names], axis=0)
            caught, alarms = int((flagged & bad).sum()), int((flagged & ~bad).sum())
            key = (-caught, k, alarms, -margin(names, limits))
            if best is None or key < best[0]:
                best = (key, limits, flagged)
        if best and -best[0][0] == bad.sum():
            break
    _, limits, flagged = best
    figures = {
        "cases": int(bad.size),
        "failed": int(bad.sum()),
        "failed_flagged": int((flagged & bad).sum()),
        "good_flagged": int((flagged & ~bad).sum()),
        "false_alarm_rate": float((flagged & ~bad).sum() / max((~bad).sum(), 1)),
        "recall": float((flagged & bad).sum() / bad.sum()) if bad.any() else None,
    }
    return limits, figures


def calibrate(feature_rows: list[dict], bad: list[bool], false_alarm_rate: float = 0.1) -> dict:
    """Thresholds of :func:`choose_thresholds` (without its figures)."""
    return choose_thresholds(feature_rows, bad, false_alarm_rate)[0]


def rates(feature_rows: list[dict], bad: list[bool], thresholds: dict) -> dict:
    """False-alarm rate (good cases flagged), miss rate (bad cases not flagged), overall and per feature."""
    flagged = np.array([assess(row, thresholds).review for row in feature_rows])
    bad = np.asarray(bad, bool)

    def rate(mask, of):
        return float(mask[of].mean()) if of.any() else float("nan")

    per_feature = {}
    for name in FEATURES:
        if name not in thresholds:
            continue
        single = np.array([assess(row, {name: thresholds[name]}).review for row in feature_rows])
        per_feature[name] = {"false_alarm_rate": rate(single, ~bad), "detected_bad": rate(single, bad)}
    return {
        "cases": int(len(bad)),
        "bad_cases": int(bad.sum()),
        "false_alarm_rate": rate(flagged, ~bad),
        "miss_rate": rate(~flagged, bad),
        "per_feature": per_feature,
    }
