"""The exchange protocol's record: timestamps of a batch of requests to one replica.

Pure numpy, no effects. :class:`Exchange` holds what both sides of the pipe recorded
(``CLOCK_MONOTONIC`` is shared by the two processes) and derives what an open-loop client
sees (:meth:`Exchange.latency_ms`) and what the FIFO queue model needs
(:meth:`Exchange.service_ms`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Exchange:
    """Timestamps (``CLOCK_MONOTONIC`` ns) of a batch of requests to one replica.

    ``scheduled``: when each request was due; ``sent``: when the generator wrote it;
    ``start``/``done``: when the replica began and finished it; ``cpu``: process CPU ns.
    """

    scheduled: np.ndarray
    sent: np.ndarray
    start: np.ndarray
    done: np.ndarray
    cpu: np.ndarray

    def latency_ms(self) -> np.ndarray:
        """Scheduled time to completion: what an open-loop client sees (queue included)."""
        return (self.done - self.scheduled).astype(float) / 1e6

    def service_ms(self) -> np.ndarray:
        """Service time as the FIFO queue sees it: completion minus when it could begin.

        A request can begin at ``max(due, previous completion)``; everything after that
        (late write, replica wake-up, inference, quota throttling, pipe I/O) is its
        service, so ``done[k] = max(due[k], done[k-1]) + service[k]`` holds exactly.
        """
        order = np.argsort(self.done, kind="stable")
        done = self.done[order]
        due = self.scheduled[order]
        ready = due.copy()
        ready[1:] = np.maximum(due[1:], done[:-1])
        out = np.empty(done.size)
        out[order] = (done - ready).astype(float) / 1e6
        return out

    def cpu_ms(self) -> np.ndarray:
        """Process CPU time (ms, all threads) each request used."""
        return self.cpu.astype(float) / 1e6

    def lateness_ms(self) -> np.ndarray:
        """How late the generator wrote each request (0 for a burst)."""
        return (self.sent - self.scheduled).astype(float) / 1e6

    def idle_start(self) -> np.ndarray:
        """Whether each request found the replica idle (its due time after the last completion)."""
        order = np.argsort(self.done, kind="stable")
        idle = np.ones(self.done.size, dtype=bool)
        idle[order[1:]] = self.scheduled[order[1:]] >= self.done[order[:-1]]
        return idle
