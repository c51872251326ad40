"""The service's Ed25519 signing key: what vouches for receipts and evidence bundles."""

import base64
import hashlib
import os
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import clock
from app.config import get_settings
from app.models import SigningKey


def key_file() -> Path:
    return get_settings().data_dir / "signing-key.pem"


def _read(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("SIGNING_KEY is a PEM key but not an Ed25519 one")
        return key
    try:
        seed = base64.b64decode(text, validate=True)
    except ValueError:
        raise ValueError("SIGNING_KEY is neither a PEM key nor a base64 Ed25519 seed") from None
    if len(seed) != 32:
        raise ValueError("SIGNING_KEY in base64 must hold the 32-byte Ed25519 seed")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_new_key(path: Path) -> Ed25519PrivateKey:
    """Create a key file readable by its owner only (never world- or group-readable)."""
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(_pem(key))
    return key


def read_key_file(path: Path) -> Ed25519PrivateKey:
    return _read(path.read_text())


@lru_cache
def service_key() -> Ed25519PrivateKey:
    configured = get_settings().signing_key
    if configured:
        return _read(configured)
    path = key_file()
    return read_key_file(path) if path.exists() else write_new_key(path)


def public_b64(key: Ed25519PrivateKey | None = None) -> str:
    raw = (
        (key or service_key())
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


def key_id(public_key_b64: str) -> str:
    return hashlib.sha256(base64.b64decode(public_key_b64)).hexdigest()[:16]


def sign(message: bytes) -> str:
    return base64.b64encode(service_key().sign(message)).decode()


def register(session: Session) -> SigningKey:
    """Record the current public key, so it stays listed after a rotation."""
    public = public_b64()
    known = session.scalar(select(SigningKey).where(SigningKey.public_key == public))
    if known is None:
        known = SigningKey(key_id=key_id(public), public_key=public, first_used_at=clock.now())
        session.add(known)
        session.flush()
    return known


def known_keys(session: Session) -> list[SigningKey]:
    return list(session.scalars(select(SigningKey).order_by(SigningKey.first_used_at)))


def rotate() -> str:
    """Replace the key file with a new key; the old public key stays listed in the database."""
    if get_settings().signing_key:
        raise ValueError("SIGNING_KEY is set: rotate by giving a new key in that variable")
    path = key_file()
    if path.exists():
        path.unlink()
    service_key.cache_clear()
    write_new_key(path)
    return public_b64()
