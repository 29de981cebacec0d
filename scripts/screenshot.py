"""Screenshot of the app's Classify tab on one scan, for the README (needs Debian chromium).

    .venv/bin/python scripts/screenshot.py --scan ../shared/data/brain-tumor-mri/Testing/glioma/Te-gl_0010.jpg

Runs the app in this process on a free local port with the checkpoints in --checkpoints,
uploads --scan in headless chromium, waits for the answer and writes --out.
"""
from __future__ import annotations

import argparse
import re
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
ANSWER = re.compile("not a diagnosis|does not look like a brain MRI")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scan", type=Path, required=True, help="the image to classify")
    p.add_argument("--checkpoints", type=Path, default=ROOT / "checkpoints")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot-classify.png")
    p.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    p.add_argument("--timeout-s", type=float, default=300.0)
    return p


def main(argv=None) -> None:
    args = get_args_parser().parse_args(argv)
    from playwright.sync_api import expect, sync_playwright

    from app import CSS, build_demo
    from brainmri.service import Service

    demo = build_demo(Service.from_folder(args.checkpoints))
    demo.queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                            quiet=True, css=CSS)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(args.chromium), args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.set_default_timeout(args.timeout_s * 1000)
            expect.set_options(timeout=args.timeout_s * 1000)
            page.goto(url)
            page.locator("#scan input[type=file]").set_input_files(str(args.scan))
            expect(page.locator("#headline")).to_contain_text(ANSWER)
            expect(page.locator("#slider img").first).to_be_visible()
            expect(page.locator("#heatmap img")).to_be_visible()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(args.out), full_page=True)
            browser.close()
    finally:
        demo.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
