"""Turnout while a ballot runs: how many practices have voted, where and when; never how."""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from app.models import RollEntry

# The chart of turnout over time has this many steps, however long the ballot runs.
STEPS = 12


@dataclass(frozen=True)
class Locality:
    name: str
    eligible: int
    voted: int


@dataclass(frozen=True)
class Step:
    until: datetime
    voted: int  # practices voted by then


@dataclass(frozen=True)
class Turnout:
    eligible: int
    voted: int
    by_locality: list[Locality]
    not_voted: list[RollEntry]
    over_time: list[Step]

    @property
    def percent(self) -> int:
        return round(100 * self.voted / self.eligible) if self.eligible else 0


def figures(entries: list[RollEntry], *, since: datetime | None, until: datetime) -> Turnout:
    """The turnout of a roll; over time in equal steps from `since` (the opening) to `until`."""
    eligible = Counter(e.locality for e in entries)
    voted = Counter(e.locality for e in entries if e.voted_at is not None)
    times = sorted(e.voted_at for e in entries if e.voted_at is not None)
    over_time = []
    if since is not None and until > since:
        span = (until - since) / STEPS
        ends = [since + span * n for n in range(1, STEPS + 1)]
        over_time = [Step(end, sum(1 for t in times if t <= end)) for end in ends]
    return Turnout(
        eligible=len(entries),
        voted=len(times),
        by_locality=[Locality(loc, n, voted[loc]) for loc, n in sorted(eligible.items())],
        not_voted=[e for e in entries if e.voted_at is None],
        over_time=over_time,
    )
