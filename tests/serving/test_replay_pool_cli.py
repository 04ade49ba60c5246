"""`edgewise replay --service`: the agreement measure, and bad input refused before Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edgewise.api.replay_pool import pool_agreement
from edgewise.cli.main import make_app
from edgewise.kb import KnowledgeBase
from edgewise.serving.capacity import capacity_rps
from edgewise.serving.profiles import FlavorProfile, save_profile

FLAVORS = """
flavors:
  - {name: small, cpus: 0.5, price_per_hour: 1.0, max_replicas: 2}
  - {name: large, cpus: 1.0, price_per_hour: 2.0, max_replicas: 1}
"""
SERVICE = """
name: classify
variants:
  - {model: mobilenet_v2, accuracy: 0.72}
  - {model: resnet18, accuracy: 0.70}
min_accuracy: %s
slo: {latency_ms: 100, percentile: 99}
"""


def _step(replicas: dict[str, int], variant: str) -> dict[str, Any]:
    return {"t": 0.0, "replicas": replicas, "variant": variant}


def test_agreement_counts_matching_decisions_flavors_and_switches() -> None:
    live = [
        _step({"small": 1, "large": 0}, "a"),
        _step({"small": 1, "large": 1}, "b"),
        _step({"small": 2, "large": 1}, "b"),
    ]
    sim = [_step({"small": 1}, "a"), _step({"small": 1, "large": 1}, "b")]
    a = pool_agreement(live, sim, 1, 1)
    assert (a.decisions, a.matched, a.share) == (2, 2, 1.0)
    assert a.live_flavors == {"small": 2, "large": 1} and a.sim_flavors == {"small": 1, "large": 1}
    other = pool_agreement(live, [_step({"small": 1}, "b")], 1, 0)
    assert other.matched == 0 and other.as_dict()["sim_variant_switches"] == 0


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a replay tries to start Ray."""
    import edgewise.serving.runtime as runtime

    class Refused:
        def __init__(self, **_: Any) -> None:
            pytest.fail("Ray was started for a replay whose input was wrong")

    monkeypatch.setattr(runtime, "RaySession", Refused)


def _invoke(tmp_path: Path, min_accuracy: float, *extra: str) -> Any:
    (tmp_path / "svc.yaml").write_text(SERVICE % min_accuracy)
    (tmp_path / "flavors.yaml").write_text(FLAVORS)
    args = ["replay", "--service", str(tmp_path / "svc.yaml"), "--hours", "1", *extra]
    return CliRunner().invoke(
        make_app(["serve"]), [*args, "--flavors", str(tmp_path / "flavors.yaml")]
    )


@pytest.mark.usefixtures("no_ray")
def test_variants_all_below_min_accuracy_are_one_line_exit_2(tmp_path: Path) -> None:
    res = _invoke(tmp_path, 0.9)
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and "svc.yaml: min_accuracy 0.9" in line and "mobilenet_v2" in line


@pytest.mark.usefixtures("no_ray")
def test_the_spec_sets_the_model_and_slo(tmp_path: Path) -> None:
    res = _invoke(tmp_path, 0.7, "--model", "resnet18", "--slo-ms", "50")
    assert res.exit_code == 2 and "--model, --slo-ms: the service spec" in res.output


@pytest.mark.usefixtures("no_ray")
def test_stored_profiles_too_slow_in_every_flavor_are_one_line_before_ray(tmp_path: Path) -> None:
    kb = KnowledgeBase.open()
    for model in ("mobilenet_v2", "resnet18"):
        for flavor, cpus in (("small", 0.5), ("large", 1.0)):
            service = np.random.default_rng(0).gamma(16.0, 150.0 / 16.0, 200)  # ~150 ms
            prof = FlavorProfile(
                model=model,
                flavor=flavor,
                cpus=cpus,
                batch_size=1,
                threads=1,
                isolated=True,
                service_ms=service,
                slo_ms=100.0,
                percentile=99.0,
                capacity_rps=capacity_rps(service, 100.0, 99.0),
            )
            save_profile(kb, prof)
    res = _invoke(tmp_path, 0.7)
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line and line.count("no model variant fits any flavor") == 1
    assert "in flavor small" in line and "in flavor large" in line


def test_stored_profiles_are_taken_first_and_only_the_missing_pairs_probed(
    tmp_path: Path,
) -> None:
    from edgewise.api.replay_pool import _capacity_source, _stored_capacities
    from edgewise.api.serve_pool import build_pool
    from edgewise.config import load_flavors, load_service
    from edgewise.serving.live import FlavorCapacity, live_flavor_option
    from edgewise.serving.policies import make_policy

    kb = KnowledgeBase.open()
    for flavor, cpus, mean_ms in (("small", 0.5, 40.0), ("large", 1.0, 20.0)):
        service = np.random.default_rng(0).gamma(16.0, mean_ms / 16.0, 200)
        prof = FlavorProfile(
            model="mobilenet_v2",
            flavor=flavor,
            cpus=cpus,
            batch_size=1,
            threads=1,
            isolated=True,
            service_ms=service,
            slo_ms=100.0,
            percentile=99.0,
            capacity_rps=capacity_rps(service, 100.0, 99.0),
        )
        save_profile(kb, prof)
    (tmp_path / "svc.yaml").write_text(SERVICE % 0.6)
    (tmp_path / "flavors.yaml").write_text(FLAVORS)
    spec = load_service(tmp_path / "svc.yaml")
    flavors = load_flavors(tmp_path / "flavors.yaml").flavors
    probed: list[tuple[str, str]] = []

    def probe(model: str, flavor: Any) -> FlavorCapacity:
        probed.append((model, flavor.name))
        samples = np.full(100, 20.0 / flavor.cpus)
        return live_flavor_option(flavor, samples, slo_ms=100.0, percentile=99.0, max_replicas=1)

    found = _stored_capacities(spec, flavors, kb)
    assert sorted(found) == [("mobilenet_v2", "large"), ("mobilenet_v2", "small")]
    pool = build_pool(spec, flavors, _capacity_source(found, probe), make_policy("hpa"))
    assert sorted(probed) == [("resnet18", "large"), ("resnet18", "small")]
    sources = {key: cap.source for key, cap in pool.capacities.items()}
    assert sources[("mobilenet_v2", "small")] == "knowledge base"
    assert sources[("resnet18", "large")] == "probed through the live HTTP path"
