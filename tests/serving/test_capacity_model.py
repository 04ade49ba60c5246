"""Capacity model (M/G/1 by Lindley's recursion) against closed forms and its own laws."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from edgewise.serving.capacity import (
    capacity_rps,
    latency_percentile,
    saturation_rps,
    utilisation,
)

MEAN_MS = 10.0  # service rate mu = 100 requests/s


@pytest.fixture(scope="module")
def exp_sample() -> np.ndarray:
    return np.random.default_rng(7).exponential(MEAN_MS, 100_000)


def mm1_percentile_ms(rate: float, p: float, mean_ms: float = MEAN_MS) -> float:
    mu = 1000.0 / mean_ms
    return -math.log(1 - p / 100) / (mu - rate) * 1000.0


@pytest.mark.parametrize("rate", [20.0, 50.0, 70.0])
@pytest.mark.parametrize("p", [50.0, 99.0])
def test_matches_mm1_sojourn_percentile(exp_sample: np.ndarray, rate: float, p: float) -> None:
    est = latency_percentile(exp_sample, rate, p, seed=1)
    assert est == pytest.approx(mm1_percentile_ms(rate, p), rel=0.04)


def test_capacity_matches_mm1(exp_sample: np.ndarray) -> None:
    # p99 sojourn <= slo  <=>  rate <= mu + ln(0.01) / slo
    slo_ms = 150.0
    expected = 100.0 + math.log(0.01) / (slo_ms / 1000.0)
    assert capacity_rps(exp_sample, slo_ms, 99.0, seed=2) == pytest.approx(expected, rel=0.03)


def test_deterministic_service_has_no_queue_at_low_rate() -> None:
    service = np.full(1000, 5.0)
    assert latency_percentile(service, 1.0, 50.0) == pytest.approx(5.0, abs=1e-9)
    # M/D/1 queues less than M/M/1 at the same load.
    exp = np.random.default_rng(0).exponential(5.0, 50_000)
    assert latency_percentile(service, 150.0, 99.0) < latency_percentile(exp, 150.0, 99.0)


def test_capacity_monotone_in_slo_and_percentile(exp_sample: np.ndarray) -> None:
    caps = [capacity_rps(exp_sample, slo, 99.0, seed=3) for slo in (60.0, 100.0, 200.0, 800.0)]
    assert all(a < b for a, b in itertools.pairwise(caps))
    assert caps[-1] < saturation_rps(exp_sample)
    assert capacity_rps(exp_sample, 100.0, 95.0, seed=3) > caps[1]


def test_latency_monotone_in_rate_and_unstable_is_inf(exp_sample: np.ndarray) -> None:
    lat = [latency_percentile(exp_sample, r, 99.0, seed=5) for r in (10.0, 40.0, 80.0, 95.0)]
    assert all(a < b for a, b in itertools.pairwise(lat))
    assert math.isinf(latency_percentile(exp_sample, saturation_rps(exp_sample) * 1.01, 99.0))
    assert utilisation(exp_sample, 50.0) == pytest.approx(0.5, rel=0.02)


def test_zero_when_a_lone_request_misses_the_slo() -> None:
    service = np.random.default_rng(1).uniform(20.0, 40.0, 500)
    assert capacity_rps(service, 30.0, 99.0) == 0.0
    assert capacity_rps(service, 45.0, 99.0) > 0.0


def test_rate_zero_is_the_service_percentile() -> None:
    service = np.arange(1.0, 101.0)
    assert latency_percentile(service, 0.0, 99.0) == pytest.approx(np.percentile(service, 99))


def test_seeded_and_reproducible(exp_sample: np.ndarray) -> None:
    a = capacity_rps(exp_sample[:500], 120.0, 99.0, seed=11)
    assert a == capacity_rps(exp_sample[:500], 120.0, 99.0, seed=11)


@pytest.mark.parametrize(
    "bad",
    [np.array([]), np.array([1.0, -1.0]), np.array([np.nan]), np.zeros(3)],
)
def test_bad_samples_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        capacity_rps(bad, 10.0, 99.0)


def test_bad_arguments_rejected(exp_sample: np.ndarray) -> None:
    with pytest.raises(ValueError):
        latency_percentile(exp_sample, 1.0, 0.0)
    with pytest.raises(ValueError):
        latency_percentile(exp_sample, -1.0, 99.0)
    with pytest.raises(ValueError):
        capacity_rps(exp_sample, 0.0, 99.0)
