"""Project layout rules: the Slicer build lists every library file, and the library imports only what the
Slicer application bundles (numpy, vtk, SimpleITK, slicer) plus onnxruntime."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "LandmarkInit" / "LandmarkInitLib"
SLICER_BUNDLED = {"numpy", "vtk", "vtkmodules", "SimpleITK", "slicer", "onnxruntime"}
# Sub-packages that run only outside Slicer (phantom generation, training, evaluation, the browser app) may use more.
OUTSIDE_SLICER_ONLY: set[str] = {"phantom", "training", "evaluation", "app"}
# torch is optional at run time: the runtime imports it lazily, only for TorchScript models.
# batch.py (the `run --cases` command line) shows tqdm progress and may use Dask; the Slicer module never imports it.
OPTIONAL_IMPORTS = {"detection/runtime.py": {"torch"}, "batch.py": {"tqdm", "dask"}}


def library_files():
    return sorted(p for p in LIB.rglob("*.py") if p.relative_to(LIB).parts[0] not in OUTSIDE_SLICER_ONLY)


def test_module_cmakelists_lists_every_library_file():
    cmake = (ROOT / "LandmarkInit" / "CMakeLists.txt").read_text()
    listed = set(re.findall(r"^\s*(LandmarkInitLib/\S+\.py)\s*$", cmake, re.MULTILINE))
    present = {str(p.relative_to(ROOT / "LandmarkInit")) for p in LIB.rglob("*.py")}
    assert listed == present, f"missing from CMake: {present - listed}; listed but absent: {listed - present}"


def test_library_imports_only_what_slicer_bundles():
    stdlib = set(sys.stdlib_module_names)
    offenders = []
    for path in library_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                optional = OPTIONAL_IMPORTS.get(str(path.relative_to(LIB)), set())
                if top not in stdlib and top not in SLICER_BUNDLED | optional and top != "LandmarkInitLib":
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders


def test_pure_modules_import_without_slicer_or_vtk():
    code = (
        "import sys\n"
        "import LandmarkInitLib.registration, LandmarkInitLib.landmark_set, LandmarkInitLib.geometry\n"
        "import LandmarkInitLib.landmarks, LandmarkInitLib.errors, LandmarkInitLib.report\n"
        "bad = [m for m in ('slicer', 'vtk', 'vtkmodules') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_onnx_runtime_path_works_without_torch_installed():
    """The Slicer-side import graph: runtime, model card, preprocessing load with torch made unimportable."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None; sys.modules['monai'] = None; sys.modules['scipy'] = None\n"
        "sys.modules['matplotlib'] = None\n"
        "from LandmarkInitLib.detection import runtime, model_card, preprocess, model_grid\n"
        "from LandmarkInitLib import dataset, markups_io, transform_io, live_update, resources\n"
        "from LandmarkInitLib import initialization, pipeline, quality, intensity_registration, overlay_figure\n"
        "assert not runtime.torch_available()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
