"""The layout is the architecture: the Slicer extension installs exactly the runtime library and the shipped
models; the product imports only what Slicer bundles, and never the research bench, which may import the product."""

from __future__ import annotations

import ast
import subprocess
import sys

from extension_layout import (
    FRONT_ENDS,
    LIB,
    MODULE_DIR,
    ROOT,
    cmake_scripts,
    cmake_text,
    front_end_files,
    imported_modules,
    installed_data_files,
    product_files,
    research_files,
)

SLICER_BUNDLED = {"numpy", "vtk", "vtkmodules", "SimpleITK", "slicer", "onnxruntime"}
# torch is optional at run time: the runtime imports it lazily, only for TorchScript models.
# The batch (`run --cases`) shows tqdm progress and may use Dask; the Slicer module never imports it.
OPTIONAL_IMPORTS = {"detection/detectors.py": {"torch"}, "pipeline/batch.py": {"tqdm", "dask"}}


def test_the_extension_installs_exactly_the_module_and_the_runtime_library():
    expected = {MODULE_DIR / "LandmarkInit.py", *product_files()}
    listed = cmake_scripts()
    assert listed == expected, f"missing from CMake: {expected - listed}; listed but not runtime: {listed - expected}"
    assert not any(p.relative_to(LIB).parts[0] in FRONT_ENDS for p in listed if LIB in p.parents)


def test_the_cmake_files_install_nothing_else():
    """Besides the script list and the data files checked above, no CMake line installs or names anything of the
    front ends or the research bench."""

    def code(text):  # without comments
        return "\n".join(line.split("#", 1)[0] for line in text.splitlines())

    module_cmake = code(cmake_text())
    top_cmake = code((ROOT / "CMakeLists.txt").read_text())
    for text in (module_cmake, top_cmake):
        for outside in ("LandmarkInitResearch", "LandmarkInitLib/cli", "LandmarkInitLib/app", "install(DIRECTORY"):
            assert outside not in text, outside
    assert top_cmake.count("install(") == 0 and module_cmake.count("install(") == 1  # the data files' loop


def test_the_extension_installs_only_the_shipped_models_and_the_sample_data():
    files = installed_data_files()
    models = {p for p in files if p.parent == ROOT / "Resources" / "Models"}
    assert {p.suffix for p in models} == {".json", ".onnx", ".pt"}, models
    assert all(p.is_relative_to(ROOT / "Resources" / "SampleData") for p in files - models)
    assert {p.name for p in models} >= {"mr_landmarks.json", "us_landmarks.json", "qa_thresholds.json"}
    for onnx in (p for p in models if p.suffix == ".onnx"):  # every network in both runtimes, with its card
        assert onnx.with_suffix(".pt") in models and onnx.with_suffix(".json") in models


def test_the_product_imports_only_what_slicer_bundles():
    stdlib = set(sys.stdlib_module_names)
    offenders = []
    for path in product_files():
        optional = OPTIONAL_IMPORTS.get(path.relative_to(LIB).as_posix(), set())
        for name in imported_modules(path):
            top = name.split(".")[0]
            if top not in stdlib | SLICER_BUNDLED | optional | {"LandmarkInitLib"}:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders


def test_the_product_never_imports_its_front_ends_or_the_research_bench():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in product_files() + [MODULE_DIR / "LandmarkInit.py"]
        for name in imported_modules(path)
        if name.startswith("LandmarkInitResearch") or any(name.startswith(f"LandmarkInitLib.{f}") for f in FRONT_ENDS)
    ]
    offenders += [
        f"{path.relative_to(ROOT)}: {name}"
        for path in front_end_files()
        for name in imported_modules(path)
        if name.startswith("LandmarkInitResearch")  # the command line finds the research commands by entry point
    ]
    assert not offenders, offenders


def test_no_product_module_names_the_research_bench_even_as_a_string():
    """Imports by name (importlib.import_module("..."), __import__) are invisible to the import checks above."""
    offenders = []
    for path in product_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                if "LandmarkInitResearch" in node.value:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


def test_the_research_bench_uses_the_product_and_not_the_browser_app():
    imports = {path: imported_modules(path) for path in research_files()}
    assert any(n.startswith("LandmarkInitLib.detection") for names in imports.values() for n in names)
    offenders = [
        f"{p.relative_to(ROOT)}: {n}" for p, names in imports.items() for n in names if "LandmarkInitLib.app" in n
    ]
    assert not offenders, offenders


def test_every_product_module_imports_with_the_research_bench_and_front_ends_unimportable():
    modules = [
        ".".join(p.relative_to(LIB.parent).with_suffix("").parts).removesuffix(".__init__") for p in product_files()
    ]
    code = (
        "import importlib, sys\n"
        "for blocked in ('LandmarkInitResearch', 'LandmarkInitLib.cli', 'LandmarkInitLib.app', 'torch', 'monai',\n"
        "                'scipy', 'matplotlib', 'trame', 'trame_slicer'):\n"
        "    sys.modules[blocked] = None\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "from LandmarkInitLib.detection.detectors import torch_available\n"
        "assert not torch_available()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_pure_modules_import_without_slicer_or_vtk():
    code = (
        "import sys\n"
        "import LandmarkInitLib.fit.landmark_fit, LandmarkInitLib.landmarks, LandmarkInitLib.geometry\n"
        "import LandmarkInitLib.errors\n"
        "bad = [m for m in ('slicer', 'vtk', 'vtkmodules') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_release_0_1_module_names_still_import_with_a_warning():
    code = (
        "import warnings\n"
        "warnings.simplefilter('error')\n"
        "try:\n"
        "    from LandmarkInitLib.workflow import LandmarkSession\n"
        "except FutureWarning as e:\n"
        "    assert 'LandmarkInitLib.session' in str(e), e\n"
        "else:\n"
        "    raise AssertionError('no warning')\n"
        "warnings.simplefilter('ignore')\n"
        "from LandmarkInitLib.workflow import LandmarkSession\n"
        "from LandmarkInitLib.session import LandmarkSession as New\n"
        "assert LandmarkSession is New\n"
        "from LandmarkInitLib.registration import fit_rigid\n"
        "from LandmarkInitLib.fit.landmark_fit import fit_rigid as new_fit\n"
        "assert fit_rigid is new_fit\n"
        "from LandmarkInitLib.pipeline import run_case\n"
        "from LandmarkInitLib.pipeline.run import run_case as new_run\n"
        "assert run_case is new_run\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
