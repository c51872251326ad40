"""Voting starts and ballots close by the clock, once, whoever looks."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from fastapi.testclient import TestClient

from app import clock, schedule
from tests import factories


def _actions(client: TestClient, headers: dict[str, str], ballot_id: int) -> list[tuple[str, str]]:
    trail = client.get(f"/api/v1/ballots/{ballot_id}/audit", headers=headers).json()
    return [(e["action"], e["actor"]) for e in trail["entries"]]


def test_nothing_happens_before_its_time(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    clock.freeze(factories.OPENS - timedelta(days=1))
    ballot_id = factories.open_ballot(client, secretariat)
    assert schedule.run_due() == []
    assert ("voting_started", "system") not in _actions(client, secretariat, ballot_id)


def test_voting_start_and_close_are_recorded_once_by_the_system(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    assert schedule.run_due() == [f"ballot {ballot_id}: voting started"]
    assert schedule.run_due() == []
    clock.freeze(factories.CLOSES)
    assert schedule.run_due() == [f"ballot {ballot_id}: closed at its closing time"]
    assert schedule.run_due() == []
    ballot = client.get(f"/api/v1/ballots/{ballot_id}", headers=secretariat).json()
    assert ballot["status"] == "closed"
    actions = _actions(client, secretariat, ballot_id)
    assert actions.count(("voting_started", "system")) == 1
    assert actions[-1] == ("closed", "system")


def test_servers_looking_at_once_make_each_transition_once(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    clock.freeze(factories.CLOSES + timedelta(minutes=1))
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = [s for result in pool.map(lambda _: schedule.run_due(), range(4)) for s in result]
    assert sorted(done) == [
        f"ballot {ballot_id}: closed at its closing time",
        f"ballot {ballot_id}: voting started",
    ]
    actions = [a for a, _ in _actions(client, secretariat, ballot_id)]
    assert actions.count("voting_started") == 1
    assert actions.count("closed") == 1
