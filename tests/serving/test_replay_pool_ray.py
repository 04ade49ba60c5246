"""Live and simulated replays execute the same pool: two flavors at once, a variant switch.

First, without Ray: a short segment (2 rps, then 14) simulated with the clairvoyant
oracle on two model variants in two flavors; the accurate variant (resnet18) cannot
carry 14 rps in the flavors allowed, so the policy switches to mobilenet_v2 and runs it
as one large plus one small replica. Then ``edgewise replay --service`` on real Ray
Serve, with the capacities from stored profiles (no probe): the live run must execute
every decision as the simulator on the same pool did, both flavors at once and the
switch included, and no request may fail while the replicas switch model in place.
The real load is low for the real replicas (mobilenet_v2 alone serves about 15 rps in
half a CPU here): the test is about the decisions and the switch, not capacity, and
takes about a minute (40 s of load).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from edgewise.serving.policies import FlavorOption, ModelVariant
from edgewise.serving.replay import Segment, replay_simulated
from edgewise.sim.queueing import lognormal_profile
from edgewise.sim.serving import SimFlavor

pytestmark = pytest.mark.slow

SLO_MS = 400.0
STARTUP_S = 10.0
PERIOD_S = 5.0
# (flavor, CPUs, price, most replicas); the small flavor allows one replica only
FLAVORS = (("large", 1.0, 2.0, 2), ("small", 0.5, 1.0, 1))


def _variant(ref: str, accuracy: float, small_rps: float) -> tuple[ModelVariant, list[SimFlavor]]:
    sims = []
    for name, cpus, price, most in FLAVORS:
        cap = small_rps * cpus / 0.5
        prof = lognormal_profile(400.0 / cap, 0.2, cpus)
        option = FlavorOption(name, cpus, cap, price, most, cpus, prof.mean_ms)
        sims.append(SimFlavor(option, prof))
    return ModelVariant(ref, accuracy, tuple(f.option for f in sims)), sims


ACCURATE = _variant("resnet18", 0.70, 2.0)  # at most 4 + 4 + 2 = 10 rps: not 14
FAST = _variant("mobilenet_v2", 0.65, 5.0)  # 14 rps: 1 large + 1 small (15) is cheapest
VARIANTS = (ACCURATE, FAST)


def _segment() -> Segment:
    # one bin per 5 wall seconds: the oracle sees 14 rps coming at its second decision
    rates = np.array([2.0] * 4 + [14.0] * 2)
    return Segment(rates, np.zeros(0), 5.0, 1.0, pd.Timestamp("2024-01-01"))


def _simulated() -> Any:
    return replay_simulated(
        _segment(),
        "oracle",
        ACCURATE[1],
        slo_ms=SLO_MS,
        startup_s=STARTUP_S,
        initial={"small": 1},
        variants=VARIANTS,
        policy_params={"period_s": PERIOD_S, "planner": "heuristic"},
    )


def test_the_simulated_replay_mixes_flavors_and_switches_variant() -> None:
    sim = _simulated()
    both = [e for e in sim.executed if all(n > 0 for n in e["replicas"].values())]
    assert both and sim.variant_switches >= 1


SERVICE = """
name: classify
variants:
  - {model: resnet18, accuracy: 0.70}
  - {model: mobilenet_v2, accuracy: 0.65}
min_accuracy: 0.6
slo: {latency_ms: 2000, percentile: 99}
"""
FLAVORS_YAML = """
flavors:
  - {name: small, cpus: 0.5, price_per_hour: 1.0, max_replicas: 2}
  - {name: large, cpus: 1.0, price_per_hour: 2.0, max_replicas: 1}
"""
# Stored capacity profiles (mean ms per request; no probe is needed): resnet18 reaches
# 1.4 + 2 x 0.2 rps, not the peak of 6.5; mobilenet_v2's cheapest pool for it is one
# large (5.6 rps) plus one small (2.2).
MEAN_MS = {
    ("resnet18", "small", 0.5): 800.0,
    ("resnet18", "large", 1.0): 400.0,
    ("mobilenet_v2", "small", 0.5): 300.0,
    ("mobilenet_v2", "large", 1.0): 150.0,
}


def _store_profiles() -> None:
    from edgewise.kb import KnowledgeBase
    from edgewise.serving.capacity import capacity_rps
    from edgewise.serving.profiles import FlavorProfile, save_profile

    kb = KnowledgeBase.open()
    for (model, flavor, cpus), mean_ms in MEAN_MS.items():
        service = np.random.default_rng(0).gamma(16.0, mean_ms / 16.0, 300)
        prof = FlavorProfile(
            model=model,
            flavor=flavor,
            cpus=cpus,
            batch_size=1,
            threads=1,
            isolated=True,
            service_ms=service,
            slo_ms=2000.0,
            percentile=99.0,
            capacity_rps=capacity_rps(service, 2000.0, 99.0),
        )
        save_profile(kb, prof)


def test_replay_of_a_service_runs_its_pool_live_as_the_simulator_does(tmp_path: Path) -> None:
    """``edgewise replay --service``: 30 s at 0.65 rps then 10 s at 6.5, oracle, 15 s period.

    Its first decision keeps resnet18 (two small replicas); at 15 s it sees the peak
    coming, switches to mobilenet_v2 and runs one large plus one small replica. The live
    run must execute every decision as simulated, without a failed request.
    """
    from sqlalchemy import select
    from typer.testing import CliRunner

    from edgewise.cli.main import make_app
    from edgewise.kb import KnowledgeBase
    from edgewise.kb import models as m

    _store_profiles()
    (tmp_path / "svc.yaml").write_text(SERVICE)
    (tmp_path / "flavors.yaml").write_text(FLAVORS_YAML)
    hours = pd.date_range("2024-01-01", periods=4, freq="h")
    trace = pd.DataFrame({"time": hours, "value": [1.0, 1.0, 1.0, 10.0]})
    trace.to_csv(tmp_path / "trace.csv", index=False)
    args = ["replay", "--service", str(tmp_path / "svc.yaml"), "--flavors"]
    args += [str(tmp_path / "flavors.yaml"), "--trace", str(tmp_path / "trace.csv")]
    args += ["--hours", "4", "--speedup", "360", "--peak-rps", "6.5", "--policy", "oracle"]
    args += ["--port", "0", "--plot", str(tmp_path / "r.png"), "--json"]
    res = CliRunner().invoke(make_app(["serve"]), args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    run, pool = out["oracle"], out["pool"]
    assert {c["source"] for c in pool["capacities"]} == {"knowledge base"}
    assert pool["variants"] == ["resnet18", "mobilenet_v2"] and pool["flavors"] == [
        "small",
        "large",
    ]
    agree = run["agreement"]
    assert agree["decisions"] >= 3 and agree["matched"] == agree["decisions"]
    assert agree["live_flavors"] == agree["sim_flavors"] == {"small": 2, "large": 1}
    assert agree["live_variant_switches"] == agree["sim_variant_switches"] == 1
    # no request failed or was refused while the replicas switched model in place
    assert run["requests"] > 60 and run["failed"] == 0 and run["rejected_503"] == 0
    with KnowledgeBase.open().snapshot() as s:
        row = s.scalars(select(m.Plan).where(m.Plan.kind == "replay")).one()
        assert row.inputs["service"] == "classify" and row.inputs["flavor"] == "small,large"
