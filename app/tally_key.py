"""The tally key: ballots sealed to it at cast, opened after close from the holders' shares.

The key pair is X25519 and a ballot is a libsodium sealed box (PyNaCl): anyone with the public
key can seal, only the private key opens. The private key is made on a key holder's machine
and split there into k-of-n Shamir shares; the server keeps only the public key and sees the
private key only in memory, for the time it takes to open the box.
"""

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

# pycryptodome, which is maintained, installs under the `Crypto` name that the retired PyCrypto
# used; bandit's B413 cannot tell them apart.
from Crypto.Protocol.SecretSharing import Shamir  # nosec B413
from nacl import bindings
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from app import errors, proof

SHARE_FORMAT = "mandate-tally-share/1"
ALGORITHM = "X25519 sealed box (libsodium)"
# Shamir over GF(2^128) shares 16-byte secrets: the 32-byte key travels as two halves.
_HALF = 16
# The longest a locality can be (the roll's column), and the most bytes JSON can spend on one
# character (a control character written as \u0000).
_LOCALITY_CHARS, _JSON_BYTES_PER_CHAR = 100, 6
_PAD_BLOCK = 256
# Threads that decrypt a box at opening: one a core, as libsodium runs without the GIL.
_WORKERS = min(8, os.cpu_count() or 1)


class WrongKey(errors.InvalidInput):
    pass


class TooFewShares(errors.InvalidInput):
    pass


def parse_public_key(text: str) -> str:
    """The base64 of a 32-byte X25519 public key, checked; InvalidInput otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (ValueError, binascii.Error):
        raise errors.InvalidInput(
            "The tally public key is not base64: paste the line `mandate tally-key new` printed."
        ) from None
    if len(raw) != 32:
        raise errors.InvalidInput(
            "A tally public key is 32 bytes (44 characters of base64); paste the whole line "
            "`mandate tally-key new` printed."
        )
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Share:
    """One holder's share of the private key, and what it belongs to."""

    index: int
    holders: int
    threshold: int
    public_key: str
    halves: tuple[bytes, bytes]

    def as_json(self) -> dict[str, Any]:
        return {
            "format": SHARE_FORMAT,
            "public_key": self.public_key,
            "index": self.index,
            "holders": self.holders,
            "threshold": self.threshold,
            "halves": [base64.b64encode(h).decode() for h in self.halves],
        }


def new_key(*, holders: int, threshold: int) -> tuple[str, list[Share]]:
    """A new key pair: (public key in base64, one share of the private key per holder)."""
    return split(PrivateKey.generate(), holders=holders, threshold=threshold)


def split(private: PrivateKey, *, holders: int, threshold: int) -> tuple[str, list[Share]]:
    """(public key in base64, one share of the private key per holder), k of n to open."""
    if not 2 <= threshold <= holders <= 255:
        raise errors.InvalidInput(
            "Choose at least two holders and a threshold from 2 to the number of holders, so "
            "no one person can open the box alone (e.g. --holders 3 --threshold 2)."
        )
    public = base64.b64encode(bytes(private.public_key)).decode()
    secret = bytes(private)
    first = Shamir.split(threshold, holders, secret[:_HALF])
    second = Shamir.split(threshold, holders, secret[_HALF:])
    shares = [
        Share(index=i, holders=holders, threshold=threshold, public_key=public, halves=(a, b))
        for (i, a), (j, b) in zip(first, second, strict=True)
        if i == j
    ]
    return public, shares


def parse_share(data: Any, *, name: str = "a share") -> Share:
    """A share from its JSON form; InvalidInput naming what is wrong otherwise."""
    try:
        if isinstance(data, str | bytes):
            data = json.loads(data)
        if not isinstance(data, dict) or data.get("format") != SHARE_FORMAT:
            raise ValueError("it is not a Mandate tally-key share")
        halves = tuple(base64.b64decode(h, validate=True) for h in data["halves"])
        if len(halves) != 2 or any(len(h) != _HALF for h in halves):
            raise ValueError("its key parts have the wrong length")
        index, holders, threshold = (data[k] for k in ("index", "holders", "threshold"))
        if not all(type(n) is int for n in (index, holders, threshold)) or not (
            1 <= index <= holders <= 255 and 2 <= threshold <= holders
        ):
            raise ValueError("its index, holders or threshold are not a share's numbers")
        return Share(
            index=index,
            holders=holders,
            threshold=threshold,
            public_key=parse_public_key(str(data["public_key"])),
            halves=(halves[0], halves[1]),
        )
    except errors.InvalidInput:
        raise errors.InvalidInput(f"{name} names no usable public key.") from None
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        detail = str(exc) if isinstance(exc, ValueError) else "it is damaged or incomplete"
        raise errors.InvalidInput(
            f"{name} cannot be read: {detail}. Give the file `mandate tally-key new` wrote."
        ) from None


def combine(shares: Sequence[Share], *, public_key: str) -> PrivateKey:
    """The private key from enough shares, checked against the ballot's public key."""
    if any(s.public_key != public_key for s in shares):
        raise WrongKey(
            "A share given belongs to another tally key than this ballot's; use the shares "
            "made with this ballot's key. Nothing was opened."
        )
    distinct = {s.index: s for s in shares}
    needed = max((s.threshold for s in shares), default=2)
    if len(distinct) < needed:
        raise TooFewShares(
            f"{needed} different key holders' shares are needed to open the box and "
            f"{len(distinct)} were given. Nothing was opened."
        )
    try:
        first = Shamir.combine([(i, s.halves[0]) for i, s in distinct.items()])
        second = Shamir.combine([(i, s.halves[1]) for i, s in distinct.items()])
        private = PrivateKey(first + second)
    except (ValueError, CryptoError):
        private = None
    if private is None or base64.b64encode(bytes(private.public_key)).decode() != public_key:
        raise WrongKey(
            "The shares do not give the private key of this ballot's tally key (a share is "
            "damaged or from another key). Nothing was opened."
        )
    return private


def padded_size(questions: Sequence[tuple[str, Sequence[str]]], receipt_length: int) -> int:
    """One sealed size for every ballot of a ballot, whatever it says, so size tells nothing."""
    empty = {
        "choices": dict.fromkeys((qid for qid, _ in questions), ""),
        "locality": "",
        "receipt_code": "x" * receipt_length,
        "votes": 2**31,
    }
    longest = sum(max(len(o) for o in options) for _, options in questions)
    most = len(proof.canonical_json(empty)) + _JSON_BYTES_PER_CHAR * (longest + _LOCALITY_CHARS)
    return -(-most // _PAD_BLOCK) * _PAD_BLOCK


@lru_cache(maxsize=64)
def _box(public_key: str) -> SealedBox[PublicKey]:
    return SealedBox(PublicKey(base64.b64decode(public_key)))


def seal(public_key: str, payload: Mapping[str, Any], *, size: int) -> bytes:
    """The payload's canonical JSON padded with spaces to `size` bytes, sealed to the key."""
    plain = proof.canonical_json(payload)
    if len(plain) > size:  # padded_size() allows for the longest possible ballot
        raise ValueError("the ballot is longer than its ballot's sealed size")
    return _box(public_key).encrypt(plain.ljust(size))


def unseal(private_key: PrivateKey, ciphertext: bytes) -> dict[str, Any] | None:
    """The payload of one sealed ballot, or None if it does not open or is not a ballot."""
    return unseal_all(private_key, [ciphertext])[0]


def unseal_all(
    private_key: PrivateKey, ciphertexts: Sequence[bytes]
) -> list[dict[str, Any] | None]:
    """unseal() of each, in order; the decryption runs on every core (libsodium drops the GIL)."""
    public, secret = bytes(private_key.public_key), bytes(private_key)

    def decrypt(chunk: Sequence[bytes]) -> list[bytes | None]:
        opened: list[bytes | None] = []
        for ciphertext in chunk:
            try:
                opened.append(bindings.crypto_box_seal_open(ciphertext, public, secret))
            except (CryptoError, ValueError, TypeError):
                opened.append(None)
        return opened

    size = max(1, -(-len(ciphertexts) // _WORKERS))
    chunks = [ciphertexts[i : i + size] for i in range(0, len(ciphertexts), size)]
    if len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
            plains = [p for opened in pool.map(decrypt, chunks) for p in opened]
    else:
        plains = [p for chunk in chunks for p in decrypt(chunk)]
    return [_paper(p) for p in plains]


def _paper(plain: bytes | None) -> dict[str, Any] | None:
    """A decrypted ballot as its payload, or None if it is not one."""
    if plain is None:
        return None
    try:
        payload = json.loads(plain)
    except ValueError:
        return None
    if not (
        isinstance(payload, dict)
        and set(payload) == {"choices", "locality", "receipt_code", "votes"}
        and isinstance(payload["choices"], dict)
        and all(isinstance(v, str) for v in payload["choices"].values())
        and isinstance(payload["locality"], str)
        and isinstance(payload["receipt_code"], str)
        and type(payload["votes"]) is int
        and payload["votes"] > 0
    ):
        return None
    return payload


def sealed_digest(ciphertexts: Sequence[bytes]) -> str:
    """SHA-256 over the sorted SHA-256 of every sealed ballot: the sealed box at close."""
    return proof.sha256_hex(proof.canonical_json(sorted(proof.sha256_hex(c) for c in ciphertexts)))


def describe_holders(tally_key: Mapping[str, Any]) -> str:
    """Who holds the key, as the declaration says it."""
    holders: list[str] = list(tally_key.get("holders") or [])
    threshold = tally_key.get("threshold")
    if holders:
        named = ", ".join(holders)
        return f"{named} ({threshold} of {len(holders)} needed)" if threshold else named
    count = tally_key.get("holder_count")
    if count and threshold:
        return f"{count} holders, {threshold} needed"
    return "the key holders named by the CCG"
