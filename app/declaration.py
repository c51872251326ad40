"""The declaration of result: one or two A4 pages a CCG can attach to its application, as HTML
and as PDF, made from the facts of a published ballot (pure: no database)."""

import bisect
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from fpdf import FPDF, FontFace
from fpdf.enums import XPos, YPos
from jinja2 import Environment, PackageLoader, StrictUndefined

from app import clock, counting


@dataclass(frozen=True)
class Practice:
    """A line of the turnout register: whether and when the practice voted, never how."""

    ods_code: str
    name: str
    locality: str
    voted_at: datetime | None


@dataclass(frozen=True)
class Undelivered:
    """A practice none of whose invitations was confirmed delivered (accepted by the relay)."""

    ods_code: str
    name: str
    addresses: list[str]


@dataclass(frozen=True)
class Attestation:
    """A countersignature over the bundle's fingerprint, made with the attester's own key."""

    name: str
    capacity: str
    statement: str
    attested_at: datetime
    key_fingerprint: str


@dataclass(frozen=True)
class Facts:
    reference: str
    title: str
    organisation_name: str
    organisation_ods_code: str
    receipt_mode: str
    opens_at: datetime
    closes_at: datetime
    opened_at: datetime
    closed_at: datetime
    published_at: datetime
    close_extended_reason: str | None
    # The frozen ballot definition (questions, rules, consultations, governance, documents).
    definition: dict[str, Any]
    # The published result: eligible, ballots_cast, constitution_ref, questions (as counted).
    result: dict[str, Any]
    practices: list[Practice]
    undelivered: list[Undelivered]
    attestations: list[Attestation]
    # SHA-256 of the bundle's evidence record, which every countersignature signs.
    fingerprint: str
    signing_key_fingerprint: str
    software_version: str


# The NHS England pro forma's wording for the membership's half of the agreement.
PRO_FORMA = (
    "The membership of {organisation} have seen and agreed to all proposed arrangements in "
    "support of taking on delegated commissioning."
)
RECORDED = "as recorded by the secretariat"
MET, NOT_MET, NOT_RECORDED = "met", "not met", "not recorded"
VERIFY_COMMAND = "mandate verify BUNDLE.zip --key SERVICE_PUBLIC_KEY"

_OUTCOME = {"carried": "Carried", "not_carried": "Not carried", "quorum_not_met": "Quorum not met"}
_OUTCOME_VERB = {
    "carried": "was carried",
    "not_carried": "was not carried",
    "quorum_not_met": "did not reach quorum",
}
_RECEIPT_MODES = {
    "inclusion_only": (
        "Receipts and choices are published separately and unlinked: each practice can check "
        "that its ballot was counted, but nobody can prove how a practice voted."
    ),
    "receipt_with_choices": (
        "Each receipt is published with its choices, so a receipt proves how a practice voted "
        "to whoever sees it."
    ),
}


@dataclass(frozen=True)
class Check:
    """One GPC key point of the readiness checklist: met, not met or not recorded."""

    point: str
    state: str
    evidence: str


@dataclass(frozen=True)
class QuestionView:
    number: int
    text: str
    options: list[str]
    # Rows of the counts table: a label, then one figure per option, ballots cast, eligible.
    rows: list[list[str]]
    bar: str
    quorum: str
    threshold: str
    localities: list[str]
    outcome: str


@dataclass(frozen=True)
class Contents:
    """Everything the declaration says, worked out once so the HTML and the PDF agree."""

    title: str
    organisation: str
    period: str
    extension: str | None
    eligible: int
    cast: int
    turnout: str
    published: str
    constitution_ref: str
    weighting: str | None
    questions: list[QuestionView]
    membership: str
    governing_body: str
    summary: str
    consultations: list[tuple[str, str, str]]
    checklist: list[Check]
    undelivered: list[str]
    undelivered_note: str
    receipt_mode: str
    challenge: str
    attestations: list[str]
    fingerprint: str
    key_advice: str
    signatories: list[tuple[str, str | None]]
    by_day: list[tuple[str, int]]
    by_locality: list[tuple[str, int, int]]
    footer: str


def render_html(facts: Facts) -> str:
    """The declaration as one standalone, printable HTML page."""
    template = _environment().get_template("declaration.html")
    return template.render(c=contents(facts), verify_command=VERIFY_COMMAND)


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("app", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def contents(facts: Facts) -> Contents:
    """Work out every statement, figure and chart series the declaration shows."""
    governance = facts.definition.get("governance") or {}
    rules = counting.Rules.model_validate(facts.definition["rules"])
    cast, eligible = facts.result["ballots_cast"], facts.result["eligible"]
    return Contents(
        title=facts.title,
        organisation=f"{facts.organisation_name} (ODS code {facts.organisation_ods_code})",
        period=f"{clock.london(facts.opens_at)} to {clock.london(facts.closes_at)}",
        extension=(
            f"The closing time was extended: {facts.close_extended_reason}"
            if facts.close_extended_reason
            else None
        ),
        eligible=eligible,
        cast=cast,
        turnout=percent(cast, eligible),
        published=clock.london(facts.published_at),
        constitution_ref=facts.result["constitution_ref"],
        weighting=_weighting(rules),
        questions=[_question_view(rules, n, q, c) for n, q, c in _questions(facts)],
        membership=membership_statement(facts),
        governing_body=_governing_body(governance),
        summary=summary_line(facts),
        consultations=[
            (_day_text(day), c["body"], c["summary"]) for day, c in _consultations(facts)
        ],
        checklist=readiness_checklist(facts),
        undelivered=[
            f"{u.name} ({u.ods_code}): {', '.join(u.addresses)}" for u in facts.undelivered
        ],
        undelivered_note=(
            "No invitation to these practices was confirmed delivered (accepted by the mail relay):"
            if facts.undelivered
            else "Every practice had at least one invitation accepted by the mail relay."
        ),
        receipt_mode=_RECEIPT_MODES[facts.receipt_mode],
        challenge=challenge_statement(facts),
        attestations=(
            [_attestation(a) for a in facts.attestations] or ["No countersignature recorded yet."]
        ),
        fingerprint=grouped(facts.fingerprint),
        key_advice=(
            f"The service's signing key has the fingerprint "
            f"{grouped(facts.signing_key_fingerprint)}. Get the key independently of the "
            "bundle, from the CCG's published copy: a key taken from the bundle itself proves "
            "nothing."
        ),
        signatories=[
            ("Returning officer (ran the count)", governance.get("returning_officer")),
            ("Scrutineer", governance.get("scrutineer")),
        ],
        by_day=[(f"{day.day} {day:%b}", voted) for day, voted in turnout_by_day(facts)],
        by_locality=turnout_by_locality(facts),
        footer=f"Reference {facts.reference} · Mandate {facts.software_version}",
    )


def summary_line(facts: Facts) -> str:
    """One line a CCG can paste into NHS England's checklist."""
    cast, eligible = facts.result["ballots_cast"], facts.result["eligible"]
    period = _day_range(_day(facts.opens_at), _day(facts.closes_at))
    questions = "; ".join(
        f"question {n} {_OUTCOME[c['outcome']].lower()} ({_tally(q['options'], c, facts)})"
        for n, q, c in _questions(facts)
    )
    return (
        f"Formal vote of member practices of {facts.organisation_name}, {period}: {cast} of "
        f"{eligible} practices voted ({percent(cast, eligible)}); {questions}."
    )


def membership_statement(facts: Facts) -> str:
    """The pro forma's membership sentence where every question carried; else why not."""
    failed = [
        f"question {n} {_OUTCOME_VERB[c['outcome']]}"
        for n, _, c in _questions(facts)
        if c["outcome"] != "carried"
    ]
    if not failed:
        return PRO_FORMA.format(organisation=facts.organisation_name)
    return (
        f"The membership of {facts.organisation_name} did not give its agreement to all "
        f"proposed arrangements in support of taking on delegated commissioning: "
        f"{_joined(failed)}."
    )


def readiness_checklist(facts: Facts) -> list[Check]:
    """The GPC key points, each met, not met or not recorded, with its evidence."""
    return [
        _members_consulted(facts),
        _lmc_consulted(facts),
        _constitution_amended(facts),
        _formal_vote(facts),
        _deadline_met(facts),
    ]


def challenge_statement(facts: Facts) -> str:
    """How and by when a member practice can challenge the result."""
    governance = facts.definition.get("governance") or {}
    contact = governance.get("challenge_contact") or facts.definition["organisation"].get("contact")
    whom = contact or "the CCG"
    days = governance.get("challenge_days")
    if days is None:
        return (
            "This ballot sets no deadline for challenging the result. To raise a concern "
            f"about it, contact {whom}."
        )
    until = _day(facts.published_at) + timedelta(days=days)
    return (
        f"A member practice can challenge the result until {_day_text(until)} "
        f"({_plural(days, 'day')} after publication) by contacting {whom}."
    )


def turnout_by_day(facts: Facts) -> list[tuple[date, int]]:
    """Practices voted by the end of each day of the ballot period (London days)."""
    first, last = _day(facts.opens_at), _day(facts.closes_at)
    voted = sorted(_day(p.voted_at) for p in facts.practices if p.voted_at is not None)
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    return [(day, bisect.bisect_right(voted, day)) for day in days]


def turnout_by_locality(facts: Facts) -> list[tuple[str, int, int]]:
    """(locality, practices voted, practices eligible), by locality name."""
    localities = sorted({p.locality for p in facts.practices})
    return [
        (
            locality,
            sum(1 for p in facts.practices if p.locality == locality and p.voted_at is not None),
            sum(1 for p in facts.practices if p.locality == locality),
        )
        for locality in localities
    ]


def percent(part: int, whole: int) -> str:
    """A whole percentage, never rounded up to 100% nor down to 0% when that would mislead."""
    if whole <= 0:
        return "0%"
    value = (200 * part + whole) // (2 * whole)
    if part < whole:
        value = min(value, 99)
    if part > 0:
        value = max(value, 1)
    return f"{value}%"


def grouped(fingerprint: str) -> str:
    """A hex fingerprint in groups of four for reading aloud; anything else as given."""
    if not re.fullmatch(r"[0-9a-fA-F]+", fingerprint):
        return fingerprint
    return " ".join(fingerprint[i : i + 4] for i in range(0, len(fingerprint), 4))


def _day_text(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def _day_range(first: date, last: date) -> str:
    """A period such as 7 to 25 November 2016, or 28 October to 4 November 2016."""
    if first == last:
        return _day_text(first)
    if (first.year, first.month) == (last.year, last.month):
        return f"{first.day} to {_day_text(last)}"
    if first.year == last.year:
        return f"{first.day} {first:%B} to {_day_text(last)}"
    return f"{_day_text(first)} to {_day_text(last)}"


def _day(value: date | str) -> date:
    """A calendar day: London's for an instant, else the date given (or its ISO text)."""
    if isinstance(value, datetime):
        return value.astimezone(clock.LONDON).date()
    return value if isinstance(value, date) else date.fromisoformat(value)


def _questions(facts: Facts) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(number, question as defined, question as counted), in the definition's order."""
    counted = {c["question_id"]: c for c in facts.result["questions"]}
    return [(n, q, counted[q["id"]]) for n, q in enumerate(facts.definition["questions"], 1)]


def _weighted(facts: Facts) -> bool:
    return bool(facts.definition["rules"].get("weighting") == "per_patients")


def _tally(options: list[str], counted: dict[str, Any], facts: Facts) -> str:
    counts = counted["counts"]
    practices = ", ".join(f"{o} {counts[o]['practices']}" for o in options)
    if not _weighted(facts):
        return practices
    votes = ", ".join(f"{o} {counts[o]['votes']:,}" for o in options)
    return f"practices: {practices}; weighted votes: {votes}"


def _question_view(
    rules: counting.Rules, number: int, question: dict[str, Any], counted: dict[str, Any]
) -> QuestionView:
    options, counts = question["options"], counted["counts"]
    rows = [["Practices", *(str(counts[o]["practices"]) for o in options)]]
    rows[0] += [str(counted["cast"]["practices"]), str(counted["eligible"]["practices"])]
    if rules.weighting is counting.Weighting.per_patients:
        votes = [f"{counts[o]['votes']:,}" for o in options]
        cast, eligible = counted["cast"]["votes"], counted["eligible"]["votes"]
        rows.append(["Weighted votes", *votes, f"{cast:,}", f"{eligible:,}"])
    # Describe the rules the question was counted under, as the result recorded them.
    resolved = counting.ResolvedRules.model_validate(counted["rules"])
    return QuestionView(
        number=number,
        text=question["text"],
        options=options,
        rows=rows,
        bar=rules.describe(resolved),
        quorum=_quorum(counted),
        threshold=f"Threshold {MET if counted['threshold_met'] else NOT_MET}.",
        localities=[
            _locality(name, local, options)
            for name, local in sorted((counted.get("localities") or {}).items())
        ],
        outcome=_OUTCOME[counted["outcome"]],
    )


def _locality(name: str, local: dict[str, Any], options: list[str]) -> str:
    counts = ", ".join(f"{o} {local['counts'][o]['practices']}" for o in options)
    state = MET if local["met"] else NOT_MET
    return f"{name}: {state} ({counts}; {local['eligible']['practices']} eligible)"


def _quorum(counted: dict[str, Any]) -> str:
    quorum = counted["rules"]["quorum"]
    if quorum is None:
        return "No quorum was set."
    basis = quorum["basis"]
    cast, eligible = counted["cast"][basis], counted["eligible"][basis]
    what = "eligible practices voted" if basis == "practices" else "eligible weighted votes cast"
    state = MET if counted["quorum_met"] else NOT_MET
    return f"Quorum {state}: {cast:,} of {eligible:,} {what} on this question."


def _weighting(rules: counting.Rules) -> str | None:
    if rules.weighting is not counting.Weighting.per_patients:
        return None
    listed = rules.list_size_date
    return (
        f"Votes weighted by list size: one vote per {rules.patients_per_vote:,} registered "
        f"patients (at least one per practice), list sizes from {rules.list_size_source}"
        + (f" of {_day_text(listed)}." if listed else ".")
    )


def _governing_body(governance: dict[str, Any]) -> str:
    minute = governance.get("governing_body_minute")
    if not minute:
        return "The governing body's agreement, a separate decision: not recorded."
    return f"The governing body's agreement, a separate decision: minute {minute} ({RECORDED})."


def _consultations(facts: Facts) -> list[tuple[date, dict[str, Any]]]:
    recorded = [(_day(c["date"]), c) for c in facts.definition.get("consultations") or []]
    return sorted(recorded, key=lambda pair: pair[0])


def _consulted(facts: Facts, kind: str) -> list[date]:
    return [day for day, c in _consultations(facts) if c.get("kind", "other") == kind]


def _members_consulted(facts: Facts) -> Check:
    point = "Member practices consulted"
    days = _consulted(facts, "members")
    if not days:
        return Check(point, NOT_RECORDED, "No consultation of the member practices is recorded.")
    return Check(point, MET, f"Member practices consulted on {_dates(days)} ({RECORDED}).")


def _lmc_consulted(facts: Facts) -> Check:
    point = "LMC consulted before the ballot opened"
    opened = _day(facts.opens_at)
    days = _consulted(facts, "lmc")
    before = [day for day in days if day < opened]
    if not before:
        later = f" The LMC is recorded as consulted on {_dates(days)}." if days else ""
        return Check(
            point,
            NOT_RECORDED,
            f"No LMC consultation before {_day_text(opened)} is recorded.{later}",
        )
    elapsed = (opened - before[-1]).days
    evidence = (
        f"LMC consulted on {_dates(before)} ({RECORDED}); {_plural(elapsed, 'day')} from the "
        f"latest to the opening of the ballot on {_day_text(opened)}."
    )
    minimum = (facts.definition.get("governance") or {}).get("lmc_minimum_days")
    if minimum is None:
        return Check(point, MET, f"{evidence} No minimum interval is set.")
    state = MET if elapsed >= minimum else NOT_MET
    local = f" The CCG's own minimum, a local setting, is {_plural(minimum, 'day')}."
    return Check(point, state, evidence + local)


def _constitution_amended(facts: Facts) -> Check:
    point = "Constitution amendment put to the members and carried"
    amending = [(n, c["outcome"]) for n, q, c in _questions(facts) if q.get("amends_constitution")]
    if not amending:
        return Check(
            point,
            NOT_RECORDED,
            "No question in this ballot is marked as amending the constitution.",
        )
    carried = all(outcome == "carried" for _, outcome in amending)
    said = _joined([f"question {n} {_OUTCOME_VERB[outcome]}" for n, outcome in amending])
    return Check(point, MET if carried else NOT_MET, f"In this ballot, {said}.")


def _formal_vote(facts: Facts) -> Check:
    cast, eligible = facts.result["ballots_cast"], facts.result["eligible"]
    period = _day_range(_day(facts.opens_at), _day(facts.closes_at))
    return Check(
        "Formal vote of member practices held",
        MET,
        f"This ballot, {period}: {cast} of {eligible} practices voted "
        f"({percent(cast, eligible)}); result published at {clock.london(facts.published_at)}.",
    )


def _deadline_met(facts: Facts) -> Check:
    point = "Application deadline met"
    deadline = (facts.definition.get("governance") or {}).get("application_deadline")
    if deadline is None:
        return Check(point, NOT_RECORDED, "No application deadline is recorded.")
    due, published = _day(deadline), _day(facts.published_at)
    return Check(
        point,
        MET if published <= due else NOT_MET,
        f"Result published on {_day_text(published)}; the application deadline is "
        f"{_day_text(due)} ({RECORDED}).",
    )


def _attestation(attestation: Attestation) -> str:
    return (
        f"Result verified by {attestation.name}, {attestation.capacity}, at "
        f"{clock.london(attestation.attested_at)}: “{attestation.statement}” "
        f"Key fingerprint {grouped(attestation.key_fingerprint)}."
    )


def _dates(days: list[date]) -> str:
    return _joined([_day_text(day) for day in days])


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _plural(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


# --- PDF -----------------------------------------------------------------------------------

_LATIN1 = str.maketrans(
    {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": ",",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2026": "...",
        "\u2022": "\u00b7",
        "\u2713": "v",
        "\u2714": "v",
        "\u2717": "x",
        "\u2718": "x",
        "\u2265": ">=",
        "\u2264": "<=",
        "\u00a0": " ",
        "\u2009": " ",
        "\u202f": " ",
        "\u200b": "",
    }
)
_BLUE = (0, 94, 184)
_GREY = (216, 221, 224)
_TEXT = (33, 43, 50)
_STATE_COLOURS = {MET: (0, 127, 59), NOT_MET: (213, 40, 27), NOT_RECORDED: (76, 98, 114)}
_LINE = 4.0  # mm per line of 9pt text


def latin1(text: str) -> str:
    """Text the PDF core fonts can draw: common punctuation mapped, anything else "?"."""
    text = unicodedata.normalize("NFC", text).translate(_LATIN1)
    return text.encode("latin-1", "replace").decode("latin-1")


class _Document(FPDF):
    """An A4 page with the declaration's footer on every page."""

    def __init__(self, footer: str) -> None:
        super().__init__(orientation="portrait", unit="mm", format="A4")
        self.footer_text = latin1(footer)
        self.set_margins(left=16, top=14, right=16)
        self.set_auto_page_break(auto=True, margin=15)

    def footer(self) -> None:
        self.set_y(-11)
        self.set_font("helvetica", size=7.5)
        self.set_text_color(*_STATE_COLOURS[NOT_RECORDED])
        self.cell(0, 4, self.footer_text)
        self.set_x(self.l_margin)
        self.cell(0, 4, f"Page {self.page_no()} of {{nb}}", align="R")


def render_pdf(facts: Facts) -> bytes:
    """The declaration on one or two A4 pages; the same facts give the same bytes."""
    c = contents(facts)
    pdf = _Document(c.footer)
    # Stamped with the publication time rather than now, so a rebuild is byte-identical.
    pdf.set_creation_date(facts.published_at)
    pdf.set_title(latin1(f"Declaration of result: {c.title}"))
    pdf.set_author(latin1(facts.organisation_name))
    pdf.set_creator(latin1(f"Mandate {facts.software_version}"))
    pdf.set_lang("en-GB")
    pdf.add_page()
    _pdf_result(pdf, c)
    _pdf_questions(pdf, c)
    _pdf_charts(pdf, c)
    _pdf_evidence(pdf, c)
    _pdf_signatures(pdf, c)
    return bytes(pdf.output())


def _pdf_result(pdf: FPDF, c: Contents) -> None:
    _text(pdf, "Declaration of result", size=17, style="B", colour=_BLUE, height=8)
    _text(pdf, c.title, size=11.5, style="B", height=5.5)
    _text(pdf, c.organisation, size=10, height=5.5)
    pdf.ln(1.5)
    rows = [
        ("Ballot period", c.period + (f". {c.extension}" if c.extension else "")),
        ("Eligible practices", str(c.eligible)),
        ("Ballots cast", str(c.cast)),
        ("Turnout", c.turnout),
        ("Result published", c.published),
        ("Rules set by", f"{c.constitution_ref} ({RECORDED})"),
    ]
    if c.weighting:
        rows.append(("Weighting", c.weighting))
    _table(pdf, rows, widths=(1, 3.6), headings=False)
    pdf.ln(2)
    _text(pdf, c.membership, style="B", size=10, height=4.8)
    _text(pdf, c.governing_body)


def _pdf_questions(pdf: FPDF, c: Contents) -> None:
    for q in c.questions:
        _heading(pdf, f"Question {q.number}: {q.outcome.lower()}")
        _text(pdf, q.text, style="I")
        pdf.ln(1)
        headings = ["", *q.options, "Ballots cast", "Eligible"]
        widths = (2.2, *(1.0 for _ in q.options), 1.3, 1.1)
        _table(pdf, [headings, *q.rows], widths=widths, align="RIGHT")
        pdf.ln(1)
        _text(pdf, f"{q.bar} {q.quorum} {q.threshold}")
        if q.localities:
            _text(pdf, f"By locality: {'; '.join(q.localities)}.")
        _text(pdf, f"Outcome: {q.outcome}", style="B")
    _heading(pdf, "For NHS England's checklist")
    _text(pdf, c.summary)


def _pdf_charts(pdf: FPDF, c: Contents) -> None:
    rows = max(len(c.by_locality), 1)
    height = max(42.0, 12 + 6.0 * rows)
    _heading(pdf, "Turnout", keep=height)
    top, half = pdf.get_y(), (pdf.epw - 8) / 2
    _chart_by_day(pdf, c, x=pdf.l_margin, y=top, width=half)
    _chart_by_locality(pdf, c, x=pdf.l_margin + half + 8, y=top, width=half)
    pdf.set_xy(pdf.l_margin, top + height)


def _chart_by_day(pdf: FPDF, c: Contents, *, x: float, y: float, width: float) -> None:
    pdf.set_xy(x, y)
    _label(pdf, "Practices voted, running total by day", width, style="B")
    top, height = y + 8, 26.0
    scale = height / max(c.eligible, 1)
    pdf.set_draw_color(*_TEXT)
    pdf.set_line_width(0.2)
    pdf.line(x, top + height, x + width, top + height)
    pdf.set_dash_pattern(dash=0.8, gap=0.8)
    pdf.line(x, top, x + width, top)
    pdf.set_dash_pattern()
    slot = width / max(len(c.by_day), 1)
    pdf.set_fill_color(*_BLUE)
    for n, (_, voted) in enumerate(c.by_day):
        if voted:
            pdf.rect(
                x + n * slot + slot * 0.15,
                top + height - voted * scale,
                slot * 0.7,
                voted * scale,
                style="F",
            )
    pdf.set_xy(x, top - 4)
    _label(pdf, f"{c.eligible} eligible", width, align="R")
    if c.by_day:
        pdf.set_xy(x, top + height + 0.5)
        _label(pdf, c.by_day[0][0], width)
        pdf.set_xy(x, top + height + 0.5)
        _label(pdf, f"{c.by_day[-1][0]}: {c.by_day[-1][1]} voted", width, align="R")


def _chart_by_locality(pdf: FPDF, c: Contents, *, x: float, y: float, width: float) -> None:
    pdf.set_xy(x, y)
    _label(pdf, "Turnout by locality (voted of eligible)", width, style="B")
    label_width, figure_width = 24.0, 25.0
    bar_width = width - label_width - figure_width
    for n, (locality, voted, eligible) in enumerate(c.by_locality):
        row = y + 8 + 6 * n
        pdf.set_xy(x, row)
        _label(pdf, locality, label_width)
        pdf.set_fill_color(*_GREY)
        pdf.rect(x + label_width, row + 0.5, bar_width, 3.5, style="F")
        pdf.set_fill_color(*_BLUE)
        if voted:
            pdf.rect(
                x + label_width, row + 0.5, bar_width * voted / max(eligible, 1), 3.5, style="F"
            )
        pdf.set_xy(x + width - figure_width, row)
        _label(pdf, f"{voted} of {eligible} ({percent(voted, eligible)})", figure_width, align="R")


def _pdf_evidence(pdf: FPDF, c: Contents) -> None:
    # Keep the checklist in one piece: it is the part a reader looks for.
    _heading(pdf, "Readiness against the GPC key points", keep=8 + 10 * len(c.checklist))
    rows = [("Key point", "State", "Evidence")]
    rows += [(check.point, check.state, check.evidence) for check in c.checklist]
    _table(pdf, rows, widths=(1.5, 0.8, 4.2), states=True)
    _heading(pdf, f"Consultation timeline ({RECORDED})")
    if c.consultations:
        _table(pdf, [("Date", "Body", "What happened"), *c.consultations], widths=(1.1, 1.1, 4.3))
    else:
        _text(pdf, "No consultations are recorded.")
    _heading(pdf, "Invitations never confirmed delivered")
    _text(pdf, c.undelivered_note)
    for line in c.undelivered:
        _text(pdf, f"\u2022 {line}")
    _heading(pdf, "Secrecy, challenges and countersignatures")
    for paragraph in [c.receipt_mode, c.challenge, *c.attestations]:
        _text(pdf, paragraph)
        pdf.ln(1)
    _heading(pdf, "How to check this declaration")
    _text(pdf, "Fingerprint of the evidence bundle:")
    _text(pdf, c.fingerprint, font="courier", style="B")
    pdf.ln(1)
    _text(pdf, "Check the bundle offline with:")
    _text(pdf, VERIFY_COMMAND, font="courier")
    pdf.ln(1)
    _text(pdf, c.key_advice)


def _pdf_signatures(pdf: FPDF, c: Contents) -> None:
    _heading(pdf, "Signatures", keep=32)
    top, half = pdf.get_y() + 1, (pdf.epw - 10) / 2
    pdf.set_draw_color(*_TEXT)
    for n, (role, name) in enumerate(c.signatories):
        x = pdf.l_margin + n * (half + 10)
        pdf.set_xy(x, top)
        _label(pdf, role, half, style="B")
        pdf.set_xy(x, top + 5)
        # A name not given in the ballot file is written in by hand, like the signature.
        _label(pdf, f"Name: {name}" if name else "", half)
        captions = ["Signature", "Date"] if name else ["Name", "Signature", "Date"]
        for m, caption in enumerate(captions):
            line_y = top + (17 if name else 12) + 9 * m
            pdf.line(x + 18, line_y, x + half, line_y)
            pdf.set_xy(x, line_y - 4)
            _label(pdf, caption, 18)
    pdf.set_xy(pdf.l_margin, top + 32)


def _heading(pdf: FPDF, text: str, *, keep: float = 16) -> None:
    """A section heading, moved to the next page rather than left alone at a page's foot."""
    if pdf.will_page_break(keep + 8):
        pdf.add_page()
    pdf.ln(2.5)
    _text(pdf, text, size=11, style="B", colour=_BLUE, height=5.5)


def _text(
    pdf: FPDF,
    text: str,
    *,
    size: float = 9,
    style: str = "",
    colour: tuple[int, int, int] = _TEXT,
    height: float = _LINE,
    font: str = "helvetica",
) -> None:
    pdf.set_font(font, style=style, size=size)
    pdf.set_text_color(*colour)
    pdf.multi_cell(0, height, latin1(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _label(pdf: FPDF, text: str, width: float, *, style: str = "", align: str = "L") -> None:
    pdf.set_font("helvetica", style=style, size=8)
    pdf.set_text_color(*_TEXT)
    pdf.cell(width, 4, latin1(text), align=align)


def _table(
    pdf: FPDF,
    rows: Sequence[Sequence[str]],
    *,
    widths: Sequence[float],
    headings: bool = True,
    align: str = "LEFT",
    states: bool = False,
) -> None:
    """A table with light rules; the second column coloured by state when `states`."""
    pdf.set_font("helvetica", size=8.5)
    pdf.set_text_color(*_TEXT)
    pdf.set_draw_color(*_GREY)
    # Table cells are painted with the current fill colour, which the charts leave blue.
    pdf.set_fill_color(255)
    bold = FontFace(emphasis="BOLD")
    with pdf.table(
        col_widths=tuple(widths),
        first_row_as_headings=headings,
        headings_style=FontFace(emphasis="BOLD", color=_TEXT, fill_color=(240, 244, 245)),
        borders_layout="HORIZONTAL_LINES",
        text_align=align,
        v_align="TOP",
        line_height=3.9,
        padding=(0.9, 1.2),
    ) as table:
        for row in rows:
            cells = table.row()
            for n, text in enumerate(row):
                style = None
                if n == 0 and not headings:
                    style = bold
                elif states and n == 1 and text in _STATE_COLOURS:
                    style = FontFace(emphasis="BOLD", color=_STATE_COLOURS[text])
                cells.cell(latin1(text), style=style, align="LEFT" if n == 0 else None)
