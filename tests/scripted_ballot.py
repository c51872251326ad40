"""One ballot, scripted start to finish through the HTTP API, written out as its evidence bundle.

Times, the service's signing key, the auditor's key and the receipt codes are all fixed, so the
same script gives the same bundle byte for byte on any database: the test in
tests/test_bundle_across_databases.py runs it on SQLite and on PostgreSQL and compares.

    python -m tests.scripted_ballot DATABASE_URL DATA_DIR OUT.zip
"""

import base64
import hashlib
import io
import json
import os
import random
import sys
import zipfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from nacl import bindings

from app import clock, crypto, db, outbox, proof, signing, tally_key
from app.main import create_app
from app.models import Role
from tests import factories

# The service's key: what signs the manifest, and what the verifier is given.
SERVICE_SEED = hashlib.sha256(b"mandate scripted ballot: service signing key").digest()
# The auditor's own key, for the countersignature the bundle carries.
AUDITOR_SEED = hashlib.sha256(b"mandate scripted ballot: auditor key").digest()
RECEIPT_SEED = 20161125
SEAL_SEED = b"mandate scripted ballot: sealing"
# crypto.new_receipt_code's format: five groups of four of Crockford's base32.
RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

REFERENCE = "SCRIPT-2016-L3"
DOCUMENT = b"%PDF-1.4\n% The proposal the practices were asked to read.\n"
# The reissued practice votes with its new link; G83009 never votes.
REISSUED = "G83005"
# (practice, delegated, constitution, when): spread over the period, the last a second before
# the close, so the declaration's turnout by day has something to show.
VOTES = (
    ("G83001", "For", "For", datetime(2016, 11, 7, 9, 30, tzinfo=UTC)),
    ("G83002", "For", "Against", datetime(2016, 11, 8, 14, 10, tzinfo=UTC)),
    ("G83003", "Against", "For", datetime(2016, 11, 10, 8, 45, tzinfo=UTC)),
    ("G83004", "For", "Abstain", datetime(2016, 11, 14, 16, 20, 30, tzinfo=UTC)),
    (REISSUED, "Abstain", "For", datetime(2016, 11, 18, 12, 0, tzinfo=UTC)),
    ("G83006", "For", "For", datetime(2016, 11, 22, 9, 5, tzinfo=UTC)),
    ("G83007", "For", "For", datetime(2016, 11, 24, 23, 59, 59, tzinfo=UTC)),
    ("G83008", "Against", "Against", datetime(2016, 11, 25, 16, 59, 59, tzinfo=UTC)),
)
CREATED = datetime(2016, 11, 1, 10, 0, tzinfo=UTC)
APPROVED = datetime(2016, 11, 4, 15, 0, tzinfo=UTC)
OPENED = datetime(2016, 11, 7, 8, 55, tzinfo=UTC)
INVITED = datetime(2016, 11, 7, 9, 0, tzinfo=UTC)
REISSUED_AT = datetime(2016, 11, 16, 11, 0, tzinfo=UTC)
CLOSED = datetime(2016, 11, 25, 17, 0, 5, tzinfo=UTC)
PUBLISHED = datetime(2016, 11, 25, 17, 30, tzinfo=UTC)
ATTESTED = datetime(2016, 11, 28, 10, 15, tzinfo=UTC)


def service_public_key() -> str:
    """The public half of SERVICE_SEED, as `mandate verify --key` takes it."""
    return signing.public_b64(Ed25519PrivateKey.from_private_bytes(SERVICE_SEED))


def seeded_receipt_codes(seed: int) -> Callable[[], str]:
    """Receipt codes in the product's format, from a seeded generator instead of the CSPRNG."""
    generator = random.Random(seed)

    def new_receipt_code() -> str:
        chars = "".join(generator.choice(RECEIPT_ALPHABET) for _ in range(20))
        return "-".join(chars[i : i + 4] for i in range(0, 20, 4))

    return new_receipt_code


def seeded_seal(seed: bytes) -> Callable[..., bytes]:
    """libsodium's sealed box built by hand, its ephemeral key from a seed instead of the CSPRNG.

    The layout is crypto_box_seal's own (ephemeral public key, then the box under the nonce
    BLAKE2b(ephemeral public key ‖ recipient key)), so the product's unseal opens it.
    """
    counter = iter(range(1_000_000))

    def seal(public_key: str, payload: Mapping[str, Any], *, size: int) -> bytes:
        recipient = base64.b64decode(public_key)
        ephemeral_seed = hashlib.sha256(seed + str(next(counter)).encode()).digest()
        ephemeral_public, ephemeral_secret = bindings.crypto_box_seed_keypair(ephemeral_seed)
        nonce = hashlib.blake2b(ephemeral_public + recipient, digest_size=24).digest()
        plain = proof.canonical_json(payload).ljust(size)
        boxed = bindings.crypto_box(plain, nonce, recipient, ephemeral_secret)
        return ephemeral_public + boxed

    return seal


def configure(database_url: str, data_dir: Path) -> None:
    """Every setting the script relies on, so nothing leaks in from the caller's environment."""
    os.environ.update(
        DATABASE_URL=database_url,
        DATA_DIR=str(data_dir),
        MAILDIR=str(data_dir / "mail"),
        MAIL_BACKEND="maildir",
        MANDATE_ENV="test",
        MAIL_SEND_IN_SERVER="false",
        SCHEDULE_IN_SERVER="false",
        SECRET_KEY="scripted-ballot-secret-key-long-enough-for-hmac",
        BASE_URL="http://testserver",
        SIGNING_KEY=base64.b64encode(SERVICE_SEED).decode(),
    )
    # The random values a bundle shows; the rest comes from the frozen clock and fixed keys.
    crypto.new_receipt_code = seeded_receipt_codes(RECEIPT_SEED)
    # The ciphertexts are gone from the bundle, but the close's hash over them is in its trail.
    tally_key.seal = seeded_seal(SEAL_SEED)


def _ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def _definition() -> dict[str, Any]:
    document = {
        "title": "Delegation proposal",
        "file": "proposal.pdf",
        "content_base64": base64.b64encode(DOCUMENT).decode(),
    }
    governance = {
        "returning_officer": "A. Returning",
        "scrutineer": "S. Crutineer",
        "scrutineer_accounts": [factories.SCRUTINEER],
    }
    return factories.definition(reference=REFERENCE, documents=[document], governance=governance)


def _tokens() -> dict[str, set[str]]:
    """Deliver what is due, then every voting token that has arrived, by practice."""
    return {code: set(tokens) for code, tokens in factories.sent_links().items()}


def _bundle(client: TestClient, headers: dict[str, str], ballot_id: int) -> bytes:
    response = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def _countersign(client: TestClient, ballot_id: int) -> None:
    auditor = factories.staff_headers(client, Role.auditor)
    key = Ed25519PrivateKey.from_private_bytes(AUDITOR_SEED)
    _ok(
        client.put(
            "/api/v1/auth/attestation-key",
            json={"public_key": signing.public_b64(key)},
            headers=auditor,
        )
    )
    bundle = zipfile.ZipFile(io.BytesIO(_bundle(client, auditor, ballot_id)))
    fingerprint = json.loads(bundle.read("manifest.json"))["fingerprint"]
    words = {
        "name": "Ann Auditor",
        "capacity": "Head of internal audit",
        "statement": "I verified this bundle with mandate verify and every check passed.",
    }
    message = proof.attestation_message(fingerprint=fingerprint, **words)
    signature = base64.b64encode(key.sign(message)).decode()
    body = {**words, "fingerprint": fingerprint, "signature": signature}
    _ok(client.post(f"/api/v1/ballots/{ballot_id}/attestations", json=body, headers=auditor), 201)


def run(client: TestClient) -> bytes:
    """Create, roll, open, invite, re-issue, vote, close, publish, countersign: the bundle."""
    clock.freeze(CREATED)
    secretariat = factories.staff_headers(client, Role.secretariat)
    ballot = _ok(client.post("/api/v1/ballots", json=_definition(), headers=secretariat), 201)
    ballot_id: int = ballot["id"]
    roll = factories.roll(9, emails_per_practice=2)
    _ok(client.put(f"/api/v1/ballots/{ballot_id}/roll", json=roll, headers=secretariat))
    factories.set_tally_key(client, secretariat, ballot_id)
    clock.freeze(APPROVED)
    factories.approve(client, ballot_id)

    clock.freeze(OPENED)
    secretariat = factories.staff_headers(client, Role.secretariat)  # sign-ins last 8 hours
    opening = {"acknowledge_warnings": True}
    _ok(client.post(f"/api/v1/ballots/{ballot_id}/open", json=opening, headers=secretariat))
    clock.freeze(INVITED)
    invited = _tokens()

    clock.freeze(REISSUED_AT)
    secretariat = factories.staff_headers(client, Role.secretariat)
    _ok(client.post(f"/api/v1/ballots/{ballot_id}/voters/{REISSUED}/reissue", headers=secretariat))
    arrived = _tokens()
    tokens = {code: sorted(found) for code, found in invited.items()}
    tokens[REISSUED] = sorted(arrived[REISSUED] - invited[REISSUED])  # the old ones are revoked

    for ods_code, delegated, constitution, at in VOTES:
        clock.freeze(at)
        vote = {"choices": {"delegated": delegated, "constitution": constitution}}
        _ok(client.post(f"/api/v1/vote/{tokens[ods_code][0]}", json=vote))
    outbox.deliver_pending()  # the confirmations the votes queued

    for step, at in (("close", CLOSED), ("publish", PUBLISHED)):
        clock.freeze(at)
        secretariat = factories.staff_headers(client, Role.secretariat)
        if step == "publish":
            factories.open_box(client, secretariat, ballot_id)
            factories.countersign(client, ballot_id)
        _ok(client.post(f"/api/v1/ballots/{ballot_id}/{step}", headers=secretariat))
        outbox.deliver_pending()  # the close tells every address whether its practice voted

    clock.freeze(ATTESTED)
    _countersign(client, ballot_id)
    return _bundle(client, factories.staff_headers(client, Role.auditor), ballot_id)


def main(argv: list[str]) -> None:
    if len(argv) != 3:
        raise SystemExit("usage: python -m tests.scripted_ballot DATABASE_URL DATA_DIR OUT.zip")
    database_url, data_dir, out = argv[0], Path(argv[1]), Path(argv[2])
    configure(database_url, data_dir)
    db.migrate(database_url)
    with TestClient(create_app()) as client:
        out.write_bytes(run(client))


if __name__ == "__main__":
    main(sys.argv[1:])
