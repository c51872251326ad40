"""The secretariat's journey through the console in a real browser (Debian's Chromium, driven by
Playwright) against a real server: sign in, create the example ballot, upload a roll with two bad
rows and fix it, the scrutineer approves, open, turnout rises as practices vote, a reminder,
close, open the box, the scrutineer countersigns, publish, download the bundle. axe-core checks
every page on the way, at 1280 and 320 CSS px, and each is photographed under tests/artifacts/."""

import json
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from app import clock, signing, staff, verify
from app.db import session_scope
from app.models import Role
from tests import factories
from tests.browser import WIDTHS, Server, check_page_at, new_page

pytestmark = [pytest.mark.db, pytest.mark.server, pytest.mark.browser]

EXAMPLE = Path(__file__).parent.parent / "ballots"
ROLL_HEADER = "ods_code,name,locality,list_size,emails"
GOOD_ROWS = [
    "Y80001,Riverside Surgery,North Riverside,14590,manager.y80001@riversidevale.example",
    "Y80002,Bridge Street Medical Centre,North Riverside,9851,manager.y80002@riversidevale.example",
    "Y80003,Mill Lane Practice,South Vale,11552,manager.y80003@riversidevale.example",
]
SCRUTINEER = "lmc-scrutineer"  # the account the example ballot names


def roll_file(folder: Path, name: str, rows: list[str]) -> Path:
    path = folder / name
    path.write_text("\n".join([ROLL_HEADER, *rows]) + "\n")
    return path


class Visit:
    """One person's browser at one width; each page it reaches is checked and photographed."""

    def __init__(self, browser: Browser, server: Server, width: int, who: str) -> None:
        self.page: Page = new_page(browser, width=width)
        self.server, self.width, self.who = server, width, who
        self.seen: dict[str, list[dict[str, Any]]] = {}

    def check(self, name: str) -> None:
        check_page_at(self.page, name, self.width, self.seen, prefix="console")

    def go(self, path: str, name: str) -> None:
        self.page.goto(f"{self.server.url}{path}")
        self.check(name)

    def sign_in(self, username: str) -> None:
        self.page.goto(f"{self.server.url}/console")
        expect(self.page.get_by_role("heading", level=1)).to_have_text(
            "Sign in to the ballot console"
        )
        self.check(f"sign-in-{self.who}")
        self.page.get_by_label("Username", exact=True).fill(username)
        self.page.get_by_label("Password", exact=True).fill(factories.PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("heading", level=1)).to_have_text("Ballots")

    def button(self, name: str) -> None:
        self.page.get_by_role("button", name=name).click()

    def link(self, name: str) -> None:
        self.page.get_by_role("link", name=name).first.click()

    def main(self) -> Any:
        return expect(self.page.locator("main"))


def cast(server: Server, token: str) -> None:
    vote = {"choices": {"delegated": "For", "constitution": "Against"}}
    response = httpx.post(f"{server.url}/api/v1/vote/{token}", json=vote, timeout=30)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("width", WIDTHS)
def test_the_secretariat_runs_the_example_ballot_in_the_console(
    server: Server, browser: Browser, width: int, tmp_path: Path
) -> None:
    with session_scope() as session:
        for username, role in (
            ("secretariat-user", Role.secretariat),
            (SCRUTINEER, Role.scrutineer),
        ):
            staff.create(session, username=username, password=factories.PASSWORD, role=role)
    office = Visit(browser, server, width, "secretariat")
    office.sign_in("secretariat-user")
    office.check("ballots-empty")

    # Create the example ballot from its file, to open now by the server's own (real) clock.
    office.button("Create a ballot")
    office.check("create")
    now = clock.now().astimezone(clock.LONDON)
    office.page.get_by_label("Ballot file", exact=True).set_input_files(
        EXAMPLE / "delegated-commissioning-2016.toml"
    )
    office.page.get_by_label("Documents the ballot file names", exact=True).set_input_files(
        EXAMPLE / "delegated-commissioning-proposal.md"
    )
    office.page.get_by_label("Voting opens (optional)", exact=True).fill(f"{now:%Y-%m-%dT%H:%M}")
    office.page.get_by_label("Voting closes (optional)", exact=True).fill(
        f"{now.replace(year=now.year + 1):%Y-%m-%dT%H:%M}"
    )
    office.button("Upload and create draft")
    office.main().to_contain_text("The ballot was created as a draft.")
    office.main().to_contain_text("The roll is empty")
    office.check("ballot-draft")
    ballot_url = office.page.url.split("?")[0]
    here = ballot_url.removeprefix(server.url)

    # A roll with two bad rows: the page lists both and loads nothing; the fixed roll loads.
    bad = [
        GOOD_ROWS[0],
        "not-a-code,Bridge Street,North Riverside,9851,manager@x.example",
        GOOD_ROWS[2].replace("@riversidevale.example", ""),
    ]
    office.page.get_by_label("Roll (CSV file)", exact=True).set_input_files(
        roll_file(tmp_path, "bad.csv", bad)
    )
    office.button("Upload roll")
    expect(office.page.locator(".nhsuk-error-summary")).to_be_focused()
    rows = office.page.get_by_role("table", name="Rows that need fixing")
    expect(rows).to_contain_text("line 3 (not-a-code)")
    expect(rows).to_contain_text("line 4 (Y80003)")
    office.main().to_contain_text("Nothing was loaded")
    office.check("roll-errors")
    office.page.get_by_label("Roll (CSV file)", exact=True).set_input_files(
        roll_file(tmp_path, "roll.csv", GOOD_ROWS)
    )
    office.button("Upload roll")
    office.main().to_contain_text("The roll was loaded.")
    office.page.get_by_label("Public key", exact=True).fill(factories.TALLY_KEY)
    office.page.get_by_label("Who holds the shares (optional)", exact=True).fill(
        "Returning officer\nLMC secretary\nAudit chair"
    )
    office.button("Set tally key")
    office.main().to_contain_text("The tally key was set")
    office.main().to_contain_text("The scrutineer has not approved the ballot")
    office.go(f"{here}/roll-check", "roll-check")
    office.page.goto(ballot_url)

    # The scrutineer, in a browser of their own, approves what will be frozen.
    lmc = Visit(browser, server, width, "scrutineer")
    lmc.sign_in(SCRUTINEER)
    lmc.go(f"{here}/approval", "approval")
    lmc.main().to_contain_text("3 practices")
    lmc.button("Approve the ballot as shown")
    lmc.main().to_contain_text("You approved the ballot as it will be frozen.")

    office.page.reload()
    office.main().not_to_contain_text("The scrutineer has not approved the ballot")
    office.button("Open voting")
    office.main().to_contain_text("Opening cannot be undone")
    office.check("confirm-open")
    # Three practices in two localities: a ballot-box entry could point to its practice.
    office.page.get_by_label("I have read these and the ballot should open", exact=True).check()
    office.button("Open voting and send the links")
    office.main().to_contain_text("Voting is open and the invitations are queued.")
    office.check("ballot-open")
    office.go(f"{here}/additions", "additions")
    office.page.goto(ballot_url)

    links = factories.sent_links()
    office.link("See turnout by locality and over time")
    office.main().to_contain_text("0 of 3 practices have voted (0%)")
    for n, ods in enumerate(("Y80001", "Y80002"), 1):
        cast(server, links[ods][-1])
        office.page.reload()
        office.main().to_contain_text(f"{n} of 3 practices have voted")
    expect(office.page.locator("svg.mandate-chart")).to_be_visible()
    office.main().to_contain_text("Mill Lane Practice (Y80003)")
    office.main().not_to_contain_text("Riverside Surgery (Y80001)")
    office.check("turnout")

    office.link("Send reminders to these practices")
    office.main().to_contain_text("1 practices have not voted yet")
    office.check("confirm-reminders")
    office.button("Send reminders")
    office.main().to_contain_text("Reminders are queued")
    reminded = factories.sent_links()["Y80003"]
    assert len(reminded) == 2  # the invitation and the reminder, each with a link that works
    cast(server, reminded[-1])

    office.button("Close voting")
    office.check("confirm-close")
    office.button("Close voting")
    office.main().to_contain_text("Voting is closed")
    office.check("ballot-closed")

    office.link("Open the ballot box")
    office.check("confirm-tally-open")
    shares = []
    for n, share in zip((1, 3), factories.share_files(1, 3), strict=True):
        path = tmp_path / f"share-{n}.json"
        path.write_text(json.dumps(share))
        shares.append(path)
    office.page.get_by_label("Share files", exact=True).set_input_files(shares)
    office.button("Open the ballot box")
    office.main().to_contain_text("The ballot box was opened and counted.")

    lmc.page.reload()
    lmc.go(f"{here}/countersignature", "countersign")
    lmc.main().to_contain_text("3 of 3 practices voted.")
    lmc.button("Countersign this count")
    lmc.main().to_contain_text("You countersigned the count.")

    office.page.reload()
    office.link("Publish the result")
    office.main().to_contain_text("Publishing cannot be undone")
    office.check("confirm-publish")
    office.button("Publish the result")
    office.main().to_contain_text("The result is published.")
    office.main().to_contain_text("3 of 3 practices voted.")
    office.check("ballot-published")

    with office.page.expect_download() as downloading:
        office.link("Evidence bundle (zip)")
    bundle = tmp_path / "bundle.zip"
    downloading.value.save_as(bundle)
    checks = verify.verify(bundle, key=signing.public_b64())
    assert [c.name for c in checks if not c.ok] == []

    office.link("Audit trail and register")
    office.main().to_contain_text("entries chain from the first to the last")
    office.check("audit")
    office.go(f"{here}/disputes", "disputes")
    office.go(f"{here}/void", "void")
    office.go("/console", "ballots")

    seen = {**office.seen, **{f"{k} (scrutineer)": v for k, v in lmc.seen.items()}}
    assert {name: found for name, found in seen.items() if found} == {}
    for visit in (office, lmc):
        visit.page.context.close()
