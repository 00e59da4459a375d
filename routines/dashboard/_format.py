"""How the dashboard writes values for people: times as ages ("3m ago") beside their UTC time,
durations, JSON, an error in one line, and a queue's limits."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Final

from ..durable import QueueLimits

__all__ = ["age", "duration", "error_summary", "iso", "limits", "preview", "pretty_json", "took"]

# (seconds in the unit, its suffix), largest first: an age is written in one unit, rounded down
_UNITS: Final = ((86400.0, "d"), (3600.0, "h"), (60.0, "m"), (1.0, "s"))


def duration(seconds: float) -> str:
    """`seconds` in its largest whole unit: "45s", "3m", "2h", "4d" (under a second, "0s")."""
    seconds = max(0.0, seconds)
    for size, suffix in _UNITS:
        if seconds >= size:
            return f"{int(seconds // size)}{suffix}"
    return "0s"


def took(seconds: float) -> str:
    """How long a run took, precise where it is short: "35 ms", "2.4 s", "3m"."""
    seconds = max(0.0, seconds)
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60.0:
        return f"{seconds:.1f} s"
    return duration(seconds)


def age(moment: datetime, now: datetime) -> str:
    """How long ago `moment` was, seen from `now`: "3m ago", "just now", or "in 5m" for a time
    still to come (a retry's due time, a lease's expiry)."""
    seconds = (now - moment).total_seconds()
    if abs(seconds) < 1.0:
        return "just now"
    if seconds < 0:
        return f"in {duration(-seconds)}"
    return f"{duration(seconds)} ago"


def iso(moment: datetime) -> str:
    """`moment` in UTC, ISO 8601 to the second: "2025-05-01T12:00:03Z"."""
    text = moment.astimezone(timezone.utc).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z")


def pretty_json(value: object) -> str:
    """A job's payload or result as indented JSON (non-ASCII text as it is)."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def preview(value: object, longest: int = 80) -> str:
    """A payload on one line, cut to `longest` characters: for a list of jobs."""
    text = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= longest else text[: longest - 1] + "…"


def limits(of: QueueLimits) -> list[tuple[str, str]]:
    """A queue's limits for people, each as (its words, what they mean): "5 at once",
    "1 per group", "10 per 1.5s"; none for a queue without limits."""
    found = []
    if of.max_running is not None:
        found.append((f"{of.max_running:,} at once", "its jobs processing at once, fleet-wide"))
    if of.group_running is not None:
        found.append((f"{of.group_running:,} per group", "jobs of one group processing at once"))
    if of.rate is not None:
        count, per = of.rate
        found.append((f"{count:,} per {per:g}s", f"at most {count:,} starts in any {per:g}s"))
    return found


def error_summary(text: str | None) -> str:
    """One line of a stored error, for a list: a traceback's last line (the exception's type
    and message), else the error's first line."""
    if not text:
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("Traceback (most recent call last)"):
        return lines[-1]
    return lines[0] if lines else ""
