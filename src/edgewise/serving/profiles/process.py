"""The parent side of a replica: start the process, send requests, time them.

:func:`start_replica` runs a :class:`ReplicaSpec` as a child process (inside a cgroup
when given) and yields a :class:`Replica`, which writes request ids to the child's stdin
(all at once, or each at its due time from a sender thread at raised priority) and reads
the child's ``id start done cpu`` answers into an :class:`~.exchange.Exchange`. The
child is :mod:`edgewise.serving.profiles.worker`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from edgewise.errors import EnvironmentProblem
from edgewise.serving.profiles.exchange import Exchange
from edgewise.serving.profiles.worker import READY

if TYPE_CHECKING:
    from edgewise.isolation import CGroup


@dataclass(frozen=True)
class ReplicaSpec:
    """What a replica process runs: a model reference (or ``"spin"``) with a thread count.

    ``model`` is a zoo name, a registry entry ``NAME[:vN]`` or a model file; ``kb`` is
    the knowledge-base URL registry entries are looked up in (``None``: the default
    one). The URL reaches the child as ``$EDGEWISE_DB_URL``, never on its command line
    (where a password would show in the process list).
    """

    model: str
    batch_size: int = 1
    threads: int = 1
    seed: int = 0
    warmup: int = 10
    spin_ms: float = 1.0
    kb: str | None = None

    def command(self) -> list[str]:
        """The command line that runs this replica (:mod:`edgewise.serving.profiles`)."""
        return [
            sys.executable,
            "-m",
            "edgewise.serving.profiles",
            "--model",
            self.model,
            "--batch-size",
            str(self.batch_size),
            "--threads",
            str(self.threads),
            "--seed",
            str(self.seed),
            "--warmup",
            str(self.warmup),
            "--spin-ms",
            repr(self.spin_ms),
        ]


def _raise_priority(nice: int = -10) -> None:
    """Give the calling thread a higher CPU weight (nice), when allowed.

    The load generator's sender must write each request on time although the host is
    shared; a late write would be charged to the replica. Without the privilege the
    thread keeps its priority and the lateness shows in :meth:`~.exchange.Exchange.lateness_ms`.
    """
    with suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


class Replica:
    """A running replica process (made by :func:`start_replica`)."""

    def __init__(self, proc: subprocess.Popen[bytes], stderr: IO[bytes], label: str) -> None:
        self.proc = proc
        self._stderr = stderr
        self.label = label
        self._next_id = 0
        self._lock = threading.Lock()

    def _died(self) -> EnvironmentProblem:
        self._stderr.seek(0)
        tail = self._stderr.read().decode(errors="replace").strip().splitlines()
        last = tail[-1] if tail else "no output"
        try:
            code: int | None = self.proc.wait(timeout=5.0)  # EOF comes just before the exit
        except subprocess.TimeoutExpired:
            code = None
        hint = " (killed: memory limit of the flavor?)" if code in (-9, 137) else ""
        return EnvironmentProblem(f"replica {self.label} exited with {code}{hint}: {last}")

    def wait_ready(self, timeout_s: float) -> None:
        """Block until the replica prints READY; one-line error if it dies or stalls."""
        assert self.proc.stdout is not None
        result: list[bytes] = []
        reader = threading.Thread(
            target=lambda: result.append(self.proc.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(timeout_s)
        if not result:
            raise EnvironmentProblem(f"replica {self.label} not ready after {timeout_s:.0f} s")
        if result[0].strip() != READY:
            raise self._died()

    def _ids(self, n: int) -> list[int]:
        with self._lock:
            first = self._next_id
            self._next_id += n
        return list(range(first, first + n))

    def _send_all(self, ids: Sequence[int], at_ns: Sequence[int] | None, sent: np.ndarray) -> None:
        assert self.proc.stdin is not None
        pipe = self.proc.stdin
        _raise_priority()
        try:
            if at_ns is None:
                sent[:] = time.monotonic_ns()
                pipe.write(b"".join(b"%d\n" % i for i in ids))
                pipe.flush()
                return
            for k, (rid, t) in enumerate(zip(ids, at_ns, strict=True)):
                delay = (t - time.monotonic_ns()) / 1e9
                if delay > 0:
                    time.sleep(delay)
                sent[k] = time.monotonic_ns()
                pipe.write(b"%d\n" % rid)
                pipe.flush()
        except (BrokenPipeError, ValueError):
            pass  # the replica died; the reader reports it

    def exchange(self, n: int, at_ns: Sequence[int] | None = None) -> Exchange:
        """Send ``n`` requests (all at once, or each at its ``at_ns``) and time them."""
        assert self.proc.stdout is not None
        ids = self._ids(n)
        index = {rid: k for k, rid in enumerate(ids)}
        start = np.zeros(n, dtype=np.int64)
        done = np.zeros(n, dtype=np.int64)
        cpu = np.zeros(n, dtype=np.int64)
        sent = np.zeros(n, dtype=np.int64)
        sender = threading.Thread(target=self._send_all, args=(ids, at_ns, sent), daemon=True)
        sender.start()
        for _ in range(n):
            line = self.proc.stdout.readline()
            parts = line.split()
            if len(parts) != 4:
                raise self._died()
            k = index[int(parts[0])]
            start[k], done[k], cpu[k] = int(parts[1]), int(parts[2]), int(parts[3])
        sender.join()
        scheduled = sent.copy() if at_ns is None else np.asarray(at_ns, dtype=np.int64)
        return Exchange(scheduled, sent, start, done, cpu)

    def burst(self, n: int) -> np.ndarray:
        """Service times (ms) of ``n`` back-to-back requests: gaps between completions."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        return self.exchange(n).service_ms()

    def run_arrivals(self, arrivals_s: np.ndarray, lead_s: float = 0.05) -> Exchange:
        """Open loop: request k is written at ``arrivals_s[k]`` s from now (+ ``lead_s``)."""
        arrivals = np.asarray(arrivals_s, dtype=float)
        t0 = time.monotonic_ns() + int(lead_s * 1e9)
        at_ns = (t0 + np.round(arrivals * 1e9)).astype(np.int64)
        return self.exchange(arrivals.size, [int(t) for t in at_ns])

    def open_loop(self, arrivals_s: np.ndarray, lead_s: float = 0.05) -> np.ndarray:
        """Latency (ms) of requests sent at ``arrivals_s`` seconds from now (+ ``lead_s``)."""
        if np.asarray(arrivals_s).size == 0:
            return np.zeros(0)
        return self.run_arrivals(arrivals_s, lead_s).latency_ms()

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the replica to quit (killed after ``timeout_s``) and release its pipes."""
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(b"Q\n")
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


@contextmanager
def start_replica(
    spec: ReplicaSpec,
    cgroup: CGroup | None = None,
    ready_timeout_s: float = 180.0,
) -> Iterator[Replica]:
    """Run a replica process (inside ``cgroup`` when given) until the block ends."""
    from edgewise.isolation import spawn_in_cgroup

    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Replica.close
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[key] = str(spec.threads)
    if spec.kb is not None:
        env["EDGEWISE_DB_URL"] = spec.kb
    kwargs: dict[str, Any] = {
        "stdin": subprocess.PIPE,
        "stdout": subprocess.PIPE,
        "stderr": stderr,
        "env": env,
    }
    cmd = spec.command()
    proc = spawn_in_cgroup(cmd, cgroup, **kwargs) if cgroup else subprocess.Popen(cmd, **kwargs)
    replica = Replica(proc, stderr, f"{spec.model}")
    try:
        replica.wait_ready(ready_timeout_s)
        yield replica
    finally:
        replica.close()
