"""Staff sign-in, sign-out and account management."""

from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from app import errors, staff
from app.deps import Admin, AnyStaff, BearerToken, SessionDep
from app.models import Role, StaffUser

router = APIRouter(prefix="/api/v1", tags=["staff"])


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105  (the OAuth2 token type, not a secret)


class StaffOut(BaseModel):
    username: str
    role: Role
    disabled: bool

    @classmethod
    def of(cls, user: StaffUser) -> "StaffOut":
        return cls(username=user.username, role=user.role, disabled=user.disabled_at is not None)


class StaffIn(BaseModel):
    username: str
    password: str
    role: Role


@router.post("/auth/token")
def sign_in(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep) -> TokenOut:
    return TokenOut(
        access_token=staff.sign_in(session, username=form.username, password=form.password)
    )


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
def sign_out(_user: AnyStaff, token: BearerToken, session: SessionDep) -> None:
    if token is None:
        raise errors.NotAuthenticated("Sign in first.")
    staff.sign_out(session, token)


@router.get("/auth/me")
def whoami(user: AnyStaff) -> StaffOut:
    return StaffOut.of(user)


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
