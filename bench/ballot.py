"""A one-question ballot of N practices, opened now: the starting point of every benchmark."""

from datetime import timedelta

from sqlalchemy.orm import Session

from app import ballots, clock, definitions, proof, roll, scrutiny, sealed_box, staff, tally_key
from app.db import migrate, session_scope
from app.models import Ballot, Role, StaffUser

SCRUTINEER = "bench-scrutineer"
GOVERNANCE = {"scrutineer": "Bench LMC", "scrutineer_accounts": [SCRUTINEER]}


def _scrutineer(session: Session, ballot: Ballot) -> StaffUser:
    """The ballot's first named scrutineer, whose account a benchmark creates if need be."""
    username = scrutiny.scrutineers(ballot)[0]
    found = next((u for u in staff.list_all(session) if u.username == username), None)
    return found or staff.create(
        session, username=username, password="bench scrutineer password", role=Role.scrutineer
    )


def approve(session: Session, ballot: Ballot) -> None:
    """The scrutineer approves the draft as it stands."""
    frozen = scrutiny.frozen_hash(session, ballot=ballot)
    scrutiny.approve(session, ballot=ballot, user=_scrutineer(session, ballot), frozen=frozen)


def countersign(session: Session, ballot: Ballot) -> None:
    """The scrutineer countersigns the count of the closed ballot."""
    root, cast = ballots.box_commitment(session, ballot=ballot)
    result = ballots.count(session, ballot=ballot)
    counted = proof.count_hash(ballot_box_root=root, ballots_cast=cast, result=result)
    scrutiny.countersign(
        session, ballot=ballot, user=_scrutineer(session, ballot), given=counted, current=counted
    )


def set_tally_key(session: Session, *, ballot: Ballot) -> list[tally_key.Share]:
    """A fresh 2-of-3 tally key on a draft; its shares, to open the box after close."""
    public, shares = tally_key.new_key(holders=3, threshold=2)
    sealed_box.set_tally_key(
        session, ballot=ballot, public_key=public, holders=None, threshold=2, holder_count=3,
        actor="operator:bench",
    )  # fmt: skip
    return shares


def open_ballot(practices: int) -> int:
    """Migrate the configured database, then create and open the ballot (invitations queued)."""
    return open_with_shares(practices)[0]


def open_with_shares(practices: int) -> tuple[int, list[tally_key.Share]]:
    """open_ballot(), and the shares of the tally key its ballots are sealed to."""
    migrate()
    now = clock.now().replace(microsecond=0)
    definition = definitions.parse_definition(
        {
            "reference": "BENCH-1",
            "title": "Benchmark",
            "organisation": {"name": "NHS Bench CCG", "ods_code": "99B"},
            "opens_at": (now - timedelta(hours=1)).isoformat(),
            "closes_at": (now + timedelta(days=1)).isoformat(),
            "questions": [{"id": "q", "text": "Carried?"}],
            "rules": {"preset": "simple_majority", "constitution_ref": "bench"},
            "governance": GOVERNANCE,
        }
    )
    rows = [
        roll.RollRow(
            ods_code=f"B{i:05d}",
            name=f"Practice {i}",
            locality=f"L{i % 5}",
            list_size=5000,
            emails=[f"p{i}@bench.example"],
        )
        for i in range(practices)
    ]
    with session_scope() as session:
        ballot = ballots.create(session, definition=definition, actor="operator:bench")
        ballots.replace_roll(session, ballot=ballot, rows=rows, actor="operator:bench")
        shares = set_tally_key(session, ballot=ballot)
        approve(session, ballot)
    with session_scope() as session:
        ballots.open_ballot(
            session, ballot_id=ballot.id, acknowledge_warnings=True, actor="operator:bench"
        )
    return ballot.id, shares
