"""The staff console: sign in by form, then a whole ballot run from its pages alone, as the
secretariat, the scrutineer and an auditor would, with every refusal shown on the page."""

import base64
import html
import io
import json
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from app import clock, config, proof, signing, staff, verify
from app.db import session_scope
from app.models import Role
from app.routes import console as console_routes
from app.routes import vote_pages
from tests import factories

pytestmark = pytest.mark.db

EXAMPLE = Path(__file__).parent.parent / "ballots"
BALLOT_FILE = EXAMPLE / "delegated-commissioning-2016.toml"
PROPOSAL = EXAMPLE / "delegated-commissioning-proposal.md"
ROLL = (EXAMPLE / "riverside-roll.csv").read_text()
SCRUTINEER = "lmc-scrutineer"  # the account the example ballot names


def hidden_fields(page: httpx.Response, action: str) -> dict[str, str]:
    """The hidden fields (the signed form token and any others) of the form posting to `action`."""
    found = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', page.text, re.S)
    assert found, f"no form posting to {action} on the page"
    fields = dict(
        re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', found.group(1))
    )
    assert "form_token" in fields
    return fields


def post_form(
    client: TestClient,
    page_url: str,
    action: str,
    data: dict[str, str] | None = None,
    files: list[tuple[str, tuple[str, bytes, str]]] | None = None,
) -> httpx.Response:
    """Fill in and post the form on a page, as a browser would (no redirects followed)."""
    page = client.get(page_url)
    assert page.status_code == 200, page.text
    fields = {**hidden_fields(page, action), **(data or {})}
    return client.post(action, data=fields, files=files, follow_redirects=False)


def main_text(response: httpx.Response) -> str:
    """The words of the page's main element, as a person reads them."""
    main = response.text.split("<main", 1)[1].split(">", 1)[1].split("</main>", 1)[0]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())


def console(client: TestClient) -> TestClient:
    # The session cookie is `__Host-` and Secure: a browser sends it over HTTPS only.
    client.base_url = httpx.URL("https://testserver")
    client.cookies.clear()
    return client


def sign_in(client: TestClient, username: str, role: Role) -> None:
    with session_scope() as session:
        if not any(u.username == username for u in staff.list_all(session)):
            staff.create(session, username=username, password=factories.PASSWORD, role=role)
    client.cookies.clear()
    signed = post_form(
        client,
        "/console/sign-in",
        "/console/sign-in",
        {"username": username, "password": factories.PASSWORD},
    )
    assert signed.status_code == 303, signed.text
    assert signed.headers["location"] == "/console"


def test_a_console_page_without_a_session_goes_to_sign_in(client: TestClient) -> None:
    client = console(client)
    response = client.get("/console", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/sign-in"
    assert client.get("/console/sign-in").status_code == 200


def test_a_wrong_password_is_refused_on_the_page_and_sets_no_cookie(client: TestClient) -> None:
    client = console(client)
    factories.staff_headers(client, Role.secretariat)
    refused = post_form(
        client, "/console/sign-in", "/console/sign-in",
        {"username": "secretariat-user", "password": "not the password at all"},
    )  # fmt: skip
    assert refused.status_code == 401
    assert "The username, password or authenticator code is not right" in main_text(refused)
    assert "set-cookie" not in refused.headers
    assert 'value="secretariat-user"' in refused.text  # kept, so only the password is retyped
    assert "not the password at all" not in refused.text


def test_a_form_without_its_token_is_refused(client: TestClient) -> None:
    client = console(client)
    sign_in(client, "secretariat-user", Role.secretariat)
    response = client.post(
        "/console/ballots/new/form", data={"title": "No token"}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "This form has expired" in main_text(response)
    assert "No token" not in client.get("/console").text


def test_signing_out_ends_the_session(client: TestClient) -> None:
    client = console(client)
    sign_in(client, "secretariat-user", Role.secretariat)
    assert client.get("/console", follow_redirects=False).status_code == 200
    cookie = client.cookies.get("__Host-mandate-session")
    out = client.post("/console/sign-out", follow_redirects=False)
    assert out.headers["location"] == "/console/sign-in"
    client.cookies.set("__Host-mandate-session", cookie or "")
    assert client.get("/console", follow_redirects=False).status_code == 303


def test_a_ballot_filled_in_by_form_lists_every_problem_then_creates_a_draft(
    client: TestClient,
) -> None:
    client = console(client)
    sign_in(client, "secretariat-user", Role.secretariat)
    refused = post_form(
        client, "/console/ballots/new", "/console/ballots/new/form",
        {"reference": "x", "title": "", "opens_at": "2026-12-07T09:00"},
    )  # fmt: skip
    assert refused.status_code == 422
    words = main_text(refused)
    for problem in (
        "Reference: use 3 to 64 letters, digits, dots, dashes or underscores",
        "Title: enter it",
        "Organisation: enter it",
        "Question 1: enter it",
        "Voting closes: enter a date and time",
    ):
        assert problem in words, problem
    assert 'href="#question_1"' in refused.text  # the summary links to the field
    assert 'id="question_1-error"' in refused.text
    assert "Create a ballot" in words
    assert client.get("/api/v1/ballots").json() == []

    created = post_form(
        client, "/console/ballots/new", "/console/ballots/new/form",
        {
            "reference": "NVC-2026-01", "title": "Constitution amendment",
            "organisation_name": "NHS Northvale CCG", "organisation_ods_code": "98x",
            "opens_at": "2026-12-07T09:00", "closes_at": "2026-12-21T17:00",
            "question_1": "Do you approve the amended constitution?",
            "constitution_ref": "Constitution, clause 4.2", "preset": "two_thirds",
            "quorum": "1/2", "scrutineer_account": "Lay-Chair",
        },
    )  # fmt: skip
    assert created.status_code == 303, created.text
    page = client.get(created.headers["location"])
    assert "The ballot was created as a draft" in main_text(page)
    [ballot] = client.get("/api/v1/ballots").json()
    assert ballot["organisation"]["ods_code"] == "98X"
    assert ballot["rules"]["preset"] == "two_thirds"
    # 9am in December is 9am UTC; the form's times are UK time.
    assert ballot["opens_at"] == "2026-12-07T09:00:00Z"
    assert [q["options"] for q in ballot["questions"]] == [["For", "Against", "Abstain"]]


def _bad_roll() -> str:
    lines = ROLL.splitlines()
    lines[2] = lines[2].replace("Y80002", "not-a-code")
    lines[5] = lines[5].rsplit(",", 1)[0] + ",not an address"
    return "\n".join(lines) + "\n"


def test_the_secretariat_runs_a_ballot_from_the_console_alone(
    client: TestClient, frozen_clock: datetime, tmp_path: Path
) -> None:
    client = console(client)
    sign_in(client, "secretariat-user", Role.secretariat)

    # Create from the example ballot file, with the document it names.
    created = post_form(
        client, "/console/ballots/new", "/console/ballots/new/file",
        files=[
            ("ballot_file", (BALLOT_FILE.name, BALLOT_FILE.read_bytes(), "text/plain")),
            ("documents", (PROPOSAL.name, PROPOSAL.read_bytes(), "text/markdown")),
        ],
    )  # fmt: skip
    assert created.status_code == 303, created.text
    url = created.headers["location"].split("?")[0]
    ballot_id = int(url.rsplit("/", 1)[1])
    page = client.get(url)
    assert "The roll is empty" in main_text(page)

    # A roll with two bad rows: both shown, nothing loaded.
    action = f"{url}/roll"
    refused = post_form(
        client, url, action, files=[("roll", ("roll.csv", _bad_roll().encode(), "text/csv"))]
    )
    assert refused.status_code == 422
    words = main_text(refused)
    assert "line 3 (not-a-code).ods_code: must be a practice's ODS code" in words
    assert "line 6 (Y80005)" in words
    assert "Nothing was loaded" in words
    assert client.get(f"/api/v1/ballots/{ballot_id}/roll").json() == []
    loaded = post_form(
        client, url, action, files=[("roll", ("roll.csv", ROLL.encode(), "text/csv"))]
    )
    assert loaded.status_code == 303, loaded.text
    assert "The roll was loaded" in main_text(client.get(loaded.headers["location"]))

    tally = post_form(
        client,
        url,
        f"{url}/tally-key",
        {
            "public_key": factories.TALLY_KEY,
            "holders": "Returning officer\nScrutineer\nAudit chair",
        },
    )
    assert tally.status_code == 303, tally.text

    notice = client.get(f"{url}/notice")
    assert "Every address of the 41 practices" in main_text(notice)
    sent = post_form(client, f"{url}/notice", f"{url}/notice")
    assert sent.status_code == 303, sent.text
    assert "Sent at" in main_text(client.get(url))
    assert client.get(f"/api/v1/ballots/{ballot_id}/deliveries").json()[0]["kind"] == "notice"

    # Not approved yet: the confirmation page says so, and opening is refused on it.
    confirm = client.get(f"{url}/open")
    assert "The scrutineer has not approved the ballot" in main_text(confirm)
    refused = post_form(client, f"{url}/open", f"{url}/open", {"acknowledge": "yes"})
    assert refused.status_code == 409
    assert client.get(f"/api/v1/ballots/{ballot_id}").json()["status"] == "draft"

    # The scrutineer, signed in to the console, approves what will be frozen.
    sign_in(client, SCRUTINEER, Role.scrutineer)
    approval = client.get(f"{url}/approval")
    assert "Approve the ballot as shown" in approval.text
    approved = post_form(client, f"{url}/approval", f"{url}/approval")
    assert approved.status_code == 303, approved.text
    forbidden = client.post(f"{url}/open", data={"form_token": "x"}, follow_redirects=False)
    assert forbidden.status_code == 403

    sign_in(client, "secretariat-user", Role.secretariat)
    confirm = client.get(f"{url}/open")
    assert "Opening cannot be undone" in main_text(confirm)
    opened = post_form(client, f"{url}/open", f"{url}/open")
    assert opened.status_code == 303, opened.text
    assert "Voting is open" in main_text(client.get(opened.headers["location"]))

    links = factories.sent_links()
    assert "0 of 41 practices have voted" in main_text(client.get(f"{url}/turnout"))
    for ods in ("Y80001", "Y80002"):
        cast = client.post(
            f"/api/v1/vote/{links[ods][-1]}",
            json={"choices": {"delegated": "For", "constitution": "Against"}},
        )
        assert cast.status_code == 200, cast.text
    turnout = main_text(client.get(f"{url}/turnout"))
    assert "2 of 41 practices have voted (5%)" in turnout
    assert "Riverside Surgery (Y80001)" not in turnout  # voted: not in the not-voted list
    assert "Mill Lane Practice (Y80003)" in turnout
    assert "For" not in turnout.replace("Practices voted", "")  # never how anyone voted

    reminded = post_form(client, f"{url}/reminders", f"{url}/reminders")
    assert reminded.status_code == 303
    reissued = post_form(
        client, f"{url}/practices/Y80003/reissue", f"{url}/practices/Y80003/reissue"
    )
    assert reissued.status_code == 303

    extend_refused = post_form(
        client, f"{url}/extend", f"{url}/extend", {"closes_at": "2016-11-28T17:00", "reason": ""}
    )
    assert extend_refused.status_code == 422
    assert "Give the reason" in main_text(extend_refused)
    early = post_form(client, f"{url}/close", f"{url}/close")
    assert early.status_code == 409
    assert "39 of 41 practices have not voted" in main_text(early)

    clock.freeze(datetime(2016, 11, 25, 17, 1, tzinfo=UTC))
    sign_in(client, "secretariat-user", Role.secretariat)  # the last session has timed out
    closed = post_form(client, f"{url}/close", f"{url}/close")
    assert closed.status_code == 303, closed.text
    assert "Open the ballot box" in main_text(client.get(url))

    one_share = [
        (
            "shares",
            ("share-1.json", json.dumps(factories.share_files(1)[0]).encode(), "application/json"),
        )
    ]
    too_few = post_form(client, f"{url}/tally-open", f"{url}/tally-open", files=one_share)
    assert too_few.status_code == 422
    shares = [
        ("shares", (f"share-{n}.json", json.dumps(s).encode(), "application/json"))
        for n, s in zip((1, 3), factories.share_files(1, 3), strict=True)
    ]
    box = post_form(client, f"{url}/tally-open", f"{url}/tally-open", files=shares)
    assert box.status_code == 303, box.text

    not_yet = post_form(client, f"{url}/publish", f"{url}/publish")
    assert not_yet.status_code == 409
    assert "not countersigned" in main_text(not_yet)

    sign_in(client, SCRUTINEER, Role.scrutineer)
    count = main_text(client.get(f"{url}/countersignature"))
    assert "2 of 41 practices voted" in count
    signed = post_form(client, f"{url}/countersignature", f"{url}/countersignature")
    assert signed.status_code == 303, signed.text

    sign_in(client, "secretariat-user", Role.secretariat)
    published = post_form(client, f"{url}/publish", f"{url}/publish")
    assert published.status_code == 303, published.text
    page = client.get(published.headers["location"])
    words = main_text(page)
    assert "The result is published" in words
    assert "2 of 41 practices voted" in words
    bundle = client.get(f"/api/v1/ballots/{ballot_id}/evidence")
    assert bundle.status_code == 200
    assert "declaration.pdf" in zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()
    (tmp_path / "bundle.zip").write_bytes(bundle.content)
    checks = verify.verify(tmp_path / "bundle.zip", key=signing.public_b64())
    assert [c.name for c in checks if not c.ok] == []

    sign_in(client, "auditor-user", Role.auditor)
    audit = main_text(client.get(f"{url}/audit"))
    assert "Intact" in audit
    assert "entries chain from the first to the last" in audit
    assert "2 ballots" in audit


def test_disputes_and_a_void_need_the_secretariat_and_then_the_scrutineer(
    client: TestClient, secretariat: dict[str, str], frozen_clock: datetime
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    factories.cast_votes(client, ["For", "Against"])
    factories.close_and_publish(client, secretariat, ballot_id)
    client = console(client)
    sign_in(client, "secretariat-user", Role.secretariat)
    url = f"/console/ballots/{ballot_id}"

    empty = post_form(client, f"{url}/disputes", f"{url}/disputes", {"text": " "})
    assert empty.status_code == 422
    assert "Say what the dispute is about" in main_text(empty)
    recorded = post_form(
        client, f"{url}/disputes", f"{url}/disputes",
        {"ods_code": "g83002", "text": "Our partners did not vote.", "claims_not_voted": "yes"},
    )  # fmt: skip
    assert recorded.status_code == 303, recorded.text
    listed = main_text(client.get(f"{url}/disputes"))
    assert "G83002" in listed
    assert "Says it did not vote Our partners did not vote." in listed

    no_reason = post_form(client, f"{url}/void", f"{url}/void", {"reason": ""})
    assert no_reason.status_code == 422
    proposed = post_form(client, f"{url}/void", f"{url}/void", {"reason": "The roll was wrong."})
    assert proposed.status_code == 303, proposed.text
    page = client.get(f"{url}/void")
    assert "Confirm: the ballot is void" not in page.text  # not the proposer's to confirm
    proposal = hidden_fields(page, f"{url}/void/withdraw")["proposal_id"]
    token = vote_pages.form_token(console_routes.CONSOLE_FORM, f"{url}/void/confirm")
    own = client.post(
        f"{url}/void/confirm", data={"form_token": token, "proposal_id": proposal},
        follow_redirects=False,
    )  # fmt: skip
    assert own.status_code == 403
    assert client.get(f"/api/v1/ballots/{ballot_id}").json()["status"] == "published"

    sign_in(client, factories.SCRUTINEER, Role.scrutineer)
    confirmed = post_form(client, f"{url}/void", f"{url}/void/confirm")
    assert confirmed.status_code == 303, confirmed.text
    assert "The ballot is void" in main_text(client.get(confirmed.headers["location"]))
    assert client.get(f"/api/v1/ballots/{ballot_id}").json()["status"] == "voided"


def test_an_auditor_countersigns_the_published_result_from_the_audit_page(
    client: TestClient, secretariat: dict[str, str], frozen_clock: datetime
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    receipt = client.get(f"/api/v1/ballots/{ballot_id}/receipt", headers=secretariat).json()
    fingerprint = receipt["receipt"]["fingerprint"]
    key = Ed25519PrivateKey.generate()
    public = base64.b64encode(key.public_key().public_bytes_raw()).decode()
    words = {"name": "Dr Ann Example", "capacity": "Lay chair", "statement": "I recounted it."}
    message = proof.attestation_message(fingerprint=fingerprint, **words)
    signed = {
        **words,
        "fingerprint": fingerprint,
        "signature": base64.b64encode(key.sign(message)).decode(),
    }
    client = console(client)
    sign_in(client, "auditor-user", Role.auditor)
    url = f"/console/ballots/{ballot_id}"
    assert "Nobody has countersigned the published result yet" in main_text(
        client.get(f"{url}/audit")
    )

    def upload(content: bytes) -> httpx.Response:
        file = ("attestation", ("attestation.json", content, "application/json"))
        return post_form(client, f"{url}/audit", f"{url}/attestations", files=[file])

    unregistered = upload(json.dumps(signed).encode())
    assert unregistered.status_code == 409
    assert "Register your public key first" in main_text(unregistered)
    registered = post_form(client, f"{url}/audit", f"{url}/attestation-key", {"public_key": public})
    assert registered.status_code == 303, registered.text
    garbled = upload(b"{not json")
    assert garbled.status_code == 422
    assert "not a countersignature written by `mandate attest`" in main_text(garbled)
    accepted = upload(json.dumps(signed).encode())
    assert accepted.status_code == 303, accepted.text
    audit = main_text(client.get(f"{url}/audit"))
    assert "Dr Ann Example Lay chair" in audit
    assert "I recounted it." in audit


def test_a_ballot_file_with_documents_larger_than_a_request_body_still_uploads(
    client: TestClient,
) -> None:
    client = console(client)
    sign_in(client, "secretariat-user", Role.secretariat)
    settings = config.get_settings()
    large = b"# The proposal\n" + b"x" * (settings.max_body_bytes + 1024)
    ballot_file = BALLOT_FILE.read_text()
    created = post_form(
        client, "/console/ballots/new", "/console/ballots/new/file",
        files=[
            ("ballot_file", (BALLOT_FILE.name, ballot_file.encode(), "text/plain")),
            ("documents", (PROPOSAL.name, large, "text/markdown")),
        ],
    )  # fmt: skip
    assert created.status_code == 303, created.text[:500]
    # A page's own form is no upload: it keeps the ordinary limit.
    refused = client.post(
        "/console/ballots/new/form", data={"title": "x" * (settings.max_body_bytes + 1)},
        follow_redirects=False,
    )  # fmt: skip
    assert refused.status_code == 413


def test_a_practice_left_out_is_added_while_open_once_the_scrutineer_approves(
    client: TestClient, secretariat: dict[str, str], frozen_clock: datetime
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    client = console(client)
    sign_in(client, "secretariat-user", Role.secretariat)
    url = f"/console/ballots/{ballot_id}"
    assert "has not been checked" in main_text(client.get(f"{url}/roll-check"))

    practice = {
        "ods_code": "G83020", "name": "Canal Side Surgery", "locality": "North",
        "list_size": "6200", "emails": "manager.g83020@nhs.net",
    }  # fmt: skip
    refused = post_form(
        client, f"{url}/additions", f"{url}/additions",
        {**practice, "ods_code": "nope", "reason": "Left off the list by mistake."},
    )  # fmt: skip
    assert refused.status_code == 422
    assert "ods_code" in main_text(refused)
    no_reason = post_form(client, f"{url}/additions", f"{url}/additions", practice)
    assert no_reason.status_code == 422
    proposed = post_form(
        client, f"{url}/additions", f"{url}/additions",
        {**practice, "reason": "Left off the list by mistake."},
    )  # fmt: skip
    assert proposed.status_code == 303, proposed.text
    roll = client.get(f"/api/v1/ballots/{ballot_id}/roll").json()
    assert "G83020" not in [p["ods_code"] for p in roll]
    assert "Waiting for the scrutineer" in main_text(client.get(f"{url}/additions"))

    sign_in(client, factories.SCRUTINEER, Role.scrutineer)
    page = client.get(f"{url}/additions")
    action = re.search(rf'action="({url}/additions/\d+/approve)"', page.text)
    assert action is not None
    approved = post_form(client, f"{url}/additions", action.group(1))
    assert approved.status_code == 303, approved.text
    roll = client.get(f"/api/v1/ballots/{ballot_id}/roll").json()
    assert "G83020" in [p["ods_code"] for p in roll]
    assert "G83020" in factories.sent_links()
