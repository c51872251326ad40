"""Fuzz the API from its OpenAPI schema: never a 5xx, and every response as the schema says.

Schemathesis generates valid and invalid requests for every operation, signed in with the role
that may do the most there; some requests name real ballots, practices, voting links and staff,
so that they reach past the 404. Responses are checked against the app's own schema, completed
by `as_it_should_be` with what this file knows the app answers; the last test checks the schema
needs no completing. The tests at the end pin the bugs the fuzzer found.
"""

import copy
import itertools
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Table, delete, insert, select
from sqlalchemy.engine import Engine

from app import clock, limits, roll, staff
from app.db import Base, get_engine, session_scope
from app.main import create_app
from app.models import Role
from tests import factories

Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = schemathesis.Case[Operation]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    # Every operation that declares a security scheme refuses a request without it.
    ignored_auth,
]
# Generated requests per operation, on top of the explicit ones. Derandomized: every run sends
# the same requests, so a failure in CI reproduces on a laptop.
EXAMPLES = 25
# Scenarios of up to STEPS calls chained by the links Schemathesis infers (an id in one
# response, a path parameter of the next request).
SCENARIOS, STEPS = 25, 8

OWN_ACCOUNTS = {f"{role.value}-user" for role in Role}  # as factories.staff_headers names them
TARGET_USER = "fuzz-target"
# PostgreSQL's integer, the type of every id; past it a path parameter is a 500 on PostgreSQL,
# and past 64 bits on SQLite too (test_a_ballot_id_past_the_database_integer_is_not_found).

# The app's error body (errors.AppError.body()), as the schema should declare it.
ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "string", "minLength": 1},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "problem"],
                "properties": {"loc": {"type": "string"}, "problem": {"type": "string"}},
            },
        },
    },
}
# FastAPI's own answer to a body it cannot decode, which bypasses the app's error handler
# (test_an_undecodable_body_is_answered_like_every_other_error).
UNDECODABLE_BODY = {
    "type": "object",
    "required": ["detail"],
    "properties": {"detail": {"type": "string", "minLength": 1}},
}
ONLY_ONCE_PUBLISHED = ("/receipt", "/evidence", "/results", "/ballot-box")


def error_statuses(method: str, path: str, operation: dict[str, Any]) -> set[str]:
    """The error statuses this operation answers with, besides the 422 of a validation error."""
    statuses = set()
    if operation.get("security"):
        statuses |= {"401", "403"}  # NotAuthenticated; Forbidden, TwoFactorRequired
    if "{" in path:
        statuses.add("404")  # NotFound, LinkInvalid
    if "{token}" in path:
        statuses.add("429")  # limits on guessing links and on each link's attempts
    if method != "get" or path.endswith(ONLY_ONCE_PUBLISHED):
        statuses.add("409")  # Conflict, WrongState, AlreadyVoted, BallotClosed
    if path == "/api/v1/auth/token":
        statuses |= {"401", "429"}  # a refused sign-in; limits.TooManyAttempts
    return statuses


def as_it_should_be(raw: dict[str, Any]) -> dict[str, Any]:
    """The app's schema, completed with what the app answers but does not declare yet."""
    schema = copy.deepcopy(raw)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Error", ERROR)
    components.setdefault("RollRow", roll.RollRow.model_json_schema())
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    fastapi_422 = {"$ref": "#/components/schemas/HTTPValidationError"}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            for status in sorted(error_statuses(method, path, operation)):
                responses.setdefault(status, {"description": "Refused", "content": error})
            invalid = responses.get("422", {}).get("content", {}).get("application/json", {})
            if invalid.get("schema") == fastapi_422:
                # FastAPI documents its own error body; the app's handler answers with ERROR.
                responses["422"] = {"description": "Invalid input", "content": error}
            if "requestBody" in operation:
                undecodable = {"application/json": {"schema": UNDECODABLE_BODY}}
                responses.setdefault("400", {"description": "Undecodable", "content": undecodable})
    # The route reads the roll from the request itself (JSON, CSV or an upload), so FastAPI
    # cannot describe it; the route should declare it with openapi_extra.
    schema["paths"]["/api/v1/ballots/{ballot_id}/roll"]["put"].setdefault(
        "requestBody",
        {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/RollRow"}}
                }
            },
        },
    )
    return schema


def undeclared(raw: dict[str, Any]) -> list[str]:
    """What as_it_should_be adds to the app's schema, one line per operation."""
    completed = as_it_should_be(raw)
    gaps = []
    for path, operations in completed["paths"].items():
        for method, operation in operations.items():
            before = raw["paths"][path][method]
            missing = [
                status
                for status, response in operation["responses"].items()
                if before["responses"].get(status) != response
            ]
            if "requestBody" not in before and "requestBody" in operation:
                missing.append("request body")
            if missing:
                gaps.append(f"{method.upper()} {path}: {', '.join(sorted(missing))}")
    return gaps


@dataclass
class Seeded:
    """Real objects to name in some requests, and the headers of each role."""

    headers: dict[Role, dict[str, str]]
    path_values: dict[str, list[Any]]
    bodies: dict[str, list[Any]]

    def headers_for(self, operation: Operation) -> dict[str, str]:
        if not operation.definition.raw.get("security"):
            return {}
        if operation.path == "/api/v1/auth/logout":
            return new_session()  # else every later request would be signed out
        return self.headers[role_for(operation.method.upper(), operation.path)]


def role_for(method: str, path: str) -> Role:
    """The role that may do the most with this operation."""
    if path.startswith("/api/v1/staff"):
        return Role.admin
    if path == "/api/v1/auth/attestation-key" or (
        method == "POST" and path.endswith("/attestations")
    ):
        return Role.auditor
    return Role.secretariat


def new_session() -> dict[str, str]:
    """A session of the secretariat's own, started in the domain: the API's sign-in is rate
    limited, and the fuzz signs out once per example."""
    with session_scope() as session:
        token = staff.sign_in(
            session, username=f"{Role.secretariat.value}-user", password=factories.PASSWORD
        )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def seeded(client: TestClient, frozen_clock: datetime) -> Seeded:
    """A published, an open and a draft ballot, their voting links and a spare staff account."""
    secretariat = factories.staff_headers(client, Role.secretariat)
    published = factories.open_ballot(client, secretariat, reference="FUZZ-PUBLISHED")
    factories.cast_votes(client, ["For", "Against", "Abstain"])
    published_links = {t for tokens in factories.sent_links().values() for t in tokens}
    # Sign in again after each move of the clock: no session outlives a jump of weeks.
    clock.freeze(factories.CLOSES + timedelta(seconds=1))
    factories.close_and_publish(client, factories.staff_headers(client), published)
    clock.freeze(frozen_clock)
    secretariat = factories.staff_headers(client, Role.secretariat)
    opened = factories.open_ballot(client, secretariat, reference="FUZZ-OPEN")
    open_links = {t for tokens in factories.sent_links().values() for t in tokens}
    open_links -= published_links
    draft = factories.draft_ballot(client, secretariat, reference="FUZZ-DRAFT")
    with session_scope() as session:
        # An account the fuzzer may disable without locking itself out.
        staff.create(session, username=TARGET_USER, password=factories.PASSWORD, role=Role.auditor)
    extended = (factories.CLOSES + timedelta(days=2)).isoformat()
    return Seeded(
        headers={
            Role.secretariat: secretariat,
            Role.admin: factories.staff_headers(client, Role.admin),
            Role.auditor: factories.staff_headers(client, Role.auditor),
        },
        path_values={
            "ballot_id": [draft, opened, published],
            "ods_code": ["G83001", "G83005", "G83009"],
            "token": sorted(open_links)[:4] + sorted(published_links)[:1],
            "username": [TARGET_USER],
        },
        # Valid bodies, which generated ones rarely are: the checks then see the 2xx answers.
        bodies={
            "POST /api/v1/ballots": [factories.definition(reference="FUZZ-NEW")],
            "PUT /api/v1/ballots/{ballot_id}": [
                factories.definition(reference="FUZZ-DRAFT", title="Delegated commissioning, v2")
            ],
            "PUT /api/v1/ballots/{ballot_id}/roll": [factories.roll(4)],
            "POST /api/v1/ballots/{ballot_id}/open": [{"acknowledge_warnings": True}],
            "POST /api/v1/ballots/{ballot_id}/extend": [
                {"closes_at": extended, "reason": "Strike"}
            ],
            "POST /api/v1/ballots/{ballot_id}/void": [{"reason": "The roll was wrong."}],
            "POST /api/v1/ballots/{ballot_id}/disputes": [
                {"text": "We did not vote.", "ods_code": "G83001", "claims_not_voted": True}
            ],
            "POST /api/v1/vote/{token}/disputes": [{"text": "The papers came late."}],
            "POST /api/v1/vote/{token}": [
                {"choices": {"delegated": "For", "constitution": "Against"}, "voter_name": "A N"}
            ],
        },
    )


@pytest.fixture
def api(seeded: Seeded) -> schemathesis.BaseSchema:
    app = create_app()
    schema = schemathesis.openapi.from_dict(as_it_should_be(app.openapi()))
    schema.app = app  # requests go straight to the app, as from_asgi would send them
    return schema


def steps_aside(case: Case) -> bool:
    """A request the fuzz does not send: it would disable or sign out the fuzzer's own
    accounts for the rest of the run."""
    parameters = case.path_parameters or {}
    return parameters.get("username") in OWN_ACCOUNTS


def unseed_random() -> None:
    # Hypothesis seeds the random module alike for every example, and email.utils.make_msgid
    # draws from it: two emails queued within 10 ms would share a Message-ID, which is unique.
    random.seed()


def real_path_parameters(operation: Operation, seeded: Seeded) -> list[dict[str, Any]]:
    """Path parameters naming real objects: each value alone, and every full combination."""
    names = [p.name for p in operation.path_parameters if p.name in seeded.path_values]
    alone = [{n: v} for n in names for v in seeded.path_values[n]]
    if len(names) < 2:
        return alone
    combinations = itertools.product(*(seeded.path_values[n] for n in names))
    return alone + [dict(zip(names, values, strict=True)) for values in combinations]


def explicit_cases(operation: Operation, seeded: Seeded) -> list[Case]:
    """Requests that may well succeed, sent before the generated ones."""
    if any(p.name not in seeded.path_values for p in operation.path_parameters):
        return []
    names = [p.name for p in operation.path_parameters]
    combinations = itertools.product(*(seeded.path_values[n] for n in names))
    everywhere = [dict(zip(names, values, strict=True)) for values in combinations]
    bodies = seeded.bodies.get(operation.label)
    if bodies is None:
        if operation.definition.raw.get("requestBody", {}).get("required"):
            return []  # nothing valid to send
        return [operation.Case(path_parameters=params) for params in everywhere]
    return [
        operation.Case(path_parameters=params, body=body, media_type="application/json")
        for params in everywhere
        for body in bodies
    ]


def cases(operation: Operation, seeded: Seeded) -> st.SearchStrategy[Case]:
    """Requests valid and invalid by the schema, some of them naming real objects."""
    positive, negative = schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE
    strategies = [operation.as_strategy(positive), operation.as_strategy(negative)]
    real = real_path_parameters(operation, seeded)
    if real:
        strategies.append(
            st.sampled_from(real).flatmap(
                lambda params: operation.as_strategy(positive, path_parameters=params)
            )
        )
    return st.one_of(strategies)


SETTINGS = hypothesis.settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)


def fuzz(operation: Operation, seeded: Seeded) -> None:
    """Send the explicit requests and EXAMPLES generated ones; raise at the first failed check."""

    @hypothesis.settings(SETTINGS, max_examples=EXAMPLES)
    # One request in eight goes without our credentials: only what the generator put there.
    @hypothesis.given(
        case=cases(operation, seeded), signed_in=st.sampled_from([True] * 7 + [False])
    )
    def run(case: Case, signed_in: bool) -> None:
        if steps_aside(case):
            hypothesis.reject()
        unseed_random()
        # The limits' counters outlive each scenario; left alone, a replayed scenario would
        # meet a 429 the first run did not, and Hypothesis could not shrink what it found.
        limits.forget()
        case.call_and_validate(
            headers=seeded.headers_for(operation) if signed_in else {}, checks=CHECKS
        )

    for case in explicit_cases(operation, seeded):
        run = hypothesis.example(case=case, signed_in=True)(run)
    run()


def order(operation: Operation) -> tuple[bool, bool]:
    # Reads first; voiding ends a ballot's life, so it goes last and the rest meet live ballots.
    return "/void" in operation.path, operation.method.upper() != "GET"


def test_every_operation_survives_fuzzing(api: schemathesis.BaseSchema, seeded: Seeded) -> None:
    failures, operations = [], []
    for result in api.get_all_operations():
        if isinstance(result, Ok):
            operations.append(result.ok())
        else:
            failures.append(f"The schema is invalid: {result.err()}")
    for operation in sorted(operations, key=order):
        try:
            fuzz(operation, seeded)
        except (Exception, schemathesis.errors.FailureGroup) as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


Rows = list[tuple[Table, list[dict[str, Any]]]]


def every_row(engine: Engine) -> Rows:
    with engine.connect() as connection:
        return [
            (table, [dict(row._mapping) for row in connection.execute(select(table))])
            for table in Base.metadata.sorted_tables
        ]


def put_back(engine: Engine, rows: Rows) -> None:
    with engine.begin() as connection:
        for table, _ in reversed(rows):
            connection.execute(delete(table))
        for table, content in rows:
            if content:
                connection.execute(insert(table), content)


class SignedInScenario(schemathesis.stateful.APIStateMachine):
    """Each step signed in as the role that may do the most, and checked like the fuzz above."""

    seeded: Seeded
    seeded_rows: Rows

    def before_call(self, case: Case) -> None:
        if steps_aside(case):
            hypothesis.reject()
        unseed_random()

    def teardown(self) -> None:
        # Every scenario starts from the seeded database and fresh limits: Hypothesis replays
        # scenarios, and one that met what an earlier one left behind would not replay alike.
        put_back(get_engine(), self.seeded_rows)
        limits.forget()
        super().teardown()

    def get_call_kwargs(self, case: Case) -> dict[str, Any]:
        return {"headers": self.seeded.headers_for(case.operation)}

    def validate_response(
        self,
        response: schemathesis.Response,
        case: Case,
        additional_checks: list[schemathesis.CheckFunction] | None = None,
        **kwargs: Any,
    ) -> None:
        case.validate_response(
            response, checks=[*CHECKS, ensure_resource_availability], transport_kwargs=kwargs
        )


def test_sequences_of_operations_survive_fuzzing(
    api: schemathesis.BaseSchema, seeded: Seeded
) -> None:
    scenario: type[SignedInScenario] = type(
        "Scenario",
        (SignedInScenario, api.as_state_machine()),
        {"seeded": seeded, "seeded_rows": every_row(get_engine())},
    )
    scenario.run(
        settings=hypothesis.settings(SETTINGS, max_examples=SCENARIOS, stateful_step_count=STEPS)
    )


# Found by the fuzz, and fixed.


def test_a_ballot_id_past_the_database_integer_is_not_found(client: TestClient) -> None:
    response = client.get(f"/api/v1/ballots/{2**63}/results")
    assert response.status_code in {404, 422}, response.text


def test_a_document_whose_content_is_not_ascii_is_refused(
    client: TestClient, secretariat: dict[str, str]
) -> None:
    document = {"title": "Minutes", "file": "minutes.pdf", "content_base64": "bWludXRlcw==é"}
    body = factories.definition(documents=[document])
    response = client.post("/api/v1/ballots", json=body, headers=secretariat)
    assert response.status_code == 422, response.text
    assert response.json()["problems"][0]["loc"] == "documents[0].content_base64"


def test_an_undecodable_body_is_answered_like_every_other_error(
    client: TestClient, secretariat: dict[str, str]
) -> None:
    headers = {**secretariat, "Content-Type": "application/json"}
    response = client.post("/api/v1/ballots", content=b'{"title": "\xff"}', headers=headers)
    assert 400 <= response.status_code < 500
    assert set(response.json()) >= {"error", "detail"}, response.text


def test_the_schema_declares_every_answer_the_app_gives(client: TestClient) -> None:
    gaps = undeclared(client.get("/openapi.json").json())
    assert not gaps, "\n".join(gaps)
