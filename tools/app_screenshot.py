"""Screenshot of the browser app on the shipped (synthetic) sample pair after Detect, for the README.

    .venv/bin/python tools/app_screenshot.py docs/images/app.png

Starts `landmarkinit app` on a free loopback port, drives Debian's chromium (headless) with Playwright, presses
Detect, waits for the fit and the views, saves the page as PNG and stops the server.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--size", default="1600x900", help="browser window, WIDTHxHEIGHT (CSS pixels)")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    server = subprocess.Popen(
        [sys.executable, "-m", "LandmarkInitLib.cli", "app", "--port", "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        url = server.stdout.readline().split(": ", 1)[1].strip()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(url)
            page.click("[data-testid=detect]")
            page.get_by_role("button", name="Apex", exact=True).wait_for(timeout=60_000)
            page.wait_for_function(
                "() => Array.from(document.querySelectorAll('img.image-display-area')).every(i => i.naturalWidth)"
            )
            time.sleep(2.0)  # the views' final (full-quality) frames after the interactive ones
            args.output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.output))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
