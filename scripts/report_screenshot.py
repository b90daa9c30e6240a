"""Save the top of a report page as headless Chromium (Debian's) draws it, offline.

    .venv/bin/engine run --model ridge --no-tracking
    .venv/bin/python scripts/report_screenshot.py output/report_ridge.html docs/img/report.png

Every request other than the file itself is aborted, as in the browser tests.
"""

from __future__ import annotations

import argparse
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def screenshot(page: Path, target: Path, width: int, height: int) -> None:
    """The top ``height`` pixels of ``page`` at ``width`` pixels wide, opened offline."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        view = browser.new_page(viewport={"width": width, "height": height})
        view.route(
            "**/*", lambda r: r.continue_() if r.request.url.startswith("file:") else r.abort()
        )
        view.goto(page.resolve().as_uri(), wait_until="load")
        target.parent.mkdir(parents=True, exist_ok=True)
        view.screenshot(path=target)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the report_<model>.html to draw")
    parser.add_argument("target", type=Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1280, help="viewport width, px")
    parser.add_argument("--height", type=int, default=1500, help="screenshot height, px")
    args = parser.parse_args()
    screenshot(args.page, args.target, args.width, args.height)


if __name__ == "__main__":
    main()
