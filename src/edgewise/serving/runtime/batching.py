"""Dynamic micro-batching inside a replica.

Requests that arrive while the model is busy are merged into one forward pass (up to
``max_batch`` samples; by default nothing waits on a timer: whatever queued while the
previous batch ran goes next, ``max_wait_s`` adds an optional wait for more).
At low load a request runs alone and waits for nothing; under load the batch grows and
per-sample cost falls, which is where a served replica wins back what the HTTP path
costs.

The model function returns a tuple of per-sample sequences (say classes and scores);
each caller gets the same tuple cut to its own samples.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

Outputs = tuple[Sequence[Any], ...]
"""Per-sample results of one forward pass: each sequence has one entry per sample."""
InferFn = Callable[[np.ndarray], Outputs]


@dataclass
class _Item:
    batch: np.ndarray
    future: asyncio.Future[Outputs]


class MicroBatcher:
    """Collects request batches and runs them together on a single-worker executor."""

    def __init__(
        self, infer: InferFn, executor: Executor, max_batch: int = 8, max_wait_s: float = 0.0
    ) -> None:
        self._infer = infer
        self._executor = executor
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task[None] | None = None
        self.batches_run = 0
        self.samples_run = 0

    @property
    def pending(self) -> int:
        """Requests waiting for a forward pass (not counting the one running)."""
        return 0 if self._queue is None else self._queue.qsize()

    async def submit(self, batch: np.ndarray) -> Outputs:
        """Run ``batch`` (N samples) with whatever else queued; its N results back."""
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        fut: asyncio.Future[Outputs] = loop.create_future()
        await self._queue.put(_Item(batch, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        carry: _Item | None = None
        while True:
            first = carry if carry is not None else await queue.get()
            carry = None
            items, size = [first], first.batch.shape[0]
            deadline = loop.time() + self.max_wait_s
            while size < self.max_batch:
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:
                        nxt = queue.get_nowait()
                    else:
                        nxt = await asyncio.wait_for(queue.get(), remaining)
                except (asyncio.QueueEmpty, TimeoutError):
                    break
                if size + nxt.batch.shape[0] > self.max_batch:
                    carry = nxt
                    break
                items.append(nxt)
                size += nxt.batch.shape[0]
            await self._run_items(loop, items)

    async def _run_items(self, loop: asyncio.AbstractEventLoop, items: list[_Item]) -> None:
        merged = items[0].batch if len(items) == 1 else np.concatenate([i.batch for i in items])
        try:
            outputs = await loop.run_in_executor(self._executor, self._infer, merged)
        except Exception as err:
            for it in items:
                if not it.future.done():
                    it.future.set_exception(err)
            return
        self.batches_run += 1
        self.samples_run += merged.shape[0]
        start = 0
        for it in items:
            n = it.batch.shape[0]
            if not it.future.done():
                it.future.set_result(tuple(out[start : start + n] for out in outputs))
            start += n
