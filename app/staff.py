"""Staff accounts, sign-in, sessions and the second factor."""

import base64
import contextlib
from datetime import timedelta
from functools import lru_cache
from importlib import resources
from urllib.parse import urlsplit

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app import clock, crypto, errors
from app.config import get_settings
from app.models import Role, StaffSession, StaffUser

SESSION_PURPOSE = "staff-session"
MIN_PASSWORD = 12
MAX_PASSWORD = 128
# One answer for an unknown account, a wrong password, a disabled account and a wrong or
# missing code, so a failed sign-in never says which accounts exist or which part was right.
SIGN_IN_REFUSED = "Incorrect username or password."
# last_seen_at moves forward at most this often: the idle timeout is then exact to a minute
# and a burst of requests costs one write, not one each.
TOUCH_INTERVAL = timedelta(minutes=1)
# Codes from the step before and after the current one are accepted, for clocks a little out.
TOTP_WINDOW = 1
TOTP_ISSUER = "Mandate"


class TwoFactorRequired(errors.Forbidden):
    """An admin has signed in but has not yet set up a second factor."""


def check_password_rules(password: str) -> None:
    """Length only, no composition rules, and not one of the commonly used passwords."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise errors.InvalidInput(
            f"A password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long; "
            "a few unrelated words make a good one."
        )
    if password.casefold() in _common_passwords():
        raise errors.InvalidInput(
            "That password is on a list of commonly used passwords, so it would be among the "
            "first guessed; choose another: a few unrelated words make a good passphrase."
        )


@lru_cache
def _common_passwords() -> frozenset[str]:
    text = resources.files("app").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().casefold() for line in text.splitlines() if line.strip() and line[0] != "#"
    )


def create(session: Session, *, username: str, password: str, role: Role) -> StaffUser:
    username = username.strip().lower()
    if not username or len(username) > 100:
        raise errors.InvalidInput("A username must be 1 to 100 characters long.")
    check_password_rules(password)
    if session.scalar(select(StaffUser.id).where(StaffUser.username == username)) is not None:
        raise errors.Conflict(f'There is already a staff account called "{username}".')
    user = StaffUser(username=username, password_hash=crypto.hash_password(password), role=role)
    session.add(user)
    session.flush()
    return user


def list_all(session: Session) -> list[StaffUser]:
    return list(session.scalars(select(StaffUser).order_by(StaffUser.username)))


def get(session: Session, username: str) -> StaffUser:
    user = session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
    if user is None:
        raise errors.NotFound(f'There is no staff account called "{username}".')
    return user


def sign_in(
    session: Session,
    *,
    username: str,
    password: str,
    otp: str | None = None,
    replacing: str | None = None,
) -> str:
    """Check the credentials (and the code, once two-factor sign-in is set up) and start a new
    session, ending the one in `replacing` if it is still live; returns the bearer token."""
    user = session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
    # Verify against a dummy hash when there is no such account, so timing says nothing.
    valid = crypto.verify_password(user.password_hash if user else None, password)
    if user is None or not valid or user.disabled_at is not None:
        raise errors.NotAuthenticated(SIGN_IN_REFUSED)
    if user.totp_confirmed_at is not None and not _use_code(session, user=user, code=otp):
        raise errors.NotAuthenticated(SIGN_IN_REFUSED)
    if crypto.password_needs_rehash(user.password_hash):
        user.password_hash = crypto.hash_password(password)
    if replacing is not None:
        # A new session id at every sign-in, so an id planted before it (fixation) is useless.
        with contextlib.suppress(errors.NotAuthenticated):
            _session_of(session, replacing).revoked_at = clock.now()
    raw = crypto.new_token()
    now = clock.now()
    session.add(
        StaffSession(
            token_hash=crypto.token_hash(raw),
            staff_user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(hours=get_settings().staff_session_hours),
        )
    )
    session.flush()
    return crypto.signer(SESSION_PURPOSE).dumps(raw)


def _session_of(session: Session, token: str) -> StaffSession:
    """The live session this token names: not revoked, idle too long, or past its lifetime."""
    problem = "Your session has expired or is not valid; sign in again."
    settings = get_settings()
    try:
        raw = crypto.load_signed(
            SESSION_PURPOSE, token, max_age_seconds=settings.staff_session_hours * 3600
        )
    except crypto.SignedValueInvalid:
        raise errors.NotAuthenticated(problem) from None
    if not isinstance(raw, str):
        raise errors.NotAuthenticated(problem)
    found = session.scalar(
        select(StaffSession).where(StaffSession.token_hash == crypto.token_hash(raw))
    )
    now = clock.now()
    if (
        found is None
        or found.revoked_at is not None
        or found.expires_at <= now
        or found.last_seen_at + timedelta(minutes=settings.staff_idle_minutes) <= now
        or found.staff_user.disabled_at is not None
    ):
        raise errors.NotAuthenticated(problem)
    return found


def authenticate(session: Session, token: str) -> StaffUser:
    """The member of staff a live session belongs to; the use keeps the session from idling."""
    found = _session_of(session, token)
    now = clock.now()
    if now - found.last_seen_at >= TOUCH_INTERVAL:
        found.last_seen_at = now
        session.flush()
    return found.staff_user


def sign_out(session: Session, token: str) -> None:
    _session_of(session, token).revoked_at = clock.now()
    session.flush()


def end_sessions(session: Session, *, user: StaffUser) -> int:
    """Revoke every live session of an account; returns how many there were."""
    now = clock.now()
    ended = session.execute(
        update(StaffSession)
        .where(
            StaffSession.staff_user_id == user.id,
            StaffSession.revoked_at.is_(None),
            StaffSession.expires_at > now,
        )
        .values(revoked_at=now)
    )
    session.flush()
    return int(getattr(ended, "rowcount", 0))


def disable(session: Session, *, username: str) -> StaffUser:
    """Disable an account and end all its sessions."""
    user = get(session, username)
    user.disabled_at = clock.now()
    end_sessions(session, user=user)
    return user


def require_two_factor(user: StaffUser) -> None:
    """Refuse an admin who has not set up two-factor sign-in.

    An admin without a confirmed second factor may still sign in, because the enrolment is
    done through the API while signed in (there is no other way to reach it, and the first
    admin comes from the CLI); until it is confirmed the session can only enrol, confirm,
    ask who it is and sign out. Refusing the sign-in instead would lock such an admin out.
    """
    if user.role == Role.admin and user.totp_confirmed_at is None:
        raise TwoFactorRequired(
            "Set up two-factor sign-in first: POST /api/v1/auth/totp, add the code it shows "
            "to an authenticator app, then send a code to /api/v1/auth/totp/confirm."
        )


def start_totp(session: Session, *, user: StaffUser) -> tuple[str, str]:
    """Give the account a new, pending TOTP secret; returns its otpauth URI and an SVG QR code
    of it as a data: URI."""
    if user.totp_confirmed_at is not None:
        raise errors.Conflict(
            "Two-factor sign-in is already set up for this account. If the authenticator is "
            "lost, an operator can reset it with `mandate staff reset-two-factor`."
        )
    secret = pyotp.random_base32()  # 160 bits, as RFC 4226 recommends
    user.totp_secret_encrypted = _totp_box().encrypt(secret.encode()).decode()
    user.totp_last_step = None
    session.flush()
    host = urlsplit(get_settings().base_url).hostname or "localhost"
    uri = pyotp.TOTP(secret).provisioning_uri(
        name=f"{user.username}@{host}", issuer_name=TOTP_ISSUER
    )
    return uri, segno.make(uri, error="m").svg_data_uri(scale=4)


def confirm_totp(session: Session, *, user: StaffUser, code: str) -> StaffUser:
    """Turn a pending secret on, once a code from it proves the authenticator has it."""
    if user.totp_secret_encrypted is None:
        raise errors.WrongState("Start two-factor sign-in first: POST /api/v1/auth/totp.")
    if user.totp_confirmed_at is not None:
        raise errors.Conflict("Two-factor sign-in is already set up for this account.")
    if not _use_code(session, user=user, code=code):
        raise errors.InvalidInput(
            "That code does not match; check the authenticator's clock and send the current code."
        )
    user.totp_confirmed_at = clock.now()
    session.flush()
    return user


def reset_totp(session: Session, *, username: str) -> StaffUser:
    """Remove an account's second factor (a lost authenticator) and end its sessions."""
    user = get(session, username)
    user.totp_secret_encrypted = None
    user.totp_confirmed_at = None
    user.totp_last_step = None
    end_sessions(session, user=user)
    return user


def _use_code(session: Session, *, user: StaffUser, code: str | None) -> bool:
    """Accept a current code once: a code, or one from an earlier step, is refused after it."""
    if not code or user.totp_secret_encrypted is None:
        return False
    try:
        secret = _totp_box().decrypt(user.totp_secret_encrypted.encode()).decode()
    except InvalidToken:  # SECRET_KEY has changed since enrolment
        return False
    totp = pyotp.TOTP(secret)
    code = "".join(code.split())
    now_step = totp.timecode(clock.now())
    last = user.totp_last_step if user.totp_last_step is not None else -1
    for step in range(now_step - TOTP_WINDOW, now_step + TOTP_WINDOW + 1):
        if step > last and pyotp.utils.strings_equal(code, totp.generate_otp(step)):
            # The conditional update makes two sign-ins racing with one code accept only one.
            used = session.execute(
                update(StaffUser)
                .where(
                    StaffUser.id == user.id,
                    or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step),
                )
                .values(totp_last_step=step)
                .execution_options(synchronize_session=False)
            )
            if getattr(used, "rowcount", 0) != 1:
                return False
            set_committed_value(user, "totp_last_step", step)  # written by the update above
            return True
    return False


def _totp_box() -> Fernet:
    """Encrypts TOTP secrets at rest with a key derived from SECRET_KEY for this purpose only."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"mandate totp").derive(
        get_settings().secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def two_factor_on(user: StaffUser) -> bool:
    return user.totp_confirmed_at is not None


def actor(user: StaffUser) -> str:
    """How the audit trail names a member of staff."""
    return f"staff:{user.username}"
