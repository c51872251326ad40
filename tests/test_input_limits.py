"""Input limits: body sizes, counts, string lengths and characters; each refusal a 4xx that names
the problem, with nothing changed, and never a 500."""

import base64
import csv
import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from starlette.types import Message, Receive, Scope, Send

from app import config, definitions, errors, roll
from app.config import Settings
from app.main import RequestGuard, create_app
from app.models import Role
from tests import factories
from tests.test_vote_pages import ballot_box_rows, has_voted


def _ballots(client: TestClient, headers: dict[str, str]) -> int:
    response = client.get("/api/v1/ballots", headers=headers)
    assert response.status_code == 200
    return len(response.json())


def _roll(client: TestClient, headers: dict[str, str], ballot_id: int) -> list[dict[str, Any]]:
    response = client.get(f"/api/v1/ballots/{ballot_id}/roll", headers=headers)
    assert response.status_code == 200
    rolled: list[dict[str, Any]] = response.json()
    return rolled


def _refused(response: Any, status: int, *fragments: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    for fragment in fragments:
        assert fragment in response.text, (fragment, response.text)
    return body


# --- body sizes ------------------------------------------------------------------------------


def test_default_body_limits() -> None:
    fields = Settings.model_fields
    assert fields["max_body_bytes"].default == 1024 * 1024
    assert fields["max_upload_bytes"].default == 20 * 1024 * 1024


def test_a_vote_over_a_mebibyte_is_refused_unread(
    client: TestClient, db: Engine, ballot_id: int
) -> None:
    token = factories.token_for("G83001")
    vote = json.dumps({"choices": {"delegated": "For", "constitution": "For"}})
    padded = vote + " " * (1024 * 1024 + 1 - len(vote))
    response = client.post(
        f"/api/v1/vote/{token}", content=padded, headers={"Content-Type": "application/json"}
    )
    _refused(
        response,
        413,
        "The request is larger than the 1 MiB this address accepts; nothing was changed.",
    )
    assert response.json()["error"] == "ContentTooLarge"
    assert not has_voted(client, token)
    assert ballot_box_rows(db) == 0
    # One byte less is read, and counted.
    exact = vote + " " * (1024 * 1024 - len(vote))
    accepted = client.post(
        f"/api/v1/vote/{token}", content=exact, headers={"Content-Type": "application/json"}
    )
    assert accepted.status_code == 200
    assert has_voted(client, token)


def test_a_ballot_with_its_documents_may_be_larger(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    content = base64.b64encode(os.urandom(1536 * 1024)).decode()
    doc = {"title": "The proposal", "file": "proposal.pdf", "content_base64": content}
    body = factories.definition(documents=[doc])
    assert len(json.dumps(body)) > 2 * 1024 * 1024
    response = client.post("/api/v1/ballots", json=body, headers=secretariat)
    assert response.status_code == 201, response.text[:300]


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch, db: Engine) -> Iterator[TestClient]:
    monkeypatch.setenv("MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("MAX_UPLOAD_BYTES", "8192")
    config.get_settings.cache_clear()
    with TestClient(create_app()) as client:
        yield client
    monkeypatch.undo()
    config.get_settings.cache_clear()


def test_oversize_uploads_are_refused_and_change_nothing(
    small_limits: TestClient, frozen_clock: object
) -> None:
    client = small_limits
    headers = factories.staff_headers(client)
    ballot_id = factories.draft_ballot(client, headers, practices=3)
    before = _roll(client, headers, ballot_id)
    practices = json.dumps(factories.roll(4))
    json_type = {**headers, "Content-Type": "application/json"}

    # The roll may be larger than other bodies ...
    fits = practices + " " * (6000 - len(practices))
    assert client.put(f"/api/v1/ballots/{ballot_id}/roll", content=fits, headers=json_type).json()
    assert len(_roll(client, headers, ballot_id)) == 4
    # ... up to its own limit, declared or not.
    too_big = practices + " " * (8193 - len(practices))
    for body in (too_big, iter([too_big.encode()])):
        refused = client.put(f"/api/v1/ballots/{ballot_id}/roll", content=body, headers=json_type)
        _refused(refused, 413, "larger than the 8192 bytes this address accepts")
    assert len(_roll(client, headers, ballot_id)) == 4
    assert before != _roll(client, headers, ballot_id)

    count = _ballots(client, headers)
    definition = json.dumps(factories.definition(reference="BIG-2016"))
    refused = client.post("/api/v1/ballots", content=definition + " " * 8192, headers=json_type)
    _refused(refused, 413, "8192 bytes")
    assert _ballots(client, headers) == count

    # Everything else stops at the smaller limit: a sign-in form, a state change.
    sign_in = client.post(
        "/api/v1/auth/token", data={"username": "x" * 3000, "password": factories.PASSWORD}
    )
    _refused(sign_in, 413, "larger than the 2048 bytes")
    reason = {"reason": "x" * 3000}
    voided = client.post(f"/api/v1/ballots/{ballot_id}/void", json=reason, headers=headers)
    _refused(voided, 413, "2048 bytes")
    assert _ballots(client, headers) == count


def test_an_undeclared_body_is_counted_as_it_streams() -> None:
    """A chunked body, chunk by chunk: refused once it passes the limit, before the app runs."""
    seen: list[bytes] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        seen.append(message["body"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def run(chunks: int) -> list[Message]:
        sent: list[Message] = []
        queue = [
            {"type": "http.request", "body": b"x" * 300, "more_body": i < chunks - 1}
            for i in range(chunks)
        ]

        async def receive() -> Message:
            return queue.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {
            "type": "http", "method": "POST", "path": "/api/v1/vote/x", "headers": [],
            "query_string": b"", "scheme": "http", "server": ("testserver", 80),
        }  # fmt: skip
        guard = RequestGuard(app, origin="http://testserver", max_body=2048, max_upload=8192)
        anyio.run(guard, scope, receive, send)
        return sent

    accepted = run(6)
    assert accepted[0]["status"] == 204
    assert seen == [b"x" * 1800]
    refused = run(10)
    assert refused[0]["status"] == 413
    assert seen == [b"x" * 1800]  # the app never saw the second body
    assert b"2048 bytes" in refused[1]["body"]


# --- malformed, mistyped and unknown ---------------------------------------------------------


def test_malformed_json_is_refused_by_name(client: TestClient, secretariat: dict[str, str]) -> None:
    count = _ballots(client, secretariat)
    json_type = {**secretariat, "Content-Type": "application/json"}
    broken = client.post("/api/v1/ballots", content='{"reference": "X-2016", ', headers=json_type)
    _refused(broken, 422, "JSON decode error")
    not_utf8 = client.post("/api/v1/ballots", content=b'{"title": "\xff\xfe"}', headers=json_type)
    assert 400 <= not_utf8.status_code < 500
    assert "The request could not be read" in not_utf8.json()["detail"]
    assert _ballots(client, secretariat) == count


def test_wrong_types_and_unknown_fields_are_refused_by_name(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    count = _ballots(client, secretariat)
    cases = [
        (factories.definition(questions="Apply?"), "questions"),
        (factories.definition(opens_at="next Tuesday"), "opens_at"),
        (factories.definition(colour="blue"), "colour: Extra inputs are not permitted"),
        (
            factories.definition(organisation={"name": "CCG", "ods_code": "99Z", "logo": "x"}),
            "organisation.logo: Extra inputs are not permitted",
        ),
    ]
    for body, named in cases:
        response = client.post("/api/v1/ballots", json=body, headers=secretariat)
        _refused(response, 422, named)
    assert _ballots(client, secretariat) == count

    ballot_id = factories.draft_ballot(client, secretariat, practices=3)
    kept = _roll(client, secretariat, ballot_id)
    practices = factories.roll(2)
    practices[0]["list_size"] = "many"
    practices[1]["fax"] = "01234"
    response = client.put(f"/api/v1/ballots/{ballot_id}/roll", json=practices, headers=secretariat)
    problems = _refused(response, 422)["problems"]
    assert {p["loc"] for p in problems} == {"roll[0].list_size", "roll[1].fax"}
    assert _roll(client, secretariat, ballot_id) == kept


def test_every_request_body_refuses_fields_it_does_not_know(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    admin = factories.staff_headers(client, Role.admin)
    token = factories.token_for("G83001")
    vote = {"choices": {"delegated": "For", "constitution": "For"}}
    refusals = [
        client.post(f"/api/v1/vote/{token}", json={**vote, "weight": 5}),
        client.post(f"/api/v1/ballots/{ballot_id}/open", json={"force": True}, headers=secretariat),
        client.post(
            "/api/v1/staff",
            json={"username": "x", "password": factories.PASSWORD, "role": "admin", "totp": ""},
            headers=admin,
        ),
    ]
    for response in refusals:
        _refused(response, 422, "Extra inputs are not permitted")
    assert not has_voted(client, token)
    assert client.get("/api/v1/staff", headers=admin).json()[-1]["username"] != "x"


# --- counts and lengths ----------------------------------------------------------------------


def test_counts_and_lengths_have_limits(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    count = _ballots(client, secretariat)
    eleven = [{"id": "q", "text": "Apply?", "options": ["For", "Against", *"ABCDEFGHI"]}]
    long_ref = {"preset": "simple_majority", "constitution_ref": "C" * 301}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"questions": eleven}, "questions[0].options: List should have at most 10 items"),
        ({"title": "T" * 301}, "title: String should have at most 300 characters"),
        ({"rules": long_ref}, "rules: constitution_ref must be at most 300 characters"),
        (
            {"questions": [{"id": f"q{i}", "text": "?"} for i in range(21)]},
            "questions: List should have at most 20 items",
        ),
    ]
    for override, named in cases:
        body = factories.definition(**override)
        _refused(client.post("/api/v1/ballots", json=body, headers=secretariat), 422, named)
    assert _ballots(client, secretariat) == count


def test_reasons_usernames_codes_and_choices_have_limits(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    later = (factories.CLOSES + timedelta(days=2)).isoformat()
    extend = f"/api/v1/ballots/{ballot_id}/extend"
    for reason, named in [
        ("R" * 501, "reason: String should have at most 500 characters"),
        ("Postal strike\r\nBcc: everyone@example.org", "reason: must be one line of text"),
        ("   ", "reason: String should have at least 1 character"),
    ]:
        body = {"closes_at": later, "reason": reason}
        _refused(client.post(extend, json=body, headers=secretariat), 422, named)
    ballot = client.get(f"/api/v1/ballots/{ballot_id}", headers=secretariat).json()
    assert ballot["close_extended_reason"] is None

    admin = factories.staff_headers(client, Role.admin)
    accounts = len(client.get("/api/v1/staff", headers=admin).json())
    for username, named in [
        ("u" * 101, "username: String should have at most 100 characters"),
        ("new\r\nadmin", "username: String should match pattern"),
        ("-leading-dash", "username: String should match pattern"),
    ]:
        body = {"username": username, "password": factories.PASSWORD, "role": "auditor"}
        _refused(client.post("/api/v1/staff", json=body, headers=admin), 422, named)
    assert len(client.get("/api/v1/staff", headers=admin).json()) == accounts
    created = client.post(
        "/api/v1/staff",
        json={
            "username": " New.Auditor@nhs.net ",
            "password": factories.PASSWORD,
            "role": "auditor",
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert created.json()["username"] == "new.auditor@nhs.net"

    long_code = {"code": "1" * 11}
    _refused(client.post("/api/v1/auth/totp/confirm", json=long_code, headers=secretariat), 422)

    token = factories.token_for("G83001")
    for choices, named in [
        ({"q" * 41: "For"}, "String should have at most 40 characters"),
        ({"delegated": "F" * 201, "constitution": "For"}, "at most 200 characters"),
    ]:
        _refused(client.post(f"/api/v1/vote/{token}", json={"choices": choices}), 422, named)
    assert not has_voted(client, token)


def test_a_roll_holds_at_most_the_limit_of_practices(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat, practices=3)
    practices = [{"ods_code": "G00000"}] * (roll.MAX_PRACTICES + 1)
    response = client.put(f"/api/v1/ballots/{ballot_id}/roll", json=practices, headers=secretariat)
    _refused(response, 422, f"A roll holds at most {roll.MAX_PRACTICES} practices.")
    assert len(_roll(client, secretariat, ballot_id)) == 3


# --- characters ------------------------------------------------------------------------------

CRLF_SAYS = "must be one line of text, without control characters: it contains a carriage return"


@pytest.mark.parametrize(
    ("override", "loc", "says"),
    [
        ({"title": "Delegated\r\nBcc: everyone@example.org"}, "title", CRLF_SAYS),
        ({"title": "Delegated\ncommissioning"}, "title", "it contains a line feed (LF)"),
        (
            {"organisation": {"name": "NHS Vale\r\nCCG", "ods_code": "99Z"}},
            "organisation.name",
            CRLF_SAYS,
        ),
        ({"title": "Vote\x00now"}, "title", "it contains the character U+0000"),
        ({"title": "Vote \u202eon"}, "title", "it contains the character U+202E"),
        # pydantic refuses a lone surrogate before our check sees it.
        ({"title": "Half \ud800 a pair"}, "title", "unable to parse raw data as a unicode string"),
        (
            {"questions": [{"id": "q", "text": "Apply?", "options": ["For", "Against", "A\tB"]}]},
            "questions[0].options[2]",
            "it contains a tab",
        ),
        (
            {"questions": [{"id": "q", "text": "Apply?\x1b[31m"}]},
            "questions[0].text",
            "must be plain text, without control characters: it contains the character U+001B",
        ),
        (
            {"rules": {"preset": "simple_majority", "constitution_ref": "6.6\r\n2"}},
            "rules",
            "constitution_ref must be one line of text",
        ),
    ],
)
def test_control_characters_in_a_definition_are_refused_by_field(
    client: TestClient, secretariat: dict[str, str], override: dict[str, Any], loc: str, says: str
) -> None:
    count = _ballots(client, secretariat)
    # As JSON escapes (a lone surrogate cannot be sent any other way).
    response = client.post(
        "/api/v1/ballots",
        content=json.dumps(factories.definition(**override)),
        headers={**secretariat, "Content-Type": "application/json"},
    )
    [problem] = _refused(response, 422)["problems"]
    assert problem["loc"] == loc
    assert says in problem["problem"]
    assert _ballots(client, secretariat) == count


def test_running_text_may_break_lines() -> None:
    question = definitions.Question(id="q", text="Apply?\nSee the proposal.\r\n\tIn full.")
    assert question.text.startswith("Apply?\n")


def test_control_characters_in_a_roll_are_refused_by_field(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat, practices=3)
    kept = _roll(client, secretariat, ballot_id)
    practices = factories.roll(3)
    practices[0]["name"] = "Practice 1\r\nBcc: everyone@example.org"
    practices[1]["locality"] = "North\x07"
    practices[2]["emails"] = ["g83003@practice.example\r\nBcc: x@example.org"]
    response = client.put(f"/api/v1/ballots/{ballot_id}/roll", json=practices, headers=secretariat)
    problems = {p["loc"]: p["problem"] for p in _refused(response, 422)["problems"]}
    assert set(problems) == {"roll[0].name", "roll[1].locality", "roll[2].emails[0]"}
    assert CRLF_SAYS in problems["roll[0].name"]
    assert "it contains the character U+0007" in problems["roll[1].locality"]
    assert "Bcc" not in response.text  # the value is never echoed
    csv = (
        "ods_code,name,locality,list_size,emails\n"
        'G83001,"Practice 1\r\nBcc: x@example.org",North,5000,a@practice.example\n'
    )
    response = client.put(
        f"/api/v1/ballots/{ballot_id}/roll",
        content=csv,
        headers={**secretariat, "Content-Type": "text/csv"},
    )
    [problem] = _refused(response, 422)["problems"]
    assert problem["loc"] == "line 2 (G83001).name"
    assert CRLF_SAYS in problem["problem"]
    assert _roll(client, secretariat, ballot_id) == kept


def test_a_roll_not_in_utf8_is_refused(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat, practices=3)
    kept = _roll(client, secretariat, ballot_id)
    latin1 = "ods_code,name,locality,list_size,emails\nG83001,Café Surgery,North,5000,a@b.example\n"
    for response in (
        client.put(
            f"/api/v1/ballots/{ballot_id}/roll",
            content=latin1.encode("latin-1"),
            headers={**secretariat, "Content-Type": "text/csv"},
        ),
        client.put(
            f"/api/v1/ballots/{ballot_id}/roll",
            files={"file": ("roll.csv", latin1.encode("cp1252"), "text/csv")},
            headers=secretariat,
        ),
    ):
        _refused(response, 422, "The CSV file must be saved as UTF-8.")
    assert _roll(client, secretariat, ballot_id) == kept


def test_a_voter_name_is_one_line(client: TestClient, db: Engine, ballot_id: int) -> None:
    token = factories.token_for("G83001")
    vote = {
        "choices": {"delegated": "For", "constitution": "For"},
        "voter_name": "Pat\r\nJones",
    }
    response = client.post(f"/api/v1/vote/{token}", json=vote)
    [problem] = _refused(response, 422)["problems"]
    assert problem["loc"] == "voter_name"
    assert CRLF_SAYS in problem["problem"]
    assert not has_voted(client, token)
    assert ballot_box_rows(db) == 0


# --- files -----------------------------------------------------------------------------------

CSV_HEADER = "ods_code,name,locality,list_size,emails\n"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        # A stray carriage return ends a row: the cells after it are a row of their own.
        (CSV_HEADER + "G83001,Practice\r1,North,5,a@b.example\n", "line 2 (G83001).locality"),
        (
            CSV_HEADER + f"G83001,{'x' * (csv.field_size_limit() + 1)},North,5,a@b.example\n",
            f"after line 1: field larger than field limit ({csv.field_size_limit()})",
        ),
    ],
)
def test_a_csv_the_reader_chokes_on_is_refused(body: str, says: str) -> None:
    with pytest.raises(errors.InvalidInput) as refused:
        roll.parse_csv(body)
    assert says in refused.value.detail


def test_a_ballot_file_not_in_utf8_or_out_of_shape_is_refused(tmp_path: Path) -> None:
    ballot = tmp_path / "ballot.toml"
    ballot.write_bytes('title = "Délégation"\n'.encode("latin-1"))
    with pytest.raises(errors.InvalidInput, match=r"ballot\.toml must be saved as UTF-8\."):
        definitions.read_ballot_file(ballot)
    ballot.write_text("documents = 5\n")
    with pytest.raises(errors.InvalidInput) as refused:
        definitions.read_ballot_file(ballot)
    assert "documents: Input should be a valid list" in refused.value.detail


def test_a_ballot_file_reads_documents_only_beside_it(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("not for the ballot")
    folder = tmp_path / "ballots"
    (folder / "papers").mkdir(parents=True)
    (folder / "papers" / "proposal.md").write_text("# Proposal\n")
    data = factories.definition(
        documents=[
            {"title": "Proposal", "file": "papers/proposal.md"},
            {"title": "Escape", "file": "papers/../../secret.txt"},
        ]
    )
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items() if isinstance(v, str)]
    lines += [
        'organisation = { name = "NHS Test Vale CCG", ods_code = "99Z" }',
        'rules = { preset = "simple_majority", constitution_ref = "Constitution 6.6.2" }',
        *(f'[[questions]]\nid = "{q["id"]}"\ntext = "{q["text"]}"' for q in data["questions"]),
        *(
            f'[[documents]]\ntitle = "{d["title"]}"\nfile = "{d["file"]}"'
            for d in data["documents"]
        ),
    ]
    ballot = folder / "ballot.toml"
    ballot.write_text("\n".join(lines) + "\n")
    with pytest.raises(errors.InvalidInput) as refused:
        definitions.read_ballot_file(ballot)
    assert refused.value.problems == [
        {
            "loc": "documents[1].file",
            "problem": "no file papers/../../secret.txt next to ballot.toml",
        }
    ]
