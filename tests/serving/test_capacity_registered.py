"""``edgewise capacity NAME:vN``: a registered model is profiled in a real replica process.

The replica resolves the reference in the knowledge base the command uses (the default
one for the CLI; a URL given to the use case, which is not the replica's default), times
the model on an example batch of its card's input, and the stored profile is the one
``edgewise serve`` then finds for that version.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgewise.api.capacity import capacity
from edgewise.cli.main import make_app
from edgewise.config import load_flavors
from edgewise.kb import KnowledgeBase
from edgewise.registry import register_model
from edgewise.serving.live import flavor_option
from edgewise.serving.profiles import find_profile

sys.path.insert(0, str(Path(__file__).parents[1] / "registry"))
from tiny_models import CARD, save_torchscript, tiny_cnn

FLAVORS = """
flavors:
  - {name: small, cpus: 0.5, price_per_hour: 0.025, max_replicas: 2}
"""


def _register_twice(kb: KnowledgeBase, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir(exist_ok=True)
    path = save_torchscript(tiny_cnn(), models)
    register_model(kb, "tiny", path, card=CARD)
    register_model(kb, "tiny", path, card=CARD)


def _flavors(tmp_path: Path) -> Path:
    flavors = tmp_path / "flavors.yaml"
    flavors.write_text(FLAVORS)
    return flavors


@pytest.mark.slow
def test_capacity_cli_of_a_registered_version_is_measured_stored_and_found(
    tmp_path: Path,
) -> None:
    with KnowledgeBase.open() as kb:
        _register_twice(kb, tmp_path)
    flavors = _flavors(tmp_path)
    args = ["capacity", "tiny", "--flavors", str(flavors), "--slo-ms", "200"]
    args += ["--samples", "30", "--time-budget-s", "5", "--json"]
    result = CliRunner().invoke(make_app(["plan"]), args)
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    assert got["model"] == "tiny:v2"  # the latest, stored as its version
    (row,) = got["flavors"]
    assert row["capacity_rps"] > 0 and row["service_ms"]["n"] >= 30
    small = load_flavors(flavors).flavors[0]
    with KnowledgeBase.open() as kb:
        with kb.snapshot() as s:
            stored = find_profile(s, "tiny:v2", "small", 0.5)
            assert stored is not None and stored.id == row["id"]
            assert find_profile(s, "tiny:v1", "small", 0.5) is None  # kept per version
        found = flavor_option("tiny:v2", small, slo_ms=200, percentile=99, kb=kb, measure=False)
        # a spec may spell the version or leave it out: the same stored profile
        for spelled in ("tiny:2", "tiny"):
            again = flavor_option(spelled, small, slo_ms=200, percentile=99, kb=kb, measure=False)
            assert again.option.capacity_rps == found.option.capacity_rps
    assert found.source == "knowledge base" and found.option.capacity_rps > 0


@pytest.mark.slow
def test_the_replica_looks_the_version_up_in_the_use_cases_kb(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other-kb.sqlite'}"  # not the replica's default
    with KnowledgeBase.open(url) as kb:
        _register_twice(kb, tmp_path)
    report = capacity(
        model="tiny:1", flavors=_flavors(tmp_path), slo_ms=200, samples=30, time_budget_s=5,
        kb=url,
    )  # fmt: skip
    assert report.model == "tiny:v1" and report.profiles[0].profile.capacity_rps > 0


def test_capacity_of_an_unknown_version_is_one_line(tmp_path: Path) -> None:
    with KnowledgeBase.open() as kb:
        _register_twice(kb, tmp_path)
    args = ["capacity", "tiny:v3", "--flavors", str(_flavors(tmp_path)), "--slo-ms", "200"]
    result = CliRunner().invoke(make_app(["plan"]), args)
    assert result.exit_code == 2
    assert "model tiny has no version v3 (versions: v1, v2)" in result.output
    assert len(result.output.strip().splitlines()) == 1
