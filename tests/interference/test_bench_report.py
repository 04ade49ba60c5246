"""The interference benchmark's report from synthetic measurements (no processes)."""

from __future__ import annotations

import numpy as np
import pytest

from edgewise.api.profile import InterferenceBenchmark
from edgewise.bench.interference import report
from edgewise.interference.campaign import (
    AppEvaluation,
    HeldOutPoint,
    RunRecord,
    fit_interference_model,
    resources_of,
)

SPACE = {"cpu": (0.0, 1.0), "llc": (0.0, 1.0)}


def _runs(solo_ms: float, n: int, seed: int) -> list[RunRecord]:
    """Solo baselines, then runs with slowdown 1 + cpu + 0.3 llc (1% noise)."""
    rng = np.random.default_rng(seed)
    lat = {"p50": solo_ms, "p95": 1.2 * solo_ms, "p99": 1.5 * solo_ms}
    runs = [RunRecord(i, {}, {"target_cpu": 0.1}, dict(lat), flags=("solo",), id=i) for i in (0, 1)]
    for i in range(n):
        cpu, llc = (float(v) for v in rng.random(2))
        s = (1 + cpu + 0.3 * llc) * float(np.exp(rng.normal(0, 0.01)))
        runs.append(
            RunRecord(
                i + 2,
                {"cpu": cpu, "llc": llc},
                {"cpu": cpu, "llc": llc, "target_cpu": 0.1},
                {p: s * v for p, v in lat.items()},
                id=i + 2,
            )
        )
    return runs


def _app(name: str, solo_ms: float, seed: int, repeats: bool) -> AppEvaluation:
    runs = _runs(solo_ms, 12, seed)
    model = fit_interference_model(name, runs, names=("gp",), resources=resources_of(SPACE))
    held = []
    for i, r in enumerate(_runs(solo_ms, 4, seed + 10)[2:]):
        window = {"achieved": r.achieved, "latency": r.latency}
        again = {"achieved": r.achieved, "latency": {p: 1.04 * v for p, v in r.latency.items()}}
        held.append(
            HeldOutPoint(
                i + 1,
                r.design,
                r.achieved,
                {p: 1.02 * v for p, v in r.latency.items()} if repeats else r.latency,
                {"p50": solo_ms, "p95": 1.2 * solo_ms, "p99": 1.5 * solo_ms},
                (window, again) if repeats else (),
            )
        )
    noise = ({"p50": solo_ms, "p99": 2.0}, {"p50": 1.1 * solo_ms, "p99": 2.0})
    return AppEvaluation(
        app=name,
        workload=f"{name}@20rps",
        window_s=6.0,
        campaigns={"active": f"bench-{name}"},
        models={"active": model},
        runs={"active": tuple(runs)},
        held=tuple(held),
        noise=noise,
    )


def test_report_has_the_benchmark_json_shape() -> None:
    bench = InterferenceBenchmark(
        apps=(_app("a", 10.0, 1, True), _app("b", 30.0, 2, True)),
        budget=12,
        holdout=4,
        seed=0,
        seconds=6.0,
        holdout_repeats=2,
        calibrated=False,
        device="cpu",
        placement="split",
        space=SPACE,
        resources=resources_of(SPACE),
        wall_s=1.0,
    )
    out = report(bench, curve_step=4)
    assert out["apps"] == ["a", "b"] and out["runs_per_app"] == 12
    assert out["median_ape"] == pytest.approx(bench.median_ape) and out["median_ape"] < 10.0
    assert out["noise_cv_p50"] == pytest.approx(bench.noise_cv_p50)
    assert out["median_ape_single_window"] is not None
    assert out["lhs_median_ape"] is None and out["active_fraction_to_lhs_error"] is None
    assert set(out["transfer"]) == {"a", "b"} and set(out["transfer_runs_needed"]) == {"a", "b"}
    entry = out["per_app"]["a"]
    assert entry["workload"] == "a@20rps" and entry["solo_p50_ms"] == pytest.approx(10.0)
    assert [c["runs"] for c in entry["holdout_learning_curve"]] == [4, 8, 12]
    assert entry["held_out"][0]["reference"] == {"p50": 10.0, "p95": 12.0, "p99": 15.0}
    assert len(entry["held_out"][0]["repeats"]) == 2
    assert 0.0 <= out["interval_coverage_90"] <= 1.0
    # the noise floor of the same run: the second window of each held-out point reads 4%
    # above the first (a perfect predictor scores 100 * 0.02 * sqrt(2) against the first,
    # that over 1.04 against the second); the centre runs, 10% apart, score more
    floor = 100 * 0.02 * np.sqrt(2)
    assert out["noise_floor_ape"] == pytest.approx(floor)
    assert bench.noise.noise_floor_ape == pytest.approx(floor)
    assert out["excess_error"] == pytest.approx(out["median_ape_single_window"] / floor)
    assert out["host_steady"] is True and out["host_unsteady_reason"] is None
    assert out["host_steal_frac"] is None
    assert entry["noise_floor_ape"] is not None and entry["reference_spread_p50"] == 0.0
    assert bench.as_dict()["apps"][1]["campaigns"] == {"active": "bench-b"}
