"""The interactive workflow on one MR/US pair in an MRML scene, shared by the Slicer module (LandmarkInit.py) and
the browser app: detect -> labelled markups nodes -> live rigid fit into MR_to_US -> nudge / reset / lock / undo
-> apply to the MR volume, harden a copy, save.

Conventions (RAS throughout):
- Detection runs on each volume node's own IJK-to-RAS grid; a parent transform of a volume is not applied.
- Point positions are markups *node* coordinates (RAS of the volume they were detected on), so they stay valid
  when the MR landmarks node is placed under MR_to_US to be displayed over the US.
- MR_to_US holds the "to parent" matrix that maps MR RAS onto US RAS.

Nothing the user edited is lost: detection refuses to overwrite edited points unless told to
(``overwrite_edits=True``), locked points are never moved, every point's prediction is stored on its node (so
"reset" works after the scene was saved and reloaded), and moves can be undone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from LandmarkInitLib.detection.models_folder import (
    check_models_folder,
    describe_model,
    model_identity,
    models_folder_or_none,
)
from LandmarkInitLib.errors import LandmarkFileError, LandmarkInitError, LandmarkLabelError
from LandmarkInitLib.fit.live import LiveRegistration
from LandmarkInitLib.io.markups import create_landmarks_node, find_point_index, style_landmarks_node
from LandmarkInitLib.io.output_files import SAVED_FILES
from LandmarkInitLib.landmarks import LANDMARK_LABELS, LANDMARKS, MODALITY_DISPLAY_NAMES, LandmarkSet, check_modality
from LandmarkInitLib.pipeline.initialize import DEFAULT_WEIGHTING, Detectors, ProgressCallback, initialize
from LandmarkInitLib.resources import DEFAULT_DETECTOR, detector_card

# Node attributes that make a detection survive a scene save/reload.
PREDICTION_ATTRIBUTE = "LandmarkInit.Prediction."  # + label: "R,A,S" of the detector's point (node coordinates)
SPREAD_ATTRIBUTE = "LandmarkInit.Spread."  # + label: heatmap / vote spread (mm)
MODEL_ATTRIBUTE = "LandmarkInit.Model"
# A point further than this from its prediction counts as edited (well below any visible drag).
EDIT_TOLERANCE_MM = 1e-3


class Cancelled(LandmarkInitError):
    """The user cancelled a detection; nothing in the scene was changed."""


class UnsavedEditsError(LandmarkInitError):
    """Detection would overwrite points the user edited."""


def missing_inputs(mr_volume, us_volume) -> str | None:
    """What the user still has to select before detection can run (None when nothing is missing)."""
    if mr_volume is None:
        return "Select the MR volume."
    if us_volume is None:
        return "Select the US volume."
    if mr_volume.GetID() == us_volume.GetID():
        return "The MR and US selections are the same volume: select the ultrasound volume as US."
    for node, what in ((mr_volume, "MR"), (us_volume, "US")):
        image = node.GetImageData()
        if image is None:
            return f"The {what} volume {node.GetName()!r} has no image data: load the volume again."
        if min(image.GetDimensions()) < 2:
            return f"The {what} volume {node.GetName()!r} is not 3-D (size {image.GetDimensions()})."
    return None


@dataclass
class LandmarkRow:
    """One landmark of the results table."""

    label: str
    name: str
    fre_mm: float | None  # residual of the current fit (None while the fit is invalid)
    spread_mr_mm: float | None  # detector confidence: heatmap / vote spread, None for hand-placed points
    spread_us_mm: float | None
    weight: float | None
    locked_mr: bool
    locked_us: bool
    edited_mr: bool
    edited_us: bool

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class LandmarkSession:
    """One MR/US pair: the landmarks nodes, the MR_to_US node, the live fit and the user's edits.

    ``context`` is a scene.SlicerContext (``current_context()`` in Slicer, ``create_context()`` elsewhere).
    Existing nodes (e.g. from the module's parameter node after a scene reload) can be handed in; otherwise
    :meth:`detect` creates them.
    """

    def __init__(
        self,
        context,
        mr_volume,
        us_volume,
        *,
        detector: str = DEFAULT_DETECTOR,
        detectors: Detectors | None = None,
        backend: str = "auto",
        weighting: str = DEFAULT_WEIGHTING,
        mode: str = "rigid",
        auto_update: bool = True,
        mr_node=None,
        us_node=None,
        transform_node=None,
        qa_thresholds: dict | None = None,
        threads: int | None = None,
        models_folder=None,
    ):
        self.context, self.mr_volume, self.us_volume = context, mr_volume, us_volume
        self._detector, self._backend, self.threads = detector, backend, threads
        self.weighting, self._mode, self._auto_update = weighting, mode, auto_update
        self.mr_node, self.us_node, self.transform_node = mr_node, us_node, transform_node
        self._detectors = detectors
        self._models_folder = models_folder_or_none(models_folder)
        self._qa_thresholds = qa_thresholds
        self.detections: dict = {}  # modality -> runtime.Detection of the last run of this session
        self.model_identities: dict = {}  # modality -> models_folder.model_identity of the model that made it
        self.live: LiveRegistration | None = None
        self.messages: list[str] = []  # notes of the last action (e.g. locked points left in place)
        self._listeners: list[Callable[[LandmarkSession], None]] = []
        self._undo: list[tuple[str, str, dict]] = []  # (description, modality, {label: position}) before a change
        self._observations: list[tuple[object, int]] = []
        self._fan_map = None
        self._weights: dict | None = None
        if self.mr_node is not None and self.us_node is not None:
            self._start_live()

    # --- detection -------------------------------------------------------------------------------------

    @property
    def detectors(self) -> Detectors:
        if self._detectors is None:
            # A models folder's cards replace the chosen detector's for the modalities it holds.
            folder = check_models_folder(self._models_folder)
            self._detectors = Detectors.open(
                folder.get("mr") or detector_card(self._detector, "mr"),
                folder.get("us") or detector_card(self._detector, "us"),
                self._backend,
                self.threads,
            )
        return self._detectors

    @property
    def models_folder(self):
        """The models folder (detection/models_folder.py) or None (the shipped models); checked, and taking effect,
        at the next detect."""
        return self._models_folder

    @models_folder.setter
    def models_folder(self, value) -> None:
        value = models_folder_or_none(value)
        if value != self._models_folder:
            self._models_folder, self._detectors = value, None

    @property
    def models_text(self) -> str:
        """Which models made the current detections, for a status line ("" before a detection of this session)."""
        return "; ".join(describe_model(m, identity) for m, identity in self.model_identities.items())

    @property
    def detector(self) -> str:
        """Name of the detector pair (resources.DETECTOR_CHOICES); changing it takes effect at the next detect."""
        return self._detector

    @detector.setter
    def detector(self, value: str) -> None:
        if value != self._detector:
            self._detector, self._detectors = value, None

    @property
    def backend(self) -> str:
        """ "auto", "onnx" or "torchscript"; changing it takes effect at the next detect."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value != self._backend:
            self._backend, self._detectors = value, None

    @property
    def backend_used(self) -> str | None:
        """ "onnx" or "torchscript": what ran the last detection (None before one)."""
        det = self.detections.get("mr")
        return det.backend if det is not None else None

    def edited_points(self) -> list[tuple[str, str]]:
        """(modality, label) of every point that differs from its prediction (or was placed by hand)."""
        out = []
        for modality, node in (("mr", self.mr_node), ("us", self.us_node)):
            if node is None:
                continue
            for i in range(node.GetNumberOfControlPoints()):
                label = node.GetNthControlPointLabel(i)
                if self._is_edited(node, label):
                    out.append((modality, label))
        return out

    def edits_detection_would_overwrite(self) -> list[tuple[str, str]]:
        """Edited points that are not locked: detection asks before it moves them back."""
        return [point for point in self.edited_points() if not self._is_locked(*point)]

    def detect(self, progress: ProgressCallback | None = None, *, overwrite_edits: bool = False) -> None:
        """Detect the landmarks on both volumes, then create or update the landmarks nodes and the fit.

        ``progress(fraction, message)`` is called between steps; it may raise :class:`Cancelled`, in which case
        the scene is left exactly as it was. Locked points are never moved; edited points are overwritten only
        with ``overwrite_edits`` (otherwise :class:`UnsavedEditsError`, before any computation).
        """
        report = progress or (lambda fraction, message: None)
        problem = missing_inputs(self.mr_volume, self.us_volume)
        if problem:
            raise LandmarkInitError(problem)
        edited = self.edits_detection_would_overwrite()
        if edited and not overwrite_edits:
            names = ", ".join(f"{MODALITY_DISPLAY_NAMES[m]} {_display_name(label)}" for m, label in edited)
            raise UnsavedEditsError(
                f"detection would overwrite your edits of {names}; confirm to overwrite them, "
                "or lock the points you want to keep"
            )
        report(0.0, "Opening the detectors")
        init = initialize(self.mr_volume, self.us_volume, self.detectors, weighting=self.weighting, progress=report)
        mr, us = init.mr, init.us
        report(0.95, "Updating the scene")  # last chance to cancel: the scene is changed from here on
        self.messages = []
        self.detections = {"mr": mr, "us": us}
        self.model_identities = {m: model_identity(getattr(self.detectors, m).card) for m in ("mr", "us")}
        self._write_detection("mr", mr)
        self._write_detection("us", us)
        self._weights = dict(zip(mr.labels, (float(w) for w in init.weights), strict=True))
        if self.transform_node is None:
            from LandmarkInitLib.io.transforms import create_transform_node

            self.transform_node = create_transform_node(self.context.scene)
        self._start_live()
        report(1.0, "Done")

    def _write_detection(self, modality: str, detection) -> None:
        points = LandmarkSet(detection.labels, detection.points_ras)
        node = self.mr_node if modality == "mr" else self.us_node
        if node is None or node.GetScene() is None:
            node = create_landmarks_node(self.context.scene, points, modality)
            node.SetName(f"{MODALITY_DISPLAY_NAMES[modality]} landmarks")
            if modality == "mr":
                self.mr_node = node
            else:
                self.us_node = node
        else:
            self._push_undo("detection", modality)
            style_landmarks_node(node, modality)
            skipped = _set_points(node, points)
            for label in skipped:
                self.messages.append(
                    f"{MODALITY_DISPLAY_NAMES[modality]} {_display_name(label)} is locked and was left where it is"
                )
        for label, p, s in zip(detection.labels, detection.points_ras, detection.spread_mm, strict=True):
            node.SetAttribute(PREDICTION_ATTRIBUTE + label, ",".join(repr(float(v)) for v in p))
            node.SetAttribute(SPREAD_ATTRIBUTE + label, "" if np.isnan(s) else repr(float(s)))
        node.SetAttribute(MODEL_ATTRIBUTE, f"{detection.model} ({detection.backend})")

    # --- live fit --------------------------------------------------------------------------------------

    def _start_live(self) -> None:
        self._stop_live()
        if self.transform_node is None:
            from LandmarkInitLib.io.transforms import create_transform_node

            self.transform_node = create_transform_node(self.context.scene)
        weights = self._weights or self._weights_from_nodes()
        self.live = LiveRegistration(
            self.mr_node, self.us_node, self.transform_node, mode=self._mode, weights=weights, enabled=False
        )
        self.live.add_listener(self._on_fit)
        for modality, node in (("mr", self.mr_node), ("us", self.us_node)):
            tag = node.AddObserver(node.PointStartInteractionEvent, self._interaction_callback(modality))
            self._observations.append((node, tag))
        self.live.enabled = self._auto_update
        self.live.update()

    def _stop_live(self) -> None:
        if self.live is not None:
            self.live.detach()
            self.live = None
        for obj, tag in self._observations:
            obj.RemoveObserver(tag)
        self._observations.clear()

    def _weights_from_nodes(self) -> dict | None:
        """Spread weights from the stored spreads (a session re-opened on saved nodes)."""
        if self.weighting == "none":
            return None
        weights = {}
        for label in LANDMARK_LABELS:
            s = [self._spread(node, label) for node in (self.mr_node, self.us_node)]
            if any(v is None or v <= 0 for v in s):
                return None
            weights[label] = 1.0 / (s[0] ** 2 + s[1] ** 2)
        return weights

    def _interaction_callback(self, modality: str):
        def on_start(caller, event):  # a drag starts: remember where the points were
            self._push_undo("move", modality)

        return on_start

    def _on_fit(self, live) -> None:
        for callback in list(self._listeners):
            callback(self)

    def add_listener(self, callback: Callable[[LandmarkSession], None]) -> None:
        """``callback(session)`` after every re-fit attempt (every point move while auto-update is on)."""
        self._listeners.append(callback)

    @property
    def auto_update(self) -> bool:
        return self._auto_update

    @auto_update.setter
    def auto_update(self, value: bool) -> None:
        self._auto_update = bool(value)
        if self.live is not None:
            self.live.enabled = self._auto_update
            if self._auto_update:
                self.live.update()

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        from LandmarkInitLib.fit.landmark_fit import FIT_MODES

        if value not in FIT_MODES:
            raise LandmarkInitError(f"unknown fit mode {value!r}: use one of {', '.join(FIT_MODES)}")
        self._mode = value
        if self.live is not None:
            self.live.mode = value
            self.live.update()

    def update(self):
        """Fit now (the "Update" button when auto-update is off). Returns the fit or None (see ``status``)."""
        if self.live is None:
            raise LandmarkInitError("no landmarks yet: press Detect landmarks first")
        return self.live.update()

    # --- results ---------------------------------------------------------------------------------------

    @property
    def rms_mm(self) -> float | None:
        return None if self.live is None or self.live.result is None else float(self.live.result.rms)

    @property
    def matrix(self) -> np.ndarray | None:
        from LandmarkInitLib.io.transforms import transform_matrix

        return None if self.transform_node is None else transform_matrix(self.transform_node)

    @property
    def status(self) -> str:
        """One line for the user: what is missing, why the transform is not updated, or the fit quality."""
        problem = missing_inputs(self.mr_volume, self.us_volume)
        if problem:
            return problem
        if self.live is None:
            return "Press Detect landmarks (or select existing MR and US landmark lists)."
        if self.live.error:
            return f"Transform not updated (it keeps its last valid value): {self.live.error}"
        if self.live.result is None:
            return "Auto-update is off: press Update to fit the transform."
        n = len(self.live.labels)
        text = f"Rigid fit of {n} landmarks: RMS residual {self.live.result.rms:.2f} mm"
        if self._mode != "rigid":
            text = text.replace("Rigid", self._mode.capitalize()) + f", scale {self.live.result.scale:.3f}"
        if self.backend_used:
            text += f"; detected with {self.backend_used}"
        return text + "."

    def rows(self) -> list[LandmarkRow]:
        residuals = self.live.residuals() if self.live is not None else {}
        weights = self.live.weights if self.live is not None and self.live.weights else {}
        rows = []
        for lm in LANDMARKS:
            rows.append(
                LandmarkRow(
                    lm.label,
                    lm.display_name,
                    residuals.get(lm.label),
                    self._spread(self.mr_node, lm.label),
                    self._spread(self.us_node, lm.label),
                    weights.get(lm.label),
                    self._is_locked("mr", lm.label),
                    self._is_locked("us", lm.label),
                    self._node_has(self.mr_node, lm.label) and self._is_edited(self.mr_node, lm.label),
                    self._node_has(self.us_node, lm.label) and self._is_edited(self.us_node, lm.label),
                )
            )
        return rows

    def quality(self):
        """QA of the current state (pipeline/quality.py features with the current points and fit; detector flags)."""
        from LandmarkInitLib.io.volumes import image_from_volume_node
        from LandmarkInitLib.pipeline.quality import (
            assess,
            disagreement_mm,
            fan_distance_map,
            fan_margin_at,
            load_thresholds,
        )

        if self._qa_thresholds is None:
            self._qa_thresholds = load_thresholds()
        values = {"disagreement_mm": disagreement_mm(self.detections.values())}  # NaN (not assessed) if none
        rows = self.rows()
        spreads = [r.spread_mr_mm for r in rows] + [r.spread_us_mm for r in rows]
        if all(s is not None for s in spreads):
            values["spread_mm"] = max(spreads)
        if self.live is not None and self.live.result is not None:
            values["fre_mm"] = float(self.live.result.rms)
            values["conditioning"] = float(self.live.result.conditioning)
        if self.us_node is not None and self.us_node.GetNumberOfControlPoints():
            if self._fan_map is None:
                self._fan_map = fan_distance_map(image_from_volume_node(self.us_volume))
            n = self.us_node.GetNumberOfControlPoints()
            points = np.array([self.us_node.GetNthControlPointPosition(i) for i in range(n)])
            values["us_fan_margin_mm"] = float(np.min(fan_margin_at(self._fan_map, points)))
        flags = [f"{m.upper()}: {f}" for m, d in self.detections.items() for f in d.flags]
        return assess(values, self._qa_thresholds, flags)

    @property
    def qa_flags(self) -> list[str]:
        return self.quality().flags

    # --- per-point actions -----------------------------------------------------------------------------

    def _node(self, modality: str):
        node = self.mr_node if check_modality(modality) == "mr" else self.us_node
        if node is None:
            raise LandmarkInitError("no landmarks yet: press Detect landmarks first")
        return node

    def prediction(self, modality: str, label: str) -> np.ndarray | None:
        value = self._node(modality).GetAttribute(PREDICTION_ATTRIBUTE + label)
        return None if not value else np.array([float(v) for v in value.split(",")])

    def reset_landmark(self, modality: str, label: str) -> None:
        """Put one point back on the detector's prediction (a locked point must be unlocked first)."""
        node = self._node(modality)
        p = self.prediction(modality, label)
        if p is None:
            raise LandmarkLabelError(
                f"{MODALITY_DISPLAY_NAMES[modality]} {_display_name(label)} has no prediction to return to "
                "(it was not detected in this scene)"
            )
        self._push_undo("reset", modality)
        _set_points(node, LandmarkSet((label,), p[None, :]), strict_locks=True)

    def reset_all(self) -> list[str]:
        """Every unlocked point back on its prediction; returns the labels left in place because locked."""
        skipped = []
        for modality in ("mr", "us"):
            node = self._node(modality)
            labels = [lb for lb in LANDMARK_LABELS if self.prediction(modality, lb) is not None]
            points = np.array([self.prediction(modality, lb) for lb in labels]).reshape(-1, 3)
            self._push_undo("reset", modality)
            skipped += [f"{modality}:{lb}" for lb in _set_points(node, LandmarkSet(tuple(labels), points))]
        return skipped

    def set_locked(self, modality: str, label: str, locked: bool) -> None:
        node = self._node(modality)
        node.SetNthControlPointLocked(find_point_index(node, label), bool(locked))

    def jump_target(self, modality: str, label: str) -> np.ndarray:
        """World RAS of a point (node coordinates through the node's parent transforms), for centring views."""
        node = self._node(modality)
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPositionWorld(find_point_index(node, label), p)
        return np.array(p)

    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self) -> str | None:
        """Undo the last move, reset or detection of points; returns what was undone (None: nothing to undo)."""
        if not self._undo:
            return None
        what, modality, positions = self._undo.pop()
        node = self._node(modality)
        labels = tuple(positions)
        skipped = _set_points(node, LandmarkSet(labels, np.array([positions[lb] for lb in labels])))
        self.messages = [f"{_display_name(lb)} is locked and was not restored" for lb in skipped]
        return f"{what} of {MODALITY_DISPLAY_NAMES[modality]} landmarks"

    def _push_undo(self, what: str, modality: str) -> None:
        node = self.mr_node if modality == "mr" else self.us_node
        positions = {}
        for i in range(node.GetNumberOfControlPoints()):
            p = [0.0, 0.0, 0.0]
            node.GetNthControlPointPosition(i, p)
            positions[node.GetNthControlPointLabel(i)] = p
        self._undo.append((what, modality, positions))
        del self._undo[:-50]

    # --- outputs ---------------------------------------------------------------------------------------

    def apply_to_mr(self) -> None:
        """Show the MR volume (and its landmarks) through MR_to_US, i.e. fused with the US.

        The transform is placed under the US volume's own parent transform, if any, so the MR follows the US.
        An MR volume that already has another parent transform is refused rather than silently re-parented.
        """
        if self.transform_node is None:
            raise LandmarkInitError("no MR_to_US transform yet: press Detect landmarks first")
        current = self.mr_volume.GetParentTransformNode()
        if current is not None and current.GetID() != self.transform_node.GetID():
            raise LandmarkInitError(
                f"the MR volume is already under the transform {current.GetName()!r}; harden or remove that "
                "transform first (Data module), then apply again"
            )
        us_parent = self.us_volume.GetParentTransformNode()
        self.transform_node.SetAndObserveTransformNodeID(us_parent.GetID() if us_parent is not None else None)
        self.mr_volume.SetAndObserveTransformNodeID(self.transform_node.GetID())
        if self.mr_node is not None:
            self.mr_node.SetAndObserveTransformNodeID(self.transform_node.GetID())

    def remove_from_mr(self) -> None:
        """Undo :meth:`apply_to_mr` (only the parent links it made)."""
        for node in (self.mr_volume, self.mr_node):
            parent = None if node is None else node.GetParentTransformNode()
            if parent is not None and self.transform_node is not None and parent.GetID() == self.transform_node.GetID():
                node.SetAndObserveTransformNodeID(None)

    @property
    def applied(self) -> bool:
        parent = self.mr_volume.GetParentTransformNode() if self.mr_volume is not None else None
        return parent is not None and self.transform_node is not None and parent.GetID() == self.transform_node.GetID()

    def harden_mr_copy(self, name: str | None = None):
        """A copy of the MR volume with MR_to_US hardened into its geometry (the IJK-to-RAS changes, the voxels
        stay the same); the MR volume itself is left as it is."""
        from LandmarkInitLib.io.transforms import harden_copy

        if self.transform_node is None:
            raise LandmarkInitError("no MR_to_US transform yet: press Detect landmarks first")
        name = name or f"{self.mr_volume.GetName()} (registered)"
        return harden_copy(self.context, self.mr_volume, self.transform_node, name)

    def save(self, output_dir, *, force: bool = False) -> dict:
        """Write the current landmarks and transform as ``landmarkinit run`` names them; returns name -> path.
        Existing files are refused (all checked before anything is written) unless ``force``."""
        from pathlib import Path

        from LandmarkInitLib.io.markups import write_landmarks_file
        from LandmarkInitLib.io.transforms import save_transform

        if self.live is None or self.mr_node is None or self.us_node is None:
            raise LandmarkInitError("nothing to save yet: press Detect landmarks first")
        if self.live.error:
            raise LandmarkInitError(f"the landmarks cannot be fitted ({self.live.error}); fix them before saving")
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        existing = [name for name in SAVED_FILES if (output_dir / name).exists()]
        if existing and not force:
            raise LandmarkFileError(
                f"{output_dir} already holds {', '.join(existing)}; choose another folder or confirm overwriting"
            )
        mr_file, us_file, transform_file = (output_dir / name for name in SAVED_FILES)
        return {
            mr_file.name: write_landmarks_file(self.context, self.mr_node, mr_file, force=True),
            us_file.name: write_landmarks_file(self.context, self.us_node, us_file, force=True),
            transform_file.name: save_transform(self.context, self.transform_node, transform_file, force=True),
        }

    def close(self) -> None:
        """Stop observing the nodes (the nodes themselves stay in the scene)."""
        self._stop_live()

    # --- helpers ---------------------------------------------------------------------------------------

    def _is_locked(self, modality: str, label: str) -> bool:
        node = self.mr_node if modality == "mr" else self.us_node
        if node is None or not self._node_has(node, label):
            return False
        return bool(node.GetLocked() or node.GetNthControlPointLocked(find_point_index(node, label)))

    @staticmethod
    def _node_has(node, label: str) -> bool:
        return node is not None and any(
            node.GetNthControlPointLabel(i) == label for i in range(node.GetNumberOfControlPoints())
        )

    @staticmethod
    def _spread(node, label: str) -> float | None:
        value = None if node is None else node.GetAttribute(SPREAD_ATTRIBUTE + label)
        return float(value) if value else None

    @staticmethod
    def _is_edited(node, label: str) -> bool:
        value = node.GetAttribute(PREDICTION_ATTRIBUTE + label)
        if not value:
            return True  # placed by hand
        i = find_point_index(node, label)
        if node.GetNthControlPointPositionStatus(i) != node.PositionDefined:
            return True
        p = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(i, p)
        return float(np.linalg.norm(np.subtract(p, [float(v) for v in value.split(",")]))) > EDIT_TOLERANCE_MM


def _display_name(label: str) -> str:
    for lm in LANDMARKS:
        if lm.label == label:
            return lm.display_name
    return label


def _set_points(node, points: LandmarkSet, *, strict_locks: bool = False) -> list[str]:
    """Set points by label (adding missing labels); locked points stay put and are returned (or refused)."""
    import vtk

    from LandmarkInitLib.errors import LockedPointError

    skipped = []
    was = node.StartModify()
    try:
        for label, p in zip(points.labels, points.points_ras, strict=True):
            try:
                i = find_point_index(node, label)
            except LandmarkLabelError:
                i = node.AddControlPoint(vtk.vtkVector3d(*map(float, p)), label)
                node.SetNthControlPointDescription(i, _display_name(label))
                continue
            if node.GetLocked() or node.GetNthControlPointLocked(i):
                if strict_locks:
                    raise LockedPointError(f"{_display_name(label)} in {node.GetName()!r} is locked; unlock it first")
                skipped.append(label)
                continue
            node.SetNthControlPointPosition(i, *map(float, p))
    finally:
        node.EndModify(was)
    return skipped


def detect_and_fit(context, mr_volume, us_volume, **options) -> LandmarkSession:
    """One call for scripts and Slicer's Python console: detect on both volume nodes and fit; returns the
    session, whose ``mr_node``, ``us_node`` and ``transform_node`` are the nodes it made."""
    session = LandmarkSession(context, mr_volume, us_volume, **options)
    session.detect()
    return session


__all__ = [
    "Cancelled",
    "LandmarkRow",
    "LandmarkSession",
    "UnsavedEditsError",
    "detect_and_fit",
    "missing_inputs",
]
