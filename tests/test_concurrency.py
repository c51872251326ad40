"""Exactly once under concurrency, against a real server process on the test database."""

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from app import audit, ballots, clock, config, proof
from app.db import session_scope
from app.models import Role, RollEntry, SealedBallot
from tests import factories
from tests.pgserver import free_port

VOTE = {"choices": {"delegated": "For", "constitution": "Against"}}


@contextlib.contextmanager
def _serving(tmp_path: Path, **env: str) -> Iterator[str]:
    """`mandate serve` in a subprocess on the test database; yields its URL."""
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mandate"), "serve", "--port", str(port)],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                httpx.get(f"{url}/openapi.json", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, (tmp_path / "server.log").read_text()
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture
def live_server(db: Engine, tmp_path: Path) -> Iterator[str]:
    with _serving(tmp_path) as url:
        yield url


def _open_now(client: TestClient, *, emails_per_practice: int = 1) -> int:
    """A ballot open in real time, since the server process reads the real clock."""
    now = clock.now()
    headers = factories.staff_headers(client, Role.secretariat)
    ballot_id = factories.draft_ballot(
        client,
        headers,
        opens_at=(now - timedelta(hours=1)).isoformat(),
        closes_at=(now + timedelta(days=1)).isoformat(),
    )
    rows = factories.roll(9, emails_per_practice=emails_per_practice)
    assert (
        client.put(f"/api/v1/ballots/{ballot_id}/roll", json=rows, headers=headers).status_code
        == 200
    )
    factories.approve(client, ballot_id)
    opened = client.post(
        f"/api/v1/ballots/{ballot_id}/open", json={"acknowledge_warnings": True}, headers=headers
    )
    assert opened.status_code == 200
    return ballot_id


async def _cast_all(url: str, tokens: list[str]) -> list[int]:
    limits = httpx.Limits(max_connections=len(tokens))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        responses = await asyncio.gather(
            *(http.post(f"/api/v1/vote/{t}", json=VOTE) for t in tokens)
        )
    return [r.status_code for r in responses]


def _recorded(ballot_id: int) -> tuple[int, int]:
    with session_scope() as session:
        ballots = session.scalar(
            select(func.count())
            .select_from(SealedBallot)
            .where(SealedBallot.ballot_id == ballot_id)
        )
        voted = session.scalar(
            select(func.count(RollEntry.voted_at)).where(RollEntry.ballot_id == ballot_id)
        )
    return int(ballots or 0), int(voted or 0)


def test_fifty_concurrent_casts_of_one_link_count_once(
    client: TestClient, live_server: str
) -> None:
    ballot_id = _open_now(client)
    token = factories.token_for("G83001")
    statuses = asyncio.run(_cast_all(live_server, [token] * 50))
    assert sorted(statuses) == [200] + [409] * 49
    assert _recorded(ballot_id) == (1, 1)


def test_concurrent_casts_of_two_links_of_one_practice_count_once(
    client: TestClient, live_server: str
) -> None:
    ballot_id = _open_now(client, emails_per_practice=2)
    first, second = factories.sent_links()["G83001"]
    statuses = asyncio.run(_cast_all(live_server, [first, second] * 25))
    assert sorted(statuses) == [200] + [409] * 49
    assert _recorded(ballot_id) == (1, 1)


def test_concurrent_casts_of_different_practices_all_count(
    client: TestClient, live_server: str
) -> None:
    ballot_id = _open_now(client)
    tokens = [tokens[0] for tokens in factories.sent_links().values()]
    statuses = asyncio.run(_cast_all(live_server, tokens * 5))
    assert statuses.count(200) == 9
    assert _recorded(ballot_id) == (9, 9)
    with session_scope() as session:
        trail = [
            audit.as_dict(e) for e in audit.entries(session, ballot=ballots.get(session, ballot_id))
        ]
    # Nine transactions appended at once, in separate requests: still one unforked chain.
    assert proof.chain_problem(trail) is None
    assert [e["action"] for e in trail].count("voted") == 9


def test_the_server_delivers_its_outbox_by_itself(
    client: TestClient, db: Engine, tmp_path: Path
) -> None:
    with _serving(tmp_path, MAIL_SEND_IN_SERVER="true") as url:
        # Queued by another process on the same database; nobody calls the sender here.
        _open_now(client)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _delivered() < 9:
            time.sleep(0.2)
        assert _delivered() == 9
        token = factories.token_for("G83001")
        assert httpx.get(f"{url}/api/v1/vote/{token}").json()["has_voted"] is False


def _delivered() -> int:
    maildir = config.get_settings().maildir
    assert maildir is not None
    return len(list((maildir / "new").glob("*"))) if (maildir / "new").exists() else 0
