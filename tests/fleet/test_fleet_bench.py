"""Fleet use cases and ``bench fleet`` on a knowledge base of synthetic interference models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from make_fleet_kb import build
from typer.testing import CliRunner

from edgewise.api.fleet import kb_slowdown, plan_fleet_spec
from edgewise.bench.fleet import register_bench
from edgewise.errors import EdgewiseError, InfeasibleError, UnknownNameError

EXAMPLE = Path(__file__).parents[2] / "examples" / "fleet.yaml"


@pytest.fixture(scope="module")
def fleet_kb(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('fleet-kb') / 'kb.sqlite'}"
    build(url)
    return url


def test_bench_fleet_meets_every_slo_at_no_more_than_the_best_blind_cost(fleet_kb: str) -> None:
    app, bench = typer.Typer(), typer.Typer()
    register_bench(bench)
    app.add_typer(bench, name="bench")
    args = ["bench", "fleet", "--kb", fleet_kb, "--days", "0.5", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out["policies"]) == {"ours", "ray-spread", "first-fit"}
    assert out["nodes"] == 24 and len(out["services"]) == 6
    assert out["interference_synthetic"] == sorted(out["interference_models"])
    assert "synthetic" in out["interference_source"]
    ours, spread, first = (out["policies"][p] for p in ("ours", "ray-spread", "first-fit"))
    for entry in (ours, spread, first):
        assert entry["cost_per_served_request"] == pytest.approx(entry["cost"] / entry["served"])
        assert set(entry["slo_attainment"]) == {s["name"] for s in out["services"]}
    assert out["services_below_slo"] == ours["services_below_slo"] == 0
    # packing interfering services blindly misses SLOs; spreading them costs more nodes
    assert first["services_below_slo"] >= 3 and first["cost"] < ours["cost"] < spread["cost"]
    assert out["best_blind"] == "ray-spread" and out["best_blind_meets_every_slo"]
    assert out["cost_ratio_vs_best_blind"] == pytest.approx(ours["cost"] / spread["cost"])
    assert out["cost_ratio_vs_best_blind"] <= 1.0


def test_one_window_is_planned_by_every_policy(fleet_kb: str) -> None:
    got = plan_fleet_spec(fleet=EXAMPLE, rates_rps={"photos": 60.0}, kb=fleet_kb).as_dict()
    ours = got["policies"]["ours"]
    assert ours["rates_rps"]["photos"] == 60.0 and ours["rates_rps"]["digits"] == 400.0
    for name, rate in ours["rates_rps"].items():
        assert ours["capacity_rps"][name] >= rate
    worst = got["policies"]["first-fit"]
    assert any(worst["capacity_rps"][n] < r for n, r in worst["rates_rps"].items())
    with pytest.raises(UnknownNameError, match="no service 'nope' in the fleet"):
        plan_fleet_spec(fleet=EXAMPLE, rates_rps={"nope": 1.0}, kb=fleet_kb)
    with pytest.raises(UnknownNameError, match="unknown fleet policy 'binpack'"):
        plan_fleet_spec(fleet=EXAMPLE, policies=["binpack"], kb=fleet_kb)


def test_a_model_never_profiled_falls_back_to_solo_and_says_so(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kb.sqlite'}"
    build(url, models=("resnet50",))
    slowdown, info = kb_slowdown(["resnet50", "digits_cnn"], url)
    assert set(info) == {"resnet50"} and info["resnet50"].synthetic
    got = slowdown("resnet50", ("digits_cnn",))
    assert got.factor == 1.0
    assert (
        got.source == "solo (no model for resnet50 next to digits_cnn: digits_cnn never profiled)"
    )
    both = slowdown("resnet50", ("resnet50",))
    assert both.factor > 1.0 and both.source.startswith("knowledge base")
    assert slowdown("resnet50", ()).source == "alone"


def test_bench_fleet_refuses_a_knowledge_base_without_interference_models(tmp_path: Path) -> None:
    app, bench = typer.Typer(), typer.Typer()
    register_bench(bench)
    app.add_typer(bench, name="bench")
    url = f"sqlite:///{tmp_path / 'empty.sqlite'}"
    res = CliRunner().invoke(app, ["bench", "fleet", "--kb", url, "--days", "0.1", "--json"])
    assert isinstance(res.exception, EdgewiseError) and res.exception.exit_code == 2
    msg = str(res.exception)
    assert "interference models of 0 of the fleet's 6 models" in msg and "\n" not in msg


def test_a_pool_too_small_for_the_fleet_names_the_service_and_shortfall(
    fleet_kb: str, tmp_path: Path
) -> None:
    text = EXAMPLE.read_text().replace("count: 24", "count: 2")
    small = tmp_path / "fleet.yaml"
    small.write_text(text)
    with pytest.raises(InfeasibleError) as info:
        plan_fleet_spec(fleet=small, policies=["ours"], kb=fleet_kb)
    msg = str(info.value)
    assert "cannot meet its SLO on this pool" in msg and "short" in msg and "\n" not in msg
    # the blind baselines leave what does not fit unplaced instead
    blind = plan_fleet_spec(fleet=small, policies=["first-fit"], kb=fleet_kb).as_dict()
    assert blind["policies"]["first-fit"]["unplaced"]


def test_bench_fleet_prints_a_table_without_json(fleet_kb: str) -> None:
    app, bench = typer.Typer(), typer.Typer()
    register_bench(bench)
    app.add_typer(bench, name="bench")
    args = ["bench", "fleet", "--kb", fleet_kb, "--days", "0.1", "--policies", "ours,first-fit"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "6 services on 24 nodes" in res.stdout and "first-fit" in res.stdout
    assert "best_blind: first-fit" in res.stdout
    assert "interference: knowledge base (synthetic fixture models" in res.stdout


def test_each_service_follows_the_trace_shifted_by_its_hours() -> None:
    from edgewise.api.fleet import _service_rates
    from edgewise.planning.fleet_spec import load_fleet

    spec = load_fleet(EXAMPLE)
    rates = _service_rates(spec, "bikeshare", 0.1)
    assert {r.size for r in rates.values()} == {8640}
    photos, products = rates["photos"], rates["products"]  # shifted by 0 and 2 hours
    assert photos.max() == pytest.approx(120.0) and products.max() == pytest.approx(80.0)
    later = products[7200:] / photos[:-7200]
    assert later == pytest.approx(np.full(later.size, later[0]), rel=1e-9)
