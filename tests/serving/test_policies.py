"""One contract suite over every autoscaling policy, then each policy's own rules."""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from edgewise.errors import UnknownNameError
from edgewise.serving.policies import (
    EdgewisePolicy,
    FlavorOption,
    HPAPolicy,
    KPAPolicy,
    OraclePolicy,
    Policy,
    RayServePolicy,
    ScalingContext,
    StaticPolicy,
    WindowMetrics,
    make_policy,
)

MEDIUM = FlavorOption("medium", 1.0, 40.0, 0.048, 20, 2.0, 16.0)
LARGE = FlavorOption("large", 2.0, 100.0, 0.096, 10, 4.0, 8.0)


def make_ctx(
    rate: float = 50.0,
    replicas: int = 2,
    starting: int = 0,
    util: float | None = None,
    ongoing: float | None = None,
    now: float = 1000.0,
    flavors: tuple[FlavorOption, ...] = (MEDIUM,),
    state: dict[str, Any] | None = None,
    future: Callable[[float, float], float] | None = None,
    **overrides: Any,
) -> ScalingContext:
    """A context with constant metrics over the last minute."""
    ready = max(0, replicas - starting)
    cap = ready / (MEDIUM.service_ms_mean / 1000.0)
    if util is None:
        util = min(1.0, rate / cap) if cap else 0.0
    if ongoing is None:
        ongoing = rate * MEDIUM.service_ms_mean / 1000.0
    first = flavors[0].name
    kwargs: dict[str, Any] = {
        "now": now,
        "period_s": 15.0,
        "startup_s": 60.0,
        "replicas": {f.name: (replicas if f.name == first else 0) for f in flavors},
        "starting": {f.name: (starting if f.name == first else 0) for f in flavors},
        "cpus_per_replica": {f.name: f.cpus for f in flavors},
        "metrics": WindowMetrics(
            arrival_rps=np.full(60, rate),
            ongoing_requests=np.full(60, ongoing),
            cpu_utilisation=np.full(60, util),
            latency_p99_ms=np.full(60, 30.0),
        ),
        "slo_ms": 100.0,
        "slo_percentile": 99.0,
        "flavors": flavors,
        "policy_state": state or {},
        "future_rate": future or (lambda t0, t1: rate),
    }
    kwargs.update(overrides)
    return ScalingContext(**kwargs)


ALL: list[Policy] = [
    EdgewisePolicy(forecaster=None),
    EdgewisePolicy(),
    HPAPolicy(),
    KPAPolicy(),
    RayServePolicy(),
    StaticPolicy(peak_rps=120.0),
    OraclePolicy(),
]
IDS = ["edgewise-noforecast", "edgewise", "hpa", "kpa", "rayserve", "static", "oracle"]

SCENARIOS: list[dict[str, Any]] = [
    {"rate": 50.0, "replicas": 2},
    {"rate": 0.0, "replicas": 0, "util": 0.0, "ongoing": 0.0},
    {"rate": 0.0, "replicas": 3, "util": 0.0, "ongoing": 0.0},
    {"rate": 5000.0, "replicas": 1, "util": 1.0, "ongoing": 500.0},
    {"rate": 80.0, "replicas": 4, "starting": 2},
    {"rate": 80.0, "replicas": 3, "flavors": (MEDIUM, LARGE)},
]


def check_policy(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contract every policy meets, over a run of contexts fed back its own state."""

    def no_clock(*_: Any) -> float:
        raise AssertionError("a policy read the wall clock")

    for scenario in SCENARIOS:  # first calls may import modules, which read the clock
        policy.decide(make_ctx(**scenario))
    monkeypatch.setattr(time, "time", no_clock)
    monkeypatch.setattr(time, "monotonic", no_clock)
    monkeypatch.setattr(time, "perf_counter", no_clock)
    for scenario in SCENARIOS:
        state: dict[str, Any] = {}
        for step in range(4):
            ctx = make_ctx(now=1000.0 + 15 * step, state=state, **scenario)
            snapshot = copy.deepcopy(dict(ctx.policy_state))
            decision, new_state = policy.decide(ctx)
            again, again_state = policy.decide(ctx)
            assert decision == again and new_state == again_state, "not deterministic"
            assert dict(ctx.policy_state) == snapshot, "context state mutated"
            round_trip = json.loads(json.dumps(new_state, allow_nan=False))
            assert round_trip == new_state, "state is not JSON"
            for f in ctx.flavors:
                n = decision.replicas.get(f.name, 0)
                assert isinstance(n, int)
                assert 0 <= n <= f.max_replicas
                cpus = decision.cpus_per_replica.get(f.name, f.cpus)
                assert 0 < cpus <= f.max_cpus + 1e-9
            assert isinstance(decision.reason, str)
            state = round_trip


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_policy_contract(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> None:
    check_policy(policy, monkeypatch)


@pytest.mark.parametrize("policy", ALL, ids=IDS)
def test_context_is_immutable(policy: Policy) -> None:
    ctx = make_ctx()
    with pytest.raises(TypeError):
        ctx.replicas["medium"] = 9  # type: ignore[index]
    with pytest.raises(ValueError):
        ctx.metrics.arrival_rps[0] = 1.0
    policy.decide(ctx)


def test_make_policy_rejects_unknown_names() -> None:
    with pytest.raises(UnknownNameError, match="unknown policy 'nope'"):
        make_policy("nope")
    assert isinstance(make_policy("hpa", target_utilisation=0.5), HPAPolicy)


# ------------------------------------------------------------------ HPA


def test_hpa_formula_and_tolerance() -> None:
    hpa = HPAPolicy(target_utilisation=0.5)
    d, _ = hpa.decide(make_ctx(replicas=4, util=0.75))
    assert d.replicas["medium"] == 6  # ceil(4 * 0.75 / 0.5)
    d, _ = hpa.decide(make_ctx(replicas=4, util=0.54))
    assert d.replicas["medium"] == 4  # within the 0.1 tolerance


def test_hpa_scale_up_limit_and_downscale_stabilisation() -> None:
    hpa = HPAPolicy(target_utilisation=0.1)
    d, _ = hpa.decide(make_ctx(replicas=2, util=1.0))
    assert d.replicas["medium"] == 6  # max(+4, x2) from 2
    hpa = HPAPolicy(target_utilisation=0.5)
    d, st = hpa.decide(make_ctx(replicas=8, util=0.5, now=0.0))
    assert d.replicas["medium"] == 8
    d, st = hpa.decide(make_ctx(replicas=8, util=0.1, now=100.0, state=st))
    assert d.replicas["medium"] == 8  # recommendation 8 still in the 300 s window
    d, _ = hpa.decide(make_ctx(replicas=8, util=0.1, now=301.0, state=st))
    assert d.replicas["medium"] == 2


# ------------------------------------------------------------------ KPA


def test_kpa_stable_panic_and_scale_down_rate() -> None:
    kpa = KPAPolicy(target_concurrency=1.0)
    d, st = kpa.decide(make_ctx(replicas=2, ongoing=3.0))
    assert d.replicas["medium"] == 3 and st["panic_since"] is None
    d, st = kpa.decide(make_ctx(replicas=2, ongoing=10.0))
    assert d.replicas["medium"] == 10 and st["panic_since"] == 1000.0
    # In panic the count never falls, even when concurrency drops.
    d, st = kpa.decide(make_ctx(replicas=10, ongoing=1.0, now=1010.0, state=st))
    assert d.replicas["medium"] == 10
    # Out of panic after a stable window, at most halving per tick.
    d, st = kpa.decide(make_ctx(replicas=10, ongoing=1.0, now=1061.0, state=st))
    assert st["panic_since"] is None and d.replicas["medium"] == 5


def test_kpa_scales_to_zero_after_grace_and_back_on_traffic() -> None:
    kpa = KPAPolicy()
    d, st = kpa.decide(make_ctx(replicas=1, rate=0.0, ongoing=0.0, util=0.0, now=0.0))
    assert d.replicas["medium"] == 1
    d, st = kpa.decide(make_ctx(replicas=1, rate=0.0, ongoing=0.0, util=0.0, now=31.0, state=st))
    assert d.replicas["medium"] == 0
    d, _ = kpa.decide(make_ctx(replicas=0, rate=1.0, ongoing=1.0, now=40.0, state=st))
    assert d.replicas["medium"] >= 1


# ------------------------------------------------------------------ Ray Serve


def test_rayserve_delays() -> None:
    ray = RayServePolicy()
    d, st = ray.decide(make_ctx(replicas=2, ongoing=12.0, now=0.0))
    assert d.replicas["medium"] == 2  # wants 6, must wait 30 s
    d, st = ray.decide(make_ctx(replicas=2, ongoing=12.0, now=29.0, state=st))
    assert d.replicas["medium"] == 2
    d, st = ray.decide(make_ctx(replicas=2, ongoing=12.0, now=30.0, state=st))
    assert d.replicas["medium"] == 6
    d, st = ray.decide(make_ctx(replicas=6, ongoing=2.0, now=40.0, state=st))
    assert d.replicas["medium"] == 6
    d, st = ray.decide(make_ctx(replicas=6, ongoing=2.0, now=640.0, state=st))
    assert d.replicas["medium"] == 1
    d, _ = ray.decide(make_ctx(replicas=0, ongoing=3.0, now=700.0, state=st))
    assert d.replicas["medium"] == 1  # cold-start fast path


# ------------------------------------------------------------------ static, oracle


def test_static_and_oracle_plans() -> None:
    d, _ = StaticPolicy(peak_rps=130.0).decide(make_ctx())
    assert d.replicas["medium"] == 4
    d, _ = OraclePolicy().decide(make_ctx(future=lambda t0, t1: 81.0 if t1 > t0 else 0.0))
    assert d.replicas["medium"] == 3
    with pytest.raises(ValueError, match="future_rate"):
        OraclePolicy().decide(make_ctx(future_rate=None))


# ------------------------------------------------------------------ edgewise


def test_edgewise_scales_out_at_once_and_in_only_after_holding() -> None:
    pol = EdgewisePolicy(forecaster=None)
    d, st = pol.decide(make_ctx(rate=150.0, replicas=2, now=0.0))
    assert d.replicas["medium"] >= 4  # 150 rps needs 4 x 40 rps, plus margin
    high = d.replicas["medium"]
    hold = pol.scale_in_hold_s(make_ctx())
    assert hold == 75.0  # one start-up (60 s) plus one period (15 s)
    t = 15.0
    while t < hold:  # a low rate, but the scale-out is too recent
        d, st = pol.decide(make_ctx(rate=30.0, replicas=high, now=t, state=st))
        assert d.replicas["medium"] == high
        t += 15.0
    d, st = pol.decide(make_ctx(rate=30.0, replicas=high, now=t, state=st))
    assert d.replicas["medium"] == 1


def test_edgewise_scale_in_hold_is_at_least_a_start_up_and_a_period() -> None:
    pol = EdgewisePolicy(forecaster=None)
    assert pol.scale_in_hold_s(make_ctx(startup_s=60.0)) == 75.0
    assert pol.scale_in_hold_s(make_ctx(startup_s=120.0)) == 135.0
    assert pol.scale_in_hold_s(make_ctx(startup_s=4.0)) == pol.scale_in_window_s
    assert EdgewisePolicy(scale_in_window_s=300.0).scale_in_hold_s(make_ctx()) == 300.0
    # A longer hold keeps the replicas of a past peak longer.
    slow = EdgewisePolicy(forecaster=None, scale_in_window_s=300.0)
    d, st = slow.decide(make_ctx(rate=150.0, replicas=2, now=0.0))
    high = d.replicas["medium"]
    for t in (75.0, 150.0, 285.0):
        d, st = slow.decide(make_ctx(rate=30.0, replicas=high, now=t, state=st))
        assert d.replicas["medium"] == high, t


@pytest.mark.parametrize("rate", [77.0, 116.0])
def test_edgewise_scale_in_leaves_room_for_the_poisson_noise(rate: float) -> None:
    """A lower plan that covers the rate but not its noise over a minute keeps replicas.

    At 77 rps two 40-rps replicas cover the rate and the 2 % band (78.5) but not three
    standard deviations of a 60 s mean (78.5 + 3.4); at 116 rps, three replicas likewise.
    """
    n = math.ceil(rate / 40.0) + 1
    exact = {"forecaster": None, "initial_margin": 0.0}
    d, _ = EdgewisePolicy(**exact, scale_in_noise_z=0.0).decide(make_ctx(rate=rate, replicas=n))
    assert d.replicas["medium"] == n - 1
    d, _ = EdgewisePolicy(**exact).decide(make_ctx(rate=rate, replicas=n))
    assert d.replicas["medium"] == n
    # Well below the lower plan's capacity the noise leaves room: replicas go.
    d, _ = EdgewisePolicy(**exact).decide(make_ctx(rate=rate - 8.0, replicas=n))
    assert d.replicas["medium"] == n - 1


def test_edgewise_margin_is_the_median_of_its_own_recent_errors() -> None:
    """The calibration's quantile (0.5 by default) of past relative errors is the margin."""
    errors = [0.01 * k for k in range(41)]  # 0.00 .. 0.40
    pol = EdgewisePolicy(forecaster=None)
    assert pol._margin(errors) == pytest.approx(0.20)
    assert EdgewisePolicy(error_quantile=0.9)._margin(errors) == pytest.approx(0.36)
    assert pol._margin(errors[:10]) == pol.initial_margin  # too few to calibrate
    assert EdgewisePolicy(max_margin=0.1)._margin(errors) == 0.1


def test_edgewise_raises_cpus_in_place_while_replicas_start() -> None:
    pol = EdgewisePolicy(forecaster=None)
    d, _ = pol.decide(make_ctx(rate=100.0, replicas=5, starting=3))
    assert d.cpus_per_replica["medium"] > 1.0  # 2 ready x 40 rps < 100 rps
    assert d.cpus_per_replica["medium"] <= MEDIUM.max_cpus
    d, _ = pol.decide(make_ctx(rate=30.0, replicas=2))
    assert d.cpus_per_replica["medium"] == 1.0


def test_edgewise_goes_to_zero_without_traffic_and_back() -> None:
    pol = EdgewisePolicy(forecaster=None)
    state: dict[str, Any] = {}
    n = 2
    for step in range(30):
        d, state = pol.decide(
            make_ctx(rate=0.0, replicas=n, util=0.0, ongoing=0.0, now=15.0 * step, state=state)
        )
        n = d.replicas["medium"]
    assert n == 0
    d, _ = pol.decide(make_ctx(rate=3.0, replicas=0, now=1000.0, state=state))
    assert d.replicas["medium"] == 1


def test_edgewise_keeps_its_replicas_until_it_has_observed_a_rate_window() -> None:
    """A service just started has seen no requests yet: that is no evidence of idleness.

    Seen live: the first decision, 0.6 s after ``edgewise serve`` started and before any
    client, scaled the service to zero, and the proxy's gate fell to one request.
    """
    pol = EdgewisePolicy(forecaster=None)
    d, _ = pol.decide(make_ctx(rate=0.0, replicas=2, now=0.6, metrics=WindowMetrics()))
    assert d.replicas["medium"] == 2
    short = WindowMetrics(*(np.zeros(30) for _ in range(4)))
    d, _ = pol.decide(make_ctx(rate=0.0, replicas=2, now=30.0, metrics=short))
    assert d.replicas["medium"] == 2
    # A whole window without a request: scale in (to zero without a forecast).
    d, _ = pol.decide(make_ctx(rate=0.0, replicas=2, util=0.0, ongoing=0.0, now=60.0))
    assert d.replicas["medium"] == 0


def test_edgewise_uses_the_forecast_shape() -> None:
    """A history with a steep rise in the next hour makes the policy provision above now."""
    pytest.importorskip("edgewise.forecast")
    day = np.concatenate([np.full(12, 10.0), np.full(12, 100.0)])
    history = tuple(np.tile(day, 16).tolist()[:-12])  # ends just before the rise
    pol = EdgewisePolicy()
    base = make_ctx(rate=10.0, replicas=1, now=0.0)
    flat = make_ctx(rate=10.0, replicas=1, now=0.0, rate_history=(), history_end=0.0)
    rising = ScalingContext(
        **{
            **{k: getattr(base, k) for k in base.__dataclass_fields__},
            "rate_history": history,
            "history_end": 1800.0,
            "now": 1800.0,
        }
    )
    d_flat, _ = pol.decide(flat)
    d_rise, st = pol.decide(rising)
    assert st["forecast"] is not None

    def trend(reason: str) -> float:
        return float(reason.split("trend=")[1].split()[0])

    # On the line through hourly centres, 75 s ahead of 10 -> 100 rps is ~2 % higher.
    assert trend(d_rise.reason) > trend(d_flat.reason) * 1.01
