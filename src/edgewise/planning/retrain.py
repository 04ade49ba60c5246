"""Retrain planner (Deep-Edge): device selection, intensities and per-step batch shares.

Pure functions only: every input is an immutable value (devices, their measured or
predicted profiles, the job's constraints) and the output is a :class:`RetrainPlan`.
Failures are normal input (``DeviceState.alive=False``). The controller in
:mod:`edgewise.retrain.controller` runs the plan; nothing here touches a process.

Formulation. Device ``i`` trains at intensity ``k`` (threads, nice level) with
throughput ``θ_i(k)`` samples/s while its latency-critical app's latency percentile
becomes ``L_i(k)``. Choose a subset, an intensity per selected device and integer
shares ``b_i`` of the global batch ``B``::

    minimise T   s.t.  b_i / θ_i(k_i) + c(n) ≤ T,   Σ b_i = B,   1 ≤ b_i ≤ cap_i (selected)
                       L_i(k_i) ≤ D_i · (1 - margin),   model + b_i · per_sample ≤ memory_i

with communication cost ``c(n) = comm_fixed_s·[n > 1] + comm_per_device_s·(n - 1)``.

Solvers: :func:`plan_exact` (a MILP over integer shares and intensity binaries, no
big-M: the time constraint sums ``b_ik/θ_ik`` over the intensity copies of a device),
:func:`plan_heuristic` (vectorised, 10,000 devices in well under a second) and three
baselines (:func:`plan_equal`, :func:`plan_proportional`, :func:`plan_fastest`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgewise.errors import InfeasibleError
from edgewise.planning.retrain_model import (
    DeviceProfile,
    DeviceState,
    Intensity,
    RetrainConstraints,
    RetrainPlan,
    comm_cost,
    step_time,
)

__all__ = [
    "DeviceProfile",
    "DeviceState",
    "Intensity",
    "RetrainConstraints",
    "RetrainPlan",
    "comm_cost",
    "feasible_throughput",
    "min_max_shares",
    "plan",
    "plan_equal",
    "plan_exact",
    "plan_fastest",
    "plan_heuristic",
    "plan_milp",
    "plan_proportional",
    "step_time",
]


def min_max_shares(theta: np.ndarray, caps: np.ndarray, total: int) -> np.ndarray:
    """Integer shares minimising ``max b_i/θ_i`` with ``Σ b = total``, ``0 ≤ b ≤ cap``.

    Water-filling by bisection on the step time ``T``: ``count(T) = Σ min(cap, ⌊Tθ⌋)``
    is monotone; the smallest ``T`` with ``count ≥ total`` is optimal, and the few
    extra units at the breakpoint are removed from devices that sit exactly at ``T``.
    Raises ``ValueError`` when the caps cannot hold ``total``.
    """
    theta = np.asarray(theta, dtype=float)
    caps = np.asarray(caps, dtype=np.int64)
    if caps.sum() < total:
        raise ValueError("caps cannot hold the global batch")
    if total == 0:
        return np.zeros_like(caps)

    def count(t: float) -> np.ndarray:
        return np.minimum(caps, np.floor(t * theta + 1e-9).astype(np.int64))

    lo, hi = 0.0, float(np.max(np.where(caps > 0, caps / np.maximum(theta, 1e-300), 0.0)))
    hi = max(hi, total / float(theta.sum()))
    for _ in range(200):
        if count(hi).sum() >= total and (hi - lo) <= 1e-12 * max(hi, 1e-12):
            break
        mid = 0.5 * (lo + hi)
        if count(mid).sum() >= total:
            hi = mid
        else:
            lo = mid
    b = count(hi)
    excess = int(b.sum() - total)
    if excess > 0:
        # remove units from the devices with the largest b/θ (those at the breakpoint)
        ratio = np.where(b > 0, b / np.maximum(theta, 1e-300), -np.inf)
        order = np.argsort(-ratio, kind="stable")[:excess]
        b[order] -= 1
    return b


# ---------------------------------------------------------------- preparation


@dataclass(frozen=True)
class _Prepared:
    names: list[str]
    feasible: np.ndarray  # (N, K) bool: alive, deadline kept, memory fits
    theta: np.ndarray  # (N, K) throughput (0 where the intensity does not exist)
    caps: np.ndarray  # (N,) max per-step samples by memory (0: not usable)
    profiles: list[DeviceProfile]
    reasons: dict[str, str]


def _prepare(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    c: RetrainConstraints,
    respect_deadlines: bool = True,
) -> _Prepared:
    names = [d.name for d in devices]
    kmax = max((len(profiles[n].intensities) for n in names if n in profiles), default=1)
    n = len(devices)
    theta = np.zeros((n, max(kmax, 1)))
    lat = np.full((n, max(kmax, 1)), np.inf)
    exists = np.zeros((n, max(kmax, 1)), dtype=bool)
    caps = np.zeros(n, dtype=np.int64)
    reasons: dict[str, str] = {}
    plist: list[DeviceProfile] = []
    for i, d in enumerate(devices):
        p = profiles.get(d.name, DeviceProfile(d.name, ()))
        plist.append(p)
        for k, it in enumerate(p.intensities):
            theta[i, k] = it.throughput_sps
            lat[i, k] = it.bg_latency_ms
            exists[i, k] = it.throughput_sps > 0
        free = d.memory_mb - c.model_mb
        if c.per_sample_mb > 0:
            caps[i] = int(max(0.0, np.floor(free / c.per_sample_mb))) if free >= 0 else 0
        else:
            caps[i] = c.global_batch if free >= 0 else 0
        caps[i] = min(caps[i], c.global_batch)
        if not d.alive:
            reasons[d.name] = "out: device is down"
        elif not p.intensities or not exists[i].any():
            reasons[d.name] = "out: no throughput profile"
        elif caps[i] < 1:
            reasons[d.name] = (
                f"out: model ({c.model_mb:.0f} MB) + one sample does not fit "
                f"{d.memory_mb:.0f} MB of memory"
            )
    alive = np.array([d.alive for d in devices], dtype=bool)
    limit = np.array(
        [
            np.inf
            if (d.deadline_ms is None or not respect_deadlines)
            else d.deadline_ms * (1.0 - c.deadline_margin)
            for d in devices
        ]
    )
    keeps = lat <= limit[:, None]
    feasible = exists & keeps & alive[:, None] & (caps[:, None] >= 1)
    for i, d in enumerate(devices):
        if d.name not in reasons and not feasible[i].any():
            best = float(np.min(lat[i][exists[i]]))
            reasons[d.name] = (
                f"out: background p-latency {best:.1f} ms at the lightest intensity exceeds "
                f"{limit[i]:.1f} ms (deadline {d.deadline_ms:.1f} ms minus margin)"
            )
    return _Prepared(names, feasible, theta, caps, plist, reasons)


def _best_intensity(prep: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Per device, the index and throughput of the fastest feasible intensity (-1, 0: none)."""
    masked = np.where(prep.feasible, prep.theta, -np.inf)
    k = np.argmax(masked, axis=1)
    best = masked[np.arange(len(k)), k]
    ok = np.isfinite(best)
    return np.where(ok, k, -1), np.where(ok, best, 0.0)


def _full_intensity(prep: _Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Per device, the intensity a job oblivious to its neighbours runs at: the most
    threads at the default priority (lowest nice); (-1, 0) where there is none."""
    kidx = np.full(len(prep.names), -1)
    theta = np.zeros(len(prep.names))
    for i, p in enumerate(prep.profiles):
        ok = [k for k in range(len(p.intensities)) if prep.feasible[i, k]]
        if ok:
            k = max(ok, key=lambda j: (p.intensities[j].threads, -p.intensities[j].nice))
            kidx[i], theta[i] = k, prep.theta[i, k]
    return kidx, theta


def _finish(
    method: str,
    prep: _Prepared,
    shares_vec: np.ndarray,
    kidx: np.ndarray,
    c: RetrainConstraints,
    why_in: Callable[[int], str],
) -> RetrainPlan:
    shares: dict[str, int] = {}
    its: dict[str, Intensity] = {}
    expl = dict(prep.reasons)
    for i, name in enumerate(prep.names):
        if shares_vec[i] > 0:
            shares[name] = int(shares_vec[i])
            its[name] = prep.profiles[i].intensities[int(kidx[i])]
            expl[name] = why_in(i)
        elif name not in expl:
            expl[name] = "out: adding it would not shorten the step (communication cost)"
    return RetrainPlan(method, shares, its, step_time(shares, its, c), expl)


def _why_in(
    prep: _Prepared, kidx: np.ndarray, shares: np.ndarray, devices: Sequence[DeviceState]
) -> Callable[[int], str]:
    def why(i: int) -> str:
        it = prep.profiles[i].intensities[int(kidx[i])]
        d = devices[i]
        dl = (
            f"background {it.bg_latency_ms:.1f} ms ≤ deadline {d.deadline_ms:.1f} ms"
            if d.deadline_ms is not None
            else "no background deadline"
        )
        return (
            f"in: {int(shares[i])} samples/step at threads={it.threads} nice={it.nice} "
            f"({it.throughput_sps:.0f} samples/s, {dl})"
        )

    return why


def _no_device(prep: _Prepared) -> InfeasibleError:
    detail = "; ".join(f"{n}: {r.removeprefix('out: ')}" for n, r in prep.reasons.items())
    return InfeasibleError(f"no device can take part in re-training ({detail or 'empty pool'})")


def _usable_rows(prep: _Prepared, theta: np.ndarray) -> np.ndarray:
    """Rows of the devices with a positive throughput; raises when there is none."""
    usable = np.flatnonzero(theta > 0)
    if usable.size == 0:
        raise _no_device(prep)
    return usable


def _usable(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    c: RetrainConstraints,
) -> tuple[_Prepared, np.ndarray, np.ndarray, np.ndarray]:
    """The prepared pool, each device's fastest deadline-keeping intensity and throughput
    there, and the rows of the devices that can take part (raises when none can)."""
    prep = _prepare(devices, profiles, c)
    kidx, theta = _best_intensity(prep)
    return prep, kidx, theta, _usable_rows(prep, theta)


def feasible_throughput(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
) -> dict[str, float]:
    """Per device, the fastest throughput the deadlines and memory allow (0: none)."""
    prep = _prepare(devices, profiles, constraints)
    _, theta = _best_intensity(prep)
    return {n: float(t) for n, t in zip(prep.names, theta, strict=True)}


# ---------------------------------------------------------------- heuristic


def plan_heuristic(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
) -> RetrainPlan:
    """Fast plan: fastest deadline-keeping intensity per device, then scan the group size.

    Devices are sorted by that throughput; for each size ``n`` the continuous bound
    ``B/Σθ_top-n + c(n)`` ranks candidates, and the best few are evaluated with exact
    integer water-filling shares (memory caps included). Vectorised numpy: O(N log N).
    """
    c = constraints
    prep, kidx, theta, usable = _usable(devices, profiles, c)
    order = usable[np.argsort(-theta[usable], kind="stable")]
    th = theta[order]
    caps = prep.caps[order]
    ns = np.arange(1, order.size + 1)
    comm = np.where(ns > 1, c.comm_fixed_s + c.comm_per_device_s * (ns - 1), 0.0)
    bound = c.global_batch / np.cumsum(th) + comm
    bound[np.cumsum(caps) < c.global_batch] = np.inf
    candidates = set(np.argsort(bound, kind="stable")[:4].tolist())
    best_vec: np.ndarray | None = None
    best_t = np.inf
    for m in sorted(candidates):
        if not np.isfinite(bound[m]):
            continue
        sub = order[: m + 1]
        b = min_max_shares(theta[sub], prep.caps[sub], c.global_batch)
        used = int((b > 0).sum())
        t = float(np.max(b[b > 0] / theta[sub][b > 0])) + comm_cost(used, c)
        if t < best_t:
            best_t, best_vec = t, np.zeros(len(prep.names), dtype=np.int64)
            best_vec[sub] = b
    # best single device that holds the whole batch (may beat the sorted prefix with caps)
    single = usable[prep.caps[usable] >= c.global_batch]
    if single.size:
        j = int(single[np.argmax(theta[single])])
        t1 = c.global_batch / theta[j]
        if t1 < best_t:
            best_t, best_vec = t1, np.zeros(len(prep.names), dtype=np.int64)
            best_vec[j] = c.global_batch
    if best_vec is None:
        raise InfeasibleError(
            f"the usable devices' memory cannot hold a global batch of {c.global_batch}"
        )
    return _finish("heuristic", prep, best_vec, kidx, c, _why_in(prep, kidx, best_vec, devices))


# ---------------------------------------------------------------- exact


def plan_exact(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
) -> RetrainPlan:
    """Optimal plan, exploiting the problem's structure.

    Dominance: a faster feasible intensity only relaxes a device's time constraint and
    does not change its deadline or memory, so each device runs its fastest feasible
    intensity. When no memory cap binds (every usable device can hold ``B``), for a
    fixed group size the ``n`` fastest devices are optimal (exchange argument), so
    scanning ``n`` with exact integer water-filling is optimal in O(N² log B). When a
    cap binds, the MILP of :func:`plan_milp` decides the subset.
    """
    c = constraints
    prep, kidx, theta, usable = _usable(devices, profiles, c)
    if np.any(prep.caps[usable] < c.global_batch):
        return plan_milp(devices, profiles, c, reduce=True)
    order = usable[np.argsort(-theta[usable], kind="stable")]
    best_t, best_vec = np.inf, np.zeros(len(prep.names), dtype=np.int64)
    for m in range(1, order.size + 1):
        sub = order[:m]
        if comm_cost(m, c) >= best_t:
            break
        b = min_max_shares(theta[sub], prep.caps[sub], c.global_batch)
        used = int((b > 0).sum())
        t = float(np.max(b[b > 0] / theta[sub][b > 0])) + comm_cost(used, c)
        if t < best_t - 1e-15:
            best_t = t
            best_vec = np.zeros(len(prep.names), dtype=np.int64)
            best_vec[sub] = b
    return _finish("exact", prep, best_vec, kidx, c, _why_in(prep, kidx, best_vec, devices))


def plan_milp(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
    reduce: bool = False,
    time_limit_s: float = 10.0,
) -> RetrainPlan:
    """Optimal plan from a MILP (scipy ``milp``, HiGHS); ``reduce`` keeps only each
    device's fastest feasible intensity (see :func:`plan_exact`).

    Variables: integer ``b_ik`` and binary ``x_ik`` per feasible (device, intensity),
    binary ``y`` (more than one device), continuous ``T``. Constraints:
    ``Σ_k x_ik ≤ 1``, ``x_ik ≤ b_ik ≤ cap_i x_ik``, ``Σ b = B``,
    ``Σ_k b_ik/θ_ik + α(Σx - 1) + β y ≤ T`` per device, ``(N-1) y ≥ Σx - 1``.
    The solution's shares are then re-balanced by exact water-filling on its chosen
    devices and intensities (never worse, removes solver tolerance).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import lil_matrix

    c = constraints
    prep = _prepare(devices, profiles, c)
    feasible = prep.feasible
    if reduce:
        kbest, _ = _best_intensity(prep)
        feasible = np.zeros_like(feasible)
        rows_ok = np.flatnonzero(kbest >= 0)
        feasible[rows_ok, kbest[rows_ok]] = True
    pairs = [(int(i), int(k)) for i, k in zip(*np.nonzero(feasible), strict=True)]
    if not pairs:
        raise _no_device(prep)
    p = len(pairs)
    nvar = 2 * p + 2  # b (p), x (p), y, T
    iy, it = 2 * p, 2 * p + 1
    devs = sorted({i for i, _ in pairs})
    nd = len(devs)
    alpha, beta = c.comm_per_device_s, c.comm_fixed_s
    rows: list[tuple[dict[int, float], float, float]] = []
    for i in devs:
        idx = [j for j, (ii, _) in enumerate(pairs) if ii == i]
        rows.append(({p + j: 1.0 for j in idx}, -np.inf, 1.0))
        coef: dict[int, float] = {j: 1.0 / prep.theta[pairs[j]] for j in idx}
        for j in range(p):
            coef[p + j] = coef.get(p + j, 0.0) + alpha
        coef[iy] = beta
        coef[it] = -1.0
        rows.append((coef, -np.inf, alpha))
    for j, (i, _) in enumerate(pairs):
        rows.append(({j: 1.0, p + j: -float(prep.caps[i])}, -np.inf, 0.0))
        rows.append(({j: 1.0, p + j: -1.0}, 0.0, np.inf))
    rows.append(({j: 1.0 for j in range(p)}, c.global_batch, c.global_batch))
    multi = {p + j: 1.0 for j in range(p)}
    multi[iy] = -float(max(nd - 1, 1))
    rows.append((multi, -np.inf, 1.0))
    a = lil_matrix((len(rows), nvar))
    lb = np.empty(len(rows))
    ub = np.empty(len(rows))
    for r, (coef, lo, hi) in enumerate(rows):
        for j, v in coef.items():
            a[r, j] = v
        lb[r], ub[r] = lo, hi
    cost = np.zeros(nvar)
    cost[it] = 1.0
    integrality = np.ones(nvar)
    integrality[it] = 0
    upper = np.concatenate([[float(prep.caps[i]) for i, _ in pairs], np.ones(p), [1.0], [np.inf]])
    res = milp(
        cost,
        constraints=LinearConstraint(a.tocsr(), lb, ub),
        integrality=integrality,
        bounds=Bounds(np.zeros(nvar), upper),
        options={"time_limit": time_limit_s, "mip_rel_gap": 1e-9},
    )
    if res.x is None:
        raise InfeasibleError(
            f"the usable devices' memory cannot hold a global batch of {c.global_batch}"
        )
    x = np.round(res.x).astype(np.int64)
    kidx = np.full(len(prep.names), -1)
    chosen: list[int] = []
    for j, (i, k) in enumerate(pairs):
        if x[p + j] == 1 and x[j] > 0:
            kidx[i] = k
            chosen.append(i)
    sel = np.array(sorted(chosen))
    th = prep.theta[sel, kidx[sel]]
    b = min_max_shares(th, prep.caps[sel], c.global_batch)
    vec = np.zeros(len(prep.names), dtype=np.int64)
    vec[sel] = b
    return _finish(
        "exact" if reduce else "milp", prep, vec, kidx, c, _why_in(prep, kidx, vec, devices)
    )


# ---------------------------------------------------------------- baselines


def _baseline_name(method: str, respect_deadlines: bool) -> str:
    """A baseline's name: ``method``, with ``-feasible`` when it keeps the deadlines."""
    return method + ("-feasible" if respect_deadlines else "")


def _all_devices(
    method: str,
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    c: RetrainConstraints,
    respect_deadlines: bool,
    proportional: bool,
) -> RetrainPlan:
    """Every usable device, its share equal or by throughput; ``method`` is the base name."""
    prep = _prepare(devices, profiles, c, respect_deadlines=respect_deadlines)
    # deadline-aware: each device's fastest allowed intensity; oblivious: full intensity
    kidx, theta = _best_intensity(prep) if respect_deadlines else _full_intensity(prep)
    usable = _usable_rows(prep, theta)
    vec = np.zeros(len(prep.names), dtype=np.int64)
    if proportional:
        vec[usable] = min_max_shares(theta[usable], prep.caps[usable], c.global_batch)
    else:
        n = usable.size
        base = np.full(n, c.global_batch // n, dtype=np.int64)
        base[: c.global_batch % n] += 1
        if np.any(base > prep.caps[usable]):
            raise InfeasibleError(f"an equal split of {c.global_batch} does not fit in memory")
        vec[usable] = base
    name = _baseline_name(method, respect_deadlines)
    return _finish(name, prep, vec, kidx, c, _why_in(prep, kidx, vec, devices))


def plan_equal(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
    respect_deadlines: bool = False,
) -> RetrainPlan:
    """Baseline: every usable device, equal shares.

    With ``respect_deadlines`` each device runs its fastest deadline-keeping intensity
    (the best feasible equal split); without, its full intensity (most threads, nice 0).
    """
    return _all_devices(
        "equal", devices, profiles, constraints, respect_deadlines, proportional=False
    )


def plan_proportional(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
    respect_deadlines: bool = False,
) -> RetrainPlan:
    """Baseline: shares ∝ throughput, every usable device at full intensity (most threads,
    default priority) and blind to the apps next to it (interference-oblivious); with
    ``respect_deadlines``, at its fastest deadline-keeping intensity instead."""
    return _all_devices(
        "proportional", devices, profiles, constraints, respect_deadlines, proportional=True
    )


def plan_fastest(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
    respect_deadlines: bool = False,
) -> RetrainPlan:
    """Baseline: the single fastest device that holds the whole global batch."""
    c = constraints
    prep = _prepare(devices, profiles, c, respect_deadlines=respect_deadlines)
    kidx, theta = _best_intensity(prep)
    ok = np.flatnonzero((theta > 0) & (prep.caps >= c.global_batch))
    if ok.size == 0:
        raise _no_device(prep)
    j = int(ok[np.argmax(theta[ok])])
    vec = np.zeros(len(prep.names), dtype=np.int64)
    vec[j] = c.global_batch
    name = _baseline_name("fastest", respect_deadlines)
    return _finish(name, prep, vec, kidx, c, _why_in(prep, kidx, vec, devices))


PLANNERS: dict[str, Callable[..., RetrainPlan]] = {
    "exact": plan_exact,
    "milp": plan_milp,
    "heuristic": plan_heuristic,
    "equal": plan_equal,
    "proportional": plan_proportional,
    "fastest": plan_fastest,
}


def plan(
    devices: Sequence[DeviceState],
    profiles: Mapping[str, DeviceProfile],
    constraints: RetrainConstraints,
    method: str = "auto",
) -> RetrainPlan:
    """Plan a re-training step; ``auto`` is exact up to 32 devices, heuristic above.

    Raises :class:`~edgewise.errors.InfeasibleError` with one line when no device
    can take part.
    """
    if method == "auto":
        method = "exact" if len(devices) <= 32 else "heuristic"
    if method not in PLANNERS:
        raise ValueError(f"unknown planner {method!r}; choose from {sorted(PLANNERS)}")
    return PLANNERS[method](devices, profiles, constraints)
