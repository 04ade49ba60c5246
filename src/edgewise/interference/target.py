"""Open-loop target drivers: the workload whose latency a campaign measures.

A :class:`ZooTarget` serves a zoo model in a child process (pinned to its CPUs, one
torch thread by default). Requests arrive on a seeded Poisson schedule; each latency is
measured from the request's *scheduled* send time, so a slow request delays the next
ones' latencies instead of silently thinning the load (no coordinated omission). The
child loads the model once and serves many measurement windows (``GO`` lines on its
stdin, one JSON result line back).

A :class:`CommandTarget` runs any command line repeatedly; each run time is a sample.

Arrivals and summaries come from :mod:`edgewise.stats`; this module is the adapter.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import psutil

from edgewise.errors import EnvironmentProblem, SpecError, UnknownNameError
from edgewise.interference.apps import (
    check_app,
    check_program,
    parse_workload_name,
    resolve_app,
    workload_device,
    workload_name,
    zoo_names,
)
from edgewise.procs import child_preexec, kill_group
from edgewise.stats import latency_summary, poisson_times

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase

__all__ = [
    "CommandTarget",
    "Target",
    "TargetResult",
    "ZooTarget",
    "check_app",
    "make_target",
    "parse_workload_name",
    "rate_for_load",
    "resolve_app",
    "solo_service_ms",
    "workload_device",
    "workload_name",
]


@dataclass(frozen=True)
class TargetResult:
    """One measurement window of a target."""

    latencies_ms: np.ndarray
    cpu_s: float
    wall_s: float
    rss_bytes: float

    def summary(self) -> dict[str, float]:
        return latency_summary(self.latencies_ms)

    @property
    def cpu_fraction(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class Target(Protocol):
    """What a campaign drives."""

    name: str
    kind: str
    params: dict[str, Any]

    def start(self) -> None: ...

    def measure(self, seconds: float, seed: int) -> TargetResult: ...

    def close(self) -> None: ...


def _tree_cpu(pid: int) -> float:
    try:
        p = psutil.Process(pid)
        total = 0.0
        for q in [p, *p.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                t = q.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


def _child_command(
    model: str, batch_size: int, threads: int, device: str, *extra: str
) -> list[str]:
    """The command line of this module's child (serve, or ``--probe``) for ``model``."""
    return [
        sys.executable,
        "-m",
        "edgewise.interference.target",
        "--model",
        model,
        "--batch-size",
        str(batch_size),
        "--threads",
        str(threads),
        "--device",
        device,
        *extra,
    ]


def _child_env(threads: int, kb_url: str | None = None) -> dict[str, str]:
    """The child's environment: its thread counts, and the knowledge base that holds a
    registered model (``$EDGEWISE_DB_URL``, never on its command line: it may hold a
    password)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if kb_url:
        env["EDGEWISE_DB_URL"] = kb_url
    return env


def _check_model(model: str, device: str, kb_url: str | None) -> None:
    """UnknownNameError unless ``model`` is a zoo model or a registered version that
    resolves (in the knowledge base of ``kb_url``); SpecError for a registered one on a GPU."""
    known = zoo_names()
    if known is None or model in known:
        return
    resolve_app(model, kb_url)
    if device == "cuda":
        raise SpecError(
            f"model {model!r} is a registered model: the profiler serves those on the CPU "
            "only (zoo models also on cuda)"
        )


def _pinner(cpus: Sequence[int] | None) -> Callable[[], None]:
    """A ``preexec_fn`` that pins the child to ``cpus`` (a no-op without them)."""

    def pin() -> None:
        if cpus:
            os.sched_setaffinity(0, list(cpus))

    return pin


class ZooTarget:
    """A model served open-loop at ``rate_rps`` in a pinned child process.

    ``model`` is a zoo name or a registered ``NAME:vN`` (looked up in the knowledge base
    of ``kb_url``; ``None``: ``$EDGEWISE_DB_URL`` or the default one).
    """

    kind = "zoo"

    def __init__(
        self,
        model: str,
        rate_rps: float = 20.0,
        batch_size: int = 1,
        threads: int = 1,
        cpus: Sequence[int] | None = None,
        seed: int = 0,
        start_timeout_s: float = 120.0,
        device: str = "cpu",
        kb_url: str | None = None,
    ) -> None:
        if device not in ("cpu", "cuda"):
            raise UnknownNameError(f"unknown device {device!r}: expected cpu or cuda")
        self.device = device
        self.model = model
        self.rate_rps = float(rate_rps)
        self.batch_size = int(batch_size)
        self.threads = int(threads)
        self.cpus = list(cpus) if cpus else None
        self.seed = int(seed)
        self.start_timeout_s = start_timeout_s
        self.kb_url = kb_url
        self.name = workload_name(model, rate_rps, batch_size, device)
        self.params = {
            "model": model,
            "rate_rps": self.rate_rps,
            "batch_size": self.batch_size,
            "threads": self.threads,
            "device": device,
        }
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        _check_model(self.model, self.device, self.kb_url)
        cmd = _child_command(
            self.model,
            self.batch_size,
            self.threads,
            self.device,
            "--rate",
            str(self.rate_rps),
            "--seed",
            str(self.seed),
        )
        if self.device == "cuda":
            from edgewise.interference.gpu import require_gpu

            require_gpu()
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            preexec_fn=child_preexec(_pinner(self.cpus)),
            env=_child_env(self.threads, self.kb_url),
            start_new_session=True,
        )
        line = self._readline(self.start_timeout_s)
        if line.strip() != "READY":
            self.close()
            raise EnvironmentProblem(
                f"target {self.name} failed to start: {line.strip() or 'no output'}"
            )

    def _readline(self, timeout_s: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        import select

        ready, _, _ = select.select([self._proc.stdout], [], [], timeout_s)
        if not ready:
            return ""
        line = self._proc.stdout.readline()
        if not line:
            err = self._proc.stderr.read() if self._proc.stderr else ""
            return (err.strip().splitlines() or ["exited"])[-1]
        return line

    def measure(self, seconds: float, seed: int) -> TargetResult:
        if self._proc is None or self._proc.poll() is not None:
            raise EnvironmentProblem(f"target {self.name} is not running")
        assert self._proc.stdin is not None
        cpu0 = _tree_cpu(self._proc.pid)
        t0 = time.monotonic()
        self._proc.stdin.write(f"GO {seconds} {seed}\n")
        self._proc.stdin.flush()
        line = self._readline(seconds * 4 + 60)
        wall = time.monotonic() - t0
        cpu1 = _tree_cpu(self._proc.pid)
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            raise EnvironmentProblem(
                f"target {self.name} died: {line.strip() or 'no output'}"
            ) from None
        rss = float(psutil.Process(self._proc.pid).memory_info().rss)
        return TargetResult(np.asarray(doc["latencies_ms"], dtype=float), cpu1 - cpu0, wall, rss)

    def close(self) -> None:
        if self._proc is None:
            return
        with contextlib.suppress(Exception):
            if self._proc.stdin:
                self._proc.stdin.write("QUIT\n")
                self._proc.stdin.flush()
        try:
            self._proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, 9)
            self._proc.wait(timeout=3)
        self._proc = None

    def __enter__(self) -> ZooTarget:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class CommandTarget:
    """Any command line, run back to back; each run time (ms) is one latency sample."""

    kind = "command"

    def __init__(
        self, argv: Sequence[str], cpus: Sequence[int] | None = None, name: str | None = None
    ) -> None:
        if not argv:
            raise UnknownNameError("empty command line for a command target")
        self.argv = list(argv)
        self.cpus = list(cpus) if cpus else None
        self.name = name or "cmd:" + " ".join(shlex.quote(a) for a in self.argv)
        self.params = {"argv": self.argv}

    def start(self) -> None:
        check_program(self.argv[0])

    def measure(self, seconds: float, seed: int) -> TargetResult:
        lat: list[float] = []
        cpu = 0.0
        t_end = time.monotonic() + seconds
        t0 = time.monotonic()
        rss = 0.0
        while time.monotonic() < t_end or not lat:
            s = time.monotonic()
            r0 = os.times()
            code, err = self._run_once()
            r1 = os.times()
            if code != 0:
                last = (err.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
                raise EnvironmentProblem(f"target command exited with code {code}: {last}")
            lat.append(1000.0 * (time.monotonic() - s))
            cpu += (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
        return TargetResult(np.asarray(lat), cpu, time.monotonic() - t0, rss)

    def _run_once(self) -> tuple[int, bytes]:
        """Run the command once in its own process group, set to die with this process;
        an interruption (Ctrl-C, SIGTERM under the CLI) kills the whole group."""
        proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=child_preexec(_pinner(self.cpus)),
            start_new_session=True,
        )
        try:
            _, err = proc.communicate()
        except BaseException:
            kill_group(proc, signal.SIGKILL)
            proc.wait()
            raise
        return proc.returncode, err

    def close(self) -> None:
        return None


def rate_for_load(service_ms: float, load: float) -> float:
    """Request rate (per s, two significant digits) that keeps a server of mean service
    time ``service_ms`` busy a fraction ``load`` of the time when alone."""
    if not 0.0 < load < 1.0:
        raise SpecError(f"load {load:g} is outside (0, 1): a fraction of the solo capacity")
    if service_ms <= 0:
        raise ValueError(f"service time must be positive, got {service_ms}")
    rate = 1000.0 * load / service_ms
    return float(f"{rate:.2g}")


def solo_service_ms(
    model: str,
    *,
    batch_size: int = 1,
    threads: int = 1,
    cpus: Sequence[int] | None = None,
    device: str = "cpu",
    n: int = 20,
    timeout_s: float = 180.0,
    kb_url: str | None = None,
) -> float:
    """Mean service time (ms) of ``n`` back-to-back inferences of ``model``, measured in
    a child pinned to ``cpus`` exactly as a :class:`ZooTarget` serves it (a registered
    model looked up in the knowledge base of ``kb_url``)."""
    cmd = _child_command(model, batch_size, threads, device, "--probe", str(n))
    try:
        out = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            preexec_fn=child_preexec(_pinner(cpus)),
            env=_child_env(threads, kb_url),
        )
    except subprocess.TimeoutExpired:
        raise EnvironmentProblem(f"timing {model} took longer than {timeout_s:g} s") from None
    try:
        return float(json.loads(out.stdout.strip().splitlines()[-1])["service_ms"])
    except (IndexError, KeyError, ValueError):
        last = (out.stdout + out.stderr).strip().splitlines() or ["no output"]
        raise EnvironmentProblem(f"timing {model} failed: {last[-1]}") from None


def make_target(
    app: str,
    *,
    rate_rps: float = 20.0,
    batch_size: int = 1,
    threads: int = 1,
    cpus: Sequence[int] | None = None,
    seed: int = 0,
    device: str = "cpu",
    load: float | None = None,
    kb: KnowledgeBase | str | None = None,
) -> ZooTarget | CommandTarget:
    """A target from an app name: a zoo model, a registered ``NAME:vN``, ``model@Rrps[:cuda]``
    of either, or ``cmd:<command line>``.

    With ``load`` (and no rate in the name) a model is served at that fraction of its
    solo capacity on ``cpus``, timed first (:func:`solo_service_ms`): one rate for every
    model would overload a large one and leave a small one idle. A registered model is
    looked up in ``kb`` (an open knowledge base or its URL; ``None``: the default one)
    and named by the version it resolves to (:func:`~edgewise.interference.apps.resolve_app`).
    """
    from edgewise.kb import KnowledgeBase

    app = resolve_app(app, kb)
    kb_url = kb.url if isinstance(kb, KnowledgeBase) else kb
    if app.startswith("cmd:"):
        return CommandTarget(shlex.split(app[4:]), cpus=cpus, name=app)
    parsed = parse_workload_name(app)
    if parsed is not None:
        model, rate_rps, batch_size = parsed
        device = "cuda" if workload_device(app) == "cuda" else device
    else:
        model = app
    if load is not None and parsed is None:
        svc = solo_service_ms(
            model, batch_size=batch_size, threads=threads, cpus=cpus, device=device, kb_url=kb_url
        )
        rate_rps = rate_for_load(svc, load)
    return ZooTarget(model, rate_rps, batch_size, threads, cpus, seed, device=device, kb_url=kb_url)


# --------------------------------------------------------------------------- child
def _load(
    model: str, batch_size: int, threads: int, device: str
) -> tuple[Any, Any]:  # pragma: no cover - child
    """The child's inference function and its input batch, warmed up.

    On the CPU the model comes from :func:`~edgewise.workloads.runner.runner_for`: a zoo
    model built with seed 0 (its weights and batch as always), a registered one loaded
    from the knowledge base of ``$EDGEWISE_DB_URL``.
    """
    import torch

    from edgewise.workloads.runner import runner_for, set_threads
    from edgewise.workloads.zoo import build_model, logits_of

    set_threads(threads)
    infer: Callable[[torch.Tensor], object]
    if device == "cuda":
        zm = build_model(model, seed=0)
        batch = zm.example_batch(batch_size, seed=0)
        dev = torch.device("cuda", 0)
        module = zm.module.to(dev).eval()
        batch = batch.to(dev)

        def infer(b: torch.Tensor) -> object:
            out = logits_of(module(b))
            torch.cuda.synchronize(dev)
            return out

    else:
        runner = runner_for(model, batch_size=batch_size, threads=threads, seed=0)
        infer, batch = runner.infer, runner.batch
    with torch.inference_mode():
        for _ in range(5):
            infer(batch)
    return infer, batch


def _probe(
    model: str, batch_size: int, threads: int, n: int, device: str = "cpu"
) -> None:  # pragma: no cover - child
    """Print the mean solo service time (ms) of ``n`` back-to-back inferences."""
    import torch

    infer, batch = _load(model, batch_size, threads, device)
    with torch.inference_mode():
        t0 = time.perf_counter()
        for _ in range(n):
            infer(batch)
        mean_ms = 1000.0 * (time.perf_counter() - t0) / n
    print(json.dumps({"service_ms": round(mean_ms, 4)}), flush=True)


def _serve(
    model: str, batch_size: int, threads: int, rate: float, device: str = "cpu"
) -> None:  # pragma: no cover - child
    import torch

    infer, batch = _load(model, batch_size, threads, device)
    print("READY", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "QUIT":
            break
        seconds, seed = float(parts[1]), int(parts[2])
        sched = poisson_times(rate, seed, seconds=seconds)
        lat = np.empty(sched.size)
        start = time.perf_counter()
        with torch.inference_mode():
            for i, ts in enumerate(sched):
                wait = start + ts - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                infer(batch)
                lat[i] = 1000.0 * (time.perf_counter() - (start + ts))
        print(json.dumps({"latencies_ms": lat.round(4).tolist()}), flush=True)


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - child
    ap = argparse.ArgumentParser(prog="edgewise.interference.target")
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--probe", type=int, default=0, help="time N inferences, print, exit")
    a = ap.parse_args(argv)
    try:
        if a.probe:
            _probe(a.model, a.batch_size, a.threads, a.probe, a.device)
        else:
            _serve(a.model, a.batch_size, a.threads, a.rate, a.device)
    except Exception as err:
        print(f"ERROR {type(err).__name__}: {err}".replace("\n", " "), flush=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
