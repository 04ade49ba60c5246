"""The replica side: a child process that serves one request per line of its stdin.

Run as ``python -m edgewise.serving.profiles --model REF ...`` (:func:`replica_main`).
It builds the model (a zoo name, a registry entry ``NAME[:vN]`` or a model file, see
:func:`edgewise.workloads.runner.runner_for`; or a synthetic CPU burn), warms it up, prints :data:`READY`, then
answers each request id with ``id start done cpu``: ``CLOCK_MONOTONIC`` ns around the
request and the process CPU ns it used. The parent side is
:mod:`edgewise.serving.profiles.process`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

#: Marker the replica prints once its model is built and warm.
READY = b"READY"


def _spin_service(mean_ms: float, seed: int) -> Callable[[], None]:
    """A synthetic service: burn an exponential amount of this thread's CPU time."""
    rng = np.random.default_rng(seed)

    def serve() -> None:
        need = int(rng.exponential(mean_ms) * 1e6)
        end = time.thread_time_ns() + need
        while time.thread_time_ns() < end:
            pass

    return serve


def _model_service(model: str, batch_size: int, threads: int, seed: int) -> Callable[[], None]:
    from edgewise.workloads.runner import runner_for

    # a registry entry is looked up in the knowledge base of $EDGEWISE_DB_URL (the
    # parent sets it to the one the command uses, see ReplicaSpec.kb)
    runner = runner_for(model, batch_size=batch_size, threads=threads, seed=seed)
    batch = runner.batch

    def serve() -> None:
        runner.infer(batch)

    return serve


def replica_main(argv: Sequence[str] | None = None) -> int:
    """Replica loop: read one request id per line, serve it, answer ``id start done cpu``.

    ``start`` and ``done`` are ``CLOCK_MONOTONIC`` ns around the request, ``cpu`` the
    process CPU time (ns, all threads) it used: wall time above CPU time is time the
    replica was runnable but not running (CPU-quota throttling, a busy host).

    ``--model spin --spin-ms M`` replaces inference by an exponential CPU burn of mean M
    ms (a replica with a known M/M/1 behaviour, for checking the harness).

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status (0 once stdin ends or a ``Q`` line arrives).
    """
    parser = argparse.ArgumentParser(prog="edgewise-replica")
    parser.add_argument("--model", required=True)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--spin-ms", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.model == "spin":
        serve = _spin_service(args.spin_ms, args.seed)
    else:
        serve = _model_service(args.model, args.batch_size, args.threads, args.seed)
    for _ in range(args.warmup):
        serve()
    out = sys.stdout.buffer
    out.write(READY + b"\n")
    out.flush()
    for line in sys.stdin.buffer:
        rid = line.strip()
        if not rid or rid == b"Q":
            break
        start = time.monotonic_ns()
        cpu0 = time.process_time_ns()
        serve()
        cpu = time.process_time_ns() - cpu0
        done = time.monotonic_ns()
        out.write(b"%s %d %d %d\n" % (rid, start, done, cpu))
        out.flush()
    return 0
