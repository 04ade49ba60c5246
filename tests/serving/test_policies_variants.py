"""The variant policy: the cheapest model variant accurate enough, any policy inside. Pure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edgewise.errors import InfeasibleError, SpecError
from edgewise.serving.policies import (
    FlavorOption,
    ModelVariant,
    ScalingContext,
    VariantPolicy,
    WindowMetrics,
    make_policy,
)
from edgewise.serving.policies.base import service_quantiles
from edgewise.serving.policies.variants import cheapest_variant


def _variant(ref: str, accuracy: float, median_ms: float) -> ModelVariant:
    q = service_quantiles(np.random.default_rng(0).lognormal(np.log(median_ms), 0.2, 2000))
    flavors = tuple(
        FlavorOption(
            name,
            cpus,
            capacity_rps=0.6 * 1000 / (median_ms / cpus),
            price_per_hour=price,
            max_replicas=6,
            service_ms_mean=median_ms / cpus,
            service_ms_quantiles=tuple(v / cpus for v in q),
        )
        for name, cpus, price in (("large", 2.0, 2.0), ("small", 1.0, 1.0))
    )
    return ModelVariant(ref, accuracy, flavors)


ACCURATE = _variant("resnet50", 0.80, 40.0)
FAST = _variant("mobilenet_v2", 0.72, 10.0)


def make_ctx(**overrides: Any) -> ScalingContext:
    base: dict[str, Any] = {
        "now": 0.0,
        "period_s": 15.0,
        "startup_s": 5.0,
        "replicas": {"large": 1, "small": 0},
        "starting": {},
        "cpus_per_replica": {},
        "metrics": WindowMetrics(),
        "slo_ms": 150.0,
        "slo_percentile": 99.0,
        "flavors": ACCURATE.flavors,
    }
    return ScalingContext(**{**base, **overrides})


def _flat(rate: float) -> Any:
    return lambda _t0, _t1: rate


def test_low_rate_serves_the_accurate_variant_and_high_rate_the_cheaper_one() -> None:
    assert cheapest_variant([ACCURATE, FAST], 5.0, 150.0, 99.0) is ACCURATE
    assert cheapest_variant([ACCURATE, FAST], 200.0, 150.0, 99.0) is FAST


def test_policy_switches_after_the_hold_and_sizes_with_the_chosen_variant() -> None:
    policy = VariantPolicy(make_policy("oracle"), (ACCURATE, FAST), hold_s=30.0)
    assert policy.name == "oracle" and policy.period_s == 15.0
    d, st = policy.decide(make_ctx(future_rate=_flat(5.0)))
    assert d.variant == "resnet50" and st["variant"] == "resnet50"
    ctx = make_ctx(now=15.0, future_rate=_flat(60.0), policy_state=st)
    d, st = policy.decide(ctx)  # the accurate one still serves 60 rps: held
    assert d.variant == "resnet50" and st["candidate"] == "mobilenet_v2" and st["since"] == 15.0
    d, st = policy.decide(make_ctx(now=45.0, future_rate=_flat(60.0), policy_state=st))
    assert d.variant == "mobilenet_v2" and "switched" in d.reason
    served = sum(FAST.flavors[i].capacity_rps * n for i, n in enumerate(d.replicas.values()))
    assert served >= 60.0 * 0.5  # sized with the fast model's capacities, not the slow one's


def test_a_variant_that_cannot_serve_the_rate_is_left_at_once() -> None:
    policy = VariantPolicy(make_policy("oracle"), (ACCURATE, FAST), hold_s=1e9)
    _, st = policy.decide(make_ctx(future_rate=_flat(1.0)))
    d, _ = policy.decide(make_ctx(now=15.0, future_rate=_flat(400.0), policy_state=st))
    assert d.variant == "mobilenet_v2"


def test_min_accuracy_leaves_out_the_cheap_variant() -> None:
    policy = VariantPolicy(make_policy("oracle"), (ACCURATE, FAST), min_accuracy=0.75)
    d, _ = policy.decide(make_ctx(future_rate=_flat(400.0)))
    assert d.variant == "resnet50"


def test_bad_variant_sets_are_refused_in_one_line() -> None:
    with pytest.raises(InfeasibleError, match=r"minimum accuracy 0\.9 .*resnet50"):
        VariantPolicy(make_policy("oracle"), (ACCURATE, FAST), min_accuracy=0.9)
    with pytest.raises(SpecError, match="same flavors"):
        VariantPolicy(
            make_policy("oracle"),
            (ACCURATE, ModelVariant("x", 0.9, ACCURATE.flavors[:1])),
        )


def test_inner_state_round_trips_and_observed_rate_is_used_without_clairvoyance() -> None:
    policy = VariantPolicy(make_policy("hpa"), (ACCURATE, FAST))
    metrics = WindowMetrics(arrival_rps=np.full(60, 300.0), cpu_utilisation=np.full(60, 1.0))
    ctx = make_ctx(metrics=metrics, policy_state={"inner": {}})
    d, st = policy.decide(ctx)
    assert d.variant == "mobilenet_v2" and isinstance(st["inner"], dict)
    assert policy.rate_ahead(ctx) == pytest.approx(330.0)
