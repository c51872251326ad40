"""Thin HTTP layers over the domain modules."""

from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from app import clock

templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
templates.env.filters["london"] = clock.london


class Problem(BaseModel):
    loc: str
    problem: str


class Error(BaseModel):
    """Every refusal's body: its name, a sentence a person can act on, and where input failed."""

    error: str
    detail: str = Field(min_length=1)
    problems: list[Problem] = Field(default_factory=list)


_REFUSED = {
    "400": "The body could not be read (not UTF-8, not JSON, or cut short)",
    "401": "Not signed in, or the session has ended",
    "403": "Signed in without the role or the second factor this needs",
    "404": "No such ballot, practice, account or usable voting link",
    "409": "Not possible in the ballot's (or the account's) present state",
    "422": "The input is invalid: `problems` says where and why",
    "429": "Too many attempts in a short time: `Retry-After` says when to try again",
}


def refusals_of(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    """What an operation can refuse with, from what it is: signed in, named, posted, by link."""
    refused = {"422"} if operation.get("parameters") or "requestBody" in operation else set()
    if operation.get("security"):
        refused |= {"401", "403"}
    if "{" in path:
        refused.add("404")
    if "{token}" in path or path == "/api/v1/auth/token":
        refused.add("429")
    if method != "get" or path.endswith(("/receipt", "/evidence", "/results", "/ballot-box")):
        refused.add("409")  # a state change, or a record that exists only once published
    if "requestBody" in operation:
        refused.add("400")
    return sorted(refused)


def with_refusals(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated schema, declaring the app's refusals in the app's own error body."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components.update(Error.model_json_schema(ref_template="#/components/schemas/{model}")["$defs"])
    components["Error"] = Error.model_json_schema(ref_template="#/components/schemas/{model}")
    components["Error"].pop("$defs")
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status in refusals_of(path, method, operation):
                operation["responses"][status] = {"description": _REFUSED[status], "content": error}
    return schema
