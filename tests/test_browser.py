"""The voter journey in a real browser (Debian's Chromium, driven by Playwright) against a real
server: by keyboard alone, with and without JavaScript; axe-core on every voter page at 1280 and
320 CSS px; reflow at 320 px; screenshots under tests/artifacts/."""

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import Browser, Page, expect

from app import clock, mail
from tests import factories
from tests.browser import (
    WIDTHS,
    Server,
    check_page_at,
    new_page,
    no_console_errors,
)

pytestmark = [pytest.mark.db, pytest.mark.server, pytest.mark.browser]


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


@pytest.mark.parametrize("width", WIDTHS)
def test_every_voter_page_passes_axe_and_reflows(
    client: TestClient, secretariat: dict[str, str], server: Server, browser: Browser, width: int
) -> None:
    doc = {"title": "The proposal in full", "file": "proposal.md", "content_base64": "IyBQCg=="}
    ballot_id, links = live_ballot(client, secretariat, documents=[doc])
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
    papers = urlsplit(mail.papers_url(ballot_id)).path
    page.goto(f"{server.url}{papers}")
    expect(page.locator("main")).to_contain_text("The proposal in full")
    check_page_at(page, "papers", width, seen)
    page.goto(f"{server.url}/vote/not-a-real-voting-link")
    expect(page.locator("h1")).to_have_text("This voting link is not valid")
    expect(page.locator("main")).to_contain_text("replaced by a newer link")
    check_page_at(page, "invalid-link", width, seen)
    page.context.close()

    assert list(seen) == [
        "start", "question", "question-error", "who-is-submitting", "check-your-answers",
        "receipt", "already-voted", "not-yet-open", "closed", "papers", "invalid-link",
    ]  # fmt: skip
    assert {name: found for name, found in seen.items() if found} == {}
