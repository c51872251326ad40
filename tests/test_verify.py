"""The offline verifier against tampered bundles, the ballot box tampered with before publication,
the `mandate verify`, `keygen` and `attest` commands, countersignatures, key rotation, and what
the trail and the auditor see."""

import base64
import csv
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import JSON, bindparam, select, text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from app import cli, clock, config, errors, proof, signing
from app import verify as verification
from app.db import session_scope
from app.models import BallotBoxEntry, Role
from tests import factories

Edit = Callable[[bytes], bytes]
ATTESTER = "Dr Ann Example"
CAPACITY = "Lay chair, Audit Committee"
STATEMENT = "I have verified this evidence bundle and the recount matches the declared result."


# Helpers: download, read, rewrite and forge a bundle.


def _download(client: TestClient, headers: dict[str, str], ballot_id: int, path: Path) -> Path:
    response = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=headers)
    assert response.status_code == 200, response.text
    path.write_bytes(response.content)
    return path


def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _rewrite(source: Path, target: Path, changes: Mapping[str, bytes]) -> Path:
    """A copy of the bundle with some members' bytes replaced; names, order and stamps kept."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, changes.get(info.filename, old.read(info)))
    return target


def _public(key: Ed25519PrivateKey) -> str:
    return signing.public_b64(key)


def _pretty(value: Any) -> bytes:
    """The manifest's layout, as the server writes it."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def _forge(
    source: Path,
    target: Path,
    changes: Mapping[str, bytes],
    *,
    key: Ed25519PrivateKey | None,
    record: bool = True,
) -> Path:
    """What a forger publishes: the files changed and the manifest's hashes made to match them.

    With `record`, the evidence record's hashes and the fingerprint are redone too. With a key,
    the manifest is re-signed by it and names it; without, the service's signature is kept.
    """
    files = _members(source) | dict(changes)
    manifest = json.loads(files["manifest.json"])
    if record:
        evidence = manifest["evidence"]
        evidence["files"] = {name: proof.sha256_hex(files[name]) for name in evidence["files"]}
        manifest["fingerprint"] = proof.fingerprint(evidence)
    manifest["files"] = {name: proof.sha256_hex(files[name]) for name in manifest["files"]}
    signature = files["manifest.sig"]
    if key is not None:
        public = _public(key)
        manifest["signing_key"] |= {
            "key_id": signing.key_id(public),
            "public_key": public,
            "fingerprint": proof.key_fingerprint(public),
        }
    content = _pretty(manifest)
    if key is not None:
        signature = base64.b64encode(key.sign(content)) + b"\n"
    return _rewrite(
        source, target, {**changes, "manifest.json": content, "manifest.sig": signature}
    )


def _checks(path: Path, key: str | None) -> dict[str, verification.Check]:
    return {c.name: c for c in verification.verify(path, key=key)}


def _failed(checks: Mapping[str, verification.Check]) -> set[str]:
    return {name for name, check in checks.items() if not check.ok}


def _replace(old: bytes, new: bytes) -> Edit:
    """An edit of one occurrence, which must be there exactly once."""

    def edit(data: bytes) -> bytes:
        assert data.count(old) == 1, (old, data)
        return data.replace(old, new)

    return edit


def _trail(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def _jsonl(entries: list[dict[str, Any]]) -> bytes:
    return b"".join(proof.canonical_json(e) + b"\n" for e in entries)


def _first(entries: list[dict[str, Any]], action: str) -> int:
    """The index of the first entry of this action."""
    return next(i for i, e in enumerate(entries) if e["action"] == action)


# Fixtures.


@pytest.fixture
def published_id(client: TestClient, secretariat: dict[str, str], frozen_clock: object) -> int:
    """Nine practices, eight voted (5 For, 2 Against, 1 Abstain), closed and published."""
    return factories.published_ballot(client, secretariat)


@pytest.fixture
def bundle(
    client: TestClient, secretariat: dict[str, str], published_id: int, tmp_path: Path
) -> Path:
    return _download(client, secretariat, published_id, tmp_path / "bundle.zip")


@pytest.fixture
def service_key(client: TestClient) -> str:
    key: str = client.get("/api/v1/signing-key").json()["current"]["public_key"]
    return key


@pytest.fixture
def attacker() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def auditor(client: TestClient) -> dict[str, str]:
    return factories.staff_headers(client, Role.auditor)


# 1. Tampering with a bundle.

# Edits of ballot_box.csv; the box is sorted, and these rows are each there once.
BOX_EDITS = {
    "a choice changed": _replace(b"North,1,Against,For\r\n", b"North,1,For,For\r\n"),
    "a ballot added": _replace(b"South,1,For,For\r\n", b"South,1,For,For\r\nSouth,1,For,For\r\n"),
    "a ballot removed": _replace(b"South,1,Against,For\r\n", b""),
}


def test_the_untampered_bundle_passes_every_check(bundle: Path, service_key: str) -> None:
    # The baseline every tampering test departs from.
    checks = _checks(bundle, service_key)
    assert _failed(checks) == set()
    assert len(checks) == 14


@pytest.mark.parametrize("edit", BOX_EDITS.values(), ids=BOX_EDITS.keys())
def test_an_edited_ballot_box_fails_the_file_hashes(
    bundle: Path, service_key: str, tmp_path: Path, edit: Edit
) -> None:
    box = _members(bundle)["ballot_box.csv"]
    tampered = _rewrite(bundle, tmp_path / "t.zip", {"ballot_box.csv": edit(box)})
    checks = _checks(tampered, service_key)
    assert checks["service signature"].ok  # the manifest itself is untouched
    assert not checks["file hashes"].ok
    assert checks["file hashes"].detail == "changed since signing: ballot_box.csv"
    assert not checks["ballot box root"].ok


def test_a_manifest_rehashed_but_not_resigned_fails_the_service_signature(
    bundle: Path, service_key: str, tmp_path: Path
) -> None:
    edit = BOX_EDITS["a choice changed"]
    changes = {"ballot_box.csv": edit(_members(bundle)["ballot_box.csv"])}
    tampered = _forge(bundle, tmp_path / "t.zip", changes, key=None)
    checks = _checks(tampered, service_key)
    assert checks["file hashes"].ok  # the forger redid the hashes...
    assert not checks["service signature"].ok  # ...but cannot sign them with the service's key
    assert "does not match manifest.json: it was edited" in checks["service signature"].detail


def test_a_bundle_resigned_by_another_key_fails_against_the_service_key(
    bundle: Path, service_key: str, tmp_path: Path, attacker: Ed25519PrivateKey
) -> None:
    edit = BOX_EDITS["a choice changed"]
    changes = {"ballot_box.csv": edit(_members(bundle)["ballot_box.csv"])}
    tampered = _forge(bundle, tmp_path / "t.zip", changes, key=attacker)
    checks = _checks(tampered, service_key)
    assert checks["file hashes"].ok
    assert checks["fingerprint"].ok
    assert not checks["service signature"].ok
    assert "signed by another key than the one given" in checks["service signature"].detail


@pytest.mark.parametrize("edit", BOX_EDITS.values(), ids=BOX_EDITS.keys())
def test_a_consistently_forged_ballot_box_fails_the_box_root_and_the_recount(
    bundle: Path, tmp_path: Path, attacker: Ed25519PrivateKey, edit: Edit
) -> None:
    # Every hash and the signature match, under the forger's key: what is left is the box
    # committed to at close, inside the hash chain.
    changes = {"ballot_box.csv": edit(_members(bundle)["ballot_box.csv"])}
    forged = _forge(bundle, tmp_path / "t.zip", changes, key=attacker)
    checks = _checks(forged, _public(attacker))
    assert {"service signature", "file hashes", "fingerprint", "audit chain"} <= (
        checks.keys() - _failed(checks)
    )
    assert not checks["ballot box root"].ok
    assert (
        "ballot_box.csv is not the box committed to when the sealed box was opened"
        in checks["ballot box root"].detail
    )
    assert not checks["recount"].ok
    assert "the recount differs from the declared result: delegated" in checks["recount"].detail


def test_a_ballot_added_to_the_box_fails_receipts_and_turnout_too(
    bundle: Path, tmp_path: Path, attacker: Ed25519PrivateKey
) -> None:
    edit = BOX_EDITS["a ballot added"]
    changes = {"ballot_box.csv": edit(_members(bundle)["ballot_box.csv"])}
    forged = _forge(bundle, tmp_path / "t.zip", changes, key=attacker)
    checks = _checks(forged, _public(attacker))
    assert checks["receipts unique"].detail == (
        "8 receipts for 9 ballots: each ballot has one receipt"
    )
    assert "9 ballots but 8 practices marked as voted" in checks["ballots = practices voted"].detail
    assert "the close recorded 8 ballots, not 9" in checks["ballots = practices voted"].detail


def _edit_entry(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    # The first vote credited to the practice that did not vote.
    i = _first(entries, "voted")
    entries[i]["payload"]["ods_code"] = "G83009"
    return entries, f"entry {i + 1} was altered (its hash does not match its content)"


def _edit_and_rehash_entry(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    i = _first(entries, "voted")
    entries[i]["payload"]["ods_code"] = "G83009"
    entries[i]["hash"] = proof.entry_hash(entries[i])
    return entries, f"entry {i + 2} does not follow entry {i + 1} (its previous hash differs)"


def _remove_entry(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    i = _first(entries, "voted")
    del entries[i]
    return entries, f"entry {i + 1} is missing or out of order (found {i + 2})"


def _reorder_entries(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    # The first link issued swapped with the second.
    i = _first(entries, "link_issued")
    entries[i], entries[i + 1] = entries[i + 1], entries[i]
    return entries, f"entry {i + 1} is missing or out of order (found {i + 2})"


TRAIL_EDITS = {
    "a line edited": _edit_entry,
    "a line edited and rehashed": _edit_and_rehash_entry,
    "a line removed": _remove_entry,
    "two lines reordered": _reorder_entries,
}


@pytest.mark.parametrize("edit", TRAIL_EDITS.values(), ids=TRAIL_EDITS.keys())
def test_an_edited_audit_log_fails_the_file_hashes_and_the_chain(
    bundle: Path,
    service_key: str,
    tmp_path: Path,
    attacker: Ed25519PrivateKey,
    edit: Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], str]],
) -> None:
    entries, problem = edit(_trail(_members(bundle)["audit_log.jsonl"]))
    changes = {"audit_log.jsonl": _jsonl(entries)}

    plain = _checks(_rewrite(bundle, tmp_path / "plain.zip", changes), service_key)
    assert plain["file hashes"].detail == "changed since signing: audit_log.jsonl"
    assert plain["audit chain"].detail == problem

    # Hashes redone and re-signed: the chain itself still names the broken entry.
    forged = _forge(bundle, tmp_path / "forged.zip", changes, key=attacker)
    checks = _checks(forged, _public(attacker))
    assert checks["service signature"].ok
    assert checks["file hashes"].ok
    assert not checks["audit chain"].ok
    assert checks["audit chain"].detail == problem


def test_a_trail_without_the_scrutineers_approval_or_countersignature_fails_scrutiny(
    bundle: Path, service_key: str, tmp_path: Path
) -> None:
    trail = _trail(_members(bundle)["audit_log.jsonl"])
    approved = trail[_first(trail, "approved")]
    approved["payload"]["frozen_hash"] = "0" * 64
    edited = _rewrite(bundle, tmp_path / "a.zip", {"audit_log.jsonl": _jsonl(trail)})
    checks = _checks(edited, service_key)
    assert checks["scrutiny"].detail == "the scrutineer approved another ballot than opened"

    trail = [
        e for e in _trail(_members(bundle)["audit_log.jsonl"]) if "countersigned" not in e["action"]
    ]
    removed = _rewrite(bundle, tmp_path / "c.zip", {"audit_log.jsonl": _jsonl(trail)})
    checks = _checks(removed, service_key)
    assert checks["scrutiny"].detail == "no scrutineer countersigned the count that was published"


def _flip_outcome(manifest: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(manifest)
    question = data["evidence"]["result"]["questions"][0]
    assert question["outcome"] == "carried"
    question["outcome"] = "not_carried"
    return data


def test_an_edited_manifest_fails_the_service_signature(
    bundle: Path, service_key: str, tmp_path: Path
) -> None:
    manifest = _flip_outcome(_members(bundle)["manifest.json"])
    tampered = _rewrite(bundle, tmp_path / "t.zip", {"manifest.json": _pretty(manifest)})
    checks = _checks(tampered, service_key)
    assert checks["service signature"].detail == (
        "the signature does not match manifest.json: it was edited"
    )
    assert checks["fingerprint"].detail == "the evidence record does not hash to the fingerprint"


def test_a_declared_result_forged_and_resigned_fails_the_recount(
    bundle: Path, tmp_path: Path, attacker: Ed25519PrivateKey
) -> None:
    manifest = _flip_outcome(_members(bundle)["manifest.json"])
    manifest["fingerprint"] = proof.fingerprint(manifest["evidence"])
    changed = _rewrite(bundle, tmp_path / "changed.zip", {"manifest.json": _pretty(manifest)})
    forged = _forge(changed, tmp_path / "forged.zip", {}, key=attacker)
    checks = _checks(forged, _public(attacker))
    assert checks["service signature"].ok
    assert checks["fingerprint"].ok
    assert checks["recount"].detail == (
        "the recount differs from the declared result: "
        "delegated (carried on recount, not_carried declared)"
    )


def test_a_wrong_key_fails_the_service_signature(bundle: Path, attacker: Ed25519PrivateKey) -> None:
    checks = _checks(bundle, _public(attacker))
    assert not checks["service signature"].ok
    assert "signed by another key than the one given" in checks["service signature"].detail
    assert _failed(checks) == {"service signature"}


MARK_PRACTICE_9_VOTED = _replace(
    b"contact0.g83009@practice.example,no,\r\n",
    b"contact0.g83009@practice.example,yes,2016-11-10T12:00:00.000000Z\r\n",
)


def test_a_practice_marked_voted_in_the_roll_is_caught(
    bundle: Path, service_key: str, tmp_path: Path, attacker: Ed25519PrivateKey
) -> None:
    changes = {"roll.csv": MARK_PRACTICE_9_VOTED(_members(bundle)["roll.csv"])}

    plain = _checks(_rewrite(bundle, tmp_path / "plain.zip", changes), service_key)
    assert plain["file hashes"].detail == "changed since signing: roll.csv"

    # The manifest's list redone and re-signed, the fingerprinted record left alone.
    half = _checks(
        _forge(bundle, tmp_path / "half.zip", changes, key=attacker, record=False),
        _public(attacker),
    )
    assert half["file hashes"].ok
    assert half["fingerprint"].detail == "files differ from the record: roll.csv"

    # Everything redone: the trail and the box still say eight practices voted.
    forged = _forge(bundle, tmp_path / "forged.zip", changes, key=attacker)
    checks = _checks(forged, _public(attacker))
    assert checks["fingerprint"].ok
    assert checks["ballots = practices voted"].detail == (
        "roll.csv marks 9 practices as voted, the trail 8; "
        "8 ballots but 9 practices marked as voted"
    )


def test_a_practice_renamed_in_the_roll_fails_the_frozen_ballot(
    bundle: Path, tmp_path: Path, attacker: Ed25519PrivateKey
) -> None:
    edit = _replace(b",Practice 9,", b",Practice Nine,")
    changes = {"roll.csv": edit(_members(bundle)["roll.csv"])}
    forged = _forge(bundle, tmp_path / "forged.zip", changes, key=attacker)
    checks = _checks(forged, _public(attacker))
    assert checks["fingerprint"].ok
    assert not checks["frozen ballot"].ok
    assert "roll.csv is not the roll frozen at open" in checks["frozen ballot"].detail


# 2. Tampering with the database between close and publish.


def _opened_box(client: TestClient, headers: dict[str, str]) -> int:
    """A ballot voted, closed, and its sealed box opened by the key holders: ready to publish."""
    ballot_id = factories.open_ballot(client, headers)
    factories.cast_votes(client, ["For"] * 5 + ["Against"] * 2 + ["Abstain"])
    clock.freeze(factories.CLOSES + timedelta(seconds=1))
    response = client.post(f"/api/v1/ballots/{ballot_id}/close", headers=headers)
    assert response.status_code == 200, response.text
    factories.open_box(client, headers, ballot_id)
    return ballot_id


def _some_entry(ballot_id: int) -> tuple[str, dict[str, str]]:
    with session_scope() as session:
        entry = session.scalars(
            select(BallotBoxEntry)
            .where(BallotBoxEntry.ballot_id == ballot_id)
            .order_by(BallotBoxEntry.id)
        ).first()
        assert entry is not None
        return entry.id, dict(entry.choices)


def _change_a_choice(ballot_id: int) -> None:
    entry_id, choices = _some_entry(ballot_id)
    choices["delegated"] = "Against" if choices["delegated"] != "Against" else "For"
    statement = text("UPDATE ballot_box_entry SET choices = :choices WHERE id = :id")
    with session_scope() as session:
        changed = session.execute(
            statement.bindparams(bindparam("choices", type_=JSON)),
            {"choices": choices, "id": entry_id},
        )
        assert changed.rowcount == 1  # type: ignore[attr-defined]


def _delete_a_ballot(ballot_id: int) -> None:
    entry_id, _ = _some_entry(ballot_id)
    with session_scope() as session:
        deleted = session.execute(
            text("DELETE FROM ballot_box_entry WHERE id = :id"), {"id": entry_id}
        )
        assert deleted.rowcount == 1  # type: ignore[attr-defined]


def _insert_a_ballot(ballot_id: int) -> None:
    statement = text(
        "INSERT INTO ballot_box_entry (id, ballot_id, receipt_code, choices, locality, votes) "
        "VALUES (:id, :ballot_id, :receipt_code, :choices, 'North', 1)"
    )
    with session_scope() as session:
        session.execute(
            statement.bindparams(bindparam("choices", type_=JSON)),
            {
                "id": "f" * 32,
                "ballot_id": ballot_id,
                "receipt_code": "FAKE-FAKE-FAKE-FAKE-FAKE",
                "choices": {"delegated": "For", "constitution": "For"},
            },
        )


DATABASE_EDITS = {
    "a choice updated": _change_a_choice,
    "a ballot deleted": _delete_a_ballot,
    "a ballot inserted": _insert_a_ballot,
}


@pytest.mark.parametrize("edit", DATABASE_EDITS.values(), ids=DATABASE_EDITS.keys())
def test_a_ballot_box_changed_after_opening_is_not_published(
    client: TestClient,
    secretariat: dict[str, str],
    frozen_clock: object,
    edit: Callable[[int], None],
) -> None:
    ballot_id = _opened_box(client, secretariat)
    edit(ballot_id)
    response = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=secretariat)
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "BoxChanged"
    assert "The ballot box is not the one its key holders opened" in response.json()["detail"]
    ballot = client.get(f"/api/v1/ballots/{ballot_id}", headers=secretariat).json()
    assert ballot["status"] == "closed"
    assert ballot["published_at"] is None
    trail = client.get(f"/api/v1/ballots/{ballot_id}/audit", headers=secretariat).json()
    assert trail["entries"][-1]["action"] == "box_opened"


# 3. The `mandate verify` command.


def _invoke(*args: str) -> tuple[int, str]:
    """Run `mandate ARGS` in this process: (exit code, what it printed, line wrapping undone)."""
    result = CliRunner().invoke(cli.app, list(args))
    return result.exit_code, " ".join(result.output.split())


@pytest.mark.parametrize("given_as", ["base64", "file", "PEM file"])
def test_verify_command_passes_a_good_bundle_with_the_key(
    bundle: Path, service_key: str, tmp_path: Path, given_as: str
) -> None:
    key = service_key
    if given_as == "file":
        (tmp_path / "service.key").write_text(service_key + "\n")
        key = str(tmp_path / "service.key")
    elif given_as == "PEM file":
        pem = proof.public_key(service_key).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (tmp_path / "service.pem").write_bytes(pem)
        key = str(tmp_path / "service.pem")
    code, output = _invoke("verify", str(bundle), "--key", key)
    assert code == 0, output
    assert "All checks passed." in output
    assert "✗" not in output


def test_verify_command_without_a_key_fails_saying_internally_consistent(bundle: Path) -> None:
    code, output = _invoke("verify", str(bundle))
    assert code == 1
    assert "✗ service signature: no key given: the bundle is only internally consistent" in output
    assert "The bundle does NOT verify." in output


def test_verify_command_fails_a_tampered_bundle(
    bundle: Path, service_key: str, tmp_path: Path
) -> None:
    box = _members(bundle)["ballot_box.csv"]
    edit = BOX_EDITS["a choice changed"]
    tampered = _rewrite(bundle, tmp_path / "t.zip", {"ballot_box.csv": edit(box)})
    code, output = _invoke("verify", str(tampered), "--key", service_key)
    assert code == 1
    assert "✗ file hashes: changed since signing: ballot_box.csv" in output


def _report_rows(html: str) -> dict[str, str]:
    """Check name → the mark in its row of the report."""
    rows = re.findall(r'<td class="(?:ok|fail)">(.)</td><td>([^<]+)</td>', html)
    return {name: mark for mark, name in rows}


def test_verify_command_writes_a_report_of_every_check(
    bundle: Path, service_key: str, tmp_path: Path
) -> None:
    report = tmp_path / "out.html"
    code, output = _invoke("verify", str(bundle), "--key", service_key, "--report", str(report))
    assert code == 0, output
    html = report.read_text()
    names = [c.name for c in verification.verify(bundle, key=service_key)]
    assert _report_rows(html) == dict.fromkeys(names, "✓")
    assert "Every check passed." in html

    box = _members(bundle)["ballot_box.csv"]
    tampered = _rewrite(
        bundle, tmp_path / "t.zip", {"ballot_box.csv": BOX_EDITS["a choice changed"](box)}
    )
    code, _ = _invoke("verify", str(tampered), "--key", service_key, "--report", str(report))
    assert code == 1
    rows = _report_rows(report.read_text())
    assert rows["file hashes"] == "✗"
    assert rows["service signature"] == "✓"
    assert "The bundle does not verify" in report.read_text()


# 4. Countersignatures.


def _attested(client: TestClient, headers: dict[str, str], ballot_id: int) -> list[Any]:
    response = client.get(f"/api/v1/ballots/{ballot_id}/attestations", headers=headers)
    assert response.status_code == 200, response.text
    listed: list[Any] = response.json()
    trail = client.get(f"/api/v1/ballots/{ballot_id}/audit", headers=headers).json()
    assert len(listed) == sum(1 for e in trail["entries"] if e["action"] == "attested")
    return listed


def _fingerprint(client: TestClient, headers: dict[str, str], ballot_id: int) -> str:
    receipt = client.get(f"/api/v1/ballots/{ballot_id}/receipt", headers=headers).json()
    fingerprint: str = receipt["receipt"]["fingerprint"]
    return fingerprint


def _countersignature(key: Ed25519PrivateKey, fingerprint: str) -> dict[str, str]:
    """What `mandate attest` writes, signed here."""
    message = proof.attestation_message(
        fingerprint=fingerprint, name=ATTESTER, capacity=CAPACITY, statement=STATEMENT
    )
    return {
        "name": ATTESTER,
        "capacity": CAPACITY,
        "statement": STATEMENT,
        "fingerprint": fingerprint,
        "signature": base64.b64encode(key.sign(message)).decode(),
    }


def _register(client: TestClient, headers: dict[str, str], key: Ed25519PrivateKey) -> None:
    response = client.put(
        "/api/v1/auth/attestation-key", json={"public_key": _public(key)}, headers=headers
    )
    assert response.status_code == 200, response.text


def _attest(
    client: TestClient, headers: dict[str, str], ballot_id: int, body: Mapping[str, str]
) -> Any:
    return client.post(f"/api/v1/ballots/{ballot_id}/attestations", json=body, headers=headers)


def test_an_auditor_countersigns_with_the_commands_and_the_next_bundle_carries_it(
    client: TestClient,
    auditor: dict[str, str],
    published_id: int,
    service_key: str,
    tmp_path: Path,
) -> None:
    first = _download(client, auditor, published_id, tmp_path / "first.zip")
    key_file = tmp_path / "auditor.pem"
    code, output = _invoke("keygen", str(key_file))
    assert code == 0, output
    found = re.search(r"Public key to register: (\S+)", output)
    assert found is not None
    public = found.group(1)
    response = client.put(
        "/api/v1/auth/attestation-key", json={"public_key": public}, headers=auditor
    )
    assert response.status_code == 200, response.text

    signed = tmp_path / "attestation.json"
    code, output = _invoke(
        "attest", str(first), "--key", str(key_file), "--service-key", service_key,
        "--name", ATTESTER, "--capacity", CAPACITY, "-o", str(signed),
    )  # fmt: skip
    assert code == 0, output
    response = _attest(client, auditor, published_id, json.loads(signed.read_text()))
    assert response.status_code == 201, response.text

    later = _download(client, auditor, published_id, tmp_path / "later.zip")
    files = _members(later)
    assert [n for n in files if n.startswith("attestations/")] == [
        "attestations/01-dr-ann-example.json"
    ]
    carried = json.loads(files["attestations/01-dr-ann-example.json"])
    assert carried["public_key"] == public
    assert carried["name"] == ATTESTER
    trail = _trail(files["audit_log.jsonl"])
    assert trail[-1]["action"] == "attested"
    assert trail[-1]["payload"]["name"] == ATTESTER
    assert f"Result verified by {ATTESTER}, {CAPACITY}" in files["declaration.html"].decode()
    # A countersignature adds to the bundle but leaves the fingerprint it signed as it was.
    first_manifest = json.loads(_members(first)["manifest.json"])
    assert json.loads(files["manifest.json"])["fingerprint"] == first_manifest["fingerprint"]

    checks = _checks(later, service_key)
    assert _failed(checks) == set()
    assert checks["countersignatures"].detail.startswith(f"valid, by {ATTESTER} ({CAPACITY}, key ")


def test_a_countersignature_by_another_key_than_the_registered_one_is_refused(
    client: TestClient, auditor: dict[str, str], published_id: int
) -> None:
    _register(client, auditor, Ed25519PrivateKey.generate())
    other = Ed25519PrivateKey.generate()
    body = _countersignature(other, _fingerprint(client, auditor, published_id))
    response = _attest(client, auditor, published_id, body)
    assert response.status_code == 422, response.text
    assert "does not match your registered key" in response.json()["detail"]
    assert _attested(client, auditor, published_id) == []


def test_a_countersignature_without_a_registered_key_is_refused(
    client: TestClient, auditor: dict[str, str], published_id: int
) -> None:
    key = Ed25519PrivateKey.generate()
    response = _attest(
        client,
        auditor,
        published_id,
        _countersignature(key, _fingerprint(client, auditor, published_id)),
    )
    assert response.status_code == 409, response.text
    assert "Register your public key first" in response.json()["detail"]
    assert _attested(client, auditor, published_id) == []


def test_a_countersignature_over_a_changed_fingerprint_is_refused(
    client: TestClient, auditor: dict[str, str], published_id: int
) -> None:
    key = Ed25519PrivateKey.generate()
    _register(client, auditor, key)
    fingerprint = _fingerprint(client, auditor, published_id)
    changed = ("0" if fingerprint[0] != "0" else "1") + fingerprint[1:]
    response = _attest(client, auditor, published_id, _countersignature(key, changed))
    assert response.status_code == 409, response.text
    assert "another fingerprint than this ballot's evidence" in response.json()["detail"]
    assert _attested(client, auditor, published_id) == []


def test_a_countersignature_of_another_ballot_is_refused(
    client: TestClient,
    secretariat: dict[str, str],
    auditor: dict[str, str],
    frozen_clock: object,
) -> None:
    # A second ballot with practices of its own (so no link of the first one's practices
    # goes to it), opened alongside, no votes, published too.
    other = client.post(
        "/api/v1/ballots", json=factories.definition(reference="TEST-2016-L4"), headers=secretariat
    ).json()["id"]
    practices = [
        {
            "ods_code": f"H{i:05d}",
            "name": f"Other practice {i}",
            "locality": "North",
            "list_size": 4000,
            "emails": [f"contact.h{i:05d}@practice.example"],
        }
        for i in range(1, 4)
    ]
    response = client.put(f"/api/v1/ballots/{other}/roll", json=practices, headers=secretariat)
    assert response.status_code == 200, response.text
    factories.set_tally_key(client, secretariat, other)
    factories.approve(client, other)
    response = client.post(
        f"/api/v1/ballots/{other}/open", json={"acknowledge_warnings": True}, headers=secretariat
    )
    assert response.status_code == 200, response.text
    ballot_id = factories.published_ballot(client, secretariat)
    for step in ("close", "publish"):
        if step == "publish":
            factories.open_box(client, secretariat, other)
            factories.countersign(client, other)
        response = client.post(f"/api/v1/ballots/{other}/{step}", headers=secretariat)
        assert response.status_code == 200, response.text

    key = Ed25519PrivateKey.generate()
    _register(client, auditor, key)
    body = _countersignature(key, _fingerprint(client, auditor, other))
    response = _attest(client, auditor, ballot_id, body)
    assert response.status_code == 409, response.text
    assert "another fingerprint than this ballot's evidence" in response.json()["detail"]
    assert _attested(client, auditor, ballot_id) == []


def test_the_same_attester_cannot_countersign_twice(
    client: TestClient, auditor: dict[str, str], published_id: int
) -> None:
    key = Ed25519PrivateKey.generate()
    _register(client, auditor, key)
    body = _countersignature(key, _fingerprint(client, auditor, published_id))
    assert _attest(client, auditor, published_id, body).status_code == 201
    again = _attest(client, auditor, published_id, body)
    assert again.status_code == 409, again.text
    assert "already countersigned" in again.json()["detail"]
    assert len(_attested(client, auditor, published_id)) == 1


def test_the_secretariat_cannot_countersign(
    client: TestClient, secretariat: dict[str, str], published_id: int
) -> None:
    key = Ed25519PrivateKey.generate()
    body = _countersignature(key, _fingerprint(client, secretariat, published_id))
    response = _attest(client, secretariat, published_id, body)
    assert response.status_code == 403, response.text
    assert _attested(client, secretariat, published_id) == []


def test_attest_command_refuses_a_bundle_that_does_not_verify(
    bundle: Path, service_key: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "auditor.pem"
    signing.write_new_key(key_file)
    box = _members(bundle)["ballot_box.csv"]
    tampered = _rewrite(
        bundle, tmp_path / "t.zip", {"ballot_box.csv": BOX_EDITS["a choice changed"](box)}
    )
    signed = tmp_path / "attestation.json"
    result = CliRunner().invoke(
        cli.app,
        [
            "attest", str(tampered), "--key", str(key_file), "--service-key", service_key,
            "--name", ATTESTER, "--capacity", CAPACITY, "-o", str(signed),
        ],
    )  # fmt: skip
    assert result.exit_code != 0
    assert isinstance(result.exception, errors.Conflict)
    assert "not countersigned" in result.exception.detail
    assert "✗ file hashes: changed since signing: ballot_box.csv" in " ".join(result.output.split())
    assert not signed.exists()


# 5. Spreadsheet formulas in the roll.

FORMULA_NAME = '=HYPERLINK("http://attacker.example/","Open")'


def test_formula_like_roll_cells_are_neutralised_and_the_bundle_verifies(
    client: TestClient,
    secretariat: dict[str, str],
    frozen_clock: object,
    service_key: str,
    tmp_path: Path,
) -> None:
    practices = factories.roll()
    practices[0]["name"] = FORMULA_NAME
    for practice in practices:
        if practice["locality"] == "North":
            practice["locality"] = "@North"
    response = client.post("/api/v1/ballots", json=factories.definition(), headers=secretariat)
    assert response.status_code == 201, response.text
    ballot_id = response.json()["id"]
    response = client.put(f"/api/v1/ballots/{ballot_id}/roll", json=practices, headers=secretariat)
    assert response.status_code == 200, response.text
    factories.set_tally_key(client, secretariat, ballot_id)
    factories.approve(client, ballot_id)
    response = client.post(
        f"/api/v1/ballots/{ballot_id}/open",
        json={"acknowledge_warnings": True},
        headers=secretariat,
    )
    assert response.status_code == 200, response.text
    factories.cast_votes(client, ["For"] * 5 + ["Against"] * 2 + ["Abstain"])
    factories.close_and_publish(client, secretariat, ballot_id)

    path = _download(client, secretariat, ballot_id, tmp_path / "bundle.zip")
    files = _members(path)
    roll = list(csv.DictReader(io.StringIO(files["roll.csv"].decode())))
    assert roll[0]["name"] == "'" + FORMULA_NAME
    assert {r["locality"] for r in roll} == {"'@North", "Central", "South"}
    box = list(csv.DictReader(io.StringIO(files["ballot_box.csv"].decode())))
    assert "'@North" in {r["locality"] for r in box}
    # No cell of any CSV file starts with what a spreadsheet would run.
    for name in ("roll.csv", "ballot_box.csv", "receipts.csv", "deliveries.csv"):
        for row in csv.reader(io.StringIO(files[name].decode())):
            assert not [cell for cell in row if cell[:1] in ("=", "+", "-", "@")], (name, row)
    assert _failed(_checks(path, service_key)) == set()


# 6. Rotating the service key.


@pytest.fixture
def original_signing_key(db: Engine) -> Iterator[None]:
    """Put the key file back as it was, for the tests after this one."""
    assert not config.get_settings().signing_key  # the tests sign with the key file
    signing.service_key()
    path = signing.key_file()
    original = path.read_bytes()
    yield
    path.write_bytes(original)
    signing.service_key.cache_clear()


def test_after_a_rotation_both_keys_are_listed_and_old_bundles_still_verify(
    client: TestClient,
    original_signing_key: None,
    bundle: Path,
    service_key: str,
    published_id: int,
    tmp_path: Path,
) -> None:
    # Later than any earlier use of the old key (the app registers it at start, real time).
    clock.freeze(datetime.now(UTC) + timedelta(days=1))
    new_key = signing.rotate()
    assert new_key != service_key

    listed = client.get("/api/v1/signing-key").json()
    assert listed["current"]["public_key"] == new_key
    assert [k["public_key"] for k in listed["keys"]] == [service_key, new_key]

    assert _failed(_checks(bundle, service_key)) == set()
    checks = _checks(bundle, new_key)
    assert _failed(checks) == {"service signature"}
    assert "signed by another key than the one given" in checks["service signature"].detail

    signed_in_again = factories.staff_headers(client, Role.secretariat)  # the clock moved on
    after = _download(client, signed_in_again, published_id, tmp_path / "after.zip")
    assert _failed(_checks(after, new_key)) == set()
    assert _failed(_checks(after, service_key)) == {"service signature"}


# 7. What an auditor may do with a published ballot.


def test_an_auditor_reads_the_evidence_and_changes_nothing(
    client: TestClient, auditor: dict[str, str], published_id: int
) -> None:
    for path in ("audit", "turnout", "receipt", "evidence", "ballot-box"):
        response = client.get(f"/api/v1/ballots/{published_id}/{path}", headers=auditor)
        assert response.status_code == 200, (path, response.text)
    length = len(
        client.get(f"/api/v1/ballots/{published_id}/audit", headers=auditor).json()["entries"]
    )

    for method, path, body in (
        ("POST", "open", {"acknowledge_warnings": True}),
        ("POST", "close", None),
        ("POST", "publish", None),
        ("PUT", "roll", factories.roll()),
        ("POST", "voters/G83009/reissue", None),
        ("POST", "reminders", None),
    ):
        response = client.request(
            method, f"/api/v1/ballots/{published_id}/{path}", json=body, headers=auditor
        )
        assert response.status_code == 403, (path, response.text)
    assert client.get(f"/api/v1/ballots/{published_id}", headers=auditor).json()["status"] == (
        "published"
    )
    trail = client.get(f"/api/v1/ballots/{published_id}/audit", headers=auditor).json()
    assert len(trail["entries"]) == length


# 8. The trail of a whole ballot.


def test_the_trail_of_a_ballot_records_each_step_and_never_a_choice_or_receipt(
    client: TestClient, secretariat: dict[str, str], published_id: int
) -> None:
    trail = client.get(f"/api/v1/ballots/{published_id}/audit", headers=secretariat).json()
    assert trail["intact"] is True
    assert trail["problem"] is None
    entries = trail["entries"]
    assert [e["action"] for e in entries] == [
        "ballot_created",
        "roll_loaded",
        "tally_key_set",
        "approved",
        "opened",
        *["link_issued"] * 9,
        *["voted"] * 8,
        "closed",
        "box_opened",
        "count_countersigned",
        "published",
    ]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))

    voted = [e["payload"] for e in entries if e["action"] == "voted"]
    assert voted == [{"ods_code": f"G{83001 + i}"} for i in range(8)]
    box = client.get(f"/api/v1/ballots/{published_id}/ballot-box").json()
    assert len(box["receipts"]) == 8
    everything = json.dumps(entries)
    for receipt in box["receipts"]:
        assert receipt not in everything
    # Choices appear only in the counts of the publication, never beside a practice.
    for entry in entries:
        if entry["action"] != "published":
            assert not re.search(r'"(For|Against|Abstain)"', json.dumps(entry["payload"])), entry


def _manifest_with(path: Path, **changes: Any) -> bytes:
    return _pretty(json.loads(_members(path)["manifest.json"]) | changes)


MALFORMED: dict[str, Callable[[Path], dict[str, bytes]]] = {
    "manifest not JSON": lambda p: {"manifest.json": b"{"},
    "signing key of the wrong shape": lambda p: {
        "manifest.json": _manifest_with(p, signing_key="x")
    },
    "evidence record missing": lambda p: {"manifest.json": _manifest_with(p, evidence={})},
    "files list of the wrong shape": lambda p: {"manifest.json": _manifest_with(p, files=[1, 2])},
    "audit line not JSON": lambda p: {"audit_log.jsonl": b"not json\n"},
    "roll without its columns": lambda p: {"roll.csv": b"a,b\r\n1,2\r\n"},
    "ballot box with a word for votes": lambda p: {
        "ballot_box.csv": _members(p)["ballot_box.csv"].replace(b",1,", b",one,", 1)
    },
    "binary garbage for a CSV": lambda p: {"receipts.csv": bytes(range(256))},
}


@pytest.mark.parametrize("mangle", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_bundle_fails_checks_and_never_crashes_the_verifier(
    bundle: Path, service_key: str, tmp_path: Path, mangle: Callable[[Path], dict[str, bytes]]
) -> None:
    mangled = _rewrite(bundle, tmp_path / "mangled.zip", mangle(bundle))
    checks = verification.verify(mangled, key=service_key)
    assert not all(c.ok for c in checks)
    assert all(c.detail for c in checks)


def test_a_truncated_zip_is_reported_unreadable(bundle: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.zip"
    cut.write_bytes(bundle.read_bytes()[:500])
    [check] = verification.verify(cut, key=None)
    assert check.name == "bundle readable"
    assert not check.ok
    assert "not a readable zip file" in check.detail
