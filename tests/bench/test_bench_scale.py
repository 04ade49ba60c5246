from __future__ import annotations

import json

from typer.testing import CliRunner

from edgewise.bench.scale import random_pool, retrain_planner
from edgewise.cli.main import make_app


def test_heuristic_matches_exact_on_small_random_pools() -> None:
    out = retrain_planner(sizes=(4, 8), big=300, seed=1, exact_limit_s=20.0)
    assert out["exact_max_devices"] == 8
    assert out["plan_gap_vs_exact"] is not None and 0.0 <= out["plan_gap_vs_exact"] <= 0.05
    assert out["plan_10k_devices_s"] > 0
    assert 0 < out["plan_16_devices_ms_p50"] <= out["plan_16_devices_ms_max"]


def test_random_pool_is_seeded_and_heterogeneous() -> None:
    a, pa, ca = random_pool(50, seed=3)
    b, pb, cb = random_pool(50, seed=3)
    assert a == b and pa == pb and ca == cb
    assert len({d.cpus for d in a}) > 1 and any(d.deadline_ms for d in a)


def test_bench_scale_cli_prints_every_field() -> None:
    app = make_app(["bench"])
    res = CliRunner().invoke(
        app,
        [
            "bench",
            "scale",
            "--policies",
            "hpa",
            "--days",
            "0.05",
            "--peak-rps",
            "500",
            "--devices",
            "200",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    for key in (
        "plan_10k_devices_s",
        "plan_16_devices_ms_p50",
        "plan_gap_vs_exact",
        "exact_max_devices",
        "sim_14d_1000_replicas_s",
        "peak_rss_mb",
    ):
        assert key in out
    assert out["peak_rss_mb"] > 10 and out["sim_by_policy"]["hpa"]["slo_attainment"] > 0.5
