"""The audit trail: one unforked hash chain per ballot, whoever appends at the same time."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from app import audit, ballots, proof
from app.db import session_scope
from tests import factories


def _trail(ballot_id: int) -> list[dict[str, Any]]:
    with session_scope() as session:
        ballot = ballots.get(session, ballot_id)
        return [audit.as_dict(e) for e in audit.entries(session, ballot=ballot)]


def test_concurrent_appends_never_fork_the_chain(
    client: TestClient, secretariat: dict[str, str], db: Engine
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    before = len(_trail(ballot_id))

    def append_five(writer: int) -> None:
        for n in range(5):
            with session_scope() as session:
                audit.append(
                    session, ballot=ballot_id, actor="system", action="test", writer=writer, n=n
                )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(append_five, range(8)))
    trail = _trail(ballot_id)
    assert proof.chain_problem(trail) is None
    assert [e["seq"] for e in trail] == list(range(1, before + 41))
    assert len({(e["payload"]["writer"], e["payload"]["n"]) for e in trail[before:]}) == 40


def test_a_ballot_trail_records_each_change_and_never_how_anyone_voted(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    trail = client.get(f"/api/v1/ballots/{ballot_id}/audit", headers=secretariat).json()
    assert trail["intact"] is True
    actions = [e["action"] for e in trail["entries"]]
    assert actions[:5] == [
        "ballot_created", "roll_loaded", "tally_key_set", "approved", "opened"
    ]  # fmt: skip
    assert actions.count("link_issued") == 9
    assert actions.count("voted") == 8
    assert actions[-4:] == ["closed", "box_opened", "count_countersigned", "published"]
    assert {e["actor"] for e in trail["entries"]} == {
        "staff:secretariat-user", "staff:scrutineer-user", "system", "voter"
    }  # fmt: skip
    voted = [e for e in trail["entries"] if e["action"] == "voted"]
    assert all(set(e["payload"]) == {"ods_code"} for e in voted)
    receipts = client.get(f"/api/v1/ballots/{ballot_id}/ballot-box").json()["receipts"]
    everything = str(trail["entries"])
    assert not any(code in everything for code in receipts)


def test_an_edited_entry_breaks_the_chain_at_that_entry() -> None:
    entries: list[dict[str, Any]] = []
    prev = proof.GENESIS
    for seq in (1, 2, 3):
        entry = {"seq": seq, "at": "2016-11-10T12:00:00.000000Z", "actor": "system",
                 "action": "test", "payload": {"n": seq}, "prev": prev}  # fmt: skip
        entry["hash"] = prev = proof.entry_hash(entry)
        entries.append(entry)
    assert proof.chain_problem(entries) is None
    entries[1] = {**entries[1], "payload": {"n": 20}}
    assert proof.chain_problem(entries) == (
        "entry 2 was altered (its hash does not match its content)"
    )
    assert proof.chain_problem([entries[0], entries[2]]) == (
        "entry 2 is missing or out of order (found 3)"
    )
