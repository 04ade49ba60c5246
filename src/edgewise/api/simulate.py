"""Serving simulation use cases: autoscaling policies over weeks of trace, on a virtual clock.

:func:`simulate_serving` loads and scales a trace, builds flavors with capacities from a
service-time profile, runs :func:`edgewise.sim.serving.simulate` per policy (reactive
baselines swept over their targets, or each at its default setting) and compares costs
at equal service. :func:`simulate_segment` runs one policy over a replayed segment, as
the live replay saw it (the sim-versus-live comparison).

The trace is simulated in trace time. Hourly counts become per-second rates by linear
interpolation between bin centres, scaled so that the simulated window peaks at
``peak_rps``; arrivals are Poisson per second. The sub-hour structure is synthetic.
Loading the trace and reading the profile from the knowledge base are the effects; the
simulation is pure computation on a virtual clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from edgewise.errors import SpecError, TraceError, UnknownNameError
from edgewise.serving.policies import POLICY_NAMES, FlavorOption, Policy, make_policy
from edgewise.serving.policies.base import service_quantiles
from edgewise.sim.compare import compare_oracle, compare_ours, vs_hpa
from edgewise.sim.queueing import ServiceProfile, lognormal_profile, speed_factor
from edgewise.sim.serving import SimConfig, SimFlavor, SimResult, simulate

if TYPE_CHECKING:
    from edgewise.serving.replay import Segment

__all__ = [
    "DEFAULT_FLAVORS",
    "HPA_TARGETS",
    "KPA_TARGETS",
    "ORACLE_PERCENTILES",
    "RAY_TARGETS",
    "WARMUP_S",
    "PolicyRuns",
    "ServingSimulation",
    "SimulationSettings",
    "Workload",
    "build_flavors",
    "load_workload",
    "service_profile",
    "simulate_segment",
    "simulate_serving",
    "vs_hpa",
]

Progress = Callable[[str, int, int], None]

#: Flavor catalog used when none is given (same as ``examples/flavors.yaml``).
DEFAULT_FLAVORS: tuple[tuple[str, float, float], ...] = (
    ("small", 0.5, 0.025),
    ("medium", 1.0, 0.048),
    ("large", 2.0, 0.096),
)
HPA_TARGETS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
KPA_TARGETS = (0.5, 0.6, 0.7, 0.8)
RAY_TARGETS = (0.5, 1.0, 2.0)
#: Design percentiles of the clairvoyant's cost/attainment curve (``--oracle-sweep``).
ORACLE_PERCENTILES = (98.0, 99.5, 99.9, 99.95, 99.99)
WARMUP_S = 3600
#: Reactive baselines: one deployment of the baseline flavor, swept over their targets.
REACTIVE = ("hpa", "kpa", "rayserve")
_DEFAULT_SETTING = {
    "hpa": "hpa@60%",
    "kpa": "kpa@0.7",
    "rayserve": "rayserve@2",
    "oracle": "oracle",
}


@dataclass(frozen=True)
class Workload:
    """Per-second true rates (warm-up first) and the hourly history before them."""

    rate_rps: np.ndarray
    history: tuple[float, ...]
    bin_s: float
    warmup_s: int
    start: str
    peak_rps: float


def load_workload(
    trace: str | Path,
    days: float,
    peak_rps: float,
    time_col: str | None = None,
    value_col: str | None = None,
    history_bins: int = 24 * 7 * 6,
) -> Workload:
    """The last ``days`` of ``trace`` as per-second rates peaking at ``peak_rps``.

    Parameters
    ----------
    trace : str or Path
        ``'bikeshare'`` or a CSV path.
    days : float
        Days simulated (after an hour of warm-up).
    peak_rps : float
        Rate of the busiest bin of the window.
    time_col, value_col : str, optional
        Columns of a CSV trace.
    history_bins : int
        Bins of history kept before the window (for forecasting policies).

    Returns
    -------
    Workload
        Per-second rates and the history.
    """
    from edgewise.workloads.traces import bin_seconds, load_trace

    series = load_trace(trace, time_col, value_col)
    bin_s = bin_seconds(series)
    if bin_s < 1:
        raise TraceError(f"{trace}: bins of {bin_s} s are shorter than a second")
    n_win = round(days * 86400 / bin_s)
    warm_bins = max(1, int(np.ceil(WARMUP_S / bin_s)))
    if n_win < 1:
        raise SpecError(f"--days {days}: shorter than one bin of the trace ({bin_s:g} s)")
    values = series.to_numpy(dtype=float)
    if len(values) < n_win + warm_bins:
        raise TraceError(
            f"{trace}: {len(values)} bins, fewer than the {n_win + warm_bins} that "
            f"{days:g} days plus a warm-up need"
        )
    window = values[-n_win:]
    top = float(window.max())
    if top <= 0:
        raise TraceError(f"{trace}: the last {days:g} days hold no request")
    rates = values * (peak_rps / top)
    first = len(values) - n_win - warm_bins  # first simulated bin (warm-up)
    warmup_s = int(warm_bins * bin_s)
    n_sec = round((n_win + warm_bins) * bin_s)
    centres = (np.arange(first - 1, len(values)) - first + 0.5) * bin_s
    lo = max(0, first - 1)
    known = rates[lo:]
    centres = centres[len(centres) - len(known) :]
    per_second = np.interp(np.arange(n_sec) + 0.5, centres, known)
    history = tuple(float(v) for v in rates[max(0, first - history_bins) : first])
    return Workload(
        rate_rps=per_second,
        history=history,
        bin_s=bin_s,
        warmup_s=warmup_s,
        start=str(series.index[-n_win]),
        peak_rps=float(peak_rps),
    )


def service_profile(model: str, kb: str | None = None) -> ServiceProfile:
    """Measured profile of ``model`` from the knowledge base if there is one, else the default.

    Parameters
    ----------
    model : str
        Model whose latest capacity profile (with at least 20 samples) is used.
    kb : str, optional
        Knowledge-base URL; ``None`` is the default one.

    Returns
    -------
    ServiceProfile
        The measured samples, or :func:`edgewise.sim.queueing.lognormal_profile`.
    """
    try:
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError

        from edgewise.kb import KnowledgeBase
        from edgewise.kb import models as m
    except ImportError:
        return lognormal_profile()
    try:
        store = KnowledgeBase.open(kb)
        with store.transaction() as s:
            rows = (
                s.execute(
                    select(m.CapacityProfile)
                    .where(m.CapacityProfile.model == model)
                    .order_by(m.CapacityProfile.id.desc())
                )
                .scalars()
                .all()
            )
            for row in rows:
                samples = (row.service_ms or {}).get("samples") or []
                if len(samples) >= 20:
                    return ServiceProfile(
                        np.asarray(samples, dtype=float),
                        float(row.cpus),
                        f"KB capacity profile {row.model}/{row.flavor} on {row.host} "
                        f"({len(samples)} samples at {row.cpus:g} CPU)",
                    )
    except SQLAlchemyError:
        pass
    return lognormal_profile()


def build_flavors(
    profile: ServiceProfile,
    slo_ms: float,
    percentile: float,
    catalog: Sequence[tuple[str, float, float]] = DEFAULT_FLAVORS,
    max_replicas: int = 1000,
    vertical_factor: float = 2.0,
    max_speedup: float = 2.0,
) -> list[SimFlavor]:
    """Flavors with per-replica SLO capacities from the capacity model.

    Parameters
    ----------
    profile : ServiceProfile
        Service times at the profile's CPUs (scaled to each flavor's).
    slo_ms, percentile : float
        The SLO the capacities are sized for.
    catalog : sequence of (name, cpus, price per hour)
        The flavors.
    max_replicas : int
        Most replicas of each flavor.
    vertical_factor : float
        Most CPUs per replica as a multiple of the flavor's.
    max_speedup : float
        Most a request speeds up with more CPUs.

    Returns
    -------
    list of SimFlavor
        One per catalog entry.
    """
    from edgewise.serving.capacity import capacity_rps

    out = []
    for name, cpus, price in catalog:
        factor = float(speed_factor(profile.cpus, cpus, max_speedup))
        prof = profile.scaled(factor, cpus=cpus)
        cap = float(capacity_rps(prof.samples_ms, slo_ms, percentile, n_requests=50_000))
        option = FlavorOption(
            name=name,
            cpus=cpus,
            capacity_rps=cap,
            price_per_hour=price,
            max_replicas=max_replicas,
            max_cpus=cpus * vertical_factor,
            service_ms_mean=prof.mean_ms,
            service_ms_quantiles=service_quantiles(prof.samples_ms),
        )
        out.append(SimFlavor(option, prof))
    return out


def _settings(name: str, wl: Workload, oracle_sweep: bool = False) -> list[tuple[str, Policy]]:
    """Every setting a policy runs at: the sweep of a reactive baseline, the oracle's."""
    if name == "oracle" and oracle_sweep:
        return [("oracle", make_policy("oracle"))] + [
            (f"oracle@p{p:g}", make_policy("oracle", design_percentile=p))
            for p in ORACLE_PERCENTILES
        ]
    if name == "hpa":
        return [(f"hpa@{t:.0%}", make_policy("hpa", target_utilisation=t)) for t in HPA_TARGETS]
    if name == "kpa":
        return [(f"kpa@{t:g}", make_policy("kpa", target_concurrency=t)) for t in KPA_TARGETS]
    if name == "rayserve":
        return [
            (f"rayserve@{t:g}", make_policy("rayserve", target_ongoing_requests=t))
            for t in RAY_TARGETS
        ]
    if name == "static":
        return [("static", make_policy("static", peak_rps=float(wl.rate_rps.max())))]
    return [(name, make_policy(name))]


def _default_setting(name: str, settings: list[tuple[str, Policy]]) -> tuple[str, Policy]:
    want = _DEFAULT_SETTING.get(name)
    return next((s for s in settings if s[0] == want), settings[0])


@dataclass(frozen=True)
class PolicyRuns:
    """Every setting one policy was simulated at, in order: ``(label, result)``."""

    name: str
    runs: tuple[tuple[str, SimResult], ...]

    @property
    def default(self) -> tuple[str, SimResult]:
        """The run reported for the policy: its default setting (or its only one)."""
        want = _DEFAULT_SETTING.get(self.name)
        return next(((lab, r) for lab, r in self.runs if lab == want), self.runs[0])

    def as_dict(self) -> dict[str, Any]:
        """The single run, or for a sweep the default setting plus the ``sweep``."""
        if len(self.runs) == 1:
            label, res = self.runs[0]
            return {"setting": label, **res.to_dict(series=bool(res.minutes))}
        label, res = self.default
        entry = {"setting": label, **res.to_dict(series=bool(res.minutes))}
        entry["sweep"] = [{"setting": lab, **r.to_dict()} for lab, r in self.runs]
        return entry


@dataclass(frozen=True)
class ServingSimulation:
    """Policies simulated over one window of a trace, and what they are compared by.

    ``as_dict()`` is the JSON of ``edgewise bench serving``: the settings, one entry per
    policy, and the cost ratios at equal attainment (ours over HPA's and the oracle's;
    the oracle's design percentiles over HPA's).
    """

    trace: str
    workload: Workload
    days: float
    profile: ServiceProfile
    flavors: tuple[SimFlavor, ...]
    config: SimConfig
    baseline_flavor: str
    policies: tuple[PolicyRuns, ...]

    def policy(self, name: str) -> PolicyRuns:
        """The runs of policy ``name``."""
        return next(p for p in self.policies if p.name == name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able report, keys as ``bench serving --json`` prints them."""
        wl, config = self.workload, self.config
        per_policy = {p.name: p.as_dict() for p in self.policies}
        out: dict[str, Any] = {
            "trace": self.trace,
            "window_start": wl.start,
            "days": self.days,
            "peak_rps": wl.peak_rps,
            "mean_rps": float(wl.rate_rps[wl.warmup_s :].mean()),
            "startup_s": config.startup_s,
            "slo_ms": config.slo_ms,
            "slo_percentile": config.slo_percentile,
            "seed": config.seed,
            "service_profile": self.profile.source,
            "flavors": [
                {
                    "name": f.name,
                    "cpus": f.option.cpus,
                    "price_per_hour": f.option.price_per_hour,
                    "capacity_rps": round(f.option.capacity_rps, 3),
                    "max_cpus": f.option.max_cpus,
                }
                for f in self.flavors
            ],
            "baseline_flavor": self.baseline_flavor,
            "max_replicas": max(f.option.max_replicas for f in self.flavors),
            "policies": per_policy,
        }
        hpa_runs = next((p.runs for p in self.policies if p.name == "hpa"), None)
        compare_ours(out, per_policy, hpa_runs)
        compare_oracle(out, per_policy, hpa_runs)
        return out


class SimulationSettings(TypedDict, total=False):
    """The settings of :func:`simulate_serving`, by name, for callers that pass them on.

    Each key is the keyword of :func:`simulate_serving` (its docstring says what it
    means); a key left out takes that function's default.
    """

    trace: str | Path
    time_col: str | None
    value_col: str | None
    days: float
    startup_s: int
    slo_ms: float
    policies: Sequence[str]
    seed: int
    peak_rps: float
    model: str
    baseline_flavor: str
    percentile: float
    series: bool
    single_setting: bool
    max_replicas: int
    oracle_sweep: bool
    kb: str | None


def simulate_serving(
    *,
    trace: str | Path = "bikeshare",
    time_col: str | None = None,
    value_col: str | None = None,
    days: float = 14.0,
    startup_s: int = 60,
    slo_ms: float = 100.0,
    policies: Sequence[str] = POLICY_NAMES,
    seed: int = 0,
    peak_rps: float = 200.0,
    model: str = "mobilenet_v2",
    baseline_flavor: str = "medium",
    percentile: float = 99.0,
    series: bool = False,
    single_setting: bool = False,
    max_replicas: int = 1000,
    oracle_sweep: bool = False,
    kb: str | None = None,
    progress: Progress | None = None,
) -> ServingSimulation:
    """Simulate ``policies`` over the last ``days`` of ``trace``.

    Predictive policies (edgewise, oracle, static) may use every flavor; the reactive
    baselines scale one deployment of ``baseline_flavor``, swept over their targets
    (only their default setting with ``single_setting``). With ``oracle_sweep`` the
    clairvoyant also runs at the design percentiles :data:`ORACLE_PERCENTILES`, and each
    setting is compared with HPA by the same equal-attainment rule as ours: the cost
    ratio no forecast can beat with this planner.

    Parameters
    ----------
    trace, time_col, value_col
        ``'bikeshare'`` or a CSV path, and its columns.
    days, peak_rps : float
        Window simulated (after an hour of warm-up) and its peak rate.
    startup_s : int
        Replica start-up (s).
    slo_ms, percentile : float
        The SLO.
    policies : sequence of str
        Policy names (:data:`edgewise.serving.policies.POLICY_NAMES`).
    seed : int
        Seed of the arrivals.
    model : str
        Model whose knowledge-base profile is used (default lognormal otherwise).
    baseline_flavor : str
        The flavor the reactive baselines scale.
    series, single_setting, oracle_sweep : bool
        Keep per-minute series of every run; run each policy at its default setting
        only; also run the clairvoyant at higher design percentiles.
    max_replicas : int
        Most replicas of each flavor.
    kb : str, optional
        Knowledge-base URL; ``None`` is the default one.
    progress : callable, optional
        ``progress(setting, seconds_done, seconds_total)`` during each run.

    Returns
    -------
    ServingSimulation
        Every run, with its settings.
    """
    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown:
        raise UnknownNameError(f"unknown policy {unknown[0]!r}; known: {', '.join(POLICY_NAMES)}")
    wl = load_workload(trace, days, peak_rps, time_col, value_col)
    profile = service_profile(model, kb)
    flavors = _flavors(profile, slo_ms, percentile, max_replicas, baseline_flavor)
    config = SimConfig(
        slo_ms=slo_ms,
        slo_percentile=percentile,
        startup_s=int(startup_s),
        warmup_s=wl.warmup_s,
        seed=seed,
        history_bin_s=wl.bin_s,
    )
    results = []
    for name in policies:
        settings = _settings(name, wl, oracle_sweep)
        if single_setting:
            settings = [_default_setting(name, settings)]
        fl = [f for f in flavors if f.name == baseline_flavor] if name in REACTIVE else flavors
        initial = {fl[0].name: 1}
        runs = tuple(
            (label, _timed_run(policy, wl, fl, config, initial, series, label, progress))
            for label, policy in settings
        )
        results.append(PolicyRuns(name, runs))
    return ServingSimulation(
        trace=str(trace),
        workload=wl,
        days=days,
        profile=profile,
        flavors=tuple(flavors),
        config=config,
        baseline_flavor=baseline_flavor,
        policies=tuple(results),
    )


def _flavors(
    profile: ServiceProfile,
    slo_ms: float,
    percentile: float,
    max_replicas: int,
    baseline_flavor: str,
) -> list[SimFlavor]:
    """The default catalog's flavors, checking the replica limit and the baseline's name."""
    if max_replicas < 1:
        raise SpecError(f"--max-replicas {max_replicas}: needs at least one replica")
    flavors = build_flavors(profile, slo_ms, percentile, max_replicas=max_replicas)
    names = [f.name for f in flavors]
    if baseline_flavor not in names:
        raise UnknownNameError(f"unknown flavor {baseline_flavor!r}; known: {', '.join(names)}")
    return flavors


def _timed_run(
    policy: Policy,
    wl: Workload,
    flavors: Sequence[SimFlavor],
    config: SimConfig,
    initial: dict[str, int],
    series: bool,
    label: str,
    progress: Progress | None,
) -> SimResult:
    """One simulation, with its wall-clock and CPU seconds."""
    n_sec = int(wl.rate_rps.size)
    cb = None
    if progress is not None:
        report = progress

        def cb(frac: float) -> None:
            report(label, round(frac * n_sec), n_sec)

    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate(
        policy,
        wl.rate_rps,
        flavors,
        config,
        history=wl.history,
        initial=initial,
        progress=cb,
        series=series,
    )
    res.wall_s = time.perf_counter() - t0
    res.cpu_s = time.process_time() - c0
    return res


def simulate_segment(
    segment: Segment,
    policy: str,
    option: FlavorOption,
    service_ms: Sequence[float] | np.ndarray,
    *,
    slo_ms: float,
    percentile: float,
    startup_s: float,
    seed: int = 0,
) -> SimResult:
    """Simulate ``policy`` over a replayed segment in wall time, as the live replay ran.

    Parameters
    ----------
    segment : Segment
        The compressed trace segment (:func:`edgewise.serving.replay.select_segment`).
    policy : str
        Policy name (a static policy is sized for the segment's peak).
    option : FlavorOption
        The one flavor replayed, with its probed capacity.
    service_ms : sequence of float
        Measured service times (ms) at the flavor's CPUs.
    slo_ms, percentile : float
        The SLO.
    startup_s : float
        Replica start-up (wall seconds; rounded to whole seconds).
    seed : int
        Seed of the arrivals.

    Returns
    -------
    SimResult
        Its cost is in wall time: multiply by ``segment.speedup`` for trace time.
    """
    from edgewise.serving.replay import replay_policy_for

    return simulate(
        replay_policy_for(policy, segment, [option], trace_time=True),
        segment.per_second(),
        [SimFlavor(option, ServiceProfile(np.asarray(service_ms), option.cpus, "measured"))],
        segment.sim_config(slo_ms, percentile, startup_s, seed),
        history=segment.history_rps.tolist(),
        initial={option.name: 1},
        series=False,
    )
