"""The national list of GP practices (ODS epraccur), the roll checked against it, and the
email domains a roll's addresses must be in."""

import csv
import hashlib
import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from app import audit, ballots, cli, config, errors, national_list, roll
from app.db import session_scope
from app.models import NationalPractice, Role
from tests import factories

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "ballots" / "delegated-commissioning-2016.toml"
EXAMPLE_LIST = ROOT / "ballots" / "riverside-epraccur.csv"


def epraccur_row(
    code: str, name: str, *, status: str = "A", commissioner: str = "99Z", postcode: str = ""
) -> list[str]:
    """One row as NHS Digital lays out epraccur: 27 columns, the ones we read in 1, 2, 10, 13
    and 15."""
    cells = [""] * 27
    cells[0], cells[1], cells[9] = code, name.upper(), postcode or f"TV1 {code[-1]}AA"
    cells[10], cells[12], cells[13], cells[14] = "19740401", status, "B", commissioner
    cells[25] = "4"
    return cells


def epraccur(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


def national(**changes: list[str]) -> list[list[str]]:
    """The factory roll's nine practices, active under 99Z, with some rows changed or added."""
    rows = {f"G{83001 + i}": epraccur_row(f"G{83001 + i}", f"Practice {i + 1}") for i in range(9)}
    rows.update(changes)
    return [r for r in rows.values() if r]


def put_list(client: TestClient, headers: dict[str, str], body: bytes) -> httpx.Response:
    return client.put(
        "/api/v1/national-list", content=body, headers={**headers, "content-type": "text/csv"}
    )


def roll_check(client: TestClient, headers: dict[str, str], ballot_id: int) -> dict[str, Any]:
    response = client.get(f"/api/v1/ballots/{ballot_id}/roll-check", headers=headers)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_the_epraccur_columns_are_read_where_nhs_digital_puts_them() -> None:
    cells = epraccur_row(
        "G83001", "The Surgery", status="D", commissioner="06h", postcode="ab1  2cd"
    )
    (row,) = national_list.parse(epraccur([cells]).decode())
    assert row == national_list.Row("G83001", "THE SURGERY", "AB1 2CD", "D", "06H")


def test_the_list_is_imported_with_its_time_and_sha256_and_replaced_wholesale(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    assert client.get("/api/v1/national-list", headers=secretariat).json() is None
    body = epraccur(national())
    response = put_list(client, secretariat, body)
    assert response.status_code == 200, response.text
    imported = response.json()
    assert imported["practices"] == 9
    assert imported["file_sha256"] == hashlib.sha256(body).hexdigest()
    assert imported["imported_by"] == "staff:secretariat-user"
    assert client.get("/api/v1/national-list", headers=secretariat).json() == imported

    smaller = epraccur(national()[:3])
    assert put_list(client, secretariat, smaller).json()["practices"] == 3
    with session_scope() as session:
        codes = sorted(session.scalars(select(NationalPractice.ods_code)))
    assert codes == ["G83001", "G83002", "G83003"]


def test_a_bad_row_is_refused_with_its_line_and_the_list_is_unchanged(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    assert put_list(client, secretariat, epraccur(national())).status_code == 200
    rows = national()
    rows[1][12] = "X"  # no such status
    rows[4] = rows[4][:9]  # cut short
    rows.append(list(rows[0]))  # listed twice
    response = put_list(client, secretariat, epraccur(rows))
    assert response.status_code == 422, response.text
    problems = {p["loc"]: p["problem"] for p in response.json()["problems"]}
    assert problems["line 2 (G83002)"] == "the status code (column 13) must be A, C, D or P"
    assert "9 column(s)" in problems["line 5 (G83005)"]
    assert problems["line 10 (G83001)"] == "also on line 1"
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(NationalPractice)) == 9


def test_only_the_secretariat_imports_the_list(client: TestClient, frozen_clock: object) -> None:
    scrutineer = factories.staff_headers(client, Role.scrutineer)
    assert put_list(client, scrutineer, epraccur(national())).status_code == 403
    secretariat = factories.staff_headers(client, Role.secretariat)
    response = client.put(
        "/api/v1/national-list", content=b"[]", headers={**secretariat,
        "content-type": "application/json"}
    )  # fmt: skip
    assert response.status_code == 422


def test_the_check_flags_closed_dormant_unknown_and_other_commissioner_and_lists_the_missing(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    assert roll_check(client, secretariat, ballot_id)["checked"] is False
    rows = national(
        G83002=epraccur_row("G83002", "Practice 2", status="C"),
        G83003=epraccur_row("G83003", "Practice 3", status="D"),
        G83004=[],  # not on the national list at all
        G83005=epraccur_row("G83005", "Practice 5", commissioner="06H"),
        G83100=epraccur_row("G83100", "Left Off Surgery", postcode="TV9 9ZZ"),
        G83101=epraccur_row("G83101", "Closed Off Surgery", status="C"),
        G83102=epraccur_row("G83102", "Neighbour Surgery", commissioner="06H"),
    )
    assert put_list(client, secretariat, epraccur(rows)).status_code == 200
    found = roll_check(client, secretariat, ballot_id)
    assert found["checked"] is True
    assert found["commissioner_code"] == "99Z"
    assert {f["ods_code"]: f["kind"] for f in found["flags"]} == {
        "G83002": "closed",
        "G83003": "dormant",
        "G83004": "unknown",
        "G83005": "other_commissioner",
    }
    # Only the commissioner's active practices count as members left off the roll.
    assert found["missing"] == [
        {"ods_code": "G83100", "name": "LEFT OFF SURGERY", "postcode": "TV9 9ZZ"}
    ]
    assert "under 06H on the national list, not 99Z" in " ".join(found["findings"])


def test_a_commissioner_code_in_the_definition_is_the_one_checked(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    organisation = {"name": "NHS Test Vale CCG", "ods_code": "99Z", "commissioner_code": "06H"}
    ballot_id = factories.draft_ballot(client, secretariat, organisation=organisation)
    rows = [
        epraccur_row(f"G{83001 + i}", f"Practice {i + 1}", commissioner="06H") for i in range(9)
    ]
    assert put_list(client, secretariat, epraccur(rows)).status_code == 200
    found = roll_check(client, secretariat, ballot_id)
    assert (found["commissioner_code"], found["flags"], found["missing"]) == ("06H", [], [])


def test_an_unset_commissioner_code_leaves_the_stored_definition_as_it_was(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    with session_scope() as session:
        stored = ballots.get(session, ballot_id).definition
    assert "commissioner_code" not in stored["organisation"]


def test_findings_warn_are_shown_to_the_scrutineer_and_recorded_with_the_approval(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    ballot_id = factories.draft_ballot(client, secretariat)
    rows = national(G83002=epraccur_row("G83002", "Practice 2", status="C"))
    assert put_list(client, secretariat, epraccur(rows)).status_code == 200
    problems = client.get(f"/api/v1/ballots/{ballot_id}/problems", headers=secretariat).json()
    (check,) = [p for p in problems if p["code"] == "roll_check"]
    assert check["blocking"] is False
    assert "Practice 2 (G83002): closed on the national list" in check["message"]

    scrutineer = factories.staff_headers(client, Role.scrutineer)
    frozen = client.get(f"/api/v1/ballots/{ballot_id}/approval", headers=scrutineer).json()
    assert frozen["roll_check"]["findings"] == [
        "Practice 2 (G83002): closed on the national list (status C)"
    ]
    factories.approve(client, ballot_id)
    # Opening without acknowledging the warning is refused; acknowledged, it opens.
    url = f"/api/v1/ballots/{ballot_id}/open"
    refused = client.post(url, json={}, headers=secretariat)
    assert refused.status_code == 409
    assert "roll_check" in [p["loc"] for p in refused.json()["problems"]]
    opened = client.post(url, json={"acknowledge_warnings": True}, headers=secretariat)
    assert opened.status_code == 200, opened.text
    with session_scope() as session:
        approved = audit.last(session, ballot=ballots.get(session, ballot_id), action="approved")
        assert approved is not None
        recorded = approved.payload["roll_check"]
    assert recorded["findings"] == frozen["roll_check"]["findings"]
    assert recorded["national_list_sha256"] == hashlib.sha256(epraccur(rows)).hexdigest()


def test_the_declaration_lists_what_the_check_found(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    rows = national(G83002=epraccur_row("G83002", "Practice 2", status="C"))
    assert put_list(client, secretariat, epraccur(rows)).status_code == 200
    ballot_id = factories.open_ballot(client, secretariat)
    factories.cast_votes(client, ["For", "For", "Against"])
    factories.close_and_publish(client, secretariat, ballot_id)
    auditor = factories.staff_headers(client, Role.auditor)
    bundle = client.get(f"/api/v1/ballots/{ballot_id}/evidence", headers=auditor)
    assert bundle.status_code == 200, bundle.text
    html = zipfile.ZipFile(io.BytesIO(bundle.content)).read("declaration.html").decode()
    assert "checked against the national list of GP practices" in html
    assert "Practice 2 (G83002): closed on the national list (status C)" in html


def test_the_cli_imports_the_example_extract_and_the_example_roll_shows_its_closed_practice(
    db: Engine,
) -> None:
    result = CliRunner().invoke(cli.app, ["national-list", "import", str(EXAMPLE_LIST)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "Imported 43 practices" in " ".join(result.output.split())
    assert hashlib.sha256(EXAMPLE_LIST.read_bytes()).hexdigest() in result.output.replace("\n", "")
    result = CliRunner().invoke(cli.app, ["ballot", "load", str(EXAMPLE)])
    assert result.exit_code == 0, (result.output, result.exception)
    with session_scope() as session:
        (ballot,) = ballots.list_all(session)
        found = national_list.check(session, ballot=ballot)
    assert [(f.ods_code, f.kind) for f in found.flags] == [("Y80017", "closed")]
    assert found.missing == []


@pytest.fixture
def nhs_net_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The default setting, as a real deployment has it."""
    monkeypatch.setenv("ALLOWED_EMAIL_DOMAINS", "nhs.net")
    config.get_settings.cache_clear()
    yield
    monkeypatch.undo()
    config.get_settings.cache_clear()


HEADER = "ods_code,name,locality,list_size,emails\n"


def test_the_default_allows_only_nhs_net() -> None:
    assert config.Settings.model_fields["allowed_email_domains"].default == "nhs.net"


def test_an_address_outside_the_allowed_domains_is_a_row_error(nhs_net_only: None) -> None:
    text = (
        HEADER
        + "G83001,Riverside,North,9000,a@nhs.net\n"
        + "G83002,Bridge,North,9000,b@nhs.net; partner@gmail.com\n"
        + "G83003,Mill,North,9000,c@evilnhs.net\n"
        + "G83004,Abbey,North,9000,d@practice.nhs.net\n"
    )
    with pytest.raises(errors.InvalidInput) as refused:
        roll.parse_csv(text)
    problems = {p["loc"]: p["problem"] for p in refused.value.problems or []}
    assert set(problems) == {"line 3 (G83002).emails", "line 4 (G83003).emails"}
    assert (
        "gmail.com, outside the allowed email domains (nhs.net)"
        in problems["line 3 (G83002).emails"]
    )
    # The refusal names the domain, never the address.
    assert "partner@" not in str(refused.value.problems)


def test_a_roll_with_an_address_outside_the_domains_is_refused_and_the_roll_is_unchanged(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, nhs_net_only: None
) -> None:
    response = client.post("/api/v1/ballots", json=factories.definition(), headers=secretariat)
    ballot_id = response.json()["id"]
    practices = factories.roll(3)
    for p in practices:
        p["emails"] = [f"{p['ods_code'].lower()}@nhs.net"]
    url = f"/api/v1/ballots/{ballot_id}/roll"
    assert client.put(url, json=practices, headers=secretariat).status_code == 200
    practices[1]["emails"] = ["manager@practice.example"]
    refused = client.put(url, json=practices, headers=secretariat)
    assert refused.status_code == 422, refused.text
    assert [p["loc"] for p in refused.json()["problems"]] == ["roll[1].emails"]
    kept = client.get(url, headers=secretariat).json()
    assert [p["emails"] for p in kept] == [
        ["g83001@nhs.net"],
        ["g83002@nhs.net"],
        ["g83003@nhs.net"],
    ]
