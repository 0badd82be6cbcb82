"""The single-event publisher every producer uses (RPC methods, listeners, long jobs).

One Lua call per event does everything in a single Redis round trip: INCR the channel's ``seq``, append the envelope
to the channel's bounded history stream, and PUBLISH it on the channel. The Reflex bus consumer and this service's
WebSocket dispatchers are both subscribers of that channel, so one PUBLISH serves both.

Fan-out (``publish_to_many``, realtime/fanout_publisher.py, importable from here as before) gives every recipient its
own seq and history entry but PUBLISHes one batched message for all of them (``realtime/fanout.py``), which every
gateway process delivers to its local sockets.

Redis Cluster: a channel's seq and history share its ``{channel}`` tag (realtime/channels.py), so a single event is one
single-slot script as on one Redis. The channels stay classic PUBLISH, which a cluster broadcasts to every node, so
the Reflex bus consumer's plain SUBSCRIBE on any node keeps working.

Callable from sync code on any thread (one shared client, no connection per event) and from async code (the loop's
own client, never blocking). A publish that fails is queued in order and retried (realtime/publishing.py).
"""
from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from core import provenance
from core.integrations.redis import get_async_redis, get_redis
from core.metrics import EVENT_PUBLISH_FAILURES

from .channels import SEQ_TTL_S, channel_for_event, history_key, namespace_of, seq_key
from .envelope import EnvelopeParts
from .fanout_publisher import FANOUT_CHUNK, publish_to_many  # noqa: F401 - its callers import it from here
from .publishing import (APPEND_LUA, PublishResult, count_published, log, log_published, retry_queue,  # noqa: F401
                         wait_for_retry_queue)

# KEYS: seq hash, history. ARGV: channel, envelope up to '"seq":', history size, history ttl s, seq ttl s, the event
# id (also the fresh epoch id, kept only if the channel has none: a restarted Redis starts a new one).
# The seq hash keeps the last event id ('last'): when a node dies after running the script but before its reply
# arrives, the retry queue publishes the same event again, first on its channel (the queue keeps order), and gets its
# seq back instead of appending it twice under a new one (a master restart made sockets receive an event twice).
_PUBLISH_LUA = APPEND_LUA + """
if redis.call('HGET', KEYS[1], 'last') == ARGV[6] then return tonumber(redis.call('HGET', KEYS[1], 'n')) end
local seq, msg = append(KEYS[1], KEYS[2], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
redis.call('HSET', KEYS[1], 'last', ARGV[6])
redis.call('PUBLISH', ARGV[1], msg)
return seq
"""


@dataclass(frozen=True)
class _Pending:
    """One event for one channel."""

    channel: str
    envelope_without_seq: str
    event_id: str
    event_type: str

    def script_call(self) -> tuple[list[str], list[Any]]:
        namespace = namespace_of(self.channel)
        keys = [seq_key(self.channel), history_key(self.channel)]
        # The event id doubles as the epoch id a channel gets if it has none (it is fresh and unique).
        args = [self.channel, self.envelope_without_seq, namespace.history_size, namespace.history_ttl_s, SEQ_TTL_S,
                self.event_id]
        return keys, args

    def publish_now(self) -> int:
        keys, args = self.script_call()
        seq = int(_publish_script()(keys=keys, args=args))
        count_published(self.event_type, 1)
        log_published(self.channel, self.event_type, seq)
        return seq

    def describe(self) -> dict[str, Any]:
        return {"channel": self.channel, "event_id": self.event_id}


def _prepare(uid: str, event_type: str, payload: dict[str, Any], job_id: str | None) -> _Pending:
    if not uid or not event_type:
        raise ValueError("uid and event_type are required")
    channel = channel_for_event(uid, event_type, payload)
    event_id = uuid.uuid4().hex
    envelope = EnvelopeParts.build(event_type, payload, job_id).without_seq(uid, event_id)
    return _Pending(channel, envelope, event_id, event_type)


_script_lock = threading.Lock()
_sync_script: Any = None


def _publish_script() -> Any:
    """The registered script on the process's shared client (EVALSHA, reloaded by redis-py after a Redis restart)."""
    global _sync_script
    if _sync_script is None:
        with _script_lock:
            if _sync_script is None:
                _sync_script = get_redis().register_script(_PUBLISH_LUA)
    return _sync_script


def publish_event(uid: str, event_type: str, payload: dict[str, Any], *, job_id: str | None = None) -> PublishResult:
    """Publish one event (sync, any thread). Returns its seq, or ``queued=True`` if Redis is unreachable right now."""
    pending = _prepare(uid, event_type, payload, job_id)
    if len(retry_queue) == 0:
        try:
            seq = pending.publish_now()
            provenance.note_published(pending.channel, seq)  # the RPC call's response names it (core/provenance.py)
            return PublishResult(pending.channel, pending.event_id, seq)
        except (redis.RedisError, OSError):
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_publish_failed_queued", **pending.describe())
    retry_queue.put(pending)
    return PublishResult(pending.channel, pending.event_id, None, queued=True)


async def apublish_event(
    uid: str, event_type: str, payload: dict[str, Any], *, job_id: str | None = None
) -> PublishResult:
    """The same from async code, on the running loop's client."""
    pending = _prepare(uid, event_type, payload, job_id)
    if len(retry_queue) == 0:
        keys, args = pending.script_call()
        try:
            seq = int(await get_async_redis().eval(_PUBLISH_LUA, len(keys), *keys, *args))
            count_published(pending.event_type, 1)
            log_published(pending.channel, pending.event_type, seq)
            provenance.note_published(pending.channel, seq)
            return PublishResult(pending.channel, pending.event_id, seq)
        except (redis.RedisError, OSError):
            EVENT_PUBLISH_FAILURES.labels("publish").inc()
            log.warning("event_publish_failed_queued", **pending.describe())
    retry_queue.put(pending)
    return PublishResult(pending.channel, pending.event_id, None, queued=True)


