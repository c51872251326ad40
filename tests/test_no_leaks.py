"""A whole ballot, logged at DEBUG: every secret it handed out is found only where it belongs.

Voting tokens, the staff password, session tokens, form tokens, the TOTP secret and receipt codes
are gathered as the ballot runs (open, 40 votes by pages and by API, reminders, a re-issued
link, close, publish), then looked for in the log, the database and every response body.
"""

import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from app import clock, config
from app.models import Role
from app.routes import vote_pages
from tests import factories, service_log
from tests.test_secrecy import _all_text
from tests.test_vote_pages import answers, receipt_code, vote

PRACTICES = 40
OPTIONS = ("For", "Against", "Abstain")
_FORM_TOKEN = re.compile(rf'name="{vote_pages.FORM_FIELD}" value="([^"]+)"')


@dataclass
class Seen:
    """Every response of the run, in order, with the path it answered."""

    responses: list[tuple[str, str]] = field(default_factory=list)

    def hook(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append((response.request.url.path, response.text))

    def bodies(self, *, except_under: str = "\0") -> str:
        return "\n".join(text for path, text in self.responses if not path.startswith(except_under))


def _database_file_bytes() -> bytes:
    """The SQLite file and its write-ahead log as a copy of them would hold them."""
    url = config.get_settings().database_url
    if not url.startswith("sqlite"):
        return b""
    path = Path(url.split("///", 1)[-1])
    return b"".join(
        p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    with service_log.captured("json", "DEBUG") as buffer:
        yield buffer


def test_a_whole_ballot_at_debug_leaves_no_secret_where_it_does_not_belong(
    client: TestClient, db: Engine, frozen_clock: object, debug_log: io.StringIO
) -> None:
    seen = Seen()
    client.event_hooks["response"].append(seen.hook)
    secretariat = factories.staff_headers(client, Role.secretariat)
    admin = factories.staff_headers(client, Role.admin)  # sets up two-factor sign-in
    auditor = factories.staff_headers(client, Role.auditor)
    [enrolment] = [t for p, t in seen.responses if p == "/api/v1/auth/totp"]
    totp_secret = parse_qs(urlsplit(eval_json(enrolment)["otpauth_uri"]).query)["secret"][0]

    ballot_id = factories.open_ballot(client, secretariat, practices=PRACTICES)
    links = factories.sent_links()
    assert len(links) == PRACTICES
    receipts = []
    for i, ods_code in enumerate(sorted(links)):
        [token], choice = links[ods_code], OPTIONS[i % 3]
        if ods_code == "G83040":  # its link is replaced first; it votes with the new one
            reissued = client.post(
                f"/api/v1/ballots/{ballot_id}/voters/{ods_code}/reissue", headers=secretariat
            )
            assert reissued.status_code == 200
            [token] = set(factories.sent_links()[ods_code]) - {token}
        if i % 2:
            page = vote(client, token, **answers(delegated=choice, constitution="For"))
            receipts.append(receipt_code(page))
        else:
            body = {"choices": {"delegated": choice, "constitution": "Against"}}
            cast = client.post(f"/api/v1/vote/{token}", json=body)
            assert cast.status_code == 200, cast.text
            receipts.append(cast.json()["receipt_code"])
        if i == PRACTICES // 2:
            reminded = client.post(f"/api/v1/ballots/{ballot_id}/reminders", headers=secretariat)
            assert reminded.status_code == 200
    for headers in (secretariat, admin, auditor):
        for what in ("", "/roll", "/turnout", "/deliveries", "/audit"):
            assert client.get(f"/api/v1/ballots/{ballot_id}{what}", headers=headers).is_success
    before_publish = len(seen.responses)
    clock.freeze(factories.CLOSES + timedelta(seconds=1))  # no session outlives weeks
    factories.close_and_publish(client, factories.staff_headers(client), ballot_id)
    auditor = factories.staff_headers(client, Role.auditor)
    for what in ("/results", "/ballot-box", "/receipt", "/evidence"):
        assert client.get(f"/api/v1/ballots/{ballot_id}{what}", headers=auditor).is_success
    client.post("/api/v1/auth/logout", headers=auditor)

    tokens = {t for sent in factories.sent_links().values() for t in sent}
    sessions = {
        eval_json(text)["access_token"] for path, text in seen.responses if path.endswith("/token")
    }
    forms = {f for _, text in seen.responses for f in _FORM_TOKEN.findall(text)}
    assert len(tokens) == PRACTICES + 1
    assert len(receipts) == len(set(receipts)) == PRACTICES
    assert len(sessions) >= 4
    assert len(forms) >= PRACTICES

    # The service's log, not the test's HTTP client's (which logs the URLs it requests).
    lines = [json.loads(line) for line in debug_log.getvalue().splitlines()]
    lines = [line for line in lines if not line["logger"].startswith(("httpx", "httpcore"))]
    log = "\n".join(json.dumps(line) for line in lines)
    assert sum(line["logger"].startswith("sqlalchemy") for line in lines) > 1000  # DEBUG was on
    stored = _all_text(db)
    raw = _database_file_bytes()
    everything = {
        "password": {factories.PASSWORD},
        "voting token": tokens,
        "session token": sessions,
        "form token": forms,
        "TOTP secret": {totp_secret},
    }
    for kind, values in everything.items():
        for value in values:
            assert value not in log, f"a {kind} is in the log"
            assert value not in stored, f"a {kind} is in the database"
            assert value.encode() not in raw, f"a {kind} is in the database file"
    for code in receipts:
        assert code not in log, "a receipt code is in the log"
    # In a response only where it belongs: a token in its own link's pages, a session token in
    # the sign-in that issued it, the TOTP secret in the enrolment, receipts after publication.
    for token in tokens:
        elsewhere = seen.bodies(except_under=f"/vote/{token}")
        assert token not in elsewhere.replace(f"/api/v1/vote/{token}", "")
    not_sign_in = "\n".join(t for p, t in seen.responses if not p.endswith("/token"))
    assert not any(s in not_sign_in for s in sessions)
    assert factories.PASSWORD not in seen.bodies()
    assert sum(totp_secret in t for _, t in seen.responses) == 1
    staff_before = "\n".join(
        t for p, t in seen.responses[:before_publish] if p.startswith("/api/v1/ballots")
    )
    assert not any(code in staff_before for code in receipts)


def eval_json(text: str) -> dict[str, str]:
    parsed: dict[str, str] = httpx.Response(200, content=text).json()
    return parsed
