"""The app in a real browser (Debian chromium via Python Playwright): upload, classify, opacity,
compare. Screenshots go to test-output/.

    BRAINMRI_DATA=../shared/data BRAINMRI_SCREENSHOT=1 .venv/bin/python -m pytest -q tests/test_browser.py

With BRAINMRI_SCREENSHOT=1, the shipped checkpoints and a real scan, the Classify screenshot is
also written to docs/screenshot-classify.png for the README.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainmri.classes import CLASSES
from tests.appserver import ROOT, checkpoint_dir, running_app, sample_scan

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
OUT = ROOT / "test-output"
WAIT_MS = 180_000
ANSWER = re.compile("not a diagnosis|does not look like a brain MRI")    # the headline, final

if not CHROMIUM.exists():
    pytest.skip("browser test needs Debian chromium at /usr/bin/chromium "
                "(apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    folder, real_models = checkpoint_dir(tmp)
    scan, real_scan = sample_scan(tmp)
    with running_app(folder, tmp / "app.log") as url:
        yield url, scan, real_models and real_scan


def test_classify_opacity_compare(setup, tmp_path):
    url, scan, real = setup
    OUT.mkdir(exist_ok=True)
    photo = tmp_path / "colour-photo.png"          # plainly colourful: not an MRI slice
    yy, xx = np.mgrid[0:96, 0:96]
    Image.fromarray(np.stack([xx * 2.6, yy * 2.6, 255 - xx * 2.6], 2).astype(np.uint8)).save(photo)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        try:
            page.set_default_timeout(WAIT_MS)
            sync_api.expect.set_options(timeout=WAIT_MS)
            page.goto(url)
            page.locator("#scan input[type=file]").set_input_files(str(scan))
            sync_api.expect(page.locator("#headline")).to_contain_text(ANSWER)
            bars = page.locator("#bars")
            for name in CLASSES:
                sync_api.expect(bars).to_contain_text(name)
            overlay = page.locator("#overlay img")
            sync_api.expect(overlay).to_be_visible()
            sync_api.expect(page.locator("#heatmap img")).to_be_visible()
            before = overlay.get_attribute("src")
            page.screenshot(path=str(OUT / "classify.png"), full_page=True)

            number = page.locator("#opacity input[type=number]")
            number.fill("0.9")
            number.press("Enter")
            page.wait_for_function(
                "before => document.querySelector('#overlay img')?.src !== before", arg=before)
            page.screenshot(path=str(OUT / "classify-opacity.png"), full_page=True)

            page.get_by_text("Did the highlighted region decide?").click()      # the accordion
            page.locator("#recheck-run").click()
            sync_api.expect(page.locator("#recheck")).to_contain_text("Hot region painted out")
            sync_api.expect(page.locator("#recheck")).to_contain_text(
                re.compile("decided this answer|holds without the highlighted region"))
            sync_api.expect(page.locator("#recheck-overlay img")).to_be_visible()
            page.screenshot(path=str(OUT / "classify-recheck.png"), full_page=True)

            page.locator("#scan input[type=file]").set_input_files(str(photo))
            sync_api.expect(page.locator("#headline")).to_contain_text(
                "does not look like a brain MRI slice")
            sync_api.expect(bars).to_have_class(re.compile("flagged"))     # greyed, relabelled
            page.screenshot(path=str(OUT / "classify-not-mri.png"), full_page=True)

            page.get_by_role("tab", name="Compare").click()
            page.locator("#compare-scan input[type=file]").set_input_files(str(scan))
            sync_api.expect(page.locator("#agreement")).to_contain_text(re.compile("agree|no finding"))
            for m in ("baseline", "resnet50"):
                sync_api.expect(page.locator(f"#finding-{m}")).to_contain_text(ANSWER)
                sync_api.expect(page.locator(f"#overlay-{m} img")).to_be_visible()
            page.screenshot(path=str(OUT / "compare.png"), full_page=True)

            page.get_by_role("tab", name="About").click()
            sync_api.expect(page.get_by_text("Known limitations")).to_be_visible()
        except Exception:
            page.screenshot(path=str(OUT / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    if real and os.environ.get("BRAINMRI_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(OUT / "classify.png", ROOT / "docs" / "screenshot-classify.png")
