"""The `mandate` command: in-process through typer's CliRunner against the test database, and as
the installed command in a fresh process where what the operator sees depends on it."""

import json
import mailbox
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from app import ballots, cli, clock, config, crypto, errors, mail
from app.db import make_engine, session_scope
from app.models import Ballot, BallotStatus, RollEntry, StaffUser, VotingLink
from tests import factories

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "ballots" / "delegated-commissioning-2016.toml"
EXAMPLE_ROLL = ROOT / "ballots" / "riverside-roll.csv"
MANDATE = Path(sys.executable).parent / "mandate"
LINK = re.compile(r"http://[^/\s]+/vote/([A-Za-z0-9_-]+)")


def invoke(*args: str) -> str:
    """Run `mandate ARGS` in this process (so a frozen clock applies); it must succeed."""
    result = CliRunner().invoke(cli.app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def run_mandate(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `mandate` in a fresh process: its main() is what prints refusals."""
    return subprocess.run(
        [str(MANDATE), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ if env is None else env),
        timeout=120,
        check=False,
    )


def said(result: subprocess.CompletedProcess[str]) -> str:
    """Everything the command printed, with the line wrapping of an 80-column console undone."""
    return " ".join((result.stdout + result.stderr).split())


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, said(result)
    assert "Traceback" not in result.stderr, result.stderr
    return said(result)


def load_example(*, tally_key: str = factories.TALLY_KEY) -> int:
    """The example ballot as a draft, from now, with the tally key its ballots are sealed to."""
    found = re.search(
        r"Loaded ballot (\d+) as a draft\.", invoke("ballot", "load", str(EXAMPLE), "--from-now")
    )
    assert found is not None
    ballot_id = int(found.group(1))
    invoke("tally-key", "set", str(ballot_id), "--public-key", tally_key, "--holders", "3",
           "--threshold", "2")  # fmt: skip
    return ballot_id


def invitations() -> list[mailbox.MaildirMessage]:
    maildir = config.get_settings().maildir
    assert maildir is not None
    if not (maildir / "new").exists():
        return []
    return list(mailbox.Maildir(maildir, create=False))


def token_per_practice() -> dict[str, str]:
    """One voting token per practice (by ODS code), taken from the invitations."""
    tokens = {}
    for message in invitations():
        found = LINK.search(mail.plain_text(message))
        code = re.search(r"\.(y\d{5})@", str(message["To"]))
        assert found is not None
        assert code is not None
        tokens[code.group(1).upper()] = found.group(1)
    return tokens


def example_addresses() -> set[str]:
    lines = EXAMPLE_ROLL.read_text().splitlines()[1:]
    return {address for line in lines for address in line.split(",")[-1].split(";")}


def ballot_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Ballot)) or 0


def link_count() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(VotingLink)) or 0


def stored_ballot(ballot_id: int) -> Ballot:
    with session_scope() as session:
        return ballots.get(session, ballot_id)


@pytest.fixture
def open_ballot_id(db: Engine) -> int:
    """The example ballot, loaded from now (the real clock) and opened in this process."""
    ballot_id = load_example()
    factories.approve_in_db(ballot_id)
    invoke("ballot", "open", str(ballot_id), "--acknowledge-warnings")
    return ballot_id


def test_staff_add_creates_an_account_that_can_sign_in(client: TestClient) -> None:
    output = invoke(
        "staff", "add", "alice", "--role", "secretariat", "--password", "twelve chars plus"
    )
    assert "Created alice (secretariat)." in output
    response = client.post(
        "/api/v1/auth/token", data={"username": "alice", "password": "twelve chars plus"}
    )
    assert response.status_code == 200, response.text
    headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
    me = client.get("/api/v1/auth/me", headers=headers)
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "secretariat"


def test_staff_add_refuses_a_short_password_and_creates_no_account(db: Engine) -> None:
    result = run_mandate(
        "staff", "add", "bob", "--role", "secretariat", "--password", "11 chars ok"
    )
    assert "InvalidInput: A password must be 12 to 128 characters long" in refused(result)
    with session_scope() as session:
        assert session.scalars(select(StaffUser)).all() == []


def test_ballot_load_from_now_creates_a_draft_with_the_example_roll(
    db: Engine, frozen_clock: datetime
) -> None:
    ballot_id = load_example()
    ballot = stored_ballot(ballot_id)
    assert ballot.status == BallotStatus.draft
    assert ballot.reference == "RVC-2016-L3"
    assert ballot.opens_at == frozen_clock
    assert ballot.closes_at == frozen_clock + timedelta(days=14)
    with session_scope() as session:
        codes = session.scalars(select(RollEntry.ods_code).where(RollEntry.ballot_id == ballot_id))
        loaded = sorted(codes)
    expected = sorted(line.split(",")[0] for line in EXAMPLE_ROLL.read_text().splitlines()[1:])
    assert len(expected) == 41
    assert loaded == expected


def _edited_copy_of_example(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    text = EXAMPLE.read_text()
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    (tmp_path / "riverside-roll.csv").write_text(EXAMPLE_ROLL.read_text())
    (tmp_path / "delegated-commissioning-proposal.md").write_text("The proposal.")
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


def test_bad_ballot_file_is_refused_with_every_problem_and_its_location(
    db: Engine, tmp_path: Path
) -> None:
    path = _edited_copy_of_example(
        tmp_path,
        ('text = "Do you approve', 'options = ["For", "Against", "For"]\ntext = "Do you approve'),
        ('ods_code = "99X"', 'ods_code = "not a code"'),
        ('receipt_mode = "inclusion_only"', 'receipt_mode = "whatever"'),
    )
    output = refused(run_mandate("ballot", "load", str(path)))
    assert "InvalidInput: The ballot definition has 3 problem(s)" in output
    assert 'questions[1].options: duplicate option "For"' in output
    assert "organisation.ods_code: must be an ODS code of 3 to 6 capital letters" in output
    assert "receipt_mode: Input should be" in output
    assert ballot_count() == 0


def test_problems_are_printed_as_written_even_with_square_brackets(
    db: Engine, tmp_path: Path
) -> None:
    # Console markup would swallow "[as amended]", or fail on "[/as amended]".
    path = _edited_copy_of_example(
        tmp_path,
        (
            'text = "Do you approve',
            'options = ["For", "Against", "For [/as amended]", "For [/as amended]"]\n'
            'text = "Do you approve',
        ),
    )
    output = refused(run_mandate("ballot", "load", str(path)))
    assert 'questions[1].options: duplicate option "For [/as amended]"' in output
    assert ballot_count() == 0


def test_missing_roll_file_is_refused_with_its_location(db: Engine, tmp_path: Path) -> None:
    path = _edited_copy_of_example(
        tmp_path, ('roll = "riverside-roll.csv"', 'roll = "missing.csv"')
    )
    output = refused(run_mandate("ballot", "load", str(path)))
    assert "roll: no file missing.csv next to bad.toml" in output
    assert ballot_count() == 0


def test_missing_ballot_file_is_a_usage_error(db: Engine, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["ballot", "load", str(tmp_path / "nothing.toml")])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "does not exist" in " ".join(result.output.split())
    assert ballot_count() == 0


def test_ballot_open_writes_one_invitation_per_practice_address(db: Engine) -> None:
    ballot_id = load_example()
    factories.approve_in_db(ballot_id)
    output = invoke("ballot", "open", str(ballot_id), "--acknowledge-warnings")
    assert f"Ballot {ballot_id} is open" in output
    assert stored_ballot(ballot_id).status == BallotStatus.open
    sent = invitations()
    assert sorted(str(m["To"]) for m in sent) == sorted(example_addresses())
    assert len(sent) == 49
    assert link_count() == 49


def test_ballot_status_shows_the_status_and_the_turnout(
    client: TestClient, frozen_clock: datetime
) -> None:
    ballot_id = load_example()
    assert "status: draft" in " ".join(invoke("ballot", "status", str(ballot_id)).split())
    factories.approve_in_db(ballot_id)
    invoke("ballot", "open", str(ballot_id), "--acknowledge-warnings")
    output = invoke("ballot", "status", str(ballot_id))
    assert output.splitlines() == [
        f"Ballot {ballot_id}: Delegated (Level 3) commissioning of primary medical services",
        "  status:  open",
        "  opens:   12:00pm on Thursday 10 November 2016",
        "  closes:  12:00pm on Thursday 24 November 2016",
        "  turnout: 0 of 41 practices",
    ]
    vote = {"choices": {"delegated": "For", "constitution": "Abstain"}}
    response = client.post(f"/api/v1/vote/{token_per_practice()['Y80001']}", json=vote)
    assert response.status_code == 200, response.text
    assert "turnout: 1 of 41 practices" in invoke("ballot", "status", str(ballot_id))


def test_ballot_status_shows_a_title_with_square_brackets_as_written(
    db: Engine, tmp_path: Path
) -> None:
    path = _edited_copy_of_example(
        tmp_path,
        ('title = "Delegated (Level 3)', 'title = "[revised] Delegated (Level 3)'),
    )
    found = re.search(r"Loaded ballot (\d+)", invoke("ballot", "load", str(path)))
    assert found is not None
    output = invoke("ballot", "status", found.group(1))
    assert f"Ballot {found.group(1)}: [revised] Delegated (Level 3)" in output


def test_close_before_the_closing_time_is_refused_and_says_why(open_ballot_id: int) -> None:
    output = refused(run_mandate("ballot", "close", str(open_ballot_id)))
    assert "Conflict: Voting is open until" in output
    assert (
        "41 of 41 practices have not voted; a ballot closes early only when every practice "
        "has voted." in output
    )
    assert stored_ballot(open_ballot_id).status == BallotStatus.open


def test_opening_an_open_ballot_is_refused_and_issues_no_new_links(open_ballot_id: int) -> None:
    result = run_mandate("ballot", "open", str(open_ballot_id), "--acknowledge-warnings")
    assert (
        f"WrongState: Ballot {open_ballot_id} is open; only a draft ballot can be opened."
        in refused(result)
    )
    assert link_count() == 49
    assert len(invitations()) == 49


def test_publishing_an_open_ballot_is_refused(open_ballot_id: int) -> None:
    result = run_mandate("ballot", "publish", str(open_ballot_id))
    assert (
        f"WrongState: Ballot {open_ballot_id} is open; only a closed ballot can be published."
        in refused(result)
    )
    ballot = stored_ballot(open_ballot_id)
    assert ballot.status == BallotStatus.open
    assert ballot.result is None


def test_a_tally_key_made_by_its_holders_seals_the_box_their_shares_open(
    client: TestClient, frozen_clock: datetime, tmp_path: Path
) -> None:
    made = invoke("tally-key", "new", "--holders", "3", "--threshold", "2", "--out",
                  str(tmp_path / "shares"))  # fmt: skip
    public_key = made.strip().splitlines()[-1]
    shares = sorted((tmp_path / "shares").iterdir())
    assert [s.name for s in shares] == [f"tally-share-{i}-of-3.json" for i in (1, 2, 3)]
    assert {s.stat().st_mode & 0o777 for s in shares} == {0o600}
    assert all(public_key in s.read_text() for s in shares)
    ballot_id = load_example(tally_key=public_key)
    factories.approve_in_db(ballot_id)
    invoke("ballot", "open", str(ballot_id), "--acknowledge-warnings")
    vote = {"choices": {"delegated": "For", "constitution": "Against"}}
    for token in sorted(token_per_practice().values())[:30]:
        assert client.post(f"/api/v1/vote/{token}", json=vote).status_code == 200
    clock.freeze(stored_ballot(ballot_id).closes_at + timedelta(minutes=1))
    invoke("ballot", "close", str(ballot_id))
    sealed = CliRunner().invoke(cli.app, ["ballot", "publish", str(ballot_id)])
    assert sealed.exit_code != 0
    assert stored_ballot(ballot_id).status == BallotStatus.closed
    one = CliRunner().invoke(cli.app, ["tally-open", str(ballot_id), "--share", str(shares[1])])
    assert isinstance(one.exception, errors.InvalidInput)
    assert "2 different key holders' shares are needed" in one.exception.detail
    opened = invoke("tally-open", str(ballot_id), "--share", str(shares[0]), "--share",
                    str(shares[2]))  # fmt: skip
    assert f"Opened the box of ballot {ballot_id}: 30 ballots." in opened
    factories.countersign_in_db(ballot_id)
    output = invoke("ballot", "publish", str(ballot_id))
    assert output.splitlines() == ["delegated: carried", "constitution: not_carried"]


def test_close_then_publish_after_the_closing_time_prints_each_outcome(
    client: TestClient, frozen_clock: datetime, tmp_path: Path
) -> None:
    ballot_id = load_example()
    factories.approve_in_db(ballot_id)
    invoke("ballot", "open", str(ballot_id), "--acknowledge-warnings")
    # 30 of 41 practices vote (quorum met): For the first question, Against the second.
    vote = {"choices": {"delegated": "For", "constitution": "Against"}}
    for token in sorted(token_per_practice().values())[:30]:
        response = client.post(f"/api/v1/vote/{token}", json=vote)
        assert response.status_code == 200, response.text
    clock.freeze(stored_ballot(ballot_id).closes_at + timedelta(minutes=1))
    assert f"Ballot {ballot_id} is closed." in invoke("ballot", "close", str(ballot_id))
    files = []
    for share in factories.share_files(2, 3):
        files += ["--share", str(tmp_path / f"share-{share['index']}.json")]
        Path(files[-1]).write_text(json.dumps(share))
    invoke("tally-open", str(ballot_id), *files)
    refused_output = refused(run_mandate("ballot", "publish", str(ballot_id)))
    assert "The scrutineer has not countersigned the count" in refused_output
    factories.countersign_in_db(ballot_id)
    output = invoke("ballot", "publish", str(ballot_id))
    assert output.splitlines() == ["delegated: carried", "constitution: not_carried"]
    ballot = stored_ballot(ballot_id)
    assert ballot.status == BallotStatus.published
    assert ballot.result is not None
    assert ballot.result["ballots_cast"] == 30


def test_demo_run_twice_reuses_its_ballot_and_account_and_prints_working_links(
    database_url: str, tmp_path: Path
) -> None:
    # A fresh data directory of its own, as on a first `make run`; never the test database.
    secret_key = config.get_settings().secret_key
    demo_url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {k: v for k, v in os.environ.items() if k not in ("MAILDIR", "BASE_URL")}
    env |= {
        "DATABASE_URL": demo_url,
        "DATA_DIR": str(tmp_path),
        "SECRET_KEY": secret_key,
        "MANDATE_ENV": "dev",
    }
    first, second = run_mandate("demo", env=env), run_mandate("demo", env=env)
    assert first.returncode == 0, said(first)
    assert second.returncode == 0, said(second)

    password = re.search(r"Demo secretariat account: demo-secretariat / (\S+)", first.stdout)
    assert password is not None
    assert "Demo secretariat account: demo-secretariat /" not in second.stdout
    assert "Demo secretariat account demo-secretariat exists" in second.stdout
    assert password.group(1) not in second.stdout
    assert "Demo scrutineer account: lmc-scrutineer / " in first.stdout

    links = LINK.findall(first.stdout)
    assert len(set(links)) == 3
    assert LINK.findall(second.stdout) == links
    assert all(
        m.group(0).startswith("http://127.0.0.1:8000/vote/") for m in LINK.finditer(first.stdout)
    )
    assert len(list((tmp_path / "mail" / "new").iterdir())) == 49
    shares = sorted((tmp_path / "tally-shares-1").iterdir())
    assert len(shares) == 3
    assert {s.stat().st_mode & 0o777 for s in shares} == {0o600}

    engine = make_engine(demo_url)
    try:
        with engine.connect() as connection:
            statuses = connection.scalars(select(Ballot.status)).all()
            hashes = set(connection.scalars(select(VotingLink.token_hash)))
            password_hash = connection.scalar(
                select(StaffUser.password_hash).where(StaffUser.username == "demo-secretariat")
            )
    finally:
        engine.dispose()
    assert statuses == [BallotStatus.open]
    assert len(hashes) == 49
    assert {crypto.token_hash(token) for token in links} <= hashes
    assert password_hash is not None
    assert crypto.verify_password(password_hash, password.group(1))
