"""The documentation states the present: generated pages match what generates them, links resolve, the README
quotes no measured figure (it links to the pages that hold them), and no experiment-session path is left."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_models_page_is_what_the_model_cards_give():
    r = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "write_models_doc.py"), "--check"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    missing = [t for t in targets if "://" not in t and not (page.parent / t).exists()]
    assert not missing, missing


# Paths written in backticks that name files of the repository (not build outputs or data folders).
REPO_PATH = re.compile(
    r"`((?:LandmarkInit|LandmarkInitLib|LandmarkInitResearch|Testing|tools|docs|Resources|requirements)/[^`\s*{}<>]*)`"
)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_repository_paths_in_backticks_exist(page):
    missing = []
    for path in REPO_PATH.findall(page.read_text(encoding="utf-8")):
        base = ROOT / "LandmarkInit" if path.startswith("LandmarkInitLib/") else ROOT
        if not (base / path.rstrip("/")).exists():
            missing.append(path)
    assert not missing, missing


def test_readme_quotes_no_measured_figure():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    figures = re.findall(r"\d+(?:\.\d+)?\s?(?:mm|ms|s|%|MB|cases/min)(?![\w/])", text)
    assert not figures, figures


SESSION_COPIES = "build/" + "shipped_s"  # folders where experiment sessions kept copies of earlier shipped models


def test_no_experiment_session_paths_in_the_tree():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = [
        f
        for f in files
        if not f.endswith((".onnx", ".pt", ".png", ".nrrd", ".h5", ".npz"))
        and (ROOT / f).is_file()
        and SESSION_COPIES in (ROOT / f).read_text(encoding="utf-8", errors="ignore")
    ]
    assert not offenders, offenders
