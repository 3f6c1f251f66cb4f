"""The three slice views of the app and what each one shows.

    US     the US volume with the US landmarks (draggable)
    MR     the MR volume with the MR landmarks (draggable), in MR RAS
    Fused  the US volume, with the MR resampled through MR_to_US over it (foreground opacity), and the
           US landmarks (draggable)

The fused MR is a second volume node sharing the MR voxels (no copy) whose parent is the MR_to_US transform
node: Slicer's slice compositing resamples it through the live transform, and the MR view keeps the MR in its
own RAS, where the MR landmarks are. No 3-D view: volume rendering costs tens of seconds per frame on CPU.
"""

from __future__ import annotations

import numpy as np

from LandmarkInitLib.geometry import numpy_from_vtk_matrix

VIEW_TAGS = {"us": "US", "mr": "MR", "fused": "Fused"}
VIEW_COLORS = {"us": "#ff8000", "mr": "#1f78b4", "fused": "#7f7f7f"}
ORIENTATIONS = ("Axial", "Sagittal", "Coronal")
LAYOUT_ID = "LandmarkInit"
DEFAULT_FUSED_OPACITY = 0.5


def layout_definition() -> dict:
    """US, MR and fused slice views side by side."""
    from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition

    views = [
        ViewLayoutDefinition.slice_view("Axial", label=VIEW_TAGS[key], color=VIEW_COLORS[key])
        for key in ("us", "mr", "fused")
    ]
    return {LAYOUT_ID: Layout(LayoutDirection.Horizontal, views)}


def registered_mr_node(scene, mr_volume_node, transform_node):
    """A volume node showing the MR voxels under ``transform_node`` (shares the voxel array; read-only use)."""
    import vtk

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"{mr_volume_node.GetName()} (MR_to_US)")
    m = vtk.vtkMatrix4x4()
    mr_volume_node.GetIJKToRASMatrix(m)
    node.SetIJKToRASMatrix(m)
    node.SetAndObserveImageData(mr_volume_node.GetImageData())
    node.CreateDefaultDisplayNodes()
    source, display = mr_volume_node.GetDisplayNode(), node.GetDisplayNode()
    if source is not None:
        display.SetAutoWindowLevel(False)
        display.SetWindowLevel(source.GetWindow(), source.GetLevel())
        display.SetAndObserveColorNodeID(source.GetColorNodeID())
    node.SetAndObserveTransformNodeID(transform_node.GetID())
    return node


class AppViews:
    """Access to the app's three SliceView objects (created by trame-slicer's layout manager)."""

    def __init__(self, view_manager):
        self.views = {key: view_manager.get_view(tag) for key, tag in VIEW_TAGS.items()}
        self.resize_listeners: list = []
        for key, view in self.views.items():
            if view is None:
                raise RuntimeError(f"slice view {VIEW_TAGS[key]!r} was not created")
            view.interactor().AddObserver("WindowResizeEvent", self._resized(view))
            # trame-slicer asks for 8x multisampling; slice images gain nothing from it and Mesa's CPU rasterizer
            # pays for it on every frame (set before the first render, when the window is created).
            view.render_window().SetMultiSamples(0)

    def _resized(self, view):
        """The page gives each view its size only once it is shown (and again when the window changes): fit the
        volume to the new size then, or it stays fitted to the default window size."""

        def on_resize(*_):
            view.fit_view_to_content()
            for callback in self.resize_listeners:
                callback()

        return on_resize

    def view_node_id(self, key: str) -> str:
        return self.views[key].get_view_node_id()

    def show_volumes(self, mr_volume, us_volume, fused_mr=None, opacity: float = DEFAULT_FUSED_OPACITY) -> None:
        self.views["us"].set_background_volume_id(us_volume.GetID())
        self.views["us"].set_foreground_volume_id(None)
        self.views["mr"].set_background_volume_id(mr_volume.GetID())
        self.views["mr"].set_foreground_volume_id(None)
        self.views["fused"].set_background_volume_id(us_volume.GetID())
        self.views["fused"].set_foreground_volume_id(fused_mr.GetID() if fused_mr is not None else None)
        self.views["fused"].set_foreground_opacity(opacity)
        for view in self.views.values():
            view.fit_view_to_content()

    def show_landmarks(self, mr_markups, us_markups) -> None:
        """Each point list only in the views of its own volume's RAS."""
        for node, keys in ((mr_markups, ("mr",)), (us_markups, ("us", "fused"))):
            display = node.GetDisplayNode()
            display.SetViewNodeIDs([self.view_node_id(k) for k in keys])
            display.SetTextScale(3.0)
            display.SetGlyphScale(2.5)

    def set_fused_opacity(self, opacity: float) -> None:
        self.views["fused"].set_foreground_opacity(float(opacity))

    def set_orientation(self, orientation: str) -> None:
        if orientation not in ORIENTATIONS:
            raise ValueError(f"unknown orientation {orientation!r}: use one of {', '.join(ORIENTATIONS)}")
        for view in self.views.values():
            view.set_orientation(orientation)
            view.fit_view_to_content()

    def center_on(self, mr_ras, us_ras) -> None:
        """Move the MR view's slice through ``mr_ras`` and the US and fused views' through ``us_ras`` (RAS)."""
        for key, ras in (("mr", mr_ras), ("us", us_ras), ("fused", us_ras)):
            self.views[key].get_view_node().JumpSliceByCentering(*map(float, ras))

    def fit_all(self) -> None:
        for view in self.views.values():
            view.fit_view_to_content()


def point_in_view(slice_node, ras) -> tuple[float, float, float] | None:
    """Where a RAS point appears in a slice view: (x, y) as fractions of the view's width and height from its
    top-left corner (screen convention, y down), and its distance to the slice plane in mm."""
    width, height, _ = slice_node.GetDimensions()
    if width <= 0 or height <= 0:
        return None
    ras_to_xy = np.linalg.inv(numpy_from_vtk_matrix(slice_node.GetXYToRAS()))
    x, y, _, _ = ras_to_xy @ np.array([*map(float, ras), 1.0])
    slice_to_ras = numpy_from_vtk_matrix(slice_node.GetSliceToRAS())  # rigid: column 2 is the unit normal
    distance = abs(float(slice_to_ras[:3, 2] @ (np.asarray(ras, float) - slice_to_ras[:3, 3])))
    # XY has its origin at the view's bottom-left (VTK); the page's origin is top-left.
    return float(x / width), float(1.0 - y / height), distance
