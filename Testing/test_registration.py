"""Rigid / similarity landmark fit: exact recovery, references (VTK, ITK), Umeyama's sign fix, errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from LandmarkInitLib.errors import InvalidPointsError
from LandmarkInitLib.fit.landmark_fit import (
    MIN_CONDITIONING,
    MIN_SPREAD_MM,
    apply_transform,
    fit_rigid,
    fit_similarity,
    fit_transform,
    point_set_conditioning,
)
from reference_fits import itk_versor_rigid_fit, vtk_landmark_fit

# vtkLandmarkTransform's Jacobi eigen-solver is accurate to ~1e-6 in rotation entries, i.e. ~1e-4 mm at
# 100 mm from the origin; where the two differ, ours must never be the worse least-squares fit.
VTK_ATOL = 1e-3


def sse(matrix, x, y):
    return float(np.sum((y - apply_transform(matrix, x)) ** 2))


def assert_same_optimum(ours, ref, x, y, atol=VTK_ATOL):
    np.testing.assert_allclose(ours, ref, atol=atol)
    assert sse(ours, x, y) <= sse(ref, x, y) * (1 + 1e-12) + 1e-12


def random_rigid(rng, max_translation=50.0):
    m = np.eye(4)
    m[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    m[:3, 3] = rng.uniform(-max_translation, max_translation, 3)
    return m


def prostate_like_points(rng, n):
    """Points spread over a few centimetres, like landmarks around a gland."""
    return rng.normal(0.0, 20.0, (n, 3)) + rng.uniform(-100, 100, 3)


@pytest.mark.parametrize("n", [3, 4, 7, 50])
def test_noise_free_transform_is_recovered_exactly(rng, n):
    for _ in range(50):
        truth = random_rigid(rng)
        x = prostate_like_points(rng, n)
        fit = fit_rigid(x, apply_transform(truth, x))
        np.testing.assert_allclose(fit.matrix, truth, atol=1e-9)
        assert fit.rms < 1e-9
        assert fit.scale == 1.0


def test_noise_free_similarity_is_recovered_exactly(rng):
    for _ in range(50):
        truth = random_rigid(rng)
        s = rng.uniform(0.5, 2.0)
        truth[:3, :3] *= s
        x = prostate_like_points(rng, 5)
        fit = fit_similarity(x, apply_transform(truth, x))
        np.testing.assert_allclose(fit.matrix, truth, atol=1e-9)
        assert fit.scale == pytest.approx(s, abs=1e-12)


@pytest.mark.parametrize("n", [3, 5, 20])
def test_rigid_matches_vtk_landmark_transform_rigid_body(rng, n):
    for _ in range(100):
        x = prostate_like_points(rng, n)
        y = apply_transform(random_rigid(rng), x) + rng.normal(0, 3.0, (n, 3))
        assert_same_optimum(fit_rigid(x, y).matrix, vtk_landmark_fit(x, y, "rigid"), x, y)


def test_vtk_default_mode_is_similarity_and_differs_from_rigid(rng):
    """Guards the reference itself: a 'rigid' comparison against VTK's default would include scale."""
    x = prostate_like_points(rng, 4)
    y = 1.3 * apply_transform(random_rigid(rng), x)
    import vtk

    assert vtk.vtkLandmarkTransform().GetModeAsString() == "Similarity"
    assert not np.allclose(fit_rigid(x, y).matrix, vtk_landmark_fit(x, y, "similarity"), atol=1e-3)
    np.testing.assert_allclose(fit_similarity(x, y).matrix, vtk_landmark_fit(x, y, "similarity"), atol=VTK_ATOL)


@pytest.mark.parametrize("n", [3, 6])
def test_rigid_matches_itk_landmark_initializer_versor_rigid(rng, n):
    for _ in range(100):
        x = prostate_like_points(rng, n)
        y = apply_transform(random_rigid(rng), x) + rng.normal(0, 3.0, (n, 3))
        np.testing.assert_allclose(fit_rigid(x, y).matrix, itk_versor_rigid_fit(x, y), atol=1e-6)


def test_three_mirrored_points_give_a_proper_rotation_where_plain_arun_reflects():
    x = np.array([[0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [10.0, 30.0, 0.0]])
    y = x * np.array([-1.0, 1.0, 1.0])  # mirror image: no rotation maps x onto y
    # The plain Arun 1987 solution is a reflection here; this is what Umeyama's correction fixes.
    xc, yc = x - x.mean(0), y - y.mean(0)
    u, _, vt = np.linalg.svd(yc.T @ xc)
    assert np.linalg.det(u @ vt) == pytest.approx(-1.0)

    fit = fit_rigid(x, y)
    assert np.linalg.det(fit.rotation) == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(fit.rotation @ fit.rotation.T, np.eye(3), atol=1e-12)
    assert_same_optimum(fit.matrix, vtk_landmark_fit(x, y, "rigid"), x, y)
    # Three points are coplanar, so their mirror image is the same triangle turned over: a proper rotation
    # (180 degrees about an in-plane axis) matches it exactly.
    assert fit.rms < 1e-9


def test_mirrored_random_sets_always_proper(rng):
    for n in (3, 4, 10):
        for _ in range(50):
            x = prostate_like_points(rng, n)
            y = apply_transform(random_rigid(rng), x * np.array([1.0, -1.0, 1.0]))
            fit = fit_rigid(x, y)
            assert np.linalg.det(fit.rotation) == pytest.approx(1.0, abs=1e-9)
            # Mirrored non-planar sets have near-degenerate optima, so compare the objective, not matrices.
            assert sse(fit.matrix, x, y) <= sse(vtk_landmark_fit(x, y, "rigid"), x, y) * (1 + 1e-9) + 1e-9
            if n > 3:
                assert fit.rms > 1e-6  # non-coplanar mirror images cannot be matched by a rotation


def best_similarity_by_search(x, y, rng, starts=20):
    """Least-squares similarity over proper rotations by numerical search (scipy), independent of the SVD path:
    for a rotation R the best scale and translation have closed forms, so only R (a rotation vector) is searched."""
    from scipy.optimize import minimize

    xc, yc = x - x.mean(0), y - y.mean(0)

    def scale_for(rotvec):  # scale >= 0: a negative one would be a point reflection, i.e. an improper rotation
        return max(0.0, float(np.sum(yc * (xc @ Rotation.from_rotvec(rotvec).as_matrix().T)) / np.sum(xc**2)))

    def sse_for(rotvec):
        r = Rotation.from_rotvec(rotvec).as_matrix()
        return float(np.sum((yc - scale_for(rotvec) * xc @ r.T) ** 2))

    best = min(
        (minimize(sse_for, Rotation.random(random_state=rng).as_rotvec(), method="BFGS") for _ in range(starts)),
        key=lambda r: r.fun,
    )
    return scale_for(best.x), best.fun


def test_similarity_scale_of_a_mirrored_set_uses_the_reflection_fix(rng):
    """Mirrored, non-coplanar sets: the best proper rotation leaves a residual, and the best scale is smaller than
    the one a reflection would allow (sum of singular values); it must match a numerical search over rotations."""
    for _ in range(5):
        x = prostate_like_points(rng, 6)
        y = 1.7 * apply_transform(random_rigid(rng), x * np.array([-1.0, 1.0, 1.0]))
        fit = fit_similarity(x, y)
        scale, sse_min = best_similarity_by_search(x, y, rng)
        assert np.linalg.det(fit.rotation) == pytest.approx(1.0, abs=1e-12)
        assert fit.scale == pytest.approx(scale, rel=1e-6)
        assert sse(fit.matrix, x, y) == pytest.approx(sse_min, rel=1e-6)
        assert fit.scale < 1.7 - 0.05  # a reflection would give 1.7 exactly: the fix changes the scale


def test_residuals_and_rms_are_per_point_distances(rng):
    x = prostate_like_points(rng, 4)
    y = apply_transform(random_rigid(rng), x) + rng.normal(0, 2.0, (4, 3))
    fit = fit_rigid(x, y)
    expected = np.linalg.norm(y - apply_transform(fit.matrix, x), axis=1)
    np.testing.assert_allclose(fit.residuals, expected, atol=1e-12)
    assert fit.rms == pytest.approx(np.sqrt(np.mean(expected**2)))


def test_integer_weights_equal_duplicated_points(rng):
    x = prostate_like_points(rng, 5)
    y = apply_transform(random_rigid(rng), x) + rng.normal(0, 3.0, (5, 3))
    w = np.array([1, 3, 2, 1, 4])
    weighted = fit_rigid(x, y, weights=w)
    duplicated = fit_rigid(np.repeat(x, w, axis=0), np.repeat(y, w, axis=0))
    np.testing.assert_allclose(weighted.matrix, duplicated.matrix, atol=1e-9)
    assert not np.allclose(weighted.matrix, fit_rigid(x, y).matrix, atol=1e-3)


def test_zero_weight_ignores_a_point(rng):
    x = prostate_like_points(rng, 4)
    y = apply_transform(random_rigid(rng), x)
    y[3] += 30.0  # an outlier with weight 0 must not pull the fit
    fit = fit_rigid(x, y, weights=[1, 1, 1, 0])
    np.testing.assert_allclose(fit.residuals[:3], 0, atol=1e-9)
    assert fit.residuals[3] > 20


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 12),
    scale=st.floats(1.0, 200.0),
)
def test_property_recovery_order_invariance_and_proper_rotation(seed, n, scale):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, scale, (n, 3))
    truth = random_rigid(rng, 3 * scale)
    y = apply_transform(truth, x)
    assume(point_set_conditioning(x)[1] > 0.05)  # nearly collinear draws are refused, tested elsewhere
    fit = fit_rigid(x, y)
    assert np.linalg.det(fit.rotation) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(fit.matrix[:3, :3], truth[:3, :3], atol=1e-8)
    np.testing.assert_allclose(fit.matrix[:3, 3], truth[:3, 3], atol=1e-8 * scale)
    perm = rng.permutation(n)
    np.testing.assert_allclose(fit_rigid(x[perm], y[perm]).matrix, fit.matrix, atol=1e-8 * scale)


def test_conditioning_reports_spread(rng):
    x = np.array([[0.0, 0, 0], [40, 0, 0], [20, 20, 0]])
    fit = fit_rigid(x, x)
    assert 0.5 < fit.conditioning <= 1.0
    thin = np.array([[0.0, 0, 0], [40, 0, 0], [20, 1.0, 0]])
    assert fit_rigid(thin, thin).conditioning < 0.05


@pytest.mark.parametrize(
    "moving, fixed, message",
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), "at least 3 matched points"),
        (np.ones((3, 2)), np.ones((3, 2)), "N x 3"),
        (np.eye(3), np.eye(4, 3), "differ in size"),
        ([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]], np.eye(3), "NaN or infinite"),
        (np.eye(3), [[0, 0, 0], [np.inf, 0, 0], [0, 1, 0]], "NaN or infinite"),
        ([[5, 5, 5]] * 3, np.eye(3), "coincident"),
        ([[0, 0, 0], [10, 0, 0], [20, 0, 0]], np.eye(3) * 10, "nearly collinear"),
        ([[0, 0, 0], [10, 0, 0], [20, 0.01, 0]], np.eye(3) * 10, "nearly collinear"),
    ],
)
def test_bad_point_sets_are_refused_with_the_reason(moving, fixed, message):
    with pytest.raises(InvalidPointsError, match=message):
        fit_rigid(moving, fixed)


def test_collinear_fixed_set_is_named(rng):
    x = prostate_like_points(rng, 3)
    with pytest.raises(InvalidPointsError, match="fixed points are nearly collinear"):
        fit_rigid(x, [[0, 0, 0], [1, 1, 1], [2, 2, 2]])


def test_threshold_is_the_documented_constant():
    # third point 0.4 mm off a 40 mm line: just above the threshold passes, just below fails
    ok = np.array([[0.0, 0, 0], [40, 0, 0], [20, 0.4, 0]])
    bad = np.array([[0.0, 0, 0], [40, 0, 0], [20, 0.3, 0]])
    assert fit_rigid(ok, ok).conditioning >= MIN_CONDITIONING
    with pytest.raises(InvalidPointsError):
        fit_rigid(bad, bad)


@pytest.mark.parametrize(
    "weights, message",
    [
        ([1, 1], "one value per point"),
        ([1, -1, 1], "non-negative"),
        ([1, np.nan, 1], "finite"),
        ([1, 0, 1], "at least 3 points need a positive weight"),
    ],
)
def test_bad_weights(weights, message):
    x = np.array([[0.0, 0, 0], [40, 0, 0], [20, 20, 0]])
    with pytest.raises(InvalidPointsError, match=message):
        fit_rigid(x, x, weights=weights)


def test_unknown_mode():
    with pytest.raises(InvalidPointsError, match="unknown fit mode"):
        fit_transform(np.eye(3), np.eye(3), mode="affine")


def exactly(message):
    """A pytest.raises pattern that matches the whole message, not a part of it."""
    return "^" + re.escape(message) + "$"


# Four points symmetric about the origin, (+-a, 0, 0) and (0, +-b, 0): with weights w the weighted centred covariance
# is diag(a^2 (w1 + w2), b^2 (w3 + w4), 0) / sum(w), so spread and conditioning have closed forms.
SYMMETRIC = np.array([[4.0, 0, 0], [-4.0, 0, 0], [0, 2.0, 0], [0, -2.0, 0]])


@pytest.mark.parametrize(
    "points, weights, spread, ratio",
    [
        (SYMMETRIC, None, np.sqrt((16 + 4) / 2), 0.5),  # diag(8, 2) -> singular values sqrt(8), sqrt(2)
        (SYMMETRIC, [1, 1, 3, 3], np.sqrt(7.0), np.sqrt(3) / 2),  # diag(32 / 8, 24 / 8) = diag(4, 3)
        (np.vstack([SYMMETRIC, [[50.0, 60, 70]]]), [1, 1, 1, 1, 0], np.sqrt(10.0), 0.5),  # a zero weight drops a point
        (SYMMETRIC / 10, None, np.sqrt(10.0) / 10, 0.5),  # well under a millimetre: the ratio still counts
        (np.zeros((3, 3)), None, 0.0, 0.0),  # one spot: no direction at all
        ([[0.0, 0, 0], [10, 0, 0], [20, 0, 0]], None, np.sqrt(200 / 3), 0.0),  # collinear
    ],
)
def test_point_set_conditioning_exact(points, weights, spread, ratio):
    got_spread, got_ratio = point_set_conditioning(points, weights)
    assert got_spread == pytest.approx(spread, rel=1e-12, abs=1e-15)
    assert got_ratio == pytest.approx(ratio, rel=1e-12, abs=1e-15)


def test_fit_fields_translation_and_dict_exact():
    x = np.array([[0.0, 0, 0], [10, 0, 0], [0, 20, 0], [0, 0, 30]])
    rotation = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # 90 degrees about z
    y = 2.0 * x @ rotation.T + [1.0, 2.0, 3.0]
    fit = fit_similarity(x, y)
    np.testing.assert_allclose(fit.rotation, rotation, atol=1e-12)
    np.testing.assert_allclose(fit.translation, [1.0, 2.0, 3.0], atol=1e-12)
    assert fit.scale == pytest.approx(2.0, rel=1e-12)
    expected = np.eye(4)
    expected[:3, :3], expected[:3, 3] = 2.0 * rotation, [1.0, 2.0, 3.0]
    d = fit.to_dict()
    assert list(d) == ["mode", "matrix", "scale", "residuals", "rms", "conditioning"]
    assert d["mode"] == "similarity"
    np.testing.assert_allclose(d["matrix"], expected, atol=1e-12)
    assert isinstance(d["matrix"], list) and all(isinstance(row, list) for row in d["matrix"])
    assert d["scale"] == fit.scale and type(d["scale"]) is float
    assert d["residuals"] == pytest.approx([0.0] * 4, abs=1e-12) and all(type(r) is float for r in d["residuals"])
    assert d["rms"] == pytest.approx(0.0, abs=1e-12) and type(d["rms"]) is float
    assert d["conditioning"] == fit.conditioning and type(d["conditioning"]) is float
    json.dumps(d)  # plain JSON types


def test_default_mode_is_rigid():
    x = SYMMETRIC + [[0, 0, 1.0], [0, 0, -1.0], [0, 0, 0], [0, 0, 0]]
    fit = fit_transform(x, 1.5 * x)
    assert fit.mode == "rigid" and fit.scale == 1.0 and fit.rms > 0.5


def test_weights_reach_both_geometry_checks_and_the_conditioning():
    # the fourth point is all that keeps either set off a line; weighted 0 it does not count
    line_and_point = np.array([[0.0, 0, 0], [40, 0, 0], [80, 0, 0], [20, 30, 0]])
    spread_out = np.array([[0.0, 0, 0], [40, 0, 0], [0, 40, 0], [20, 30, 10]])
    for moving, fixed, name in [(line_and_point, spread_out, "moving"), (spread_out, line_and_point, "fixed")]:
        fit_rigid(moving, fixed)  # all four points: fine
        with pytest.raises(InvalidPointsError, match=f"^{name} points are nearly collinear"):
            fit_rigid(moving, fixed, weights=[1, 1, 1, 0])
    # conditioning is the smaller of the two sets' weighted ratios: sqrt(3) / 2 and sqrt(3) / 4 (see above)
    fixed = SYMMETRIC * [1.0, 0.5, 1.0]
    assert fit_rigid(SYMMETRIC, fixed, weights=[1, 1, 3, 3]).conditioning == pytest.approx(np.sqrt(3) / 4, rel=1e-12)
    assert fit_rigid(fixed, SYMMETRIC, weights=[1, 1, 3, 3]).conditioning == pytest.approx(np.sqrt(3) / 4, rel=1e-12)


@pytest.mark.parametrize(
    "moving, fixed, message",
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), "a 3-D fit needs at least 3 matched points, got 2"),
        (np.ones((3, 2)), np.ones((3, 3)), "moving points must be an N x 3 array of points, got shape (3, 2)"),
        (np.ones((3, 3)), np.ones(3), "fixed points must be an N x 3 array of points, got shape (3,)"),
        (
            np.eye(3),
            np.eye(4, 3),
            "point sets differ in size: 3 moving vs 4 fixed points; every moving point needs exactly one matching "
            "fixed point",
        ),
        (
            [[0, 0, 0], [np.nan, 0, 0], [10, 0, 0], [0, np.inf, np.nan]],
            np.eye(4, 3),
            "moving points contain NaN or infinite coordinates (point index [1, 3]); check that every landmark has a "
            "defined position",
        ),
        (
            np.eye(4, 3),
            [[0, 0, -np.inf], [1, 0, 0], [0, 1, 0], [0, 0, np.nan]],
            "fixed points contain NaN or infinite coordinates (point index [0, 3]); check that every landmark has a "
            "defined position",
        ),
        (
            np.zeros((3, 3)),
            np.eye(3),
            "moving points are coincident (all within 0 mm of one spot): a rotation cannot be determined; place the "
            "landmarks at their distinct anatomical positions",
        ),
        (
            SYMMETRIC,
            SYMMETRIC * [25.0, 0.25, 1.0],  # (+-100, 0, 0), (0, +-0.5, 0): conditioning 0.5 / 100
            "fixed points are nearly collinear (conditioning 0.005 < 0.01): the rotation about their common line is "
            "undetermined; move a point away from the line through the others",
        ),
    ],
)
def test_refusals_give_the_exact_reason(moving, fixed, message):
    with pytest.raises(InvalidPointsError, match=exactly(message)):
        fit_rigid(moving, fixed)


@pytest.mark.parametrize(
    "weights, message",
    [
        ([1, 1], "weights must have one value per point (4), got 2"),
        ([1, -1, 1, 1], "weights must be finite and non-negative"),
        ([1, 1, np.inf, 1], "weights must be finite and non-negative"),
        ([1, 0, 1, 0], "at least 3 points need a positive weight, got 2; give the points a weight above zero"),
    ],
)
def test_bad_weights_exact_messages(weights, message):
    with pytest.raises(InvalidPointsError, match=exactly(message)):
        fit_rigid(SYMMETRIC, SYMMETRIC, weights=weights)


def test_unknown_mode_exact_message():
    with pytest.raises(InvalidPointsError, match=exactly("unknown fit mode 'affine': use one of rigid, similarity")):
        fit_transform(SYMMETRIC, SYMMETRIC, mode="affine")


def test_weights_as_a_column_are_one_weight_per_point(rng):
    x = prostate_like_points(rng, 4)
    y = apply_transform(random_rigid(rng), x) + rng.normal(0, 3.0, (4, 3))
    flat = fit_rigid(x, y, weights=[1.0, 2.0, 3.0, 4.0])
    column = fit_rigid(x, y, weights=[[1.0], [2.0], [3.0], [4.0]])
    np.testing.assert_array_equal(column.matrix, flat.matrix)


def test_similarity_weights_equal_duplicated_points_and_options_reach_the_fit(rng):
    x = prostate_like_points(rng, 5)
    y = 1.4 * apply_transform(random_rigid(rng), x) + rng.normal(0, 3.0, (5, 3))
    w = np.array([1, 3, 2, 1, 4])
    weighted = fit_similarity(x, y, weights=w)
    duplicated = fit_similarity(np.repeat(x, w, axis=0), np.repeat(y, w, axis=0))
    np.testing.assert_allclose(weighted.matrix, duplicated.matrix, atol=1e-9)
    assert not np.allclose(weighted.matrix, fit_similarity(x, y).matrix, atol=1e-3)
    # keyword options (min_conditioning) are passed on by both short forms
    for fit in (fit_rigid, fit_similarity):
        assert fit(SYMMETRIC, SYMMETRIC, min_conditioning=0.5).conditioning == pytest.approx(0.5)
        with pytest.raises(InvalidPointsError, match=r"\(conditioning 0\.5 < 0\.6\)"):
            fit(SYMMETRIC, SYMMETRIC, min_conditioning=0.6)


def test_a_set_exactly_on_a_geometry_limit_is_accepted():
    """The geometry limits refuse sets strictly below them (spread < MIN_SPREAD_MM, ratio < min_conditioning)."""
    # four points at +-a on two axes: the RMS distance from their centroid is a, which for a = 1e-6 the SVD gives
    # as exactly MIN_SPREAD_MM
    square = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]])
    assert point_set_conditioning(square * MIN_SPREAD_MM)[0] == MIN_SPREAD_MM
    assert fit_rigid(square * MIN_SPREAD_MM, square * MIN_SPREAD_MM).rms == 0.0
    with pytest.raises(InvalidPointsError, match="coincident"):
        fit_rigid(square * np.nextafter(MIN_SPREAD_MM, 0.0), square * np.nextafter(MIN_SPREAD_MM, 0.0))
    thin = np.array([[0.0, 0, 0], [40, 0, 0], [20, 7, 0]])
    limit = point_set_conditioning(thin)[1]
    assert fit_rigid(thin, thin, min_conditioning=limit).conditioning == limit
    with pytest.raises(InvalidPointsError, match="nearly collinear"):
        fit_rigid(thin, thin, min_conditioning=np.nextafter(limit, 1.0))


def test_apply_transform_gives_floating_point_coordinates_for_integer_input():
    shift = np.eye(4, dtype=int)
    shift[:3, 3] = [1, 2, 3]
    moved = apply_transform(shift, [[1, 1, 1], [0, 0, 0]])
    assert moved.dtype == np.float64
    moved += 0.5  # in place, as callers do: integer arrays would silently truncate
    np.testing.assert_array_equal(moved, [[2.5, 3.5, 4.5], [1.5, 2.5, 3.5]])


def test_missing_coordinates_and_weights_given_as_none_get_the_nan_message():
    """A coordinate or weight left as None (e.g. a landmark a script never placed) is converted to NaN and refused
    with the reason, not a numpy TypeError."""
    x = [[0.0, 0.0, 0.0], [40.0, 0.0, 0.0], [20.0, None, 0.0]]
    with pytest.raises(
        InvalidPointsError, match=r"^moving points contain NaN or infinite coordinates \(point index \[2\]\)"
    ):
        fit_rigid(x, np.eye(3) * 10)
    ok = np.array([[0.0, 0, 0], [40, 0, 0], [20, 20, 0]])
    with pytest.raises(InvalidPointsError, match=r"^weights must be finite and non-negative$"):
        fit_rigid(ok, ok, weights=[1.0, None, 1.0])
