"""REGISTRY.* — sessions of the Reflex app, their heartbeat, user tokens for /ws, and the user's long jobs (jobs/).

``register_user`` / ``unregister_session`` keep the original's names, arguments and return payload (§6b of the
reference). Sessions live in Redis (registry.store): each call is one script on the user's slot, run on the event
loop (async methods: no worker-thread hop). Session ids are per user: ``heartbeat`` and ``unregister_session`` act on
the acting user's (envelope ``user_id``) session of that id, and another user's id is simply not found.
"""
from __future__ import annotations

from typing import Annotated, Any

from core.errors import NotFound
from jobs import selectors as job_selectors
from jobs import services as job_services
from rpc.acting import acting_user
from rpc.registry import Namespace
from rpc.types import Identifier, InUserTree, MaxLen, UserId

from . import selectors, services, ws_tokens
from .store import SessionInfo

ns = Namespace("REGISTRY")

SessionId = Annotated[str, Identifier(128)]
JobId = Annotated[str, Identifier(64), InUserTree()]  # job keys are built from the acting user (core/keys.py)
BackendRoute = Annotated[str, MaxLen(512)]
CompanyIds = Annotated[list[Annotated[str, Identifier(128)]], MaxLen(1000)]

_NOT_LIVE = "no live session with this session_id; call REGISTRY.register_user again"


def _session_payload(session: SessionInfo) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "user_id": session.user_id,
        "backend_route": session.backend_route,
        "authorized_companies": session.authorized_companies,
        "created_at": session.created_at,
        "last_seen_at": session.last_seen_at,
        "expires_at": session.expires_at,
    }


@ns.method(writes=False)
def ping() -> dict[str, bool]:
    """No-op for health checks and benchmarks: proves auth, envelope, registry and execution end to end."""
    return {"pong": True}


# Repeatable: a login registers again with the same arguments (the Reflex app derives the same key), and that must
# refresh the registration, not replay the first answer; it also keeps the login path at one Redis round trip.
@ns.method(writes=True, repeatable=True)
async def register_user(
    user_id: UserId,
    session_id: SessionId,
    backend_route: BackendRoute | None = None,
    authorized_companies: CompanyIds | None = None,
) -> dict[str, Any]:
    """Register (or refresh) a session of ``user_id``; the user is online while it heart-beats.

    The session lives REGISTRY_SESSION_TTL (24 h) past its last register/heartbeat, or until
    ``unregister_session``; its presence lives LISTENERS_TTL_SECONDS (90 s): call ``REGISTRY.heartbeat`` every
    LISTENERS_HEARTBEAT_INTERVAL to stay online. ``authorized_companies`` (optional) limits the notifications and
    messages the user's listeners deliver to those companies. Returns the original payload:
    ``{user_id, session_id, backend_route, last_seen_at}``.
    """
    session = await services.aregister_session(
        user_id=user_id, session_id=session_id, backend_route=backend_route, authorized_companies=authorized_companies
    )
    return {
        "user_id": session.user_id,
        "session_id": session.session_id,
        "backend_route": session.backend_route,
        "last_seen_at": session.last_seen_at,
    }


# With a key (the usual call) the gateway runs services.unregister_script_write instead: the same END script and the
# idempotency record in one script, one Redis round trip (claim + write + store otherwise).
@ns.method(writes=True, script_write=services.unregister_script_write)
async def unregister_session(session_id: SessionId) -> bool:
    """Close one session of the acting user (logout). True when it was open, False when unknown or closed."""
    user_id = acting_user()
    if user_id is None:
        return False
    return await services.aunregister_session(user_id=user_id, session_id=session_id)


@ns.method(writes=False)
async def heartbeat(session_id: SessionId) -> dict[str, Any]:
    """Keep a live session of the acting user (and the user's presence) alive.

    NOT_FOUND when the session is unknown, closed or expired: register it again.
    """
    user_id = acting_user()
    if user_id is None:
        raise NotFound(_NOT_LIVE)
    try:
        beat = await services.aheartbeat_session(user_id=user_id, session_id=session_id)
    except services.SessionNotLive:
        raise NotFound(_NOT_LIVE) from None
    return {
        "session_id": beat.session_id,
        "user_id": beat.user_id,
        "last_seen_at": beat.last_seen_at,
        "expires_at": beat.expires_at,
    }


@ns.method(writes=False)
def get_user_sessions(user_id: UserId) -> list[dict[str, Any]]:
    """The user's live sessions, oldest first."""
    return [_session_payload(session) for session in selectors.user_sessions(user_id=user_id)]


@ns.method(writes=False)
def issue_ws_token(user_id: UserId) -> dict[str, Any]:
    """A short-lived token that opens ``/ws?uid={user_id}&token=...`` for this user only, while the user has a live
    session (NOT_FOUND without one); a staff Disconnect revokes it."""
    token, expires_in = ws_tokens.issue(user_id)
    return {"token": token, "expires_in": expires_in}


@ns.method(writes=False)
def get_job(user_id: UserId, job_id: JobId) -> dict[str, Any]:
    """One of the user's long jobs: {job_id, name, status (queued|running|done|error|cancelled), progress (0-100),
    step, done, error, data, result, attempts, cancel_requested, created_at, started_at, updated_at, finished_at}.
    Another user's job id is NOT_FOUND. Progress is also pushed as service.progress_update on user:{user_id}."""
    return job_selectors.get_job(uid=user_id, job_id=job_id).as_dict()


@ns.method(writes=True)
def cancel_job(user_id: UserId, job_id: JobId) -> dict[str, Any]:
    """Cancel one of the user's jobs: a queued one at once, a running one at its next progress report
    (cancel_requested true until then); a finished one is returned unchanged. Returns get_job's shape."""
    return job_services.cancel_job(uid=user_id, job_id=job_id).as_dict()
