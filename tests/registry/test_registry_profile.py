"""The interference profiler on a registered model: resolved to its version, served by a
real child process that loads it from the knowledge base, measured under load."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import CARD, save_torchscript, tiny_cnn

from edgewise.errors import UnknownNameError
from edgewise.interference.apps import resolve_app, stored_app
from edgewise.interference.target import ZooTarget, make_target
from edgewise.kb import KnowledgeBase
from edgewise.registry import register_model


def test_a_registered_reference_resolves_to_its_version(
    kb: KnowledgeBase, models_dir: Path
) -> None:
    register_model(kb, "tiny", save_torchscript(tiny_cnn(), models_dir), card=CARD)
    register_model(kb, "tiny", save_torchscript(tiny_cnn(seed=1), models_dir), card=CARD)
    assert resolve_app("tiny", kb) == "tiny:v2"
    assert resolve_app("tiny:1", kb) == "tiny:v1"
    assert resolve_app("tiny:v1@5rps", kb) == "tiny:v1@5rps"
    assert resolve_app("tiny@5rpsx2", kb) == "tiny:v2@5rpsx2"
    with pytest.raises(UnknownNameError, match=r"^unknown app 'tiny:v9'") as err:
        resolve_app("tiny:v9", kb)
    assert "\n" not in str(err.value)
    with pytest.raises(UnknownNameError, match=r"^unknown app 'other:v1': expected a zoo"):
        resolve_app("other:v1", kb)


def test_a_registered_model_is_served_and_measured(kb: KnowledgeBase, models_dir: Path) -> None:
    register_model(kb, "tiny", save_torchscript(tiny_cnn(), models_dir), card=CARD)
    target = make_target("tiny@40rps", threads=1, kb=kb)
    assert isinstance(target, ZooTarget) and target.name == "tiny:v1@40rps"
    with target:
        result = target.measure(1.5, seed=0)
    assert result.latencies_ms.size >= 30
    assert 0 < result.summary()["p50"] < 200


def test_a_registered_model_sized_by_load_is_timed_first(
    kb: KnowledgeBase, models_dir: Path
) -> None:
    register_model(kb, "tiny", save_torchscript(tiny_cnn(), models_dir), card=CARD)
    target = make_target("tiny:1", threads=1, load=0.2, kb=kb)
    assert isinstance(target, ZooTarget)
    assert target.name.startswith("tiny:v1@") and target.rate_rps > 0


def test_a_lookup_finds_what_a_bare_registered_name_was_stored_as(
    kb: KnowledgeBase, models_dir: Path
) -> None:
    register_model(kb, "tiny", save_torchscript(tiny_cnn(), models_dir), card=CARD)
    register_model(kb, "tiny", save_torchscript(tiny_cnn(seed=1), models_dir), card=CARD)
    assert stored_app("tiny", kb) == "tiny:v2"
    assert stored_app("tiny@5rps", kb) == "tiny:v2@5rps"
    assert stored_app("tiny:1", kb) == "tiny:v1"
    for given in ("nosuch", "digits_cnn", "stress:cpu=0.5", "cmd:sleep 1", "tiny:v9"):
        assert stored_app(given, kb) == given
