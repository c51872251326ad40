"""Add-only corrections to the roll while a ballot is open: proposed with a reason by the
secretariat, approved by the scrutineer, the link out at once, in the trail, the bundle and the
declaration, and the verifier still passing."""

import io
import mailbox
import re
import zipfile
from pathlib import Path
from typing import Any

import httpx2 as httpx
from fastapi.testclient import TestClient

from app import config, mail, outbox, verify
from app.models import Role
from tests import factories

NEW = "G83100"
REASON = "Left off the roll by mistake: merged into the CCG on 1 October"


def _addition(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ods_code": NEW,
        "name": "Practice 100",
        "locality": "North",
        "list_size": 7000,
        "emails": [f"contact0.{NEW.lower()}@practice.example"],
        "reason": REASON,
    }
    body.update(changes)
    return body


def _propose(
    client: TestClient, headers: dict[str, str], ballot_id: int, **changes: Any
) -> httpx.Response:
    url = f"/api/v1/ballots/{ballot_id}/roll/additions"
    return client.post(url, json=_addition(**changes), headers=headers)


def _approve(client: TestClient, headers: dict[str, str], ballot_id: int, n: int) -> httpx.Response:
    return client.post(f"/api/v1/ballots/{ballot_id}/roll/additions/{n}/approve", headers=headers)


def _codes(client: TestClient, headers: dict[str, str], ballot_id: int) -> list[str]:
    roll = client.get(f"/api/v1/ballots/{ballot_id}/roll", headers=headers).json()
    return [p["ods_code"] for p in roll]


def _trail(client: TestClient, headers: dict[str, str], ballot_id: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = client.get(
        f"/api/v1/ballots/{ballot_id}/audit", headers=headers
    ).json()["entries"]
    return entries


def _added(client: TestClient, secretariat: dict[str, str], ballot_id: int) -> None:
    assert _propose(client, secretariat, ballot_id).status_code == 201
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    response = _approve(client, scrutineer, ballot_id, 1)
    assert response.status_code == 200, response.text


def test_an_addition_goes_on_the_roll_only_when_the_scrutineer_approves_it(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    proposed = _propose(client, secretariat, ballot_id)
    assert proposed.status_code == 201, proposed.text
    assert proposed.json()["number"] == 1
    assert proposed.json()["on_roll"] is False
    assert NEW not in _codes(client, secretariat, ballot_id)
    assert NEW not in factories.sent_links()

    # Those who run the ballot cannot approve their own correction.
    assert _approve(client, secretariat, ballot_id, 1).status_code == 403
    assert NEW not in _codes(client, secretariat, ballot_id)

    scrutineer = factories.staff_headers(client, Role.scrutineer)
    approved = _approve(client, scrutineer, ballot_id, 1)
    assert approved.status_code == 200, approved.text
    assert approved.json()["approved_by"] == factories.SCRUTINEER
    assert approved.json()["on_roll"] is True
    assert NEW in _codes(client, secretariat, ballot_id)
    turnout = client.get(f"/api/v1/ballots/{ballot_id}/turnout", headers=secretariat).json()
    assert turnout["eligible"] == 10

    # Approving twice adds nothing more.
    assert _approve(client, scrutineer, ballot_id, 1).status_code == 409
    trail = _trail(client, secretariat, ballot_id)
    actions = [e["action"] for e in trail]
    assert actions.count("roll_addition_approved") == 1
    proposal = next(e for e in trail if e["action"] == "roll_addition_proposed")
    approval = next(e for e in trail if e["action"] == "roll_addition_approved")
    assert proposal["actor"] == "staff:secretariat-user"
    assert proposal["payload"]["reason"] == REASON
    assert approval["actor"] == f"staff:{factories.SCRUTINEER}"
    assert approval["payload"]["practice"]["ods_code"] == NEW
    assert proposal["seq"] < approval["seq"]


def test_an_account_the_ballot_names_but_not_a_scrutineer_cannot_approve(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(
        client, secretariat, governance={"scrutineer_accounts": ["scrutineer-user", "auditor-user"]}
    )
    assert _propose(client, secretariat, ballot_id).status_code == 201
    # The ballot names the account, but an auditor is not a scrutineer.
    auditor = factories.staff_headers(client, Role.auditor)
    assert _approve(client, auditor, ballot_id, 1).status_code == 403
    assert NEW not in _codes(client, secretariat, ballot_id)


def test_a_bad_addition_is_refused_and_changes_nothing(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    url = f"/api/v1/ballots/{ballot_id}/roll/additions"
    without_reason = {k: v for k, v in _addition().items() if k != "reason"}
    assert client.post(url, json=without_reason, headers=secretariat).status_code == 422
    assert _propose(client, secretariat, ballot_id, reason="  ").status_code == 422
    outside = _propose(client, secretariat, ballot_id, emails=["partner@gmail.com"])
    assert outside.status_code == 422
    assert "gmail.com" in outside.json()["detail"]
    already = _propose(client, secretariat, ballot_id, ods_code="G83001")
    assert already.status_code == 409
    assert "only add practices" in already.json()["detail"]
    assert _propose(client, secretariat, ballot_id, list_size=0).status_code == 422
    assert client.get(url, headers=secretariat).json() == []
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    assert _approve(client, scrutineer, ballot_id, 1).status_code == 404
    assert _approve(client, scrutineer, ballot_id, 2**40).status_code == 404
    assert "roll_addition_proposed" not in [
        e["action"] for e in _trail(client, secretariat, ballot_id)
    ]

    # The same practice twice while the first proposal waits.
    assert _propose(client, secretariat, ballot_id).status_code == 201
    assert _propose(client, secretariat, ballot_id).status_code == 409


def test_additions_are_only_while_the_ballot_is_open(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    draft = factories.draft_ballot(client, secretariat)
    refused = _propose(client, secretariat, draft)
    assert refused.status_code == 409
    assert "replace the roll instead" in refused.json()["detail"]


def test_the_added_practice_gets_its_link_at_once_and_can_vote(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    _added(client, secretariat, ballot_id)
    token = factories.token_for(NEW)
    vote = {"choices": {"delegated": "For", "constitution": "For"}}
    response = client.post(f"/api/v1/vote/{token}", json=vote)
    assert response.status_code == 200, response.text
    turnout = client.get(f"/api/v1/ballots/{ballot_id}/turnout", headers=secretariat).json()
    (added,) = [p for p in turnout["practices"] if p["ods_code"] == NEW]
    assert added["voted_at"] is not None


def _change_addresses(
    client: TestClient, headers: dict[str, str], ballot_id: int, ods_code: str, **body: Any
) -> httpx.Response:
    url = f"/api/v1/ballots/{ballot_id}/voters/{ods_code}/addresses"
    return client.put(url, json=body, headers=headers)


def _mail() -> list[tuple[str, str, str]]:
    """(to, subject, plain text) of every message delivered so far."""
    outbox.deliver_pending()
    maildir = config.get_settings().maildir
    assert maildir is not None
    return [
        (str(m["To"]), str(m["Subject"]), mail.plain_text(m))
        for m in mailbox.Maildir(maildir, create=False)
    ]


MOVED = "The NHSmail address of the practice manager replaced the old practice mailbox"


def test_an_address_change_needs_a_reason_and_every_address_old_and_new_is_told(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    old_token = factories.token_for("G83001")
    old, new = "contact0.g83001@practice.example", "manager.g83001@practice.example"
    refused = [
        _change_addresses(client, secretariat, ballot_id, "G83001", emails=[new]),
        _change_addresses(client, secretariat, ballot_id, "G83001", emails=[new], reason=" "),
        _change_addresses(
            client, secretariat, ballot_id, "G83001", emails=["pm@gmail.com"], reason=MOVED
        ),
        _change_addresses(client, secretariat, ballot_id, "G83001", emails=[], reason=MOVED),
    ]
    assert [r.status_code for r in refused] == [422, 422, 422, 422]
    same = _change_addresses(client, secretariat, ballot_id, "G83001", emails=[old], reason=MOVED)
    assert same.status_code == 409
    unknown = _change_addresses(
        client, secretariat, ballot_id, "G89999", emails=[new], reason=MOVED
    )
    assert unknown.status_code == 404
    assert NEW not in factories.sent_links()

    changed = _change_addresses(
        client, secretariat, ballot_id, "G83001", emails=[new.upper()], reason=MOVED
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["emails"] == [new]

    delivered = _mail()
    told = {to for to, subject, _ in delivered if "addresses were changed" in subject}
    assert told == {old, new}
    (to_old,) = [t for to, s, t in delivered if to == old and "addresses were changed" in s]
    assert "no longer on the roll" in to_old
    new_links = [to for to, subject, _ in delivered if subject.startswith("Your new voting link")]
    assert new_links == [new]

    vote = {"choices": {"delegated": "For", "constitution": "For"}}
    assert client.post(f"/api/v1/vote/{old_token}", json=vote).status_code == 404
    (new_text,) = [t for to, s, t in delivered if to == new and s.startswith("Your new voting")]
    token = re.search(r"/vote/([A-Za-z0-9_-]+)", new_text)
    assert token is not None
    assert client.post(f"/api/v1/vote/{token.group(1)}", json=vote).status_code == 200

    (entry,) = [
        e for e in _trail(client, secretariat, ballot_id) if e["action"] == "addresses_changed"
    ]
    assert entry["payload"]["emails_was"] == [old]
    assert entry["payload"]["emails"] == [new]
    assert entry["payload"]["reason"] == MOVED


def _published_with_addition(
    client: TestClient, secretariat: dict[str, str], ballot_id: int, tmp_path: Path
) -> Path:
    _added(client, secretariat, ballot_id)
    moved = _change_addresses(
        client, secretariat, ballot_id, "G83009",
        emails=["manager.g83009@practice.example"], reason=MOVED,
    )  # fmt: skip
    assert moved.status_code == 200, moved.text
    factories.cast_votes(client, ["For", "For", "Against"])
    vote = {"choices": {"delegated": "Against", "constitution": "For"}}
    assert client.post(f"/api/v1/vote/{factories.token_for(NEW)}", json=vote).status_code == 200
    factories.close_and_publish(client, secretariat, ballot_id)
    auditor = factories.staff_headers(client, Role.auditor)
    response = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=auditor)
    assert response.status_code == 200, response.text
    path = tmp_path / "bundle.zip"
    path.write_bytes(response.content)
    return path


def test_the_verifier_passes_after_an_addition_and_the_declaration_lists_it(
    client: TestClient, secretariat: dict[str, str], ballot_id: int, tmp_path: Path
) -> None:
    path = _published_with_addition(client, secretariat, ballot_id, tmp_path)
    key = client.get("/api/v1/signing-key").json()["current"]["public_key"]
    checks = {c.name: c for c in verify.verify(path, key=key)}
    assert {name for name, c in checks.items() if not c.ok} == set()
    assert "9 practices (and 1 added while open)" in checks["frozen ballot"].detail
    assert "1 address change(s)" in checks["roll corrections"].detail
    assert NEW in checks["roll corrections"].detail
    result = client.get(f"/api/v1/ballots/{ballot_id}/results").json()
    assert result["eligible"] == 10

    archive = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    html = archive.read("declaration.html").decode()
    assert f"Practice 100 ({NEW}) added to the roll" in html
    assert REASON in html
    assert f"approved by the scrutineer {factories.SCRUTINEER}" in html
    assert "Practice 9 (G83009): addresses changed" in html
    assert MOVED in html


def test_the_verifier_refuses_an_addition_not_approved_by_a_named_scrutineer(
    client: TestClient, secretariat: dict[str, str], ballot_id: int, tmp_path: Path
) -> None:
    path = _published_with_addition(client, secretariat, ballot_id, tmp_path)

    bundle = verify.read(path)
    (approval,) = [e for e in bundle.trail if e["action"] == "roll_addition_approved"]
    approval["actor"] = "staff:secretariat-user"
    check = verify._roll_corrections(bundle)
    assert not check.ok
    assert "not a scrutineer the ballot names" in check.detail

    # Without its approval in the trail, the added practice makes roll.csv another roll than
    # the one frozen at open.
    bundle = verify.read(path)
    bundle.trail.remove(next(e for e in bundle.trail if e["action"] == "roll_addition_approved"))
    assert not verify._frozen(bundle).ok
    assert not verify._roll_corrections(bundle).ok

    # An address change the trail does not record makes roll.csv another roll than was frozen.
    bundle = verify.read(path)
    bundle.trail.remove(next(e for e in bundle.trail if e["action"] == "addresses_changed"))
    assert not verify._frozen(bundle).ok
