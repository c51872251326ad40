"""The national list of GP practices, and a ballot's roll checked against it."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from app import ballots, errors, national_list, staff
from app.deps import AnyStaff, Secretariat, SessionDep
from app.models import NationalListImport

router = APIRouter(prefix="/api/v1", tags=["national list"])


class ImportOut(BaseModel):
    imported_at: datetime
    imported_by: str
    file_sha256: str
    practices: int

    @classmethod
    def of(cls, found: NationalListImport) -> "ImportOut":
        return cls(
            imported_at=found.imported_at, imported_by=found.imported_by,
            file_sha256=found.file_sha256, practices=found.practices,
        )  # fmt: skip


class FlagOut(BaseModel):
    ods_code: str
    name: str
    kind: str
    detail: str


class MissingOut(BaseModel):
    ods_code: str
    name: str
    postcode: str


class RollCheckOut(BaseModel):
    """The roll against the national list: flags on the roll, members left off it."""

    checked: bool
    commissioner_code: str
    national_list_imported_at: datetime | None
    national_list_sha256: str | None
    flags: list[FlagOut]
    missing: list[MissingOut]
    findings: list[str]


_CSV_BODY: dict[str, Any] = {
    "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
}


async def _csv_body(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "text/csv":
        return await request.body()
    if kind == "multipart/form-data":
        async with request.form() as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise errors.InvalidInput("Attach the epraccur CSV file in the form field 'file'.")
            return await upload.read()
    raise errors.InvalidInput(
        "Send the epraccur file as CSV (text/csv) or as a file upload in the field 'file'."
    )


# Read before the session opens, as a roll upload is.
CsvFile = Annotated[bytes, Depends(_csv_body)]


@router.put("/national-list", openapi_extra=_CSV_BODY)
def import_list(user: Secretariat, data: CsvFile, session: SessionDep) -> ImportOut:
    return ImportOut.of(national_list.replace(session, data=data, actor=staff.actor(user)))


@router.get("/national-list")
def read_list(_user: AnyStaff, session: SessionDep) -> ImportOut | None:
    """The latest import, or null when none has been made yet."""
    found = national_list.latest_import(session)
    return ImportOut.of(found) if found is not None else None


@router.get("/ballots/{ballot_id}/roll-check")
def roll_check(ballot_id: int, _user: AnyStaff, session: SessionDep) -> RollCheckOut:
    ballot = ballots.get(session, ballot_id)
    checked = national_list.check(session, ballot=ballot)
    return RollCheckOut(
        checked=checked.checked,
        commissioner_code=checked.commissioner_code,
        national_list_imported_at=checked.list_imported_at,
        national_list_sha256=checked.list_sha256,
        flags=[FlagOut(**vars(f)) for f in checked.flags],
        missing=[MissingOut(**vars(m)) for m in checked.missing],
        findings=checked.findings(),
    )
