"""Artifacts are stored as versioned data documents; objects without a codec are refused."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest

from edgewise.kb import KnowledgeBase, load_model, save_model
from edgewise.kb.codecs import (
    TRUSTED_TYPES,
    ArtifactError,
    decode,
    document,
    dump_estimators,
    read_document,
)


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    return KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")


def test_plain_data_is_a_json_document(kb: KnowledgeBase) -> None:
    row = save_model(kb, "forecaster", "f", {"w": [1.0, 2.5], "label": None})
    with kb.snapshot() as s:
        blob = s.get(type(row), row.id).blob  # type: ignore[union-attr]
    doc = json.loads(blob)
    assert doc == {"format": "json", "format_version": 1, "state": {"w": [1.0, 2.5], "label": None}}
    assert row.meta["format"] == "json"


def test_an_object_without_a_codec_is_refused_and_nothing_written(kb: KnowledgeBase) -> None:
    class Opaque:
        pass

    for obj in (Opaque(), {"a": np.arange(3)}, {1: "int key"}):
        with pytest.raises(ArtifactError, match="no codec is registered") as info:
            save_model(kb, "surrogate", "x", obj)
        assert "\n" not in str(info.value)
    assert kb.counts()["fitted_models"] == 0


def test_every_surrogate_round_trips_as_data(kb: KnowledgeBase) -> None:
    from edgewise.interference.campaign import fit_interference_model
    from edgewise.interference.surrogates import QuantileGBSurrogate

    rng = np.random.default_rng(3)
    runs = []
    for i in range(14):
        cpu = 0.0 if i % 5 == 0 else float(rng.uniform(0, 1))
        lat = 10.0 * (1 + 1.5 * cpu) * float(rng.lognormal(0, 0.02))
        runs.append(
            {
                "index": i,
                "status": "ok",
                "flags": ["solo"] if cpu == 0.0 else [],
                "achieved": {"target_cpu": 0.2, "cpu": cpu},
                "latency": {"p50": lat, "p95": 1.2 * lat, "p99": 1.4 * lat},
            }
        )
    small_gbq = QuantileGBSurrogate(n_estimators=10)
    for names in (("gp",), ("gbq",), ("linear",)):
        model = fit_interference_model("w@1rps", runs, names=names, resources=("cpu",))
        if names == ("gbq",):  # keep the test fast: refit with fewer trees
            X = np.array([[0.5, 0.2, np.log(10.0)]])
            model.models = {
                p: small_gbq.fit(np.vstack([X, X + 0.1] * 3), [1.0, 2.0] * 3) for p in model.models
            }
        save_model(kb, "surrogate", f"w-{names[0]}", model)
        got, row = load_model(kb, "surrogate", f"w-{names[0]}")
        assert row.meta["format"] == "edgewise.interference-model"
        assert type(got) is type(model) and got.chosen == model.chosen
        for vector in ({"cpu": 0.1}, {"cpu": 0.8}):
            assert got.predict(vector) == model.predict(vector)


def test_untrusted_estimator_types_are_refused() -> None:
    from sklearn.gaussian_process.kernels import DotProduct

    assert not any(t.startswith("edgewise") for t in TRUSTED_TYPES)
    payload = base64.b64encode(dump_estimators({"k": DotProduct()})).decode()
    blob = json.dumps(
        {
            "format": "edgewise.interference-model",
            "format_version": 1,
            "state": {},
            "estimators": payload,
        }
    ).encode()
    with pytest.raises(ArtifactError, match=r"untrusted types.*DotProduct"):
        decode(blob)


def test_unknown_format_newer_version_and_old_pickle_are_one_line_errors() -> None:
    import edgewise.interference.calibration  # noqa: F401  (registers the format)

    with pytest.raises(ArtifactError, match="no codec for stored format 'nope'"):
        decode(document("nope", 1, {}))
    with pytest.raises(ArtifactError, match="version 9, this edgewise reads up to 1"):
        decode(document("edgewise.calibration", 9, {}))
    with pytest.raises(ArtifactError, match="still a pickle"):
        read_document(b"\x80\x05 old")
