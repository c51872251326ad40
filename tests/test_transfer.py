"""Export a ballot, restore it into a database, and carry on where it left off."""

import json
from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from typer.testing import CliRunner

from app import cli, clock, errors
from app import verify as verification
from app.db import session_scope
from app.models import (
    AuditEntry,
    Ballot,
    BallotBoxEntry,
    Document,
    OutboxMessage,
    RollEntry,
    SealedBallot,
    VotingLink,
)
from tests import factories


def _mandate(*args: str) -> tuple[int, str]:
    """Exit status, and what was printed or refused (main() prints a refusal; here it is raised)."""
    result = CliRunner().invoke(cli.app, list(args))
    if isinstance(result.exception, errors.AppError):
        return 1, result.exception.detail
    return result.exit_code, result.output


def _restored() -> int:
    with session_scope() as session:
        return int(session.scalars(select(Ballot.id)).one())


def _forget(ballot_id: int) -> None:
    """The ballot gone from this database, as if it were a fresh one."""
    with session_scope() as session:
        practices = select(RollEntry.id).where(RollEntry.ballot_id == ballot_id)
        session.execute(delete(OutboxMessage).where(OutboxMessage.ballot_id == ballot_id))
        session.execute(delete(VotingLink).where(VotingLink.roll_entry_id.in_(practices)))
        for model in (SealedBallot, BallotBoxEntry, AuditEntry, Document, RollEntry):
            session.execute(delete(model).where(model.ballot_id == ballot_id))
        session.execute(delete(Ballot).where(Ballot.id == ballot_id))


def test_an_open_ballot_is_not_exported(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    code, output = _mandate("export-ballot", str(ballot_id), "-o", str(tmp_path / "b.json"))
    assert code == 1
    assert "an open ballot is not exported" in " ".join(output.split())
    assert not (tmp_path / "b.json").exists()


def test_a_closed_ballot_restored_is_published_and_its_bundle_verifies(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    ballot_id = factories.open_ballot(client, secretariat)
    factories.cast_votes(client, ["For", "For", "Against", "Abstain"])
    clock.freeze(factories.CLOSES + timedelta(seconds=1))
    closed = client.post(f"/api/v1/ballots/{ballot_id}/close", headers=secretariat)
    assert closed.status_code == 200
    export = tmp_path / "ballot.json"
    assert _mandate("export-ballot", str(ballot_id), "-o", str(export))[0] == 0
    exported = json.loads(export.read_text())
    assert len(exported["sealed_ballot"]) == 4
    assert exported["ballot_box_entry"] == []
    assert "receipt_code" not in export.read_text()
    _forget(ballot_id)
    code, output = _mandate("import-ballot", str(export))
    assert code == 0, output
    restored = _restored()
    factories.open_box(client, secretariat, restored)
    factories.countersign(client, restored)
    published = client.post(f"/api/v1/ballots/{restored}/publish", headers=secretariat)
    assert published.status_code == 200, published.text
    assert published.json()["status"] == "published"
    result = client.get(f"/api/v1/ballots/{restored}/results").json()
    assert result["ballots_cast"] == 4
    assert result["questions"][0]["counts"]["For"]["practices"] == 2
    bundle = tmp_path / "bundle.zip"
    response = client.get(f"/api/v1/ballots/{restored}/evidence", headers=secretariat)
    bundle.write_bytes(response.content)
    key = client.get("/api/v1/signing-key").json()["current"]["public_key"]
    assert [c for c in verification.verify(bundle, key=key) if not c.ok] == []


def test_a_restored_draft_opens_and_its_practices_vote(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    export = tmp_path / "draft.json"
    assert _mandate("export-ballot", str(ballot_id), "-o", str(export))[0] == 0
    _forget(ballot_id)
    code, output = _mandate("import-ballot", str(export))
    assert code == 0, output
    restored = _restored()
    factories.approve(client, restored)
    opened = client.post(
        f"/api/v1/ballots/{restored}/open",
        json={"acknowledge_warnings": True},
        headers=secretariat,
    )
    assert opened.status_code == 200, opened.text
    factories.cast_votes(client, ["For"])
    trail = client.get(f"/api/v1/ballots/{restored}/audit", headers=secretariat).json()
    assert trail["intact"] is True
    assert [e["action"] for e in trail["entries"]][:5] == [
        "ballot_created",
        "roll_loaded",
        "tally_key_set",
        "approved",
        "opened",
    ]


def test_an_import_that_is_not_an_export_or_already_here_is_refused(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, tmp_path: Path
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    export = tmp_path / "draft.json"
    assert _mandate("export-ballot", str(ballot_id), "-o", str(export))[0] == 0
    code, output = _mandate("import-ballot", str(export))
    assert code == 1
    assert "already here" in output
    garbage = tmp_path / "garbage.json"
    garbage.write_text(json.dumps({"format": "something else"}))
    code, output = _mandate("import-ballot", str(garbage))
    assert code == 1
    assert "not a Mandate ballot export" in output
    damaged = json.loads(export.read_text())
    damaged["ballot"]["reference"] = "OTHER-REF-1"
    del damaged["roll_entry"]
    export.write_text(json.dumps(damaged))
    code, output = _mandate("import-ballot", str(export))
    assert code == 1
    assert "incomplete or damaged" in output
    with session_scope() as session:
        references = set(session.scalars(select(Ballot.reference)))
    assert references == {"TEST-2016-L3"}
