"""Faults in the middle of a burst of votes: a Mandate process killed, PostgreSQL stopped, two
processes racing on one database. After each, every vote answered with a receipt is in the
ballot box, nothing is half-written (box, roll, trail and outbox agree), the audit chain
verifies, and voting goes on.

Every test drives real `mandate serve` processes over loopback with concurrent httpx clients.
All are marked `db` and run in both passes of `make test`. The first and the third use the
pass's database (the `db` fixture); on SQLite the third is two processes on one database file,
as `mandate serve --workers 2` would be. The second stops and starts PostgreSQL, so it starts a
server of its own (tests/pgserver.py) whatever `--db` says and runs, identically, in both
passes, as tests/test_bundle_across_databases.py does: a skip in one pass would read like a gap,
and the second run costs about twenty seconds.
"""

import asyncio
import contextlib
import mailbox
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from app import audit, clock, mail, proof
from app.models import AuditEntry, MessageKind, OutboxMessage, Role, RollEntry
from tests import factories
from tests.pgserver import PostgresServer, free_port, postgres_server

pytestmark = [pytest.mark.db, pytest.mark.server]

VOTE = {"choices": {"delegated": "For", "constitution": "Against"}}
MANDATE = str(Path(sys.executable).parent / "mandate")


@dataclass
class _Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def _serving(log: Path, env: Mapping[str, str] | None = None) -> Iterator[_Server]:
    """`mandate serve` in a subprocess, once it is ready; its output goes to `log`."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [MANDATE, "serve", "--port", str(port)],
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = _Server(f"http://127.0.0.1:{port}", process, log)
    try:
        _wait_until_ready(server, seconds=30)
        yield server
    finally:
        process.terminate()  # nothing, if a test has killed it already
        process.wait(timeout=20)


def _wait_until_ready(server: _Server, *, seconds: float) -> float:
    """Poll /readyz until it answers 200; return how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        assert server.process.poll() is None, server.log_tail()
        try:
            if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{server.url} was not ready after {seconds}s:\n{server.log_tail()}")


def _open_now(client: TestClient, *, practices: int) -> int:
    """A ballot of n practices open in real time, since server processes read the real clock."""
    now = clock.now()
    return factories.open_ballot(
        client,
        factories.staff_headers(client, Role.secretariat),
        practices=practices,
        opens_at=(now - timedelta(hours=1)).isoformat(),
        closes_at=(now + timedelta(days=1)).isoformat(),
    )


def _first_links() -> dict[str, str]:
    return {ods: tokens[0] for ods, tokens in factories.sent_links().items()}


def _links_in(maildir: Path) -> dict[str, str]:
    """The voting token sent to each practice, by ODS code, from another process's maildir."""
    links = {}
    for message in mailbox.Maildir(maildir, create=False):
        found = re.search(r"/vote/([A-Za-z0-9_-]+)", mail.plain_text(message))
        code = re.search(r"\.(g\d{5})@", str(message["To"]))
        if found and code:
            links[code.group(1).upper()] = found.group(1)
    return links


# --- the burst -------------------------------------------------------------------------------


@dataclass
class _Burst:
    receipts: dict[str, str] = field(default_factory=dict)  # ODS code -> receipt code
    # Each practice's outcome: a status code, or the name of the transport error.
    outcomes: dict[str, int | str] = field(default_factory=dict)
    # The same, for the responses that came back after the fault began.
    after_fault: Counter[int | str] = field(default_factory=Counter)
    bodies: Counter[str] = field(default_factory=Counter)  # error names of non-200 answers


async def _burst(
    url: str, tokens: Mapping[str, str], *, fault_after: int, fault: Callable[[], None]
) -> _Burst:
    """Every practice votes at once; `fault` runs once `fault_after` receipts have come back."""
    seen = _Burst()
    limits = httpx.Limits(max_connections=len(tokens))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:

        async def cast(ods: str, token: str) -> tuple[str, int | str, str | None]:
            try:
                response = await http.post(f"/api/v1/vote/{token}", json=VOTE)
            except httpx.TransportError as exc:
                return ods, type(exc).__name__, None
            if response.status_code == 200:
                return ods, 200, response.json()["receipt_code"]
            return ods, response.status_code, _error_name(response)

        faulted = False
        for next_done in asyncio.as_completed([cast(o, t) for o, t in tokens.items()]):
            ods, outcome, detail = await next_done
            seen.outcomes[ods] = outcome
            if faulted:
                seen.after_fault[outcome] += 1
            if outcome == 200:
                assert detail is not None
                seen.receipts[ods] = detail
            elif detail is not None:
                seen.bodies[f"{outcome} {detail}"] += 1
            if not faulted and len(seen.receipts) >= fault_after:
                faulted = True
                # In a thread, so responses keep arriving while the fault takes effect.
                await asyncio.to_thread(fault)
    return seen


def _error_name(response: httpx.Response) -> str:
    """The error a refusal names, or the start of its body if it is not one of ours."""
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError):
        return response.text[:80]


async def _statuses(url: str, tokens: Mapping[str, str]) -> dict[str, int]:
    """Every practice votes again at once: the status each gets."""
    limits = httpx.Limits(max_connections=len(tokens))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as http:
        responses = await asyncio.gather(
            *(http.post(f"/api/v1/vote/{t}", json=VOTE) for t in tokens.values())
        )
    return {ods: r.status_code for ods, r in zip(tokens, responses, strict=True)}


# --- what the database holds -----------------------------------------------------------------


@dataclass(frozen=True)
class _Tally:
    receipt_codes: list[str]  # in the ballot box
    voted: list[str]  # practices marked as voted on the roll
    voted_in_trail: list[str]  # practices of the trail's `voted` entries
    confirmed: list[str]  # practices with a confirmation queued
    chain_problem: str | None


def _tally(engine: Engine, ballot_id: int) -> _Tally:
    with Session(engine) as session:
        roll = dict(
            session.execute(
                select(RollEntry.id, RollEntry.ods_code).where(RollEntry.ballot_id == ballot_id)
            ).all()
        )
        voted = session.scalars(
            select(RollEntry.ods_code).where(
                RollEntry.ballot_id == ballot_id, RollEntry.voted_at.is_not(None)
            )
        ).all()
        # The box is sealed while the ballot is open: the test holds the tally key to look in.
        codes = factories.sealed_receipt_codes(session, ballot_id)
        confirmed = session.scalars(
            select(OutboxMessage.roll_entry_id).where(
                OutboxMessage.ballot_id == ballot_id,
                OutboxMessage.kind == MessageKind.confirmation,
            )
        ).all()
        trail = [
            audit.as_dict(e)
            for e in session.scalars(
                select(AuditEntry).where(AuditEntry.ballot_id == ballot_id).order_by(AuditEntry.seq)
            )
        ]
    return _Tally(
        receipt_codes=list(codes),
        voted=sorted(voted),
        voted_in_trail=sorted(e["payload"]["ods_code"] for e in trail if e["action"] == "voted"),
        confirmed=sorted(roll[i] for i in confirmed if i is not None),
        chain_problem=proof.chain_problem(trail),
    )


def _assert_whole(tally: _Tally, receipts: Mapping[str, str]) -> None:
    """Every receipted vote is in, and every vote is whole: box, roll, trail and outbox agree."""
    missing = set(receipts.values()) - set(tally.receipt_codes)
    assert not missing, f"{len(missing)} votes answered with a receipt are not in the ballot box"
    assert set(receipts) <= set(tally.voted)
    assert len(tally.receipt_codes) == len(set(tally.receipt_codes)) == len(tally.voted)
    assert tally.voted_in_trail == tally.voted  # each voted practice once, and no other
    assert tally.confirmed == tally.voted
    assert tally.chain_problem is None


def _assert_voting_goes_on(url: str, tokens: Mapping[str, str], voted: list[str]) -> None:
    """Every practice tries again: refused if its vote had committed, recorded if not."""
    statuses = asyncio.run(_statuses(url, tokens))
    expected = {ods: 409 if ods in voted else 200 for ods in tokens}
    wrong = {ods: (s, expected[ods]) for ods, s in statuses.items() if s != expected[ods]}
    assert not wrong, f"(got, expected) by practice: {dict(list(wrong.items())[:10])}"


# --- 1. a Mandate process killed -------------------------------------------------------------


def test_kill_9_mid_burst_loses_no_receipted_vote(
    client: TestClient, db: Engine, tmp_path: Path
) -> None:
    ballot_id = _open_now(client, practices=500)
    tokens = _first_links()
    assert len(tokens) == 500
    with _serving(tmp_path / "killed.log") as server:
        burst = asyncio.run(
            _burst(
                server.url,
                tokens,
                fault_after=100,
                fault=lambda: os.kill(server.process.pid, signal.SIGKILL),
            )
        )
        assert server.process.wait(timeout=10) == -signal.SIGKILL
    # Killed, not drained: some votes were still on their way.
    assert 100 <= len(burst.receipts) < 500, Counter(burst.outcomes.values())
    # Until the kill a vote is answered with its receipt; after it, the connection just fails.
    refused = {o for o in burst.outcomes.values() if o != 200 and not isinstance(o, str)}
    assert not refused, (burst.bodies, server.log_tail())

    with _serving(tmp_path / "restarted.log") as server:
        at_restart = _tally(db, ballot_id)
        _assert_whole(at_restart, burst.receipts)
        _assert_voting_goes_on(server.url, tokens, at_restart.voted)
        _assert_whole(_tally(db, ballot_id), burst.receipts)
        assert len(_tally(db, ballot_id).voted) == 500


# --- 2. PostgreSQL stopped -------------------------------------------------------------------


def _mandate(env: Mapping[str, str], *args: str) -> None:
    ran = subprocess.run([MANDATE, *args], env=env, capture_output=True, text=True)
    assert ran.returncode == 0, f"mandate {' '.join(args)}:\n{ran.stdout}\n{ran.stderr}"


def _open_over_http(url: str, *, practices: int, username: str) -> int:
    """Sign in and open a ballot of n practices in real time, through the API of a server."""
    now = clock.now()
    with httpx.Client(base_url=url, timeout=60) as http:
        signed_in = http.post(
            "/api/v1/auth/token", data={"username": username, "password": factories.PASSWORD}
        )
        assert signed_in.status_code == 200, signed_in.text
        headers = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
        definition = factories.definition(
            opens_at=(now - timedelta(hours=1)).isoformat(),
            closes_at=(now + timedelta(days=1)).isoformat(),
        )
        created = http.post("/api/v1/ballots", json=definition, headers=headers)
        assert created.status_code == 201, created.text
        ballot_id: int = created.json()["id"]
        rolled = http.put(
            f"/api/v1/ballots/{ballot_id}/roll", json=factories.roll(practices), headers=headers
        )
        assert rolled.status_code == 200, rolled.text
        keyed = http.put(
            f"/api/v1/ballots/{ballot_id}/tally-key",
            json={"public_key": factories.TALLY_KEY},
            headers=headers,
        )
        assert keyed.status_code == 200, keyed.text
        factories.approve(http, ballot_id)
        opened = http.post(
            f"/api/v1/ballots/{ballot_id}/open",
            json={"acknowledge_warnings": True},
            headers=headers,
        )
        assert opened.status_code == 200, opened.text
    return ballot_id


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


def test_postgres_stopped_mid_burst_gets_503_and_mandate_reconnects(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    pg = own_postgres
    env = {
        **os.environ,
        "DATABASE_URL": pg.url,
        "DATA_DIR": str(tmp_path / "data"),
        "MAILDIR": str(tmp_path / "mail"),
        "MANDATE_ENV": "test",
        "MAIL_SEND_IN_SERVER": "false",
        "SECRET_KEY": "fault-test-secret-key-that-is-long-enough",
        "BASE_URL": "http://testserver",
    }
    _mandate(env, "migrate")
    _mandate(env, "staff", "add", "faults", "--password", factories.PASSWORD)
    role = ("--role", "scrutineer", "--password", factories.PASSWORD)
    _mandate(env, "staff", "add", factories.SCRUTINEER, *role)
    with _serving(tmp_path / "server.log", env) as server:
        ballot_id = _open_over_http(server.url, practices=500, username="faults")
        _mandate(env, "mail", "send")
        tokens = _links_in(tmp_path / "mail")
        assert len(tokens) == 500
        burst = asyncio.run(
            _burst(server.url, tokens, fault_after=50, fault=lambda: pg.stop("immediate"))
        )
        # The process stays up: every vote is answered, with a receipt or with 503, never 500.
        outcomes = Counter(burst.outcomes.values())
        assert set(outcomes) <= {200, 503}, (outcomes, burst.bodies, server.log_tail())
        assert burst.after_fault[503] > 0, (burst.after_fault, server.log_tail())
        unreceipted = next(t for ods, t in tokens.items() if ods not in burst.receipts)
        _assert_unavailable(server.url, unreceipted)

        pg.start()  # the same data directory and port, after crash recovery
        _wait_until_ready(server, seconds=30)  # the same process: it reconnects by itself
        engine = create_engine(pg.url)
        try:
            at_restart = _tally(engine, ballot_id)
            _assert_whole(at_restart, burst.receipts)
            _assert_voting_goes_on(server.url, tokens, at_restart.voted)
            after = _tally(engine, ballot_id)
        finally:
            engine.dispose()
        _assert_whole(after, burst.receipts)
        assert len(after.voted) == 500


def _assert_unavailable(url: str, token: str) -> None:
    """With the database away: alive, not ready, and a vote refused with 503 and Retry-After."""
    with httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/healthz").status_code == 200
        ready = http.get("/readyz")
        assert (ready.status_code, ready.json()["database"]) == (503, "unreachable")
        vote = http.post(f"/api/v1/vote/{token}", json=VOTE)
        assert (vote.status_code, vote.json()["error"]) == (503, "DatabaseUnavailable")
        assert vote.headers["Retry-After"] == "1"
        page = http.get(f"/vote/{token}")  # what a voter opening the link sees
        assert page.status_code == 503
        assert "cannot reach its database" in page.text


# --- 3. two processes, every link three times ------------------------------------------------


async def _submit(
    submissions: list[tuple[str, str, str]], *, in_flight: int
) -> list[tuple[str, int, str | None]]:
    """POST each (server, ODS code, token) with at most `in_flight` at once, in list order."""
    turns = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:

        async def cast(url: str, ods: str, token: str) -> tuple[str, int, str | None]:
            async with turns:
                response = await http.post(f"{url}/api/v1/vote/{token}", json=VOTE)
            error = None if response.status_code == 200 else _error_name(response)
            return ods, response.status_code, error

        return await asyncio.gather(*(cast(*s) for s in submissions))


def test_two_servers_given_each_link_three_times_record_it_once(
    client: TestClient, db: Engine, tmp_path: Path
) -> None:
    ballot_id = _open_now(client, practices=1000)
    tokens = _first_links()
    assert len(tokens) == 1000
    with _serving(tmp_path / "a.log") as a, _serving(tmp_path / "b.log") as b:
        # A link's three submissions are adjacent, so in flight together, and split a-b-a or b-a-b.
        servers = (a.url, b.url)
        submissions = [
            (servers[(i + k) % 2], ods, token)
            for i, (ods, token) in enumerate(tokens.items())
            for k in range(3)
        ]
        answers = asyncio.run(_submit(submissions, in_flight=100))
        logs = a.log_tail() + "\n" + b.log_tail()
    answered = Counter((status, error) for _, status, error in answers)
    assert answered == {(200, None): 1000, (409, "AlreadyVoted"): 2000}, (answered, logs)
    assert sorted(ods for ods, status, _ in answers if status == 200) == sorted(tokens)
    tally = _tally(db, ballot_id)
    _assert_whole(tally, {})
    assert len(tally.voted) == len(tally.receipt_codes) == 1000
