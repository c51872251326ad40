"""A one-question ballot of N practices, opened now: the starting point of every benchmark."""

from datetime import timedelta

from app import ballots, clock, definitions, roll
from app.db import migrate, session_scope


def open_ballot(practices: int) -> int:
    """Migrate the configured database, then create and open the ballot (invitations queued)."""
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
        roll.replace(session, ballot=ballot, rows=rows, actor="operator:bench")
    with session_scope() as session:
        ballots.open_ballot(
            session, ballot_id=ballot.id, acknowledge_warnings=True, actor="operator:bench"
        )
    return ballot.id
