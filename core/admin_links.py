"""Links to the staff console's user page (listeners_project/console), for every uid and session id an admin page
shows: the console's templates use them through its template filters, SQL changelists in ``list_display``.

The URL is looked up by name, so this module imports no app."""
from __future__ import annotations

from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString


def user_url(uid: str) -> str | None:
    """The page of ``uid`` (None for an id no URL can carry: empty, or with a slash)."""
    if not uid or "/" in uid:
        return None
    return reverse("admin:console-user", args=[uid])


def user_link(uid: object) -> SafeString:
    url = user_url(str(uid or ""))
    if url is None:
        return format_html("<code>{}</code>", uid or "—")
    return format_html('<a class="gw-user-link" href="{}"><code>{}</code></a>', url, uid)


def session_link(uid: object, session_id: object) -> SafeString:
    """A session id, linked to its user's page at the session's row."""
    url = user_url(str(uid or ""))
    if url is None or not session_id:
        return format_html("<code>{}</code>", session_id or "—")
    return format_html('<a class="gw-session-link" href="{}#session-{}"><code>{}</code></a>', url, session_id,
                       session_id)
