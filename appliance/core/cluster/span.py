"""The time span of a metrics history request: ISO 8601 in (JavaScript's
``toISOString()``), the resolution picked or checked, ISO 8601 out."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from appliance.core.cluster import history
from appliance.errors import Invalid

# History is kept 8 days; a span beyond this is a client's mistake, not a question.
MAX_SPAN_SECONDS = 31 * 86400


@dataclass(frozen=True)
class Span:
    start: float
    end: float
    level: int


def parse_time(name: str, text: str) -> float:
    """Unix seconds from ISO 8601 (a time without a zone is UTC)."""
    if len(text) > 64:
        raise Invalid(f"parameter '{name}' is not an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"parameter '{name}' is not an ISO 8601 time (e.g. 2026-01-15T10:30:00.000Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        seconds = moment.timestamp()
        datetime.fromtimestamp(seconds, UTC)   # in UTC it may fall outside years 1..9999, which iso() can't render
    except (OverflowError, ValueError, OSError):
        raise Invalid(f"parameter '{name}' is out of range") from None
    return seconds


def iso(t: float) -> str:
    """``2026-01-15T10:30:00.000Z`` (milliseconds, UTC)."""
    return datetime.fromtimestamp(round(t, 3), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def resolve(start: str, end: str, resolution: str, now: float) -> Span:
    for name, value in (("start", start), ("end", end)):
        if not value:
            raise Invalid(f"parameter '{name}' is required (ISO 8601, e.g. 2026-01-15T10:30:00.000Z)")
    start_t, end_t = parse_time("start", start), parse_time("end", end)
    if end_t < start_t:
        raise Invalid("end is before start")
    if end_t - start_t > MAX_SPAN_SECONDS:
        raise Invalid(f"the span is longer than {MAX_SPAN_SECONDS // 86400} days (history is kept 8 days)")
    if not resolution:
        level = history.auto_level(start_t, end_t, now)
    elif resolution in history.LEVELS:
        level = history.LEVELS[resolution]
    else:
        raise Invalid("resolution must be one of raw, 1m, 5m, 15m")
    return Span(start_t, end_t, level)
