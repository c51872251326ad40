"""The voter pages, driven the way a browser would: follow links, fill in and post the forms."""

import base64
import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from app import clock
from app.models import SealedBallot
from app.routes import vote_pages
from tests import factories

OPTIONS = ("For", "Against", "Abstain")
# What the radio buttons post for each option: codes of one length, whatever the option.
CODES = {"For": "o01", "Against": "o02", "Abstain": "o03"}
RECEIPT_CODE = re.compile(r"\b[0-9A-Z]{4}(?:-[0-9A-Z]{4}){4}\b")


@dataclass
class Form:
    method: str
    action: str
    # What the browser would send: hidden and text inputs, and radios that are checked.
    fields: dict[str, str] = field(default_factory=dict)
    radios: dict[str, list[str]] = field(default_factory=dict)
    # The text of each radio button's label, by the radio's name and value.
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    # Each submit button: what it adds to the form (name, value) and its words.
    buttons: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def button(self) -> str:
        return " ".join(words for _, _, words in self.buttons)

    @property
    def is_back_link(self) -> bool:
        return [name for name, _, _ in self.buttons] == ["back"]

    @property
    def answers(self) -> dict[str, str]:
        """The fields without the form's token, which differs from form to form."""
        return {k: v for k, v in self.fields.items() if k != vote_pages.FORM_FIELD}


@dataclass
class Page:
    response: httpx.Response
    forms: list[Form]
    links: list[str]
    ids: set[str]

    @property
    def title(self) -> str:
        found = re.search(r"<title>(.*?)</title>", self.response.text, re.DOTALL)
        return html.unescape(found.group(1)) if found else ""

    @property
    def text(self) -> str:
        """The words of the page's body as a reader sees them, on one line."""
        body = self.response.text.partition("<body>")[2] or self.response.text
        words = re.sub(r"</?(?:a|strong|span)\b[^>]*>", "", body)
        words = re.sub(r"<[^>]+>", " ", words)
        return " ".join(html.unescape(words).split())

    def form(self, action: str) -> Form:
        """The page's form posting to `action`, other than its back link."""
        [found] = [f for f in self.forms if f.action == action and not f.is_back_link]
        return found

    def back_link(self) -> Form:
        [found] = [f for f in self.forms if f.is_back_link]
        return found


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: list[str] = []
        self.ids: set[str] = set()
        self._form: Form | None = None
        self._button: tuple[str, str] | None = None
        self._radio: tuple[str, str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "form":
            self._form = Form(method=a.get("method", "get").lower(), action=a.get("action", ""))
            self.forms.append(self._form)
        elif tag == "a":
            self.links.append(a.get("href", ""))
        elif tag == "input" and self._form is not None:
            name, value = a.get("name", ""), a.get("value", "")
            if a.get("type", "text") == "radio":
                self._form.radios.setdefault(name, []).append(value)
                self._radio = (name, value)
                if "checked" in a:
                    self._form.fields[name] = value
            else:
                self._form.fields[name] = value
        elif tag == "button" and self._form is not None and a.get("type", "submit") == "submit":
            self._button = (a.get("name", ""), a.get("value", ""))
            self._form.buttons.append((*self._button, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "button":
            self._button = None
        elif tag == "label":
            self._radio = None

    def handle_data(self, data: str) -> None:
        if self._button is not None and self._form is not None and data.strip():
            name, value, words = self._form.buttons[-1]
            self._form.buttons[-1] = (name, value, " ".join(f"{words} {data.strip()}".split()))
        if self._radio is not None and self._form is not None and data.strip():
            name, value = self._radio
            self._form.labels.setdefault(name, {})[value] = data.strip()


def parse(response: httpx.Response) -> Page:
    parser = _PageParser()
    parser.feed(response.text)
    return Page(response=response, forms=parser.forms, links=parser.links, ids=parser.ids)


def assert_voter_page_headers(response: httpx.Response) -> None:
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "set-cookie" not in response.headers


def get(client: TestClient, url: str) -> Page:
    response = client.get(url, follow_redirects=False)
    assert_voter_page_headers(response)
    return parse(response)


def post(client: TestClient, form: Form, **changes: str) -> Page:
    """Send a form as a browser would, with some fields filled in or changed."""
    assert form.method == "post"
    response = client.post(form.action, data={**form.fields, **changes}, follow_redirects=False)
    assert_voter_page_headers(response)
    return parse(response)


def go_back(client: TestClient, page: Page, **changes: str) -> Page:
    """Press the page's back link, which posts the answers so far."""
    form = page.back_link()
    [(name, value, _)] = form.buttons
    return post(client, form, **{name: value}, **changes)


def answers(**choices: str) -> dict[str, str]:
    """Form fields choosing these options, as the radio buttons post them."""
    return {f"q_{question}": CODES[option] for question, option in choices.items()}


def signed(action: str) -> dict[str, str]:
    """The token of a genuine form posting to this address, for a page that shows no form."""
    return {vote_pages.FORM_FIELD: vote_pages.form_token(vote_pages.VOTE_FORM, action)}


def first_question(client: TestClient, token: str) -> Page:
    start = get(client, f"/vote/{token}")
    assert start.response.status_code == 200
    assert f"/vote/{token}/choices" in start.links
    page = get(client, f"/vote/{token}/choices")
    assert page.response.status_code == 200
    return page


def answer_questions(client: TestClient, token: str, option: str = "For") -> Page:
    """Through the question pages, one at a time, giving each the same answer: the page after."""
    page = first_question(client, token)
    while "Who is submitting this vote?" not in page.title:
        form = page.form(f"/vote/{token}/choices")
        [name] = form.radios
        page = post(client, form, **{name: CODES[option]})
        assert page.response.status_code == 200, page.text
    return page


def choices_form(client: TestClient, token: str) -> Form:
    """The form that posts every answer to the check page (the last step's, who is submitting),
    reached through the question pages, with the answers taken out for the caller to give."""
    form = answer_questions(client, token).form(f"/vote/{token}/check")
    fields = {k: v for k, v in form.fields.items() if not k.startswith("q_")}
    return Form(form.method, form.action, fields=fields, buttons=form.buttons)


def check_page(client: TestClient, token: str, **fields: str) -> Page:
    page = post(client, choices_form(client, token), **fields)
    assert page.response.status_code == 200, page.text
    return page


def vote(client: TestClient, token: str, **fields: str) -> Page:
    """The whole journey: start page, choices, check your answers, submit; the receipt page."""
    receipt = post(client, check_page(client, token, **fields).form(f"/vote/{token}/submit"))
    assert receipt.response.status_code == 200, receipt.text
    return receipt


def receipt_code(page: Page) -> str:
    codes: list[str] = RECEIPT_CODE.findall(page.text)
    assert len(codes) == 1, page.text
    return codes[0]


def post_check(client: TestClient, form: Form, typed: str) -> Page:
    response = client.post(form.action, data={**form.fields, "receipt_code": typed})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    return parse(response)


def has_voted(client: TestClient, token: str) -> bool:
    voted: bool = client.get(f"/api/v1/vote/{token}").json()["has_voted"]
    return voted


def ballot_box_rows(engine: Engine) -> int:
    """Ballots in the box, sealed as they are while the ballot is open."""
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(SealedBallot)) or 0


def turnout_voted(client: TestClient, ballot_id: int, headers: dict[str, str]) -> int:
    turnout = client.get(f"/api/v1/ballots/{ballot_id}/turnout", headers=headers)
    assert turnout.status_code == 200
    voted: int = turnout.json()["voted"]
    return voted


def close_and_publish(client: TestClient, ballot_id: int, headers: dict[str, str]) -> None:
    clock.freeze(factories.CLOSES)
    response = client.post(f"/api/v1/ballots/{ballot_id}/close", headers=headers)
    assert response.status_code == 200, response.text
    factories.open_box(client, headers, ballot_id)
    factories.countersign(client, ballot_id)
    response = client.post(f"/api/v1/ballots/{ballot_id}/publish", headers=headers)
    assert response.status_code == 200, response.text


@pytest.fixture
def token(ballot_id: int) -> str:
    return factories.token_for("G83001")


def test_start_page_says_who_asks_what_for_whom_and_until_when(
    client: TestClient, token: str
) -> None:
    page = get(client, f"/vote/{token}")
    assert page.response.status_code == 200
    assert "NHS Test Vale CCG is asking its member practices" in page.text
    assert "You are voting on behalf of Practice 1 (G83001)." in page.text
    assert "Apply for delegated commissioning from 1 April 2017?" in page.text
    assert "Approve the constitution amendments?" in page.text
    assert "Voting closes at 5:00pm on Friday 25 November 2016." in page.text
    abstain_means = client.get(f"/api/v1/vote/{token}").json()["abstain_means"]
    assert abstain_means.startswith("Abstain")
    assert abstain_means in page.text
    assert "it cannot be changed once submitted" in page.text
    assert "This link is for Practice 1 only." in page.text
    assert "You answer each question on its own page" in page.text
    # Starting is a link: nothing is posted, and nothing is used, until the final submit.
    assert f"/vote/{token}/choices" in page.links
    assert page.forms == []


def test_closing_time_is_shown_in_london_time_during_summer_time(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    factories.open_ballot(client, secretariat, closes_at="2017-06-30T16:00:00+00:00")
    page = get(client, f"/vote/{factories.token_for('G83001')}")
    assert "Voting closes at 5:00pm on Friday 30 June 2017." in page.text


def test_voter_goes_from_the_link_to_a_receipt_one_question_per_page(
    client: TestClient, ballot_id: int, token: str
) -> None:
    labelled = {code: option for option, code in CODES.items()}
    first = first_question(client, token)
    assert first.title.startswith("Question 1 of 2: Apply for delegated commissioning")
    # The question is the page's heading, under its place in the ballot.
    heading = re.search(r"<h1[^>]*>(.*?)</h1>", first.response.text, re.DOTALL)
    assert heading is not None
    assert " ".join(re.sub(r"<[^>]+>", " ", heading.group(1)).split()) == (
        "Question 1 of 2 : Apply for delegated commissioning from 1 April 2017?"
    )
    form = first.form(f"/vote/{token}/choices")
    assert (form.labels, form.radios) == (
        {"q_delegated": labelled},
        {"q_delegated": ["o01", "o02", "o03"]},
    )
    assert form.answers == {
        "question": "delegated",
        "then": "next",
        "voter_name": "",
        "voter_role": "",
    }
    assert form.fields[vote_pages.FORM_FIELD]

    second = post(client, form, **answers(delegated="For"))
    assert second.response.status_code == 200
    assert second.title.startswith("Question 2 of 2: Approve the constitution amendments?")
    form = second.form(f"/vote/{token}/choices")
    assert form.radios == {"q_constitution": ["o01", "o02", "o03"]}
    # The first answer rides along, as its code.
    assert form.answers == {
        "question": "constitution", "then": "next", "q_delegated": "o01",
        "voter_name": "", "voter_role": "",
    }  # fmt: skip

    who = post(client, form, **answers(constitution="Abstain"))
    assert who.response.status_code == 200
    assert "Who is submitting this vote? (optional)" in who.text
    form = who.form(f"/vote/{token}/check")
    assert form.answers == {
        "q_delegated": "o01", "q_constitution": "o03", "voter_name": "", "voter_role": "",
    }  # fmt: skip

    check = post(client, form)
    assert check.response.status_code == 200
    assert "Check your answers before submitting your vote" in check.text
    assert "Apply for delegated commissioning from 1 April 2017? For" in check.text
    assert "Approve the constitution amendments? Abstain" in check.text
    assert "Submitted by Not given" in check.text
    expected = {
        "q_delegated": "o01",
        "q_constitution": "o03",
        "voter_name": "",
        "voter_role": "",
    }
    change = check.form(f"/vote/{token}/choices")
    submit = check.form(f"/vote/{token}/submit")
    assert change.buttons == [
        ("change", "delegated", "Change your answer to question 1"),
        ("change", "constitution", "Change your answer to question 2"),
        ("change", "who", "Change who is submitting this vote"),
    ]
    assert change.answers == expected
    assert (submit.button, submit.answers) == ("Submit vote", expected)
    # Each form's token is bound to the address it posts to.
    assert change.fields[vote_pages.FORM_FIELD] != submit.fields[vote_pages.FORM_FIELD]

    receipt = post(client, submit)
    assert receipt.response.status_code == 200
    assert "Vote recorded" in receipt.text
    assert "Practice 1 (G83001) has voted." in receipt.text
    assert receipt_code(receipt)
    assert f"/ballots/{ballot_id}/check" in receipt.links
    # The print button waits for the script; without it the page says how to print.
    assert re.search(r"<button[^>]* hidden[^>]*data-mandate-print", receipt.response.text)
    assert "To print this page, use your browser's print command" in receipt.text
    assert has_voted(client, token)


def test_back_goes_to_the_step_before_with_the_answers_kept(
    client: TestClient, ballot_id: int, token: str
) -> None:
    first = first_question(client, token)
    assert f"/vote/{token}" in first.links  # the first question's back link: the start page
    second = post(client, first.form(f"/vote/{token}/choices"), **answers(delegated="Against"))
    who = post(client, second.form(f"/vote/{token}/choices"), **answers(constitution="For"))
    assert who.title.startswith("Who is submitting this vote")
    back = go_back(client, who, voter_name="Pat Jones")
    assert back.title.startswith("Question 2 of 2")
    assert back.form(f"/vote/{token}/choices").fields["q_constitution"] == CODES["For"]
    again = go_back(client, back)
    assert again.title.startswith("Question 1 of 2")
    form = again.form(f"/vote/{token}/choices")
    assert form.fields["q_delegated"] == CODES["Against"]
    assert form.fields["voter_name"] == "Pat Jones"


def test_opening_the_pages_never_uses_the_vote(client: TestClient, token: str) -> None:
    for _ in range(3):
        for url in (f"/vote/{token}", f"/vote/{token}/choices"):
            assert client.get(url).status_code == 200
            assert not has_voted(client, token)
    receipt = vote(client, token, **answers(delegated="For", constitution="For"))
    assert receipt_code(receipt)


def test_nothing_is_recorded_before_the_final_submit(
    client: TestClient, db: Engine, secretariat: dict[str, str], ballot_id: int, token: str
) -> None:
    check = check_page(client, token, **answers(delegated="Against", constitution="For"))
    post(client, check.form(f"/vote/{token}/choices"))
    check_page(client, token, **answers(delegated="For", constitution="For"), voter_name="Pat")
    assert not has_voted(client, token)
    assert ballot_box_rows(db) == 0
    assert turnout_voted(client, ballot_id, secretariat) == 0

    post(client, check.form(f"/vote/{token}/submit"))
    assert has_voted(client, token)
    assert ballot_box_rows(db) == 1
    assert turnout_voted(client, ballot_id, secretariat) == 1


def test_unanswered_question_shows_an_error_summary_that_takes_focus(
    client: TestClient, db: Engine, token: str
) -> None:
    second = post(
        client, first_question(client, token).form(f"/vote/{token}/choices"),
        **answers(delegated="Against"),
    )  # fmt: skip
    page = post(client, second.form(f"/vote/{token}/choices"))
    assert page.response.status_code == 422
    assert page.title.startswith("Error: Question 2 of 2")
    assert "There is a problem Answer this question (Abstain is an answer)" in page.text
    summary = re.search(r'<div class="nhsuk-error-summary"[^>]*>', page.response.text)
    assert summary is not None
    assert 'tabindex="-1"' in summary.group()
    assert "autofocus" in summary.group()
    # The summary links to the first radio button; the error is also beside the radios.
    assert "#q_constitution" in page.links
    assert "q_constitution" in page.ids
    inline = re.search(
        r'<span class="nhsuk-error-message" id="q_constitution-error">(.*?</span>.*?)</span>',
        page.response.text,
        re.DOTALL,
    )
    assert inline is not None
    assert "Error: Answer this question (Abstain is an answer)" in " ".join(
        re.sub(r"<[^>]+>", " ", inline.group(1)).split()
    )
    # What was answered is kept, so only the missing answer needs filling in.
    form = page.form(f"/vote/{token}/choices")
    assert form.fields["q_delegated"] == CODES["Against"]
    assert "q_constitution" not in form.fields
    assert not has_voted(client, token)
    assert ballot_box_rows(db) == 0

    who = post(client, form, **answers(constitution="Abstain"))
    assert who.response.status_code == 200
    check = post(client, who.form(f"/vote/{token}/check"))
    assert check.form(f"/vote/{token}/submit").fields["q_delegated"] == CODES["Against"]


def test_answers_missing_from_the_check_form_send_the_voter_back_to_that_question(
    client: TestClient, db: Engine, token: str
) -> None:
    page = post(client, choices_form(client, token), **answers(delegated="Against"))
    assert page.response.status_code == 422
    assert page.title.startswith("Error: Question 2 of 2")
    assert "There is a problem Answer this question (Abstain is an answer)" in page.text
    form = page.form(f"/vote/{token}/choices")
    assert (form.fields["q_delegated"], form.fields["then"]) == (CODES["Against"], "check")
    check = post(client, form, **answers(constitution="For"))
    assert "Check your answers before submitting your vote" in check.text
    assert ballot_box_rows(db) == 0


def test_change_your_answers_keeps_the_answers_and_who_is_submitting(
    client: TestClient, token: str
) -> None:
    check = check_page(
        client,
        token,
        **answers(delegated="For", constitution="Against"),
        voter_name="Pat Jones",
        voter_role="Practice manager",
    )
    assert "Submitted by Pat Jones, Practice manager" in check.text
    change = check.form(f"/vote/{token}/choices")
    again = post(client, change, change="constitution")
    assert again.response.status_code == 200
    assert again.title.startswith("Question 2 of 2")
    form = again.form(f"/vote/{token}/choices")
    assert form.answers == {
        "question": "constitution",
        "then": "check",
        "q_delegated": CODES["For"],
        # The answer being changed is the checked radio button, not a hidden field.
        "q_constitution": CODES["Against"],
        "voter_name": "Pat Jones",
        "voter_role": "Practice manager",
    }
    # Straight back to the check page, not through the other questions.
    changed = post(client, form, **answers(constitution="Abstain"))
    assert "Check your answers before submitting your vote" in changed.text
    assert changed.form(f"/vote/{token}/submit").fields["q_constitution"] == CODES["Abstain"]
    assert "Approve the constitution amendments? Abstain" in changed.text
    assert "Submitted by Pat Jones, Practice manager" in changed.text

    who = post(client, changed.form(f"/vote/{token}/choices"), change="who")
    form = who.form(f"/vote/{token}/check")
    assert (form.fields["voter_name"], form.fields["voter_role"]) == (
        "Pat Jones",
        "Practice manager",
    )
    renamed = post(client, form, voter_name="Sam Lee")
    assert "Submitted by Sam Lee, Practice manager" in renamed.text
    assert "Approve the constitution amendments? Abstain" in renamed.text
    assert not has_voted(client, token)


def test_answers_travel_only_in_posted_fields(client: TestClient, token: str) -> None:
    start = get(client, f"/vote/{token}")
    form = choices_form(client, token)
    unanswered = post(client, form, **answers(delegated="Against"))
    check = post(client, form, **answers(delegated="Against", constitution="Abstain"))
    changing = post(client, check.form(f"/vote/{token}/choices"))
    receipt = post(client, check.form(f"/vote/{token}/submit"))
    replayed = post(client, check.form(f"/vote/{token}/submit"))
    voted = get(client, f"/vote/{token}")
    pages = [start, unanswered, check, changing, receipt, replayed, voted]
    assert [p.response.status_code for p in pages] == [200, 422, 200, 200, 200, 409, 200]

    forms = [f for p in pages for f in p.forms]
    assert len(forms) == 4
    assert {f.method for f in forms} == {"post"}
    # The token is random and could spell anything, so it is taken out before looking.
    urls = [u for p in pages for u in [*p.links, *(f.action for f in p.forms)]]
    urls = [u.replace(token, "{token}") for u in urls]
    assert "/vote/{token}/submit" in urls
    for url in urls:
        assert "?" not in url
        assert "q_" not in url.partition("#")[0]
        assert not any(option in url for option in OPTIONS), url
    for page in pages:
        assert "location" not in page.response.headers
    assert not client.cookies


def test_every_voter_page_forbids_referrers_caching_and_cookies(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    doc = {"title": "Proposal", "file": "proposal.md", "content_base64": "IyBQcm9wb3NhbAo="}
    ballot_id = factories.open_ballot(client, secretariat, documents=[doc])
    token, replaced = factories.token_for("G83001"), factories.token_for("G83002")
    client.post(f"/api/v1/ballots/{ballot_id}/voters/G83002/reissue", headers=secretariat)
    complete = answers(delegated="For", constitution="For")
    check, choices, submit = (f"/vote/{token}/{a}" for a in ("check", "choices", "submit"))
    seen = [
        (200, client.get(f"/vote/{token}")),
        (200, client.get(f"/vote/{token}/choices")),
        (200, client.get(f"/vote/{token}/documents/0")),
        (404, client.get(f"/vote/{token}/documents/1")),
        (403, client.post(check, data=complete)),
        (422, client.post(check, data={**answers(delegated="For"), **signed(check)})),
        (200, client.post(check, data={**complete, **signed(check)})),
        (200, client.post(choices, data={**complete, **signed(choices)})),
        (422, client.post(submit, data={**answers(delegated="For"), **signed(submit)})),
        (200, client.post(submit, data={**complete, **signed(submit)})),
        (409, client.post(submit, data={**complete, **signed(submit)})),
        (200, client.get(f"/vote/{token}")),
        (404, client.get("/vote/not-a-real-token-at-all")),
        (404, client.get(f"/vote/{replaced}")),
    ]
    close_and_publish(client, ballot_id, secretariat)
    seen.append((200, client.get(f"/vote/{token}")))
    for status, response in seen:
        assert response.status_code == status, response.url
        assert_voter_page_headers(response)
    assert not client.cookies


def test_receipt_code_is_found_on_the_check_page_after_publishing(
    client: TestClient, secretariat: dict[str, str], ballot_id: int, token: str
) -> None:
    code = receipt_code(vote(client, token, **answers(delegated="For", constitution="Against")))
    vote(client, factories.token_for("G83002"), **answers(delegated="For", constitution="For"))
    close_and_publish(client, ballot_id, secretariat)

    blank = parse(client.get(f"/ballots/{ballot_id}/check"))
    assert blank.response.status_code == 200
    form = blank.form(f"/ballots/{ballot_id}/check")
    assert form.method == "post"
    for typed in (code, code.lower(), code.replace("-", ""), code.lower().replace("-", "")):
        found = post_check(client, form, typed)
        assert "This receipt is in the counted ballot box." in found.text, typed
        assert "not in the ballot box" not in found.text
    missing = post_check(client, form, "0000-0000-0000-0000-0000")
    assert "This receipt code is not in the ballot box." in missing.text
    assert "This receipt is in the counted ballot box." not in missing.text


@pytest.mark.parametrize(
    ("receipt_mode", "shows_choices"),
    [("inclusion_only", False), ("receipt_with_choices", True)],
)
def test_check_page_shows_choices_only_in_receipt_with_choices_mode(
    client: TestClient,
    secretariat: dict[str, str],
    frozen_clock: object,
    receipt_mode: str,
    shows_choices: bool,
) -> None:
    ballot_id = factories.open_ballot(client, secretariat, receipt_mode=receipt_mode)
    token = factories.token_for("G83001")
    code = receipt_code(vote(client, token, **answers(delegated="Against", constitution="Abstain")))
    close_and_publish(client, ballot_id, secretariat)
    form = parse(client.get(f"/ballots/{ballot_id}/check")).form(f"/ballots/{ballot_id}/check")
    found = post_check(client, form, code)
    assert "This receipt is in the counted ballot box." in found.text
    for shown in ("delegated: Against", "constitution: Abstain"):
        assert (shown in found.text) is shows_choices


def test_replayed_submit_is_refused_without_showing_the_first_choice(
    client: TestClient, db: Engine, token: str
) -> None:
    check = check_page(client, token, **answers(delegated="Against", constitution="Abstain"))
    submit = check.form(f"/vote/{token}/submit")
    assert post(client, submit).response.status_code == 200

    for changes in ({}, answers(delegated="For", constitution="For")):
        again = post(client, submit, **changes)
        assert again.response.status_code == 409
        assert "This practice has already voted" in again.text
        assert "Against" not in again.response.text
        assert "Abstain" not in again.response.text
        assert not RECEIPT_CODE.search(again.text)
    assert ballot_box_rows(db) == 1


def test_tampered_option_is_refused_and_nothing_is_recorded(
    client: TestClient, db: Engine, secretariat: dict[str, str], ballot_id: int, token: str
) -> None:
    check = check_page(client, token, **answers(delegated="For", constitution="For"))
    submit = check.form(f"/vote/{token}/submit")
    refused = post(client, submit, q_delegated="Maybe-later")
    assert refused.response.status_code == 422
    assert "not one of the options: For, Against, Abstain" in refused.text
    assert "Maybe-later" not in refused.response.text
    extra = post(client, submit, q_merger="For")
    assert extra.response.status_code == 422
    assert "there is no such question" in extra.text

    tampered_check = post(
        client,
        choices_form(client, token),
        **answers(constitution="For"),
        q_delegated="Maybe-later",
    )
    assert tampered_check.response.status_code == 422
    assert "There is a problem Not one of the options: For, Against, Abstain" in (
        tampered_check.text
    )
    assert "Maybe-later" not in tampered_check.response.text

    assert not has_voted(client, token)
    assert ballot_box_rows(db) == 0
    assert turnout_voted(client, ballot_id, secretariat) == 0
    assert post(client, submit).response.status_code == 200


def test_voter_name_and_role_go_to_the_turnout_never_the_ballot_box(
    client: TestClient, secretariat: dict[str, str], ballot_id: int, token: str
) -> None:
    vote(
        client,
        token,
        **answers(delegated="For", constitution="Against"),
        voter_name="Pat Jones",
        voter_role="Practice manager",
    )
    turnout = client.get(f"/api/v1/ballots/{ballot_id}/turnout", headers=secretariat).json()
    voted = [p for p in turnout["practices"] if p["voted_at"]]
    assert [(p["ods_code"], p["voted_by_name"], p["voted_by_role"]) for p in voted] == [
        ("G83001", "Pat Jones", "Practice manager")
    ]
    close_and_publish(client, ballot_id, secretariat)
    box = client.get(f"/api/v1/ballots/{ballot_id}/ballot-box").json()
    assert box["ballots"][0]["choices"] == {"delegated": "For", "constitution": "Against"}
    assert "Pat Jones" not in str(box)
    assert "Practice manager" not in str(box)


def test_already_voted_page_says_when_never_how(client: TestClient, token: str) -> None:
    vote(client, token, **answers(delegated="Against", constitution="Abstain"))
    for url in (f"/vote/{token}", f"/vote/{token}/choices"):
        page = get(client, url)
        assert page.response.status_code == 200
        assert (
            "A vote was recorded for your practice at 12:00pm on Thursday 10 November 2016."
            in page.text
        )
        assert "Against" not in page.response.text
        assert "Abstain" not in page.response.text
        assert page.forms == []
        assert f"/vote/{token}/choices" not in page.links


def test_replaced_link_gets_the_answer_an_unknown_link_gets(
    client: TestClient, secretariat: dict[str, str], ballot_id: int
) -> None:
    old = factories.token_for("G83002")
    # The voter has the check page open when the link is replaced.
    check = check_page(client, old, **answers(delegated="For", constitution="For"))
    response = client.post(
        f"/api/v1/ballots/{ballot_id}/voters/G83002/reissue", headers=secretariat
    )
    assert response.status_code == 200
    unknown = get(client, "/vote/not-a-real-token-at-all")
    for page in (
        get(client, f"/vote/{old}"),
        get(client, f"/vote/{old}/choices"),
        post(client, check.form(f"/vote/{old}/submit")),
        post(client, check.form(f"/vote/{old}/choices")),
    ):
        assert page.response.status_code == 404
        assert page.response.headers["content-type"].startswith("text/html")
        assert "replaced by a newer link" in page.text
        assert page.response.content == unknown.response.content
    [new] = [t for t in factories.sent_links()["G83002"] if t != old]
    assert get(client, f"/vote/{new}").response.status_code == 200
    assert not has_voted(client, new)


def test_not_yet_open_page_says_when_voting_opens(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    clock.freeze(factories.OPENS - timedelta(days=2))
    factories.open_ballot(client, secretariat)
    token = factories.token_for("G83001")
    for url in (f"/vote/{token}", f"/vote/{token}/choices"):
        page = get(client, url)
        assert page.response.status_code == 200
        assert "Voting has not started yet. It opens at 9:00am on Monday 7 November 2016" in (
            page.text
        )
        assert page.forms == []
    url = f"/vote/{token}/submit"
    refused = post(
        client,
        Form("post", url, fields=signed(url)),
        **answers(delegated="For", constitution="For"),
    )
    assert refused.response.status_code == 409
    assert "Voting opens at 9:00am on Monday 7 November 2016." in refused.text
    assert not has_voted(client, token)
    clock.freeze(factories.OPENS)
    assert receipt_code(vote(client, token, **answers(delegated="For", constitution="For")))


def test_closed_page_says_whether_the_practice_voted_never_how(
    client: TestClient, secretariat: dict[str, str], ballot_id: int, token: str
) -> None:
    vote(client, token, **answers(delegated="Against", constitution="Abstain"))
    clock.freeze(factories.CLOSES)
    voted = get(client, f"/vote/{token}")
    assert voted.response.status_code == 200
    assert "A vote was recorded for your practice at 12:00pm on Thursday 10 November 2016." in (
        voted.text
    )
    assert "Voting closed at 5:00pm on Friday 25 November 2016." in voted.text
    assert "Against" not in voted.response.text
    assert "Abstain" not in voted.response.text
    did_not = get(client, f"/vote/{factories.token_for('G83002')}")
    assert "No vote was recorded for your practice." in did_not.text
    assert "A vote was recorded" not in did_not.text
    for page in (voted, did_not):
        assert page.forms == []
    url = f"/vote/{factories.token_for('G83002')}/submit"
    late = post(
        client,
        Form("post", url, fields=signed(url)),
        **answers(delegated="For", constitution="For"),
    )
    assert late.response.status_code == 409
    assert "Voting on this ballot closed at 5:00pm on Friday 25 November 2016." in late.text


def test_published_page_shows_the_result(
    client: TestClient, secretariat: dict[str, str], ballot_id: int, token: str
) -> None:
    vote(client, token, **answers(delegated="For", constitution="Against"))
    vote(client, factories.token_for("G83002"), **answers(delegated="For", constitution="For"))
    vote(
        client,
        factories.token_for("G83003"),
        **answers(delegated="Against", constitution="Against"),
    )
    close_and_publish(client, ballot_id, secretariat)
    page = get(client, f"/vote/{token}")
    assert page.response.status_code == 200
    assert "A vote was recorded for your practice" in page.text
    assert "Result 3 of 9 practices voted." in page.text
    assert "Question For Against Outcome delegated 2 1 carried constitution 1 2" in page.text
    assert f"/ballots/{ballot_id}/check" in page.links


def test_unknown_link_is_one_404_page_that_also_suggests_a_newer_link(
    client: TestClient, ballot_id: int
) -> None:
    for url in ("/vote/not-a-real-token-at-all", "/vote/not-a-real-token-at-all/choices"):
        page = get(client, url)
        assert page.response.status_code == 404
        assert page.response.headers["content-type"].startswith("text/html")
        assert page.title.startswith("This voting link is not valid")
        assert "it may have been replaced by a newer link" in page.text
        assert "use the link in the most recent email about this ballot" in page.text


def test_document_link_returns_the_bytes_the_ballot_declares(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object
) -> None:
    content = "# The proposal\n\nApply for delegated commissioning — in full.\n".encode()
    doc = {
        "title": "The proposal in full",
        "file": "proposal.md",
        "content_base64": base64.b64encode(content).decode(),
    }
    factories.open_ballot(client, secretariat, documents=[doc])
    token = factories.token_for("G83001")
    start = get(client, f"/vote/{token}")
    assert "Read before you vote The proposal in full" in start.text
    assert f"/vote/{token}/documents/0" in start.links

    response = client.get(f"/vote/{token}/documents/0")
    assert response.status_code == 200
    assert_voter_page_headers(response)
    [declared] = client.get(f"/api/v1/vote/{token}").json()["documents"]
    assert response.content == content
    assert hashlib.sha256(response.content).hexdigest() == declared["sha256"]
    assert client.get(f"/vote/{token}/documents/1").status_code == 404
    assert not has_voted(client, token)


def test_reposted_choices_offer_no_submit_once_voted_or_closed(
    client: TestClient, token: str
) -> None:
    # The pages are opened within the hour before voting closes: their forms are still valid.
    clock.freeze(factories.CLOSES - timedelta(hours=1))
    form = choices_form(client, token)
    other = choices_form(client, factories.token_for("G83002"))
    vote(client, token, **answers(delegated="Against", constitution="Abstain"))
    # The back button re-posts the choices: nothing may offer a vote that cannot be cast.
    voted = post(client, form, **answers(delegated="For", constitution="For"))
    clock.freeze(factories.CLOSES)
    closed = post(client, other, **answers(delegated="For", constitution="For"))
    assert "A vote was recorded for your practice" in voted.text
    assert "No vote was recorded for your practice." in closed.text
    for page in (voted, closed):
        assert page.response.status_code == 200
        assert "Check your answers" not in page.text
        assert page.forms == []


@pytest.mark.parametrize(
    ("mode", "says"),
    [
        ("inclusion_only", "nobody, you included, can use it to prove how your practice voted"),
        ("receipt_with_choices", "anyone who has your receipt code can see how your practice"),
    ],
)
def test_voter_is_told_what_the_receipt_mode_lets_a_receipt_prove(
    client: TestClient, secretariat: dict[str, str], frozen_clock: object, mode: str, says: str
) -> None:
    factories.open_ballot(client, secretariat, receipt_mode=mode)
    token = factories.token_for("G83001")
    check = check_page(client, token, **answers(delegated="For", constitution="For"))
    assert says in " ".join(check.text.split())
    receipt = post(client, check.form(f"/vote/{token}/submit"))
    assert says in " ".join(receipt.text.split())
