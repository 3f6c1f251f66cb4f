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

Thresholds are chosen on validation cases (``calibrate``) and shipped in Resources/Models/qa_thresholds.json; the
false-alarm and miss rates they give on held-out cases are in docs/results/registration/registration.md.
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
        raise LandmarkFileError(f"QA thresholds file {path} not found; run `landmarkinit evaluate --calibrate-qa`")

    def invalid(why: str) -> LandmarkFileError:
        return LandmarkFileError(
            f"QA thresholds file {path} {why}; give a file written by `landmarkinit evaluate --calibrate-qa`"
        )

    try:
        data = json.loads(path.read_bytes())  # json.loads detects the UTF-8 of a JSON file
    except OSError as e:
        raise invalid(f"could not be read ({e.strerror})") from None
    except ValueError as e:  # not JSON, or not text at all
        raise invalid(f"is not JSON ({str(e).splitlines()[0][:80]})") from None
    thresholds = data.get("thresholds") if isinstance(data, dict) else None
    if not isinstance(thresholds, dict):
        raise invalid('has no "thresholds" object')
    unknown = sorted(set(thresholds) - set(FEATURES))
    if unknown:  # a misspelt feature would silently never be checked
        raise invalid(f"names unknown feature(s) {', '.join(unknown)} (known: {', '.join(FEATURES)})")
    for name, value in thresholds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
            raise invalid(f"gives {name} = {json.dumps(value)}, not a finite number")
    return thresholds


def calibrate(feature_rows: list[dict], bad: list[bool], false_alarm_rate: float = 0.05) -> dict:
    """Per feature, the threshold that flags at most ``false_alarm_rate`` of the good cases: the (1 - rate)
    quantile of the good cases' values (or the rate quantile for "low" features)."""
    good = [row for row, b in zip(feature_rows, bad, strict=True) if not b]
    thresholds = {}
    for name, (direction, _) in FEATURES.items():
        values = np.array([row.get(name, np.nan) for row in good], float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            continue
        q = 1.0 - false_alarm_rate if direction == "high" else false_alarm_rate
        thresholds[name] = float(np.quantile(values, q))
    return thresholds


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
