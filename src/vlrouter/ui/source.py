"""Where the console's rows come from: the decision log, read only through ``read_rows``.

``read_rows`` blocks, so it runs in a thread, one read at a time per gateway, always over a time
window. A window is read backwards from its end in slices that double in length (``FIRST_SLICE_S``
first) until it is covered or ``max_rows`` rows are in hand, so a figure over a week of a busy log
reads about ``max_rows`` rows, not the week; only the latest ``max_rows`` are kept (``truncated``
says so). Reads are reused for ``TTL_S`` seconds: the Live panel of several open browsers costs one
read, not one each.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlrouter.telemetry.decision_log import read_rows

TTL_S = 2.0
FIRST_SLICE_S = 900.0
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

    path: str | Path  # whatever ``read_rows`` reads: the configured ``log.path``
    max_rows: int
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _cache: dict[tuple, tuple[float, Window]] = field(default_factory=dict, repr=False)

    async def window(self, seconds: float, *, now: float | None = None, max_rows: int | None = None) -> Window:
        """The latest rows (at most ``max_rows``, default the source's) of the last ``seconds`` (at
        most ``MAX_WINDOW_S``), reused for ``TTL_S`` unless ``now`` is given."""
        seconds = min(max(seconds, 1.0), MAX_WINDOW_S)
        cap = min(max_rows or self.max_rows, self.max_rows)
        key = (seconds, cap)
        async with self._lock:
            hit = self._cache.get(key)
            if hit is not None and time.monotonic() - hit[0] < TTL_S and now is None:
                return hit[1]
            until = now if now is not None else time.time()
            result = await self._read(until - seconds, until, cap)
            self._cache[key] = (time.monotonic(), result)
            if len(self._cache) > 16:
                self._cache.pop(next(iter(self._cache)))
            return result

    async def around(self, since: float, until: float) -> Window:
        """The rows of an explicit range (not cached: a record looked up by time)."""
        async with self._lock:
            return await self._read(since, min(until, since + MAX_WINDOW_S), self.max_rows)

    async def _read(self, since: float, until: float, cap: int) -> Window:
        slices, kept, end, step = [], 0, until, FIRST_SLICE_S
        try:
            while end > since and kept < cap:
                start = max(since, end - step)
                rows = await asyncio.to_thread(read_rows, self.path, since=start, until=end)
                slices.append(rows)
                kept, end, step = kept + len(rows), start, step * 2
        except FileNotFoundError:  # nothing logged yet
            return Window([], since, until)
        rows = [r for chunk in reversed(slices) for r in chunk]
        truncated = len(rows) > cap or (end > since and len(rows) >= cap)
        return Window(rows[-cap:], since, until, truncated)
