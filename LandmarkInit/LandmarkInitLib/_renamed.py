"""Module names of release 0.1 that moved in 0.2, still importable (with a FutureWarning, which Slicer's Python
console shows) until the next release, so that scripts written for the console keep working. Remove this file then.
The research modules (phantom, training, evaluation) moved to the LandmarkInitResearch package without an alias:
the runtime library never imports them."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

RENAMED = {
    "LandmarkInitLib.scene": "LandmarkInitLib.io.scene",
    "LandmarkInitLib.volume_io": "LandmarkInitLib.io.volumes",
    "LandmarkInitLib.markups_io": "LandmarkInitLib.io.markups",
    "LandmarkInitLib.transform_io": "LandmarkInitLib.io.transforms",
    "LandmarkInitLib.output_files": "LandmarkInitLib.io.output_files",
    "LandmarkInitLib.dataset": "LandmarkInitLib.io.datasets",
    "LandmarkInitLib.landmark_set": "LandmarkInitLib.landmarks",
    "LandmarkInitLib.registration": "LandmarkInitLib.fit.landmark_fit",
    "LandmarkInitLib.live_update": "LandmarkInitLib.fit.live",
    "LandmarkInitLib.intensity_registration": "LandmarkInitLib.fit.intensity",
    "LandmarkInitLib.initialization": "LandmarkInitLib.pipeline.initialize",
    "LandmarkInitLib.quality": "LandmarkInitLib.pipeline.quality",
    "LandmarkInitLib.batch": "LandmarkInitLib.pipeline.batch",
    "LandmarkInitLib.report": "LandmarkInitLib.pipeline.report",
    "LandmarkInitLib.overlay_figure": "LandmarkInitLib.pipeline.overlay_figure",
    "LandmarkInitLib.workflow": "LandmarkInitLib.session",
    "LandmarkInitLib.detection.runtime": "LandmarkInitLib.detection.detectors",
    "LandmarkInitLib.app.runtime": "LandmarkInitLib.app.slicer_app",
}


def warn_renamed(old: str, new: str) -> None:
    warnings.warn(f"{old} is now {new}; the old name goes in the next release", FutureWarning, stacklevel=3)


class _RenamedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old name as a module holding the new module's names (the same objects)."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in RENAMED else None

    def create_module(self, spec):
        return None  # a fresh module, filled by exec_module

    def exec_module(self, module) -> None:
        new = RENAMED[module.__name__]
        warn_renamed(module.__name__, new)
        module.__dict__.update({k: v for k, v in vars(importlib.import_module(new)).items() if not k.startswith("__")})


def install() -> None:
    if not any(isinstance(finder, _RenamedModules) for finder in sys.meta_path):
        sys.meta_path.append(_RenamedModules())
