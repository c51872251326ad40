"""The one clock: every timestamp and every time check reads it, so tests can move it."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

_frozen: datetime | None = None


def now() -> datetime:
    return _frozen if _frozen is not None else datetime.now(UTC)


def freeze(at: datetime | None) -> None:
    """Pin the clock at a timezone-aware instant, or release it with None."""
    if at is not None and at.tzinfo is None:
        raise ValueError("the clock only holds timezone-aware times")
    global _frozen
    _frozen = at


LONDON = ZoneInfo("Europe/London")


def london(at: datetime) -> str:
    """A time as people in England read it: '5:00pm on Monday 5 December 2016'."""
    local = at.astimezone(LONDON)
    hour = local.strftime("%I").lstrip("0")
    return f"{hour}:{local:%M}{local:%p}".lower() + f" on {local:%A} {local.day} {local:%B %Y}"
