"""Browser-facing protection: headers on every response, signed forms, foreign origins refused,
nothing changed by a GET, request ids and logs, a plain 500, and one size whatever the vote."""

import base64
import hashlib
import io
import json
import logging
import logging.config
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from app import clock, config
from app.main import create_app
from app.routes import public, vote_pages
from tests import factories, service_log
from tests.test_vote_pages import answers as coded
from tests.test_vote_pages import (
    ballot_box_rows,
    check_page,
    choices_form,
    has_voted,
    parse,
    post,
    signed,
)

EXPIRED = "This form has expired; go back to your voting link and start again."
FOREIGN = {"Origin": "https://evil.example"}
VOTE = {"choices": {"delegated": "Against", "constitution": "Abstain"}}


def _sha256(source: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()}'"


def assert_protected(response: Any, *, https: bool = False) -> None:
    headers = response.headers
    policy = headers["Content-Security-Policy"]
    assert policy == (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "font-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
        "object-src 'none'"
    ), policy
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["X-Frame-Options"] == "DENY"
    assert re.fullmatch(r"[0-9a-f]{24}", headers["X-Request-ID"])
    if https:
        assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    else:
        assert "Strict-Transport-Security" not in headers


def _snapshot(engine: Engine) -> dict[str, list[str]]:
    """Every row of every table, as text."""
    with engine.connect() as connection:
        return {
            table: sorted(
                str(row)
                for row in connection.execute(text(f"SELECT * FROM {table}"))  # noqa: S608
            )
            for table in inspect(engine).get_table_names()
        }


@pytest.fixture
def token(ballot_id: int) -> str:
    return factories.token_for("G83001")


# --- headers ---------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(
    client: TestClient, secretariat: dict[str, str], ballot_id: int, token: str
) -> None:
    url = f"/vote/{token}/check"
    responses = {
        "voter page": client.get(f"/vote/{token}"),
        "voter page (HEAD)": client.head(f"/vote/{token}"),
        "choices page": client.get(f"/vote/{token}/choices"),
        "check page": client.post(
            url, data={**coded(delegated="For", constitution="For"), **signed(url)}
        ),
        "refused form": client.post(url, data=coded(delegated="For")),
        "voter API": client.get(f"/api/v1/vote/{token}"),
        "staff API": client.get(f"/api/v1/ballots/{ballot_id}", headers=secretariat),
        "unknown link (HTML 404)": client.get("/vote/not-a-real-token-at-all"),
        "unknown link (API 404)": client.get("/api/v1/vote/not-a-real-token-at-all"),
        "no such address": client.get("/no/such/page"),
        "invalid input": client.post(f"/api/v1/vote/{token}", json={"choices": "x"}),
        "not signed in": client.get("/api/v1/ballots"),
        "health": client.get("/healthz"),
        "openapi": client.get("/openapi.json"),
    }
    expected = {
        "voter page": 200, "voter page (HEAD)": 200, "choices page": 200, "check page": 200,
        "refused form": 403, "voter API": 200, "staff API": 200, "unknown link (HTML 404)": 404,
        "unknown link (API 404)": 404, "no such address": 404, "invalid input": 422,
        "not signed in": 401, "health": 200, "openapi": 200,
    }  # fmt: skip
    assert {k: r.status_code for k, r in responses.items()} == expected
    for response in responses.values():
        assert_protected(response)
    for name in ("voter page", "check page", "voter API", "staff API", "refused form"):
        assert responses[name].headers["Cache-Control"] == "no-store", name


def test_pages_run_no_inline_script_or_style_only_our_own_files(
    client: TestClient, token: str
) -> None:
    check = check_page(client, token, **coded(delegated="For", constitution="Against"))
    pages = [
        client.get(f"/vote/{token}"),
        client.get(f"/vote/{token}/choices"),
        check.response,
        client.get("/vote/not-a-real-token-at-all"),
    ]
    for page in pages:
        html = page.text
        assert "<style" not in html
        assert " style=" not in html
        assert re.findall(r"<script\b[^>]*>", html) == [
            '<script type="module" src="/static/mandate.js">'
        ]
        assert not re.search(r"<script[^>]*>[^<]", html)
        assert not re.search(r" on[a-z]+=", html)
        stylesheets = re.findall(r'<link rel="stylesheet" href="([^"]+)">', html)
        assert stylesheets == ["/static/nhsuk/nhsuk-frontend.min.css", "/static/mandate.css"]
        for url in [*stylesheets, "/static/mandate.js"]:
            served = client.get(url)
            assert served.status_code == 200, url
            assert (
                served.headers["Content-Security-Policy"] == page.headers["Content-Security-Policy"]
            )


def test_api_docs_have_their_own_policy_for_swagger_ui(client: TestClient) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    policy = docs.headers["Content-Security-Policy"]
    [script] = re.findall(r"<script>(.*?)</script>", docs.text, re.DOTALL)
    assert f"script-src https://cdn.jsdelivr.net {_sha256(script)};" in policy
    assert "frame-ancestors 'none'" in policy
    assert "'unsafe-eval'" not in policy
    assert "script-src https://cdn.jsdelivr.net 'unsafe-inline'" not in policy
    # The pages keep the strict policy.
    assert "cdn.jsdelivr.net" not in client.get("/openapi.json").headers["Content-Security-Policy"]


@pytest.fixture
def trusting(monkeypatch: pytest.MonkeyPatch, db: Engine) -> Iterator[None]:
    """The app behind a proxy at 10.0.0.0/8."""
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7")
    config.get_settings.cache_clear()
    yield
    monkeypatch.undo()
    config.get_settings.cache_clear()


def test_hsts_only_over_https(trusting: None) -> None:
    app = create_app()
    https = {"X-Forwarded-Proto": "https"}
    with TestClient(app, base_url="https://testserver") as direct:
        assert_protected(direct.get("/healthz"), https=True)
    with TestClient(app, client=("10.1.2.3", 5000)) as proxied:
        assert_protected(proxied.get("/healthz", headers=https), https=True)
        assert_protected(proxied.get("/api/v1/vote/x", headers=https), https=True)
        # The proxy says the client used plain HTTP.
        assert_protected(proxied.get("/healthz", headers={"X-Forwarded-Proto": "http"}))
        assert_protected(proxied.get("/healthz"))
        # A client's own header comes first; the proxy's (the nearest) is the one believed.
        assert_protected(proxied.get("/healthz", headers={"X-Forwarded-Proto": "https, http"}))
    with TestClient(app, client=("192.0.2.7", 5000)) as listed:
        assert_protected(listed.get("/healthz", headers=https), https=True)
    for address in ("192.0.2.8", "203.0.113.9", "testclient"):
        with TestClient(app, client=(address, 5000)) as untrusted:
            assert_protected(untrusted.get("/healthz", headers=https))


def test_a_malformed_trusted_proxy_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, db: Engine
) -> None:
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, proxy.example")
    config.get_settings.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"TRUSTED_PROXIES: 'proxy\.example' is not an"):
            create_app()
    finally:
        monkeypatch.undo()
        config.get_settings.cache_clear()


# --- signed forms ----------------------------------------------------------------------------


def _refused(response: Any) -> None:
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    page = parse(response)
    assert EXPIRED in page.text
    assert page.title.startswith("This form has expired")


@pytest.mark.parametrize("action", ["choices", "check", "submit"])
def test_a_voter_form_without_its_token_is_refused_and_changes_nothing(
    client: TestClient, db: Engine, token: str, action: str
) -> None:
    url = f"/vote/{token}/{action}"
    complete = coded(delegated="For", constitution="For")
    before = _snapshot(db)
    for fields in ({}, {vote_pages.FORM_FIELD: ""}, {vote_pages.FORM_FIELD: "not-a-token"}):
        _refused(client.post(url, data={**complete, **fields}))
    assert _snapshot(db) == before
    assert not has_voted(client, token)


def test_a_token_for_another_link_or_another_form_is_refused(
    client: TestClient, db: Engine, token: str
) -> None:
    mine = check_page(client, token, **coded(delegated="For", constitution="For"))
    other_token = factories.token_for("G83002")
    theirs = check_page(client, other_token, **coded(delegated="For", constitution="For"))
    submit = mine.form(f"/vote/{token}/submit")
    change = mine.form(f"/vote/{token}/choices")
    their_submit = theirs.form(f"/vote/{other_token}/submit")
    # Another practice's submit form, posted to this link.
    _refused(client.post(submit.action, data=their_submit.fields))
    # This link's "change your answers" token, posted to its submit.
    _refused(client.post(submit.action, data=change.fields))
    # The choices page's token (for /check), posted to submit.
    check_token = choices_form(client, token).fields[vote_pages.FORM_FIELD]
    _refused(client.post(submit.action, data={**submit.fields, vote_pages.FORM_FIELD: check_token}))
    # A token signed for another purpose (the receipt check) with this very address.
    forged = vote_pages.form_token(public.RECEIPT_CHECK_FORM, submit.action)
    _refused(client.post(submit.action, data={**submit.fields, vote_pages.FORM_FIELD: forged}))
    assert ballot_box_rows(db) == 0
    assert not has_voted(client, token)
    assert post(client, submit).response.status_code == 200
    assert has_voted(client, token)


def test_a_form_older_than_two_hours_is_refused(
    client: TestClient, db: Engine, token: str, frozen_clock: Any
) -> None:
    check = check_page(client, token, **coded(delegated="For", constitution="For"))
    submit = check.form(f"/vote/{token}/submit")
    clock.freeze(frozen_clock + timedelta(hours=2, seconds=1))
    _refused(client.post(submit.action, data=submit.fields))
    # Nor is a form from the future (a token dated ahead of the clock) taken.
    clock.freeze(frozen_clock - timedelta(minutes=5))
    _refused(client.post(submit.action, data=submit.fields))
    assert ballot_box_rows(db) == 0
    clock.freeze(frozen_clock + timedelta(hours=2))
    assert post(client, submit).response.status_code == 200
    assert ballot_box_rows(db) == 1


def test_the_receipt_check_form_needs_its_token(
    client: TestClient, secretariat: dict[str, str], frozen_clock: Any
) -> None:
    ballot_id = factories.published_ballot(client, secretariat)
    url = f"/ballots/{ballot_id}/check"
    form = parse(client.get(url)).form(url)
    typed = {"receipt_code": "0000-0000-0000-0000-0000"}
    another_ballot = public.RECEIPT_CHECK_FORM, f"/ballots/{ballot_id + 1}/check"
    voter_form = vote_pages.VOTE_FORM, url
    for fields in (
        {},
        {vote_pages.FORM_FIELD: vote_pages.form_token(*another_ballot)},
        {vote_pages.FORM_FIELD: vote_pages.form_token(*voter_form)},
    ):
        refused = client.post(url, data={**fields, **typed})
        assert refused.status_code == 403
        assert "This form has expired; open the ballot's check page again" in parse(refused).text
    checked = client.post(url, data={**form.fields, **typed})
    assert checked.status_code == 200
    assert "This receipt code is not in the ballot box." in parse(checked).text


# --- foreign origins -------------------------------------------------------------------------


def _state_changing_routes(app: FastAPI) -> list[tuple[str, str]]:
    paths = app.openapi()["paths"]
    return sorted(
        (method.upper(), path)
        for path, methods in paths.items()
        for method in methods
        if method in {"post", "put", "patch", "delete"}
    )


def test_every_state_changing_request_from_a_foreign_origin_is_refused_first(
    client: TestClient, db: Engine, secretariat: dict[str, str], ballot_id: int, token: str
) -> None:
    routes = _state_changing_routes(create_app())
    # The pages' forms are not in the API's schema.
    routes += [("POST", f"/vote/{{token}}/{a}") for a in ("choices", "check", "submit", "dispute")]
    routes += [("POST", "/ballots/{ballot_id}/check")]
    assert ("POST", "/api/v1/vote/{token}") in routes
    assert ("PUT", "/api/v1/ballots/{ballot_id}/roll") in routes
    assert len(routes) >= 20
    fills = {"{ballot_id}": str(ballot_id), "{token}": token, "{ods_code}": "G83001"}
    before = _snapshot(db)
    for method, path in routes:
        url = re.sub(r"\{\w+\}", lambda m: fills.get(m.group(), "x"), path)
        sent_from = [
            {"Origin": "https://evil.example"},
            {"Origin": "null"},
            {"Origin": "http://testserver.evil.example"},
            # A sandboxed frame or a data: page on another site: null, and cross-site.
            {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
            {"Origin": "null", "Sec-Fetch-Site": "same-site"},
            # A browser that names no origin still says where the request came from.
            {"Sec-Fetch-Site": "cross-site"},
        ]
        for origin in sent_from:
            response = client.request(method, url, json=VOTE, headers={**secretariat, **origin})
            assert response.status_code == 403, (method, path, origin, response.text)
            if not url.startswith(("/vote/", "/ballots/")):
                assert response.json()["error"] == "Forbidden"
            assert "another site" in response.text
    assert _snapshot(db) == before
    # The service's own origin (BASE_URL) is welcome.
    cast = client.post(f"/api/v1/vote/{token}", json=VOTE, headers={"Origin": "http://testserver"})
    assert cast.status_code == 200


def test_a_form_on_our_own_page_is_accepted_though_no_referrer_makes_its_origin_null(
    client: TestClient, token: str
) -> None:
    # What Chromium sends for a form posted from our own page under Referrer-Policy: no-referrer.
    own_page = {"Origin": "null", "Sec-Fetch-Site": "same-origin"}
    form = choices_form(client, token)
    check = client.post(
        form.action,
        data={**form.fields, **coded(delegated="For", constitution="For")},
        headers=own_page,
    )
    assert check.status_code == 200
    assert "Check your answers" in check.text
    typed = client.post(f"/api/v1/vote/{token}", json=VOTE, headers={"Sec-Fetch-Site": "none"})
    assert typed.status_code == 200


def test_the_voting_api_takes_only_json(client: TestClient, db: Engine, token: str) -> None:
    body = json.dumps(VOTE)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        response = client.post(f"/api/v1/vote/{token}", content=body, headers=headers)
        assert response.status_code == 415, content_type
        assert response.json() == {
            "error": "UnsupportedMediaType",
            "detail": "Send the vote as JSON, with the header Content-Type: application/json.",
        }
    form = client.post(f"/api/v1/vote/{token}", data={"choices": "x"})
    assert form.status_code == 415
    assert ballot_box_rows(db) == 0
    assert not has_voted(client, token)


# --- GET changes nothing ---------------------------------------------------------------------


def test_opening_voter_pages_never_changes_anything(
    client: TestClient, db: Engine, secretariat: dict[str, str], frozen_clock: Any
) -> None:
    doc = {"title": "Proposal", "file": "proposal.md", "content_base64": "IyBQcm9wb3NhbAo="}
    ballot_id = factories.open_ballot(client, secretariat, documents=[doc])
    token = factories.token_for("G83001")
    urls = [
        f"/vote/{token}",
        f"/vote/{token}/choices",
        f"/vote/{token}/documents/0",
        f"/api/v1/vote/{token}",
        f"/ballots/{ballot_id}/check",
    ]
    before = _snapshot(db)
    for _ in range(2):
        for url in urls:
            assert client.get(url).status_code in {200, 409}, url
            assert client.head(url).status_code in {200, 405, 409}, url
    assert _snapshot(db) == before
    assert not has_voted(client, token)


# --- request ids, logs and the unforeseen ------------------------------------------------------


def test_request_ids_are_ours_unless_a_safe_one_is_given(client: TestClient) -> None:
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3
    given = client.get("/healthz", headers={"X-Request-ID": "proxy-1234_abcd"})
    assert given.headers["X-Request-ID"] == "proxy-1234_abcd"
    for unsafe in ("short", "x" * 65, "has space in it", "<script>alert(1)</script>"):
        response = client.get("/healthz", headers={"X-Request-ID": unsafe})
        assert re.fullmatch(r"[0-9a-f]{24}", response.headers["X-Request-ID"]), unsafe


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The logging set-up `mandate serve` uses with LOG_FORMAT=json, writing to a buffer."""
    with service_log.captured("json") as buffer:
        yield buffer


def test_json_logs_carry_the_request_id_and_never_the_link(
    client: TestClient, token: str, json_log: io.StringIO
) -> None:
    page = client.get(f"/vote/{token}")
    check = check_page(client, token, **coded(delegated="Against", constitution="Abstain"))
    cast = client.post(f"/api/v1/vote/{factories.token_for('G83002')}", json=VOTE)
    # The test client's own lines (the httpx logger) are not the service's.
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    lines = [line for line in lines if not line["logger"].startswith("httpx")]
    access = [line for line in lines if line["logger"] == "mandate.access"]
    by_id = {line["request_id"]: line for line in access}
    for response, method, path in (
        (page, "GET", "/vote/[link]"),
        (check.response, "POST", "/vote/[link]/check"),
        (cast, "POST", "/api/v1/vote/[link]"),
    ):
        line = by_id[response.headers["X-Request-ID"]]
        assert (line["method"], line["path"], line["status"]) == (method, path, 200)
        assert line["level"] == "INFO"
        assert line["message"].startswith(f"{method} {path} 200 ")
        assert isinstance(line["duration_ms"], float)
    logged = json.dumps(lines)
    assert token not in logged
    assert factories.token_for("G83002") not in logged
    assert "Abstain" not in logged
    assert cast.json()["receipt_code"] not in logged


def test_text_logs_carry_the_request_id(client: TestClient) -> None:
    with service_log.captured("text") as buffer:
        voter = client.get("/vote/some-link")
        forged = client.get("/nope%0AFORGED%20LINE")
    lines = buffer.getvalue().splitlines()
    [first, second] = [x for x in lines if " mandate.access " in x]
    assert f" INFO mandate.access [{voter.headers['X-Request-ID']}] GET /vote/[link] 404 " in first
    # A line break in the path is written out, so it cannot start a line of its own.
    assert f"[{forged.headers['X-Request-ID']}] GET /nope\\x0aFORGED LINE 404 " in second
    assert not [x for x in lines if x.startswith("FORGED")]


def test_an_unforeseen_failure_answers_with_a_reference_only(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app()
    secret = "-".join(("secret", "detail"))  # so the traceback's source line does not hold it

    def explode() -> None:
        raise RuntimeError(f"SELECT * FROM voting_link WHERE token_hash = '{secret}'")  # noqa: S608

    app.add_api_route("/api/v1/explode", explode)
    app.add_api_route("/ballots/explode", explode)
    with TestClient(app) as client, caplog.at_level(logging.ERROR, logger="mandate.error"):
        api = client.get("/api/v1/explode")
        page = client.get("/ballots/explode")
    reference = api.headers["X-Request-ID"]
    assert api.status_code == 500
    assert api.json() == {
        "error": "InternalError",
        "detail": f"Something went wrong; quote this reference: {reference}.",
        "request_id": reference,
    }
    assert_protected(api)
    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert f"Something went wrong; quote this reference: {page.headers['X-Request-ID']}." in (
        parse(page).text
    )
    assert_protected(page)
    for response in (api, page):
        for leak in ("secret-detail", "SELECT", "RuntimeError", "Traceback", "explode"):
            assert leak not in response.text, leak
    # The log says where it failed, under the same reference, without the exception's text.
    failures = [r for r in caplog.records if r.name == "mandate.error"]
    assert len(failures) == 2
    assert failures[0].getMessage().startswith("unhandled RuntimeError\n")
    assert "in explode" in failures[0].getMessage()
    assert "secret-detail" not in caplog.text


# --- one size whatever the vote ----------------------------------------------------------------


def test_pages_and_requests_are_the_same_size_whatever_the_choice(
    client: TestClient, ballot_id: int
) -> None:
    sizes: dict[str, set[int]] = {}
    bodies: list[bytes] = []
    for n, option in enumerate(("For", "Against", "Abstain")):
        token = factories.token_for(f"G8300{n + 1}")
        check = check_page(client, token, **coded(delegated=option, constitution=option))
        # Changing an answer shows its question with the answer checked: one size too.
        changing = post(client, check.form(f"/vote/{token}/choices"), change="delegated")
        assert changing.response.status_code == 200
        receipt = post(client, check.form(f"/vote/{token}/submit"))
        assert receipt.response.status_code == 200
        measured = {
            "check request": check.response.request.content,
            "check page": check.response.content,
            "change request": changing.response.request.content,
            "question page, answer checked": changing.response.content,
            "submit request": receipt.response.request.content,
            "receipt page": receipt.response.content,
        }
        for name, content in measured.items():
            sizes.setdefault(name, set()).add(len(content))
        bodies += [
            check.response.request.content,
            changing.response.request.content,
            receipt.response.request.content,
        ]
        assert f'<dd class="nhsuk-summary-list__value">{option}<!--' in check.response.text
        assert re.search(
            rf'value="{coded(delegated=option)["q_delegated"]}" checked', changing.response.text
        )
    assert {name: len(found) for name, found in sizes.items()} == dict.fromkeys(sizes, 1)
    for body in bodies:
        assert not re.search(rb"For|Against|Abstain", body)
    # Mixed answers, and through the voting API: the receipt is one size too.
    mixed_answers = coded(delegated="For", constitution="Abstain")
    mixed = check_page(client, factories.token_for("G83004"), **mixed_answers)
    assert len(mixed.response.content) in sizes["check page"]
    casts = [
        client.post(
            f"/api/v1/vote/{factories.token_for(f'G8300{n + 5}')}",
            json={"choices": {"delegated": option, "constitution": option}},
        )
        for n, option in enumerate(("For", "Against", "Abstain"))
    ]
    assert [c.status_code for c in casts] == [200, 200, 200]
    assert len({len(c.content) for c in casts}) == 1
    assert len({c.headers["content-length"] for c in casts}) == 1


def test_padding_evens_out_options_of_any_length() -> None:
    options = ["For", "Against", "Abstain", "Défer & review"]
    sizes = {len((str(escape(o)) + str(vote_pages.padding(options, o))).encode()) for o in options}
    assert len(sizes) == 1
    assert vote_pages.padding(options, "Défer & review") == "<!---->"
    assert [vote_pages.option_code(i) for i in (0, 1, 9)] == ["o01", "o02", "o10"]
