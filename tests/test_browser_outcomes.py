"""The outcomes in a real browser (Debian chromium via Python Playwright), on tiny random
checkpoints, whose baseline is unsure of everything: a confident finding has no caution line,
a caution says so once, in colour by CSS (no emoji), and a refused CT shows no class or
probability on the page."""
from __future__ import annotations

import re

import numpy as np
import pytest

from tests.appserver import running_app
from tests.conftest import make_tiny_checkpoint
from tests.synthetic import dicom_slice, scan
from tests.test_browser import CHROMIUM, FLAGS, WAIT_MS, drop

sync_api = pytest.importorskip("playwright.sync_api", reason="Python Playwright is not installed")
expect = sync_api.expect
ORANGE_TEXT = "rgb(107, 52, 0)"          # app.CSS: .finding blockquote, the caution line
EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF]")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outcomes")
    for arch in ("baseline", "resnet50"):
        make_tiny_checkpoint(tmp / f"{arch}.safetensors", arch)
    with running_app(tmp, tmp / "app.log", args=["--examples", str(tmp / "none")]) as url, \
            sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        page.goto(url)
        yield page, tmp
        browser.close()


def test_caution_once_in_colour_and_a_refusal_without_a_class(page):
    page, tmp = page
    image = tmp / "scan.png"
    scan(seed=1, size=200).save(image)
    drop(page, image)
    headline = page.locator("#headline")
    expect(headline).to_contain_text("not a diagnosis")
    assert "caution" not in headline.inner_text().lower()       # the ResNet-50 is sure
    expect(page.locator("#headline.finding blockquote")).to_have_count(0)

    page.get_by_role("tab", name="Compare").click()              # the baseline is unsure
    finding = page.locator("[id^=finding-].finding", has_text="Treat with caution").first
    expect(finding).to_contain_text("Treat with caution")
    text = finding.inner_text()
    assert text.lower().count("caution") == 1 and not EMOJI.search(text)
    line = finding.locator("blockquote")
    expect(line).to_have_count(1)
    assert line.evaluate("e => getComputedStyle(e).color") == ORANGE_TEXT

    page.get_by_role("tab", name="Classify").click()
    ct = tmp / "ct.dcm"
    ct.write_bytes(dicom_slice(np.asarray(scan(seed=2, size=64), np.uint16) * 16, modality="CT"))
    drop(page, ct)
    expect(headline).to_contain_text("modality CT")
    # The refusal's headline can arrive while the run's progress line ("Running ResNet-50 -
    # 10.0%") is still drawn over it: wait for the settled page, then no class, no percentage.
    for box in ("#headline", "#bars"):
        expect(page.locator(box)).not_to_contain_text(
            re.compile("%|glioma|meningioma|pituitary|no tumour", re.I))
