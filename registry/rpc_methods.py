"""REGISTRY.* — sessions of the Reflex app, their heartbeat, user tokens for /ws, and the user's long jobs (jobs/).

``register_user`` / ``unregister_session`` keep the original's names, arguments and return payload (§6b of the
reference); a session is now one row per session id (many per user), refreshed by ``heartbeat`` and mirrored into
presence, and ``unregister_session`` is one indexed lookup instead of a SCAN of the keyspace.
"""
from __future__ import annotations

from typing import Annotated, Any

from realtime.auth import mint_user_token
from core.errors import NotFound
from jobs import selectors as job_selectors, services as job_services
from rpc.registry import Namespace
from rpc.types import Identifier, MaxLen, UserId

from . import selectors, services
from .models import Session

ns = Namespace("REGISTRY")

SessionId = Annotated[str, Identifier(128)]
JobId = Annotated[str, Identifier(64)]
BackendRoute = Annotated[str, MaxLen(512)]
CompanyIds = Annotated[list[Annotated[str, Identifier(128)]], MaxLen(1000)]


def _session_payload(session: Session) -> dict[str, Any]:
    return {
        "session_id": session.session_id,
        "user_id": session.user_id,
        "backend_route": session.backend_route,
        "authorized_companies": session.authorized_companies,
        "created_at": session.created_at,
        "last_seen_at": session.last_heartbeat_at,
        "expires_at": session.expires_at,
    }


@ns.method(writes=False)
def ping() -> dict[str, bool]:
    """No-op for health checks and benchmarks: proves auth, envelope, registry and execution end to end."""
    return {"pong": True}


@ns.method(writes=True)
def register_user(
    user_id: UserId,
    session_id: SessionId,
    backend_route: BackendRoute | None = None,
    authorized_companies: CompanyIds | None = None,
) -> dict[str, Any]:
    """Register (or refresh) a session of ``user_id``; the user is online while it lives.

    A session lives LISTENERS_TTL_SECONDS (90 s) past its last register/heartbeat: call ``REGISTRY.heartbeat``
    every LISTENERS_HEARTBEAT_INTERVAL. ``authorized_companies`` (optional) limits the notifications and messages
    the user's listeners deliver to those companies. Returns the original payload:
    ``{user_id, session_id, backend_route, last_seen_at}``.
    """
    session = services.register_session(
        user_id=user_id, session_id=session_id, backend_route=backend_route, authorized_companies=authorized_companies
    )
    return {
        "user_id": session.user_id,
        "session_id": session.session_id,
        "backend_route": session.backend_route,
        "last_seen_at": session.last_heartbeat_at,
    }


@ns.method(writes=True)
def unregister_session(session_id: SessionId) -> bool:
    """Close one session (logout). True when an open session was closed, False when it was unknown or closed."""
    return services.unregister_session(session_id=session_id)


@ns.method(writes=False)
def heartbeat(session_id: SessionId) -> dict[str, Any]:
    """Keep a live session (and its user's presence) alive for another LISTENERS_TTL_SECONDS.

    NOT_FOUND when the session is unknown, closed or already expired: register it again.
    """
    try:
        session = services.heartbeat_session(session_id=session_id)
    except services.SessionNotLive:
        raise NotFound("no live session with this session_id; call REGISTRY.register_user again") from None
    return {
        "session_id": session.session_id,
        "user_id": session.user_id,
        "last_seen_at": session.last_heartbeat_at,
        "expires_at": session.expires_at,
    }


@ns.method(writes=False)
def get_user_sessions(user_id: UserId) -> list[dict[str, Any]]:
    """The user's live sessions, oldest first."""
    return [_session_payload(session) for session in selectors.user_sessions(user_id=user_id)]


@ns.method(writes=False)
def issue_ws_token(user_id: UserId) -> dict[str, Any]:
    """A short-lived token that opens ``/ws?uid={user_id}&token=...`` for this user only (nothing is stored)."""
    token, expires_in = mint_user_token(user_id)
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
