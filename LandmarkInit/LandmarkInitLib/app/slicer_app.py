"""The Slicer core of the browser app: trame-slicer's SlicerApp (scene, views, markups interaction) plus the
LandmarkInit SlicerContext over the same scene, so the library's readers and writers work unchanged.

Rendering is offscreen through EGL (Mesa on CPU): VTK is told so before the first render window exists,
which skips a failing attempt at an X display.
"""

from __future__ import annotations

import os

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def create_runtime():
    """Return ``(slicer_app, context)``: one scene, shared by the views and the LandmarkInit library.

    Keep a reference to both for the app's lifetime (logics garbage-collected under a live scene crash)."""
    from slicer import vtkSlicerTransformLogic
    from trame_slicer.core import SlicerApp

    from LandmarkInitLib.io.scene import SlicerContext

    slicer_app = SlicerApp()
    transforms = slicer_app.register_module_logic(vtkSlicerTransformLogic(), logic_name="Transforms")
    context = SlicerContext(
        scene=slicer_app.scene,
        app_logic=slicer_app.app_logic,
        colors_logic=slicer_app.color_logic,
        volumes_logic=slicer_app.volumes_logic,
        markups_logic=slicer_app.markups_logic,
        transforms_logic=transforms,
    )
    return slicer_app, context
