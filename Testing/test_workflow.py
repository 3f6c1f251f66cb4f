"""The interactive workflow (workflow.LandmarkSession) that the Slicer module and the browser app call, on a real
MRML scene (slicer-core) with the shipped detectors on the synthetic sample case."""

from __future__ import annotations

import numpy as np
import pytest

from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError, LockedPointError
from LandmarkInitLib.fit.landmark_fit import fit_rigid, fit_similarity
from LandmarkInitLib.io.markups import find_point_index, landmarks_from_node, read_landmarks_file
from LandmarkInitLib.io.transforms import load_transform, transform_matrix
from LandmarkInitLib.io.volumes import load_volume
from LandmarkInitLib.landmarks import LANDMARK_LABELS, MODALITY_COLORS
from LandmarkInitLib.pipeline.initialize import Detectors
from LandmarkInitLib.resources import DETECTOR_CHOICES, detector_card, sample_case_dir
from LandmarkInitLib.session import (
    PREDICTION_ATTRIBUTE,
    Cancelled,
    LandmarkSession,
    UnsavedEditsError,
    detect_and_fit,
    missing_inputs,
)


@pytest.fixture(scope="module")
def detectors():
    return Detectors.open(backend="onnx")


@pytest.fixture
def volumes(context):
    case = sample_case_dir()
    return load_volume(context, case / "mr.nrrd", "MR"), load_volume(context, case / "us.nrrd", "US")


@pytest.fixture
def session(context, volumes, detectors):
    s = LandmarkSession(context, *volumes, detectors=detectors)
    s.detect()
    yield s
    s.close()


def position(node, label):
    p = [0.0, 0.0, 0.0]
    node.GetNthControlPointPosition(find_point_index(node, label), p)
    return np.array(p)


def drag(node, label, delta):
    """What a mouse drag does to the node: start-interaction event, then point moves."""
    node.InvokeEvent(node.PointStartInteractionEvent)
    p = position(node, label)
    for step in (0.5, 1.0):
        node.SetNthControlPointPosition(find_point_index(node, label), *(p + step * np.asarray(delta, float)))
    node.InvokeEvent(node.PointEndInteractionEvent)


def expected_fit(session):
    mr, us = landmarks_from_node(session.mr_node), landmarks_from_node(session.us_node)
    w = [session.live.weights[label] for label in mr.labels]
    return fit_rigid(mr.points_ras, us.points_ras, weights=w)


def test_missing_inputs_say_what_to_select(context, volumes):
    mr, us = volumes
    assert missing_inputs(None, us) == "Select the MR volume."
    assert missing_inputs(mr, None) == "Select the US volume."
    assert "same volume" in missing_inputs(mr, mr)
    empty = context.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    assert "has no image data" in missing_inputs(mr, empty)
    assert missing_inputs(mr, us) is None
    with pytest.raises(LandmarkInitError, match="Select the US volume"):
        LandmarkSession(context, mr, None).detect()


def test_detect_makes_labelled_coloured_nodes_and_the_weighted_fit(session, detectors):
    for modality, node in (("mr", session.mr_node), ("us", session.us_node)):
        assert [node.GetNthControlPointLabel(i) for i in range(3)] == list(LANDMARK_LABELS)
        assert np.allclose(node.GetDisplayNode().GetSelectedColor(), MODALITY_COLORS[modality])
        det = session.detections[modality]
        assert np.allclose(landmarks_from_node(node).points_ras, det.points_ras, atol=1e-9)
        for label, p in zip(det.labels, det.points_ras, strict=True):
            assert np.allclose(session.prediction(modality, label), p, atol=1e-12)
    mr, us = session.detections["mr"], session.detections["us"]
    # spread weighting: each landmark weighs 1 / (s_MR^2 + s_US^2), the inverse of its summed detector variances
    weights = [1.0 / (a**2 + b**2) for a, b in zip(mr.spread_mm, us.spread_mm, strict=True)]
    assert max(weights) > 1.2 * min(weights)  # unequal, so the weighting is visible in the fit
    fit = fit_rigid(mr.points_ras, us.points_ras, weights=weights)
    assert not np.allclose(fit.matrix, fit_rigid(mr.points_ras, us.points_ras).matrix, atol=1e-6)
    assert np.allclose(session.matrix, fit.matrix, atol=1e-9)
    rows = session.rows()
    assert [r.fre_mm for r in rows] == pytest.approx(list(fit.residuals))
    assert session.rms_mm == pytest.approx(fit.rms)
    assert [r.spread_us_mm for r in rows] == pytest.approx(list(us.spread_mm))
    assert not any(r.edited_mr or r.edited_us for r in rows)
    assert session.backend_used == "onnx" and "onnx" in session.status and "RMS residual" in session.status


def test_progress_is_reported_and_cancel_leaves_the_scene_unchanged(context, volumes, detectors):
    fractions = []
    s = LandmarkSession(context, *volumes, detectors=detectors)
    s.detect(progress=lambda f, m: fractions.append(f))
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    steps = len(fractions) - 1  # the last call ("Done") comes after the scene changed
    for cancel_at in range(steps):
        before = context.scene.GetNumberOfNodes()
        calls = []

        def progress(f, m, cancel_at=cancel_at, calls=calls):
            calls.append(f)
            if len(calls) > cancel_at:
                raise Cancelled("cancelled")

        fresh = LandmarkSession(context, *volumes, detectors=detectors)
        with pytest.raises(Cancelled):
            fresh.detect(progress=progress)
        assert context.scene.GetNumberOfNodes() == before
        assert fresh.mr_node is None and fresh.transform_node is None


def test_dragging_a_point_refits_live_and_undo_restores_it(session):
    before = session.matrix.copy()
    original = position(session.us_node, "apex")
    updates = []
    session.add_listener(lambda s: updates.append(s.rms_mm))
    drag(session.us_node, "apex", [4.0, 0.0, 0.0])
    assert np.allclose(position(session.us_node, "apex"), original + [4, 0, 0])
    assert len(updates) == 2  # one re-fit per point move
    assert np.allclose(session.matrix, expected_fit(session).matrix, atol=1e-9)
    assert not np.allclose(session.matrix, before, atol=1e-3)
    row = session.rows()[0]
    assert row.edited_us and not row.edited_mr
    assert session.edited_points() == [("us", "apex")]
    assert session.undo() == "move of US landmarks"
    assert np.allclose(position(session.us_node, "apex"), original, atol=1e-12)
    assert np.allclose(session.matrix, before, atol=1e-9)
    assert session.edited_points() == [] and session.undo() is None


def test_detection_does_not_overwrite_edits_without_consent_and_never_moves_locked_points(session):
    drag(session.us_node, "apex", [3.0, 0.0, 0.0])
    drag(session.mr_node, "bladder_neck", [0.0, 2.0, 0.0])
    edited_us, edited_mr = position(session.us_node, "apex"), position(session.mr_node, "bladder_neck")
    with pytest.raises(UnsavedEditsError, match="US Apex") as e:
        session.detect()
    assert "MR Bladder neck" in str(e.value)
    assert np.allclose(position(session.us_node, "apex"), edited_us)
    session.set_locked("mr", "bladder_neck", True)
    with pytest.raises(UnsavedEditsError):
        session.detect()  # the unlocked US edit still needs consent
    nodes = (session.mr_node, session.us_node)
    session.detect(overwrite_edits=True)
    assert (session.mr_node, session.us_node) == nodes  # updated in place, not duplicated
    assert np.allclose(position(session.us_node, "apex"), session.prediction("us", "apex"))
    assert np.allclose(position(session.mr_node, "bladder_neck"), edited_mr)  # locked: kept
    assert any("locked" in m for m in session.messages)
    assert session.edited_points() == [("mr", "bladder_neck")]
    session.detect()  # a locked edit alone does not need consent


def test_reset_and_lock(session):
    drag(session.mr_node, "apex", [0.0, 0.0, 5.0])
    session.reset_landmark("mr", "apex")
    assert np.allclose(position(session.mr_node, "apex"), session.prediction("mr", "apex"))
    drag(session.mr_node, "apex", [0.0, 0.0, 5.0])
    moved = position(session.mr_node, "apex")
    session.set_locked("mr", "apex", True)
    assert session.rows()[0].locked_mr
    with pytest.raises(LockedPointError, match="locked"):
        session.reset_landmark("mr", "apex")
    drag(session.us_node, "apex", [1.0, 1.0, 0.0])
    assert session.reset_all() == ["mr:apex"]
    assert np.allclose(position(session.mr_node, "apex"), moved)
    assert np.allclose(position(session.us_node, "apex"), session.prediction("us", "apex"))
    assert session.undo() == "reset of US landmarks"
    assert not np.allclose(position(session.us_node, "apex"), session.prediction("us", "apex"))


def test_a_point_that_cannot_be_fitted_keeps_the_last_transform_and_says_why(session):
    before = session.matrix.copy()
    session.us_node.RemoveNthControlPoint(find_point_index(session.us_node, "posterior_median"))
    assert np.allclose(session.matrix, before)
    assert session.status.startswith("Transform not updated") and "posterior_median" in session.status
    with pytest.raises(LandmarkInitError, match="fix them before saving"):
        session.save("unused")
    session.detect(overwrite_edits=True)  # the deleted point counts as edited; detection puts it back
    assert session.live.error is None and np.allclose(session.matrix, before, atol=1e-9)


def test_apply_to_mr_and_harden_a_copy_leave_the_mr_volume_data_alone(context, session):
    mr = session.mr_volume
    ijk_before = transform_matrix_of_volume(mr)
    voxels_before = mr.GetImageData().GetScalarRange()
    session.apply_to_mr()
    assert session.applied
    assert mr.GetParentTransformNode().GetID() == session.transform_node.GetID()
    assert session.mr_node.GetParentTransformNode().GetID() == session.transform_node.GetID()
    # node coordinates are unchanged by the parent: the fit does not move
    assert np.allclose(session.matrix, expected_fit(session).matrix, atol=1e-9)
    world = session.jump_target("mr", "apex")
    m = session.matrix
    assert np.allclose(world, m[:3, :3] @ position(session.mr_node, "apex") + m[:3, 3])
    copy = session.harden_mr_copy()
    assert np.allclose(transform_matrix_of_volume(copy), session.matrix @ ijk_before, atol=1e-9)
    assert np.allclose(transform_matrix_of_volume(mr), ijk_before)
    assert mr.GetImageData().GetScalarRange() == voxels_before
    session.remove_from_mr()
    assert mr.GetParentTransformNode() is None and not session.applied
    other = context.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "user transform")
    mr.SetAndObserveTransformNodeID(other.GetID())
    with pytest.raises(LandmarkInitError, match="already under the transform 'user transform'"):
        session.apply_to_mr()
    assert mr.GetParentTransformNode().GetID() == other.GetID()


def transform_matrix_of_volume(node):
    import vtk

    from LandmarkInitLib.geometry import numpy_from_vtk_matrix

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return numpy_from_vtk_matrix(m)


def test_save_writes_files_slicer_reads_back_and_refuses_to_overwrite(context, session, tmp_path):
    drag(session.us_node, "bladder_neck", [0.0, -2.0, 1.0])
    paths = session.save(tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["mr_landmarks.mrk.json", "mr_to_us.h5", "us_landmarks.mrk.json"]
    _, us = read_landmarks_file(context, paths["us_landmarks.mrk.json"])
    assert np.allclose(us.points_ras, landmarks_from_node(session.us_node).points_ras, atol=1e-6)
    _, mr = read_landmarks_file(context, paths["mr_landmarks.mrk.json"])
    assert np.allclose(mr.points_ras, landmarks_from_node(session.mr_node).points_ras, atol=1e-6)
    loaded = load_transform(context, paths["mr_to_us.h5"])
    assert np.allclose(transform_matrix(loaded), session.matrix, atol=1e-9)
    content = paths["mr_to_us.h5"].read_bytes()
    drag(session.us_node, "apex", [5.0, 0.0, 0.0])
    with pytest.raises(LandmarkFileError, match="already holds"):
        session.save(tmp_path / "out")
    assert paths["mr_to_us.h5"].read_bytes() == content
    session.save(tmp_path / "out", force=True)
    assert np.allclose(transform_matrix(load_transform(context, paths["mr_to_us.h5"])), session.matrix, atol=1e-9)


def test_a_reopened_session_finds_predictions_and_weights_on_the_nodes(context, session):
    weights = dict(session.live.weights)
    drag(session.us_node, "apex", [2.0, 2.0, 0.0])
    session.close()
    # the state a saved and reloaded scene gives back: node attributes are written into the MRML scene file
    context.scene.SetSaveToXMLString(1)
    context.scene.Commit()
    assert PREDICTION_ATTRIBUTE + "apex" in context.scene.GetSceneXMLString()
    again = LandmarkSession(
        context,
        session.mr_volume,
        session.us_volume,
        mr_node=session.mr_node,
        us_node=session.us_node,
        transform_node=session.transform_node,
    )
    assert again.live.weights == pytest.approx(weights)
    assert again.edited_points() == [("us", "apex")]
    again.reset_landmark("us", "apex")
    assert np.allclose(again.matrix, session.matrix) and again.edited_points() == []
    again.close()


def test_quality_follows_the_points(session):
    assert all("fan" not in flag and "fit residual" not in flag for flag in session.qa_flags)
    us = session.us_volume
    bounds = [0.0] * 6
    us.GetRASBounds(bounds)
    session.us_node.SetNthControlPointPosition(0, bounds[1] + 20.0, bounds[3] + 20.0, bounds[5] + 20.0)
    report = session.quality()
    assert report.features["us_fan_margin_mm"] == -np.inf
    assert any("fit residual" in flag for flag in report.flags)  # the shipped thresholds flag on the FRE


def test_auto_update_off_waits_for_update(session):
    session.auto_update = False
    before = session.matrix.copy()
    drag(session.us_node, "apex", [3.0, 0.0, 0.0])
    assert np.allclose(session.matrix, before)
    session.update()
    assert np.allclose(session.matrix, expected_fit(session).matrix, atol=1e-9)
    session.auto_update = True
    session.mode = "similarity"
    assert "Similarity" in session.status and "scale" in session.status
    mr, us = landmarks_from_node(session.mr_node), landmarks_from_node(session.us_node)
    w = [session.live.weights[label] for label in mr.labels]
    similarity = fit_similarity(mr.points_ras, us.points_ras, weights=w)
    assert np.allclose(session.matrix, similarity.matrix, atol=1e-9)
    assert f"scale {similarity.scale:.3f}" in session.status and abs(similarity.scale - 1.0) > 1e-4
    with pytest.raises(LandmarkInitError, match="unknown fit mode"):
        session.mode = "affine"


@pytest.mark.parametrize("choice", sorted(DETECTOR_CHOICES))
def test_every_offered_detector_ships_for_both_modalities(choice):
    for modality in ("mr", "us"):
        assert detector_card(choice, modality).is_file()


def test_detect_and_fit_one_call_with_a_named_detector(context, volumes):
    session = detect_and_fit(context, *volumes, detector="g2l-global", backend="onnx")
    assert session.detections["mr"].model.startswith("mr_landmarks_g2l-global")
    assert session.transform_node is not None and session.live.error is None
    with pytest.raises(LandmarkFileError, match="unknown detector 'nope'"):
        detect_and_fit(context, *volumes, detector="nope")
    nodes = (session.mr_node, session.us_node, session.transform_node)
    session.detector = "two-stage"  # a new choice takes effect at the next detection, on the same nodes
    session.detect(overwrite_edits=True)
    assert session.detections["mr"].model == "mr_landmarks_two-stage" and session.backend_used == "onnx"
    assert (session.mr_node, session.us_node, session.transform_node) == nodes
    session.close()
