"""Coalescing of sync requests: one sync per burst of changes (a debounce with a ceiling)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Debouncer:
    """A request arms a timer ``quiet_s`` ahead; each new request re-arms it, but never past ``max_delay_s`` after
    the burst's first request, so changes that never pause still produce a sync at that pace.

    Timers are not cancelled: each carries the generation it was armed with, and only the latest one fires.
    """

    quiet_s: float
    max_delay_s: float
    _pending: dict[str, tuple[float, int]] = field(default_factory=dict)  # key -> (first request, generation)
    _generation: int = 0

    def request(self, key: str, now: float) -> tuple[int, float]:
        """Returns (generation, seconds until due) for the timer to arm."""
        first = self._pending[key][0] if key in self._pending else now
        self._generation += 1
        self._pending[key] = (first, self._generation)
        return self._generation, min(now + self.quiet_s, first + self.max_delay_s) - now

    def fire(self, key: str, generation: int) -> bool:
        """True (and the burst is over) when ``generation`` is the key's latest request."""
        pending = self._pending.get(key)
        if pending is None or pending[1] != generation:
            return False
        del self._pending[key]
        return True

    def clear(self) -> None:
        self._pending.clear()
