"""Live re-solve on a real MRML scene: point moves fire PointModifiedEvent, the transform follows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from LandmarkInitLib.fit.landmark_fit import apply_transform, fit_rigid
from LandmarkInitLib.fit.live import LiveRegistration
from LandmarkInitLib.io.markups import create_landmarks_node, move_landmark
from LandmarkInitLib.io.transforms import create_transform_node, transform_matrix
from LandmarkInitLib.landmarks import LANDMARK_LABELS, LandmarkSet

MR = np.array([[0.0, -20.0, -25.0], [0.0, 5.0, 20.0], [0.0, -15.0, 0.0]])


@pytest.fixture
def scene_setup(context):
    truth = np.eye(4)
    truth[:3, :3] = Rotation.from_euler("z", 20, degrees=True).as_matrix()
    truth[:3, 3] = [5, -3, 12]
    mr = create_landmarks_node(context.scene, LandmarkSet(LANDMARK_LABELS, MR), "mr")
    us = create_landmarks_node(context.scene, LandmarkSet(LANDMARK_LABELS, apply_transform(truth, MR)), "us")
    t = create_transform_node(context.scene)
    return context, mr, us, t, truth


def current(node):
    return np.array([node.GetNthControlPointPosition(i) for i in range(node.GetNumberOfControlPoints())])


def test_initial_solve_and_every_move_updates_the_transform(scene_setup):
    context, mr, us, t, truth = scene_setup
    calls = []
    live = LiveRegistration(mr, us, t)
    live.add_listener(lambda lr: calls.append(lr.error))
    np.testing.assert_allclose(transform_matrix(t), truth, atol=1e-9)
    assert live.error is None and live.result.rms < 1e-9

    us.SetNthControlPointPosition(2, *(apply_transform(truth, MR[2]) + [0, 4.0, 0]))
    expected = fit_rigid(current(mr), current(us)).matrix
    np.testing.assert_allclose(transform_matrix(t), expected, atol=1e-12)
    assert not np.allclose(expected, truth, atol=0.1)
    assert live.residuals()["posterior_median"] > 1.0
    assert calls == [None]

    move_landmark(mr, "apex", MR[0] + [1.0, 0, 0])
    np.testing.assert_allclose(transform_matrix(t), fit_rigid(current(mr), current(us)).matrix, atol=1e-12)
    assert len(calls) == 2
    live.detach()


def test_unfittable_state_keeps_last_transform_and_says_why(scene_setup):
    context, mr, us, t, truth = scene_setup
    with LiveRegistration(mr, us, t) as live:
        us.RemoveNthControlPoint(2)
        assert "missing posterior_median" in live.error
        np.testing.assert_allclose(transform_matrix(t), truth, atol=1e-9)  # untouched
        import vtk

        us.AddControlPoint(vtk.vtkVector3d(*apply_transform(truth, MR[2])), "posterior_median")
        assert live.error is None
        np.testing.assert_allclose(transform_matrix(t), truth, atol=1e-9)
        # dragging a point onto the line through the others
        mr.SetNthControlPointPosition(2, *((MR[0] + MR[1]) / 2))
        assert "nearly collinear" in live.error


def test_detach_stops_updates(scene_setup):
    context, mr, us, t, truth = scene_setup
    live = LiveRegistration(mr, us, t)
    n = live.update_count
    live.detach()
    assert not live.attached
    us.SetNthControlPointPosition(0, 50, 50, 50)
    assert live.update_count == n
    np.testing.assert_allclose(transform_matrix(t), truth, atol=1e-9)


def test_removing_a_node_from_the_scene_detaches(scene_setup):
    context, mr, us, t, truth = scene_setup
    live = LiveRegistration(mr, us, t)
    context.scene.RemoveNode(mr)
    assert not live.attached
    us.SetNthControlPointPosition(0, 50, 50, 50)  # must not raise or touch the transform
    np.testing.assert_allclose(transform_matrix(t), truth, atol=1e-9)


def test_disabled_auto_update_waits_for_an_explicit_update(scene_setup):
    context, mr, us, t, truth = scene_setup
    live = LiveRegistration(mr, us, t, enabled=False)
    np.testing.assert_array_equal(transform_matrix(t), np.eye(4))
    us.SetNthControlPointPosition(0, *(apply_transform(truth, MR[0]) + 1))
    np.testing.assert_array_equal(transform_matrix(t), np.eye(4))
    live.update()
    np.testing.assert_allclose(transform_matrix(t), fit_rigid(current(mr), current(us)).matrix, atol=1e-12)
    live.detach()


def test_locked_points_count_in_the_fit_like_any_other(scene_setup):
    """Locking stops the user from dragging a point; it does not take the point out of the fit."""
    context, mr, us, t, truth = scene_setup
    mr.SetNthControlPointLocked(1, True)
    us.SetLocked(True)
    with LiveRegistration(mr, us, t) as live:
        mr.SetNthControlPointPosition(0, *(MR[0] + [0.0, 3.0, 0.0]))
        assert live.labels == LANDMARK_LABELS
        np.testing.assert_allclose(transform_matrix(t), fit_rigid(current(mr), current(us)).matrix, atol=1e-12)
        assert live.residuals()["bladder_neck"] > 0.1  # the locked point pulls the fit and carries a residual


@pytest.mark.parametrize("scale", [0.8, 1.25])
def test_similarity_mode_recovers_the_scale_and_rigid_mode_does_not(context, scale):
    truth = np.eye(4)
    truth[:3, :3] = scale * Rotation.from_euler("xz", [15, -30], degrees=True).as_matrix()
    truth[:3, 3] = [4.0, 7.0, -2.0]
    mr = create_landmarks_node(context.scene, LandmarkSet(LANDMARK_LABELS, MR), "mr")
    us = create_landmarks_node(context.scene, LandmarkSet(LANDMARK_LABELS, apply_transform(truth, MR)), "us")
    t = create_transform_node(context.scene)
    with LiveRegistration(mr, us, t, mode="similarity") as live:
        np.testing.assert_allclose(transform_matrix(t), truth, atol=1e-9)
        assert live.result.scale == pytest.approx(scale, abs=1e-12) and live.result.mode == "similarity"
        live.mode = "rigid"
        live.update()
        assert live.result.scale == 1.0
        np.testing.assert_allclose(np.linalg.det(transform_matrix(t)[:3, :3]), 1.0, atol=1e-12)
        assert live.result.rms > 1.0  # a rigid fit cannot absorb the scale


def test_weights_by_label(scene_setup):
    context, mr, us, t, truth = scene_setup
    us.SetNthControlPointPosition(0, *(apply_transform(truth, MR[0]) + [0, 0, 5.0]))
    weights = {"apex": 0.2, "bladder_neck": 1.0, "posterior_median": 1.0}
    with LiveRegistration(mr, us, t, weights=weights):
        expected = fit_rigid(current(mr), current(us), weights=[0.2, 1.0, 1.0]).matrix
        np.testing.assert_allclose(transform_matrix(t), expected, atol=1e-12)
        assert not np.allclose(expected, fit_rigid(current(mr), current(us)).matrix, atol=1e-3)


def test_state_before_the_first_update(scene_setup):
    context, mr, us, t, truth = scene_setup
    live = LiveRegistration(mr, us, t, enabled=False)
    assert live.result is None and live.labels == () and live.error is None and live.update_count == 0
    assert live.residuals() == {} and live.attached
    live.update()
    assert live.update_count == 1 and live.labels == LANDMARK_LABELS
    us.SetNthControlPointPosition(0, *(apply_transform(truth, MR[0]) + 1))  # not enabled: no re-fit
    assert live.update_count == 1
    live.update()
    live.update()
    assert live.update_count == 3
    live.detach()


def test_counts_only_successful_fits_and_reports_labels_in_the_expected_order(context):
    # the MR points were placed in another order: the fit pairs them by label and reports the expected order
    order = ("posterior_median", "apex", "bladder_neck")
    shuffled = LandmarkSet(LANDMARK_LABELS, MR).ordered(order)
    mr = create_landmarks_node(context.scene, LandmarkSet(order, shuffled), "mr")
    us = create_landmarks_node(context.scene, LandmarkSet(LANDMARK_LABELS, MR + [0.0, 0.0, 1.0]), "us")
    us.SetNthControlPointPosition(0, *(MR[0] + [0.0, 2.0, 1.0]))
    t = create_transform_node(context.scene)
    with LiveRegistration(mr, us, t) as live:
        assert live.update_count == 1 and live.labels == LANDMARK_LABELS
        expected = fit_rigid(MR, current(us))
        assert list(live.residuals()) == list(LANDMARK_LABELS)
        np.testing.assert_allclose(list(live.residuals().values()), expected.residuals, atol=1e-12)
        us.RemoveNthControlPoint(2)  # unfittable: not counted
        assert live.update_count == 1 and live.error is not None


def test_an_extra_point_is_named_in_the_node_it_is_in(scene_setup):
    context, mr, us, t, truth = scene_setup
    import vtk

    with LiveRegistration(mr, us, t) as live:
        mr.AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0), "verumontanum")
        assert live.error == (
            "markups 'MR landmarks': unknown label(s) verumontanum; expected exactly the labels apex, bladder_neck, "
            "posterior_median"
        )
        mr.RemoveNthControlPoint(3)
        us.AddControlPoint(vtk.vtkVector3d(1.0, 2.0, 3.0), "verumontanum")
        assert live.error.startswith("markups 'US landmarks': unknown label(s) verumontanum")


def test_any_labels_mode(context):
    labels = ("p1", "p2", "p3", "p4")
    x = np.array([[0.0, 0, 0], [30, 0, 0], [0, 40, 0], [0, 0, 50]])
    truth = np.eye(4)
    truth[:3, :3] = Rotation.from_euler("y", 30, degrees=True).as_matrix()
    mr = create_landmarks_node(context.scene, LandmarkSet(labels, x), "mr")
    us = create_landmarks_node(context.scene, LandmarkSet(labels[::-1], apply_transform(truth, x)[::-1]), "us")
    t = create_transform_node(context.scene)
    with LiveRegistration(mr, us, t, expected_labels=None) as live:
        assert live.error is None and live.labels == labels  # the moving node's order
        np.testing.assert_allclose(transform_matrix(t), truth, atol=1e-9)


def test_labels_without_a_weight_weigh_one(scene_setup):
    context, mr, us, t, truth = scene_setup
    us.SetNthControlPointPosition(0, *(apply_transform(truth, MR[0]) + [0, 0, 5.0]))
    with LiveRegistration(mr, us, t, weights={"apex": 0.25}):
        expected = fit_rigid(current(mr), current(us), weights=[0.25, 1.0, 1.0]).matrix
        np.testing.assert_allclose(transform_matrix(t), expected, atol=1e-12)
