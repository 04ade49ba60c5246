"""The profile pillar's prediction applied to a replica's capacity (edgewise.api.colocation)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgewise.api.colocation import colocated_capacity, predicted_slowdown
from edgewise.api.profile import predict
from edgewise.serving.live import FlavorCapacity
from edgewise.serving.policies import FlavorOption

FIXTURE = Path(__file__).parent / "fixtures" / "kb-release-0.1.sqlite"


def test_slowdown_is_the_ratio_of_the_two_predictions(tmp_path: Path) -> None:
    db = tmp_path / "kb.sqlite"
    shutil.copyfile(FIXTURE, db)  # holds a fitted model of mobilenet_v2@20rps
    url = f"sqlite:///{db}"
    app, near = "mobilenet_v2@20rps", ["stress:cpu=0.5"]
    got = predicted_slowdown(app=app, neighbours=near, kb=url)
    alone = predict(app=app, kb=url).latency.p50
    beside = predict(app=app, neighbours=near, kb=url).latency.p50
    assert got.factor == pytest.approx(max(1.0, beside / alone))
    assert got.factor > 1.0 and got.source == "measured"
    assert predicted_slowdown(app=app, neighbours=[], kb=url).factor == 1.0


def test_derated_capacity_falls_with_the_slowdown() -> None:
    service = np.random.default_rng(0).lognormal(np.log(20.0), 0.2, 400)
    option = FlavorOption(
        name="small", cpus=1.0, capacity_rps=30.0, price_per_hour=1.0, max_replicas=4,
        max_cpus=1.0, service_ms_mean=float(service.mean()),
    )  # fmt: skip
    cap = FlavorCapacity(option, service, "probe")
    same = colocated_capacity(cap, 1.0, slo_ms=100.0, percentile=99.0)
    slower = colocated_capacity(cap, 1.5, slo_ms=100.0, percentile=99.0)
    assert slower.reachable and slower.colocated.capacity_rps < same.colocated.capacity_rps
    assert slower.replicas_for(120.0)[1] >= same.replicas_for(120.0)[1]
    hopeless = colocated_capacity(cap, 10.0, slo_ms=100.0, percentile=99.0)
    assert not hopeless.reachable and hopeless.colocated.capacity_rps == option.capacity_rps
