"""Disputes: challenges to a ballot, recorded by the secretariat or raised from a practice's
link, and whether reversing them could change any outcome. Never how anyone voted."""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import audit, ballots, clock, counting, declaration, errors, proof, roll, voting
from app.models import Ballot, BallotStatus, Dispute, DisputeChannel, VotingLink

MAX_TEXT = 2000
# What a practice is told once its dispute is recorded.
RECEIVED = (
    "Your dispute has been recorded with the date and your practice's name. The returning "
    "officer and the scrutineer see it, and the declaration of result lists it."
)


def record(
    session: Session,
    *,
    ballot: Ballot,
    text: str,
    channel: DisputeChannel,
    ods_code: str | None = None,
    recorded_by: str | None = None,
    claims_not_voted: bool = False,
) -> Dispute:
    """Record one dispute and its entry in the trail."""
    text = text.strip()
    if not text:
        raise errors.InvalidInput("Say what the dispute is about, in a paragraph.")
    if len(text) > MAX_TEXT:
        raise errors.InvalidInput(
            f"A dispute is one paragraph of at most {MAX_TEXT} characters; this one has "
            f"{len(text)}. Shorten it, or send the rest to the returning officer."
        )
    if ods_code is not None:
        try:
            ods_code = roll.entry(session, ballot=ballot, ods_code=ods_code).ods_code
        except errors.NotFound:
            raise errors.InvalidInput(
                f"No practice with the ODS code {ods_code} is on the roll of ballot "
                f"{ballot.id}; give a practice on the roll, or none if the challenge is not "
                "from one practice.",
                problems=[{"loc": "ods_code", "problem": "not on the roll"}],
            ) from None
    if claims_not_voted and ods_code is None:
        raise errors.InvalidInput(
            "A claim that a vote was recorded for a practice that did not vote must name the "
            "practice (its ODS code)."
        )
    dispute = Dispute(
        ballot_id=ballot.id,
        ods_code=ods_code,
        raised_at=clock.now(),
        text=text,
        channel=channel,
        recorded_by=recorded_by,
        claims_not_voted=claims_not_voted,
    )
    session.add(dispute)
    session.flush()
    # The trail holds the text's hash, not the text: a dispute may name a partner or a patient,
    # and the chain can never change, so personal data put there could never be corrected or
    # erased. The row keeps the text (and the bundles made from it carry it), where it can be;
    # the hash in the trail proves what was recorded.
    audit.append(
        session, ballot=ballot, actor=f"staff:{recorded_by}" if recorded_by else audit.VOTER,
        action="dispute_recorded", dispute_id=dispute.id, ods_code=ods_code,
        channel=str(channel), claims_not_voted=claims_not_voted,
        text_sha256=proof.sha256_hex(text.encode()),
    )  # fmt: skip
    return dispute


def record_by_secretariat(
    session: Session,
    *,
    ballot: Ballot,
    text: str,
    actor: str,
    ods_code: str | None,
    claims_not_voted: bool,
) -> Dispute:
    if ballot.status == BallotStatus.draft:
        raise errors.WrongState(
            f"Ballot {ballot.id} is a draft: nothing has been voted on to dispute yet. Correct "
            "the draft instead."
        )
    return record(
        session, ballot=ballot, text=text, channel=DisputeChannel.secretariat,
        ods_code=ods_code, recorded_by=actor, claims_not_voted=claims_not_voted,
    )  # fmt: skip


def can_raise(v: voting.VoterView) -> bool:
    """A practice raises a dispute from its link once it has voted or voting has ended."""
    return v.practice.voted_at is not None or v.phase in (
        voting.Phase.closed,
        voting.Phase.published,
        voting.Phase.voided,
    )


def raise_from_link(
    session: Session, *, link: VotingLink, text: str, claims_not_voted: bool
) -> Dispute:
    """A practice's own dispute, from its voting link: it names the practice and nothing else."""
    v = voting.view(session, link=link)
    if not can_raise(v):
        raise errors.WrongState(
            "A dispute can be raised once your practice has voted or voting has closed; until "
            "then, vote with this link, or contact the CCG."
        )
    if claims_not_voted and v.practice.voted_at is None:
        raise errors.InvalidInput(
            "No vote is recorded for your practice, so there is no vote to dispute as not yours; "
            "say what is wrong in the text instead.",
            problems=[{"loc": "claims_not_voted", "problem": "no vote is recorded"}],
        )
    return record(
        session, ballot=v.ballot, text=text, channel=DisputeChannel.voter_link,
        ods_code=v.practice.ods_code, claims_not_voted=claims_not_voted,
    )  # fmt: skip


def list_for(session: Session, *, ballot: Ballot) -> list[Dispute]:
    return list(
        session.scalars(select(Dispute).where(Dispute.ballot_id == ballot.id).order_by(Dispute.id))
    )


# --- what the declaration says about them -------------------------------------------------


SUMMARY = 200


def summary(text: str) -> str:
    """The dispute's opening, cut at a word, so the declaration stays short."""
    flat = " ".join(text.split())
    if len(flat) <= SUMMARY:
        return flat
    return flat[:SUMMARY].rsplit(" ", 1)[0] + "…"


def could_change(
    rules: counting.Rules,
    *,
    questions: Sequence[tuple[str, Sequence[str], counting.QuestionRules | None]],
    electors: Sequence[counting.Elector],
    papers: Sequence[counting.Paper],
    removed: Sequence[counting.Elector],
) -> list[str]:
    """The questions whose outcome could differ if these practices' ballots were removed.

    Nobody knows which ballot is a disputed practice's, so each is taken from the box among the
    ballots of its locality and weight, in turn as the one for each option (For, then Against,
    …) where such a ballot exists: the worst case for every side. The recount is the count's
    own code, with the roll unchanged, so quorum and thresholds fall as they would.
    """
    changed = []
    for question_id, options, own in questions:
        resolved = rules.for_question(own)
        scenarios = [
            _without(papers, removed, question_id, _preference(options, side)) for side in options
        ]
        actual, *recounted = (
            counting.count_question(
                resolved, question_id=question_id, options=options, electors=electors, papers=kept
            ).outcome
            for kept in [papers, *scenarios]
        )
        if any(outcome != actual for outcome in recounted):
            changed.append(question_id)
    return changed


def _preference(options: Sequence[str], side: str) -> list[str | None]:
    """Which answers to take first when removing ballots to weaken or strengthen `side`."""
    opposite = {"For": "Against", "Against": "For"}.get(side)
    middle = [o for o in options if o not in (side, opposite)]
    # None: a ballot that does not answer this question, which removing changes nothing for.
    return [side, *middle, None, *([opposite] if opposite else [])]


def _without(
    papers: Sequence[counting.Paper],
    removed: Sequence[counting.Elector],
    question_id: str,
    preference: list[str | None],
) -> list[counting.Paper]:
    pool = list(papers)
    rank = {answer: n for n, answer in enumerate(preference)}
    for elector in removed:
        same = [p for p in pool if (p.locality, p.votes) == (elector.locality, elector.votes)]
        if not same:  # the practice's own ballot is in the box, so this is only defensive
            continue
        taken = min(same, key=lambda p: rank.get(p.choices.get(question_id), len(rank)))
        pool.remove(taken)
    return pool


@dataclass(frozen=True)
class Assessment:
    listed: list[declaration.Disputed]
    # Question numbers (1, 2, …) whose outcome reversing the weighed disputes could change.
    could_change: list[int]


def assess(session: Session, *, ballot: Ballot) -> Assessment:
    """Every dispute of a counted ballot, and what reversing the weighed ones could do."""
    practices = {e.ods_code: e for e in roll.entries(session, ballot=ballot)}
    found = list_for(session, ballot=ballot)
    weighed: dict[str, counting.Elector] = {}
    listed = []
    for d in found:
        practice = practices.get(d.ods_code) if d.ods_code else None
        counts = bool(d.claims_not_voted and practice is not None and practice.voted_at)
        if counts and practice is not None:
            weighed[practice.ods_code] = counting.Elector(practice.locality, practice.votes or 1)
        listed.append(
            declaration.Disputed(
                raised_at=d.raised_at,
                practice=f"{practice.name} ({practice.ods_code})" if practice else None,
                summary=summary(d.text),
                weighed=counts,
            )
        )
    if not weighed or ballot.result is None:
        return Assessment(listed, [])
    questions = ballots.questions_of(ballot)
    papers = [
        counting.Paper(locality=e["locality"], votes=e["votes"], choices=e["choices"])
        for e in ballots.box_entries(session, ballot=ballot)
    ]
    changed = could_change(
        ballots.rules_of(ballot),
        questions=[(q.id, q.options, q.rules) for q in questions],
        electors=[counting.Elector(e.locality, e.votes or 1) for e in practices.values()],
        papers=papers,
        removed=list(weighed.values()),
    )
    numbers = {q.id: n for n, q in enumerate(questions, 1)}
    return Assessment(listed, [numbers[qid] for qid in changed])


def bundle_file(session: Session, *, ballot: Ballot) -> list[dict[str, object]]:
    """The disputes as the evidence bundle carries them, each with the hash its trail holds."""
    return [
        {
            "id": d.id, "raised_at": proof.instant(d.raised_at), "ods_code": d.ods_code,
            "channel": str(d.channel), "recorded_by": d.recorded_by,
            "claims_not_voted": d.claims_not_voted, "text": d.text,
            "text_sha256": proof.sha256_hex(d.text.encode()),
        }
        for d in list_for(session, ballot=ballot)
    ]  # fmt: skip
