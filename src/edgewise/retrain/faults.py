"""Fault injection for tests, benchmarks and demos: a launcher that kills a device.

Kept out of the production loop: :func:`edgewise.retrain.controller.run_training` knows
nothing of injected faults. :class:`KillDeviceAtStep` wraps any launcher (the emulated
or the Ray pool), hears the group's progress (it is a
:class:`~edgewise.retrain.controller.StepObserver`), kills one device's rank and its
background app once the group reaches a step, and hands the failure back to the
controller as data (it is a :class:`~edgewise.retrain.controller.FailureReporter`),
the way a federated strategy receives the clients that failed a round.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from edgewise.retrain.controller import (
    DeviceFailure,
    Launcher,
    RankProcess,
    rendezvous,
    stop_rank,
)


class KillDeviceAtStep:
    """Launcher wrapper: SIGKILL ``device``'s rank and app once the group reaches ``step``.

    Parameters
    ----------
    launcher : Launcher
        The pool that runs the ranks.
    step : int
        The first step at which the device dies (once per run).
    device : str or None
        The victim; ``None`` is the last rank of the running group.
    clock : callable
        Wall clock of the failure's time stamp (recovery is measured from it).
    """

    def __init__(
        self,
        launcher: Launcher,
        step: int,
        device: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.launcher = launcher
        self.step = step
        self.device = device
        self.clock = clock
        self.killed: DeviceFailure | None = None
        self._ranks: list[tuple[str, RankProcess]] = []
        self._reports: list[DeviceFailure] = []

    def spawn(self, name: str, cmd: list[str], **kw: Any) -> RankProcess:
        """Start a rank on the wrapped launcher and remember it."""
        proc = self.launcher.spawn(name, cmd, **kw)
        self._ranks.append((name, proc))
        return proc

    def kill_device(self, name: str) -> None:
        """Pass a device kill through to the wrapped launcher."""
        self.launcher.kill_device(name)

    def rendezvous(self, device: str) -> tuple[str, int]:
        """The wrapped launcher's rendezvous for a group whose rank 0 runs on ``device``."""
        return rendezvous(self.launcher, device)

    def at_step(self, step: int) -> None:
        """Kill the victim the first time the group reaches ``self.step`` with it running."""
        if self.killed is not None or step < self.step or not self._ranks:
            return
        victim = self.device or self._ranks[-1][0]
        running = [p for name, p in self._ranks if name == victim and p.poll() is None]
        if not running:
            return
        t = self.clock()
        for proc in running:
            stop_rank(proc, signal.SIGKILL)
        self.launcher.kill_device(victim)
        self.killed = DeviceFailure(victim, t, step)
        self._reports.append(self.killed)

    def drain_failures(self) -> list[DeviceFailure]:
        """The failures caused since the last call (each is reported once)."""
        out, self._reports = self._reports, []
        return out
