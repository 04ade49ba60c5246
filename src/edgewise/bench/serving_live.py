"""Live serving benchmarks: ``bench serving-live`` and ``bench serving-overhead``.

``serving-live`` replays a compressed trace segment on Ray Serve once per policy and
simulates the same segment with the same policies, service-time profile and start-up
time, reporting how far the simulator is from the live run. ``serving-overhead`` compares
the saturation throughput of the served model with plain inference loops (same number of
processes and threads, same CPUs, same run) and the latency the serving path adds.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing as mp
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import typer

T = TypeVar("T")

LOW_LOAD_RPS = 5.0
LOW_LOAD_S = 10.0


def _plain_loop(
    model: str,
    threads: int,
    seconds: float,
    share: tuple[int, int],
    cpus: float | None,
    conn: Any,
) -> None:
    """One plain inference process: saturation first, then low-load rounds on request."""
    import os

    from edgewise.serving.loadgen import constant_arrivals
    from edgewise.workloads.runner import InferenceRunner

    runner = InferenceRunner(model, batch_size=1, threads=threads)
    runner.measure(10)  # warm-up
    group: Any = None
    if cpus is not None:
        # The same CPUs as a replica: its own cgroup with the replica's quota, joined
        # once warm, as a replica does (a 1-CPU quota on a process that also runs other
        # threads costs latency through CFS throttling; both sides pay it alike).
        from edgewise.isolation import CGroup, cgroups_writable

        if cgroups_writable():
            group = CGroup(f"plain-{share[0]}", cpus=cpus, cpu_weight=1000).create()
            group.add_pid(os.getpid())
    batch = runner.model.example_batch(1)
    # Saturation: back-to-back inferences.
    n = 0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        runner.infer(batch)
        n += 1
    conn.send(n / seconds)
    # Low-load rounds, each when asked (interleaved with the served rounds so that both
    # sides see the same neighbours on a shared host): the same Poisson arrivals as the
    # served round, dealt round-robin over the plain processes as the router spreads
    # them over replicas (every process taking every arrival would make the loops
    # collide on each one and inflate the baseline); latency from the scheduled time,
    # so idle gaps (cold caches, thread wake-up) cost both sides alike.
    index, count = share
    while True:
        cmd = conn.recv()
        if cmd is None:
            break
        seed, low_s = cmd
        lat = []
        t0 = time.perf_counter()
        for at in constant_arrivals(LOW_LOAD_RPS, low_s, seed=seed)[index::count]:
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            runner.infer(batch)
            lat.append((time.perf_counter() - (t0 + at)) * 1000.0)
        conn.send(np.asarray(lat))
    conn.close()
    del group  # kept alive until here: the process leaves the group when it exits


class PlainLoops:
    """``processes`` plain inference processes side by side (the serving baseline).

    ``rps`` is their summed saturation throughput; ``low_load(seed)`` runs one low-load
    round over all of them and returns every request's latency (ms).
    With ``cpus`` each process runs in its own cgroup with that CPU quota, as a replica.
    """

    def __init__(
        self, model: str, processes: int, threads: int, seconds: float, cpus: float | None
    ) -> None:
        ctx = mp.get_context("spawn")
        self._pipes: list[Any] = []
        self._procs: list[Any] = []
        for i in range(processes):
            parent, child = ctx.Pipe(duplex=True)
            p = ctx.Process(
                target=_plain_loop,
                args=(model, threads, seconds, (i, processes), cpus, child),
                daemon=True,
            )
            p.start()
            self._pipes.append(parent)
            self._procs.append(p)
        self.rps = float(sum(pp.recv() for pp in self._pipes))

    def low_load(self, seed: int, seconds: float) -> np.ndarray:
        for pp in self._pipes:
            pp.send((seed, seconds))
        return np.concatenate([pp.recv() for pp in self._pipes])

    def close(self) -> None:
        for pp in self._pipes:
            with contextlib.suppress(OSError):
                pp.send(None)
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()


def overhead(
    model: str = "mobilenet_v2",
    replicas: int = 2,
    cpus: float = 1.0,
    seconds: float = 15.0,
    concurrency: int = 16,
    port: int = 0,
    max_batch: int = 8,
    rounds: int = 3,
    ingress: str = "proxy",
) -> dict[str, Any]:
    """The ``serving-overhead`` benchmark.

    Saturation: plain loops first, then the served path under a closed loop of
    ``concurrency`` requests. Low load: ``rounds`` rounds of the same Poisson arrivals,
    alternating plain and served, so a noisy neighbour on a shared host weighs on both.
    """
    from edgewise.isolation import threads_for
    from edgewise.serving.live import sample_body
    from edgewise.serving.loadgen import constant_arrivals, run_closed_loop, run_load
    from edgewise.serving.runtime import RuntimeConfig, ServingRuntime

    threads = threads_for(cpus)
    low_s = min(LOW_LOAD_S, seconds)  # per round and side
    body, ctype = sample_body(model)
    cfg = RuntimeConfig(
        model=model,
        app="overhead",
        cpus_per_replica=cpus,
        initial_replicas=replicas,
        max_replicas=replicas,
        port=port,
        max_ongoing_requests=2 * max_batch,
        max_queued_requests=1024,
        max_batch=max_batch,
        ingress=ingress,
    )
    plain = PlainLoops(model, replicas, threads, seconds, cpus)
    try:
        with ServingRuntime(cfg) as rt:
            rt.wait_for_replicas(replicas, timeout_s=300)
            url = rt.url + "/predict"
            run_load(url, constant_arrivals(LOW_LOAD_RPS, 2.0, seed=99), body, ctype)  # warm
            plain_lat, served_lat, in_replica, infer, rounds_out = [], [], [], [], []
            for r in range(rounds):
                p_lat = plain.low_load(1 + r, low_s)
                t_low = time.time()
                low = run_load(url, constant_arrivals(LOW_LOAD_RPS, low_s, seed=1 + r), body, ctype)
                time.sleep(2 * 0.2 + 0.5)  # replicas push their latencies every 0.2 s
                snap = rt.snapshot(window_s=time.time() - t_low)
                in_replica += snap["recent_latencies_ms"]
                infer += snap["recent_infer_ms"]
                s_lat = low.latency_ms[low.ok()]
                plain_lat.append(p_lat)
                served_lat.append(s_lat)
                rounds_out.append(
                    {
                        "plain_p50_ms": float(np.median(p_lat)),
                        "served_p50_ms": float(np.median(s_lat)) if s_lat.size else math.nan,
                    }
                )
            # Where the added latency goes: the HTTP round trip through the proxy, router
            # and replica without the model (``/healthz``), and the time in the replica.
            arrivals = constant_arrivals(LOW_LOAD_RPS, low_s, seed=1)
            hop = run_load(rt.url + "/healthz", arrivals, b"{}", "application/json")
            sat = run_closed_loop(url, body, ctype, concurrency=concurrency, seconds=seconds)
    finally:
        plain.close()
    plain_p50 = float(np.median(np.concatenate(plain_lat)))
    all_served = np.concatenate(served_lat)
    served_p50 = float(np.median(all_served)) if all_served.size else math.nan
    return {
        "model": model,
        "ingress": ingress,
        "replicas": replicas,
        "cpus_per_replica": cpus,
        "threads": threads,
        "plain_rps": plain.rps,
        "served_rps": sat["throughput_rps"],
        "throughput_ratio": sat["throughput_rps"] / plain.rps if plain.rps > 0 else math.nan,
        "plain_p50_ms": plain_p50,
        "served_p50_ms_low_load": served_p50,
        "added_latency_p50_ms": served_p50 - plain_p50,
        "http_roundtrip_p50_ms": hop.percentile(50),
        "in_replica_p50_ms": float(np.median(in_replica)) if in_replica else math.nan,
        "in_replica_forward_pass_p50_ms": float(np.median(infer)) if infer else math.nan,
        "low_load_rounds": rounds_out,
        "low_load_rps": LOW_LOAD_RPS,
        "status_codes": {str(k): v for k, v in sat["codes"].items()},
        "concurrency": concurrency,
        "max_batch": max_batch,
        "payload_bytes": len(body),
        "payload": ctype,
    }


def replay_in_fitting_flavor(
    flavors: Path | None, replay_in: Callable[[Path, str], T]
) -> tuple[T, tuple[str, ...]]:
    """Replay in the smallest flavor whose probe meets the SLO; the smaller ones left out.

    ``replay_in(catalog, flavor)`` replays in one flavor of the catalog; its probe raises
    :class:`~edgewise.serving.live.FlavorTooSmall` before anything is replayed when the
    flavor is too small, and the next larger one is tried (an error only when none fits).
    Without ``flavors`` the catalog is the built-in
    :data:`~edgewise.serving.live.DEFAULT_FLAVORS` (the 0.5-CPU flavor first).
    """
    import yaml

    from edgewise.config import load_flavors
    from edgewise.serving.live import DEFAULT_FLAVORS, first_fitting

    with tempfile.TemporaryDirectory(prefix="edgewise-flavors-") as tmp:
        catalog = flavors
        if catalog is None:
            catalog = Path(tmp) / "flavors.yaml"
            rows = [f.model_dump() for f in DEFAULT_FLAVORS]
            catalog.write_text(yaml.safe_dump({"flavors": rows}, sort_keys=False))
        path = catalog
        got = first_fitting(load_flavors(path).flavors, lambda f: replay_in(path, f.name))
    return got.capacity, got.notes


def live(
    trace: str,
    time_col: str | None,
    value_col: str | None,
    start: str | None,
    hours: float,
    speedup: float,
    policies: list[str],
    slo_ms: float,
    percentile: float,
    model: str,
    peak_rps: float | None,
    seed: int,
    *,
    port: int = 0,
    ingress: str = "proxy",
    flavors: Path | None = None,
) -> dict[str, Any]:
    """The ``serving-live`` benchmark: live replays plus the simulator on the same segment.

    The replays and simulations are :func:`edgewise.api.replay.replay` with
    ``simulate=True`` in the smallest flavor of ``flavors`` (default: the built-in
    0.5-CPU flavor, then 1 and 2 CPUs) whose probe meets the SLO
    (:func:`replay_in_fitting_flavor`; ``notes`` says which were left out); this adds
    the headline figures of ``edgewise`` (or the first policy) and our cost over HPA's
    when both ran.
    """
    from edgewise.api.replay import replay

    outcome, notes = replay_in_fitting_flavor(
        flavors,
        lambda catalog, flavor: replay(
            trace=trace,
            time_col=time_col,
            value_col=value_col,
            start=start,
            hours=hours,
            speedup=speedup,
            policies=policies,
            slo_ms=slo_ms,
            percentile=percentile,
            model=model,
            peak_rps=peak_rps,
            port=port,
            seed=seed,
            ingress=ingress,
            simulate=True,
            flavors=catalog,
            flavor=flavor,
        ),
    )
    out = outcome.as_dict() | ({"notes": list(notes)} if notes else {})
    ours = out["policies"].get("edgewise") or next(iter(out["policies"].values()))
    out["slo_attainment"] = ours["slo_attainment"]
    out["sim_live_attainment_diff"] = ours["sim_live_attainment_diff"]
    out["sim_live_cost_ratio"] = ours["sim_live_cost_ratio"]
    if "hpa" in out["policies"] and "edgewise" in out["policies"]:
        out["cost_ratio_vs_hpa"] = out["policies"]["edgewise"]["cost"] / max(
            1e-12, out["policies"]["hpa"]["cost"]
        )
    return out


def serving_live_command(
    trace: str = typer.Option("bikeshare", help="'bikeshare' or a CSV path."),
    time_col: str | None = typer.Option(None),
    value_col: str | None = typer.Option(None),
    start: str | None = typer.Option(None, help="Segment start (default: last H hours)."),
    hours: float = typer.Option(12.0, help="Trace hours."),
    speedup: float = typer.Option(120.0, help="Trace seconds per wall second."),
    policies: str = typer.Option("edgewise,hpa", help="Comma-separated policies."),
    slo_ms: float = typer.Option(150.0),
    percentile: float = typer.Option(99.0),
    model: str = typer.Option("mobilenet_v2"),
    peak_rps: float | None = typer.Option(None, help="Peak rate (default: what fits)."),
    seed: int = typer.Option(0),
    ingress: str = typer.Option("proxy", help="'proxy' (Ray Serve's) or 'haproxy'."),
    flavors: Path | None = typer.Option(
        None,
        help="Flavors YAML; the smallest flavor that meets the SLO serves (default: 0.5, 1 "
        "and 2 CPUs).",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Live replay on Ray Serve per policy, with the simulator on the same segment."""
    from edgewise.serving.runtime import stdout_to_stderr

    names = [p.strip() for p in policies.split(",") if p.strip()]
    with stdout_to_stderr():
        out = live(
            trace,
            time_col,
            value_col,
            start,
            hours,
            speedup,
            names,
            slo_ms,
            percentile,
            model,
            peak_rps,
            seed,
            ingress=ingress,
            flavors=flavors,
        )
    typer.echo(json.dumps(out, indent=None if as_json else 2))


def serving_overhead_command(
    model: str = typer.Option("mobilenet_v2"),
    replicas: int = typer.Option(2),
    cpus: float = typer.Option(1.0, help="CPUs per replica (and per plain loop)."),
    seconds: float = typer.Option(15.0),
    concurrency: int = typer.Option(16),
    max_batch: int = typer.Option(8, help="Micro-batch limit in each replica (1: off)."),
    ingress: str = typer.Option("proxy", help="'proxy' (Ray Serve's) or 'haproxy'."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Served throughput at saturation over plain inference loops, and added latency."""
    from edgewise.serving.runtime import stdout_to_stderr

    with stdout_to_stderr():
        out = overhead(
            model, replicas, cpus, seconds, concurrency, max_batch=max_batch, ingress=ingress
        )
    typer.echo(json.dumps(out, indent=None if as_json else 2))


def register_bench(bench_app: typer.Typer) -> None:
    """Add ``serving-live`` and ``serving-overhead`` to the ``edgewise bench`` group."""
    bench_app.command("serving-live")(serving_live_command)
    bench_app.command("serving-overhead")(serving_overhead_command)
