from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from edgewise.serving.runtime.batching import MicroBatcher


def _infer_sum(batch: np.ndarray) -> tuple[list[int], list[float]]:
    time.sleep(0.01)
    flat = batch.reshape(batch.shape[0], -1)
    return [int(v) for v in flat.sum(axis=1)], [float(batch.shape[0])] * batch.shape[0]


def test_concurrent_requests_are_merged_and_answered_in_order() -> None:
    async def main() -> tuple[list, MicroBatcher]:
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(_infer_sum, pool, max_batch=8)
            reqs = [np.full((1, 2), i, dtype=np.float32) for i in range(20)]
            out = await asyncio.gather(*(b.submit(r) for r in reqs))
            return out, b

    out, b = asyncio.run(main())
    assert [o[0][0] for o in out] == [2 * i for i in range(20)]  # each gets its own answer
    assert b.samples_run == 20
    assert b.batches_run < 20  # merged under load
    assert all(o[1][0] <= 8 for o in out)  # never above max_batch


def test_lone_request_runs_alone_without_waiting() -> None:
    async def main() -> tuple[float, MicroBatcher]:
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(_infer_sum, pool, max_batch=8)
            t0 = time.perf_counter()
            await b.submit(np.ones((2, 3), dtype=np.float32))
            return time.perf_counter() - t0, b

    took, b = asyncio.run(main())
    assert b.batches_run == 1 and b.samples_run == 2
    assert took < 0.5


def test_errors_reach_every_caller_of_the_batch() -> None:
    def boom(batch: np.ndarray) -> tuple[list[int], list[float]]:
        raise ValueError("model failed")

    async def main() -> list:
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(boom, pool)
            return await asyncio.gather(
                *(b.submit(np.zeros((1, 1))) for _ in range(3)), return_exceptions=True
            )

    res = asyncio.run(main())
    assert all(isinstance(r, ValueError) for r in res)
