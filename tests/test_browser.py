"""The voter journey in a real browser (Debian's Chromium, driven by Playwright) against a real
server: by keyboard alone, with and without JavaScript; axe-core on every voter page at 1280 and
320 CSS px; reflow at 320 px; screenshots under tests/artifacts/."""

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from app import clock
from tests import factories
from tests.pgserver import free_port

pytestmark = [pytest.mark.db, pytest.mark.server, pytest.mark.browser]

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


@pytest.fixture
def server(db: object, tmp_path: Path) -> Iterator[Server]:
    with serving(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if MISSING:
        pytest.fail(MISSING)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
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
        yield launched
        launched.close()


# What each open page reported as an error: a blocked load, a failed script.
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


def live_ballot(
    client: TestClient, headers: dict[str, str], **overrides: Any
) -> tuple[int, dict[str, str]]:
    """A ballot open now by the server's clock (the real one): its id, and its links by ODS code.

    It closes a quarter of an hour from now, which the test jumps to on its own clock to close
    it, within the staff session's idle timeout."""
    before = factories.sent_links()
    now = clock.now()
    window = {
        "opens_at": (now - timedelta(hours=1)).isoformat(),
        "closes_at": (now + timedelta(minutes=15)).isoformat(),
    }
    ballot_id = factories.open_ballot(client, headers, **{**window, **overrides})
    return ballot_id, {
        ods: next(t for t in reversed(tokens) if t not in before.get(ods, []))
        for ods, tokens in factories.sent_links().items()
        if len(tokens) > len(before.get(ods, []))
    }


def close_and_publish(
    client: TestClient, headers: dict[str, str], ballot_id: int, *, publish: bool = True
) -> None:
    """Close (and publish) at the ballot's closing time, on this process's clock only."""
    closes_at = client.get(f"/api/v1/ballots/{ballot_id}", headers=headers).json()["closes_at"]
    clock.freeze(datetime.fromisoformat(closes_at) + timedelta(seconds=1))
    try:
        response = client.post(f"/api/v1/ballots/{ballot_id}/close", headers=headers)
        assert response.status_code == 200, response.text
        if publish:
            factories.open_box(client, headers, ballot_id)
            factories.countersign(client, ballot_id)
            response = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=headers)
            assert response.status_code == 200, response.text
    finally:
        clock.freeze(None)


def focused(page: Page) -> str:
    """The focused element, as tag, name or value, and its words."""
    described: str = page.evaluate(
        """() => {
          const e = document.activeElement;
          return [e.tagName.toLowerCase(), e.getAttribute('name') || '', e.value || '',
                  (e.innerText || '').trim()].join('|');
        }"""
    )
    return described


def tab_to(page: Page, pattern: str, *, presses: int = 40) -> None:
    """Press Tab until the focused element matches `pattern`; fail if it never does."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if re.search(pattern, focused(page)):
            return
    raise AssertionError(f"Tab never reached {pattern!r}; last focus {focused(page)!r}")


def choose_by_keyboard(page: Page, option: str) -> None:
    """Tab into the radio group, then arrow to the option and check it with Space."""
    tab_to(page, r"^input\|q_")
    for _ in range(5):
        label = page.evaluate(
            "() => document.querySelector(`label[for='${document.activeElement.id}']`).innerText"
        )
        if label.strip() == option:
            break
        page.keyboard.press("ArrowDown")
    page.keyboard.press("Space")
    expect(page.get_by_label(option, exact=True)).to_be_checked()


@pytest.mark.parametrize("javascript", [True, False], ids=["javascript", "no-javascript"])
def test_a_practice_votes_by_keyboard_alone_and_the_count_includes_it(
    client: TestClient,
    secretariat: dict[str, str],
    server: Server,
    browser: Browser,
    javascript: bool,
) -> None:
    ballot_id, links = live_ballot(client, secretariat)
    page = new_page(browser, javascript=javascript)
    page.goto(f"{server.url}/vote/{links['G83001']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Delegated commissioning")

    # The skip link comes first.
    page.keyboard.press("Tab")
    assert focused(page) == "a|||Skip to main content"
    tab_to(page, r"^a\|.*Start now")
    page.keyboard.press("Enter")

    expect(page).to_have_title(re.compile(r"^Question 1 of 2"))
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text("Apply for delegated commissioning from 1 April 2017?")
    expect(heading).not_to_contain_text("<")
    # Continue without an answer: the error summary is shown, and takes the focus.
    tab_to(page, r"^button\|.*Continue")
    page.keyboard.press("Enter")
    expect(page).to_have_title(re.compile(r"^Error: Question 1 of 2"))
    expect(page.locator(".nhsuk-error-summary")).to_be_focused()
    expect(page.locator(".nhsuk-error-summary")).to_contain_text("Answer this question")
    choose_by_keyboard(page, "For")
    tab_to(page, r"^button\|.*Continue")
    page.keyboard.press("Enter")

    expect(page).to_have_title(re.compile(r"^Question 2 of 2"))
    choose_by_keyboard(page, "Against")
    tab_to(page, r"^button\|.*Continue")
    page.keyboard.press("Enter")

    expect(page).to_have_title(re.compile(r"^Who is submitting this vote"))
    tab_to(page, r"^input\|voter_name")
    page.keyboard.type("Pat Jones")
    tab_to(page, r"^button\|.*Continue")
    page.keyboard.press("Enter")

    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Check your answers before submitting your vote"
    )
    # Change the second answer, and come straight back.
    tab_to(page, r"^button\|change\|constitution")
    page.keyboard.press("Enter")
    expect(page).to_have_title(re.compile(r"^Question 2 of 2"))
    expect(page.get_by_label("Against", exact=True)).to_be_checked()
    choose_by_keyboard(page, "Abstain")
    tab_to(page, r"^button\|.*Continue")
    page.keyboard.press("Enter")
    summary = page.locator(".nhsuk-summary-list")
    expect(summary).to_contain_text("Approve the constitution amendments?")
    expect(page.locator(".nhsuk-summary-list__value").nth(0)).to_have_text("For")
    expect(page.locator(".nhsuk-summary-list__value").nth(1)).to_have_text("Abstain")
    expect(page.locator(".nhsuk-summary-list__value").nth(2)).to_have_text("Pat Jones")
    tab_to(page, r"^button\|.*Submit vote")
    page.keyboard.press("Enter")

    expect(page.locator(".nhsuk-panel")).to_contain_text("Vote recorded")
    code = page.locator(".mandate-receipt-code").inner_text()
    assert re.fullmatch(r"[0-9A-Z]{4}(?:-[0-9A-Z]{4}){4}", code)
    # The print button is the script's; without it, the page says how to print.
    print_button = page.get_by_role("button", name="Print this page")
    if javascript:
        expect(print_button).to_be_visible()
        expect(page.get_by_text("To print this page, use your browser")).to_be_hidden()
    else:
        expect(print_button).to_be_hidden()
        expect(page.get_by_text("To print this page, use your browser")).to_be_visible()
    no_console_errors(page)

    # A second visit: the already-voted page, which says when, never how.
    page.goto(f"{server.url}/vote/{links['G83001']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Your practice has already voted")
    expect(page.locator("main")).not_to_contain_text("Abstain")
    expect(page.get_by_text("Start now")).to_have_count(0)

    close_and_publish(client, secretariat, ballot_id)
    page.reload()
    expect(page.locator("main")).to_contain_text("1 of 9 practices voted.")
    cells = page.locator("tbody tr").first.locator("td")
    expect(cells).to_have_text(["delegated", "1", "0", re.compile(".+")])

    # The receipt, checked by keyboard on the ballot's check page, is in the count.
    tab_to(page, r"^a\|.*Check a receipt code")
    page.keyboard.press("Enter")
    expect(page).to_have_title(re.compile(r"^Check your receipt"))
    tab_to(page, r"^input\|receipt_code")
    page.keyboard.type(code)
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_contain_text("This receipt is in the counted ballot box.")
    no_console_errors(page)
    page.context.close()


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


def check_page_at(page: Page, name: str, width: int, seen: dict[str, Any]) -> None:
    """axe-core, reflow and a screenshot for one voter page."""
    page.wait_for_load_state("load")
    seen[name] = axe_violations(page)
    if width <= 320:
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / f"voter-{name}-{width}.png", full_page=True)
    no_console_errors(page)


@pytest.mark.parametrize("width", WIDTHS)
def test_every_voter_page_passes_axe_and_reflows(
    client: TestClient, secretariat: dict[str, str], server: Server, browser: Browser, width: int
) -> None:
    doc = {"title": "The proposal in full", "file": "proposal.md", "content_base64": "IyBQCg=="}
    _, links = live_ballot(client, secretariat, documents=[doc])
    _, later = live_ballot(
        client,
        secretariat,
        reference="TEST-LATER",
        opens_at=(clock.now() + timedelta(days=1)).isoformat(),
        closes_at=(clock.now() + timedelta(days=3)).isoformat(),
    )
    ended_id, ended = live_ballot(client, secretariat, reference="TEST-ENDED")
    close_and_publish(client, secretariat, ended_id, publish=False)

    page = new_page(browser, width=width)
    seen: dict[str, Any] = {}
    page.goto(f"{server.url}/vote/{links['G83001']}")
    check_page_at(page, "start", width, seen)
    page.get_by_role("button", name="Start now").click()
    check_page_at(page, "question", width, seen)
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".nhsuk-error-summary")).to_be_focused()
    check_page_at(page, "question-error", width, seen)
    page.get_by_label("For", exact=True).check()
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Abstain", exact=True).check()
    page.get_by_role("button", name="Continue").click()
    check_page_at(page, "who-is-submitting", width, seen)
    page.get_by_label("Your name").fill("Pat Jones")
    page.get_by_role("button", name="Continue").click()
    check_page_at(page, "check-your-answers", width, seen)
    page.get_by_role("button", name="Submit vote").click()
    expect(page.locator(".nhsuk-panel")).to_contain_text("Vote recorded")
    check_page_at(page, "receipt", width, seen)
    page.goto(f"{server.url}/vote/{links['G83001']}")
    check_page_at(page, "already-voted", width, seen)
    page.goto(f"{server.url}/vote/{later['G83001']}")
    expect(page.locator("main")).to_contain_text("Voting has not started yet. It opens at")
    check_page_at(page, "not-yet-open", width, seen)
    page.goto(f"{server.url}/vote/{ended['G83002']}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Voting has closed")
    check_page_at(page, "closed", width, seen)
    page.goto(f"{server.url}/vote/not-a-real-voting-link")
    expect(page.locator("h1")).to_have_text("This voting link is not valid")
    expect(page.locator("main")).to_contain_text("replaced by a newer link")
    check_page_at(page, "invalid-link", width, seen)
    page.context.close()

    assert list(seen) == [
        "start", "question", "question-error", "who-is-submitting", "check-your-answers",
        "receipt", "already-voted", "not-yet-open", "closed", "invalid-link",
    ]  # fmt: skip
    assert {name: found for name, found in seen.items() if found} == {}
