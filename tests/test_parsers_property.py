"""Property tests of what reads outside input: the ballot definition, the ballot file and the roll.

Whatever the input, a parser returns a valid object or raises errors.InvalidInput with a
sentence and, where it can point at them, the problems; never any other exception, which the
API would turn into a 500.
"""

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from fastapi.testclient import TestClient
from hypothesis import strategies as st

from app import definitions, errors, roll
from tests import factories

SETTINGS = hypothesis.settings(max_examples=150, deadline=None, derandomize=True, database=None)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)


def around(value: Any, anything: st.SearchStrategy[Any] = json_values) -> st.SearchStrategy[Any]:
    """The valid value, or it with one part, at any depth, dropped, doubled or replaced: input
    that gets past the first checks and fails deep inside, or not at all."""
    options = [st.just(value), anything]
    if isinstance(value, dict) and value:

        def change(key: str) -> st.SearchStrategy[Any]:
            dropped = {k: v for k, v in value.items() if k != key}
            return st.just(dropped) | around(value[key], anything).map(
                lambda new: {**value, key: new}
            )

        options.append(st.sampled_from(sorted(value)).flatmap(change))
    if isinstance(value, list) and value:

        def change_item(i: int) -> st.SearchStrategy[Any]:
            return st.sampled_from([value[:i] + value[i + 1 :], [*value, value[i]]]) | around(
                value[i], anything
            ).map(lambda new: [*value[:i], new, *value[i + 1 :]])

        options.append(st.integers(0, len(value) - 1).flatmap(change_item))
    return st.one_of(options)


def parsed_or_refused(parse: Callable[[], Any]) -> Any:
    """The parser's result, or None when it refused the input as it should."""
    try:
        return parse()
    except errors.InvalidInput as exc:
        refusal = exc
    assert refusal.detail.strip()
    assert refusal.status_code == 422
    if refusal.problems is not None:
        # Whole-input refusals (not a list, no header, no practices) carry no problems.
        assert refusal.problems
        for problem in refusal.problems:
            assert set(problem) == {"loc", "problem"}
            assert problem["loc"]
            assert problem["problem"]
    return None


@SETTINGS
@hypothesis.given(data=json_values | around(factories.definition()))
def test_a_definition_is_parsed_or_refused(data: Any) -> None:
    definition = parsed_or_refused(lambda: definitions.parse_definition(data))
    if definition is not None:
        assert isinstance(definition, definitions.BallotDefinition)
        # What the API stores and shows parses back to the same definition.
        assert definitions.parse_definition(definition.model_dump(mode="json")) == definition


def test_a_definition_refusal_lists_every_problem() -> None:
    data = factories.definition(title=" ", questions=[])
    with pytest.raises(errors.InvalidInput) as refused:
        definitions.parse_definition(data)
    assert {p["loc"] for p in refused.value.problems or []} == {"title", "questions"}


def toml(value: Any) -> str:
    """A TOML value (tomllib reads but does not write); None has no TOML and is left out."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # its escapes are TOML's, for text without lone surrogates
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value if v is not None) + "]"
    assert isinstance(value, dict)
    items = (f"{json.dumps(k)} = {toml(v)}" for k, v in value.items() if v is not None)
    return "{" + ", ".join(items) + "}"


toml_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
toml_values = st.recursive(
    st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | toml_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(toml_text, inner, max_size=4),
    max_leaves=15,
)


@pytest.fixture(scope="module")
def ballot_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ballots") / "ballot.toml"


@SETTINGS
@hypothesis.given(
    table=st.dictionaries(toml_text, toml_values, max_size=6)
    | around(factories.definition(), anything=toml_values).filter(lambda v: isinstance(v, dict))
)
def test_a_ballot_file_is_loaded_or_refused(ballot_file: Path, table: dict[str, Any]) -> None:
    ballot_file.write_text("\n".join(f"{json.dumps(k)} = {toml(v)}" for k, v in table.items()))
    parsed_or_refused(lambda: definitions.read_ballot_file(ballot_file))


@SETTINGS
@hypothesis.given(text=st.text(max_size=200))
def test_a_ballot_file_of_any_text_is_loaded_or_refused(ballot_file: Path, text: str) -> None:
    ballot_file.write_text(text, encoding="utf-8")
    parsed_or_refused(lambda: definitions.read_ballot_file(ballot_file))


@SETTINGS
@hypothesis.given(data=json_values | around(factories.roll(3)))
def test_a_json_roll_is_parsed_or_refused(data: Any) -> None:
    rows = parsed_or_refused(lambda: roll.parse_json(data))
    if rows is not None:
        assert rows
        assert all(isinstance(r, roll.RollRow) for r in rows)


one_line_text = st.text(
    st.characters(exclude_categories=["Cc", "Cs", "Zl", "Zp", "Cf"]), min_size=1, max_size=40
).filter(str.strip)
valid_rolls = st.lists(
    st.fixed_dictionaries(
        {
            "ods_code": st.from_regex(r"[A-Z][0-9]{5}", fullmatch=True),
            "name": one_line_text,
            "locality": one_line_text,
            "list_size": st.integers(1, 1_000_000),
            "emails": st.lists(
                st.from_regex(r"[a-z0-9]{1,10}@[a-z]{1,10}\.example", fullmatch=True),
                min_size=1,
                max_size=3,
            ),
        }
    ),
    min_size=1,
    max_size=8,
    unique_by=lambda row: row["ods_code"],
)


def cells(rows: list[dict[str, Any]]) -> list[list[str]]:
    """A roll as the cells of a spreadsheet, header first; addresses share a cell."""
    return [list(roll.CSV_COLUMNS)] + [
        [r["ods_code"], r["name"], r["locality"], str(r["list_size"]), ";".join(r["emails"])]
        for r in rows
    ]


def as_csv(table: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(row if isinstance(row, list) else [row] for row in table)
    return out.getvalue()


cell = st.one_of(
    st.sampled_from(["", "G83001", "G83002", "North", "5000", "a@b.example", '"', ",", " "]),
    st.text(max_size=12),
)
csv_line = st.lists(cell, max_size=7).map(",".join)
csv_text = st.one_of(
    st.text(max_size=200),
    # Lines of cells, quoted or not, under the header or not.
    st.tuples(
        st.sampled_from(["", "\ufeff"]),
        st.one_of(st.just(",".join(roll.CSV_COLUMNS)), csv_line),
        st.lists(csv_line, max_size=6),
        st.sampled_from(["\n", "\r\n"]),
    ).map(lambda t: t[0] + t[3].join([t[1], *t[2]])),
    # A valid roll as a spreadsheet writes it, with one cell, row or column changed.
    valid_rolls.flatmap(lambda rows: around(cells(rows), anything=cell)).map(as_csv),
)


@SETTINGS
@hypothesis.given(text=csv_text)
def test_a_csv_roll_is_parsed_or_refused(text: str) -> None:
    rows = parsed_or_refused(lambda: roll.parse_csv(text))
    if rows is not None:
        assert rows
        assert all(isinstance(r, roll.RollRow) for r in rows)


@SETTINGS
@hypothesis.given(data=valid_rolls)
def test_a_roll_written_as_csv_or_json_reads_back_the_same(data: list[dict[str, Any]]) -> None:
    rows = roll.parse_json(data)
    written = [r.model_dump(mode="json") for r in rows]
    assert roll.parse_csv(as_csv(cells(written))) == rows
    assert roll.parse_json(written) == rows


@pytest.fixture
def draft(client: TestClient, secretariat: dict[str, str]) -> int:
    return factories.draft_ballot(client, secretariat)


@hypothesis.settings(
    SETTINGS,
    max_examples=60,
    # The ballot and its roll persist across examples: each one replaces the roll or not.
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
@hypothesis.given(
    body=st.binary(max_size=300) | csv_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
    kind=st.sampled_from(["text/csv", "application/json", "text/plain"]),
)
def test_a_roll_upload_is_accepted_or_refused_without_a_change(
    client: TestClient, secretariat: dict[str, str], draft: int, body: bytes, kind: str
) -> None:
    before = client.get(f"/api/v1/ballots/{draft}/roll", headers=secretariat).json()
    response = client.put(
        f"/api/v1/ballots/{draft}/roll",
        content=body,
        headers={**secretariat, "Content-Type": kind},
    )
    assert response.status_code in {200, 422}, response.text
    if response.status_code == 422:
        assert response.json()["detail"]
        after = client.get(f"/api/v1/ballots/{draft}/roll", headers=secretariat).json()
        assert after == before


# Found by these properties, and fixed: each was a crash, so a 500 over HTTP or a traceback
# from `mandate load`.

CSV_HEADER = ",".join(roll.CSV_COLUMNS) + "\n"


def test_a_lone_carriage_return_in_a_csv_is_refused() -> None:
    with pytest.raises(errors.InvalidInput):
        roll.parse_csv(CSV_HEADER + "G83001,Practice\r1,North,5,a@b.example\n")


def test_a_csv_cell_past_the_reader_limit_is_refused() -> None:
    huge = "x" * (csv.field_size_limit() + 1)
    with pytest.raises(errors.InvalidInput):
        roll.parse_csv(CSV_HEADER + f"G83001,{huge},North,5,a@b.example\n")


def test_a_ballot_file_whose_documents_is_not_a_list_is_refused(ballot_file: Path) -> None:
    ballot_file.write_text("documents = 5\n")
    with pytest.raises(errors.InvalidInput):
        definitions.read_ballot_file(ballot_file)


def test_a_ballot_file_that_is_not_utf8_is_refused(ballot_file: Path) -> None:
    ballot_file.write_bytes('title = "Délégation"\n'.encode("latin-1"))
    with pytest.raises(errors.InvalidInput):
        definitions.read_ballot_file(ballot_file)
