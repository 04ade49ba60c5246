"""The registry on a real PostgreSQL server: versions, lineage and cards round-trip.

Uses the knowledge-base tests' throw-away server (``tests/kb/pg_server.py``); skipped
without the PostgreSQL binaries.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import CARD, SAVERS, inputs, reference, tiny_cnn

from edgewise.kb import KnowledgeBase
from edgewise.registry import list_models, load_model, register_model, resolve

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

sys.path.insert(0, str(Path(__file__).parents[1] / "kb"))
pg_server = importlib.import_module("pg_server")
PG_BIN = pg_server.find_pg_bin()


@pytest.mark.skipif(PG_BIN is None, reason="PostgreSQL server binaries (initdb, pg_ctl) not found")
def test_the_registry_on_postgresql(models_dir: Path) -> None:
    import psycopg

    with pg_server.postgres_server(PG_BIN) as base_url:
        admin = base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE edgewise_registry")
        url = f"{base_url}/edgewise_registry"
        module = tiny_cnn(seed=2)
        with KnowledgeBase.open(url) as kb:
            assert kb.dialect == "postgresql"
            register_model(kb, "tiny", SAVERS["onnx"](module, models_dir), card=CARD)
            register_model(
                kb,
                "tiny",
                SAVERS["torchscript"](module, models_dir),
                card=CARD,
                parent="tiny:v1",
                data_fingerprint="npz:1234",
                accuracy_before=0.5,
                accuracy_after=0.75,
            )
        with KnowledgeBase.open(url) as kb:
            assert [v.ref for v in list_models(kb)] == ["tiny:v1", "tiny:v2"]
            latest = resolve(kb, "tiny")
            assert latest.parent == "tiny:v1" and latest.card == CARD
            assert (latest.accuracy_before, latest.accuracy_after) == (0.5, 0.75)
            assert latest.created_at.tzinfo is not None
            batch = inputs()
            for ref in ("tiny:v1", "tiny:v2"):
                np.testing.assert_allclose(
                    load_model(ref, kb).forward(batch), reference(module, batch), atol=1e-4
                )
