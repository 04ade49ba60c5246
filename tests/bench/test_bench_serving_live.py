"""The live serving benchmarks at toy sizes: real Ray Serve, real load, every field."""

from __future__ import annotations

import pytest

from edgewise.bench.serving_live import live, overhead

pytestmark = pytest.mark.slow


def test_serving_overhead_measures_both_sides() -> None:
    out = overhead(
        model="digits_cnn",
        replicas=1,
        cpus=1.0,
        seconds=3.0,
        concurrency=4,
        port=0,
        rounds=1,
        ingress="haproxy",
    )
    assert out["ingress"] == "haproxy"
    assert out["plain_rps"] > 0 and out["served_rps"] > 0
    # The breakdown: the model's own forward pass is part of the in-replica time.
    assert 0 < out["in_replica_forward_pass_p50_ms"] <= out["in_replica_p50_ms"]
    assert 0 < out["throughput_ratio"] < 5
    assert out["plain_p50_ms"] > 0 and out["served_p50_ms_low_load"] > 0
    assert out["status_codes"].get("200", 0) > 0


def test_serving_live_compares_with_the_simulator() -> None:
    out = live(
        "bikeshare",
        None,
        None,
        None,
        1.0,
        720.0,
        ["hpa"],
        100.0,
        99.0,
        "digits_cnn",
        None,
        0,
        port=0,
    )
    res = out["policies"]["hpa"]
    assert res["requests"] > 0 and 0 <= res["slo_attainment"] <= 1
    assert 0 <= res["sim_slo_attainment"] <= 1 and res["sim_cost"] > 0
    assert out["sim_live_cost_ratio"] == res["sim_live_cost_ratio"] > 0
