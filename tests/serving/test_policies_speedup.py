"""Policies in a compressed replay keep their durations in trace time (``at_speedup``)."""

from __future__ import annotations

import numpy as np

from edgewise.serving.policies import (
    EdgewisePolicy,
    FlavorOption,
    HPAPolicy,
    KPAPolicy,
    ModelVariant,
    VariantPolicy,
)
from edgewise.serving.policies.base import MIN_DURATION_S, MIN_PERIOD_S, at_speedup
from edgewise.sim.model import SimConfig, SimFlavor
from edgewise.sim.queueing import ServiceProfile
from edgewise.sim.serving import simulate

SMALL = FlavorOption("small", 0.5, 40.0, 0.025, 4, 1.0, 10.0)


def test_durations_are_divided_by_the_speedup_down_to_one_second() -> None:
    pol = EdgewisePolicy()
    fast = at_speedup(pol, 4.0)
    assert (fast.period_s, fast.rate_window_s, fast.burst_window_s) == (MIN_PERIOD_S, 15.0, 2.5)
    assert fast.scale_in_window_s == 15.0
    # what is not a duration stays as it was
    assert (fast.noise_z, fast.error_window, fast.level) == (
        pol.noise_z,
        pol.error_window,
        pol.level,
    )
    day_in_a_minute = at_speedup(pol, 1440.0)
    assert day_in_a_minute.rate_window_s == MIN_DURATION_S
    assert day_in_a_minute.period_s == MIN_PERIOD_S  # decisions no closer than 5 s
    hpa = at_speedup(HPAPolicy(), 1440.0)
    assert hpa.stabilisation_s == hpa.metric_window_s == MIN_DURATION_S
    assert at_speedup(HPAPolicy(period_s=60.0), 4.0).period_s == 15.0
    assert at_speedup(KPAPolicy(), 10.0).panic_window_s == MIN_DURATION_S  # 6 s / 10
    assert at_speedup(pol, 1.0) is pol
    assert at_speedup(HPAPolicy(metric_window_s=30), 10.0).metric_window_s == 3.0  # an int too


def test_a_wrapped_policy_is_scaled_and_a_zero_stays_zero() -> None:
    variant = ModelVariant("digits_cnn", 0.98, (SMALL,))
    wrapped = VariantPolicy(EdgewisePolicy(), (variant,))
    fast = at_speedup(wrapped, 60.0)
    assert fast.hold_s == MIN_PERIOD_S and fast.inner.period_s == MIN_PERIOD_S  # 60 s / 60
    assert fast.period_s == fast.inner.period_s  # taken from the inner policy
    # a zero means "none": it is not raised to the floor
    assert at_speedup(EdgewisePolicy(scale_in_window_s=0.0), 10.0).scale_in_window_s == 0.0


def _compressed_day(speedup: float, peak_rps: float) -> np.ndarray:
    """Per wall second: one day of a diurnal rate (night 5 %, afternoon peak) replayed."""
    seconds = int(86400 / speedup)
    hour = np.arange(seconds) * speedup / 3600.0
    shape = 0.05 + 0.95 * np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None)
    return peak_rps * shape


def test_a_day_replayed_in_a_minute_is_scaled_by_the_hour_not_the_day() -> None:
    """At 1440x the unscaled policy's 60 s window averages the whole day and its 15 s
    period decides four times in it, so it under-provisions the afternoon (82.6 %); with
    its durations in trace time (a 1 s window, a 5 s period) it follows the day (97.9 %)."""
    rates = _compressed_day(1440.0, peak_rps=100.0)
    flavor = SimFlavor(SMALL, ServiceProfile(np.full(200, 10.0), SMALL.cpus, "fixed"))
    cfg = SimConfig(slo_ms=100.0, slo_percentile=99.0, startup_s=2, seed=0, time_scale=1440.0)
    policy = EdgewisePolicy(forecaster=None)
    blind = simulate(policy, rates, [flavor], cfg, initial={"small": 1}, series=False)
    scaled = simulate(at_speedup(policy, 1440.0), rates, [flavor], cfg, initial={"small": 1})
    assert scaled.slo_attainment >= 0.97, scaled.slo_attainment
    assert scaled.slo_attainment > blind.slo_attainment + 0.10, (
        blind.slo_attainment,
        scaled.slo_attainment,
    )
