"""The declaration of result: one or two A4 pages a CCG can attach to its application, made
from the facts of a published ballot (pure: no database). This module decides what it says and
renders the HTML; app/declaration_pdf.py draws the same words as a PDF."""

import bisect
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from app import clock, counting, tally_key


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
class Scrutinised:
    """A step the scrutineer took, as the audit trail records it: who (account) and when."""

    account: str
    at: datetime


@dataclass(frozen=True)
class Disputed:
    """A dispute as the declaration lists it: when, from which practice, what it says."""

    raised_at: datetime
    practice: str | None
    summary: str
    # Weighed in the "could change" statement: a claim "recorded but did not vote" for a
    # practice the turnout register records as voted.
    weighed: bool


@dataclass(frozen=True)
class Voided:
    """The ballot was declared void: when, why, and the two people who agreed it."""

    at: datetime
    reason: str
    proposed_by: str
    confirmed_by: str


@dataclass(frozen=True)
class Correction:
    """A correction to the roll while the ballot was open: a practice added, or its addresses
    changed, with the reason given and who asked and who approved."""

    kind: str  # "addition" or "addresses"
    ods_code: str
    name: str
    reason: str
    requested_by: str
    at: datetime
    approved_by: str | None = None


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
    # The scrutineer's approval before opening and countersignature of the count before
    # publication (the last of each in the trail).
    approved: Scrutinised | None
    count_countersigned: Scrutinised | None
    # SHA-256 of the bundle's evidence record, which every countersignature signs.
    fingerprint: str
    signing_key_fingerprint: str
    software_version: str
    # When the key holders opened the sealed box; None for a box recorded in clear.
    box_opened_at: datetime | None = None
    # Disputes recorded up to now (they may come after publication), and the numbers of the
    # questions whose outcome reversing the weighed ones could change.
    disputes: list[Disputed] = field(default_factory=list)
    disputes_could_change: list[int] = field(default_factory=list)
    voided: Voided | None = None
    # The commitment the close fixed (the sealed box's SHA-256 and how many it held) and the
    # root of the box as published: hashes a practice kept from the close email can be matched.
    sealed_sha256: str | None = None
    ballots_sealed: int | None = None
    ballot_box_root: str | None = None
    # The roll against the national list as the scrutineer's approval recorded it (checked,
    # commissioner_code, national_list_sha256, findings); None if the approval predates it.
    roll_check: dict[str, Any] | None = None
    roll_corrections: tuple[Correction, ...] = ()


# The NHS England pro forma's wording for the membership's half of the agreement.
PRO_FORMA = (
    "The membership of {organisation} have seen and agreed to all proposed arrangements in "
    "support of taking on delegated commissioning."
)
RECORDED = "as recorded by the secretariat"
NO_ATTESTATION = "No countersignature recorded yet."
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
    ballot_box: str
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
    roll_check_note: str
    roll_findings: list[str]
    corrections_note: str
    corrections: list[str]
    receipt_mode: str
    challenge: str
    disputes: list[str]
    disputes_effect: str
    voided: str | None
    attestations: list[str]
    fingerprint: str
    # (what it is, the hash in groups of four): the box commitments a recipient can match.
    commitments: list[tuple[str, str]]
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
        ballot_box=ballot_box_statement(facts),
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
        undelivered=_undelivered(facts),
        undelivered_note=(
            "No invitation to these practices was confirmed delivered (accepted by the mail relay):"
            if facts.undelivered
            else "Every practice had at least one invitation accepted by the mail relay."
        ),
        roll_check_note=roll_check_statement(facts),
        roll_findings=list((facts.roll_check or {}).get("findings", [])),
        corrections_note=(
            "The roll was corrected while the ballot was open (add-only), each with its reason:"
            if facts.roll_corrections
            else "The roll was not corrected while the ballot was open."
        ),
        corrections=[_correction(c) for c in facts.roll_corrections],
        receipt_mode=_RECEIPT_MODES[facts.receipt_mode],
        challenge=challenge_statement(facts),
        disputes=[_disputed(d) for d in facts.disputes],
        disputes_effect=disputes_statement(facts),
        voided=void_statement(facts),
        attestations=[
            *_scrutiny(facts, governance.get("scrutineer")),
            *(
                [_attestation(a) for a in facts.attestations]
                or ["No countersignature recorded yet."]
            ),
        ],
        fingerprint=grouped(facts.fingerprint),
        commitments=box_commitments(facts),
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


def ballot_box_statement(facts: Facts) -> str:
    """How the box was kept: sealed to a key the service never held, and when it was opened."""
    key = facts.definition.get("tally_key")
    if key is None or facts.box_opened_at is None:
        return "Recorded in clear: this ballot's box was not sealed."
    return (
        "Sealed: each ballot was encrypted when cast to a tally key whose private half the "
        f"service never held, kept in shares by {tally_key.describe_holders(key)}. The box was "
        f"opened with their shares at {clock.london(facts.box_opened_at)}, after the close."
    )


def box_commitments(facts: Facts) -> list[tuple[str, str]]:
    """The hashes that fix the box, labelled as the close email and the trail name them."""
    found = []
    if facts.sealed_sha256 is not None:
        held = f"{facts.ballots_sealed} ballots" if facts.ballots_sealed is not None else "ballots"
        found.append(
            (f"Sealed box fixed at close ({held}), SHA-256:", grouped(facts.sealed_sha256))
        )
    if facts.ballot_box_root is not None:
        found.append(("Root of the ballot box as published:", grouped(facts.ballot_box_root)))
    return found


# The declaration stays one or two pages; deliveries.csv in the bundle lists every message.
UNDELIVERED_SHOWN = 12


def roll_check_statement(facts: Facts) -> str:
    check = facts.roll_check
    if check is None or not check.get("checked"):
        return (
            "The roll was not checked against the national list of GP practices before the "
            "scrutineer approved it."
        )
    findings = check.get("findings", [])
    where = (
        f"Before approval the roll was checked against the national list of GP practices (ODS "
        f"epraccur extract, SHA-256 {str(check.get('national_list_sha256'))[:16]}…) for "
        f"commissioner {check.get('commissioner_code')}"
    )
    if not findings:
        return where + ": nothing was flagged."
    return where + f". The scrutineer approved the roll with these {len(findings)} finding(s):"


def _correction(c: Correction) -> str:
    when = clock.london(c.at)
    if c.kind == "addition":
        return (
            f"{c.name} ({c.ods_code}) added to the roll at {when}, asked for by {c.requested_by} "
            f"and approved by the scrutineer {c.approved_by}: {c.reason}"
        )
    return f"{c.name} ({c.ods_code}): addresses changed at {when} by {c.requested_by}: {c.reason}"


def _undelivered(facts: Facts) -> list[str]:
    lines = [f"{u.name} ({u.ods_code}): {', '.join(u.addresses)}" for u in facts.undelivered]
    if len(lines) > UNDELIVERED_SHOWN:
        more = len(lines) - UNDELIVERED_SHOWN
        lines = [*lines[:UNDELIVERED_SHOWN], f"and {more} more practices: see deliveries.csv."]
    return lines


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
    if facts.voided is not None:
        return (
            f"This ballot was declared void, so it does not record the agreement of the "
            f"membership of {facts.organisation_name} to anything."
        )
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


def void_statement(facts: Facts) -> str | None:
    """That the ballot was declared void, when, why, and by whom; None if it stands."""
    voided = facts.voided
    if voided is None:
        return None
    return (
        f"This ballot was declared void at {clock.london(voided.at)}: {voided.reason} The "
        f"secretariat ({voided.proposed_by}) proposed it and the scrutineer "
        f"({voided.confirmed_by}) confirmed it. The result below is shown as it was published "
        "and does not stand."
    )


def _disputed(d: Disputed) -> str:
    source = d.practice or "Not from one practice"
    claim = (
        " It says a vote was recorded for the practice that it did not cast." if d.weighed else ""
    )
    return f"{_day_text(_day(d.raised_at))}, {source}: “{d.summary}”{claim}"


def disputes_statement(facts: Facts) -> str:
    """Whether reversing every weighed dispute could change any outcome."""
    if not facts.disputes:
        return "No disputes were recorded."
    weighed = sum(1 for d in facts.disputes if d.weighed)
    others = len(facts.disputes) - weighed
    if not weighed:
        return (
            "No dispute says that a vote recorded for a practice was not the practice's own, so "
            "none affects the count automatically; the returning officer and the scrutineer "
            "consider each one."
        )
    rest = ""
    if others:
        which = "The other dispute does" if others == 1 else f"The other {others} disputes do"
        rest = (
            f" {which} not affect the count automatically; the returning officer and the "
            "scrutineer consider them."
        )
    changed = facts.disputes_could_change
    effect = (
        "could change the outcome of " + _joined([f"Q{n}" for n in changed])
        if changed
        else "could not change any outcome"
    )
    return (
        f"{_plural(weighed, 'dispute')} {'says' if weighed == 1 else 'say'} a vote was recorded "
        "for a practice that did not cast it. Removing all those votes, each from whichever "
        f"side would most change the result (and lowering the turnout), {effect}.{rest}"
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
    # The LMC's time to respond runs from when it was first consulted.
    elapsed = (opened - before[0]).days
    evidence = (
        f"LMC consulted on {_dates(before)} ({RECORDED}); {_plural(elapsed, 'day')} from the "
        f"first consultation to the opening of the ballot on {_day_text(opened)}."
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


def _scrutiny(facts: Facts, scrutineer: str | None) -> list[str]:
    who = f"{scrutineer} (account {{}})" if scrutineer else "account {}"
    approved, counted = facts.approved, facts.count_countersigned
    return [
        f"Approved before opening by the scrutineer, {who.format(approved.account)}, at "
        f"{clock.london(approved.at)}: the roll, the questions, the rules and the documents, "
        "exactly as frozen."
        if approved
        else "Not approved by a scrutineer before opening.",
        f"Count verified and countersigned by the scrutineer, {who.format(counted.account)}, at "
        f"{clock.london(counted.at)}, before publication."
        if counted
        else "The count was not countersigned by a scrutineer before publication.",
    ]


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
