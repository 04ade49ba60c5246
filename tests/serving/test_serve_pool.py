"""The pool a service runs (flavors x variants, wrapped policy, start), without Ray."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from edgewise.api.serve_pool import build_pool, eligible_variants
from edgewise.config import FlavorSpec, ServiceSpec
from edgewise.errors import InfeasibleError, SpecError
from edgewise.serving.live import FlavorCapacity, too_small
from edgewise.serving.policies import FlavorOption, VariantPolicy, make_policy

SMALL = FlavorSpec(name="small", cpus=0.5, price_per_hour=1.0, max_replicas=4)
LARGE = FlavorSpec(name="large", cpus=1.0, price_per_hour=2.0, max_replicas=2)
# one request's time (ms) per model at one CPU; a flavor with half the CPUs takes twice
MS_AT_ONE_CPU = {"mobilenet_v2": 20.0, "resnet50": 60.0}


def _spec(min_accuracy: float = 0.7, slo_ms: float = 150.0) -> ServiceSpec:
    return ServiceSpec(
        name="classify",
        variants=[
            {"model": "mobilenet_v2", "accuracy": 0.72},
            {"model": "resnet50", "accuracy": 0.76},
        ],
        min_accuracy=min_accuracy,
        slo={"latency_ms": slo_ms, "percentile": 99},
    )


def _capacity_of(
    slo_ms: float = 150.0,
) -> tuple[list[tuple[str, str]], Callable[[str, FlavorSpec], FlavorCapacity]]:
    asked: list[tuple[str, str]] = []

    def capacity_of(model: str, flavor: FlavorSpec) -> FlavorCapacity:
        asked.append((model, flavor.name))
        ms = MS_AT_ONE_CPU[model] / flavor.cpus
        samples = np.full(50, ms)
        if ms > slo_ms:
            raise too_small(flavor.name, samples, slo_ms=slo_ms, percentile=99, takes="takes")
        cap = 1000.0 / ms
        option = FlavorOption(
            flavor.name, flavor.cpus, cap, flavor.price_per_hour, flavor.max_replicas, 1.0, ms
        )
        return FlavorCapacity(option, samples, "knowledge base")

    return asked, capacity_of


def test_two_variants_in_two_flavors_make_a_variant_policy_on_the_pool() -> None:
    asked, capacity_of = _capacity_of()
    pool = build_pool(_spec(), [LARGE, SMALL], capacity_of, make_policy("hpa"))
    assert sorted(asked) == sorted(
        (m, f) for m in ("mobilenet_v2", "resnet50") for f in ("small", "large")
    )
    assert [o.name for o in pool.options] == ["small", "large"]
    assert [v.ref for v in pool.variants] == ["resnet50", "mobilenet_v2"]
    assert pool.model == "resnet50" and pool.variant == "resnet50" and pool.pooled
    assert isinstance(pool.policy, VariantPolicy) and pool.policy.name == "hpa"
    assert pool.policy.min_accuracy == 0.7
    assert pool.cpus_per_replica == 0.5 and pool.initial == {"small": 1}
    assert pool.max_replicas == 6  # 4 small + 2 large (no host limit)
    assert pool.options[0].capacity_rps == pytest.approx(1000.0 / 120.0)  # resnet50 in small
    assert len(pool.sources()) == 4 and not pool.notes


def test_one_variant_in_one_flavor_is_the_plain_policy() -> None:
    _, capacity_of = _capacity_of()
    pool = build_pool(
        _spec(min_accuracy=0.75),
        [SMALL],
        capacity_of,
        make_policy("edgewise"),
        max_replicas_of=lambda f: 3,
    )
    assert [v.ref for v in pool.variants] == ["resnet50"] and pool.variant is None
    assert not pool.pooled and not isinstance(pool.policy, VariantPolicy)
    assert pool.options[0].max_replicas == 3 and pool.max_replicas == 3
    host = build_pool(
        _spec(),
        [SMALL, LARGE],
        capacity_of,
        make_policy("hpa"),
        max_replicas_of=lambda f: int(2.0 // f.cpus),  # a 2-CPU host
    )
    # 4 small + 2 large allowed, but Ray reserves 0.5 CPU each: 4 replicas fit
    assert [o.max_replicas for o in host.options] == [4, 2] and host.max_replicas == 4


def test_a_flavor_too_small_for_a_variant_is_left_out_with_a_note() -> None:
    # resnet50 takes 120 ms in small (0.5 CPU) against a 100 ms SLO: only large serves both
    _, capacity_of = _capacity_of(slo_ms=100.0)
    pool = build_pool(_spec(slo_ms=100.0), [SMALL, LARGE], capacity_of, make_policy("hpa"))
    assert [o.name for o in pool.options] == ["large"] and len(pool.variants) == 2
    assert pool.cpus_per_replica == 1.0 and pool.initial == {"large": 1}
    assert len(pool.notes) == 1 and pool.notes[0].startswith("flavor small left out: SLO 100 ms")


def test_a_variant_too_slow_everywhere_is_left_out_and_none_fitting_is_one_error() -> None:
    _, capacity_of = _capacity_of(slo_ms=50.0)  # resnet50 60 ms at best; mobilenet 20-40
    pool = build_pool(_spec(slo_ms=50.0), [SMALL, LARGE], capacity_of, make_policy("hpa"))
    assert [v.ref for v in pool.variants] == ["mobilenet_v2"]
    assert any("resnet50 left out" in n for n in pool.notes)
    _, nothing = _capacity_of(slo_ms=10.0)
    with pytest.raises(InfeasibleError, match="no model variant fits any flavor") as err:
        build_pool(_spec(slo_ms=10.0), [SMALL, LARGE], nothing, make_policy("hpa"))
    assert "\n" not in str(err.value)


def test_variants_all_below_min_accuracy_are_refused_before_any_capacity() -> None:
    asked, capacity_of = _capacity_of()
    spec = _spec(min_accuracy=0.9)
    with pytest.raises(SpecError, match=r"svc.yaml: min_accuracy 0.9 is above .* resnet50"):
        build_pool(spec, [SMALL], capacity_of, make_policy("hpa"), where="svc.yaml")
    assert asked == []
    assert [v.model for v in eligible_variants(_spec(min_accuracy=0.0))] == [
        "resnet50",
        "mobilenet_v2",
    ]


def _store_profile(kb: object, model: str, flavor: FlavorSpec, mean_ms: float) -> None:
    from edgewise.serving.capacity import capacity_rps
    from edgewise.serving.profiles import FlavorProfile, save_profile

    service = np.random.default_rng(0).gamma(16.0, mean_ms / 16.0, 200)
    prof = FlavorProfile(
        model=model,
        flavor=flavor.name,
        cpus=flavor.cpus,
        batch_size=1,
        threads=1,
        isolated=True,
        service_ms=service,
        slo_ms=150.0,
        percentile=99.0,
        capacity_rps=capacity_rps(service, 150.0, 99.0),
    )
    save_profile(kb, prof)  # type: ignore[arg-type]


def test_serve_pool_reads_the_stored_profiles_and_derates_them_next_to_neighbours() -> None:
    from edgewise.api.serve_pool import service_pool
    from edgewise.kb import KnowledgeBase

    kb = KnowledgeBase.open()
    # mean ms per (model, flavor); with gamma(16) service times p99 is about 1.6 x mean
    means = {"mobilenet_v2": (30.0, 15.0), "resnet50": (80.0, 40.0)}
    for model, (small_ms, large_ms) in means.items():
        _store_profile(kb, model, SMALL, small_ms)
        _store_profile(kb, model, LARGE, large_ms)
    alone = service_pool(_spec(), [SMALL, LARGE], kb, make_policy("hpa"), measure=False)
    assert [o.name for o in alone.options] == ["small", "large"] and len(alone.variants) == 2
    assert {c.source for c in alone.capacities.values()} == {"knowledge base"}
    beside = service_pool(
        _spec(),
        [SMALL, LARGE],
        kb,
        make_policy("hpa"),
        measure=False,
        slowdown_of=lambda model: 1.5,
    )
    key = ("resnet50", "large")
    assert beside.capacities[key].option.capacity_rps < alone.capacities[key].option.capacity_rps
    assert beside.capacities[key].source == "knowledge base, derated x1.50"
    assert beside.alone_rps[key] == alone.capacities[key].option.capacity_rps
    assert not alone.alone_rps
    # resnet50 in small: p99 ~130 ms alone, ~190 ms beside them misses 150 ms: small left out
    assert [o.name for o in beside.options] == ["large"]
    assert (
        beside.notes[0].startswith("flavor small left out")
        and "next to the neighbours" in (beside.notes[0])
    )
    with pytest.raises(InfeasibleError, match="no capacity profile for resnet50 in flavor xl"):
        xl = FlavorSpec(name="xl", cpus=4.0, price_per_hour=8.0)
        service_pool(_spec(), [xl], kb, make_policy("hpa"), measure=False)


def test_a_probe_whose_tail_queues_past_the_slo_is_named_as_such() -> None:
    """A lone request meets the SLO, but one stall in the sample: the line says so."""
    samples = np.full(200, 30.0)
    samples[0] = 60_000.0
    err = too_small("small", samples, slo_ms=100.0, percentile=99, takes="takes")
    assert "slowest of 200 took 60000 ms" in str(err) and "p99 30.0 ms" in str(err)
    assert "is below what one request" not in str(err)
    samples[:5] = 500.0  # a lone request misses the SLO: the plain line
    assert "is below what one request takes in flavor small" in str(
        too_small("small", samples, slo_ms=100.0, percentile=99, takes="takes")
    )
