"""The declaration of result, as HTML and as PDF, from facts built by hand (no database).

Set DECLARATION_PNG=/some/path.png to keep an image of page 1 of the PDF for review.
"""

import dataclasses
import html
import os
import re
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from PIL import Image

from app import counting, declaration, declaration_pdf, definitions

OPENS_AT = datetime(2016, 11, 7, 9, 0, tzinfo=UTC)
CLOSES_AT = datetime(2016, 11, 25, 17, 0, tzinfo=UTC)
PUBLISHED_AT = datetime(2016, 11, 28, 11, 30, tzinfo=UTC)
LOCALITIES = {"North": 14, "South": 15, "East": 12}
FINGERPRINT = "3f9a0c41d27e88b5" * 4
KEY_FINGERPRINT = "a1b2c3d4e5f60718" * 4
PRO_FORMA = (
    "The membership of NHS Riverside Vale CCG have seen and agreed to all proposed "
    "arrangements in support of taking on delegated commissioning."
)
# (delegated, constitution) per ballot: 30/6/2 and 28/8/2 of 38 ballots.
CARRIED = list(
    zip(
        ["For"] * 30 + ["Against"] * 6 + ["Abstain"] * 2,
        ["For"] * 28 + ["Against"] * 8 + ["Abstain"] * 2,
        strict=True,
    )
)
# Question 2 short of its two-thirds bar: 20 For, 18 Against.
SECOND_FAILS = [(first, "For" if n < 20 else "Against") for n, (first, _) in enumerate(CARRIED)]
A4 = 297 / 210


def roll() -> list[tuple[str, str, str]]:
    """41 practices, (ODS code, name, locality), taken a locality at a time in turn, so the
    first N to vote are spread across the localities."""
    by_locality = {
        locality: [
            (f"{locality[0]}8{n:04d}", f"{locality} Road Surgery {n}", locality)
            for n in range(1, size + 1)
        ]
        for locality, size in LOCALITIES.items()
    }
    longest = max(LOCALITIES.values())
    return [
        practices[n]
        for n in range(longest)
        for practices in by_locality.values()
        if n < len(practices)
    ]


def make_definition(
    *,
    title: str = "Delegated (Level 3) commissioning of primary medical services",
    governance: dict[str, Any] | None = None,
    consultations: list[dict[str, Any]] | None = None,
    rules: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data = {
        "reference": "RVC-2016-L3",
        "title": title,
        "organisation": {"name": "NHS Riverside Vale CCG", "ods_code": "99X"},
        "opens_at": OPENS_AT.isoformat(),
        "closes_at": CLOSES_AT.isoformat(),
        "rules": rules
        or {
            "preset": "simple_majority",
            "constitution_ref": "Constitution, clause 6.6.2",
            "quorum": {"fraction": "1/2", "basis": "practices"},
        },
        "questions": [
            {
                "id": "delegated",
                "text": "Should NHS Riverside Vale CCG apply to take on delegated commissioning?",
            },
            {
                "id": "constitution",
                "text": "Do you approve the amendments to the CCG constitution?",
                "amends_constitution": True,
                "rules": {
                    "threshold": {"fraction": "2/3", "comparison": "reach", "base": "for_against"}
                },
            },
        ],
        "consultations": (
            consultations
            if consultations is not None
            else [
                {
                    "date": "2016-10-26",
                    "body": "LMC",
                    "summary": "Reviewed the amendments.",
                    "kind": "lmc",
                },
                {
                    "date": "2016-09-14",
                    "body": "LMC",
                    "summary": "Consulted on the options.",
                    "kind": "lmc",
                },
                {
                    "date": "2016-09-21",
                    "body": "Membership",
                    "summary": "Engagement event.",
                    "kind": "members",
                },
            ]
        ),
        "governance": governance
        if governance is not None
        else {
            "returning_officer": "Jo Hart",
            "scrutineer": "Sam Okafor",
            "governing_body_minute": "GB/16/112",
            "challenge_days": 14,
            "challenge_contact": "the Board Secretary, board.secretary@nhs.net",
        },
    }
    return definitions.parse_definition(data).model_dump(mode="json")


def make_facts(answers: Sequence[tuple[str, str]] = CARRIED, **changes: Any) -> declaration.Facts:
    """Facts of a published ballot in which the first len(answers) practices of the roll
    voted, each answering (delegated, constitution)."""
    definition = changes.pop("definition", None) or make_definition()
    rules = counting.Rules.model_validate(definition["rules"])
    practices = roll()
    electors = [
        counting.Elector(locality, votes=4 + n % 5) for n, (_, _, locality) in enumerate(practices)
    ]
    papers = [
        counting.Paper(
            practices[n][2], electors[n].votes, {"delegated": first, "constitution": second}
        )
        for n, (first, second) in enumerate(answers)
    ]
    counted = counting.count(
        rules,
        questions=[
            (
                q["id"],
                q["options"],
                counting.QuestionRules.model_validate(q["rules"]) if q["rules"] else None,
            )
            for q in definition["questions"]
        ],
        electors=electors,
        papers=papers,
    )
    voted = len(answers)
    facts = declaration.Facts(
        reference="RVC-2016-L3",
        title=definition["title"],
        organisation_name="NHS Riverside Vale CCG",
        organisation_ods_code="99X",
        receipt_mode="inclusion_only",
        opens_at=OPENS_AT,
        closes_at=CLOSES_AT,
        opened_at=OPENS_AT,
        closed_at=CLOSES_AT,
        published_at=PUBLISHED_AT,
        close_extended_reason=None,
        definition=definition,
        result={
            "eligible": len(practices),
            "ballots_cast": voted,
            "constitution_ref": rules.constitution_ref,
            "questions": [c.as_dict() for c in counted],
        },
        practices=[
            declaration.Practice(
                ods_code=ods,
                name=name,
                locality=locality,
                # Most practices vote early, a few after the reminders.
                voted_at=OPENS_AT + timedelta(hours=round(430 * (n / voted) ** 2) + 1)
                if n < voted
                else None,
            )
            for n, (ods, name, locality) in enumerate(practices)
        ],
        undelivered=[
            declaration.Undelivered("E80011", "East Road Surgery 11", ["east.rs11@nhs.net"])
        ],
        attestations=[
            declaration.Attestation(
                name="Sam Okafor",
                capacity="scrutineer",
                statement="I have recounted the ballot box and the result is correct.",
                attested_at=datetime(2016, 11, 28, 10, 15, tzinfo=UTC),
                key_fingerprint="9c0e" * 16,
            )
        ],
        approved=declaration.Scrutinised("lmc-scrutineer", OPENS_AT - timedelta(days=3)),
        count_countersigned=declaration.Scrutinised("lmc-scrutineer", PUBLISHED_AT),
        fingerprint=FINGERPRINT,
        signing_key_fingerprint=KEY_FINGERPRINT,
        software_version="0.1.0",
    )
    return dataclasses.replace(facts, **changes)


def with_governance(**settings: Any) -> declaration.Facts:
    governance = {"returning_officer": "Jo Hart", **settings}
    return make_facts(definition=make_definition(governance=governance))


def pdf_text(data: bytes) -> tuple[int, str]:
    """(pages, the text of every page with its whitespace collapsed)."""
    document = pdfium.PdfDocument(data)
    try:
        pages = [document[n].get_textpage().get_text_bounded() for n in range(len(document))]
        return len(document), " ".join(" ".join(pages).split())
    finally:
        document.close()


def html_text(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def render_page_one(data: bytes, path: Path) -> None:
    document = pdfium.PdfDocument(data)
    try:
        document[0].render(scale=1.5).to_pil().save(path)
    finally:
        document.close()


def test_summary_line_gives_the_figures_and_each_outcome() -> None:
    assert declaration.summary_line(make_facts()) == (
        "Formal vote of member practices of NHS Riverside Vale CCG, 7 to 25 November 2016: "
        "38 of 41 practices voted (93%); question 1 carried (For 30, Against 6, Abstain 2); "
        "question 2 carried (For 28, Against 8, Abstain 2)."
    )


def test_page_one_renders_as_a_readable_a4_image(tmp_path: Path) -> None:
    target = tmp_path / "page-1.png"
    render_page_one(declaration_pdf.render_pdf(make_facts()), target)
    with Image.open(target) as image:
        width, height = image.size
        dark = sum(image.convert("L").histogram()[:100])
    assert width == pytest.approx(210 * 1.5 * 72 / 25.4, abs=2)
    assert height / width == pytest.approx(A4, rel=0.01)
    assert dark > 5_000
    if os.environ.get("DECLARATION_PNG"):
        shutil.copyfile(target, os.environ["DECLARATION_PNG"])


def test_pdf_states_the_figures_outcomes_and_fingerprint() -> None:
    pages, text = pdf_text(declaration_pdf.render_pdf(make_facts()))
    assert pages in (1, 2)
    for expected in (
        "NHS Riverside Vale CCG (ODS code 99X)",
        "Eligible practices 41",
        "Ballots cast 38",
        "Turnout 93%",
        "Practices 30 6 2 38 41",
        "Practices 28 8 2 38 41",
        "Outcome: Carried",
        "Quorum met: 38 of 41 eligible practices voted on this question.",
        "3f9a 0c41 d27e 88b5 3f9a",
        "minute GB/16/112 (as recorded by the secretariat)",
        "Page 1 of 2",
        "Reference RVC-2016-L3 · Mandate 0.1.0",
        "9:00am on Monday 7 November 2016 to 5:00pm on Friday 25 November 2016",
        "until 12 December 2016 (14 days after publication)",
        "Result verified by Sam Okafor, scrutineer",
        "East Road Surgery 11 (E80011): east.rs11@nhs.net",
        PRO_FORMA,
    ):
        assert expected in text


def test_same_facts_give_the_same_pdf_bytes() -> None:
    assert declaration_pdf.render_pdf(make_facts()) == declaration_pdf.render_pdf(make_facts())


def test_pro_forma_sentence_only_when_every_question_carried() -> None:
    assert declaration.membership_statement(make_facts()) == PRO_FORMA

    failed = make_facts(SECOND_FAILS)
    statement = declaration.membership_statement(failed)
    assert statement == (
        "The membership of NHS Riverside Vale CCG did not give its agreement to all proposed "
        "arrangements in support of taking on delegated commissioning: question 2 was not "
        "carried."
    )
    _, text = pdf_text(declaration_pdf.render_pdf(failed))
    assert PRO_FORMA not in text
    assert statement in text
    assert PRO_FORMA not in html_text(declaration.render_html(failed))


def test_without_quorum_the_statement_says_so() -> None:
    few = make_facts(CARRIED[:15])
    assert declaration.membership_statement(few).endswith(
        "question 1 did not reach quorum and question 2 did not reach quorum."
    )
    assert "15 of 41 practices voted (37%); question 1 quorum not met" in (
        declaration.summary_line(few)
    )
    _, text = pdf_text(declaration_pdf.render_pdf(few))
    assert "Outcome: Quorum not met" in text
    assert PRO_FORMA not in text


def checks(facts: declaration.Facts) -> dict[str, declaration.Check]:
    return {check.point: check for check in declaration.readiness_checklist(facts)}


LMC = "LMC consulted before the ballot opened"
DEADLINE = "Application deadline met"


@pytest.mark.parametrize(("minimum", "state"), [(None, "met"), (54, "met"), (55, "not met")])
def test_lmc_interval_is_judged_only_against_a_local_minimum(
    minimum: int | None, state: str
) -> None:
    check = checks(with_governance(lmc_minimum_days=minimum))[LMC]
    assert check.state == state
    assert "14 September 2016 and 26 October 2016" in check.evidence
    assert "54 days from the first consultation to the opening" in check.evidence
    assert ("a local setting" in check.evidence) is (minimum is not None)


def test_lmc_consulted_only_after_opening_is_not_recorded() -> None:
    late = [{"date": "2016-11-10", "body": "LMC", "summary": "Late.", "kind": "lmc"}]
    check = checks(make_facts(definition=make_definition(consultations=late)))[LMC]
    assert check.state == "not recorded"
    assert "10 November 2016" in check.evidence


@pytest.mark.parametrize(
    ("deadline", "state"),
    [
        ("2016-11-30", "met"),
        ("2016-11-28", "met"),
        ("2016-11-25", "not met"),
        (None, "not recorded"),
    ],
)
def test_application_deadline(deadline: str | None, state: str) -> None:
    assert checks(with_governance(application_deadline=deadline))[DEADLINE].state == state


def test_checklist_members_constitution_and_formal_vote() -> None:
    carried = checks(make_facts())
    assert carried["Member practices consulted"].state == "met"
    assert carried["Constitution amendment put to the members and carried"].state == "met"
    assert carried["Formal vote of member practices held"].evidence.startswith(
        "This ballot, 7 to 25 November 2016: 38 of 41 practices voted (93%)"
    )
    failed = checks(make_facts(SECOND_FAILS, definition=make_definition(consultations=[])))
    assert failed["Constitution amendment put to the members and carried"].state == "not met"
    assert failed["Member practices consulted"].state == "not recorded"
    assert failed[LMC].state == "not recorded"


def test_non_latin1_title_does_not_break_the_pdf() -> None:
    title = "Délégation \u2013 \u201cLevel 3\u201d \u2026 \u2265 2/3 \u2713 \u59d4\u4efb \U0001f600"
    facts = make_facts(title=title, close_extended_reason="Mail relay outage\u00a0\u2014 2 hours")
    _, text = pdf_text(declaration_pdf.render_pdf(facts))
    assert 'Délégation - "Level 3" ... >= 2/3 v ?? ?' in text
    assert "Mail relay outage - 2 hours" in text


def test_latin1_maps_punctuation_and_replaces_the_rest() -> None:
    text = "\u2018a\u2019 \u2013 b \u2014 c \u2022 d \u2717 \u2264 é \u20ac \u4e2d"
    assert declaration_pdf.latin1(text) == "'a' - b - c · d x <= é ? ?"


def test_html_escapes_the_title() -> None:
    page = declaration.render_html(make_facts(title="<script>alert(1)</script> ballot"))
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; ballot" in page


def test_html_and_pdf_carry_the_same_summary_line() -> None:
    facts = make_facts(SECOND_FAILS)
    summary = declaration.summary_line(facts)
    assert "question 2 not carried (For 20, Against 18, Abstain 0)" in summary
    assert summary in html_text(declaration.render_html(facts))
    assert summary in pdf_text(declaration_pdf.render_pdf(facts))[1]


def test_html_is_standalone() -> None:
    page = declaration.render_html(make_facts())
    assert "<svg" in page
    assert "@page" in page
    for external in ("<script", "<link", "src=", "http://", "https://"):
        assert external not in page


def test_weighted_votes_and_localities_are_shown() -> None:
    rules = {
        "constitution_ref": "Constitution, clause 6.6.2",
        "weighting": "per_patients",
        "patients_per_vote": 1000,
        "list_size_source": "NHS Digital",
        "list_size_date": "2016-10-01",
        "every_locality": True,
    }
    facts = make_facts(definition=make_definition(rules=rules))
    view = declaration.contents(facts).questions[0]
    assert view.rows[1][0] == "Weighted votes"
    assert view.localities == [
        "East: met (For 10, Against 2, Abstain 0; 12 eligible)",
        "North: met (For 10, Against 2, Abstain 1; 14 eligible)",
        "South: met (For 10, Against 2, Abstain 1; 15 eligible)",
    ]
    assert "; weighted votes: For " in declaration.summary_line(facts)
    pages, text = pdf_text(declaration_pdf.render_pdf(facts))
    assert pages in (1, 2)
    assert "Weighted votes" in text
    assert "South: met" in text
    failing = make_facts(SECOND_FAILS, definition=make_definition(rules=rules))
    assert declaration.contents(failing).questions[1].localities[0] == (
        "East: not met (For 6, Against 6, Abstain 0; 12 eligible)"
    )


def test_turnout_series() -> None:
    facts = make_facts()
    by_day = declaration.turnout_by_day(facts)
    assert len(by_day) == 19
    assert by_day[-1][1] == 38
    assert [voted for _, voted in by_day] == sorted(voted for _, voted in by_day)
    assert declaration.turnout_by_locality(facts) == [
        ("East", 12, 12),
        ("North", 13, 14),
        ("South", 13, 15),
    ]


def test_challenge_without_a_deadline_says_whom_to_contact() -> None:
    assert declaration.challenge_statement(with_governance()) == (
        "This ballot sets no deadline for challenging the result. To raise a concern about it, "
        "contact the CCG."
    )


@pytest.mark.parametrize(
    ("part", "whole", "shown"), [(38, 41, "93%"), (40, 41, "98%"), (199, 200, "99%"), (0, 41, "0%")]
)
def test_percent_never_misleads(part: int, whole: int, shown: str) -> None:
    assert declaration.percent(part, whole) == shown


def test_without_countersignatures_or_lost_invitations_it_says_so() -> None:
    facts = make_facts(attestations=[], undelivered=[], receipt_mode="receipt_with_choices")
    text = html_text(declaration.render_html(facts))
    assert "No countersignature recorded yet." in text
    assert "Every practice had at least one invitation accepted by the mail relay." in text
    assert "so a receipt proves how a practice voted to whoever sees it" in text
    assert "Result verified by" not in text
