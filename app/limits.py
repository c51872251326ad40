"""Abuse limits: fixed windows of attempts per client address, per account and per link.

Counted in this process by default; with several servers on PostgreSQL set
RATE_LIMIT_STORE=database and every server counts in one table. Keys are keyed hashes, so
neither an address nor a token rests anywhere in clear.
"""

import hashlib
import hmac
import threading
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Engine
from starlette.requests import Request

from app import clock, errors
from app.config import get_settings
from app.db import get_engine


@dataclass(frozen=True)
class Limit:
    name: str
    attempts: int
    window_seconds: int


# Sign-in: many staff can share an office address, so the address bar is higher than the
# account's. Links: NHS practices share network egress addresses, so an address is limited only
# in its invalid links, and a valid link only in its own attempts: a valid link is never locked
# out because of its address.
SIGN_IN_ADDRESS = Limit("sign-in-address", 30, 300)
SIGN_IN_ACCOUNT = Limit("sign-in-account", 10, 300)
INVALID_LINKS_ADDRESS = Limit("invalid-links-address", 30, 300)
LINK_ATTEMPTS = Limit("link-attempts", 60, 300)


class TooManyAttempts(errors.AppError):
    status_code = 429

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class Store(Protocol):
    def hit(self, key: str, window: int) -> int:
        """Count one attempt for key in this window; the attempts so far, this one included."""
        ...


class MemoryStore:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, window: int) -> int:
        with self._lock:
            if len(self._counts) > 100_000:  # forget finished windows
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
            count = self._counts.get((key, window), 0) + 1
            self._counts[(key, window)] = count
            return count


class DatabaseStore:
    """One counter row per key and window, shared by every server on the database."""

    _UPSERT = text(
        "INSERT INTO rate_limit (key, window_start, attempts) VALUES (:key, :window, 1) "
        "ON CONFLICT (key, window_start) DO UPDATE SET attempts = rate_limit.attempts + 1 "
        "RETURNING attempts"
    )
    _PRUNE = text("DELETE FROM rate_limit WHERE window_start < :window")

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def hit(self, key: str, window: int) -> int:
        # Its own short transaction, so a refused request still counts.
        with self.engine.begin() as connection:
            count = int(
                connection.execute(self._UPSERT, {"key": key, "window": window}).scalar_one()
            )
            if count == 1:
                connection.execute(self._PRUNE, {"window": window - 3600})
            return count


_memory = MemoryStore()


def counts_in_memory() -> bool:
    """Whether a count is a dictionary update in this process (no I/O, safe on the event loop)."""
    return get_settings().rate_limit_store != "database"


def store() -> Store:
    return _memory if counts_in_memory() else DatabaseStore(get_engine())


def forget() -> None:
    """Start counting afresh in this process (tests, and the CLI's `staff` commands do not)."""
    global _memory
    _memory = MemoryStore()


def _key(limit: Limit, subject: str) -> str:
    secret = get_settings().secret_key.encode()
    digest = hmac.new(secret, f"{limit.name}:{subject}".encode(), hashlib.sha256).hexdigest()
    return f"{limit.name}:{digest[:32]}"


def check(limit: Limit, subject: str, *, doing: str) -> None:
    """Count an attempt; refuse with 429 once the window's allowance is spent."""
    now = int(clock.now().timestamp())
    window = now - now % limit.window_seconds
    if store().hit(_key(limit, subject), window) > limit.attempts:
        retry = window + limit.window_seconds - now
        minutes = max(1, round(retry / 60))
        raise TooManyAttempts(
            f"Too many attempts to {doing} in a short time; wait {minutes} minute(s) and try "
            "again.",
            retry_after=retry,
        )


def address_of(request: Request) -> str:
    """The client's address (behind a trusted proxy, the one it forwarded)."""
    return request.client.host if request.client else "unknown"
