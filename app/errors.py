"""Domain errors: each carries an HTTP status and a sentence a person can act on."""

from typing import Any


class AppError(Exception):
    status_code = 400

    def __init__(
        self,
        detail: str,
        *,
        problems: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.problems = problems
        self.headers = headers

    @property
    def name(self) -> str:
        return type(self).__name__

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.name, "detail": self.detail}
        if self.problems is not None:
            body["problems"] = self.problems
        return body


class InvalidInput(AppError):
    status_code = 422


class NotFound(AppError):
    status_code = 404


class NotAuthenticated(AppError):
    status_code = 401


class Forbidden(AppError):
    status_code = 403


class Conflict(AppError):
    status_code = 409


class WrongState(Conflict):
    """The ballot is not in a state that allows this action."""


class AlreadyVoted(Conflict):
    pass


class LinkInvalid(AppError):
    """Unknown, replaced or mistyped: one answer for every link that cannot vote."""

    status_code = 404


# What a pattern means, for the ones people meet when they type or upload: a regular expression
# is no help to a governance officer fixing a roll.
_PATTERN_WORDS = {
    r"^[A-Z][0-9]{5}$": "must be a practice's ODS code: one letter and five digits, like G83001",
    r"^[A-Z0-9]{3,6}$": "must be an ODS code of 3 to 6 capital letters or digits, like 99X",
}


def problems_from_validation(errors: list[Any], *, prefix: str = "") -> list[dict[str, Any]]:
    """Pydantic errors as {"loc": "questions[1].options", "problem": "..."} without the input."""
    problems = []
    for error in errors:
        loc = prefix
        parts = list(error["loc"])
        if parts and parts[0] == "body":
            parts = parts[1:]
        for part in parts:
            if isinstance(part, int):
                loc += f"[{part}]"
            else:
                loc += f".{part}" if loc else str(part)
        message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        if error.get("type") == "string_pattern_mismatch":
            message = _PATTERN_WORDS.get(str((error.get("ctx") or {}).get("pattern")), message)
        problems.append({"loc": loc or "(whole file)", "problem": message})
    return problems


def describe_problems(problems: list[dict[str, Any]]) -> str:
    return "; ".join(f"{p['loc']}: {p['problem']}" for p in problems)
