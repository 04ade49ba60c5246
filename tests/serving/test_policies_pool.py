"""Pool-aware sizing (M/G/c) for the predictive policies, against brute force and requests."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from edgewise.serving.policies import (
    EdgewisePolicy,
    FlavorOption,
    OraclePolicy,
    ScalingContext,
    StaticPolicy,
    WindowMetrics,
)
from edgewise.serving.policies._plan import make_sizer
from edgewise.serving.policies._pool import plan_pool, pool_capacity_table, pool_serves
from edgewise.serving.policies.base import service_quantiles
from edgewise.sim.events import PoolChange, simulate_requests
from edgewise.sim.queueing import lognormal_profile
from edgewise.stats import poisson_arrivals

PROFILE = lognormal_profile(16.0, 0.25)
Q = service_quantiles(PROFILE.samples_ms)
MEDIUM = FlavorOption("medium", 1.0, 36.8, 0.048, 8, 2.0, PROFILE.mean_ms, Q)
LARGE = FlavorOption(
    "large", 2.0, 97.0, 0.096, 4, 4.0, PROFILE.mean_ms / 2, tuple(v / 2 for v in Q)
)


def make_ctx(
    rate: float = 50.0,
    replicas: int = 2,
    flavors: tuple[FlavorOption, ...] = (MEDIUM,),
    future: Callable[[float, float], float] | None = None,
) -> ScalingContext:
    """Constant rate over the last minute, ``replicas`` ready of the first flavor."""
    first = flavors[0].name
    return ScalingContext(
        now=1000.0,
        period_s=15.0,
        startup_s=60.0,
        replicas={f.name: replicas if f.name == first else 0 for f in flavors},
        starting={f.name: 0 for f in flavors},
        cpus_per_replica={f.name: f.cpus for f in flavors},
        metrics=WindowMetrics(arrival_rps=np.full(60, rate)),
        slo_ms=100.0,
        slo_percentile=99.0,
        flavors=flavors,
        future_rate=future or (lambda t0, t1: rate),
    )


def test_pool_table_is_monotone_and_superadditive() -> None:
    cap = pool_capacity_table(Q, 100.0, 99.0, 50)
    assert cap[0] == 0.0 and np.all(np.diff(cap) >= 0)
    # A shared queue carries more than its replicas alone, and never beyond saturation.
    assert cap[4] > 4 * cap[1]
    mu = 1000.0 / PROFILE.mean_ms
    assert np.all(cap[1:] < np.arange(1, 51) * mu)
    assert cap[50] / (50 * mu) > 0.85
    assert not pool_capacity_table(Q, 10.0, 99.0, 5).any()  # SLO below one request


@pytest.mark.parametrize("c", [1, 4])
def test_pool_capacity_matches_request_level_percentile(c: int) -> None:
    rate = float(pool_capacity_table(Q, 100.0, 99.0, c)[c])
    arrivals = poisson_arrivals(np.full(1500, rate), 1.0, seed=c)
    out = simulate_requests(
        arrivals, [PoolChange(0.0, {"m": c}, {"m": 1.0})], {"m": PROFILE}, {"m": 1.0}, seed=7
    )
    assert 0.975 <= out.attainment(100.0) <= 0.998


def test_pool_plan_is_the_cheapest_feasible_mix() -> None:
    flavors = (MEDIUM, LARGE)
    combos = list(itertools.product(range(MEDIUM.max_replicas + 1), range(LARGE.max_replicas + 1)))
    for rate in (1.0, 30.0, 60.0, 140.0, 300.0, 555.0, 800.0):
        plan = plan_pool(flavors, rate, 100.0, 99.0)
        assert pool_serves(flavors, plan, 100.0, 99.0) >= rate
        price = plan["medium"] * MEDIUM.price_per_hour + plan["large"] * LARGE.price_per_hour
        best = min(
            m * MEDIUM.price_per_hour + k * LARGE.price_per_hour
            for m, k in combos
            if pool_serves(flavors, {"medium": m, "large": k}, 100.0, 99.0) >= rate
        )
        assert price == pytest.approx(best)
    top = plan_pool(flavors, 1e9, 100.0, 99.0)  # beyond every mix: the largest one
    assert top == {"medium": MEDIUM.max_replicas, "large": LARGE.max_replicas}
    assert plan_pool(flavors, 0.0, 100.0, 99.0) == {"medium": 0, "large": 0}


def test_sizer_falls_back_to_per_replica_capacities_without_quantiles() -> None:
    bare = replace(MEDIUM, service_ms_quantiles=())
    linear = make_sizer((bare,), 100.0, 99.0, "pool")
    assert not linear.pooled and linear.plan(150.0) == {"medium": 5}  # ceil(150 / 36.8)
    pooled = make_sizer((MEDIUM,), 100.0, 99.0, "pool")
    assert pooled.pooled and pooled.plan(150.0)["medium"] == 3  # a pool of 3 serves ~155
    assert make_sizer((MEDIUM,), 100.0, 99.0, "heuristic").plan(150.0) == {"medium": 5}


def test_predictive_policies_size_the_pool() -> None:
    flavors = (MEDIUM, LARGE)
    d, _ = OraclePolicy().decide(make_ctx(flavors=flavors, future=lambda t0, t1: 200.0))
    assert pool_serves(flavors, dict(d.replicas), 100.0, 99.0) >= 200.0
    assert sum(d.replicas.values()) < 200.0 / MEDIUM.capacity_rps  # fewer than per-replica
    d, _ = StaticPolicy(peak_rps=200.0).decide(make_ctx(flavors=flavors))
    assert pool_serves(flavors, dict(d.replicas), 100.0, 99.0) >= 200.0
    # Ours tops up the running mix rather than replacing it when that costs about the same.
    ctx = make_ctx(rate=150.0, replicas=2, flavors=flavors)
    d, _ = EdgewisePolicy(forecaster=None).decide(ctx)
    assert d.replicas["medium"] >= 2
    assert pool_serves(flavors, dict(d.replicas), 100.0, 99.0) >= 150.0
