"""The Slicer module files, checked without the Slicer application: LandmarkInit.py compiles and imports only what
Slicer bundles, its library names resolve, the .ui loads in Qt's own loader with every widget the code uses and
every parameter connected, the extension metadata is complete, and the shipped files are found where the
extension installs them. (The module's own self-test, LandmarkInitTest, runs inside Slicer: see the README.)"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from extension_layout import cmake_scripts

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "LandmarkInit" / "LandmarkInit.py"
UI = ROOT / "LandmarkInit" / "Resources" / "UI" / "LandmarkInit.ui"
# Modules of the Slicer application and its bundled Python that LandmarkInit.py may import.
SLICER_PROVIDED = {"ctk", "qt", "vtk", "slicer", "SampleData", "numpy"}
# Parameter types and the widget classes Slicer's parameterNodeWrapper GUI connectors accept for them.
CONNECTABLE = {
    "node": {"qMRMLNodeComboBox"},
    "bool": {"QCheckBox", "ctkCheckBox"},
    "choice": {"QComboBox", "ctkComboBox"},
    "path": {"ctkPathLineEdit", "ctkDirectoryButton"},
}


def module_tree():
    return ast.parse(MODULE.read_text(), str(MODULE))


def parameters():
    """name -> (kind, node class or None) of the @parameterNodeWrapper class in LandmarkInit.py."""
    for node in ast.walk(module_tree()):
        if isinstance(node, ast.ClassDef) and any(
            isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list
        ):
            out = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign):
                    text = ast.unparse(item.annotation)
                    if text == "bool":
                        out[item.target.id] = ("bool", None)
                    elif text in ("pathlib.Path", "Path"):
                        out[item.target.id] = ("path", None)
                    elif "Choice(" in text:
                        out[item.target.id] = ("choice", None)
                    elif text == "pathlib.Path":
                        out[item.target.id] = ("path", None)
                    elif text.startswith("vtkMRML"):
                        out[item.target.id] = ("node", text)
                    else:
                        raise AssertionError(f"parameter {item.target.id}: no widget check for {text}")
            return out
    raise AssertionError("no @parameterNodeWrapper class in LandmarkInit.py")


def test_module_compiles_and_imports_only_what_slicer_bundles():
    compile(MODULE.read_text(), str(MODULE), "exec")
    stdlib = set(sys.stdlib_module_names)
    for node in ast.walk(module_tree()):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            assert top in stdlib | SLICER_PROVIDED | {"LandmarkInitLib"}, f"LandmarkInit.py imports {name}"


def test_library_names_used_by_the_module_resolve_without_training_packages_or_onnxruntime():
    """The module's import graph: every `from LandmarkInitLib.x import y` resolves with torch, MONAI, scipy,
    matplotlib, tqdm, dask and trame unimportable, and importing them does not import onnxruntime (it is
    installed on first use, never needed at import time)."""
    imports = [
        (node.module, [a.name for a in node.names])
        for node in ast.walk(module_tree())
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("LandmarkInitLib")
    ]
    assert imports, "LandmarkInit.py should delegate to LandmarkInitLib"
    code = "import sys\n"
    for blocked in ("torch", "monai", "scipy", "matplotlib", "tqdm", "dask", "trame", "trame_slicer", "onnxruntime"):
        code += f"sys.modules[{blocked!r}] = None\n"
    for module, names in imports:
        code += f"from {module} import {', '.join(names)}\n"
    code += "import LandmarkInitLib.session\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_parameter_defaults_are_valid_choices():
    from LandmarkInitLib.fit.landmark_fit import FIT_MODES
    from LandmarkInitLib.resources import DEFAULT_DETECTOR, DETECTOR_CHOICES

    assert DEFAULT_DETECTOR in DETECTOR_CHOICES
    assert "rigid" in FIT_MODES
    assert set(parameters()) == {
        "mrVolume",
        "usVolume",
        "detector",
        "modelsFolder",
        "mrLandmarks",
        "usLandmarks",
        "outputTransform",
        "fitMode",
        "autoUpdate",
        "addToSiteDataset",
        "siteDataset",
    }


@pytest.fixture(scope="module")
def loaded_ui():
    """The .ui loaded by Qt's QUiLoader (Slicer's own classes fall back to their declared base classes)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication, QWidget

    app = QApplication.instance() or QApplication([])
    widget = QUiLoader().load(str(UI))
    assert widget is not None, "QUiLoader could not load the .ui file"
    children = {w.objectName(): w for w in widget.findChildren(QWidget)}
    yield widget, children
    widget.deleteLater()
    app.processEvents()


def ui_classes():
    """objectName -> class as written in the .ui (the real Slicer/CTK class, before any fallback)."""
    return {w.get("name"): w.get("class") for w in ET.parse(UI).getroot().iter("widget")}


def test_every_widget_the_code_uses_exists_in_the_ui(loaded_ui):
    _, children = loaded_ui
    used = set(re.findall(r"self\.ui\.(\w+)", MODULE.read_text()))
    assert used, "the widget uses no ui elements?"
    missing = sorted(used - set(children))
    assert not missing, f"LandmarkInit.py uses widgets missing from the .ui: {missing}"


def test_every_parameter_is_connected_to_one_suitable_widget(loaded_ui):
    _, children = loaded_ui
    params, classes = parameters(), ui_classes()
    connected = {}
    for name, w in children.items():
        value = w.property("SlicerParameterName")
        if value:
            assert value in params, f"widget {name} names the unknown parameter {value!r}"
            assert value not in connected, f"parameter {value} connected twice ({connected[value]}, {name})"
            connected[value] = name
    unconnected = set(params) - set(connected)
    # the landmark and transform nodes are set by the code too, but the user can also pick existing ones
    assert not unconnected, f"parameters with no widget: {sorted(unconnected)}"
    root = ET.parse(UI).getroot()
    for param, widget_name in connected.items():
        kind, node_class = params[param]
        assert classes[widget_name] in CONNECTABLE[kind], f"{param}: {classes[widget_name]} cannot show a {kind}"
        if kind == "node":
            element = next(w for w in root.iter("widget") if w.get("name") == widget_name)
            prop = next(p for p in element.findall("property") if p.get("name") == "nodeTypes")
            types = [s.text for s in prop.iter("string")]
            assert types == [node_class], f"{widget_name} lists node types {types}, parameter wants {node_class}"


def test_scene_is_passed_to_every_node_selector():
    root = ET.parse(UI).getroot()
    selectors = {w.get("name") for w in root.iter("widget") if w.get("class") == "qMRMLNodeComboBox"}
    scene_link = ("mrmlSceneChanged(vtkMRMLScene*)", "setMRMLScene(vtkMRMLScene*)")
    links = [(c.findtext("signal"), c.findtext("slot"), c.findtext("receiver")) for c in root.iter("connection")]
    receivers = {receiver for signal, slot, receiver in links if (signal, slot) == scene_link}
    assert selectors and selectors <= receivers, f"selectors without the scene: {selectors - receivers}"


def test_module_cmake_lists_the_module_its_resources_and_tests():
    cmake = (ROOT / "LandmarkInit" / "CMakeLists.txt").read_text()
    assert "${MODULE_NAME}.py" in cmake and "WITH_GENERIC_TESTS" in cmake
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in cmake
    resources = re.search(r"set\(MODULE_PYTHON_RESOURCES(.*?)\)", cmake, re.S).group(1).split()
    for resource in resources:
        path = ROOT / "LandmarkInit" / resource.replace("${MODULE_NAME}", "LandmarkInit")
        assert path.is_file(), f"CMake lists the missing resource {path}"
    assert {"Resources/UI/${MODULE_NAME}.ui", "Resources/Icons/${MODULE_NAME}.png"} <= set(resources)


def test_extension_metadata_is_complete_and_agrees_with_the_s4ext():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    variables = dict(re.findall(r'^set\((\w+) "([^"]*)"\)', cmake, re.M))

    def expand(text):
        return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], text)

    meta = {k: expand(v) for k, v in variables.items() if k.startswith("EXTENSION_")}
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS"):
        assert meta[f"EXTENSION_{key}"].strip(), f"EXTENSION_{key} is empty"
    s4ext = {}
    for line in (ROOT / "LandmarkInit.s4ext").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            s4ext[key] = value.strip()
    pairs = {
        "homepage": "HOMEPAGE",
        "category": "CATEGORY",
        "contributors": "CONTRIBUTORS",
        "description": "DESCRIPTION",
        "iconurl": "ICONURL",
        "screenshoturls": "SCREENSHOTURLS",
        "status": "STATUS",
        "depends": "DEPENDS",
    }
    for key, var in pairs.items():
        assert s4ext[key] == meta[f"EXTENSION_{var}"], f".s4ext {key} differs from CMake EXTENSION_{var}"
    for url in [meta["EXTENSION_ICONURL"], *meta["EXTENSION_SCREENSHOTURLS"].split()]:
        local = ROOT / url.split("/main/", 1)[1]
        assert local.is_file(), f"{url} points at {local}, which is not in the repository"
    assert s4ext["scm"] == "git" and s4ext["scmurl"].endswith(".git")


def test_shipped_files_are_found_where_the_extension_installs_them(tmp_path):
    """Lay out a Slicer install as LandmarkInit/CMakeLists.txt does (library beside the module, models in
    Resources/LandmarkInit/Models) and ask the library where its models are."""
    modules = tmp_path / "qt-scripted-modules"
    for script in cmake_scripts():  # exactly what the extension installs beside the module
        target = modules / script.relative_to(ROOT / "LandmarkInit")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(script, target)
    models = modules / "Resources" / "LandmarkInit" / "Models"
    models.mkdir(parents=True)
    shutil.copy(ROOT / "Resources" / "Models" / "mr_landmarks.json", models)
    assert "Resources/LandmarkInit/${_file}" in (ROOT / "LandmarkInit" / "CMakeLists.txt").read_text()
    code = "from LandmarkInitLib.resources import default_model_card; print(default_model_card('mr'))"
    env = {k: v for k, v in os.environ.items() if k != "LANDMARKINIT_MODELS"}
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(modules)!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=env,
    )
    assert Path(out.stdout.strip()) == models / "mr_landmarks.json"


def test_sample_data_source_copies_and_verifies_like_slicers_downloader(context, tmp_path):
    from LandmarkInitLib.io.volumes import load_volume
    from LandmarkInitLib.sample_data import sample_data_source

    icons = ROOT / "LandmarkInit" / "Resources" / "Icons"
    source = sample_data_source(icons)
    # the keywords of SampleDataLogic.registerCustomSampleDataSource (Slicer 5.8-5.13): anything else is a TypeError
    accepted = {
        "category",
        "sampleName",
        "uris",
        "fileNames",
        "nodeNames",
        "customDownloader",
        "thumbnailFileName",
        "loadFileTypes",
        "loadFiles",
        "loadFileProperties",
        "checksums",
        "loadFileType",
    }
    assert set(source) <= accepted, set(source) - accepted
    assert Path(source["thumbnailFileName"]).is_file()
    n = len(source["uris"])
    assert n == len(source["fileNames"]) == len(source["nodeNames"]) == len(source["checksums"]) == 2
    for uri, name, checksum in zip(source["uris"], source["fileNames"], source["checksums"], strict=True):
        target = tmp_path / name
        urllib.request.urlretrieve(uri, target)  # what SampleDataLogic.downloadFile does with the URI
        algorithm, digest = checksum.split(":")
        assert algorithm == "SHA256" and hashlib.sha256(target.read_bytes()).hexdigest() == digest
        node = load_volume(context, target)
        assert min(node.GetImageData().GetDimensions()) > 1
    json.dumps(source)  # plain values only: it goes through Slicer's settings


def test_onnxruntime_is_installed_only_with_consent():
    from LandmarkInitLib.dependencies import DependencyError, ensure_inference_runtime

    asked, installed = [], []

    def ask(answer):
        return lambda question: asked.append(question) or answer

    def install(requirement):
        installed.append(requirement)

    assert ensure_inference_runtime(ask(True), install, preferred="onnx") == "onnx"  # present: nothing asked
    assert asked == [] and installed == []
    missing = {"module": "landmarkinit_missing_runtime", "requirement": "landmarkinit-missing-runtime>=1"}
    with pytest.raises(DependencyError, match="was not installed"):
        ensure_inference_runtime(ask(False), install, preferred="onnx", **missing)
    assert len(asked) == 1 and "landmarkinit-missing-runtime>=1" in asked[0] and installed == []

    def failing(requirement):
        raise subprocess.CalledProcessError(1, ["pip", "install", requirement])

    with pytest.raises(DependencyError, match="installing landmarkinit-missing-runtime>=1 failed"):
        ensure_inference_runtime(ask(True), failing, preferred="onnx", **missing)
    with pytest.raises(DependencyError, match="restart Slicer"):
        ensure_inference_runtime(ask(True), install, preferred="onnx", **missing)
    assert installed == ["landmarkinit-missing-runtime>=1"]
    with pytest.raises(Exception, match="unknown backend"):
        ensure_inference_runtime(ask(True), install, preferred="cuda")


def test_onnx_is_preferred_and_torchscript_runs_when_only_torch_is_present_with_no_install():
    from LandmarkInitLib.dependencies import ensure_inference_runtime, is_available

    if not is_available("torch"):
        pytest.skip("torch not installed")
    never = lambda *a: pytest.fail("nothing should be asked or installed")  # noqa: E731
    assert ensure_inference_runtime(never, never, module="landmarkinit_missing_runtime") == "torchscript"
    assert ensure_inference_runtime(never, never) == "onnx"  # with onnxruntime there too, the fast path


def test_module_and_slicer_side_library_compile_on_slicers_python_312():
    """Current Slicer bundles Python 3.12: the module and the library it runs must at least compile there
    (the full suite runs on 3.11, the project's Python)."""
    candidates = sorted(Path.home().glob(".pyenv/versions/3.12*/bin/python3.12")) + [Path("/usr/bin/python3.12")]
    python312 = next((str(p) for p in candidates if p.is_file()), None)
    if python312 is None:
        pytest.skip("no Python 3.12 interpreter on this machine")
    files = sorted(cmake_scripts())
    assert MODULE in files
    code = "import sys\nfor f in sys.argv[1:]:\n    compile(open(f).read(), f, 'exec')\n"
    out = subprocess.run([python312, "-c", code, *map(str, files)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    version = subprocess.run([python312, "--version"], capture_output=True, text=True).stdout
    assert version.startswith("Python 3.12"), version
