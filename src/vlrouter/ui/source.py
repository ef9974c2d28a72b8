"""Where the console's rows come from: the decision log, read only through ``read_rows``.

``read_rows`` blocks, so it runs in a thread, one read at a time per gateway, always over a time
window, and only the latest ``max_rows`` rows of a window are kept (``truncated`` says so). Reads
are reused for ``TTL_S`` seconds: the Live panel of several open browsers costs one read, not one
each.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlrouter.telemetry.decision_log import read_rows

TTL_S = 2.0
MAX_WINDOW_S = 7 * 86400  # the longest window a console figure reads


@dataclass
class Window:
    """Rows of [since, until) (the latest ``max_rows`` of them) and whether more were cut off."""

    rows: list[dict[str, Any]]
    since: float
    until: float
    truncated: bool = False

    def meta(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "rows": len(self.rows), "truncated": self.truncated}


@dataclass
class LogSource:
    """Windowed, capped, briefly cached reads of one decision log."""

    path: Path
    max_rows: int
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _cache: dict[tuple, tuple[float, Window]] = field(default_factory=dict, repr=False)

    async def window(self, seconds: float, *, now: float | None = None) -> Window:
        """The rows of the last ``seconds`` (at most ``MAX_WINDOW_S``), reused for ``TTL_S``."""
        seconds = min(max(seconds, 1.0), MAX_WINDOW_S)
        key = ("last", seconds)
        async with self._lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < TTL_S and now is None:
                return hit[1]
            until = now if now is not None else time.time()
            result = await self._read(until - seconds, until)
            self._cache[key] = (time.monotonic(), result)
            if len(self._cache) > 16:
                self._cache.pop(next(iter(self._cache)))
            return result

    async def around(self, since: float, until: float) -> Window:
        """The rows of an explicit range (not cached: a record looked up by time)."""
        async with self._lock:
            return await self._read(since, min(until, since + MAX_WINDOW_S))

    async def _read(self, since: float, until: float) -> Window:
        try:
            rows = await asyncio.to_thread(read_rows, self.path, since=since, until=until)
        except FileNotFoundError:  # nothing logged yet
            return Window([], since, until)
        truncated = len(rows) > self.max_rows
        return Window(rows[-self.max_rows:] if truncated else rows, since, until, truncated)
