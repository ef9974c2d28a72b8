"""Micro-batching: concurrent requests' encoder calls run as one batch on one worker thread.

A request enqueues its item and awaits a future. A worker task takes the first waiting item, keeps
collecting until ``max_batch`` items or ``max_wait_ms`` have passed, runs the batch in the
encoder's single-thread executor (off the event loop) and resolves every future with its row. While
a batch runs, new items pile up and form the next batch, so the wait only costs anything when the
gateway is idle.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np


class MicroBatcher:
    def __init__(self, fn: Callable[[list[Any]], np.ndarray], executor: Executor, *, max_batch: int,
                 max_wait_ms: float, enabled: bool = True):
        self.fn = fn
        self.executor = executor
        self.max_batch = max_batch if enabled else 1
        self.max_wait_s = max_wait_ms / 1000.0 if enabled else 0.0
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: Any) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run())
        future = loop.create_future()
        await self._queue.put((item, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        queue = self._queue
        assert queue is not None
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
            live = [(item, fut) for item, fut in batch if not fut.done()]  # skip cancelled callers
            if not live:
                continue
            try:
                rows = await loop.run_in_executor(self.executor, self.fn, [item for item, _ in live])
            except Exception as exc:  # every waiter sees the encoder's error
                for _, fut in live:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(live)
            for (_, fut), row in zip(live, rows, strict=True):
                if not fut.done():
                    fut.set_result(row)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
