"""Multi-resource stress mixes over stress-ng, with the achieved intensity measured.

Pure part: :func:`plan_stressors` maps a normalised intensity per resource (and an
optional per-host :class:`~edgewise.interference.calibration.Calibration`) to one
stress-ng command line per resource plus a duty cycle. Effectful part:
:class:`StressMix` starts those commands, each in its own process group, duty-cycles
them with SIGSTOP/SIGCONT where stress-ng has no load knob, samples their process trees
(CPU, I/O, RSS) and reports the **achieved** intensity, and kills every group on every
exit path (context manager, ``atexit``, SIGTERM/SIGHUP; Ctrl-C, and SIGTERM under the
CLI, arrive as ``KeyboardInterrupt`` and go through ``__exit__``; SIGKILL is left to
the parent-death signal and the watchdog of :mod:`.stress_registry`), scratch files
included.

Knobs and achieved measures (activity divided by the host's peak activity,
:class:`HostCaps`):

========  ===============================================  ==================================
resource  knob                                             activity measured
========  ===============================================  ==================================
cpu       ``--cpu N --cpu-load 100k`` (N = CPUs in scope)  CPU-seconds per second of the tree
membw     ``--memrate 1 --memrate-rd/wr-mbs k·peak``       memrate's own MB/s (yaml metrics)
llc       ``--matrix-3d 1`` (working set ≈ LLC), duty k    CPU-seconds per second
disk      ``--hdd 1`` in a temp dir, duty k                bytes read+written per second
net       ``--sock 1`` on loopback, duty k                 CPU-seconds per second (probed peak)
mem       ``--vm 1 --vm-bytes k·cap --vm-hang 0``          resident bytes
========  ===============================================  ==================================

Hardware cache counters are not available in these VMs, so LLC pressure is the on-CPU
fraction of a matrix stressor whose working set is sized to the last-level cache.

Confinement: ``cpus`` restricts the stressors to a CPU list either with stress-ng's
``--taskset`` (default) or, when a :class:`~edgewise.isolation.CGroup` is given, by
starting every stressor inside that group (its cpuset confines them, and the group's
quota and memory limit apply too).

The module is split by concern: :mod:`.stress_plan` (the pure knob map),
:mod:`.stress_monitor` (sampling process trees) and :mod:`.stress_registry` (live groups,
the watchdog, signal handlers); their public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from edgewise.config import RESOURCES
from edgewise.errors import EnvironmentProblem
from edgewise.interference.stress_monitor import (
    Achieved,
    GroupState,
    TreeTotals,
    has_children,
    read_memrate_mbs,
    sample_tree,
)
from edgewise.interference.stress_plan import (
    DUTY_RESOURCES,
    STRESS_NG,
    HostCaps,
    StressorPlan,
    plan_stressors,
    require_stress_ng,
    validate_intensity,
)
from edgewise.interference.stress_registry import (
    group_alive,
    install_handlers,
    kill_all_live,
    register,
    register_scratch,
    signal_group,
    unregister,
    unregister_scratch,
)
from edgewise.procs import child_preexec, free_port

if TYPE_CHECKING:
    from edgewise.interference.calibration import Calibration
    from edgewise.isolation import CGroup

__all__ = [
    "DUTY_RESOURCES",
    "STRESS_NG",
    "Achieved",
    "HostCaps",
    "StressMix",
    "StressorPlan",
    "describe",
    "kill_all_live",
    "plan_stressors",
    "require_stress_ng",
    "run_stress",
    "validate_intensity",
]

#: stress-ng's own --timeout runs this long past the mix's seconds (a safety net only)
_TIMEOUT_SLACK_S = 30.0


class StressMix:
    """Run a stress mix; measure what it achieves; never let it outlive the caller.

    Use as a context manager::

        with StressMix({"cpu": 0.6, "membw": 0.3}, seconds=10) as mix:
            mix.begin_window()
            ...               # drive the target
            achieved = mix.end_window()
    """

    def __init__(
        self,
        intensity: Mapping[str, float],
        *,
        seconds: float,
        cpus: Sequence[int] | None = None,
        caps: HostCaps | None = None,
        calibration: Calibration | None = None,
        workdir: Path | None = None,
        duty_period_s: float = 0.05,
        sample_interval_s: float = 0.2,
        cgroup: CGroup | None = None,
        ready_timeout_s: float = 20.0,
    ) -> None:
        self.intensity = validate_intensity(intensity)
        self.seconds = float(seconds)
        self.cgroup = cgroup
        if not cpus and cgroup is not None and cgroup.cpuset:
            from edgewise.telemetry.cgroupfs import parse_cpu_list

            cpus = parse_cpu_list(cgroup.cpuset)
        self.cpus = list(cpus) if cpus else None
        self.caps = caps or (calibration.caps if calibration is not None else HostCaps.default())
        self.calibration = calibration
        self.workdir = workdir
        self.duty_period_s = duty_period_s
        self.sample_interval_s = sample_interval_s
        self._groups: list[GroupState] = []
        self._tmp: Path | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._window: tuple[float, dict[str, TreeTotals]] | None = None
        self._lock = threading.Lock()
        self._started_at = time.monotonic()
        self.ready_timeout_s = ready_timeout_s
        self.plans: list[StressorPlan] = []

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> StressMix:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start every stressor in its own process group, plus the sampler threads."""
        require_stress_ng()
        install_handlers()
        self._tmp = wd = Path(tempfile.mkdtemp(prefix="edgewise-stress-", dir=self.workdir))
        register_scratch(str(wd))
        self.plans = plan_stressors(
            self.intensity,
            self.caps,
            seconds=self.seconds + _TIMEOUT_SLACK_S,
            workdir=wd,
            cpus=self.cpus,
            calibration=self.calibration,
            net_port=free_port(),
            taskset=self.cgroup is None,
        )
        try:
            for plan in self.plans:
                proc = self._spawn(list(plan.argv), wd)
                self._groups.append(GroupState(plan, proc))
                register(proc)
            self._started_at = time.monotonic()
            self._await_workers()
        except BaseException:
            self.stop()
            raise
        self._stop.clear()
        self._threads = [threading.Thread(target=self._sample_loop, daemon=True)]
        if any(g.plan.duty < 1.0 for g in self._groups):
            self._threads.append(threading.Thread(target=self._duty_loop, daemon=True))
        for t in self._threads:
            t.start()

    def _spawn(self, argv: list[str], wd: Path) -> subprocess.Popen[bytes]:
        """Start one stressor in its own process group (inside the cgroup if given),
        set to die with this process even when it is killed with no chance to clean up."""
        kw: dict[str, Any] = {
            "stdout": subprocess.DEVNULL,
            "stderr": subprocess.PIPE,
            "start_new_session": True,
            "cwd": wd,
            "preexec_fn": child_preexec(),
        }
        if self.cgroup is None:
            return subprocess.Popen(argv, **kw)
        from edgewise.isolation import spawn_in_cgroup

        proc: subprocess.Popen[bytes] = spawn_in_cgroup(argv, self.cgroup, **kw)
        return proc

    def _await_workers(self) -> None:
        """Block until every stress-ng has forked its workers (it always forks one per
        instance); a window opened before that would measure nothing. A slow host can
        take seconds to get there, so the warm-up must not count from the spawn."""
        deadline = time.monotonic() + self.ready_timeout_s
        waiting = list(self._groups)
        while True:
            self.check_alive()  # a stressor that is gone is named here
            waiting = [g for g in waiting if not has_children(g.proc.pid)]
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = ", ".join(g.plan.resource for g in waiting)
                raise EnvironmentProblem(
                    f"stress-ng ({names} stressor) started no worker within "
                    f"{self.ready_timeout_s:g} s"
                )
            time.sleep(0.02)

    def check_alive(self) -> None:
        """EnvironmentProblem naming the stressor if one of them exited before its time.

        Any exit counts, code 0 included: stress-ng also exits cleanly when something
        sends it SIGINT, and a window over a stressor that is gone would measure zero.
        """
        for g in self._groups:
            rc = g.proc.poll()
            if rc is None:
                continue
            ran = time.monotonic() - self._started_at
            if rc == 0 and ran >= self.seconds + _TIMEOUT_SLACK_S - 1.0:
                continue  # its own --timeout ended it
            err = g.proc.stderr.read().decode(errors="replace") if g.proc.stderr else ""
            last = (err.strip().splitlines() or ["no message"])[-1]
            raise EnvironmentProblem(
                f"stress-ng ({g.plan.resource} stressor) exited with code {rc} "
                f"after {ran:.1f} s: {last}"
            )

    def stop(self) -> None:
        """Stop all stressors (SIGINT for metrics, then SIGKILL the groups)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self._threads = []
        for g in self._groups:
            signal_group(g.proc.pid, signal.SIGCONT)
            if g.proc.poll() is None:
                signal_group(g.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 3.0
        for g in self._groups:
            with contextlib.suppress(subprocess.TimeoutExpired):
                g.proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            signal_group(g.proc.pid, signal.SIGKILL)  # grandchildren that ignored SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                g.proc.wait(timeout=2)
            if g.proc.stderr is not None:
                with contextlib.suppress(Exception):
                    g.proc.stderr.close()
        gone_by = time.monotonic() + 3.0
        while any(group_alive(g.proc.pid) for g in self._groups) and time.monotonic() < gone_by:
            time.sleep(0.02)  # workers reaped: none writes into the scratch directory now
        for g in self._groups:
            unregister(g.proc.pid)

    def close(self) -> None:
        """Remove the scratch directory (after the yaml has been read)."""
        if self._tmp is not None:
            if any(group_alive(g.proc.pid) for g in self._groups):
                self.stop()
            shutil.rmtree(self._tmp, ignore_errors=True)
            unregister_scratch(str(self._tmp))
            self._tmp = None

    @property
    def pids(self) -> list[int]:
        return [g.proc.pid for g in self._groups]

    # -- threads ---------------------------------------------------------------
    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                for g in self._groups:
                    sample_tree(g)
            self._stop.wait(self.sample_interval_s)

    def _duty_loop(self) -> None:
        cycled = [g for g in self._groups if g.plan.duty < 1.0]
        period = self.duty_period_s
        while not self._stop.is_set():
            t0 = time.monotonic()
            for g in cycled:
                signal_group(g.proc.pid, signal.SIGCONT)
            for g in sorted(cycled, key=lambda g: g.plan.duty):
                wait = t0 + g.plan.duty * period - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                signal_group(g.proc.pid, signal.SIGSTOP)
            rest = t0 + period - time.monotonic()
            if rest > 0:
                self._stop.wait(rest)
        for g in cycled:
            signal_group(g.proc.pid, signal.SIGCONT)

    # -- measurement -----------------------------------------------------------
    def _snapshot(self) -> dict[str, TreeTotals]:
        with self._lock:
            for g in self._groups:
                sample_tree(g)
            return {g.plan.resource: g.totals() for g in self._groups}

    def begin_window(self) -> None:
        """Start the measurement window (call after the warm-up)."""
        self._window = (time.monotonic(), self._snapshot())

    def end_window(self) -> Achieved:
        """Achieved intensities over the window (memrate figures come at :meth:`finish`)."""
        if self._window is None:
            raise RuntimeError("begin_window() was not called")
        t0, before = self._window
        after = self._snapshot()
        wall = max(1e-6, time.monotonic() - t0)
        scope = len(self.cpus) if self.cpus else self.caps.ncpus
        raw: dict[str, float] = {}
        ach: dict[str, float] = {r: 0.0 for r in RESOURCES}
        for g in self._groups:
            res = g.plan.resource
            b, a = before.get(res, TreeTotals()), after[res]
            if res in ("cpu", "llc", "net"):
                raw[res] = (a.cpu_s - b.cpu_s) / wall
            elif res == "disk":
                raw[res] = (a.io_bytes - b.io_bytes) / wall
            elif res == "mem":
                raw[res] = g.rss_max
            else:  # membw: CPU share as a provisional figure; finish() replaces it
                raw[res] = (a.cpu_s - b.cpu_s) / wall
            peak = self.caps.peak(res, scope)
            ach[res] = raw[res] / peak if peak > 0 else 0.0
        if "membw" in raw:
            # provisional: requested scaled by the CPU share obtained vs. solo need
            ach["membw"] = float("nan")
        return Achieved(ach, raw, wall)

    def finish(self, achieved: Achieved) -> Achieved:
        """Stop the stressors and fill in figures only stress-ng reports at the end."""
        self.stop()
        if not any(g.plan.resource == "membw" for g in self._groups) or self._tmp is None:
            return achieved
        mbs = read_memrate_mbs(self._tmp / "membw.yaml")
        ach = dict(achieved.intensity)
        raw = dict(achieved.raw)
        if mbs is not None:
            raw["membw_mbs"] = mbs
            ach["membw"] = mbs / self.caps.membw_mbs
        else:
            plan = next(g.plan for g in self._groups if g.plan.resource == "membw")
            ach["membw"] = plan.requested  # no completed memrate pass: fall back to the request
            raw["membw_fallback"] = 1.0
        return replace(achieved, intensity=ach, raw=raw)


def run_stress(
    intensity: Mapping[str, float],
    seconds: float,
    *,
    warmup_s: float = 1.0,
    cpus: Sequence[int] | None = None,
    caps: HostCaps | None = None,
    calibration: Calibration | None = None,
) -> Achieved:
    """Run a stress mix for ``seconds`` (after ``warmup_s``) and return what it achieved."""
    mix = StressMix(
        intensity, seconds=seconds + warmup_s, cpus=cpus, caps=caps, calibration=calibration
    )
    try:
        with mix:
            time.sleep(warmup_s)
            mix.check_alive()
            mix.begin_window()
            time.sleep(seconds)
            mix.check_alive()
            ach = mix.end_window()
            return mix.finish(ach)
    finally:
        mix.close()


def describe(achieved: Achieved, requested: Mapping[str, float]) -> list[dict[str, Any]]:
    """Rows (resource, requested, achieved, delta in points) for a report."""
    rows = []
    for res in RESOURCES:
        if res not in requested and achieved.intensity.get(res, 0.0) == 0.0:
            continue
        r = float(requested.get(res, 0.0))
        a = float(achieved.intensity.get(res, 0.0))
        rows.append({"resource": res, "requested": r, "achieved": a, "delta_points": 100 * (a - r)})
    return rows
