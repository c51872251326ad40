"""What is hashed and signed, defined once for the server and the offline verifier (pure)."""

import base64
import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

# The previous hash of a chain's first entry.
GENESIS = "0" * 64
# Fields of an audit entry that its hash covers, in the order a reader sees them.
ENTRY_FIELDS = ("seq", "at", "actor", "action", "payload", "prev")


def canonical_json(value: Any) -> bytes:
    """The one encoding that is hashed or signed: sorted keys, compact, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def instant(at: datetime) -> str:
    """The one text form of an instant in the trail: UTC, microseconds, "Z"."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 over the canonical JSON of an entry's fields (its own hash excluded)."""
    return sha256_hex(canonical_json({k: entry[k] for k in ENTRY_FIELDS}))


def chain_problem(entries: Iterable[Mapping[str, Any]]) -> str | None:
    """The first break in a chain, as a sentence; None if it holds from genesis to its end."""
    prev, expected_seq = GENESIS, 1
    for entry in entries:
        seq = entry.get("seq")
        if seq != expected_seq:
            return f"entry {expected_seq} is missing or out of order (found {seq})"
        if entry.get("prev") != prev:
            return f"entry {seq} does not follow entry {seq - 1} (its previous hash differs)"
        if entry_hash(entry) != entry.get("hash"):
            return f"entry {seq} was altered (its hash does not match its content)"
        prev, expected_seq = entry["hash"], expected_seq + 1
    return None


def published_box(mode: str, entries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ballot box as the receipt mode publishes it, and as its root commits to.

    `inclusion_only`: the sorted receipt codes and, separately, the ballots sorted by content,
    so nothing pairs a receipt with its choices. `receipt_with_choices`: each entry with its
    receipt, sorted by receipt. Entries are mappings of receipt_code, choices, locality, votes.
    """
    if mode == "receipt_with_choices":
        rows = [
            {k: e[k] for k in ("receipt_code", "choices", "locality", "votes")} for e in entries
        ]
        return {"receipt_mode": mode, "entries": sorted(rows, key=lambda r: r["receipt_code"])}
    papers = [{k: e[k] for k in ("choices", "locality", "votes")} for e in entries]
    return {
        "receipt_mode": mode,
        "receipts": sorted(e["receipt_code"] for e in entries),
        "ballots": sorted(papers, key=canonical_json),
    }


def box_root(box: Mapping[str, Any]) -> str:
    """The ballot-box commitment: SHA-256 of the canonical JSON of the published box.

    The whole box is published, so anyone recomputes this from the list itself; a Merkle tree
    would only add short inclusion proofs, which a box of a few thousand entries does not need.
    """
    return sha256_hex(canonical_json(box))


# Spreadsheet formula triggers (OWASP), and the quote that marks a neutralised cell.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as text, never runs; restore() gives the value back."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def restore(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[object]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(neutralise(str(cell)) for cell in row)
    return out.getvalue().encode()


def read_csv(data: bytes) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(data.decode()))
    return [{k: restore(v) for k, v in row.items()} for row in reader]


def fingerprint(evidence: Mapping[str, Any]) -> str:
    """The bundle's fingerprint: what the service and every countersignature stand behind."""
    return sha256_hex(canonical_json(evidence))


def attestation_message(*, fingerprint: str, name: str, capacity: str, statement: str) -> bytes:
    """What an attester signs: the fingerprint with their own words, so neither can be swapped."""
    return canonical_json(
        {
            "purpose": "mandate attestation",
            "fingerprint": fingerprint,
            "name": name,
            "capacity": capacity,
            "statement": statement,
        }
    )


def public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from its 32 raw bytes in base64; ValueError otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        raise ValueError("the key is not base64") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes (44 characters of base64)")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_from_pem(text: str) -> str:
    """The base64 raw form of an Ed25519 public key given as PEM; ValueError otherwise."""
    key = serialization.load_pem_public_key(text.encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the PEM key is not an Ed25519 public key")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def key_fingerprint(public_key_b64: str) -> str:
    """SHA-256 of the raw public key, in groups of four for reading aloud."""
    digest = hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest().upper()
    return " ".join(digest[i : i + 4] for i in range(0, 64, 4))


def signature_valid(public_key_b64: str, signature_b64: str, message: bytes) -> bool:
    try:
        public_key(public_key_b64).verify(base64.b64decode(signature_b64, validate=True), message)
    except (ValueError, InvalidSignature):
        return False
    return True


def count_hash(*, ballot_box_root: str, ballots_cast: int, result: dict[str, Any]) -> str:
    """What the scrutineer's countersignature binds: the box committed at close and its count."""
    counted = {"ballot_box_root": ballot_box_root, "ballots_cast": ballots_cast, "result": result}
    return sha256_hex(canonical_json(counted))
