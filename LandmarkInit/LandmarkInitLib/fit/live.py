"""Live re-solve of MR_to_US while the clinician drags landmarks (Fiducial Registration Wizard style).

A :class:`LiveRegistration` observes the MR (moving) and US (fixed) point-list nodes. Every point move,
addition or removal re-fits the transform and updates the transform node. While the landmarks cannot be
fitted (a point deleted, a label duplicated, points collinear) the transform node keeps its last valid
value and ``error`` says why; listeners are told either way. The updater never moves a point, so locked
points stay where the clinician put them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import vtk

from LandmarkInitLib.errors import LandmarkInitError
from LandmarkInitLib.fit.landmark_fit import FitResult, fit_transform
from LandmarkInitLib.io.markups import landmarks_from_node
from LandmarkInitLib.io.transforms import set_transform_matrix
from LandmarkInitLib.landmarks import LANDMARK_LABELS, match_landmarks

_POINT_EVENTS = (
    "PointModifiedEvent",
    "PointAddedEvent",
    "PointRemovedEvent",
    "PointPositionDefinedEvent",
    "PointPositionUndefinedEvent",
)


class LiveRegistration:
    def __init__(
        self,
        moving_node,
        fixed_node,
        transform_node,
        *,
        mode: str = "rigid",
        expected_labels: Iterable[str] | None = LANDMARK_LABELS,
        weights: Mapping[str, float] | None = None,
        enabled: bool = True,
    ):
        self.moving_node = moving_node
        self.fixed_node = fixed_node
        self.transform_node = transform_node
        self.mode = mode
        self.expected_labels = None if expected_labels is None else tuple(expected_labels)
        self.weights = dict(weights) if weights else None
        self.enabled = enabled
        self.result: FitResult | None = None
        self.labels: tuple[str, ...] = ()
        self.error: str | None = None
        self.update_count = 0
        self._listeners: list[Callable[[LiveRegistration], None]] = []
        self._observations: list[tuple[object, int]] = []
        for node in (moving_node, fixed_node):
            for event in _POINT_EVENTS:
                tag = node.AddObserver(getattr(node, event), self._on_point_event)
                self._observations.append((node, tag))
        scene = transform_node.GetScene()
        if scene is not None:
            tag = scene.AddObserver(scene.NodeAboutToBeRemovedEvent, self._on_node_removed)
            self._observations.append((scene, tag))
        if enabled:
            self.update()

    @property
    def attached(self) -> bool:
        return bool(self._observations)

    def add_listener(self, callback: Callable[[LiveRegistration], None]) -> None:
        """``callback(self)`` after every re-solve attempt (successful or not)."""
        self._listeners.append(callback)

    def update(self) -> FitResult | None:
        """Fit now; on success update the transform node. Returns the fit, or None (see ``error``)."""
        try:
            moving = landmarks_from_node(self.moving_node, self.expected_labels)
            fixed = landmarks_from_node(self.fixed_node, self.expected_labels)
            labels, x, y = match_landmarks(moving, fixed, self.expected_labels)
            w = [self.weights.get(label, 1.0) for label in labels] if self.weights else None
            result = fit_transform(x, y, mode=self.mode, weights=w)
        except LandmarkInitError as e:
            self.error = str(e)
            self._notify()
            return None
        set_transform_matrix(self.transform_node, result.matrix)
        self.result, self.labels, self.error = result, labels, None
        self.update_count += 1
        self._notify()
        return result

    def residuals(self) -> dict[str, float]:
        """FRE per landmark label (mm) of the last successful fit."""
        if self.result is None:
            return {}
        return {label: float(r) for label, r in zip(self.labels, self.result.residuals, strict=True)}

    def detach(self) -> None:
        for obj, tag in self._observations:
            obj.RemoveObserver(tag)
        self._observations.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()

    def _notify(self) -> None:
        for callback in list(self._listeners):
            callback(self)

    # Call data of point events is the point index; the type must be declared or VTK passes none
    # (and a wrong declaration crashes the interpreter).
    @vtk.calldata_type(vtk.VTK_INT)
    def _on_point_event(self, caller, event, index=None):
        if self.enabled:
            self.update()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _on_node_removed(self, scene, event, node=None):
        if node is not None and node in (self.moving_node, self.fixed_node, self.transform_node):
            self.detach()
