"""Template filters of the staff console: readable times and coloured state badges (listeners_project/console)."""
from __future__ import annotations

from django import template
from django.utils.html import format_html
from django.utils.safestring import SafeString

from core import admin_links, timefmt

register = template.Library()

# State -> badge colour class (templates/admin/base_site.html styles them).
_BADGES = {
    "ok": "ok", "online": "ok", "alive": "ok", "active": "ok",
    "error": "bad", "dead": "bad", "revoked": "bad", "closed": "quiet", "expired": "warn", "stale": "warn",
}


@register.filter
def clock(value: object) -> str:
    return timefmt.clock(value)  # type: ignore[arg-type]


@register.filter
def ago(value: object) -> str:
    return timefmt.relative(value)  # type: ignore[arg-type]


@register.filter
def when(value: object) -> SafeString:
    """``12:03:04 UTC`` with ``12 s ago`` beside it (the full date in the tooltip)."""
    full = timefmt.clock(value)  # type: ignore[arg-type]
    if full == "—":
        return format_html("{}", full)
    return format_html('<time title="{}">{}</time> <span class="gw-quiet">{}</span>', full, full[11:],
                       timefmt.relative(value))  # type: ignore[arg-type]


@register.filter
def expires(value: object) -> SafeString:
    """``12:04:34 UTC`` with ``expires in 40 s`` (or ``expired 3 s ago``) beside it."""
    full = timefmt.clock(value)  # type: ignore[arg-type]
    if full == "—":
        return format_html("{}", full)
    age = timefmt.relative(value)  # type: ignore[arg-type]
    text = f"expires {age}" if age.startswith("in ") else f"expired {age}"
    return format_html('<time title="{}">{}</time> <span class="gw-quiet">{}</span>', full, full[11:], text)


@register.filter
def badge(state: object) -> SafeString:
    return format_html('<span class="gw-badge gw-badge-{}">{}</span>', _BADGES.get(str(state), "quiet"), state)



@register.filter
def user_link(uid: object) -> SafeString:
    """A uid, linked to its user page."""
    return admin_links.user_link(uid)


@register.simple_tag
def session_link(uid: object, session_id: object) -> SafeString:
    return admin_links.session_link(uid, session_id)
