"""Staff authentication against OWASP ASVS 5.0 level 2 (V6, V7): password rules, hashing,
enumeration, session lifetime and revocation, the console's cookie and the second factor."""

import re
import statistics
import time
from datetime import datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import httpx2 as httpx
import pyotp
import pytest
from argon2 import PasswordHasher, extract_parameters
from fastapi import Response
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from app import cli, clock, crypto, staff
from app.db import session_scope
from app.deps import SESSION_COOKIE
from app.models import Role, StaffSession, StaffUser
from app.routes import auth
from tests import factories

REFUSED = {"error": "NotAuthenticated", "detail": staff.SIGN_IN_REFUSED}


def sign_in(
    client: TestClient,
    username: str,
    password: str = factories.PASSWORD,
    *,
    otp: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    form = {"username": username, "password": password}
    if otp is not None:
        form["otp"] = otp
    return client.post("/api/v1/auth/token", data=form, headers=headers)


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def me(client: TestClient, headers: dict[str, str]) -> int:
    return client.get("/api/v1/auth/me", headers=headers).status_code


def stored_user(username: str) -> StaffUser:
    with session_scope() as session:
        return staff.get(session, username)


# Passwords (V6.2)


@pytest.mark.parametrize(
    ("password", "status"),
    [
        ("x" * 11 + "!", 201),  # 12 characters, no composition rules
        ("eleven char", 422),
        ("y" * 129, 422),
        ("z" * 128, 201),
        ("Password1234", 422),  # on the common list, whatever the case
        ("qwertyuiop12", 422),
        ("nhs123456789", 422),
        ("tea kettle orbit saxophone", 201),
    ],
)
def test_password_rules(client: TestClient, password: str, status: int) -> None:
    admin = factories.staff_headers(client, Role.admin)
    response = client.post(
        "/api/v1/staff",
        json={"username": "sam", "password": password, "role": "auditor"},
        headers=admin,
    )
    assert response.status_code == status, response.text
    if status == 422 and len(password) == 12:
        assert "commonly used passwords" in response.json()["detail"]
        assert "passphrase" in response.json()["detail"]


def test_password_hash_is_argon2id_at_or_above_the_asvs_minimum(client: TestClient) -> None:
    factories.staff_headers(client, Role.auditor)
    parameters = extract_parameters(stored_user("auditor-user").password_hash)
    # OWASP's minimum for argon2id: 19 MiB, 2 iterations, 1 degree of parallelism.
    assert parameters.type.name == "ID"
    assert parameters.memory_cost >= 19 * 1024
    assert parameters.time_cost >= 2
    assert parameters.parallelism >= 1


def test_sign_in_rehashes_when_the_hashing_parameters_change(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    factories.staff_headers(client, Role.auditor)
    before = stored_user("auditor-user").password_hash
    stronger = PasswordHasher(time_cost=extract_parameters(before).time_cost + 1)
    monkeypatch.setattr(crypto, "_hasher", stronger)
    assert sign_in(client, "auditor-user").status_code == 200
    after = stored_user("auditor-user").password_hash
    assert after != before
    assert extract_parameters(after).time_cost == stronger.time_cost
    assert crypto.verify_password(after, factories.PASSWORD)


# Enumeration (V6.3)


def test_a_refused_sign_in_never_says_why(client: TestClient) -> None:
    factories.staff_headers(client, Role.secretariat)
    factories.staff_headers(client, Role.admin)  # enrols two-factor sign-in
    with session_scope() as session:
        staff.create(session, username="gone", password=factories.PASSWORD, role=Role.auditor)
        staff.disable(session, username="gone")
    attempts = {
        "unknown account": sign_in(client, "nobody"),
        "wrong password": sign_in(client, "secretariat-user", "wrong but long enough"),
        "disabled account, right password": sign_in(client, "gone"),
        "no code": sign_in(client, "admin-user"),
        "wrong code": sign_in(client, "admin-user", otp="abcdef"),
    }
    for why, response in attempts.items():
        assert (response.status_code, response.json()) == (401, REFUSED), why


def test_a_refused_sign_in_takes_the_same_time_whatever_the_reason(client: TestClient) -> None:
    factories.staff_headers(client, Role.secretariat)
    with session_scope() as session:
        staff.create(session, username="gone", password=factories.PASSWORD, role=Role.auditor)
        staff.disable(session, username="gone")
    cases = {
        "unknown account": ("nobody", factories.PASSWORD),
        "wrong password": ("secretariat-user", "wrong but long enough"),
        "disabled account": ("gone", factories.PASSWORD),
    }
    times: dict[str, list[float]] = {why: [] for why in cases}
    for round_ in range(6):  # interleaved, so a slow moment of the machine hits every case
        for why, (username, password) in cases.items():
            started = time.perf_counter()
            response = sign_in(client, username, password)
            elapsed = time.perf_counter() - started
            assert response.status_code == 401
            if round_:  # the first round warms up
                times[why].append(elapsed)
    medians = {why: statistics.median(t) for why, t in times.items()}
    # Without the dummy hash an unknown account answers some 50 times faster.
    assert max(medians.values()) / min(medians.values()) < 1.5, medians


# Sessions (V7)


def test_session_token_carries_at_least_128_random_bits(client: TestClient) -> None:
    raws = set()
    for _ in range(2):
        headers = factories.staff_headers(client, Role.secretariat)
        token = headers["Authorization"].removeprefix("Bearer ")
        raw = crypto.load_signed(staff.SESSION_PURPOSE, token, max_age_seconds=60)
        # URL-safe base64 of the CSPRNG's bytes: 6 bits a character.
        assert re.fullmatch(r"[A-Za-z0-9_-]+", raw)
        assert len(raw) * 6 >= 128
        raws.add(raw)
    assert len(raws) == 2


def test_replay_after_logout_fails(client: TestClient) -> None:
    headers = factories.staff_headers(client, Role.secretariat)
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert me(client, headers) == 401
    assert client.get("/api/v1/ballots", headers=headers).status_code == 401


def test_replay_after_the_idle_timeout_fails(client: TestClient, frozen_clock: datetime) -> None:
    headers = factories.staff_headers(client, Role.secretariat)
    # Each use keeps the session alive for another 30 minutes ...
    for minutes in (29, 58, 87):
        clock.freeze(frozen_clock + timedelta(minutes=minutes))
        assert me(client, headers) == 200, minutes
    # ... and 30 minutes without one ends it.
    clock.freeze(frozen_clock + timedelta(minutes=87 + 30))
    assert me(client, headers) == 401
    clock.freeze(frozen_clock + timedelta(minutes=88))
    assert me(client, headers) == 200  # a clock put back proves it was only idleness


def test_use_within_a_minute_does_not_write(client: TestClient, frozen_clock: datetime) -> None:
    headers = factories.staff_headers(client, Role.secretariat)
    clock.freeze(frozen_clock + timedelta(seconds=59))
    assert me(client, headers) == 200
    with session_scope() as session:
        assert session.scalar(select(StaffSession.last_seen_at)) == frozen_clock
    clock.freeze(frozen_clock + timedelta(seconds=60))
    assert me(client, headers) == 200
    with session_scope() as session:
        assert session.scalar(select(StaffSession.last_seen_at)) == clock.now()


def test_replay_after_the_absolute_timeout_fails(
    client: TestClient, frozen_clock: datetime
) -> None:
    headers = factories.staff_headers(client, Role.secretariat)
    for minutes in [*range(20, 12 * 60, 20), 12 * 60 - 1]:
        clock.freeze(frozen_clock + timedelta(minutes=minutes))
        assert me(client, headers) == 200, minutes
    clock.freeze(frozen_clock + timedelta(hours=12))
    assert me(client, headers) == 401


def test_replay_after_an_admin_revokes_the_sessions_fails(client: TestClient) -> None:
    admin = factories.staff_headers(client, Role.admin)
    first = factories.staff_headers(client, Role.auditor)
    second = bearer(sign_in(client, "auditor-user"))
    response = client.post("/api/v1/staff/auditor-user/sessions/revoke", headers=admin)
    assert response.status_code == 200, response.text
    assert response.json() == {"username": "auditor-user", "sessions_ended": 2}
    assert me(client, first) == me(client, second) == 401
    assert me(client, admin) == 200
    # The account itself still works: only its sessions ended.
    assert me(client, bearer(sign_in(client, "auditor-user"))) == 200


def test_revoking_an_unknown_account_is_not_found(client: TestClient) -> None:
    admin = factories.staff_headers(client, Role.admin)
    response = client.post("/api/v1/staff/nobody/sessions/revoke", headers=admin)
    assert response.status_code == 404


def test_sign_in_rotates_the_session_it_carried(client: TestClient) -> None:
    old = factories.staff_headers(client, Role.secretariat)
    new = bearer(sign_in(client, "secretariat-user", headers=old))
    assert me(client, old) == 401
    assert me(client, new) == 200
    # The same through the console's cookie.
    cookie = {"Cookie": f"{SESSION_COOKIE}={new['Authorization'].removeprefix('Bearer ')}"}
    newer = bearer(sign_in(client, "secretariat-user", headers=cookie))
    assert me(client, cookie) == me(client, new) == 401
    assert me(client, newer) == 200


def test_session_cookie_has_exactly_the_console_attributes() -> None:
    response = Response()
    auth.set_session_cookie(response, "token.value")
    [header] = response.headers.getlist("set-cookie")
    name_value, *attributes = [part.strip() for part in header.split(";")]
    assert name_value == "__Host-mandate-session=token.value"
    assert {a.lower() for a in attributes} == {"httponly", "path=/", "samesite=strict", "secure"}


def test_session_cookie_signs_in_and_logout_clears_it(client: TestClient) -> None:
    token = factories.staff_headers(client, Role.auditor)["Authorization"].removeprefix("Bearer ")
    cookie = {"Cookie": f"{SESSION_COOKIE}={token}"}
    assert me(client, cookie) == 200
    response = client.post("/api/v1/auth/logout", headers=cookie)
    assert response.status_code == 204
    cleared = response.headers["set-cookie"].lower()
    assert cleared.startswith(f"{SESSION_COOKIE.lower()}=")
    for attribute in ("max-age=0", "path=/", "secure", "httponly", "samesite=strict"):
        assert attribute in cleared
    assert me(client, cookie) == 401


def test_tokens_are_refused_without_a_session_row(client: TestClient) -> None:
    forged = crypto.signer(staff.SESSION_PURPOSE).dumps(crypto.new_token())
    assert me(client, {"Authorization": f"Bearer {forged}"}) == 401
    assert me(client, {"Cookie": f"{SESSION_COOKIE}={forged}"}) == 401


# Two-factor sign-in (V6.5, V6.6)


def _secret_of(uri: str) -> str:
    return parse_qs(urlsplit(uri).query)["secret"][0]


def test_totp_enrolment_then_sign_in_needs_a_fresh_code(
    client: TestClient, db: Engine, frozen_clock: datetime
) -> None:
    headers = factories.staff_headers(client, Role.secretariat)
    started = client.post("/api/v1/auth/totp", headers=headers)
    assert started.status_code == 200, started.text
    uri = started.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/Mandate:secretariat-user%40testserver?")
    qr = started.json()["qr_svg_data_uri"]
    assert qr.startswith("data:image/svg+xml")
    assert "<svg" in unquote(qr)
    totp = pyotp.TOTP(_secret_of(uri))
    step = totp.timecode(frozen_clock)

    # Pending: sign-in is unchanged until a code proves the authenticator has the secret.
    assert sign_in(client, "secretariat-user").status_code == 200
    valid = {totp.generate_otp(s) for s in range(step - 1, step + 2)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in valid)
    refused = client.post("/api/v1/auth/totp/confirm", json={"code": wrong}, headers=headers)
    assert refused.status_code == 422
    confirmed = client.post(
        "/api/v1/auth/totp/confirm", json={"code": totp.generate_otp(step)}, headers=headers
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["two_factor"] is True

    assert sign_in(client, "secretariat-user").json() == REFUSED  # no code
    # The code that confirmed enrolment has been used: replaying it is refused.
    assert sign_in(client, "secretariat-user", otp=totp.generate_otp(step)).json() == REFUSED
    # The next step's code is inside the window, once.
    assert sign_in(client, "secretariat-user", otp=totp.generate_otp(step + 1)).status_code == 200
    assert sign_in(client, "secretariat-user", otp=totp.generate_otp(step + 1)).json() == REFUSED
    # Thirty seconds on: a code two steps ahead is outside the window; one step ahead is in.
    clock.freeze(frozen_clock + timedelta(seconds=30))
    assert sign_in(client, "secretariat-user", otp=totp.generate_otp(step + 3)).json() == REFUSED
    spaced = totp.generate_otp(step + 2)
    spaced = f"{spaced[:3]} {spaced[3:]}"
    assert sign_in(client, "secretariat-user", otp=spaced).status_code == 200

    with db.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM staff_user WHERE username = 'secretariat-user'")
        ).one()
    assert row.totp_secret_encrypted
    assert totp.secret not in str(row)
    assert totp.secret.lower() not in str(row).lower()


def test_enrolment_is_refused_once_two_factor_is_on(client: TestClient) -> None:
    admin = factories.staff_headers(client, Role.admin)
    again = client.post("/api/v1/auth/totp", headers=admin)
    assert again.status_code == 409
    assert "mandate staff reset-two-factor" in again.json()["detail"]


def test_admin_without_two_factor_can_only_set_it_up(client: TestClient) -> None:
    # The first admin comes from the CLI; there is no default account.
    result = CliRunner().invoke(
        cli.app, ["staff", "add", "first", "--role", "admin", "--password", factories.PASSWORD]
    )
    assert result.exit_code == 0, result.output
    headers = bearer(sign_in(client, "first"))
    for method, path in [("GET", "/api/v1/staff"), ("GET", "/api/v1/ballots")]:
        response = client.request(method, path, headers=headers)
        assert response.status_code == 403, path
        assert response.json()["error"] == "TwoFactorRequired"
        assert response.json()["detail"].startswith("Set up two-factor sign-in first")
    assert client.get("/api/v1/auth/me", headers=headers).json()["two_factor"] is False
    factories.enrol_totp(client, headers, username="first")
    assert client.get("/api/v1/staff", headers=headers).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204


def test_a_new_installation_has_no_staff_accounts(client: TestClient) -> None:
    with session_scope() as session:
        assert staff.list_all(session) == []


# The operator's commands


def test_cli_revoke_ends_every_session_but_keeps_the_account(client: TestClient) -> None:
    headers = factories.staff_headers(client, Role.auditor)
    result = CliRunner().invoke(cli.app, ["staff", "revoke", "auditor-user"])
    assert result.exit_code == 0, result.output
    assert "Ended 1 session(s) of auditor-user." in result.output
    assert me(client, headers) == 401
    assert sign_in(client, "auditor-user").status_code == 200


def test_cli_reset_two_factor_for_a_lost_authenticator(client: TestClient) -> None:
    admin = factories.staff_headers(client, Role.admin)
    result = CliRunner().invoke(cli.app, ["staff", "reset-two-factor", "admin-user"])
    assert result.exit_code == 0, result.output
    assert me(client, admin) == 401
    with session_scope() as session:
        user = staff.get(session, "admin-user")
        assert (user.totp_secret_encrypted, user.totp_confirmed_at) == (None, None)
    # Signed in again without a code, the admin can only set up a new authenticator.
    fresh = bearer(sign_in(client, "admin-user"))
    assert client.get("/api/v1/staff", headers=fresh).status_code == 403
