"""The browser app (`landmarkinit app`) driven end to end in a real browser: Debian's chromium, headless,
through Playwright; the server is the real command on a free loopback port, on the shipped synthetic sample
pair, with the shipped ONNX detectors. Saved files are read back with Slicer's own readers (slicer-core)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWS = ("us", "mr", "fused")  # left to right in the page
SAVED = ("mr_landmarks.mrk.json", "us_landmarks.mrk.json", "mr_to_us.h5")

pytestmark = [
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def output_root(tmp_path_factory) -> Path:
    """The server's --output-dir: Save writes into it or its subfolders only."""
    return tmp_path_factory.mktemp("app-output").resolve()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, output_root):
    """`landmarkinit app` on a free loopback port (the sample pair); stopped after the module's tests."""
    log = tmp_path_factory.mktemp("app-log") / "server.log"
    # --backend onnx: the runtime a Slicer without torch uses (the default, auto, picks TorchScript here)
    cmd = [sys.executable, "-m", "LandmarkInitLib.cli", "app", "--port", "0", "--host", "127.0.0.1"]
    cmd += ["--backend", "onnx", "--output-dir", str(output_root)]
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, cwd=tmp_path_factory.mktemp("app-cwd"))
    try:
        line = proc.stdout.readline().decode()  # blocks until the server prints its URL (or exits)
        assert line.startswith("LandmarkInit app: http://127.0.0.1:"), f"no URL printed: {line!r}\n{log.read_text()}"
        yield line.split(": ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    assert CHROMIUM.exists(), f"{CHROMIUM} missing: make setup installs Debian chromium (requirements/debian.txt)"
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, app_url):
    page = browser.new_page(viewport={"width": 1500, "height": 850}, accept_downloads=True)
    page.goto(app_url)
    wait_for_views(page)
    yield page
    page.close()


def wait_for_views(page) -> None:
    """The three slice views have received a rendered image from the server."""
    page.wait_for_function(
        "() => { const imgs = document.querySelectorAll('img.image-display-area');"
        " return imgs.length === 3 && Array.from(imgs).every(i => i.naturalWidth > 0); }",
        timeout=60_000,
    )


def debug_state(page) -> dict:
    return json.loads(page.locator("#lm-debug").text_content())


def view_image(page, key: str):
    return page.locator("img.image-display-area").nth(VIEWS.index(key))


def screen_position(page, key: str, label: str) -> tuple[float, float]:
    """Page coordinates (CSS px) of a landmark in a view, from the server's slice geometry (fractions from the
    view's top-left) and the view's box in the page."""
    fx, fy, distance_mm = debug_state(page)["view_points"][key]["points"][label]
    assert distance_mm < 0.5, f"{label} is not on the {key} view's slice ({distance_mm} mm away)"
    box = view_image(page, key).bounding_box()
    return box["x"] + fx * box["width"], box["y"] + fy * box["height"]


def run_detect(page, button: str = "detect") -> dict:
    """Press Detect; returns the debug state after the fit. Asserts the progress bar was shown."""
    count = debug_state(page)["refit_count"]
    page.evaluate(
        "() => { window.__progressSeen = false; new MutationObserver(() => {"
        " if (document.querySelector('[data-testid=progress]')) window.__progressSeen = true; })"
        ".observe(document.body, {childList: true, subtree: true}); }"
    )
    page.click(f"[data-testid={button}]")
    page.wait_for_function(
        f"() => JSON.parse(document.querySelector('#lm-debug').textContent).refit_count > {count}", timeout=60_000
    )
    assert page.evaluate("window.__progressSeen"), "no progress indicator was shown during Detect"
    return debug_state(page)


def save_to(page, root: Path, subfolder: str) -> Path:
    """Save into a subfolder of the server's output folder; returns that folder."""
    folder = root / subfolder
    page.fill("[data-testid=output-dir] input", subfolder)
    page.click("[data-testid=save]")
    page.wait_for_function(
        "(f) => document.body.innerText.includes('Saved ') && document.body.innerText.includes(f)",
        arg=str(folder),
        timeout=30_000,
    )
    return folder


def read_back(folder: Path):
    """The saved files, read with Slicer's markups and transform readers (RAS)."""
    from LandmarkInitLib.io.markups import read_landmarks_file
    from LandmarkInitLib.io.scene import create_context
    from LandmarkInitLib.io.transforms import load_transform, transform_matrix

    context = create_context()
    _, mr = read_landmarks_file(context, folder / SAVED[0])
    _, us = read_landmarks_file(context, folder / SAVED[1])
    matrix = transform_matrix(load_transform(context, folder / SAVED[2]))
    context.clear()
    return mr, us, matrix


def fused_pixels(page) -> np.ndarray:
    from io import BytesIO

    from PIL import Image

    return np.asarray(Image.open(BytesIO(view_image(page, "fused").screenshot())).convert("L"), dtype=float)


def test_detect_drag_save_in_the_browser(page, output_root):
    state = run_detect(page)
    assert set(state["view_points"]) == set(VIEWS)
    page.get_by_role("button", name="Apex", exact=True).wait_for()
    assert "detected with onnx" in page.inner_text("body")  # the page says which runtime ran
    assert page.inner_text("#lm-models").startswith("MR model: mr_landmarks_two-stage (shipped, card sha256 ")
    assert page.get_by_test_id("models-folder").is_visible()  # the Models folder setting is in the panel
    matrix_detected = np.array(state["matrix"])

    detected = save_to(page, output_root, "detected")
    mr0, us0, m0 = read_back(detected)
    np.testing.assert_allclose(m0, matrix_detected, atol=1e-3)  # the page shows the server's transform

    # Download offered: the bytes are those of the saved file.
    with page.expect_download() as download:
        page.get_by_role("button", name="mr_to_us.h5").click()
    assert Path(download.value.path()).read_bytes() == (detected / "mr_to_us.h5").read_bytes()

    # Drag the US apex along the screen's x axis, in the US view, with the mouse.
    time.sleep(1.0)  # let the fused view settle before the reference screenshot
    fused_before = fused_pixels(page)
    drag_px = 60
    drag_point(page, "us", "apex", drag_px)
    page.wait_for_selector("[data-testid=error]", state="detached")

    # The fused view re-rendered: MR moved under the transform (far more pixels than a point marker covers).
    deadline, changed = time.monotonic() + 15, 0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        after = fused_pixels(page)
        changed = int(np.count_nonzero(np.abs(after - fused_before) > 12)) if after.shape == fused_before.shape else 0
        if changed > 5000:
            break
    assert changed > 5000, f"fused view barely changed after the drag ({changed} pixels)"

    state_after = debug_state(page)
    mr1, us1, m1 = read_back(save_to(page, output_root, "dragged"))
    np.testing.assert_allclose(m1, np.array(state_after["matrix"]), atol=1e-3)  # page == server
    assert us1.labels == us0.labels and mr1.labels == mr0.labels

    # Only the US apex moved, in the US view's (axial) plane, by about the dragged distance.
    np.testing.assert_allclose(mr1.points_ras, mr0.points_ras, atol=1e-6)
    apex = us0.labels.index("apex")
    others = [i for i in range(len(us0.labels)) if i != apex]
    np.testing.assert_allclose(us1.points_ras[others], us0.points_ras[others], atol=1e-6)
    moved = us1.points_ras[apex] - us0.points_ras[apex]
    box = view_image(page, "us").bounding_box()
    expected_mm = drag_px * state["view_points"]["us"]["fov_mm"][0] / box["width"]
    assert abs(moved[2]) < 0.05 * expected_mm, f"the point left the axial plane: {moved}"
    assert np.linalg.norm(moved) == pytest.approx(expected_mm, rel=0.15)
    # Screen x is patient left (R decreasing) in Slicer's default axial view.
    assert moved[0] < -0.8 * expected_mm

    # The re-fit pulled the MR apex's image towards the moved US apex, by part of the move.
    p = np.append(mr0.points_ras[mr0.labels.index("apex")], 1.0)
    shift = (m1 @ p - m0 @ p)[:3]
    along = shift @ moved / np.linalg.norm(moved)
    assert 0.1 * np.linalg.norm(moved) < along <= np.linalg.norm(moved) + 1e-6, (shift, moved)
    assert not np.allclose(m1, m0, atol=1e-3)

    # Detect again: it refuses to overwrite the edit until confirmed, then restores the detected fit.
    page.click("[data-testid=detect]")
    page.locator("[data-testid=error]").filter(has_text="overwrite your edits of US Apex").wait_for()
    state = run_detect(page, "detect-overwrite")
    np.testing.assert_allclose(np.array(state["matrix"]), m0, atol=1e-3)


def test_bad_uploads_show_an_error_and_the_app_keeps_working(page, tmp_path, output_root):
    import SimpleITK as sitk

    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("not an image\n")
    corrupt = tmp_path / "corrupt.nrrd"
    corrupt.write_bytes(b"NRRD0004\ntype: what\n\n\x00\x01")
    flat = tmp_path / "slice2d.nrrd"
    sitk.WriteImage(sitk.Image(32, 24, sitk.sitkUInt8), str(flat))

    for path, expected in ((not_an_image, "unsupported volume format"), (corrupt, "could not be read"), (flat, "3-D")):
        page.set_input_files("[data-testid=upload-us] input[type=file]", str(path))
        alert = page.locator("[data-testid=error]")
        alert.wait_for(timeout=20_000)
        text = alert.inner_text()
        assert "US upload not loaded" in text and path.name in text and expected in text, text
        page.click("[data-testid=error] button")  # close it; the next error must appear afresh
        alert.wait_for(state="detached", timeout=5_000)

    # Still working on the volumes it had: Detect fits and the views are there.
    state = run_detect(page)
    assert state["matrix"] and state["view_points"]["us"]["points"]
    assert page.locator("[data-testid=error]").count() == 0
    wait_for_views(page)

    # A Save outside the output folder is refused in the page, and the earlier Save's message goes.
    save_to(page, output_root, "kept")
    page.fill("[data-testid=output-dir] input", str(tmp_path))
    page.click("[data-testid=save]")
    page.locator("[data-testid=error]").filter(
        has_text=f"Not saved: {tmp_path} is outside the output folder"
    ).wait_for()
    assert "Saved " not in page.inner_text("body") and not (tmp_path / "mr_to_us.h5").exists()
    assert page.get_by_role("button", name="mr_to_us.h5").count() == 0  # no Download of the earlier Save

    # Orientation switch: the US view shows another plane, still through the landmark in focus.
    time.sleep(1.0)
    axial = view_image(page, "us").screenshot()
    page.get_by_role("button", name="Sagittal").click()
    page.wait_for_function(
        "(fov) => JSON.stringify(JSON.parse(document.querySelector('#lm-debug').textContent)"
        ".view_points.us.fov_mm) !== fov",
        arg=json.dumps(state["view_points"]["us"]["fov_mm"]),
        timeout=20_000,
    )
    assert screen_position(page, "us", "apex")  # on the new slice (asserted inside)
    deadline = time.monotonic() + 15
    while view_image(page, "us").screenshot() == axial and time.monotonic() < deadline:
        time.sleep(0.5)
    assert view_image(page, "us").screenshot() != axial, "the US view did not change to the sagittal plane"


def drag_point(page, key: str, label: str, drag_px: int) -> None:
    """Drag a landmark along the screen's x axis in a view, with the mouse, and wait for the re-fit."""
    matrix = json.dumps(debug_state(page)["matrix"])
    x, y = screen_position(page, key, label)
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(1, 13):
        page.mouse.move(x + drag_px * step / 12, y)
        time.sleep(0.03)
    page.mouse.up()
    page.wait_for_function(
        "(m) => JSON.stringify(JSON.parse(document.querySelector('#lm-debug').textContent).matrix) !== m",
        arg=matrix,
        timeout=20_000,
    )


def test_correct_a_point_save_and_the_case_appears_in_the_site_dataset(page, output_root):
    from LandmarkInitLib.io.datasets import open_dataset
    from LandmarkInitLib.io.site_dataset import predicted_landmarks

    site = output_root / "site-dataset"  # the server's default, shown in the panel
    assert f"Site dataset: {site}" in page.inner_text("#lm-site-dataset")
    page.get_by_role("button", name="Axial").click()
    run_detect(page)
    checkbox = page.locator("[data-testid=add-to-site-dataset] input")
    assert not checkbox.is_checked()  # off until the user ticks it
    checkbox.check()
    try:
        drag_point(page, "us", "apex", 40)  # the views are centred on the apex
        folder = save_to(page, output_root, "corrected")
        page.wait_for_function("() => document.body.innerText.includes('added to site dataset')", timeout=30_000)
        (case,) = site.iterdir()
        assert f"added to site dataset {site} as {case.name}" in page.inner_text("body")
        (opened,) = open_dataset(site)
        _, saved_us, _ = read_back(folder)
        assert np.allclose(opened.landmarks("us").points_ras, saved_us.points_ras, atol=1e-6)  # what was saved
        moved = opened.meta["correction_mm"]["us"]
        assert moved["apex"] > 1.0 and moved["bladder_neck"] == moved["posterior_median"] == 0.0
        assert not np.allclose(predicted_landmarks(opened, "us").points_ras, saved_us.points_ras)
    finally:
        checkbox.uncheck()


def _start_app(tmp_path: Path, *options) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "LandmarkInitLib.cli", "app", "--port", "0", "--host", "127.0.0.1", "--backend"]
    cmd += ["onnx", "--output-dir", str(tmp_path / "out"), *options]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=tmp_path)
    line = proc.stdout.readline().decode()
    assert line.startswith("LandmarkInit app: http://127.0.0.1:"), f"no URL printed: {line!r}"
    return proc, line.split(": ", 1)[1].strip()


def test_corrections_saved_in_the_browser_become_a_site_model_that_the_app_then_runs(browser, tmp_path):
    """The loop of issue 23 from the saved files: a point corrected in the browser and saved lands in the site
    dataset; nine more cases with the same correction (the site's convention for the US apex, as its clinicians
    would keep making it) complete it; `finetune` adapts the shipped US global detector and its guard accepts;
    the app started on that models folder runs the new card and names it."""
    import SimpleITK as sitk

    from LandmarkInitLib.cli import main
    from LandmarkInitLib.detection.model_card import load_card
    from LandmarkInitLib.io.datasets import open_dataset
    from LandmarkInitLib.io.site_dataset import add_case, predicted_landmarks
    from LandmarkInitLib.landmarks import LANDMARK_LABELS, LandmarkSet
    from LandmarkInitLib.resources import models_dir, sample_case_dir

    site = tmp_path / "site"
    proc, url = _start_app(tmp_path, "--site-dataset", str(site))
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 850})
        page.goto(url)
        wait_for_views(page)
        run_detect(page)
        page.locator("[data-testid=add-to-site-dataset] input").check()
        drag_point(page, "us", "apex", 60)
        save_to(page, tmp_path / "out", "corrected")
        page.wait_for_function("() => document.body.innerText.includes('added to site dataset')", timeout=30_000)
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    (browser_case,) = open_dataset(site)
    apex = LANDMARK_LABELS.index("apex")
    shift = np.zeros((3, 3))
    shift[apex] = browser_case.landmarks("us").point("apex") - predicted_landmarks(browser_case, "us").point("apex")
    assert np.linalg.norm(shift) > 2.0

    sample = open_dataset(sample_case_dir())[0]
    image = sitk.ReadImage(str(sample.images["us"]))
    truth = sample.landmarks("us").ordered(LANDMARK_LABELS)
    rng = np.random.default_rng(7)
    for i in range(9):  # the same anatomy moved by a few mm, with noise of its own: nine more corrected cases
        move = rng.uniform(-4.0, 4.0, 3)  # RAS
        moved = sitk.Cast(sitk.AdditiveGaussianNoise(image, 3.0, 0.0, i + 1), image.GetPixelID())
        moved = sitk.Mask(moved, sitk.Cast(image > 0, sitk.sitkUInt8))  # the zero background around the fan
        moved.SetOrigin(tuple(np.array(image.GetOrigin()) + move * [-1, -1, 1]))
        points = truth + move
        add_case(
            site,
            {"us": moved},
            {"us": LandmarkSet(LANDMARK_LABELS, points)},
            {"us": LandmarkSet(LANDMARK_LABELS, points + shift)},
            source="cli",
        )
    assert len(open_dataset(site)) == 10

    models = tmp_path / "site_models"
    argv = ["finetune", "--base", str(models_dir() / "us_landmarks_g2l-global.json"), "--data", str(site)]
    argv += ["--output", str(models / "us_landmarks.json"), "--epochs", "6", "--lr", "3e-4", "--threads", "2"]
    assert main([*argv, "--quiet"]) == 0
    card = load_card(models / "us_landmarks.json")
    assert card.name == "us_landmarks_g2l-global_site" and card.data["site_adaptation"]["site_cases"] == 10

    proc, url = _start_app(tmp_path, "--models", str(models))
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 850})
        page.goto(url)
        wait_for_views(page)
        run_detect(page)
        named = page.inner_text("#lm-models")
        assert f"US model: us_landmarks_g2l-global_site (from {models.resolve()}, card sha256 " in named
        assert "MR model: mr_landmarks_two-stage (shipped" in named
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=15)
