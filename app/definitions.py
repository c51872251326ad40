"""The ballot definition: the schema of a ballot file (TOML) and of the API's JSON."""

import base64
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from app import counting, errors
from app.models import ReceiptMode

DEFAULT_OPTIONS = ("For", "Against", "Abstain")
MAX_OPTIONS = 10

# What no name may hold: C0 and C1 controls (a CR or LF would split an email header: the title
# goes into subjects), DEL, line and paragraph separators, the bidirectional controls that make
# text read otherwise than it is, and lone surrogates (which cannot be written out as UTF-8).
_NOT_IN_A_LINE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
# Running text (a question, a summary) may also break lines and hold tabs.
_NOT_IN_TEXT = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_CHARACTER_NAMES = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\t": "a tab"}


def _refuse_characters(pattern: re.Pattern[str], value: str, what: str) -> str:
    found = pattern.search(value)
    if found:
        char = found.group()
        named = _CHARACTER_NAMES.get(char, f"the character U+{ord(char):04X}")
        raise ValueError(f"must be {what}, without control characters: it contains {named}")
    return value


def one_line(value: str) -> str:
    """Refuse a line break or any control character in a name (the error names the character,
    never the value)."""
    return _refuse_characters(_NOT_IN_A_LINE, value, "one line of text")


def running_text(value: str) -> str:
    return _refuse_characters(_NOT_IN_TEXT, value, "plain text")


Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000),
    AfterValidator(running_text),
]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(one_line),
]

# Why a close was extended or a ballot voided: every practice is told it, in one line.
Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(one_line),
]


class Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Organisation(Schema):
    name: Name
    ods_code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{3,6}$")]
    # Who practices contact about the ballot, as the emails should say it.
    contact: Name | None = None
    # The commissioner code member practices carry in the national list (epraccur column 15),
    # when it is not the organisation's own ODS code.
    commissioner_code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{3,10}$")] | None = None


class Question(Schema):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]
    text: Text
    options: list[Name] = Field(
        default_factory=lambda: list(DEFAULT_OPTIONS), max_length=MAX_OPTIONS
    )
    rules: counting.QuestionRules | None = None
    # The question puts a constitution amendment to the members (a GPC key point).
    amends_constitution: bool = False

    @field_validator("options")
    @classmethod
    def _options_are_usable(cls, options: list[str]) -> list[str]:
        seen: set[str] = set()
        for option in options:
            if option in seen:
                raise ValueError(f'duplicate option "{option}"')
            seen.add(option)
        missing = [o for o in ("For", "Against") if o not in seen]
        if missing:
            raise ValueError(f"the options must include {' and '.join(missing)}")
        return options


class DocumentIn(Schema):
    title: Name
    file: Annotated[str, StringConstraints(pattern=r"^[\w][\w .()/-]{0,199}$")]
    # Given by the API (base64); filled from `file` when a ballot file is loaded from disk.
    content_base64: str | None = Field(default=None, repr=False)
    # Optional pin written in the ballot file: loading refuses a file whose digest differs.
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")] | None = None


class ConsultationKind(StrEnum):
    """What a consultation was, for the readiness checklist against the GPC key points."""

    lmc = "lmc"
    members = "members"
    governing_body = "governing_body"
    other = "other"


class Consultation(Schema):
    date: date
    body: Name
    summary: Text
    kind: ConsultationKind = ConsultationKind.other


class Governance(Schema):
    """What the declaration of result reports; every figure here is a local setting."""

    returning_officer: Name | None = None
    scrutineer: Name | None = None
    # The least number of days between the notice of ballot and opening, if the rules set one.
    notice_days: int | None = Field(default=None, ge=1, le=90)
    # The staff accounts (role scrutineer) that may approve the ballot and countersign its count.
    scrutineer_accounts: list[
        Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._@-]{0,99}$")]
    ] = Field(default_factory=list, max_length=5)
    # The governing body's own agreement is a separate fact: only its minute reference is shown.
    governing_body_minute: Name | None = None
    # The least number of days between consulting the LMC and opening, if the CCG set one.
    lmc_minimum_days: int | None = Field(default=None, ge=0, le=365)
    application_deadline: date | None = None
    # Days after publication in which a practice may challenge the result, and with whom.
    challenge_days: int | None = Field(default=None, ge=1, le=365)
    challenge_contact: Name | None = None
    # Where each scrutineer account gets the daily digest and the publication announcement.
    scrutineer_emails: dict[str, EmailStr] = Field(default_factory=dict, max_length=5)
    # The LMC's address for the publication announcement.
    lmc_contact_email: EmailStr | None = None

    @model_validator(mode="after")
    def _emails_are_for_named_scrutineers(self) -> "Governance":
        unknown = sorted(set(self.scrutineer_emails) - set(self.scrutineer_accounts))
        if unknown:
            raise ValueError(
                f"scrutineer_emails names {', '.join(unknown)}, not in scrutineer_accounts: "
                "give an address only for a scrutineer the ballot names"
            )
        return self


class BallotDefinition(Schema):
    reference: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{2,63}$")]
    title: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=300),
        AfterValidator(one_line),
    ]
    organisation: Organisation
    receipt_mode: ReceiptMode = ReceiptMode.inclusion_only
    opens_at: AwareDatetime
    closes_at: AwareDatetime
    questions: list[Question] = Field(min_length=1, max_length=20)
    documents: list[DocumentIn] = Field(default_factory=list, max_length=20)
    consultations: list[Consultation] = Field(default_factory=list, max_length=100)
    governance: Governance = Field(default_factory=Governance)
    rules: counting.Rules
    # Path of the roll file next to the ballot file; only the CLI loader reads it.
    roll: Name | None = None

    @field_validator("questions")
    @classmethod
    def _question_ids_unique(cls, questions: list[Question]) -> list[Question]:
        duplicates = [q for q, n in Counter(q.id for q in questions).items() if n > 1]
        if duplicates:
            raise ValueError(f'duplicate question id "{duplicates[0]}"')
        return questions

    @field_validator("rules")
    @classmethod
    def _rules_text_is_one_line(cls, rules: counting.Rules) -> counting.Rules:
        # The constitution reference is printed on the declaration: a name like any other.
        for field in ("constitution_ref", "list_size_source"):
            value = getattr(rules, field)
            if value is None:
                continue
            if len(value) > 300:
                raise ValueError(f"{field} must be at most 300 characters")
            try:
                one_line(value)
            except ValueError as exc:
                raise ValueError(f"{field} {exc}") from None
        return rules

    @model_validator(mode="after")
    def _closes_after_opening(self) -> "BallotDefinition":
        if self.closes_at <= self.opens_at:
            raise ValueError("closes_at must be after opens_at")
        return self


def parse_definition(data: Any) -> BallotDefinition:
    """Validate a definition, listing every problem with its location."""
    try:
        return BallotDefinition.model_validate(data)
    except ValidationError as exc:
        problems = errors.problems_from_validation(exc.errors())
        raise errors.InvalidInput(
            f"The ballot definition has {len(problems)} problem(s): "
            + errors.describe_problems(problems),
            problems=problems,
        ) from None


def read_ballot_file(path: Path) -> BallotDefinition:
    """Load a TOML ballot file and the documents it names (relative to the file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidInput(f"{path.name} must be saved as UTF-8.") from None
    folder = path.parent.resolve()

    def beside(file: str) -> bytes | None:
        target = (folder / file).resolve()
        # Only files beside the ballot file: "papers/../../secret" is read from nowhere.
        return target.read_bytes() if target.is_relative_to(folder) and target.is_file() else None

    return parse_ballot_file(
        text, name=path.name, attachment=beside, missing=f"next to {path.name}"
    )


def parse_ballot_file(
    text: str,
    *,
    name: str,
    attachment: Callable[[str], bytes | None],
    missing: str,
    replace: Mapping[str, Any] | None = None,
) -> BallotDefinition:
    """A TOML ballot file, with each document it names read by `attachment` (None: not given,
    which the problem says is `missing`, as in "next to ballot.toml") and any top-level `replace`
    values (say new opening times) put in before it is checked."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.InvalidInput(f"{name} is not valid TOML: {exc}") from None
    data.update(replace or {})
    documents = data.get("documents", [])
    for document in documents if isinstance(documents, list) else []:
        if isinstance(document, dict) and isinstance(document.get("file"), str):
            content = attachment(document["file"])
            if content is not None:
                document["content_base64"] = base64.b64encode(content).decode()
    definition = parse_definition(data)
    absent = [
        {"loc": f"documents[{i}].file", "problem": f"no file {d.file} {missing}"}
        for i, d in enumerate(definition.documents)
        if d.content_base64 is None
    ]
    if absent:
        raise errors.InvalidInput(errors.describe_problems(absent), problems=absent)
    return definition
