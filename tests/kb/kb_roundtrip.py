"""Schema checks shared by the SQLite tests and the PostgreSQL integration test."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from edgewise.kb import KnowledgeBase, load_model, save_model, table_names
from edgewise.kb import models as m

T0 = datetime(2025, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


def _row_kwargs(ids: dict[str, int]) -> dict[type[m.Base], dict[str, Any]]:
    """Constructor arguments for one row of every model, given parent ids."""
    return {
        m.Workload: dict(name="mobilenet_v2@20rps", kind="zoo", params={"rps": 20, "batch": 1}),
        m.Footprint: dict(
            workload_id=ids["workloads"],
            combination_key=None,
            resources={"cpu": 0.42, "membw": 0.1, "llc": 0.05, "disk": 0.0, "net": 0.0, "mem": 0.2},
            source="solo",
        ),
        m.Campaign: dict(
            name="c-1", target_workload_id=ids["workloads"], status="running", config={"n": 8}
        ),
        m.Run: dict(
            campaign_id=ids["campaigns"],
            index=0,
            design={"cpu": 0.5, "membw": 0.25},
            achieved={"cpu": 0.47, "membw": 0.26},
            latency={"p50": 15.7, "p95": 19.0, "p99": 22.4, "mean": 16.1, "n": 400},
            status="ok",
            flags=["cpu_below_target"],
            started_at=T0,
            finished_at=T0 + timedelta(seconds=30),
        ),
        m.Sample: dict(run_id=ids["runs"], t=1.5, metrics={"cpu_user": 0.8, "psi_cpu": 12.5}),
        m.FittedModel: dict(
            kind="surrogate",
            name="mobilenet_v2/p99",
            version=1,
            features=["cpu", "membw"],
            training_ids=[1, 2, 3],
            metrics={"mape": 0.076},
            meta={"estimator": "gp"},
            blob=b"\x80\x04\x95 not really a pickle \x00\xff",
        ),
        m.CapacityProfile: dict(
            model="resnet18",
            flavor="c2",
            batch_size=1,
            host="edge-1",
            cpus=2.0,
            service_ms={
                "p50": 19.6,
                "p95": 21.0,
                "p99": 23.5,
                "mean": 19.9,
                "samples": [19.1, 20.2],
            },
            slo_ms=100.0,
            percentile=99.0,
            capacity_rps=38.5,
            validation={"attained": 0.995},
        ),
        m.Forecast: dict(
            series="bikeshare",
            method="mstl",
            origin=T0,
            horizon=3,
            values={"mean": [1.0, 2.0, 3.0], "lower": {"80": [0.5, 1.5, 2.5]}, "upper": {}},
        ),
        m.Plan: dict(
            kind="serving",
            inputs={"rate_rps": 120.0},
            decision={"resnet18/c2": 3},
            cost=0.42,
        ),
        m.ScalingEvent: dict(
            run_key="replay-1", t=12.25, policy="predictive", action={"replicas": 3}
        ),
        m.PolicyState: dict(key="serve/resnet18", policy="predictive", state={"last": [1, 2]}),
        m.TrainingJob: dict(
            name="digits-retrain",
            model="digits_cnn",
            status="running",
            config={"global_batch": 96},
            metrics={"loss": 0.31},
            finished_at=None,
        ),
        m.Checkpoint: dict(
            job_id=ids["training_jobs"], step=40, path="/tmp/ckpt-40.pt", meta={"loss": 0.3}
        ),
        m.RegisteredModel: dict(
            name="digits",
            version=2,
            format="safetensors",
            sha256="ab" * 32,
            path="models/abab.safetensors",
            card={"task": "classification"},
            parent="digits:v1",
            data_fingerprint="cd" * 32,
            accuracy_before=0.41,
            accuracy_after=0.93,
        ),
        m.ServedVersion: dict(
            service="digits-svc",
            model="digits",
            version=2,
            ref="digits:v2",
            role="serving",
            since=T0,
            until=T0 + timedelta(minutes=5),
            started_because="rollout promoted",
            ended_because="stopped",
        ),
    }


def crud_every_model(kb: KnowledgeBase) -> dict[str, int]:
    """Create, read, update and delete one row of every model; return the kept ids."""
    ids: dict[str, int] = {}
    for model in m.MODELS:
        # Parents come first in MODELS, so the ids this row needs exist already.
        kwargs = _row_kwargs(defaultdict(int, ids))[model]
        with kb.transaction() as s:
            row = model(**kwargs)
            s.add(row)
            s.flush()
            ids[model.__tablename__] = row.id
        with kb.snapshot() as s:
            got = s.get(model, ids[model.__tablename__])
            assert got is not None
            assert got.created_at.tzinfo is not None
            assert got.created_at.utcoffset() == timedelta(0)
            for key, value in kwargs.items():
                stored = getattr(got, key)
                if model is m.Forecast and key == "origin":
                    assert datetime.fromisoformat(stored) == value
                else:
                    assert stored == value, (model.__name__, key, stored, value)
    assert set(ids) == set(table_names())
    assert all(n == 1 for n in kb.counts().values()), kb.counts()

    # Update: reassigning a JSON column and a scalar persists both.
    with kb.transaction() as s:
        state = s.scalars(select(m.PolicyState)).one()
        first_update = state.updated_at
        state.state = {**state.state, "replicas": 4}
        run = s.get(m.Run, ids["runs"])
        assert run is not None
        run.status = "flagged"
    with kb.snapshot() as s:
        state = s.scalars(select(m.PolicyState)).one()
        assert state.state == {"last": [1, 2], "replicas": 4}
        assert state.updated_at >= first_update
        assert s.get(m.Run, ids["runs"]).status == "flagged"  # type: ignore[union-attr]

    # Delete: children go with their parent (ON DELETE CASCADE in the database).
    with kb.transaction() as s:
        job = s.get(m.TrainingJob, ids["training_jobs"])
        s.delete(job)
    assert kb.counts()["checkpoints"] == 0
    assert kb.counts()["training_jobs"] == 0
    return ids


def check_unique_constraints(kb: KnowledgeBase) -> None:
    """Each declared unique constraint refuses a duplicate, and nothing is kept."""
    with kb.transaction() as s:
        w = m.Workload(name="uq-w", kind="zoo", params={})
        s.add(w)
        s.flush()
        c = m.Campaign(name="uq-c", target_workload_id=w.id)
        s.add(c)
        s.flush()
        s.add(m.Run(campaign_id=c.id, index=0))
        campaign_id, workload_id = c.id, w.id
    before = kb.counts()
    duplicates: list[Callable[[], m.Base]] = [
        lambda: m.Workload(name="uq-w", kind="zoo"),
        lambda: m.Campaign(name="uq-c", target_workload_id=workload_id),
        lambda: m.Run(campaign_id=campaign_id, index=0),
        lambda: m.FittedModel(kind="k", name="n", version=1, blob=b"x"),
        lambda: m.PolicyState(key="uq-k", policy="p"),
    ]
    # Seed the ones that are not already present.
    with kb.transaction() as s:
        s.add(m.FittedModel(kind="k", name="n", version=1, blob=b"x"))
        s.add(m.PolicyState(key="uq-k", policy="p"))
    seeded = kb.counts()
    assert seeded["fitted_models"] == before["fitted_models"] + 1
    for make in duplicates:
        with pytest.raises(IntegrityError), kb.transaction() as s:
            s.add(m.Plan(kind="serving", inputs={}, decision={}))  # would be kept if not atomic
            s.add(make())
        assert kb.counts() == seeded
    # A different version / index is fine.
    with kb.transaction() as s:
        s.add(m.FittedModel(kind="k", name="n", version=2, blob=b"y"))
        s.add(m.Run(campaign_id=campaign_id, index=1))


def check_foreign_keys(kb: KnowledgeBase) -> None:
    """A dangling foreign key is refused by the database."""
    before = kb.counts()
    with pytest.raises(IntegrityError), kb.transaction() as s:
        s.add(m.Sample(run_id=987654, t=0.0, metrics={}))
    assert kb.counts() == before


def check_rollback(kb: KnowledgeBase) -> None:
    """An exception after several adds leaves no row of that transaction."""
    before = kb.counts()

    class Crash(RuntimeError):
        pass

    with pytest.raises(Crash), kb.transaction() as s:
        w = m.Workload(name="rb-w", kind="command", params={"cmd": ["true"]})
        s.add(w)
        s.flush()
        c = m.Campaign(name="rb-c", target_workload_id=w.id)
        s.add(c)
        s.flush()
        for i in range(5):
            s.add(m.Run(campaign_id=c.id, index=i, design={"cpu": i / 5}))
        s.flush()  # the rows reached the database inside the transaction
        raise Crash("mid-write")
    assert kb.counts() == before


def check_models_roundtrip(kb: KnowledgeBase) -> None:
    """save_model/load_model version, round-trip and refuse unknown names."""
    from edgewise.errors import UnknownNameError

    obj1 = {"weights": [0.1, 0.2], "bias": 1.0}
    obj2 = {"weights": [0.3], "bias": -1.0}
    r1 = save_model(kb, "forecaster", "bikeshare/mstl", obj1, features=["y"], training_ids=[7, 8])
    r2 = save_model(kb, "forecaster", "bikeshare/mstl", obj2, metrics={"mae": 0.81})
    assert (r1.version, r2.version) == (1, 2)
    got, row = load_model(kb, "forecaster", "bikeshare/mstl")
    assert got == obj2 and row.version == 2 and row.metrics == {"mae": 0.81}
    got, row = load_model(kb, "forecaster", "bikeshare/mstl", version=1)
    assert got == obj1 and row.features == ["y"] and row.training_ids == [7, 8]
    with pytest.raises(UnknownNameError, match="no forecaster model named 'nope'"):
        load_model(kb, "forecaster", "nope")
    with pytest.raises(UnknownNameError, match="stored versions: 1, 2"):
        load_model(kb, "forecaster", "bikeshare/mstl", version=9)


def check_naive_datetime_refused(kb: KnowledgeBase) -> None:
    before = kb.counts()
    with pytest.raises(Exception, match="naive datetime"), kb.transaction() as s:
        s.add(m.TrainingJob(name="j", model="x", finished_at=datetime(2025, 1, 1)))
        s.flush()
    assert kb.counts() == before
    # An aware non-UTC value is stored as the same instant and returned in UTC.
    plus2 = datetime(2025, 1, 1, 16, 0, tzinfo=timezone(timedelta(hours=2)))
    with kb.transaction() as s:
        job = m.TrainingJob(name="tz", model="x", finished_at=plus2)
        s.add(job)
        s.flush()
        job_id = job.id
    with kb.snapshot() as s:
        stored = s.get(m.TrainingJob, job_id)
        assert stored is not None and stored.finished_at is not None
        assert stored.finished_at == plus2
        assert stored.finished_at.utcoffset() == timedelta(0)
        assert stored.finished_at.hour == 14


def run_all_checks(kb: KnowledgeBase) -> None:
    """The whole schema check, in an order that works on a fresh database."""
    crud_every_model(kb)
    check_unique_constraints(kb)
    check_foreign_keys(kb)
    check_rollback(kb)
    check_models_roundtrip(kb)
    check_naive_datetime_refused(kb)
