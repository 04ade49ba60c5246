"""A device's latency-critical background app: open-loop inference that times itself.

Run as ``python -m edgewise.retrain.background --out LOG ...``. Requests arrive as a
Poisson process at ``rate_rps`` (re-read from the ``--control`` JSON file twice a
second, so a test or the user can step the load); each request's latency is measured
from its *scheduled* arrival (queueing included) to the end of inference. Every
request is appended to ``LOG`` as ``arrival_unix_s latency_ms rate_rps`` lines.

Reading the log back (:func:`read_log`, :func:`summarise`) is pure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def read_log(path: Path) -> np.ndarray:
    """All requests in a background log as an ``(n, 3)`` array: arrival, latency_ms, rate."""
    p = Path(path)
    if not p.exists():
        return np.zeros((0, 3))
    rows = []
    for line in p.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            rows.append([float(v) for v in parts])
    return np.array(rows, dtype=float).reshape(-1, 3)


def summarise(
    log: np.ndarray, deadline_ms: float, t0: float = -np.inf, t1: float = np.inf
) -> dict[str, float]:
    """Latency percentiles and deadline misses of requests that arrived in ``[t0, t1)``."""
    sel = log[(log[:, 0] >= t0) & (log[:, 0] < t1)]
    lat = sel[:, 1]
    if lat.size == 0:
        return {"n": 0, "misses": 0, "miss_rate": 0.0, "p50": 0.0, "p95": 0.0, "p99": 0.0}
    misses = int((lat > deadline_ms).sum())
    return {
        "n": int(lat.size),
        "misses": misses,
        "miss_rate": misses / lat.size,
        "p50": float(np.percentile(lat, 50)),
        "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)),
    }


class LogTail:
    """Incremental reader of a background log (only new complete lines each call)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._offset = 0
        self._rows: list[list[float]] = []

    def poll(self) -> np.ndarray:
        """Every request read so far as an ``(n, 3)`` array (reads what was appended)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            chunk = b""
        end = chunk.rfind(b"\n")
        if end >= 0:
            self._offset += end + 1
            for line in chunk[: end + 1].decode().splitlines():
                parts = line.split()
                if len(parts) == 3:
                    self._rows.append([float(v) for v in parts])
        return np.array(self._rows, dtype=float).reshape(-1, 3)


def window_stats(
    log: np.ndarray, now: float, window_s: float, percentile: float = 99.0, lag_s: float = 0.6
) -> tuple[float, float, int]:
    """Rate, latency percentile and count of requests that arrived in the last window.

    The window ends ``lag_s`` before ``now`` (the app flushes its log twice a second).
    """
    t1 = now - lag_s
    sel = log[(log[:, 0] >= t1 - window_s) & (log[:, 0] < t1)]
    if sel.shape[0] == 0:
        return 0.0, 0.0, 0
    return sel.shape[0] / window_s, float(np.percentile(sel[:, 1], percentile)), int(sel.shape[0])


def _read_rate(control: Path | None, current: float) -> float:
    if control is None or not control.exists():
        return current
    try:
        return float(json.loads(control.read_text())["rate_rps"])
    except (ValueError, KeyError, OSError):
        return current


def serve(
    model: str,
    rate_rps: float,
    out: Path,
    control: Path | None,
    seed: int,
    batch_size: int = 1,
    duration_s: float | None = None,
) -> None:
    """Serve open-loop requests until killed (or for ``duration_s``).

    ``model`` is a zoo name (seeded weights) or a registered ``NAME:vN`` (loaded from the
    knowledge base of ``$EDGEWISE_DB_URL``), as :func:`~edgewise.workloads.runner.runner_for`.
    """
    import torch

    from edgewise.procs import die_with_parent
    from edgewise.workloads.runner import runner_for

    die_with_parent()
    runner = runner_for(model, batch_size=batch_size, threads=1, seed=seed)
    infer, batch = runner.infer, runner.batch
    with torch.inference_mode():
        for _ in range(5):
            infer(batch)
    from edgewise.retrain.devices import join_device_group

    join_device_group()
    rng = np.random.default_rng(seed)
    start = time.time()
    nxt = start
    pending: list[str] = []
    last_flush = start
    with open(out, "a") as fh:
        while duration_s is None or time.time() - start < duration_s:
            now = time.time()
            if now - last_flush >= 0.5:
                fh.write("".join(pending))
                fh.flush()
                pending.clear()
                last_flush = now
                rate_rps = _read_rate(control, rate_rps)
            if rate_rps <= 0:
                time.sleep(0.1)
                nxt = time.time()
                continue
            if nxt > now:
                time.sleep(min(nxt - now, 0.5))
                continue
            with torch.inference_mode():
                infer(batch)
            done = time.time()
            pending.append(f"{nxt:.6f} {(done - nxt) * 1e3:.3f} {rate_rps:g}\n")
            nxt += rng.exponential(1.0 / rate_rps)
        fh.write("".join(pending))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edgewise.retrain.background")
    ap.add_argument("--model", default="digits_cnn")
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--control", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--duration", type=float, default=None)
    a = ap.parse_args(argv)
    serve(a.model, a.rate, a.out, a.control, a.seed, a.batch_size, a.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())


class BackgroundMonitor:
    """The apps' own latency/rate reports per device, for the load-aware controller.

    Parameters
    ----------
    logs
        Device name -> background log path.
    deadlines_ms
        Device name -> deadline at the app's percentile.
    percentiles
        Device name -> that percentile (default 99).
    window_s
        Length of the observation window.
    """

    def __init__(
        self,
        logs: dict[str, Path],
        deadlines_ms: dict[str, float],
        percentiles: dict[str, float] | None = None,
        window_s: float = 2.0,
    ) -> None:
        self.deadlines_ms = deadlines_ms
        self.percentiles = percentiles or {}
        self.window_s = window_s
        self._tails = {n: LogTail(p) for n, p in logs.items()}

    def observe(self, now: float) -> dict[str, Any]:
        from edgewise.retrain.loadaware import BackgroundObservation

        out: dict[str, Any] = {}
        for name, tail in self._tails.items():
            rate, lat, n = window_stats(
                tail.poll(), now, self.window_s, self.percentiles.get(name, 99.0)
            )
            out[name] = BackgroundObservation(rate, lat, n)
        return out

    @classmethod
    def for_pool(cls, pool: Any, window_s: float = 2.0) -> BackgroundMonitor:
        """A monitor over every device of an :class:`EmulatedPool` that has an app."""
        specs = [s for s in pool.specs.values() if s.background is not None]
        return cls(
            {s.name: pool.bg_log(s.name) for s in specs},
            {s.name: s.background.deadline_ms for s in specs},
            {s.name: s.background.percentile for s in specs},
            window_s,
        )
