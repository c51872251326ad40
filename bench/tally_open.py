"""Opening the sealed box: 100,000 sealed ballots decrypted, checked and written out as the box.

Opens a small ballot on SQLite, seals N ballots to its tally key exactly as a cast does
(app.tally_key.seal, padded to the ballot's one size), closes it (the trail fixes the count and
the hash over the ciphertexts), then times sealed_box.open_box with two of the three shares:
combining the shares, checking the hash, decrypting every ballot, checking receipts, writing
the plaintext box and deleting the ciphertexts, in one transaction.

    python bench/tally_open.py [--ballots 100000]
"""

import argparse
import os
import secrets
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The floor for opening 100,000 sealed ballots.
FLOOR_SECONDS = 10.0
BATCH = 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--ballots", type=int, default=100_000)
    options = parser.parse_args()
    from bench import scratch

    work = scratch.sqlite_environment("mandate-bench-tally-")
    from sqlalchemy import func, insert, select

    from app import ballots, clock, crypto, sealed_box, tally_key
    from app.db import session_scope
    from app.models import BallotBoxEntry, SealedBallot
    from bench.ballot import open_with_shares

    ballot_id, key_shares = open_with_shares(9)
    with session_scope() as session:
        ballot = ballots.get(session, ballot_id)
        sealer, closes = sealed_box.sealer_of(ballot), ballot.closes_at

    started = time.perf_counter()
    localities = [f"L{i}" for i in range(5)]
    for start in range(0, options.ballots, BATCH):
        rows = [
            {
                "id": secrets.token_hex(16),
                "ballot_id": ballot_id,
                "ciphertext": tally_key.seal(
                    sealer.public_key,
                    {
                        "choices": {"q": ("For", "Against", "Abstain")[n % 3]},
                        "receipt_code": crypto.new_receipt_code(),
                        "locality": localities[n % 5],
                        "votes": 1,
                    },
                    size=sealer.size,
                ),
            }
            for n in range(start, min(start + BATCH, options.ballots))
        ]
        with session_scope() as session:
            session.execute(insert(SealedBallot), rows)
    sealing = time.perf_counter() - started
    print(
        f"sealed {options.ballots} ballots of {sealer.size} bytes in {sealing:.1f}s "
        f"({options.ballots / sealing:.0f}/s on one core)"
    )
    clock.freeze(closes + timedelta(seconds=1))
    with session_scope() as session:
        ballots.close_ballot(session, ballot_id=ballot_id, actor="operator:bench")

    # CPU time too: on a machine shared with other work the wall clock says more about them.
    started, cpu = time.perf_counter(), time.process_time()
    with session_scope() as session:
        sealed_box.open_box(
            session, ballot_id=ballot_id, shares=key_shares[:2], actor="operator:bench"
        )
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    with session_scope() as session:
        opened = session.scalar(
            select(func.count())
            .select_from(BallotBoxEntry)
            .where(BallotBoxEntry.ballot_id == ballot_id)
        )
        left = session.scalar(select(func.count()).select_from(SealedBallot))
    shutil.rmtree(work, ignore_errors=True)
    verdict = "within" if seconds < FLOOR_SECONDS else "OVER"
    print(
        f"opened {opened} sealed ballots in {seconds:.2f} s (floor {FLOOR_SECONDS:.0f} s for "
        f"100,000, {verdict}; {cpu:.2f} s of CPU over {os.cpu_count()} cores, load "
        f"{os.getloadavg()[0]:.1f}); {left} ciphertexts left"
    )
    if opened != options.ballots or left:
        raise SystemExit("the opened box does not hold every sealed ballot")


if __name__ == "__main__":
    main()
