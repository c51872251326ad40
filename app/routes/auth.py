"""Staff sign-in, sign-out, two-factor enrolment, sessions and account management."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, StringConstraints

from app import definitions, errors, limits, staff
from app.deps import SESSION_COOKIE, Admin, SessionDep, SessionToken, SignedIn
from app.models import Role, StaffUser

router = APIRouter(prefix="/api/v1", tags=["staff"])


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105  (the OAuth2 token type, not a secret)


class StaffOut(BaseModel):
    username: str
    role: Role
    disabled: bool
    two_factor: bool

    @classmethod
    def of(cls, user: StaffUser) -> "StaffOut":
        return cls(
            username=user.username,
            role=user.role,
            disabled=user.disabled_at is not None,
            two_factor=staff.two_factor_on(user),
        )


class StaffIn(definitions.Schema):
    username: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"
        ),
    ]
    # The length rules (12 to 128) are staff.check_password_rules', with their own words.
    password: Annotated[str, StringConstraints(max_length=1000)]
    role: Role


class TotpEnrolmentOut(BaseModel):
    otpauth_uri: str
    qr_svg_data_uri: str


class TotpCodeIn(definitions.Schema):
    code: Annotated[str, StringConstraints(strip_whitespace=True, max_length=10)]


class SessionsEndedOut(BaseModel):
    username: str
    sessions_ended: int


def set_session_cookie(response: Response, token: str) -> None:
    """Carry a staff session in the console's cookie: `__Host-`, Path=/, no Domain, Secure,
    HttpOnly, SameSite=Strict, and no expiry, so it ends with the browser session too."""
    # SameSite=Strict is the console's defence against cross-site request forgery: the
    # browser never attaches the cookie to a request another site starts.
    response.set_cookie(
        SESSION_COOKIE, token, path="/", secure=True, httponly=True, samesite="strict"
    )


def clear_session_cookie(response: Response) -> None:
    # A browser only drops a __Host- cookie when the deletion carries the same attributes.
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")


@router.post(
    "/auth/token",
    description=(
        "Sign in with the OAuth2 password form (`username`, `password`). Once two-factor "
        "sign-in is set up for the account, send the authenticator's current six-digit code "
        "in the extra form field `otp`; each code is accepted once. Any session the request "
        "already carries (bearer token or cookie) is ended: every sign-in starts a new one. "
        "An unknown account, a wrong password, a disabled account and a wrong or missing code "
        "all get the same 401."
    ),
)
def sign_in(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    previous: SessionToken,
    session: SessionDep,
    request: Request,
    otp: Annotated[str | None, Form(description="the authenticator's current code")] = None,
) -> TokenOut:
    # Counted before the password is checked, so a refused guess still uses up an attempt.
    address = limits.address_of(request)
    limits.check(limits.SIGN_IN_ADDRESS, address, doing="sign in from this address")
    limits.check(limits.SIGN_IN_ACCOUNT, form.username.strip().lower(), doing="sign in")
    token = staff.sign_in(
        session, username=form.username, password=form.password, otp=otp, replacing=previous
    )
    return TokenOut(access_token=token)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(_user: SignedIn, token: SessionToken, session: SessionDep, response: Response) -> None:
    if token is None:
        raise errors.NotAuthenticated("Sign in first.")
    staff.sign_out(session, token)
    clear_session_cookie(response)


@router.get("/auth/me")
def whoami(user: SignedIn) -> StaffOut:
    return StaffOut.of(user)


@router.post(
    "/auth/totp",
    description=(
        "Start setting up two-factor sign-in (required for admins): returns an otpauth URI and "
        "the same as a QR code (an SVG data: URI) for an authenticator app. Nothing changes at "
        "sign-in until a code is confirmed at /api/v1/auth/totp/confirm; starting again "
        "replaces a secret that was never confirmed."
    ),
)
def start_totp(user: SignedIn, session: SessionDep) -> TotpEnrolmentOut:
    uri, qr = staff.start_totp(session, user=user)
    return TotpEnrolmentOut(otpauth_uri=uri, qr_svg_data_uri=qr)


@router.post("/auth/totp/confirm")
def confirm_totp(body: TotpCodeIn, user: SignedIn, session: SessionDep) -> StaffOut:
    return StaffOut.of(staff.confirm_totp(session, user=user, code=body.code))


@router.get("/staff")
def list_staff(_admin: Admin, session: SessionDep) -> list[StaffOut]:
    return [StaffOut.of(u) for u in staff.list_all(session)]


@router.post("/staff", status_code=status.HTTP_201_CREATED)
def add_staff(body: StaffIn, _admin: Admin, session: SessionDep) -> StaffOut:
    return StaffOut.of(
        staff.create(session, username=body.username, password=body.password, role=body.role)
    )


@router.post("/staff/{username}/disable")
def disable_staff(username: str, _admin: Admin, session: SessionDep) -> StaffOut:
    return StaffOut.of(staff.disable(session, username=username))


@router.post("/staff/{username}/sessions/revoke")
def revoke_sessions(username: str, _admin: Admin, session: SessionDep) -> SessionsEndedOut:
    """End every session of an account without disabling it."""
    user = staff.get(session, username)
    return SessionsEndedOut(
        username=user.username, sessions_ended=staff.end_sessions(session, user=user)
    )
