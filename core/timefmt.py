"""One way to show a time in the staff console: to the second, with its zone, and how long ago or until (a 90 s TTL is
unreadable at minute resolution)."""
from __future__ import annotations

import datetime as dt

from django.utils import timezone


def as_datetime(value: dt.datetime | float | int | str | None) -> dt.datetime | None:
    """A datetime, epoch seconds, or an ISO-8601 string (Chroma's registry keeps ``%Y-%m-%dT%H:%M:%SZ``)."""
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value if timezone.is_aware(value) else timezone.make_aware(value, dt.timezone.utc)
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=dt.timezone.utc)


def clock(value: dt.datetime | float | int | str | None) -> str:
    """``2024-05-01 12:03:04 UTC`` in the site's zone (settings.TIME_ZONE), or an em dash."""
    moment = as_datetime(value)
    if moment is None:
        return "—"
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def duration(seconds: float) -> str:
    """``12 s``, ``4 min 05 s``, ``3 h 07 min``, ``2 d 4 h``."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def relative(value: dt.datetime | float | int | str | None, *, now: dt.datetime | None = None) -> str:
    """``12 s ago`` for the past, ``in 40 s`` for the future."""
    moment = as_datetime(value)
    if moment is None:
        return ""
    delta = (moment - (now or timezone.now())).total_seconds()
    if -1 < delta < 1:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"
