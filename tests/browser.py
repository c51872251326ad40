"""What the browser tests share: a real server, Debian's Chromium, pages that record their
errors, and axe-core. The `server` and `browser` fixtures in conftest.py use these."""

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from tests.pgserver import free_port

ROOT = Path(__file__).parent.parent
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(__file__).parent / "artifacts"
MANDATE = str(Path(sys.executable).parent / "mandate")
WIDTHS = (1280, 320)

# `make test` installs both; run by hand without them, these tests fail saying so.
MISSING = (
    None
    if CHROMIUM.exists() and AXE.exists()
    else "needs Chromium (apt-get install chromium) and node_modules (make install)"
)


@dataclass
class Server:
    url: str
    log: Path


@contextlib.contextmanager
def serving(tmp_path: Path) -> Iterator[Server]:
    """`mandate serve` on a free loopback port, against the test database, once it is ready."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        # The browser's Origin is the server's own address, so that is the service's BASE_URL.
        process = subprocess.Popen(
            [MANDATE, "serve", "--port", str(port)],
            env={**os.environ, "BASE_URL": url},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        started = time.monotonic()
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            assert time.monotonic() - started < 30, log.read_text(errors="replace")
            time.sleep(0.1)
        yield Server(url, log)
    finally:
        process.terminate()
        process.wait(timeout=20)


@contextlib.contextmanager
def launched() -> Iterator[Browser]:
    """Debian's Chromium, headless, as the tests drive it; fails saying what is missing."""
    if MISSING:
        pytest.fail(MISSING)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


_problems: dict[Page, list[str]] = {}


def new_page(browser: Browser, *, width: int = 1280, javascript: bool = True) -> Page:
    context = browser.new_context(
        viewport={"width": width, "height": 900}, java_script_enabled=javascript
    )
    page = context.new_page()
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        # A page answered with its own status (422 for an unanswered question, 404 for an
        # invalid link) is no fault; anything else refused or failing is a bug in the page.
        loaded = message.location.get("url") == page.url
        if message.type == "error" and not (loaded and message.text.startswith("Failed to load")):
            problems.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    _problems[page] = problems
    return page


def no_console_errors(page: Page) -> None:
    assert _problems[page] == []


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it stands. Its source is evaluated rather than added
    as a script tag, which the pages' policy (rightly) refuses to run."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text())
    result: dict[str, Any] = page.evaluate("async () => await window.axe.run(document)")
    return [
        {"id": v["id"], "help": v["help"], "nodes": [n["html"][:120] for n in v["nodes"]]}
        for v in result["violations"]
    ]


def check_page_at(
    page: Page, name: str, width: int, seen: dict[str, Any], *, prefix: str = "voter"
) -> None:
    """axe-core, reflow and a screenshot (tests/artifacts/PREFIX-NAME-WIDTH.png) for one page."""
    page.wait_for_load_state("load")
    seen[name] = axe_violations(page)
    if width <= 320:
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"{prefix}-{name}-{width}.png", full_page=True)
    no_console_errors(page)
