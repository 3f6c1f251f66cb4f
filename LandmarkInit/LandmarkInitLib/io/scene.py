"""An MRML scene with the module logics LandmarkInit needs, inside or outside the Slicer application.

Outside Slicer (slicer-core from PyPI: CLI, tests, browser app) there is no ``slicer.app`` and no
``slicer.modules``: :func:`create_context` builds the scene and registers the Colors, Volumes, Markups and
Transforms logics on an application logic, as the desktop application does at start-up. Inside Slicer,
:func:`current_context` wraps the application's own scene and logics instead.

The context object holds Python references to the application and module logics on purpose: when they
were garbage-collected while the scene lived on, adding a markups node crashed the interpreter.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SlicerContext:
    scene: object
    app_logic: object
    colors_logic: object
    volumes_logic: object
    markups_logic: object
    transforms_logic: object
    _keep: list = field(default_factory=list, repr=False)

    def clear(self) -> None:
        """Remove all data nodes (keeps the default colour tables and singletons)."""
        self.scene.Clear(False)


def create_context() -> SlicerContext:
    """A new standalone MRML scene with the logics registered (slicer-core, no Slicer application)."""
    import slicer

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    app_logic.GetColorLogic().SetMRMLScene(scene)
    app_logic.GetColorLogic().AddDefaultColorNodes()

    def register(name, logic):
        logic.SetMRMLApplicationLogic(app_logic)
        logic.SetMRMLScene(scene)
        app_logic.SetModuleLogic(name, logic)
        return logic

    colors = register("Colors", slicer.vtkMRMLColorLogic())
    volumes = register("Volumes", slicer.vtkSlicerVolumesLogic())
    markups = register("Markups", slicer.vtkSlicerMarkupsLogic())
    transforms = register("Transforms", slicer.vtkSlicerTransformLogic())
    return SlicerContext(scene, app_logic, colors, volumes, markups, transforms)


def current_context() -> SlicerContext:
    """The running Slicer application's scene and logics (only inside the desktop application)."""
    import slicer

    if not hasattr(slicer, "app") or getattr(slicer, "mrmlScene", None) is None:
        raise RuntimeError("not running inside the Slicer application; use create_context() for a standalone scene")
    return SlicerContext(
        scene=slicer.mrmlScene,
        app_logic=slicer.app.applicationLogic(),
        colors_logic=slicer.modules.colors.logic(),
        volumes_logic=slicer.modules.volumes.logic(),
        markups_logic=slicer.modules.markups.logic(),
        transforms_logic=slicer.modules.transforms.logic(),
    )
