"""National ballot: 6,500 practices invited over SMTP, then votes at a rate that doubles.

For SQLite (one `mandate serve` process) and PostgreSQL 15 (two processes on one throwaway
server from tests/pgserver.py), each in a fresh database:

1. The national ballot. A ballot of 6,500 practices is opened and its invitations delivered by
   outbox.deliver_pending() (what `mandate ballot open` and `mandate mail send` run) over SMTP
   to a local aiosmtpd sink; the links are read from the messages the sink received. Then the
   server(s) start and all 6,500 links vote at once over 64 connections, each link once: the
   floor is 6,500 votes inside 60 s.
2. The ramp. Votes are offered at half the floor's rate (6,500 / 60 s / 2, about 54 votes/s),
   and the rate doubles every 30 s step until a step is not sustained: a step is sustained when
   every vote got a 200, its p99 (plus the p99 of how late votes left the client, below) is
   under 1 s, and the server kept up with at least 95% of the offered rate. The highest
   sustained step's votes/s is the figure reported.

Why the ramp does not spend the national ballot's links: a link votes once (a second vote is
refused, which is not the work of a vote), and a 30 s step at R votes/s needs 30 R links, so
6,500 links last the 54 and 108 votes/s steps and 7.5 s of the next, far short of any ceiling.
So each step votes on a ballot of its own of 30 s x R practices, opened between steps (at most
20,000, a roll's limit; a faster step is shorter, and the output says so). One ballot per step,
not several: every cast on a ballot takes its turn on that ballot's audit chain (an advisory
lock on PostgreSQL), as the national ballot's casts do, and spreading a step over ballots would
measure less contention than a national ballot has. These ballots' links are issued directly in
the database, as the sender would issue them (app.crypto tokens, their keyed hashes stored, the
invitations marked sent in the same transaction, so the servers' own senders never see them
queued): delivering some 25,000 more emails, at the rate phase 1 shows, would take minutes per
database and measure mail, not voting. Confirmations of votes are delivered to the sink by
the servers' own senders, as `mandate serve` does by default, and the outbox is not drained
between steps: the senders send while the servers are quiet (between steps) and, under load,
a batch every 30 s per process, as they would through a long national ballot. A batch is
rendered in the server process, so voters answered meanwhile wait longer: it shows in p99.

Pacing with plain wrk (wrk2, which keeps a constant rate, is not in Debian): bench/national.lua
gives each vote a slot in a timetable at the offered rate, and there are as many connections as
votes offered in one second, so a connection is free for every slot while answers take under
1 s. A vote whose slot finds every connection waiting leaves late; "late p99" says by how much.
With two processes, each wrk process drives one server at half the rate; counts are summed and
each percentile is the larger of the two.

Peak memory is each server process's VmHWM (/proc/PID/status) at the end of its run.

    python bench/national.py [--quick] [--practices 6500] [--step-seconds 30]
                             [--databases sqlite,postgresql] [--keep]
"""

import argparse
import email
import json
import math
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import cast

BIN = Path(sys.executable).parent
LUA = ROOT / "bench" / "national.lua"
ACTOR = "operator:bench"
SECRET_KEY = "bench-secret-key-bench-secret-key-bench"

# The floor: the national ballot's 6,500 votes inside 60 s.
FLOOR_PRACTICES, FLOOR_SECONDS = 6_500, 60.0
FLOOR_RATE = FLOOR_PRACTICES / FLOOR_SECONDS
P99_LIMIT_MS = 1000.0
KEEP_UP = 0.95
BURST_CONNECTIONS = 64
MAX_STEPS = 6
# A step's wrk stops this long after its last vote was due, answered or not.
GRACE_SECONDS = 15
PROCESSES = {"sqlite": 1, "postgresql": 2}
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


class Sink:
    """An SMTP server that accepts every message; keeps their bytes while asked to."""

    def __init__(self) -> None:
        self.received = 0
        self.keeping = False
        self.kept: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        if self.keeping:
            self.kept.append(envelope.content)
        return "250 OK"

    def take_tokens(self) -> list[str]:
        """The voting token in each kept message, and stop keeping."""
        from app import mail

        self.keeping = False
        pattern = re.compile(r"/vote/([A-Za-z0-9_-]+)")
        tokens = []
        for content in self.kept:
            found = pattern.search(mail.plain_text(email.message_from_bytes(content)))
            assert found is not None, "an invitation without a link"
            tokens.append(found.group(1))
        self.kept = []
        return tokens


# --- Run in a child process whose environment points at the database under test. ---------


def _child_environment(env: dict[str, str]) -> None:
    os.environ.update(env)


def open_national_ballot(practices: int) -> tuple[float, float, int, int]:
    """Open the ballot and deliver its invitations: seconds for each, messages sent, not sent."""
    from app import db, outbox
    from bench import ballot

    db.migrate()
    started = time.perf_counter()
    ballot.open_ballot(practices)
    queued = time.perf_counter() - started
    started = time.perf_counter()
    report = outbox.deliver_pending()
    return queued, time.perf_counter() - started, report.sent, report.failed + report.retrying


def open_step_ballot(reference: str, practices: int) -> list[str]:
    """An open ballot of N practices, its invitations sent: one fresh token per practice."""
    from sqlalchemy import insert, update

    from app import ballots, clock, crypto, definitions, roll
    from app.db import session_scope
    from app.models import DeliveryStatus, OutboxMessage, VotingLink
    from bench import ballot as bench_ballot

    now = clock.now().replace(microsecond=0)
    definition = definitions.parse_definition(
        {
            "reference": reference,
            "title": f"Benchmark {reference}",
            "organisation": {"name": "NHS Bench CCG", "ods_code": "99B"},
            "opens_at": (now - timedelta(hours=1)).isoformat(),
            "closes_at": (now + timedelta(days=1)).isoformat(),
            "questions": [{"id": "q", "text": "Carried?"}],
            "rules": {"preset": "simple_majority", "constitution_ref": "bench"},
            "governance": bench_ballot.GOVERNANCE,
        }
    )
    # Valid by construction: validating 20,000 addresses would time email_validator.
    rows = [
        roll.RollRow.model_construct(
            ods_code=f"B{i:05d}",
            name=f"Practice {i}",
            locality=f"L{i % 5}",
            list_size=5000,
            emails=[f"p{i}@bench.example"],
        )
        for i in range(practices)
    ]
    with session_scope() as session:
        ballot = ballots.create(session, definition=definition, actor=ACTOR)
        entries = [
            (e.id, e.emails[0])
            for e in ballots.replace_roll(session, ballot=ballot, rows=rows, actor=ACTOR)
        ]
        bench_ballot.set_tally_key(session, ballot=ballot)
        bench_ballot.approve(session, ballot)
    tokens = [crypto.new_token() for _ in entries]
    # One transaction: the servers' senders never find these invitations queued.
    with session_scope() as session:
        ballots.open_ballot(session, ballot_id=ballot.id, acknowledge_warnings=True, actor=ACTOR)
        sent_at = clock.now()
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.ballot_id == ballot.id)
            .values(status=DeliveryStatus.sent, attempts=1, sent_at=sent_at)
        )
        session.execute(
            insert(VotingLink),
            [
                {
                    "roll_entry_id": entry_id,
                    "email": address,
                    "token_hash": crypto.token_hash(token),
                    "issued_at": sent_at,
                }
                for (entry_id, address), token in zip(entries, tokens, strict=True)
            ],
        )
    return tokens


# --- The servers and the load. ---------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_kb(self) -> int:
        """The process's peak resident memory so far (VmHWM)."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
        assert found is not None
        return int(found.group(1))


@contextmanager
def running_servers(count: int, env: dict[str, str], work: Path) -> Iterator[list[Server]]:
    """`mandate serve` processes, started one after another, stopped at the end."""
    servers: list[Server] = []
    try:
        for n in range(count):
            port, log = cast.free_port(), work / f"server-{n + 1}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [str(BIN / "mandate"), "serve", "--port", str(port)],
                    env=env,
                    cwd=ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            servers.append(Server(process, port, log))
            cast.wait_for(f"{servers[-1].url}/openapi.json", process)
        yield servers
    finally:
        for server in servers:
            server.process.terminate()
        for server in servers:
            server.process.wait(timeout=30)


@dataclass
class Load:
    """What wrk saw: counts, the first send and last answer (monotonic seconds), latencies."""

    sent: int
    answered: int
    ok: int
    refused: int
    other: int
    errors: int
    first_sent: float
    last_answer: float
    p50_ms: float
    p99_ms: float
    late_p99_ms: float
    late_max_ms: float

    @property
    def seconds(self) -> float:
        return self.last_answer - self.first_sent

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed(self) -> int:
        """Votes that did not get a 200: refused, other answers, and socket errors."""
        return self.refused + self.other + self.errors + (self.sent - self.answered)

    @classmethod
    def merge(cls, loads: list["Load"]) -> "Load":
        """Counts summed, the whole span, and the larger of each percentile."""
        return cls(
            sent=sum(x.sent for x in loads),
            answered=sum(x.answered for x in loads),
            ok=sum(x.ok for x in loads),
            refused=sum(x.refused for x in loads),
            other=sum(x.other for x in loads),
            errors=sum(x.errors for x in loads),
            first_sent=min(x.first_sent for x in loads),
            last_answer=max(x.last_answer for x in loads),
            p50_ms=max(x.p50_ms for x in loads),
            p99_ms=max(x.p99_ms for x in loads),
            late_p99_ms=max(x.late_p99_ms for x in loads),
            late_max_ms=max(x.late_max_ms for x in loads),
        )


def _wrk(url: str, tokens: Path, *, rate: float, connections: int, seconds: float) -> Load:
    """One wrk process, one thread, each token once; stopped as soon as every vote is answered."""
    limits = [f"-c{connections}", f"-d{math.ceil(seconds)}s", "--timeout", "10s"]
    process = subprocess.Popen(
        ["wrk", "-t1", *limits, "-s", str(LUA), url],
        env={
            **os.environ,
            "BENCH_TOKENS": str(tokens),
            "BENCH_THREADS": "1",
            "BENCH_RATE": str(rate),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith("DONE"):
            # Interrupted, wrk stops its threads and reports at once.
            process.send_signal(signal.SIGINT)
    process.wait()
    found = [line for line in output if line.startswith("BENCH ")]
    if not found:
        raise SystemExit(f"wrk failed ({process.returncode}):\n{''.join(output)}")
    return Load(**json.loads(found[0].removeprefix("BENCH ")))


def drive(
    servers: list[Server], tokens: list[str], work: Path, *, rate: float, connections: int,
    seconds: float,
) -> Load:  # fmt: skip
    """Vote once with every token, shared among the servers; rate 0: as fast as answered."""
    shares = [tokens[n :: len(servers)] for n in range(len(servers))]
    files = []
    for n, share in enumerate(shares):
        files.append(work / f"tokens-{n + 1}.txt")
        files[-1].write_text("\n".join(share) + "\n")
    each = max(1, connections // len(servers))
    with ThreadPoolExecutor(len(servers)) as pool:
        loads = list(
            pool.map(
                lambda s, f: _wrk(
                    s.url, f, rate=rate / len(servers), connections=each, seconds=seconds
                ),
                servers,
                files,
            )
        )
    return Load.merge(loads)


# --- The two phases. -------------------------------------------------------------------------


@dataclass
class Step:
    rate: float
    links: int
    load: Load

    @property
    def sustained(self) -> bool:
        return (
            self.load.failed == 0
            and self.load.p99_ms + self.load.late_p99_ms < P99_LIMIT_MS
            and self.load.per_second >= KEEP_UP * self.rate
        )


@dataclass
class Outcome:
    name: str
    processes: int
    practices: int
    burst: Load
    floor_seconds: float
    steps: list[Step] = field(default_factory=list)
    links_short: bool = False
    peaks_kb: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def highest(self) -> Step | None:
        sustained = [s for s in self.steps if s.sustained]
        return sustained[-1] if sustained else None


HEADER = (
    f"  {'offered/s':>9} {'links':>6} {'votes/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'late p99':>8} {'non-200':>7} {'errors':>6}  verdict"
)


def _row(step: Step, step_seconds: float) -> str:
    load = step.load
    verdict = "sustained" if step.sustained else "NOT sustained"
    if step.links < round(step.rate * step_seconds):
        verdict += f" ({step.links} links, a roll's limit: {step.links / step.rate:.0f} s)"
    return (
        f"  {step.rate:9.0f} {step.links:6d} {load.per_second:8.0f} {load.p50_ms:8.1f} "
        f"{load.p99_ms:8.1f} {load.late_p99_ms:8.1f} {load.refused + load.other:7d} "
        f"{load.errors + load.sent - load.answered:6d}  {verdict}"
    )


def ramp(
    servers: list[Server], pool: Executor, work: Path, outcome: Outcome, step_seconds: float
) -> None:
    """Steps at a doubling rate, each on a ballot of its own, until one is not sustained."""
    from app import roll

    rate = FLOOR_RATE / 2
    print(f"ramp: {step_seconds:.0f} s steps from {rate:.0f} votes/s, the rate doubling each step")
    print("  (late p99: how late the 99th-percentile vote left wrk, every connection being busy)")
    print(HEADER, flush=True)
    for n in range(MAX_STEPS):
        links = min(round(rate * step_seconds), roll.MAX_PRACTICES)
        tokens = pool.submit(open_step_ballot, f"NATIONAL-STEP-{n + 1}", links).result()
        load = drive(
            servers, tokens, work, rate=rate, connections=max(8, math.ceil(rate)),
            seconds=links / rate + GRACE_SECONDS,
        )  # fmt: skip
        step = Step(rate, links, load)
        outcome.steps.append(step)
        outcome.links_short = outcome.links_short or links < round(rate * step_seconds)
        print(_row(step, step_seconds), flush=True)
        if not step.sustained:
            return
        rate *= 2
    print(f"  the ceiling was not reached in {MAX_STEPS} steps")


def _server_problems(log: Path) -> list[str]:
    """Log lines that are not a 200 answer or routine news, word for word."""
    problems = []
    access = re.compile(r"mandate\.access \S+ \S+ (\d{3}) ")
    for line in log.read_text(errors="replace").splitlines():
        found = access.search(line)
        if found is not None:
            if found.group(1) != "200":
                problems.append(line)
        elif re.search(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback", line):
            problems.append(line)
    return problems


@contextmanager
def database(kind: str, work: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work / 'mandate.db'}"
        return
    from tests import pgserver

    with pgserver.running_postgres() as url:
        yield url


def run(
    kind: str, sink: Sink, smtp_port: int, practices: int, step_seconds: float, *, keep: bool
) -> Outcome:
    name, processes = NAMES[kind], PROCESSES[kind]
    print(f"\n=== {name} ({processes} process{'es' if processes > 1 else ''}) ===", flush=True)
    work = Path(tempfile.mkdtemp(prefix=f"mandate-bench-national-{kind}-"))
    received_before = sink.received
    with database(kind, work) as url:
        env = {
            **os.environ,
            "MANDATE_ENV": "dev",
            "DATA_DIR": str(work),
            "DATABASE_URL": url,
            "SECRET_KEY": SECRET_KEY,
            "MAIL_BACKEND": "smtp",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "SMTP_SECURITY": "none",
        }
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            1, mp_context=context, initializer=_child_environment, initargs=(env,)
        ) as pool:
            sink.keeping = True
            queued, delivered, sent, unsent = pool.submit(open_national_ballot, practices).result()
            tokens = sink.take_tokens()
            print(
                f"national ballot of {practices} practices: opened (invitations queued) in "
                f"{queued:.1f} s, invitations delivered over SMTP in {delivered:.1f} s "
                f"({sent / delivered:.0f}/s; {sent} sent, {unsent} not sent, {len(tokens)} links "
                "read from the sink)",
                flush=True,
            )
            with running_servers(processes, env, work) as servers:
                burst = drive(
                    servers, tokens, work, rate=0, connections=BURST_CONNECTIONS,
                    seconds=2 * FLOOR_SECONDS,
                )  # fmt: skip
                floor = practices / FLOOR_RATE
                outcome = Outcome(name, processes, practices, burst, floor)
                print(
                    f"{burst.ok} of {len(tokens)} votes at {BURST_CONNECTIONS} connections in "
                    f"{burst.seconds:.1f} s ({burst.per_second:.0f} votes/s, p50 "
                    f"{burst.p50_ms:.0f} ms, p99 {burst.p99_ms:.0f} ms, {burst.failed} failed); "
                    f"floor {floor:.0f} s: {_verdict(outcome)}",
                    flush=True,
                )
                ramp(servers, pool, work, outcome, step_seconds)
                outcome.peaks_kb = [s.peak_kb() for s in servers]
            for server in servers:
                outcome.problems += _server_problems(server.log)
    confirmations = sink.received - received_before - len(tokens)
    print(f"the servers' senders delivered {confirmations} confirmations of votes to the sink")
    if keep:
        print(f"kept {work} (the server logs are there)")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return outcome


def _verdict(outcome: Outcome) -> str:
    burst = outcome.burst
    met = burst.ok == outcome.practices and burst.failed == 0
    return "met" if met and burst.seconds <= outcome.floor_seconds else "NOT met"


def summary(outcome: Outcome) -> str:
    label = f"{outcome.name} ({outcome.processes} process{'es' if outcome.processes > 1 else ''})"
    best = outcome.highest()
    if best is None:
        ceiling = f"no step sustained (the first, {outcome.steps[0].rate:.0f}/s, was not)"
    else:
        ceiling = (
            f"highest sustained {best.load.per_second:.0f} votes/s (offered {best.rate:.0f}/s) "
            "with p99 < 1 s and 0 errors"
        )
        if best is outcome.steps[-1]:
            ceiling += " (the ramp ended before the ceiling)"
        else:
            after = outcome.steps[outcome.steps.index(best) + 1]
            ceiling += (
                f"; at {after.rate:.0f}/s offered it managed {after.load.per_second:.0f} votes/s, "
                f"p99 {after.load.p99_ms:.0f} ms, {after.load.failed} failed"
            )
    return (
        f"{label}: {ceiling}; {outcome.burst.ok} votes in {outcome.burst.seconds:.1f} s "
        f"(floor {outcome.floor_seconds:.0f} s: {_verdict(outcome)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--practices", type=int, default=FLOOR_PRACTICES)
    parser.add_argument("--step-seconds", type=float, default=30)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument(
        "--quick", action="store_true", help="1,000 practices and 5 s steps, for development"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    options = parser.parse_args()
    if options.quick:
        options.practices, options.step_seconds = 1000, 5
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (or run `make bench`)")

    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=cast.free_port())
    controller.start()
    started = time.perf_counter()
    try:
        outcomes = [
            run(
                kind,
                sink,
                controller.port,
                options.practices,
                options.step_seconds,
                keep=options.keep,
            )
            for kind in options.databases.split(",")
        ]
    finally:
        controller.stop()

    print(f"\n{os.cpu_count()} CPUs shared by wrk, the server(s) and the database; "
          f"{time.perf_counter() - started:.0f} s in all")  # fmt: skip
    for outcome in outcomes:
        print(summary(outcome))
    for outcome in outcomes:
        peaks = ", ".join(f"{kb / 1024:.0f} MB" for kb in outcome.peaks_kb)
        print(f"peak memory (VmHWM) of the {outcome.name} server process(es): {peaks}")
    for outcome in outcomes:
        if outcome.links_short:
            print(f"{outcome.name}: a step's links ran out before its {options.step_seconds:.0f} s")
        if outcome.problems:
            print(f"{outcome.name} server log: {len(outcome.problems)} lines other than 200s:")
            for line in outcome.problems[:20]:
                print(f"  {line}")
        else:
            print(f"{outcome.name} server log: every vote answered 200, no warning or error")


if __name__ == "__main__":
    main()
