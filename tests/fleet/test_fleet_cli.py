"""``plan --fleet`` and ``simulate serving --fleet`` through the real CLI app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from make_fleet_kb import build
from typer.testing import CliRunner

from edgewise.cli.main import make_app

EXAMPLE = Path(__file__).parents[2] / "examples" / "fleet.yaml"


@pytest.fixture(scope="module")
def fleet_kb(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('fleet-cli-kb') / 'kb.sqlite'}"
    build(url)
    return url


def test_plan_fleet_places_every_service_with_its_predicted_slowdown(
    fleet_kb: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEWISE_DB_URL", fleet_kb)
    res = CliRunner().invoke(make_app(["plan"]), ["plan", "--fleet", str(EXAMPLE), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out["policies"]) == {"ours", "ray-spread", "first-fit"}
    ours = out["policies"]["ours"]
    placed = {r["service"] for rs in ours["nodes"].values() for r in rs}
    assert len(placed) == 6 and not ours["unplaced"]
    # a replica sharing a node carries the slowdown predicted next to its neighbours
    shared = [r for rs in ours["nodes"].values() if len(rs) > 1 for r in rs]
    assert all(r["slowdown"] >= 1.0 for r in shared)
    # the human form names every policy
    text = CliRunner().invoke(make_app(["plan"]), ["plan", "--fleet", str(EXAMPLE)])
    assert text.exit_code == 0 and "ray-spread" in text.output and "first-fit" in text.output


def test_plan_needs_a_service_or_a_fleet() -> None:
    res = CliRunner().invoke(make_app(["plan"]), ["plan", "--rate", "10"])
    assert res.exit_code == 2 and "--fleet" in res.output


def test_simulate_serving_fleet_compares_ours_with_the_blind_placements(fleet_kb: str) -> None:
    args = ["simulate", "serving", "--fleet", str(EXAMPLE), "--days", "0.25", "--kb", fleet_kb]
    res = CliRunner().invoke(make_app(["simulate"]), [*args, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["days"] == 0.25 and set(out["policies"]) == {"ours", "ray-spread", "first-fit"}
    assert "cost_ratio_vs_best_blind" in out
