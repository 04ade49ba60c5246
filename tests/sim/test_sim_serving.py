"""The serving simulator: queueing model against request-level truth, accounting, bench, CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from edgewise.serving.cost import CostMeter, FlavorPrice, replica_cost
from edgewise.serving.policies import (
    EdgewisePolicy,
    FlavorOption,
    HPAPolicy,
    PolicyState,
    ScalingContext,
    ScalingDecision,
    make_policy,
)
from edgewise.sim.events import PoolChange, simulate_requests
from edgewise.sim.queueing import capacity_rps, lognormal_profile
from edgewise.sim.serving import SimConfig, SimFlavor, simulate
from edgewise.stats import poisson_arrivals

PROFILE = lognormal_profile(16.0, 0.25)


def medium(cap: float = 36.0) -> SimFlavor:
    return SimFlavor(FlavorOption("medium", 1.0, cap, 0.048, 1000, 2.0, PROFILE.mean_ms), PROFILE)


@dataclass(frozen=True)
class Scripted:
    """A policy that follows a fixed schedule of (time, replicas, cpus)."""

    schedule: tuple[tuple[float, int, float], ...]
    period_s: float = 1.0
    name: str = "scripted"

    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        n, cpus = self.schedule[0][1], self.schedule[0][2]
        for t, k, c in self.schedule:
            if ctx.now >= t:
                n, cpus = k, c
        return ScalingDecision({"medium": n}, {"medium": cpus}, "script"), {}


@pytest.mark.parametrize(
    ("rate", "schedule"),
    [
        (150.0, ((0, 4, 1.0), (300, 3, 1.0))),  # moderate, then rho ~ 0.82
        (90.0, ((0, 3, 1.0), (200, 1, 1.0), (260, 3, 1.0))),  # an overload and its backlog
        (90.0, ((0, 1, 2.0), (300, 2, 1.0))),  # vertical scaling
    ],
)
def test_fast_model_matches_request_level_simulation(
    rate: float, schedule: tuple[tuple[float, int, float], ...]
) -> None:
    seconds = 600
    rates = np.full(seconds, rate)
    res = simulate(
        Scripted(schedule),
        rates,
        [medium()],
        SimConfig(slo_ms=100.0, startup_s=0, seed=3),
        initial={"medium": schedule[0][1]},
        series=False,
    )
    arrivals = poisson_arrivals(rates, 1.0, seed=3)
    changes = [PoolChange(float(t), {"medium": n}, {"medium": c}) for t, n, c in schedule]
    truth = simulate_requests(arrivals, changes, {"medium": PROFILE}, {"medium": 1.0}, seed=4)
    assert abs(res.slo_attainment - truth.attainment(100.0)) < 0.02


def test_capacity_matches_request_level_percentile() -> None:
    cap = capacity_rps(PROFILE, 60.0, 99.0)
    arrivals = poisson_arrivals(np.full(2000, cap), 1.0, seed=1)
    out = simulate_requests(
        arrivals, [PoolChange(0.0, {"m": 1}, {"m": 1.0})], {"m": PROFILE}, {"m": 1.0}, seed=2
    )
    assert 0.98 <= out.attainment(60.0) <= 0.997


def test_edgewise_never_reverses_under_a_constant_rate() -> None:
    for rate in (20.0, 70.0, 108.0):
        res = simulate(
            EdgewisePolicy(forecaster=None),
            np.full(3 * 3600, rate),
            [medium()],
            SimConfig(slo_ms=100.0, startup_s=60, warmup_s=600, seed=int(rate)),
            series=False,
        )
        assert res.reversals_5min == 0, rate
        assert res.slo_attainment > 0.995


def test_cold_start_counts_against_attainment_and_cost_accrues_from_request() -> None:
    rates = np.concatenate([np.zeros(300), np.full(300, 20.0)])
    res = simulate(
        EdgewisePolicy(forecaster=None),
        rates,
        [medium()],
        SimConfig(slo_ms=100.0, startup_s=30, seed=0),
        initial={"medium": 0},
        series=True,
    )
    # Traffic waits up to a control period plus the 30 s start-up, then the backlog
    # drains: about 900 of 6,000 requests miss the SLO.
    assert 0.75 < res.slo_attainment < 0.95
    assert res.scale_actions >= 1
    assert res.minutes is not None and res.minutes.replicas[0] == 0.0


def test_simulator_is_seeded_and_counts_rejections_under_overload() -> None:
    rates = np.full(900, 400.0)
    cfg = SimConfig(slo_ms=100.0, startup_s=60, seed=5)
    pol = HPAPolicy(target_utilisation=0.6)
    a = simulate(pol, rates, [medium()], cfg, series=False)
    b = simulate(pol, rates, [medium()], cfg, series=False)
    assert a.slo_attainment == b.slo_attainment and a.cost == b.cost
    assert a.rejected > 0 and a.slo_attainment < 0.9


def test_cost_meter_integrates_replica_seconds_and_vertical_cpus() -> None:
    price = {"m": FlavorPrice("m", 1.0, 3.6)}  # 0.001 per replica-second
    meter = CostMeter(price)
    meter.update(0.0, "m", 2, 1.0)
    meter.update(100.0, "m", 2, 2.0)  # raised in place: billed pro rata
    meter.update(150.0, "m", 0, 1.0)
    assert meter.total(500.0) == pytest.approx(0.2 + 0.2)
    assert meter.replica_seconds["m"] == pytest.approx(300.0)
    assert replica_cost(np.array([1, 2]), np.array([1.0, 0.5]), price["m"], 10.0) == pytest.approx(
        0.02
    )
    late = CostMeter(price, start=50.0)
    late.update(0.0, "m", 1, 1.0)
    assert late.total(100.0) == pytest.approx(0.05)


# ------------------------------------------------------------------ bench and CLI


def _trace_csv(tmp_path: Path) -> Path:
    hours = pd.date_range("2024-01-01", periods=24 * 17, freq="h")
    daily = 10 + 90 * np.clip(np.sin((hours.hour.to_numpy() - 6) / 24 * 2 * np.pi), 0, None)
    path = tmp_path / "trace.csv"
    pd.DataFrame({"when": hours.astype(str), "requests": daily}).to_csv(path, index=False)
    return path


def _bench_on_csv(tmp_path: Path, policies: list[str], **kwargs: Any) -> dict[str, Any]:
    """``bench serving``'s run over 6 hours of the small CSV trace."""
    from edgewise.bench.serving import run

    return run(
        trace=_trace_csv(tmp_path),
        time_col="when",
        value_col="requests",
        days=0.25,
        slo_ms=100.0,
        policies=policies,
        peak_rps=60.0,
        seed=1,
        max_replicas=40,
        **kwargs,
    )


def test_bench_run_on_a_csv_trace(tmp_path: Path) -> None:
    out = _bench_on_csv(tmp_path, ["edgewise", "hpa", "oracle"])
    assert set(out["policies"]) == {"edgewise", "hpa", "oracle"}
    from edgewise.api.simulate import HPA_TARGETS

    assert len(out["policies"]["hpa"]["sweep"]) == len(HPA_TARGETS)
    assert out["max_replicas"] == 40
    assert all(e["sim_wall_s"] >= 0 for e in out["policies"]["hpa"]["sweep"])
    for key in ("cost_ratio_vs_hpa", "cost_ratio_vs_oracle", "slo_attainment"):
        assert out[key] > 0
    assert isinstance(out["hpa_reached_our_attainment"], bool)
    assert out["service_profile"].startswith("default lognormal")
    json.dumps(out, allow_nan=False)


def test_oracle_sweep_compares_each_design_percentile_with_hpa(tmp_path: Path) -> None:
    from edgewise.api.simulate import ORACLE_PERCENTILES

    out = _bench_on_csv(tmp_path, ["hpa", "oracle"], oracle_sweep=True)
    oracle = out["policies"]["oracle"]
    assert oracle["setting"] == "oracle"
    sweep = oracle["sweep"]
    assert [e["setting"] for e in sweep[1:]] == [f"oracle@p{p:g}" for p in ORACLE_PERCENTILES]
    # Planning for a higher percentile buys attainment with cost (98 < SLO's 99 < 99.5 ...).
    by_pct = [sweep[1], sweep[0], *sweep[2:]]
    costs = [e["cost"] for e in by_pct]
    attained = [e["slo_attainment"] for e in by_pct]
    assert costs == sorted(costs) and costs[-1] > costs[0]
    assert attained[-1] >= attained[0]
    hpa = {s["setting"]: s for s in out["policies"]["hpa"]["sweep"]}
    for e in sweep:
        ref = hpa[e["hpa_reference"]]
        assert e["cost_ratio_vs_hpa"] == pytest.approx(e["cost"] / ref["cost"])
        if e["hpa_reached"]:  # the cheapest HPA setting at least as good
            assert ref["slo_attainment"] >= e["slo_attainment"]
            assert all(
                s["cost"] >= ref["cost"]
                for s in hpa.values()
                if s["slo_attainment"] >= e["slo_attainment"]
            )
    assert out["oracle_cost_ratio_vs_hpa"] == oracle["cost_ratio_vs_hpa"]
    best = min((e for e in sweep if e["hpa_reached"]), key=lambda e: e["cost_ratio_vs_hpa"])
    assert out["oracle_best_cost_ratio_vs_hpa"] == best["cost_ratio_vs_hpa"]
    assert out["oracle_best_setting"] == best["setting"]
    assert "cost_ratio_vs_hpa" not in out  # no edgewise run
    json.dumps(out, allow_nan=False)


def test_vs_hpa_falls_back_to_the_best_attainment_when_none_reaches() -> None:
    from edgewise.sim.compare import vs_hpa

    @dataclass
    class R:
        slo_attainment: float
        cost: float

    runs: list[Any] = [("a", R(0.99, 10.0)), ("b", R(0.995, 12.0)), ("c", R(0.999, 20.0))]
    assert vs_hpa(0.994, 6.0, runs) == {
        "hpa_reference": "b",
        "hpa_reached": True,
        "cost_ratio_vs_hpa": 0.5,
    }
    assert vs_hpa(0.9999, 10.0, runs) == {
        "hpa_reference": "c",
        "hpa_reached": False,
        "cost_ratio_vs_hpa": 0.5,
    }
    with pytest.raises(ValueError, match="design_percentile"):
        make_policy("oracle", design_percentile=100.0)


def test_simulate_cli_with_plot_and_errors(tmp_path: Path) -> None:
    from edgewise.cli.main import make_app

    app = make_app(["simulate"])
    runner = CliRunner()
    png = tmp_path / "out.png"
    args = ["simulate", "serving", "--trace", str(_trace_csv(tmp_path)), "--days", "0.2"]
    res = runner.invoke(
        app, [*args, "--policy", "hpa", "--max-replicas", "30", "--plot", str(png), "--json"]
    )
    assert res.exit_code == 0, res.output
    data: dict[str, Any] = json.loads(res.stdout)
    assert data["policy"] == "hpa" and 0 < data["slo_attainment"] <= 1
    assert png.stat().st_size > 1000
    res = runner.invoke(app, [*args, "--policy", "nope"])
    assert res.exit_code == 2 and "unknown policy 'nope'" in res.output
    res = runner.invoke(app, ["simulate", "serving", "--trace", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "no trace" in res.output


def test_bench_cli_registers_serving(tmp_path: Path) -> None:
    import typer

    from edgewise.bench.serving import register_bench

    bench = typer.Typer()
    register_bench(bench)

    @bench.callback()
    def _root() -> None:
        """bench"""

    args = [
        "serving",
        "--trace",
        str(_trace_csv(tmp_path)),
        "--days",
        "0.1",
        "--max-replicas",
        "20",
    ]
    res = CliRunner().invoke(bench, [*args, "--policies", "edgewise,oracle", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["cost_ratio_vs_oracle"] > 0 and "cost_ratio_vs_hpa" not in out


def test_pooled_multi_flavor_edgewise_holds_a_constant_rate_without_reversals() -> None:
    """With the bench's three flavors and pool sizing, a constant rate gives no reversal."""
    from edgewise.api.simulate import build_flavors

    flavors = build_flavors(PROFILE, 100.0, 99.0, max_replicas=50)
    assert all(f.option.service_ms_quantiles for f in flavors)
    for rate in (15.0, 180.0):
        res = simulate(
            EdgewisePolicy(forecaster=None),
            np.full(2 * 3600, rate),
            flavors,
            SimConfig(slo_ms=100.0, startup_s=60, warmup_s=600, seed=int(rate)),
            initial={"small": 1},
            series=False,
        )
        assert res.reversals_5min == 0, rate
        assert res.slo_attainment > 0.995, rate


def test_simulator_hands_policies_read_only_windows_on_a_two_second_tick() -> None:
    """The fast path (no copy of the windows) still gives the policy read-only arrays."""

    seen: list[bool] = []

    @dataclass(frozen=True)
    class Probe:
        period_s: float = 2.0
        name: str = "probe"

        def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
            seen.append(not ctx.metrics.arrival_rps.flags.writeable)
            return ScalingDecision({"medium": 1}, {"medium": 1.0}), {}

    res = simulate(Probe(), np.full(120, 5.0), [medium()], SimConfig(startup_s=0), series=False)
    assert res.decisions == 60 and all(seen)
