"""What the Slicer extension installs, read from LandmarkInit/CMakeLists.txt, and which files make up the product,
the front ends and the research bench; shared by the layout and Slicer-module tests."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = ROOT / "LandmarkInit"
LIB = MODULE_DIR / "LandmarkInitLib"
RESEARCH = ROOT / "LandmarkInitResearch"
# Front ends inside the library package that never run in Slicer (the command line, the browser app).
FRONT_ENDS = ("cli", "app")


def product_files() -> list[Path]:
    """The runtime library: every module of LandmarkInitLib but the front ends."""
    return sorted(p for p in LIB.rglob("*.py") if p.relative_to(LIB).parts[0] not in FRONT_ENDS)


def front_end_files() -> list[Path]:
    return sorted(p for p in LIB.rglob("*.py") if p.relative_to(LIB).parts[0] in FRONT_ENDS)


def research_files() -> list[Path]:
    return sorted(RESEARCH.rglob("*.py"))


def cmake_text() -> str:
    return (MODULE_DIR / "CMakeLists.txt").read_text()


def cmake_scripts() -> set[Path]:
    """The Python files the extension installs (MODULE_PYTHON_SCRIPTS), as paths in the repository."""
    block = re.search(r"set\(MODULE_PYTHON_SCRIPTS(.*?)\n  \)", cmake_text(), re.S).group(1)
    return {MODULE_DIR / name.replace("${MODULE_NAME}", "LandmarkInit") for name in block.split()}


def cmake_data_globs() -> list[str]:
    """The globs (relative to the repository's Resources/) of the data files the extension installs."""
    block = re.search(r"file\(GLOB_RECURSE _data_files RELATIVE \$\{_data_source_dir\}(.*?)\n  \)", cmake_text(), re.S)
    return [g.replace("${_data_source_dir}/", "") for g in block.group(1).split()]


def installed_data_files() -> set[Path]:
    return {p for g in cmake_data_globs() for p in (ROOT / "Resources").glob(g) if p.is_file()}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth of the file (lazy imports inside functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import; the project imports by absolute module names")
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names
