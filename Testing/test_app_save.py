"""Save in the browser app, on the app object itself (no browser): its real Slicer runtime, the shipped sample pair
and ONNX detectors, the page's state. Saves stay inside the server's output folder, a dataset case is never written
over, a save that fails says why in the page, and `landmarkinit app` refuses what it cannot serve in one line."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trame_slicer")

SAVED = ("mr_landmarks.mrk.json", "us_landmarks.mrk.json", "mr_to_us.h5")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app with the sample pair detected; its output folder (--output-dir) does not exist yet."""
    from LandmarkInitLib.app.server import LandmarkInitApp
    from LandmarkInitLib.resources import sample_case_dir

    app = LandmarkInitApp("test-app-save", output_dir=tmp_path_factory.mktemp("app-save") / "output", backend="onnx")
    app.load_paths(sample_case_dir() / "mr.nrrd", sample_case_dir() / "us.nrrd")
    asyncio.run(app.detect())
    assert app.state.detected and not app.state.error_message
    yield app
    app.context.clear()


def save(app, subfolder: str, overwrite: bool = False) -> tuple[str, str]:
    """Save as the page does (its folder field and Overwrite box); returns the page's (error, info) messages."""
    app.state.save_folder = subfolder
    app.state.overwrite = overwrite
    app.save()
    return app.state.error_message, app.state.info_message


def saved_ok(app, subfolder: str, overwrite: bool = False) -> Path:
    error, info = save(app, subfolder, overwrite)
    folder = (app.output_root / subfolder).resolve()
    assert (error, info) == ("", f"Saved {', '.join(SAVED)} to {folder}")
    assert app.state.saved_files == list(SAVED) and all((folder / name).is_file() for name in SAVED)
    return folder


def refused(app, subfolder: str, overwrite: bool = False) -> str:
    """A refused or failed Save: the page says why, and nothing of an earlier Save is offered any more."""
    error, info = save(app, subfolder, overwrite)
    assert error.startswith("Not saved: ") and info == "", (error, info)
    assert app.state.saved_files == [] and app.saved == {}
    return error


def test_saves_stay_inside_the_output_folder(app, tmp_path):
    from LandmarkInitLib.resources import sample_case_dir

    root = app.output_root
    assert saved_ok(app, "") == root  # empty: the output folder itself, created at the first Save
    case = shutil.copytree(sample_case_dir(), tmp_path / "case")  # a dataset case outside: its files are ground truth
    before = {p.name: p.read_bytes() for p in case.iterdir()}
    (root / "link").symlink_to(tmp_path)
    for subfolder in (str(tmp_path / "elsewhere"), "../escape", "sub/../../escape", "link/inside", str(case)):
        error = refused(app, subfolder, overwrite=True)
        assert error == (
            f"Not saved: {subfolder} is outside the output folder {root}; give a subfolder of it "
            "(empty: the output folder itself)"
        )
    assert not (tmp_path / "elsewhere").exists() and not (root.parent / "escape").exists()
    assert not (tmp_path / "inside").exists() and not (root / "sub").exists()
    assert {p.name: p.read_bytes() for p in case.iterdir()} == before

    # Inside: new folders at any depth, `..` that stays inside, the absolute path of a subfolder.
    saved_ok(app, "a/b/c")
    assert saved_ok(app, "a/../d") == root / "d"
    assert saved_ok(app, str(root / "e")) == root / "e"


def test_inside_the_output_folder_overwrite_replaces_only_a_saved_result(app):
    from LandmarkInitLib.resources import sample_case_dir

    root = app.output_root
    case = shutil.copytree(sample_case_dir(), root / "case_0000")
    before = {p.name: p.read_bytes() for p in case.iterdir()}
    assert refused(app, "case_0000", overwrite=True) == (
        f"Not saved: {case} holds a dataset case (mr.nrrd, us.nrrd, mr_gland.nrrd, us_gland.nrrd, case.json), "
        "whose landmark and transform files are ground truth; choose another subfolder"
    )
    assert {p.name: p.read_bytes() for p in case.iterdir()} == before

    folder = saved_ok(app, "result")
    (folder / "notes.txt").write_text("mine\n")
    assert refused(app, "result") == (
        f"Not saved: {folder} already holds {', '.join(SAVED)}; choose another folder or confirm overwriting"
    )
    saved_ok(app, "result", overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted((*SAVED, "notes.txt"))
    assert (folder / "notes.txt").read_text() == "mine\n"


def test_a_save_into_a_file_says_why(app):
    root = app.output_root
    saved_ok(app, "before-the-file")
    (root / "a-file").write_text("not a folder\n")
    assert refused(app, "a-file") == f"Not saved: {root / 'a-file'} is a file, not a folder; choose another subfolder"
    assert (
        refused(app, "a-file/sub") == f"Not saved: cannot create the folder {root / 'a-file' / 'sub'} (Not a directory)"
    )
    assert (root / "a-file").read_text() == "not a folder\n"


@pytest.fixture
def mounted_tmpfs(app):
    """Mount a small tmpfs inside the output folder (root ignores mode bits: a chmod'ed folder stays writable for
    it, a read-only file system does not); always unmounted."""
    mounted = []

    def mount(name: str, options: str) -> Path:
        folder = app.output_root / name
        folder.mkdir(parents=True)
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
        )
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_read_only_or_full_folder_says_why(app, mounted_tmpfs):
    read_only = mounted_tmpfs("read-only", "ro,size=64k")
    saved_ok(app, "before-read-only")
    assert refused(app, "read-only") == f"Not saved: cannot write in {read_only} (Read-only file system)"
    assert (
        refused(app, "read-only/new")
        == f"Not saved: cannot create the folder {read_only / 'new'} (Read-only file system)"
    )

    full = mounted_tmpfs("full", "size=64k")
    with open(full / "filler", "wb") as f, pytest.raises(OSError):
        f.write(b"\0" * 128 * 1024)
        f.flush()
    saved_ok(app, "before-full")
    assert refused(app, "full") == f"Not saved: cannot write in {full} (the disk is full: 0 KiB free)"
    assert sorted(p.name for p in full.iterdir()) == ["filler"]


def run_app_command(*args, prefix=()) -> subprocess.CompletedProcess:
    cmd = [*prefix, sys.executable, "-m", "LandmarkInitLib.cli", "app", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_app_on_a_busy_port_says_so_in_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_app_command("--port", str(port), "--host", "127.0.0.1")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (
        f"landmarkinit app: error: port {port} on 127.0.0.1 is in use; choose another --port or 0 for a free one\n"
    )


def test_app_refuses_unreadable_inputs_in_one_line(tmp_path):
    """As root, mode bits are ignored: the command runs without the capabilities that override them."""
    from LandmarkInitLib.resources import sample_case_dir

    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to run without root's file access override")
    locked_dir, locked_file = tmp_path / "dicom", tmp_path / "mr.nrrd"
    locked_dir.mkdir()
    shutil.copy(sample_case_dir() / "mr.nrrd", locked_file)
    locked_dir.chmod(0)
    locked_file.chmod(0)
    unprivileged = (setpriv, "--bounding-set=-dac_override,-dac_read_search")
    us = str(sample_case_dir() / "us.nrrd")
    for path in (locked_dir, locked_file):
        r = run_app_command("--mr", str(path), "--us", us, prefix=unprivileged)
        if "setpriv" in r.stderr:
            pytest.skip(f"setpriv cannot drop capabilities here: {r.stderr.strip()}")
        assert r.returncode == 2, r.stderr
        assert (
            r.stderr == f"landmarkinit app: error: {path} cannot be read (Permission denied); check its permissions\n"
        )


def test_the_models_folder_setting_is_used_at_the_next_detect_and_named(app, tmp_path):
    from test_models_folder import fast_folder

    assert app.state.models_text.startswith("MR model: mr_landmarks_two-stage (shipped, card sha256 ")
    site = fast_folder(tmp_path / "site", "mr")
    try:
        app.state.models_folder = str(site)
        asyncio.run(app.detect(True))
        assert app.state.error_message == "" and app.state.detected
        assert app.state.models_text.startswith(f"MR model: mr_landmarks_g2l-global (from {site}, card sha256 ")
        assert "; US model: us_landmarks_two-stage (shipped, card sha256 " in app.state.models_text
        app.state.models_folder = str(tmp_path / "nowhere")
        asyncio.run(app.detect(True))
        assert app.state.error_message.startswith(f"Detect failed: models folder {tmp_path / 'nowhere'} does not exist")
        assert "(from " in app.state.models_text  # still the models of the detections shown
    finally:
        app.state.models_folder = ""
        asyncio.run(app.detect(True))
    assert app.state.models_text.startswith("MR model: mr_landmarks_two-stage (shipped, card sha256 ")


def test_app_refuses_a_models_folder_it_cannot_use_before_starting(tmp_path, capsys):
    from LandmarkInitLib.cli import main

    assert main(["app", "--models", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"landmarkinit app: error: models folder {tmp_path / 'nowhere'} does not exist;")
    assert err.count("\n") == 1


def test_save_adds_a_corrected_case_to_the_site_dataset_only_when_asked(app):
    """The corrections log: off by default; on, a Save with a point moved from its detected position adds the case
    (the same volumes again: updates it), a Save with no point moved says it added nothing."""
    from LandmarkInitLib.io.datasets import open_dataset
    from LandmarkInitLib.io.site_dataset import NOT_MOVED_MESSAGE

    site = app.output_root / "site-dataset"  # no --site-dataset: inside the output folder, shown in the page
    assert app.state.add_to_site_dataset is False and app.state.site_dataset == str(site) == str(app.site_dataset)
    node = app.session.us_node
    label, p = node.GetNthControlPointLabel(0), node.GetNthControlPointPosition(0)
    try:
        node.SetNthControlPointPosition(0, p[0], p[1] + 2.5, p[2])
        saved_ok(app, "site-off")
        assert not site.exists()

        app.state.add_to_site_dataset = True
        error, info = save(app, "site-on")
        (case,) = site.iterdir()
        folder = app.output_root / "site-on"
        assert (error, info) == (
            "",
            f"Saved {', '.join(SAVED)} to {folder}; added to site dataset {site} as {case.name}",
        )
        (opened,) = open_dataset(site)
        assert opened.meta["source"] == "app" and set(opened.meta["models"]) == {"mr", "us"}
        assert opened.meta["correction_mm"]["us"][label] == pytest.approx(2.5, abs=1e-4)
        assert opened.landmarks("us").point(label) == pytest.approx([p[0], p[1] + 2.5, p[2]])
        error, info = save(app, "site-on", overwrite=True)
        assert (error, info) == (
            "",
            f"Saved {', '.join(SAVED)} to {folder}; updated {case.name} in site dataset {site}",
        )
        assert [c.name for c in site.iterdir()] == [case.name]
    finally:
        app.session.reset_landmark("us", label)
    try:
        error, info = save(app, "site-unmoved")
        assert (error, info) == (
            "",
            f"Saved {', '.join(SAVED)} to {app.output_root / 'site-unmoved'}; {NOT_MOVED_MESSAGE}",
        )
    finally:
        app.state.add_to_site_dataset = False
    assert [c.name for c in site.iterdir()] == [case.name]


def test_app_refuses_a_site_dataset_that_is_a_file_in_one_line(tmp_path):
    a_file = tmp_path / "site"
    a_file.write_text("not a folder\n")
    r = run_app_command("--site-dataset", str(a_file), "--output-dir", str(tmp_path / "out"))
    assert r.returncode == 2 and r.stdout == ""
    assert (
        r.stderr
        == f"landmarkinit app: error: --site-dataset {a_file} is a file; give a folder (created at the first case)\n"
    )
