"""Staff sign-in, sessions and the role every staff endpoint demands."""

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db import session_scope
from app.main import create_app
from app.models import Role, StaffSession, StaffUser
from tests import factories

ANY = set(Role)
SEC = {Role.secretariat}
ADMIN = {Role.admin}
ATTESTERS = {Role.auditor, Role.scrutineer}
SCRUTINEER = {Role.scrutineer}
# Every staff endpoint and the roles allowed to use it. A new endpoint must be added here.
ROLES: dict[tuple[str, str], set[Role]] = {
    ("POST", "/api/v1/auth/logout"): ANY,
    ("GET", "/api/v1/auth/me"): ANY,
    ("GET", "/api/v1/staff"): ADMIN,
    ("POST", "/api/v1/staff"): ADMIN,
    ("POST", "/api/v1/staff/{username}/disable"): ADMIN,
    ("POST", "/api/v1/staff/{username}/sessions/revoke"): ADMIN,
    ("POST", "/api/v1/auth/totp"): ANY,
    ("POST", "/api/v1/auth/totp/confirm"): ANY,
    ("POST", "/api/v1/ballots"): SEC,
    ("GET", "/api/v1/ballots"): ANY,
    ("GET", "/api/v1/ballots/{ballot_id}"): ANY,
    ("PUT", "/api/v1/ballots/{ballot_id}"): SEC,
    ("PUT", "/api/v1/ballots/{ballot_id}/roll"): SEC,
    ("GET", "/api/v1/ballots/{ballot_id}/roll"): ANY,
    ("GET", "/api/v1/ballots/{ballot_id}/problems"): ANY,
    ("POST", "/api/v1/ballots/{ballot_id}/open"): SEC,
    ("POST", "/api/v1/ballots/{ballot_id}/extend"): SEC,
    ("POST", "/api/v1/ballots/{ballot_id}/close"): SEC,
    ("POST", "/api/v1/ballots/{ballot_id}/publish"): SEC,
    ("PUT", "/api/v1/ballots/{ballot_id}/tally-key"): SEC,
    ("POST", "/api/v1/ballots/{ballot_id}/tally-open"): SEC,
    ("GET", "/api/v1/ballots/{ballot_id}/void"): ANY,
    ("POST", "/api/v1/ballots/{ballot_id}/void"): SEC,
    ("POST", "/api/v1/ballots/{ballot_id}/void/confirm"): SCRUTINEER,
    ("POST", "/api/v1/ballots/{ballot_id}/void/withdraw"): {Role.secretariat, Role.scrutineer},
    ("GET", "/api/v1/ballots/{ballot_id}/disputes"): ANY,
    ("POST", "/api/v1/ballots/{ballot_id}/disputes"): SEC,
    ("POST", "/api/v1/ballots/{ballot_id}/voters/{ods_code}/reissue"): SEC,
    ("GET", "/api/v1/ballots/{ballot_id}/turnout"): ANY,
    ("POST", "/api/v1/ballots/{ballot_id}/reminders"): SEC,
    ("GET", "/api/v1/ballots/{ballot_id}/deliveries"): ANY,
    ("GET", "/api/v1/ballots/{ballot_id}/audit"): ANY,
    ("GET", "/api/v1/ballots/{ballot_id}/receipt"): ANY,
    ("GET", "/api/v1/ballots/{ballot_id}/evidence"): ANY,
    ("GET", "/api/v1/ballots/{ballot_id}/attestations"): ANY,
    ("POST", "/api/v1/ballots/{ballot_id}/attestations"): ATTESTERS,
    ("PUT", "/api/v1/auth/attestation-key"): ATTESTERS,
    ("POST", "/api/v1/ballots/{ballot_id}/notice"): SEC,
    ("GET", "/api/v1/ballots/{ballot_id}/approval"): ANY,
    ("POST", "/api/v1/ballots/{ballot_id}/approval"): SCRUTINEER,
    ("GET", "/api/v1/ballots/{ballot_id}/countersignature"): SCRUTINEER,
    ("POST", "/api/v1/ballots/{ballot_id}/countersignature"): SCRUTINEER,
    ("PUT", "/api/v1/national-list"): SEC,
    ("GET", "/api/v1/national-list"): ANY,
    ("GET", "/api/v1/ballots/{ballot_id}/roll-check"): ANY,
    ("POST", "/api/v1/ballots/{ballot_id}/roll/additions"): SEC,
    ("GET", "/api/v1/ballots/{ballot_id}/roll/additions"): ANY,
    ("POST", "/api/v1/ballots/{ballot_id}/roll/additions/{number}/approve"): SCRUTINEER,
    ("PUT", "/api/v1/ballots/{ballot_id}/voters/{ods_code}/addresses"): SEC,
}
# Open to anyone by design: sign-in, the voter's own link, and what is public after publishing.
PUBLIC = {
    ("POST", "/api/v1/auth/token"),
    ("GET", "/api/v1/vote/{token}"),
    ("POST", "/api/v1/vote/{token}"),
    ("POST", "/api/v1/vote/{token}/disputes"),
    ("GET", "/api/v1/ballots/{ballot_id}/results"),
    ("GET", "/api/v1/ballots/{ballot_id}/ballot-box"),
    ("GET", "/api/v1/signing-key"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
}


def _api_routes() -> set[tuple[str, str]]:
    paths = create_app().openapi()["paths"]
    return {(method.upper(), path) for path, methods in paths.items() for method in methods}


def test_every_api_endpoint_has_a_declared_audience() -> None:
    assert _api_routes() == set(ROLES) | PUBLIC


@pytest.mark.parametrize(("method", "path"), sorted(ROLES))
def test_each_role_is_allowed_or_refused(client: TestClient, method: str, path: str) -> None:
    url = (
        re.sub(r"\{ballot_id\}", "999", path)
        .replace("{ods_code}", "G83001")
        .replace("{username}", "nobody")
        .replace("{number}", "1")
    )
    assert client.request(method, url).status_code == 401
    for role in Role:
        headers = factories.staff_headers(client, role)
        status = client.request(method, url, headers=headers, json={}).status_code
        if role in ROLES[(method, path)]:
            assert status not in (401, 403), (role, status)
        else:
            assert status == 403, (role, status)


def test_wrong_password_and_unknown_user_get_the_same_answer(client: TestClient) -> None:
    factories.staff_headers(client, Role.secretariat)
    wrong = client.post(
        "/api/v1/auth/token", data={"username": "secretariat-user", "password": "x" * 12}
    )
    unknown = client.post("/api/v1/auth/token", data={"username": "nobody", "password": "x" * 12})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {"error": "NotAuthenticated", "detail": "Incorrect username or password."}
    )


def test_logout_revokes_the_token(client: TestClient) -> None:
    headers = factories.staff_headers(client, Role.auditor)
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_disabled_account_loses_its_sessions(client: TestClient) -> None:
    admin = factories.staff_headers(client, Role.admin)
    auditor = factories.staff_headers(client, Role.auditor)
    assert client.post("/api/v1/staff/auditor-user/disable", headers=admin).status_code == 200
    assert client.get("/api/v1/ballots", headers=auditor).status_code == 401


def test_tampered_token_is_refused(client: TestClient) -> None:
    headers = factories.staff_headers(client, Role.auditor)
    token = headers["Authorization"].removeprefix("Bearer ")
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}x"}).status_code
        == 401
    )


def test_admin_creates_staff_with_a_long_enough_password(client: TestClient) -> None:
    admin = factories.staff_headers(client, Role.admin)
    short = client.post(
        "/api/v1/staff",
        json={"username": "sam", "password": "short", "role": "auditor"},
        headers=admin,
    )
    assert short.status_code == 422
    assert "12 to 128 characters" in short.json()["detail"]
    made = client.post(
        "/api/v1/staff",
        json={"username": "sam", "password": "a long passphrase", "role": "auditor"},
        headers=admin,
    )
    assert made.status_code == 201


def test_passwords_and_session_tokens_are_not_stored_in_clear(client: TestClient) -> None:
    headers = factories.staff_headers(client, Role.secretariat)
    token = headers["Authorization"].removeprefix("Bearer ")
    with session_scope() as session:
        user = session.scalar(select(StaffUser).where(StaffUser.username == "secretariat-user"))
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert factories.PASSWORD not in user.password_hash
        hashes = list(session.scalars(select(StaffSession.token_hash)))
    assert hashes
    assert all(token not in h and len(h) == 64 for h in hashes)
