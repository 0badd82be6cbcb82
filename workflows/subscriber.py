"""This worker's Redis subscription: presence events, worker changes, and its own control channel.

The control channel's subscription is also this worker's liveness (ownership.py): peers take a registered worker
without one for dead. So the worker subscribes before it registers, reconnects quickly after a drop, and
unsubscribes last when it stops (while the subscription lasts, peers do not take its users: no duplicate events).
"""
from __future__ import annotations

import threading
from typing import Callable

import redis
import structlog

from core.integrations.redis import new_sync_subscriber
from realtime import presence

from . import ownership

log = structlog.get_logger(__name__)

_FIRST_RETRY_S, _MAX_RETRY_S = 0.1, 5.0


class Subscriber:
    """The subscriber thread; messages go to the callbacks, which only queue work or refresh the live workers."""

    def __init__(self, worker_id: str, *, on_presence: Callable[[str], None], on_workers_changed: Callable[[], None],
                 on_control: Callable[[str, str], None], on_subscribed: Callable[[], None],
                 stopping: threading.Event) -> None:
        self._control = ownership.control_channel(worker_id)
        self._on_presence = on_presence  # a user's presence changed
        self._on_workers_changed = on_workers_changed  # a worker registered, left or died
        self._on_control = on_control  # (action, uid): a staff command
        self._on_subscribed = on_subscribed  # (re)subscribed: events may have been missed meanwhile
        self._stopping = stopping  # the worker is stopping: no new claims, no staff commands
        self.subscribed = threading.Event()  # peers see this worker alive
        self.registered = threading.Event()  # first heartbeat done and live workers known: presence events count
        self._stop = threading.Event()  # set last: the subscription outlives the users
        self._thread = threading.Thread(target=self._subscribe_forever, name="listeners-subscriber", daemon=True)

    def start(self, timeout_s: float) -> bool:
        """Start, and wait until subscribed; False when that took longer (peers' grace, then its retries)."""
        self._thread.start()
        return self.subscribed.wait(timeout_s)

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def _subscribe_forever(self) -> None:
        delay = _FIRST_RETRY_S
        while not self._stop.is_set():
            pubsub = new_sync_subscriber().pubsub(ignore_subscribe_messages=True)
            try:
                # Control first: on a cluster the connection goes to its slot's node, where peers count it.
                pubsub.subscribe(self._control, presence.EVENTS_CHANNEL, ownership.WORKERS_CHANNEL)
                delay = _FIRST_RETRY_S  # the server is back: the next drop reconnects quickly again (peers' grace)
                self.subscribed.set()
                self._on_subscribed()
                self.registered.wait(30)  # the worker registers right after the first subscription
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None:
                        self._on_message(message["channel"].decode(), message["data"])
            except (redis.RedisError, OSError):
                log.warning("listeners_subscriber_reconnecting", retry_in_s=delay)
                self._stop.wait(delay)
                delay = min(delay * 2, _MAX_RETRY_S)
            finally:
                pubsub.close()

    def _on_message(self, channel: str, data: bytes) -> None:
        if self._stopping.is_set():
            return  # the worker is handing its users back: no new claims, no staff commands
        if channel == presence.EVENTS_CHANNEL:
            uid = presence.parse_event(data).get("uid")
            if isinstance(uid, str) and uid:
                self._on_presence(uid)
            return
        if channel == ownership.WORKERS_CHANNEL:
            # Inline, before the next presence event: users announced after a peer registered go to it.
            self._on_workers_changed()
            return
        command = ownership.parse_control(data)
        if command is not None:
            self._on_control(*command)
