"""Dependencies that load and authorise: the Annotated aliases routes declare."""

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app import errors, limits, staff, voting
from app.db import get_session
from app.models import Role, StaffUser, VotingLink

# scope="function": the commit happens before the response leaves, so a receipt is never
# sent for a vote that was not durably recorded.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
# The staff console's cookie: `__Host-` pins it to this host and path / over HTTPS only.
SESSION_COOKIE = "__Host-mandate-session"
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False)
BearerToken = Annotated[str | None, Depends(_bearer)]


def session_token(
    bearer: BearerToken, cookie: Annotated[str | None, Depends(_cookie)]
) -> str | None:
    """The staff session token the request carries: the bearer token, else the cookie."""
    return bearer or cookie or None


SessionToken = Annotated[str | None, Depends(session_token)]


def signed_in(session: SessionDep, token: SessionToken) -> StaffUser:
    """Whoever holds a live session, before the two-factor requirement is checked."""
    if not token:
        raise errors.NotAuthenticated(
            "Sign in first: send the bearer token from /api/v1/auth/token."
        )
    return staff.authenticate(session, token)


SignedIn = Annotated[StaffUser, Depends(signed_in)]


def current_staff(user: SignedIn) -> StaffUser:
    staff.require_two_factor(user)
    return user


CurrentStaff = Annotated[StaffUser, Depends(current_staff)]


def require_role(*roles: Role) -> Callable[[StaffUser], StaffUser]:
    def check(user: CurrentStaff) -> StaffUser:
        if user.role not in roles:
            allowed = " or ".join(r.value for r in roles)
            raise errors.Forbidden(
                f"This needs the {allowed} role; you are signed in as {user.role}."
            )
        return user

    return check


Secretariat = Annotated[StaffUser, Depends(require_role(Role.secretariat))]
Admin = Annotated[StaffUser, Depends(require_role(Role.admin))]
Auditor = Annotated[StaffUser, Depends(require_role(Role.auditor))]
# Who may countersign a published result with their own key (`mandate attest`).
Attester = Annotated[StaffUser, Depends(require_role(Role.auditor, Role.scrutineer))]
Scrutineer = Annotated[StaffUser, Depends(require_role(Role.scrutineer))]
# Either party to voiding a ballot may withdraw a pending proposal.
VoidParty = Annotated[StaffUser, Depends(require_role(Role.secretariat, Role.scrutineer))]
AnyStaff = Annotated[StaffUser, Depends(require_role(*Role))]


async def count_link_attempt(token: str) -> None:
    """Count a use of this link, before the database is asked, so a refused one costs nothing."""
    # Per link, never per address: practices share NHS network egress addresses.
    if limits.counts_in_memory():
        # A dictionary and a lock held for microseconds: counted on the event loop, since
        # handing it to a worker thread and back cost every cast more than the count itself.
        limits.check(limits.LINK_ATTEMPTS, token, doing="use this voting link")
    else:
        await run_in_threadpool(
            limits.check, limits.LINK_ATTEMPTS, token, doing="use this voting link"
        )


def voter_link(token: str, session: SessionDep) -> VotingLink:
    return voting.resolve(session, token)


VoterLink = Annotated[VotingLink, Depends(voter_link)]
