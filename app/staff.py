"""Staff accounts, sign-in and sessions."""

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import clock, crypto, errors
from app.config import get_settings
from app.models import Role, StaffSession, StaffUser

SESSION_PURPOSE = "staff-session"
MIN_PASSWORD = 12
MAX_PASSWORD = 128


def check_password_rules(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise errors.InvalidInput(
            f"A password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long; "
            "a few unrelated words make a good one."
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


def sign_in(session: Session, *, username: str, password: str) -> str:
    """Check the credentials and start a session; returns the bearer token."""
    user = session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
    # Verify against a dummy hash when there is no such account, so timing says nothing.
    valid = crypto.verify_password(user.password_hash if user else None, password)
    if user is None or not valid or user.disabled_at is not None:
        raise errors.NotAuthenticated("Incorrect username or password.")
    if crypto.password_needs_rehash(user.password_hash):
        user.password_hash = crypto.hash_password(password)
    raw = crypto.new_token()
    now = clock.now()
    session.add(
        StaffSession(
            token_hash=crypto.token_hash(raw),
            staff_user_id=user.id,
            created_at=now,
            expires_at=now + timedelta(hours=get_settings().staff_token_hours),
        )
    )
    session.flush()
    return crypto.signer(SESSION_PURPOSE).dumps(raw)


def _session_of(session: Session, token: str) -> StaffSession:
    problem = "Your session has expired or is not valid; sign in again."
    try:
        raw = crypto.load_signed(
            SESSION_PURPOSE, token, max_age_seconds=get_settings().staff_token_hours * 3600
        )
    except crypto.SignedValueInvalid:
        raise errors.NotAuthenticated(problem) from None
    if not isinstance(raw, str):
        raise errors.NotAuthenticated(problem)
    found = session.scalar(
        select(StaffSession).where(StaffSession.token_hash == crypto.token_hash(raw))
    )
    if found is None or found.revoked_at is not None or found.expires_at <= clock.now():
        raise errors.NotAuthenticated(problem)
    if found.staff_user.disabled_at is not None:
        raise errors.NotAuthenticated(problem)
    return found


def authenticate(session: Session, token: str) -> StaffUser:
    return _session_of(session, token).staff_user


def sign_out(session: Session, token: str) -> None:
    _session_of(session, token).revoked_at = clock.now()
    session.flush()


def disable(session: Session, *, username: str) -> StaffUser:
    """Disable an account and end all its sessions."""
    user = session.scalar(select(StaffUser).where(StaffUser.username == username.strip().lower()))
    if user is None:
        raise errors.NotFound(f'There is no staff account called "{username}".')
    now = clock.now()
    user.disabled_at = now
    session.execute(
        update(StaffSession)
        .where(StaffSession.staff_user_id == user.id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    session.flush()
    return user


def actor(user: StaffUser) -> str:
    """How the audit trail names a member of staff."""
    return f"staff:{user.username}"
