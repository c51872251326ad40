"""The evidence bundle, the signed receipt and the offline verifier, end to end."""

import io
import zipfile
from pathlib import Path

from fastapi.testclient import TestClient

from app import proof
from app import verify as verification
from tests import factories


def _bundle(client: TestClient, headers: dict[str, str], ballot_id: int, path: Path) -> Path:
    response = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    path.write_bytes(response.content)
    return path


def _service_key(client: TestClient) -> str:
    key: str = client.get("/api/v1/signing-key").json()["current"]["public_key"]
    return key


def test_a_published_bundle_verifies_with_the_service_key(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    path = _bundle(client, secretariat, ballot_id, tmp_path / "bundle.zip")
    checks = verification.verify(path, key=_service_key(client))
    assert [c for c in checks if not c.ok] == []
    assert {c.name for c in checks} >= {"service signature", "audit chain", "recount"}
    names = zipfile.ZipFile(io.BytesIO(path.read_bytes())).namelist()
    assert {
        "manifest.json",
        "manifest.sig",
        "declaration.pdf",
        "declaration.html",
        "roll.csv",
        "ballot_box.csv",
        "receipts.csv",
        "deliveries.csv",
        "audit_log.jsonl",
    } <= set(names)


def test_without_a_key_the_verifier_says_only_internally_consistent(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    path = _bundle(client, secretariat, ballot_id, tmp_path / "bundle.zip")
    checks = verification.verify(path, key=None)
    signature = checks[0]
    assert not signature.ok
    assert "only internally consistent" in signature.detail
    assert all(c.ok for c in checks[1:])


def test_the_same_ballot_gives_a_byte_identical_bundle(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    first = _bundle(client, secretariat, ballot_id, tmp_path / "1.zip").read_bytes()
    second = _bundle(client, secretariat, ballot_id, tmp_path / "2.zip").read_bytes()
    assert first == second


def test_the_tally_receipt_is_signed_by_the_published_key(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    signed = client.get(f"/api/v1/ballots/{ballot_id}/receipt", headers=secretariat).json()
    receipt = signed["receipt"]
    assert receipt["ballots_cast"] == 8
    assert receipt["eligible"] == 9
    assert receipt["result"][0]["counts"]["For"]["practices"] == 5
    message = proof.canonical_json(receipt)
    assert proof.signature_valid(_service_key(client), signed["signature"], message)
    receipt["ballots_cast"] = 9
    assert not proof.signature_valid(
        _service_key(client), signed["signature"], proof.canonical_json(receipt)
    )
