"""Stand-in for workflow.LandmarkSession until it lands on main: the same calls, the subset the app uses.

Detect both volumes, create the MR/US point lists and the MR_to_US transform node, re-fit live on every
point move (LiveRegistration), reset a point to its prediction, save the three result files.
Positions are RAS (each markups node in its own volume's RAS; the transform maps MR RAS -> US RAS).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..initialization import DEFAULT_WEIGHTING, Detectors, fit_weights
from ..landmark_set import LandmarkSet
from ..landmarks import LANDMARK_LABELS, landmark_by_label
from ..live_update import LiveRegistration
from ..markups_io import create_landmarks_node, find_point_index, move_landmark, write_landmarks_file
from ..output_files import check_writable
from ..transform_io import create_transform_node, save_transform

SAVED_FILES = ("mr_landmarks.mrk.json", "us_landmarks.mrk.json", "mr_to_us.h5")


class LandmarkSession:
    def __init__(self, context, mr_volume_node, us_volume_node, detectors=None, backend="onnx", auto_update=True):
        self.context = context
        self.volumes = {"mr": mr_volume_node, "us": us_volume_node}
        self.detectors = detectors
        self.backend = backend
        self.mr_node = self.us_node = self.transform_node = None
        self.detections: dict = {}
        self.qa_flags: list[str] = []
        self.status = "Press Detect to find the landmarks"
        self.backend_used = None
        self._live: LiveRegistration | None = None
        self._listeners: list = []

    def detect(self, progress=None, overwrite_edits=False) -> None:
        progress = progress or (lambda fraction, message: None)
        progress(0.05, "Loading the detectors")
        detectors = self.detectors = self.detectors or Detectors.open(backend=self.backend)
        progress(0.2, "Detecting the MR landmarks")
        mr = detectors.mr.detect_node(self.volumes["mr"])
        progress(0.6, "Detecting the US landmarks")
        us = detectors.us.detect_node(self.volumes["us"])
        progress(0.9, "Fitting MR_to_US")
        self.detections = {"mr": mr, "us": us}
        self.backend_used = detectors.mr.backend
        weights = dict(zip(mr.labels, fit_weights(mr, us, DEFAULT_WEIGHTING), strict=True))
        self._close_nodes()
        scene = self.context.scene
        self.mr_node = create_landmarks_node(scene, LandmarkSet(mr.labels, mr.points_ras), "mr")
        self.us_node = create_landmarks_node(scene, LandmarkSet(us.labels, us.points_ras), "us")
        self.transform_node = create_transform_node(scene)
        self.qa_flags = [f"MR: {f}" for f in mr.flags] + [f"US: {f}" for f in us.flags]
        self._live = LiveRegistration(self.mr_node, self.us_node, self.transform_node, weights=weights)
        self._live.add_listener(self._on_refit)
        self._on_refit(self._live)
        progress(1.0, "Done")

    def _on_refit(self, live) -> None:
        self.status = live.error or f"Fitted: RMS residual {live.result.rms:.2f} mm"
        for callback in list(self._listeners):
            callback(self)

    @property
    def rms_mm(self) -> float | None:
        return None if self._live is None or self._live.result is None else float(self._live.result.rms)

    def rows(self) -> list[dict]:
        if self._live is None:
            return []
        residuals = self._live.residuals()
        rows = []
        for i, label in enumerate(LANDMARK_LABELS):
            row = {"label": label, "name": landmark_by_label(label).display_name, "fre_mm": residuals.get(label)}
            for modality, node in (("mr", self.mr_node), ("us", self.us_node)):
                det = self.detections[modality]
                j = find_point_index(node, label)
                position = np.array(node.GetNthControlPointPosition(j))
                row[f"spread_{modality}_mm"] = float(det.spread_mm[i])
                row[f"locked_{modality}"] = bool(node.GetNthControlPointLocked(j))
                row[f"edited_{modality}"] = bool(np.linalg.norm(position - det.points_ras[i]) > 1e-6)
            rows.append(row)
        return rows

    def reset_landmark(self, modality: str, label: str) -> None:
        det = self.detections[modality]
        node = self.mr_node if modality == "mr" else self.us_node
        move_landmark(node, label, det.points_ras[det.labels.index(label)])

    def save(self, output_dir, force: bool = False) -> dict[str, Path]:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        paths = dict(zip(SAVED_FILES, (output_dir / name for name in SAVED_FILES), strict=True))
        for path in paths.values():  # refuse before writing anything: no partial result
            check_writable(path, force)
        write_landmarks_file(self.context, self.mr_node, paths[SAVED_FILES[0]], force=force)
        write_landmarks_file(self.context, self.us_node, paths[SAVED_FILES[1]], force=force)
        save_transform(self.context, self.transform_node, paths[SAVED_FILES[2]], force=force)
        return paths

    def add_listener(self, callback) -> None:
        self._listeners.append(callback)

    def _close_nodes(self) -> None:
        if self._live is not None:
            self._live.detach()
            self._live = None
        for node in (self.mr_node, self.us_node, self.transform_node):
            if node is not None and node.GetScene() is not None:
                self.context.scene.RemoveNode(node)
        self.mr_node = self.us_node = self.transform_node = None

    def close(self) -> None:
        self._close_nodes()
        self._listeners.clear()
