"""The national list of GP practices (an ODS `epraccur` extract) and the roll checked against it.

The file layout is NHS Digital's "epraccur" CSV (GP and GP practice related data, ODS CSV
downloads: digital.nhs.uk/services/organisation-data-service/data-search-and-export/
csv-downloads/gp-and-gp-practice-related-data): no header row, 27 columns, of which we read
1 Organisation Code, 2 Name, 10 Postcode, 13 Status Code (A active, C closed, D dormant,
P proposed) and 15 Commissioner (the CCG or sub-ICB location code). The rest are ignored.
"""

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from app import clock, definitions, errors, proof, roll
from app.db import table
from app.models import Ballot, NationalListImport, NationalPractice

MAX_ROWS = 100_000
# 1-based column numbers of the epraccur file, as NHS Digital documents them.
CODE, NAME, POSTCODE, STATUS, COMMISSIONER = 1, 2, 10, 13, 15
STATUSES = {"A": "active", "C": "closed", "D": "dormant", "P": "proposed"}
_CODE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


@dataclass(frozen=True)
class Row:
    ods_code: str
    name: str
    postcode: str
    status: str
    commissioner_code: str


def _code(value: str, *, what: str, required: bool = True) -> str:
    code = value.strip().upper()
    if not code and not required:
        return code
    if not 3 <= len(code) <= 10 or not set(code) <= _CODE_CHARS:
        raise ValueError(f"{what} must be 3 to 10 letters and digits")
    return code


def _row(cells: list[str]) -> Row:
    if len(cells) < COMMISSIONER:
        raise ValueError(
            f"{len(cells)} column(s); an epraccur row has at least {COMMISSIONER} "
            "(code, name, …, postcode in 10, status in 13, commissioner in 15)"
        )
    name = cells[NAME - 1].strip()
    if not 1 <= len(name) <= 200:
        raise ValueError("the name (column 2) must be 1 to 200 characters")
    definitions.one_line(name)
    postcode = " ".join(cells[POSTCODE - 1].split()).upper()
    if len(postcode) > 10:
        raise ValueError("the postcode (column 10) is longer than a postcode")
    definitions.one_line(postcode)
    status = cells[STATUS - 1].strip().upper()
    if status not in STATUSES:
        raise ValueError("the status code (column 13) must be A, C, D or P")
    return Row(
        ods_code=_code(cells[CODE - 1], what="the organisation code (column 1)"),
        name=name,
        postcode=postcode,
        status=status,
        commissioner_code=_code(
            cells[COMMISSIONER - 1], what="the commissioner (column 15)", required=False
        ),
    )


def parse(text: str) -> list[Row]:
    """Validate an epraccur extract row by row, reporting every problem with its line."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    rows: list[Row] = []
    problems: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    try:
        for cells in reader:
            line = reader.line_num
            if line > MAX_ROWS:
                raise errors.InvalidInput(f"A national list holds at most {MAX_ROWS} practices.")
            if not any(c.strip() for c in cells):
                continue
            code = cells[0].strip().upper() if cells else ""
            where = f"line {line}" + (f" ({code})" if code and len(code) <= 10 else "")
            try:
                row = _row(cells)
            except ValueError as exc:
                problems.append({"loc": where, "problem": str(exc)})
                continue
            if row.ods_code in seen:
                problems.append({"loc": where, "problem": f"also on line {seen[row.ods_code]}"})
                continue
            seen[row.ods_code] = line
            rows.append(row)
    except csv.Error as exc:
        raise errors.InvalidInput(
            f"The CSV file could not be read after line {reader.line_num}: {exc}."
        ) from None
    if problems:
        raise errors.InvalidInput(
            f"The national list was not loaded: {len(problems)} problem(s). "
            + errors.describe_problems(problems[:20])
            + (" …" if len(problems) > 20 else ""),
            problems=problems,
        )
    if not rows:
        raise errors.InvalidInput(
            "The file holds no practices: send the epraccur CSV as NHS Digital publishes it."
        )
    return rows


def replace(session: Session, *, data: bytes, actor: str) -> NationalListImport:
    """Replace the national list with this extract, recording when, by whom and its SHA-256."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidInput("The CSV file must be saved as UTF-8.") from None
    rows = parse(text)
    session.execute(delete(NationalPractice))
    imported = NationalListImport(
        imported_at=clock.now(),
        imported_by=actor,
        file_sha256=proof.sha256_hex(data),
        practices=len(rows),
    )
    session.add(imported)
    session.flush()
    # A Core INSERT: a national file has thousands of rows and no ORM state is wanted.
    session.execute(
        insert(table(NationalPractice)),
        [
            {
                "ods_code": r.ods_code, "import_id": imported.id, "name": r.name,
                "postcode": r.postcode, "status": r.status,
                "commissioner_code": r.commissioner_code,
            }
            for r in rows
        ],
    )  # fmt: skip
    return imported


def latest_import(session: Session) -> NationalListImport | None:
    return session.scalar(select(NationalListImport).order_by(NationalListImport.id.desc()))


def commissioner_of(ballot: Ballot) -> str:
    """The commissioner code the roll is checked against: the definition's, else the
    organisation's own ODS code (a CCG's code is the commissioner code in epraccur)."""
    organisation = ballot.definition.get("organisation", {})
    code: str = organisation.get("commissioner_code") or ballot.organisation_ods_code
    return code.upper()


@dataclass(frozen=True)
class Flag:
    """A practice on the roll the national list gives pause about."""

    ods_code: str
    name: str
    # closed, dormant, proposed, unknown or other_commissioner
    kind: str
    detail: str


@dataclass(frozen=True)
class Missing:
    """An active practice of the commissioner that the roll leaves out."""

    ods_code: str
    name: str
    postcode: str


@dataclass(frozen=True)
class RollCheck:
    checked: bool
    commissioner_code: str
    list_imported_at: datetime | None = None
    list_sha256: str | None = None
    flags: list[Flag] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)

    def findings(self) -> list[str]:
        """One sentence per flag and per missing member, as the scrutineer and declaration
        show them."""
        return [f"{f.name} ({f.ods_code}): {f.detail}" for f in self.flags] + [
            f"{m.name} ({m.ods_code}, {m.postcode or 'no postcode'}): an active practice of "
            f"{self.commissioner_code} on the national list but not on the roll"
            for m in self.missing
        ]

    def as_record(self) -> dict[str, Any]:
        """What the audit trail keeps of the check when the scrutineer approves."""
        return {
            "checked": self.checked,
            "commissioner_code": self.commissioner_code,
            "national_list_sha256": self.list_sha256,
            "findings": self.findings(),
        }


def check(session: Session, *, ballot: Ballot) -> RollCheck:
    """The ballot's roll against the latest national list: flags and missing members."""
    commissioner = commissioner_of(ballot)
    imported = latest_import(session)
    if imported is None:
        return RollCheck(checked=False, commissioner_code=commissioner)
    national = {p.ods_code: p for p in session.scalars(select(NationalPractice))}
    entries = roll.entries(session, ballot=ballot)
    flags = []
    for entry in entries:
        found = national.get(entry.ods_code)
        if found is None:
            flags.append(
                Flag(entry.ods_code, entry.name, "unknown", "not on the national list at all")
            )
        elif found.status != "A":
            word = STATUSES[found.status]
            flags.append(
                Flag(
                    entry.ods_code, entry.name, word,
                    f"{word} on the national list (status {found.status})",
                )
            )  # fmt: skip
        elif found.commissioner_code != commissioner:
            under = found.commissioner_code or "no commissioner"
            flags.append(
                Flag(
                    entry.ods_code, entry.name, "other_commissioner",
                    f"under {under} on the national list, not {commissioner}",
                )
            )  # fmt: skip
    on_roll = {e.ods_code for e in entries}
    missing = [
        Missing(p.ods_code, p.name, p.postcode)
        for code, p in sorted(national.items())
        if p.status == "A" and p.commissioner_code == commissioner and code not in on_roll
    ]
    return RollCheck(
        checked=True,
        commissioner_code=commissioner,
        list_imported_at=imported.imported_at,
        list_sha256=imported.file_sha256,
        flags=flags,
        missing=missing,
    )
