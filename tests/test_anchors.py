"""Announcements that anchor the record outside the server: what the emails carry, and
`mandate verify --anchor`, which catches a trail rewritten after an email named its head."""

import base64
import json
import mailbox
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from app import cli, clock, config, errors, mail, outbox, proof, schedule, signing, transfer
from app import verify as verification
from app.db import session_scope
from app.models import AuditEntry, DeliveryStatus, MessageKind, OutboxMessage
from tests import factories, test_transfer

# How the confirmation and close emails print the audit trail's head.
HEAD = re.compile(r"entry (\d+), with hash\s+([0-9a-f]{64})")


def _delivered(subject_starts: str) -> list[Message]:
    outbox.deliver_pending()
    maildir = config.get_settings().maildir
    assert maildir is not None
    return [
        m
        for m in mailbox.Maildir(maildir, create=False)
        if str(m["Subject"]).startswith(subject_starts)
    ]


def _head_in(message: Message) -> tuple[int, str]:
    found = HEAD.search(mail.plain_text(message))
    assert found is not None, mail.plain_text(message)
    return int(found.group(1)), found.group(2)


def _invoke(*args: str) -> tuple[int, str]:
    """Run `mandate ARGS` in this process: (exit code, what it printed, line wrapping undone)."""
    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, " ".join(result.output.split())


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _pretty(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def _rewritten(source: Path, target: Path, *, seq: int, key: Ed25519PrivateKey) -> Path:
    """The bundle a forger holding a key would publish after rewriting audit entry `seq`.

    Every hash after the change is recomputed, the manifest and evidence record follow the new
    head, and the manifest is signed again, so every check on the bundle alone still passes.
    """
    files = _members(source)
    trail = [json.loads(line) for line in files["audit_log.jsonl"].decode().splitlines()]
    trail[seq - 1]["actor"] = "staff:someone-else"
    prev = trail[seq - 2]["hash"] if seq > 1 else proof.GENESIS
    renamed = {}
    for entry in trail[seq - 1 :]:
        entry["prev"] = prev
        old, entry["hash"] = entry["hash"], proof.entry_hash(entry)
        renamed[old] = prev = entry["hash"]
    files["audit_log.jsonl"] = b"".join(proof.canonical_json(e) + b"\n" for e in trail)
    manifest = json.loads(files["manifest.json"])
    evidence = manifest["evidence"]
    evidence["audit_at_publish"]["hash"] = renamed[evidence["audit_at_publish"]["hash"]]
    manifest["fingerprint"] = proof.fingerprint(evidence)
    manifest["audit_head"]["hash"] = trail[-1]["hash"]
    public = signing.public_b64(key)
    manifest["signing_key"] |= {"public_key": public, "fingerprint": proof.key_fingerprint(public)}
    manifest["files"] = {name: proof.sha256_hex(files[name]) for name in manifest["files"]}
    files["manifest.json"] = _pretty(manifest)
    files["manifest.sig"] = base64.b64encode(key.sign(files["manifest.json"])) + b"\n"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, files[info.filename])
    return target


@pytest.fixture
def published_id(client: TestClient, secretariat: dict[str, str], frozen_clock: object) -> int:
    return factories.published_ballot(client, secretariat)


@pytest.fixture
def bundle(
    client: TestClient, secretariat: dict[str, str], published_id: int, tmp_path: Path
) -> Path:
    response = client.get(f"/api/v1/ballots/{published_id}/evidence", headers=secretariat)
    assert response.status_code == 200, response.text
    path = tmp_path / "bundle.zip"
    path.write_bytes(response.content)
    return path


@pytest.fixture
def service_key(client: TestClient) -> str:
    key: str = client.get("/api/v1/signing-key").json()["current"]["public_key"]
    return key


# --- mandate verify --anchor -----------------------------------------------------------------


def test_a_head_kept_from_a_confirmation_is_found_on_the_bundles_chain(
    bundle: Path, service_key: str
) -> None:
    confirmation = next(m for m in _delivered("Vote recorded") if "g83001" in str(m["To"]))
    seq, head = _head_in(confirmation)
    code, output = _invoke("verify", str(bundle), "--key", service_key, "--anchor", head)
    assert code == 0, output
    assert f"✓ anchor {head[:16]}…: audit entry {seq} (" in output
    assert "All checks passed." in output


def test_several_anchors_each_say_where_they_were_found(bundle: Path, service_key: str) -> None:
    closed = next(m for m in _delivered("Voting has closed") if "g83002" in str(m["To"]))
    seq, head = _head_in(closed)
    trail = verification.read(bundle).trail
    sealed = next(e for e in trail if e["action"] == "closed")["payload"]["sealed_sha256"]
    root = verification.read(bundle).evidence["ballot_box_root"]
    code, output = _invoke(
        "verify", str(bundle), "--key", service_key,
        "--anchor", head, "--anchor", sealed.upper(), "--anchor", root,
    )  # fmt: skip
    assert code == 0, output
    assert f"audit entry {seq} (" in output
    assert "the sealed box fixed at close (entry" in output
    assert "8 sealed ballots" in output
    assert "the ballot-box root in entry" in output


def test_an_anchor_not_in_the_bundle_fails_with_a_clear_line(
    bundle: Path, service_key: str
) -> None:
    stranger = proof.sha256_hex(b"another ballot")
    code, output = _invoke("verify", str(bundle), "--key", service_key, "--anchor", stranger)
    assert code == 1
    assert f"✗ anchor {stranger[:16]}…: not in this bundle" in output
    assert "The bundle does NOT verify." in output
    code, output = _invoke("verify", str(bundle), "--key", service_key, "--anchor", "abc123")
    assert code == 1
    assert '"abc123" is not a SHA-256 hash' in output


def test_a_rewritten_chain_that_verifies_alone_is_caught_by_the_kept_head(
    bundle: Path, service_key: str, tmp_path: Path
) -> None:
    confirmation = next(m for m in _delivered("Vote recorded") if "g83001" in str(m["To"]))
    seq, head = _head_in(confirmation)
    forger = Ed25519PrivateKey.generate()
    forged = _rewritten(bundle, tmp_path / "forged.zip", seq=2, key=forger)
    assert seq > 2  # the rewrite lies before the head the email kept

    # On its own the forged bundle stands: chain, fingerprint, signature (by the forger's key).
    alone = verification.verify(forged, key=signing.public_b64(forger))
    assert all(c.ok for c in alone), [c for c in alone if not c.ok]
    assert verification.read(forged).trail[seq - 1]["hash"] != head

    code, output = _invoke(
        "verify", str(forged), "--key", signing.public_b64(forger), "--anchor", head
    )
    assert code == 1
    assert "✓ audit chain" in output
    assert f"✗ anchor {head[:16]}…: not in this bundle" in output
    # The genuine bundle holds the same head.
    assert _invoke("verify", str(bundle), "--key", service_key, "--anchor", head)[0] == 0


# --- the close email and the declaration carry the box commitment ----------------------------


def test_the_close_email_carries_the_sealed_box_commitment_the_declaration_shows(
    client: TestClient, secretariat: dict[str, str], bundle: Path, service_key: str
) -> None:
    closed = verification.read(bundle).only("closed")
    sealed = closed["payload"]["sealed_sha256"]
    emails = _delivered("Voting has closed")
    assert len(emails) == 9  # every address, voted or not
    for email in emails:
        text = " ".join(mail.plain_text(email).split())
        assert (
            f"sealed at close holding 8 ballots, and the audit trail fixed it (entry "
            f"{closed['seq']})" in text
        )
        assert sealed in text
        assert f"--anchor {sealed}" in text
    declaration = _members(bundle)["declaration.html"].decode()
    root = verification.read(bundle).evidence["ballot_box_root"]
    for digest in (sealed, root):
        grouped = " ".join(digest[i : i + 4] for i in range(0, 64, 4))
        assert grouped in declaration
    assert "Sealed box fixed at close (8 ballots), SHA-256:" in declaration
    # What the email says to do with it works on the published bundle.
    assert _invoke("verify", str(bundle), "--key", service_key, "--anchor", sealed)[0] == 0


# --- the publication announcement ------------------------------------------------------------

SCRUTINEER_EMAIL = "sam.okafor@lmc.example"
LMC_EMAIL = "secretary@lmc.example"
GOVERNANCE = {
    "scrutineer": "Sam Okafor, LMC",
    "scrutineer_accounts": [factories.SCRUTINEER],
    "scrutineer_emails": {factories.SCRUTINEER: SCRUTINEER_EMAIL},
    "lmc_contact_email": LMC_EMAIL,
}


def test_the_publication_reaches_every_address_the_scrutineer_and_the_lmc_without_choices(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    ballot_id = factories.published_ballot(client, secretariat, governance=GOVERNANCE)
    response = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=secretariat)
    before = response.content
    announcements = _delivered("Result published")
    roll_addresses = [a for row in factories.roll(9) for a in row["emails"]]
    assert sorted(str(m["To"]) for m in announcements) == sorted(
        [*roll_addresses, SCRUTINEER_EMAIL, LMC_EMAIL]
    )
    bundle = tmp_path / "bundle.zip"
    bundle.write_bytes(before)
    record = verification.read(bundle)
    fingerprint = " ".join(record.manifest["fingerprint"][i : i + 4] for i in range(0, 64, 4))
    receipts = [r["receipt_code"] for r in record.csv("receipts.csv")]
    for message in announcements:
        text = mail.plain_text(message)
        assert "DECLARATION OF RESULT" in text
        assert "Question 1: Apply for delegated commissioning from 1 April 2017?" in text
        assert "Practices: For 5, Against 2, Abstain 1, cast 8 of 9 eligible" in text
        assert "Outcome: Carried" in text
        assert fingerprint in text
        assert f"/api/v1/ballots/{ballot_id}/evidence" in text
        assert "Practices recorded as voted: 8 of 9." in text
        for i in range(8):
            assert f"  - Practice {i + 1} (G{83001 + i})\n" in text
        assert "- Practice 9 (G83009)" not in text
        # Never how anyone voted: no line names a practice with an option, no receipt is shown.
        for line in text.splitlines():
            if re.search(r"\(G\d{5}\)", line):
                assert not re.search(r"\b(For|Against|Abstain)\b", line), line
        assert not any(code in text for code in receipts)
        assert "/vote/" not in text
        seq, head = _head_in(message)
        assert record.entry(seq) is not None
        assert record.trail[seq - 1]["hash"] == head
    assert "This email is for Practice 1 (G83001)." in mail.plain_text(
        next(m for m in announcements if "g83001" in str(m["To"]))
    )
    # The bundle does not list the announcement's own delivery: it was sent after the record.
    again = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=secretariat).content
    (tmp_path / "again.zip").write_bytes(again)
    kinds = {r["kind"] for r in verification.read(tmp_path / "again.zip").csv("deliveries.csv")}
    assert "closed" in kinds
    assert "published" not in kinds


def test_an_address_for_a_scrutineer_the_ballot_does_not_name_is_refused(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    governance = GOVERNANCE | {"scrutineer_emails": {"someone-else": SCRUTINEER_EMAIL}}
    body = factories.definition(governance=governance)
    response = client.post("/api/v1/ballots", json=body, headers=secretariat)
    assert response.status_code == 422
    assert "someone-else, not in scrutineer_accounts" in response.json()["detail"]
    bad = factories.definition(governance=GOVERNANCE | {"lmc_contact_email": "not an address"})
    assert client.post("/api/v1/ballots", json=bad, headers=secretariat).status_code == 422
    assert client.get("/api/v1/ballots", headers=secretariat).json() in ([], {"ballots": []})


# --- the scrutineers' daily digest -----------------------------------------------------------


def _digests() -> list[Message]:
    return _delivered("Scrutineer's daily digest")


def test_the_digest_goes_to_the_scrutineer_once_a_london_day_with_turnout_and_the_head(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, db: Engine
) -> None:
    ballot_id = factories.open_ballot(client, secretariat, governance=GOVERNANCE)
    assert schedule.run_due() == [
        f"ballot {ballot_id}: voting started",
        f"ballot {ballot_id}: scrutineers' digest queued",
    ]
    first = _digests()
    assert [str(m["To"]) for m in first] == [SCRUTINEER_EMAIL]
    text = " ".join(mail.plain_text(first[0]).split())
    assert "for Thursday 10 November 2016" in text
    assert "Turnout so far: 0 of 9 practices have voted (0%)." in text
    assert "Messages the mail server refused for good: 0." in text

    factories.cast_votes(client, ["For", "Against"])
    with session_scope() as session:  # the mail server refused one confirmation for good
        message = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == MessageKind.confirmation)
        ).first()
        assert message is not None
        message.status = DeliveryStatus.failed
    # Later the same London day, by the scheduler or the command: nothing more.
    clock.freeze(datetime(2016, 11, 10, 23, 59, tzinfo=UTC))  # GMT in November
    assert schedule.run_due() == []
    code, output = _invoke("digest", "send", "--ballot", str(ballot_id))
    assert code == 0, output
    assert "already queued; none is sent twice" in output
    assert len(_digests()) == 1

    clock.freeze(datetime(2016, 11, 11, 0, 1, tzinfo=UTC))
    assert schedule.run_due() == [f"ballot {ballot_id}: scrutineers' digest queued"]
    assert schedule.run_due() == []
    digests = _digests()
    assert len(digests) == 2
    latest = next(m for m in digests if "Friday 11 November 2016" in mail.plain_text(m))
    text = " ".join(mail.plain_text(latest).split())
    assert "Turnout so far: 2 of 9 practices have voted (22%)." in text
    assert "Messages the mail server refused for good: 1." in text
    seq, head = _head_in(latest)
    with session_scope() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.ballot_id == ballot_id, AuditEntry.seq == seq)
        ).one()
        assert entry.hash == head
        queued = session.scalars(
            select(AuditEntry.payload).where(AuditEntry.action == "digest_queued")
        ).all()
    assert [p["day"] for p in queued] == ["2016-11-10", "2016-11-11"]
    # How many voted, never who or how.
    assert not re.search(r"\b(For|Against|Abstain)\b|G830\d\d", text)

    # The command sends the next day's for every open ballot.
    clock.freeze(datetime(2016, 11, 12, 9, 0, tzinfo=UTC))
    code, output = _invoke("digest", "send")
    assert code == 0, output
    assert f"ballot {ballot_id}: scrutineers' digest queued" in output
    assert len(_digests()) == 3


def test_the_digest_command_refuses_a_closed_ballot_or_one_without_an_address(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    without = factories.open_ballot(client, secretariat)
    assert schedule.run_due() == [f"ballot {without}: voting started"]  # no address: no digest
    result = CliRunner().invoke(cli.app, ["digest", "send", "--ballot", str(without)])
    assert isinstance(result.exception, errors.Conflict)
    assert "gives no scrutineer an email address" in result.exception.detail
    published = factories.published_ballot(
        client, secretariat, governance=GOVERNANCE, reference="TEST-2016-L4"
    )
    result = CliRunner().invoke(cli.app, ["digest", "send", "--ballot", str(published)])
    assert isinstance(result.exception, errors.WrongState)
    assert "goes only while it is open" in result.exception.detail
    assert _digests() == []


def test_an_export_carries_the_messages_to_people_off_the_roll(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.published_ballot(client, secretariat, governance=GOVERNANCE)
    with session_scope() as session:
        exported = transfer.export(session, ballot_id=ballot_id)
    off_roll = exported["outbox_message"]
    assert sorted(m["to_address"] for m in off_roll) == sorted([LMC_EMAIL, SCRUTINEER_EMAIL])
    assert {m["kind"] for m in off_roll} == {"published"}
    test_transfer._forget(ballot_id)  # as if imported into a fresh database
    with session_scope() as session:
        copy = transfer.import_ballot(session, exported)
    with session_scope() as session:
        arrived = session.scalars(
            select(OutboxMessage.to_address).where(
                OutboxMessage.ballot_id == copy, OutboxMessage.roll_entry_id.is_(None)
            )
        ).all()
    assert sorted(arrived) == sorted([LMC_EMAIL, SCRUTINEER_EMAIL])


def test_servers_looking_at_once_queue_one_digest(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat, governance=GOVERNANCE)
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = [s for result in pool.map(lambda _: schedule.run_due(), range(4)) for s in result]
    assert done.count(f"ballot {ballot_id}: scrutineers' digest queued") == 1
    assert len(_digests()) == 1
