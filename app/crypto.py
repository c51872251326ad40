"""Passwords, tokens, keyed hashes and signed values."""

import base64
import hashlib
import hmac
import secrets
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from app.config import get_settings

# argon2id with argon2-cffi's RFC 9106 "low memory" profile (64 MiB, t=3, p=4).
_hasher = PasswordHasher()
# Verified when the account does not exist, so a wrong username costs the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

# Crockford's base32 without I, L, O, U: easy to read aloud and to type back.
_RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password in the same time whether or not the account exists."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def new_token() -> str:
    """A voting or session token: 192 bits from the OS CSPRNG, URL-safe."""
    return secrets.token_urlsafe(24)


def token_hash(token: str) -> str:
    """Keyed hash of a token: what the database keeps instead of the token."""
    key = get_settings().secret_key.encode()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _RECEIPT_ALPHABET)


# Five groups of four characters and the four dashes between them.
RECEIPT_CODE_LENGTH = 24


def new_receipt_code() -> str:
    """A receipt code of 100 random bits as five groups of four base32 characters."""
    chars = base64.b32encode(secrets.token_bytes(13)).decode()[:20].translate(_TO_CROCKFORD)
    return "-".join(chars[i : i + 4] for i in range(0, 20, 4))


def normalise_receipt_code(text: str) -> str:
    """Accept a receipt code typed with spaces, lower case or the usual look-alike letters."""
    cleaned = text.upper().translate(str.maketrans("ILO", "110", " -"))
    return "-".join(cleaned[i : i + 4] for i in range(0, len(cleaned), 4))


class SignedValueInvalid(Exception):
    pass


class SignedValueExpired(SignedValueInvalid):
    pass


def signer(purpose: str) -> URLSafeTimedSerializer:
    """One serializer per purpose, so a value signed for one use is refused for another."""
    return URLSafeTimedSerializer(get_settings().secret_key, salt=purpose)


def load_signed(purpose: str, value: str, *, max_age_seconds: int) -> Any:
    try:
        return signer(purpose).loads(value, max_age=max_age_seconds)
    except SignatureExpired as exc:
        raise SignedValueExpired(purpose) from exc
    except BadSignature as exc:
        raise SignedValueInvalid(purpose) from exc
