"""The sealed ballot box: the tally key a ballot's votes are sealed to, and opening the box.

The server holds only the public key, kept in the ballot's definition so it freezes with the rest
at open. Casts seal each ballot to it (see voting); after close the key holders' shares rebuild
the private key in memory, every ciphertext is opened and checked, and the plaintext box replaces
the ciphertexts.
"""

import secrets
from dataclasses import dataclass

from sqlalchemy import delete, insert
from sqlalchemy.orm import Session

from app import audit, ballots, clock, crypto, errors, proof, scrutiny, tally_key
from app.db import table
from app.models import Ballot, BallotBoxEntry, BallotStatus, SealedBallot


def set_tally_key(
    session: Session,
    *,
    ballot: Ballot,
    public_key: str,
    holders: list[str] | None,
    threshold: int | None,
    holder_count: int | None,
    actor: str,
) -> Ballot:
    """Give a draft the public key its ballots are sealed to; the server never has the private."""
    ballots.require_status(ballot, BallotStatus.draft, "have its tally key set")
    named = [h.strip() for h in holders or [] if h.strip()]
    if len(named) > 20 or any(len(h) > 200 for h in named):
        raise errors.InvalidInput("Name at most 20 key holders, each in at most 200 characters.")
    count = len(named) or holder_count
    if threshold is not None and (threshold < 1 or (count is not None and threshold > count)):
        raise errors.InvalidInput(
            f"The number of shares needed ({threshold}) must be from 1 to the number of holders."
        )
    key = {
        "algorithm": tally_key.ALGORITHM,
        "public_key": tally_key.parse_public_key(public_key),
        "holders": named,
        "holder_count": count,
        "threshold": threshold,
    }
    ballot.definition = ballot.definition | {ballots.TALLY_KEY: key}
    session.flush()
    audit.append(
        session, ballot=ballot, actor=actor, action="tally_key_set",
        public_key=key["public_key"], holders=named, holder_count=count, threshold=threshold,
        definition_sha256=ballots.definition_hash(ballot),
    )  # fmt: skip
    scrutiny.withdraw_approval(session, ballot=ballot, actor=actor, because="tally key set")
    return ballot


@dataclass(frozen=True)
class Sealer:
    """What a cast seals to: the frozen public key, and the one size every ballot pads to."""

    public_key: str
    size: int


_frozen_sealers: dict[str, Sealer] = {}


def cached_sealer(frozen_hash: str | None) -> Sealer | None:
    return _frozen_sealers.get(frozen_hash) if frozen_hash is not None else None


def sealer_of(ballot: Ballot) -> Sealer:
    cached = cached_sealer(ballot.frozen_hash)
    if cached is not None:
        return cached
    key = ballot.definition.get(ballots.TALLY_KEY)
    if key is None:
        raise errors.Conflict(f"Ballot {ballot.id} has no tally key, so it cannot take votes.")
    questions = [(q.id, q.options) for q in ballots.questions_of(ballot)]
    sealer = Sealer(
        public_key=key["public_key"],
        size=tally_key.padded_size(questions, crypto.RECEIPT_CODE_LENGTH),
    )
    if ballot.frozen_hash is not None:
        _frozen_sealers[ballot.frozen_hash] = sealer
    return sealer


def open_box(
    session: Session, *, ballot_id: int, shares: list[tally_key.Share], actor: str
) -> Ballot:
    """Open the sealed box of a closed ballot with the key holders' shares.

    Every ciphertext must open and every receipt be unique, or nothing changes. The plaintext
    box is written in receipt order in one statement, the ciphertexts are deleted, and the key
    is dropped with this call's memory.
    """
    ballot = ballots.get(session, ballot_id, lock="update")
    ballots.require_status(ballot, BallotStatus.closed, "have its ballot box opened")
    if ballot.box_opened_at is not None:
        raise errors.WrongState(
            f"The ballot box of ballot {ballot.id} was opened at "
            f"{clock.london(ballot.box_opened_at)}; it can be opened only once."
        )
    key = ballot.definition.get(ballots.TALLY_KEY)
    if key is None:
        raise errors.Conflict(f"Ballot {ballot.id} has no tally key, so it has no sealed box.")
    private = tally_key.combine(shares, public_key=key["public_key"])
    sealed = ballots.sealed_ballots(session, ballot=ballot)
    closed = audit.last(session, ballot=ballot, action="closed")
    digest = tally_key.sealed_digest([c for _, c in sealed])
    if closed is None or closed.payload.get("sealed_sha256") != digest:
        raise ballots.BoxChanged(
            "The sealed ballot box is not the one fixed at close (a ballot was added, changed "
            "or removed since), so it was not opened. The returning officer and the scrutineer "
            "should investigate before anything else is done."
        )
    papers, unopened = [], []
    opened = tally_key.unseal_all(private, [c for _, c in sealed])
    for (sealed_id, _), paper in zip(sealed, opened, strict=True):
        if paper is None:
            unopened.append(sealed_id)
        else:
            papers.append(paper)
    if unopened:
        listed = ", ".join(unopened[:20]) + (" …" if len(unopened) > 20 else "")
        raise ballots.BoxChanged(
            f"{len(unopened)} of {len(sealed)} sealed ballots do not open with this ballot's key "
            f"(sealed ballot ids {listed}); nothing was opened or dropped. The returning officer "
            "and the scrutineer should investigate.",
            problems=[{"loc": "sealed_ballot", "problem": i} for i in unopened],
        )
    repeated = len(papers) - len({p["receipt_code"] for p in papers})
    if repeated:
        raise ballots.BoxChanged(
            f"{repeated} receipt code(s) appear on more than one sealed ballot, so the box was not "
            "opened. The returning officer and the scrutineer should investigate."
        )
    papers.sort(key=lambda p: p["receipt_code"])
    if papers:
        session.execute(
            insert(table(BallotBoxEntry)),
            [{"id": secrets.token_hex(16), "ballot_id": ballot.id, **paper} for paper in papers],
        )
    session.execute(delete(SealedBallot).where(SealedBallot.ballot_id == ballot.id))
    ballot.box_opened_at = clock.now()
    session.flush()
    # The root of the box just written, from the same values (publish re-reads it to compare).
    root = proof.box_root(proof.published_box(ballot.receipt_mode, papers))
    audit.append(
        session, ballot=ballot, actor=actor, action="box_opened",
        ballots_opened=len(papers), sealed_sha256=digest, ballot_box_root=root,
        shares_used=len({s.index for s in shares}),
    )  # fmt: skip
    return ballot
