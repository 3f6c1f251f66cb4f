"""Least-squares rigid / similarity fit of matched 3-D point sets (pure numpy).

Arun, Huang & Blostein 1987 (SVD of the cross-covariance) with Umeyama 1991's sign correction, so the
rotation is always proper (det = +1), also for exactly 3 points, where the cross-covariance has rank <= 2
and the plain Arun solution may be a reflection, and for mirrored point sets.

Convention: ``matrix`` maps *moving* points onto *fixed* points, ``fixed_i ~ matrix @ [moving_i, 1]``,
both in the same kind of world coordinates (RAS in this project). For MR-to-US initialization the MR
landmarks are moving and the US landmarks fixed, so ``matrix`` is the MR_to_US "to parent" transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from LandmarkInitLib.errors import InvalidPointsError

FIT_MODES = ("rigid", "similarity")

# sigma_2 / sigma_1 of the centred points below which a set counts as collinear. For a triangle with a
# 40 mm base this is a third point about 0.35 mm off the line: rotation about the line is then undetermined
# at the millimetre level.
MIN_CONDITIONING = 0.01
# RMS distance (mm) of the points from their centroid below which the set has collapsed to one point.
MIN_SPREAD_MM = 1e-6


@dataclass(frozen=True)
class FitResult:
    """Result of :func:`fit_transform`.

    matrix:        4x4 homogeneous matrix mapping moving points onto fixed points.
    rotation:      3x3 proper rotation (det = +1).
    translation:   3-vector.
    scale:         isotropic scale (exactly 1.0 in rigid mode).
    residuals:     per point ``||fixed_i - T(moving_i)||`` (fiducial registration error, FRE), same units as input.
    rms:           root mean square of ``residuals`` (unweighted, over all points).
    conditioning:  min over both sets of sigma_2 / sigma_1 of the weighted, centred points, in [0, 1];
                   0 means collinear (rotation about the line undetermined), 1 means well spread in a plane.
    mode:          "rigid" or "similarity".
    """

    matrix: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: float
    residuals: np.ndarray
    rms: float
    conditioning: float
    mode: str

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "matrix": self.matrix.tolist(),
            "scale": float(self.scale),
            "residuals": [float(r) for r in self.residuals],
            "rms": float(self.rms),
            "conditioning": float(self.conditioning),
        }


def _as_points(points, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=float)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InvalidPointsError(f"{name} must be an N x 3 array of points, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(arr))[:, 0]})
        raise InvalidPointsError(
            f"{name} contain NaN or infinite coordinates (point index {bad}); "
            "check that every landmark has a defined position"
        )
    return arr


def _as_weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.shape != (n,):
        raise InvalidPointsError(f"weights must have one value per point ({n}), got {w.shape[0]}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise InvalidPointsError("weights must be finite and non-negative")
    if np.count_nonzero(w) < 3:
        raise InvalidPointsError(
            f"at least 3 points need a positive weight, got {np.count_nonzero(w)}; give the points a weight above zero"
        )
    return w


def point_set_conditioning(points, weights=None) -> tuple[float, float]:
    """Return ``(spread, ratio)`` of a point set.

    spread: weighted RMS distance from the weighted centroid.
    ratio:  sigma_2 / sigma_1 of the weighted centred points (0 = collinear, 1 = isotropic in a plane).
    """
    p = np.asarray(points, dtype=float)
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    centred = p - w @ p
    sv = np.linalg.svd(np.sqrt(w)[:, None] * centred, compute_uv=False)
    spread = float(np.sqrt(np.sum(sv**2)))
    ratio = float(sv[1] / sv[0]) if sv[0] > 0 else 0.0
    return spread, ratio


def _check_geometry(points: np.ndarray, w: np.ndarray, name: str, min_conditioning: float) -> float:
    spread, ratio = point_set_conditioning(points, w)
    if spread < MIN_SPREAD_MM:
        raise InvalidPointsError(
            f"{name} are coincident (all within {spread:.2g} mm of one spot): a rotation cannot be "
            "determined; place the landmarks at their distinct anatomical positions"
        )
    if ratio < min_conditioning:
        raise InvalidPointsError(
            f"{name} are nearly collinear (conditioning {ratio:.3g} < {min_conditioning:g}): the rotation "
            "about their common line is undetermined; move a point away from the line through the others"
        )
    return ratio


def fit_transform(
    moving,
    fixed,
    *,
    mode: str = "rigid",
    weights=None,
    min_conditioning: float = MIN_CONDITIONING,
) -> FitResult:
    """Least-squares transform T minimizing ``sum_i w_i ||fixed_i - T(moving_i)||^2``.

    mode "rigid": rotation + translation; "similarity": rotation + translation + isotropic scale.
    weights: optional non-negative weight per point (e.g. detector confidence); None = all equal.
    Raises InvalidPointsError for fewer than 3 points, mismatched counts, NaN/inf, coincident or nearly
    collinear sets (see ``MIN_CONDITIONING``).
    """
    if mode not in FIT_MODES:
        raise InvalidPointsError(f"unknown fit mode {mode!r}: use one of {', '.join(FIT_MODES)}")
    x = _as_points(moving, "moving points")
    y = _as_points(fixed, "fixed points")
    if len(x) != len(y):
        raise InvalidPointsError(
            f"point sets differ in size: {len(x)} moving vs {len(y)} fixed points; every moving point "
            "needs exactly one matching fixed point"
        )
    if len(x) < 3:
        raise InvalidPointsError(f"a 3-D fit needs at least 3 matched points, got {len(x)}")
    w = _as_weights(weights, len(x))
    conditioning = min(
        _check_geometry(x, w, "moving points", min_conditioning),
        _check_geometry(y, w, "fixed points", min_conditioning),
    )

    wn = w / w.sum()
    mu_x, mu_y = wn @ x, wn @ y
    xc, yc = x - mu_x, y - mu_y
    cov = (wn[:, None] * yc).T @ xc  # sum_i w_i (y_i - mu_y)(x_i - mu_x)^T
    u, d, vt = np.linalg.svd(cov)
    # Umeyama: flip the axis of the smallest singular value when U V^T would be a reflection.
    s = np.ones(3)
    s[2] = np.sign(np.linalg.det(u) * np.linalg.det(vt))
    rotation = (u * s) @ vt
    if mode == "similarity":
        var_x = float(wn @ np.sum(xc**2, axis=1))
        scale = float(np.dot(d, s) / var_x)
    else:
        scale = 1.0
    translation = mu_y - scale * rotation @ mu_x

    matrix = np.eye(4)
    matrix[:3, :3] = scale * rotation
    matrix[:3, 3] = translation
    residuals = np.linalg.norm(y - apply_transform(matrix, x), axis=1)
    return FitResult(
        matrix=matrix,
        rotation=rotation,
        translation=translation,
        scale=scale,
        residuals=residuals,
        rms=float(np.sqrt(np.mean(residuals**2))),
        conditioning=conditioning,
        mode=mode,
    )


def fit_rigid(moving, fixed, weights=None, **kwargs) -> FitResult:
    return fit_transform(moving, fixed, mode="rigid", weights=weights, **kwargs)


def fit_similarity(moving, fixed, weights=None, **kwargs) -> FitResult:
    return fit_transform(moving, fixed, mode="similarity", weights=weights, **kwargs)


def apply_transform(matrix, points) -> np.ndarray:
    """Apply a 4x4 homogeneous matrix to an N x 3 array (or a single 3-vector) of points."""
    m = np.asarray(matrix, dtype=float)
    p = np.asarray(points, dtype=float)
    return p @ m[:3, :3].T + m[:3, 3]
