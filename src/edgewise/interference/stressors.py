"""Multi-resource stress mixes over stress-ng, with the achieved intensity measured.

Pure part: :func:`plan_stressors` maps a normalised intensity per resource (and an
optional per-host :class:`~edgewise.interference.calibration.Calibration`) to one
stress-ng command line per resource plus a duty cycle. Effectful part:
:class:`StressMix` starts those commands, each in its own process group, duty-cycles
them with SIGSTOP/SIGCONT where stress-ng has no load knob, samples their process trees
(CPU, I/O, RSS) and reports the **achieved** intensity, and kills every group on every
exit path (context manager, ``atexit``, SIGTERM/SIGHUP; Ctrl-C arrives as
``KeyboardInterrupt`` and goes through ``__exit__``).

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
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

import psutil
import yaml

from edgewise.config import RESOURCES
from edgewise.errors import EnvironmentProblem, SpecError
from edgewise.procs import free_port

if TYPE_CHECKING:
    from edgewise.interference.calibration import Calibration
    from edgewise.isolation import CGroup

STRESS_NG = "stress-ng"
DUTY_RESOURCES: frozenset[str] = frozenset({"llc", "disk", "net"})
_MIN_INTENSITY = 0.005
#: stress-ng's own --timeout runs this long past the mix's seconds (a safety net only)
_TIMEOUT_SLACK_S = 30.0


def require_stress_ng() -> str:
    """Path of the stress-ng binary; EnvironmentProblem naming the package if missing."""
    path = shutil.which(STRESS_NG)
    if path is None:
        raise EnvironmentProblem(
            "stress-ng not found on PATH: install the 'stress-ng' package (apt-get install stress-ng)"
        )
    return path


def validate_intensity(intensity: Mapping[str, float]) -> dict[str, float]:
    """Check names and the [0, 1] range; one-line SpecError naming the resource."""
    out: dict[str, float] = {}
    for name, value in intensity.items():
        if name not in RESOURCES:
            raise SpecError(f"unknown resource {name!r}: expected one of {', '.join(RESOURCES)}")
        v = float(value)
        if not 0.0 <= v <= 1.0:
            raise SpecError(f"intensity for {name} is {v:g}: must lie in [0, 1]")
        out[name] = v
    return out


@dataclass(frozen=True)
class HostCaps:
    """Peak activity of each resource on this host (the denominators of 'achieved').

    ``cpu`` is in CPU-seconds/s for the stressor's CPU scope; ``membw`` in MB/s per
    direction for one memrate instance; ``llc`` and ``net`` in CPU-seconds/s of one
    instance (capped by the CPU scope); ``disk`` in bytes/s; ``mem`` in bytes (the
    capacity stressor's cap). ``net_cpu`` defaults to one CPU (a loopback client and
    server ping-pong, so together they keep about one CPU busy); :func:`probe_caps`
    measures it.
    """

    ncpus: int
    membw_mbs: float = 20000.0
    llc_cpu: float = 1.0
    net_cpu: float = 1.0
    disk_bps: float = 1.5e9
    mem_bytes: float = 0.0

    @staticmethod
    def default(ncpus: int | None = None, mem_cap_fraction: float = 0.25) -> HostCaps:
        """Caps from the OS only (no probing): memory cap is a fraction of RAM."""
        n = ncpus or len(os.sched_getaffinity(0))
        return HostCaps(ncpus=n, mem_bytes=mem_cap_fraction * psutil.virtual_memory().total)

    def peak(self, resource: str, scope_cpus: int) -> float:
        """Peak activity for ``resource`` given the number of CPUs the stressors may use."""
        return {
            "cpu": float(scope_cpus),
            "membw": self.membw_mbs,
            "llc": min(self.llc_cpu, float(scope_cpus)),
            "disk": self.disk_bps,
            "net": min(self.net_cpu, float(scope_cpus)),
            "mem": self.mem_bytes,
        }[resource]


@dataclass(frozen=True)
class StressorPlan:
    """One stress-ng command for one resource, and its SIGSTOP/SIGCONT duty cycle."""

    resource: str
    requested: float
    knob: float
    argv: tuple[str, ...]
    duty: float = 1.0


def plan_stressors(
    intensity: Mapping[str, float],
    caps: HostCaps,
    *,
    seconds: float,
    workdir: Path,
    cpus: Sequence[int] | None = None,
    calibration: Calibration | None = None,
    net_port: int = 22000,
    yaml_dir: Path | None = None,
    taskset: bool = True,
) -> list[StressorPlan]:
    """Map requested intensities to stress-ng command lines (pure apart from paths).

    Parameters
    ----------
    intensity
        Resource name -> requested intensity in [0, 1]; zero entries start nothing.
    caps
        Host peaks used to turn intensities into absolute knobs (MB/s, bytes).
    seconds
        stress-ng ``--timeout`` (a safety net: the driver stops it earlier).
    workdir
        Directory for the disk stressor's files.
    cpus
        CPUs the stressors may run on; None = every CPU. Sets the CPU stressor's
        instance count and, with ``taskset``, stress-ng's ``--taskset``.
    calibration
        Per-host curves mapping a requested intensity to the knob that achieves it.
    taskset
        Confine with ``--taskset`` (False when a cgroup's cpuset confines instead).
    """
    req = validate_intensity(intensity)
    scope = len(cpus) if cpus else caps.ncpus
    yaml_dir = yaml_dir or workdir
    common: list[str] = [
        STRESS_NG,
        "--timeout",
        f"{max(1, int(seconds + 0.999))}s",
        "--metrics-brief",
        "--temp-path",
        str(workdir),
    ]
    if cpus and taskset:
        common += ["--taskset", ",".join(str(c) for c in cpus)]
    plans: list[StressorPlan] = []
    for res in RESOURCES:
        r = req.get(res, 0.0)
        if r < _MIN_INTENSITY:
            continue
        k = calibration.knob(res, r) if calibration is not None else r
        k = min(1.0, max(_MIN_INTENSITY, k))
        out_yaml = ["--yaml", str(yaml_dir / f"{res}.yaml")]
        duty = 1.0
        if res == "cpu":
            load = max(1, min(100, round(100 * k)))
            args = ["--cpu", str(scope), "--cpu-load", str(load)]
        elif res == "membw":
            mbs = max(1, round(k * caps.membw_mbs))
            args = [
                "--memrate",
                "1",
                "--memrate-bytes",
                "64M",
                "--memrate-rd-mbs",
                str(mbs),
                "--memrate-wr-mbs",
                str(mbs),
            ]
        elif res == "llc":
            args = ["--matrix-3d", "1", "--matrix-3d-size", "96"]
            duty = k
        elif res == "disk":
            args = ["--hdd", "1", "--hdd-bytes", "64M", "--hdd-write-size", "64K"]
            duty = k
        elif res == "net":
            args = ["--sock", "1", "--sock-port", str(net_port), "--sock-domain", "ipv4"]
            duty = k
        else:  # mem
            nbytes = max(4 << 20, int(k * caps.mem_bytes))
            args = ["--vm", "1", "--vm-bytes", f"{nbytes // 1024}K", "--vm-hang", "0"]
        plans.append(
            StressorPlan(
                res, r, k, tuple(common + args + out_yaml), duty=1.0 if duty >= 0.995 else duty
            )
        )
    return plans


# --------------------------------------------------------------------------- registry
_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


#: The watchdog: a tiny process in its own session that reads "+PGID" / "-PGID" lines and,
#: when its stdin reaches EOF (the driver exited, SIGKILL included), kills every group
#: still registered. Stressors must not depend on the driver's exit handlers: a
#: duty-cycled one may be SIGSTOPped at that moment, and a stopped stress-ng never
#: reaches its own ``--timeout``.
_WATCHDOG_SRC = """
import os, signal, sys
live = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] in ("+", "-") and line[1:].isdigit():
        (live.add if line[0] == "+" else live.discard)(int(line[1:]))
for pgid in live:
    for sig in (signal.SIGCONT, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except OSError:
            pass
"""
_WATCHDOG: subprocess.Popen[bytes] | None = None


def _tell_watchdog(line: str) -> None:
    """Send one registry line to the watchdog, starting it on first use (hold _LIVE_LOCK)."""
    global _WATCHDOG
    if _WATCHDOG is None or _WATCHDOG.poll() is not None:
        _WATCHDOG = subprocess.Popen(
            [sys.executable, "-I", "-c", _WATCHDOG_SRC],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    assert _WATCHDOG.stdin is not None
    with contextlib.suppress(OSError, ValueError):
        _WATCHDOG.stdin.write(line.encode() + b"\n")
        _WATCHDOG.stdin.flush()


def _register(proc: subprocess.Popen[bytes]) -> None:
    with _LIVE_LOCK:
        _LIVE[proc.pid] = proc
        _tell_watchdog(f"+{proc.pid}")


def _unregister(pgid: int) -> None:
    with _LIVE_LOCK:
        if _LIVE.pop(pgid, None) is not None:
            _tell_watchdog(f"-{pgid}")


def _kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def kill_all_live() -> int:
    """SIGKILL every stressor group still alive; returns how many groups were hit."""
    with _LIVE_LOCK:
        items = list(_LIVE.items())
        _LIVE.clear()
        for pgid, _ in items:
            _tell_watchdog(f"-{pgid}")
    for pgid, proc in items:
        _kill_group(pgid, signal.SIGCONT)
        _kill_group(pgid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            proc.wait(timeout=2)
    return len(items)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    kill_all_live()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(kill_all_live)
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)


# --------------------------------------------------------------------------- monitor
@dataclass
class _TreeTotals:
    cpu_s: float = 0.0
    io_bytes: float = 0.0
    rss: float = 0.0


@dataclass
class _GroupState:
    plan: StressorPlan
    proc: subprocess.Popen[bytes]
    per_pid: dict[int, tuple[float, float]] = field(default_factory=dict)
    rss_max: float = 0.0
    rss_now: float = 0.0

    def totals(self) -> _TreeTotals:
        cpu = sum(v[0] for v in self.per_pid.values())
        io = sum(v[1] for v in self.per_pid.values())
        return _TreeTotals(cpu, io, self.rss_now)


def _sample_tree(state: _GroupState) -> None:
    try:
        root = psutil.Process(state.proc.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    rss = 0.0
    for p in procs:
        try:
            with p.oneshot():
                t = p.cpu_times()
                try:
                    io = p.io_counters()
                    iob = float(io.read_chars + io.write_chars)
                except (psutil.Error, AttributeError):
                    iob = 0.0
                rss += float(p.memory_info().rss)
            state.per_pid[p.pid] = (t.user + t.system, iob)
        except psutil.Error:
            continue
    state.rss_now = rss
    state.rss_max = max(state.rss_max, rss)


def _has_children(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).children())
    except psutil.Error:
        return False


@dataclass(frozen=True)
class Achieved:
    """Achieved intensity per resource (normalised) and the raw activity behind it."""

    intensity: dict[str, float]
    raw: dict[str, float]
    wall_s: float


def _read_memrate_mbs(path: Path) -> float | None:
    """Mean per-direction MB/s over memrate's read*/write* tests, from its yaml."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(doc, dict):
        return None
    for entry in doc.get("metrics") or []:
        if isinstance(entry, dict) and entry.get("stressor") == "memrate":
            reads = [
                float(v)
                for k, v in entry.items()
                if k.startswith("read") and k.endswith("mb-per-sec")
            ]
            writes = [
                float(v)
                for k, v in entry.items()
                if k.startswith("write") and k.endswith("mb-per-sec")
            ]
            vals = [sum(reads) / len(reads)] if reads else []
            vals += [sum(writes) / len(writes)] if writes else []
            return sum(vals) / len(vals) if vals else None
    return None


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
        self._groups: list[_GroupState] = []
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._window: tuple[float, dict[str, _TreeTotals]] | None = None
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
        _install_handlers()
        self._tmp = tempfile.TemporaryDirectory(prefix="edgewise-stress-", dir=self.workdir)
        wd = Path(self._tmp.name)
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
                _register(proc)
                self._groups.append(_GroupState(plan, proc))
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
        """Start one stressor in its own process group (inside the cgroup if given)."""
        kw: dict[str, Any] = {
            "stdout": subprocess.DEVNULL,
            "stderr": subprocess.PIPE,
            "start_new_session": True,
            "cwd": wd,
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
            waiting = [g for g in waiting if not _has_children(g.proc.pid)]
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
            _kill_group(g.proc.pid, signal.SIGCONT)
            if g.proc.poll() is None:
                _kill_group(g.proc.pid, signal.SIGINT)
        deadline = time.monotonic() + 3.0
        for g in self._groups:
            with contextlib.suppress(subprocess.TimeoutExpired):
                g.proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            _kill_group(g.proc.pid, signal.SIGKILL)  # grandchildren that ignored SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                g.proc.wait(timeout=2)
            if g.proc.stderr is not None:
                with contextlib.suppress(Exception):
                    g.proc.stderr.close()
            _unregister(g.proc.pid)

    def close(self) -> None:
        """Remove the temp directory (after the yaml has been read)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    @property
    def pids(self) -> list[int]:
        return [g.proc.pid for g in self._groups]

    # -- threads ---------------------------------------------------------------
    def _sample_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                for g in self._groups:
                    _sample_tree(g)
            self._stop.wait(self.sample_interval_s)

    def _duty_loop(self) -> None:
        cycled = [g for g in self._groups if g.plan.duty < 1.0]
        period = self.duty_period_s
        while not self._stop.is_set():
            t0 = time.monotonic()
            for g in cycled:
                _kill_group(g.proc.pid, signal.SIGCONT)
            for g in sorted(cycled, key=lambda g: g.plan.duty):
                wait = t0 + g.plan.duty * period - time.monotonic()
                if wait > 0 and self._stop.wait(wait):
                    break
                _kill_group(g.proc.pid, signal.SIGSTOP)
            rest = t0 + period - time.monotonic()
            if rest > 0:
                self._stop.wait(rest)
        for g in cycled:
            _kill_group(g.proc.pid, signal.SIGCONT)

    # -- measurement -----------------------------------------------------------
    def _snapshot(self) -> dict[str, _TreeTotals]:
        with self._lock:
            for g in self._groups:
                _sample_tree(g)
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
            b, a = before.get(res, _TreeTotals()), after[res]
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
        mbs = _read_memrate_mbs(Path(self._tmp.name) / "membw.yaml")
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
