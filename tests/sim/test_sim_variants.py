"""The simulator executes a pool of flavors and switches model variant as decided."""

from __future__ import annotations

import numpy as np

from edgewise.serving.policies import FlavorOption, ModelVariant, VariantPolicy, make_policy
from edgewise.sim.queueing import ServiceProfile, lognormal_profile
from edgewise.sim.serving import SimConfig, SimFlavor, simulate

FLAVORS = (("large", 2.0, 2.0), ("small", 1.0, 1.0))


def _sim_flavors(median_ms: float) -> tuple[SimFlavor, ...]:
    out = []
    for name, cpus, price in FLAVORS:
        prof = lognormal_profile(median_ms / cpus, 0.2, cpus)
        option = FlavorOption(
            name,
            cpus,
            capacity_rps=0.6 * 1000 / prof.mean_ms,
            price_per_hour=price,
            max_replicas=6,
            service_ms_mean=prof.mean_ms,
            service_ms_quantiles=tuple(float(v) for v in prof.samples_ms),
        )
        out.append(SimFlavor(option, ServiceProfile(prof.samples_ms, cpus, "test")))
    return tuple(out)


SLOW, FAST = _sim_flavors(40.0), _sim_flavors(10.0)
VARIANTS = {"resnet50": SLOW, "mobilenet_v2": FAST}


def _policy(hold_s: float = 30.0) -> VariantPolicy:
    return VariantPolicy(
        make_policy("oracle"),
        (
            ModelVariant("resnet50", 0.8, tuple(f.option for f in SLOW)),
            ModelVariant("mobilenet_v2", 0.72, tuple(f.option for f in FAST)),
        ),
        hold_s=hold_s,
    )


def _run(rate: np.ndarray, variants: dict[str, tuple[SimFlavor, ...]] | None = VARIANTS) -> object:
    return simulate(
        _policy(),
        rate,
        SLOW,
        SimConfig(slo_ms=150.0, startup_s=5, seed=1),
        initial={"large": 1},
        variants=variants,
        variant="resnet50",
        series=False,
        record_decisions=True,
    )


def test_a_rising_rate_switches_to_the_cheap_variant_and_back() -> None:
    rate = np.concatenate([np.full(120, 5.0), np.full(240, 150.0), np.full(240, 5.0)])
    res = _run(rate)
    variants = [e["variant"] for e in res.executed]
    assert variants[0] == "resnet50" and "mobilenet_v2" in variants and variants[-1] == "resnet50"
    assert res.variant_switches == 2
    assert all(set(e["replicas"]) == {"large", "small"} for e in res.executed)
    assert res.slo_attainment > 0.98


def test_each_second_is_scored_with_the_variant_that_served_it() -> None:
    # 150 rps on the slow model's service times with the fast model's pool would miss
    # the SLO badly: a switch not applied to the service times shows up here.
    rate = np.concatenate([np.full(60, 5.0), np.full(300, 150.0)])
    switched = _run(rate)
    assert switched.slo_attainment > 0.98
    stuck = _run(rate, variants={"resnet50": SLOW, "mobilenet_v2": SLOW})
    assert stuck.slo_attainment < switched.slo_attainment - 0.1


def test_without_recording_no_decision_is_kept() -> None:
    res = simulate(make_policy("oracle"), np.full(60, 5.0), SLOW, SimConfig(startup_s=5))
    assert res.executed == [] and res.variant_switches == 0
