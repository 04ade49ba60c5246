"""Open-loop HTTP load generator, run in its own process.

Requests are sent at pre-drawn arrival times whatever the server does (open loop), and
each latency is measured from the request's *scheduled* send time, so a slow server
cannot hide its queueing (no coordinated omission). A request that times out or fails
counts with status 0. One asyncio event loop with a keep-alive connection pool drives
thousands of requests per second from one core.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LoadResult:
    """Per-request records of one load run (arrays of equal length, in send order)."""

    scheduled_s: np.ndarray  # scheduled send time relative to the run start
    sent_lag_ms: np.ndarray  # how late the generator actually sent it
    latency_ms: np.ndarray  # completion - scheduled send time; NaN when no response
    status: np.ndarray  # HTTP status, 0 for timeouts and connection errors

    @property
    def n(self) -> int:
        return int(self.scheduled_s.size)

    def ok(self) -> np.ndarray:
        return self.status == 200

    def attainment(self, slo_ms: float) -> float:
        """Fraction of requests answered 200 within ``slo_ms`` (failures count against)."""
        if self.n == 0:
            return 1.0
        good = self.ok() & (np.nan_to_num(self.latency_ms, nan=np.inf) <= slo_ms)
        return float(good.mean())

    def percentile(self, q: float) -> float:
        lat = self.latency_ms[self.ok()]
        return float(np.percentile(lat, q)) if lat.size else float("nan")


async def _drive(
    url: str,
    arrivals_s: np.ndarray,
    body: bytes,
    content_type: str,
    timeout_s: float,
    max_in_flight: int,
) -> dict[str, np.ndarray]:
    import aiohttp

    n = arrivals_s.size
    lag = np.zeros(n)
    lat = np.full(n, np.nan)
    status = np.zeros(n, dtype=np.int32)
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=max_in_flight, force_close=False)
    headers = {"content-type": content_type}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = loop.time() + 0.1

        async def one(i: int, when: float) -> None:
            lag[i] = (loop.time() - when) * 1000.0
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status[i] = resp.status
            except (TimeoutError, aiohttp.ClientError, OSError):
                status[i] = 0
                return
            lat[i] = (loop.time() - when) * 1000.0

        tasks = []
        for i in range(n):
            when = t0 + float(arrivals_s[i])
            delay = when - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, when)))
        if tasks:
            await asyncio.gather(*tasks)
    return {"lag": lag, "lat": lat, "status": status}


def _child(conn: Any, fn: Any, args: tuple[Any, ...]) -> None:
    """Run coroutine function ``fn(*args)`` in this (child) process; send back its result."""
    try:
        conn.send(("ok", asyncio.run(fn(*args))))
    except BaseException as err:  # report, never hang the parent
        conn.send(("error", f"{type(err).__name__}: {err}"))
    finally:
        conn.close()


def _in_child(fn: Any, args: tuple[Any, ...], limit_s: float) -> Any:
    """Run a load coroutine in its own process, so it never competes for our GIL."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(limit_s):
            raise TimeoutError(f"load generator did not finish within {limit_s:.0f} s")
        kind, payload = parent.recv()
    except EOFError:
        kind, payload = "error", f"the load generator process died (exit code {proc.exitcode})"
    finally:
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
    if kind != "ok":
        raise RuntimeError(f"load generator failed: {payload}")
    return payload


def run_load(
    url: str,
    arrivals_s: np.ndarray,
    body: bytes,
    content_type: str = "application/octet-stream",
    timeout_s: float = 10.0,
    max_in_flight: int = 512,
) -> LoadResult:
    """Send one request per arrival time (seconds from start) from a child process."""
    arrivals = np.sort(np.asarray(arrivals_s, dtype=float))
    horizon = (float(arrivals[-1]) if arrivals.size else 0.0) + timeout_s + 30.0
    args = (url, arrivals, body, content_type, timeout_s, max_in_flight)
    payload = _in_child(_drive, args, horizon)
    return LoadResult(arrivals, payload["lag"], payload["lat"], payload["status"])


def constant_arrivals(
    rate_rps: float, seconds: float, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """Poisson arrivals at a constant rate (seconds from start).

    One bin of :func:`edgewise.stats.poisson_arrivals`: a Poisson count over ``seconds``,
    placed uniformly.
    """
    from edgewise.stats import poisson_arrivals

    return poisson_arrivals(np.array([float(rate_rps)]), float(seconds), seed)


async def _closed(
    url: str, body: bytes, content_type: str, concurrency: int, seconds: float, warmup_s: float
) -> dict[str, Any]:
    import aiohttp

    loop = asyncio.get_running_loop()
    lat: list[float] = []
    codes: dict[int, int] = {}
    t_start = loop.time()
    t_measure = t_start + warmup_s
    t_end = t_measure + seconds
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"content-type": content_type}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while True:
                t0 = loop.time()
                if t0 >= t_end:
                    return
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        code = resp.status
                except (TimeoutError, aiohttp.ClientError, OSError):
                    code = 0
                t1 = loop.time()
                if t0 >= t_measure and t1 <= t_end:
                    codes[code] = codes.get(code, 0) + 1
                    if code == 200:
                        lat.append((t1 - t0) * 1000.0)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"latency_ms": np.asarray(lat), "codes": codes, "seconds": seconds}


def run_closed_loop(
    url: str,
    body: bytes,
    content_type: str = "application/octet-stream",
    concurrency: int = 16,
    seconds: float = 10.0,
    warmup_s: float = 2.0,
) -> dict[str, Any]:
    """Saturation throughput: ``concurrency`` requests always in flight, from a child process.

    Returns ``throughput_rps`` (200 answers per second in the measured window), the
    latencies of those answers and the count of each status code.
    """
    args = (url, body, content_type, concurrency, seconds, warmup_s)
    payload = _in_child(_closed, args, seconds + warmup_s + 60)
    ok = int(payload["codes"].get(200, 0))
    return {
        "throughput_rps": ok / seconds,
        "latency_ms": payload["latency_ms"],
        "codes": payload["codes"],
    }
