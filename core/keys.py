"""Hash tags: which Redis keys share a slot, so that one script or one transaction never spans two (Redis Cluster,
ElastiCache Valkey Serverless). The README's "Redis keys" table lists every key with its tag, type, TTL and writer.

Three kinds of tag:

* ``{<channel>}``: a realtime channel's sequence and history (``rt:{user:alice}:seq``), touched together by the
  publish script.
* ``{u<shard>}``: a user's own keys (presence members, sessions, lease) share a tag with the *per-shard* indexes that
  list them (who is online, sessions by expiry, leases), so a per-user script updates both atomically. Users are spread
  over ``USER_SHARDS`` tags; work across users (counts, sweeps, bulk lease claims) is one call per shard, grouped by slot.
* ``{workers}``: the listeners workers' registry, stats and control channels, one slot, so the liveness script that
  counts a worker's control-channel subscribers runs on the node that holds the subscription.
* ``{jobs}``: the long-job queue, its leases and their owners, one slot, so claiming a job and taking its lease is one
  script. A job's own hash carries its user's ``{u<shard>}`` tag (jobs/store.py runs the per-job scripts there).
* ``{<trace_id>}``: a trace's provenance record (``trace:{4bf9…}``), one key touched alone, so its own id spreads the
  records over every slot.

Sharding by a hash of the uid (not the uid itself) keeps the number of index keys bounded: 256 tags spread over any
cluster's 16,384 slots, and a single node sees just 256 small sorted sets instead of one large one.
"""
from __future__ import annotations

import binascii
from collections.abc import Iterable

USER_SHARDS = 256
WORKERS_TAG = "{workers}"
JOBS_TAG = "{jobs}"


def user_shard(uid: str) -> int:
    """Stable across processes and restarts (CRC-16/XMODEM, as Redis Cluster itself uses; ``hash()`` is salted)."""
    return binascii.crc_hqx(uid.encode(), 0) % USER_SHARDS


def shard_tag(shard: int) -> str:
    return f"{{u{shard}}}"


def user_tag(uid: str) -> str:
    """The tag of every key of this user and of the shard indexes that list them."""
    return shard_tag(user_shard(uid))


def all_shard_tags() -> list[str]:
    return [shard_tag(shard) for shard in range(USER_SHARDS)]


def uids_by_shard(uids: Iterable[str]) -> dict[int, list[str]]:
    """Group users so that cross-user work is one script per shard (each shard's keys share a slot)."""
    groups: dict[int, list[str]] = {}
    for uid in uids:
        groups.setdefault(user_shard(uid), []).append(uid)
    return groups


def channel_tag(channel: str) -> str:
    return f"{{{channel}}}"


# --- Keys shared by more than one app (presence is written by realtime and by the registry's session scripts) --------


def presence_members_key(uid: str) -> str:
    """Sorted set: the user's live members (sockets, sessions) scored by expiry (ms)."""
    return f"presence:m:{user_tag(uid)}:{uid}"


def presence_members_prefix(shard: int) -> str:
    """``presence_members_key(uid)`` is this plus the uid for every uid of the shard (the sweep script builds them)."""
    return f"presence:m:{shard_tag(shard)}:"


def presence_online_key(shard: int) -> str:
    """Sorted set: the shard's online uids scored by their latest member expiry (ms)."""
    return f"presence:online:{shard_tag(shard)}"


def session_key(uid: str, session_id: str) -> str:
    """Hash: one registered session. Session ids are a per-user namespace: another user's id never resolves here."""
    return f"registry:session:{user_tag(uid)}:{uid}:{session_id}"


def user_sessions_key(uid: str) -> str:
    """Set: the user's session ids."""
    return f"registry:sessions:{user_tag(uid)}:{uid}"


def session_expiry_key(shard: int) -> str:
    """Sorted set: the shard's sessions (member ``<uid> <session_id>``) scored by expiry (ms), for sweeps and listings."""
    return f"registry:session-expiry:{shard_tag(shard)}"


def session_history_key(shard: int) -> str:
    """List: ended sessions of the shard (JSON records), pushed by the session scripts and drained into SQL in batches
    by the sweeper (registry.services.flush_session_history), so the audit trail never costs the request a write."""
    return f"registry:session-history:{shard_tag(shard)}"


# --- Long jobs (jobs/store.py) ---------------------------------------------------------------------------------------


def job_key(uid: str, job_id: str) -> str:
    """Hash: one job's state. Built from the acting user: another user's job id never resolves here."""
    return f"jobs:job:{user_tag(uid)}:{uid}:{job_id}"


def jobs_queue_key(name: str) -> str:
    """The ``{jobs}`` slot's keys: ``ready`` (sorted set, FIFO), ``leases`` (sorted set by expiry ms), ``owners``
    (hash: job -> run token), ``wake`` (list workers block on), ``index`` (sorted set by creation, for the admin)."""
    return f"jobs:{JOBS_TAG}:{name}"


# A user's /ws token generation outlives any token signed with it (README, Security: tokens last minutes).
WS_TOKEN_GENERATION_TTL_S = 7 * 24 * 3600


def ws_token_generation_key(uid: str) -> str:
    """String: the generation the user's /ws tokens must carry; a staff Disconnect increments it."""
    return f"registry:ws-gen:{user_tag(uid)}:{uid}"


# --- Idempotency records (rpc/idempotency.py) -------------------------------------------------------------------------


def idempotency_record_key(scope: str, digest: str, uid: str | None) -> str:
    """Hash: one idempotency record of an API client (``scope``), an acting user and a key (its sha256 ``digest``).

    With a user it carries the user's tag, so a write that is one script on the user's slot (``REGISTRY.unregister_
    session``) claims, writes and stores its response in that same script; the scope contains no ``:`` (``svc`` or
    ``c<pk>``, rpc/auth.py) and the digest has a fixed length, so the uid between them is unambiguous. Without a user,
    the key's own digest spreads the records over every slot."""
    if uid:
        return f"idemp:{user_tag(uid)}:{scope}:{uid}:{digest}"
    return f"idemp:{{{scope}:{digest}}}:{digest}"


# --- Provenance (core/provenance.py) ---------------------------------------------------------------------------------


def trace_key(trace_id: str) -> str:
    """String (JSON): where the events of one trace id came from (an RPC call, or a listener), with the history's TTL."""
    return f"trace:{{{trace_id}}}"
