"""Write ``tests/fixtures/kb-release-0.1.sqlite``: a knowledge base as edgewise 0.1 wrote it.

It must run against commit e5894f6 (the last commit of the 0.1 release, which pickled
its artifacts and had no Alembic revision), not against the current tree::

    git worktree add /tmp/release e5894f6
    PYTHONPATH=/tmp/release/src .venv/bin/python tests/kb/make_release_kb.py \\
        tests/fixtures/kb-release-0.1.sqlite

It stores, with that release's own code: a workload with a campaign of synthetic runs
and two fitted interference models (a Gaussian process and a ridge surrogate, fitted by
``fit_interference_model`` and pickled by ``save_model``), a calibration and host caps,
a serving capacity profile and a cached retrain device profile. It prints, as JSON, the
predictions the pickled models give at a few resource vectors: ``test_kb_migration.py``
holds those numbers and checks that the migrated models give the same ones.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

#: Resource vectors the expected predictions are taken at.
PROBES: tuple[dict[str, float], ...] = (
    {"cpu": 0.0, "membw": 0.0},
    {"cpu": 0.5, "membw": 0.2},
    {"cpu": 0.9, "membw": 0.7},
)
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
#: Service times of the stored capacity profile (the planner derives capacity from them).
SERVICE_SAMPLES_MS: list[float] = [
    round(float(v), 3) for v in np.random.default_rng(7).lognormal(np.log(30.0), 0.15, 300)
]
#: The host the capacity profile was measured on; the CLI runs below pretend to be it.
RELEASE_HOST = "release-host"
#: ``edgewise`` command lines whose JSON answers the migrated file must reproduce.
SERVICE_YAML = (
    "name: vision\nvariants:\n  - {model: mobilenet_v2, accuracy: 0.72}\n"
    "slo: {latency_ms: 200, percentile: 99}\n"
)
FLAVORS_YAML = (
    "flavors:\n  - {name: small, cpus: 0.5, memory_mb: 1024, price_per_hour: 0.025, "
    "max_replicas: 8}\n"
)


def _runs(seed: int, solo_ms: float) -> list[dict[str, Any]]:
    """Synthetic campaign runs: solo baselines plus stressed runs, slowdown ~ cpu, membw."""
    rng = np.random.default_rng(seed)
    runs: list[dict[str, Any]] = []
    for i in range(18):
        solo = i % 6 == 0
        cpu, membw = (0.0, 0.0) if solo else (float(rng.uniform(0, 1)), float(rng.uniform(0, 1)))
        lat = solo_ms * (1 + 1.4 * cpu + 0.6 * membw + 0.8 * cpu * membw)
        lat *= float(rng.lognormal(0.0, 0.03))
        runs.append(
            {
                "index": i,
                "status": "ok",
                "flags": ["solo"] if solo else [],
                "design": {"cpu": round(cpu, 2), "membw": round(membw, 2)},
                "achieved": {"target_cpu": 0.3, "cpu": cpu, "membw": membw},
                "latency": {"p50": lat, "p95": 1.2 * lat, "p99": 1.45 * lat, "n": 200},
            }
        )
    return runs


def _campaign(kb: Any, workload: str, runs: list[dict[str, Any]]) -> list[int]:
    from edgewise.kb import models as m

    with kb.transaction() as s:
        w = m.Workload(name=workload, kind="zoo", params={"rps": 20})
        s.add(w)
        s.flush()
        c = m.Campaign(name=f"c-{workload}", target_workload_id=w.id, status="done", config={})
        s.add(c)
        s.flush()
        rows = [
            m.Run(
                campaign_id=c.id,
                index=r["index"],
                design=r["design"],
                achieved=r["achieved"],
                latency=r["latency"],
                status=r["status"],
                flags=r["flags"],
                started_at=T0,
                finished_at=T0,
            )
            for r in runs
        ]
        s.add_all(rows)
        s.flush()
        return [int(row.id) for row in rows]


def _surrogate(kb: Any, workload: str, seed: int, names: tuple[str, ...]) -> dict[str, Any]:
    """Fit and pickle one interference model; its predictions at :data:`PROBES`."""
    from edgewise.interference.campaign import fit_interference_model
    from edgewise.kb import save_model

    runs = _runs(seed, solo_ms=12.0 + seed)
    ids = _campaign(kb, workload, runs)
    model = fit_interference_model(
        workload, runs, seed=seed, names=names, resources=("cpu", "membw")
    )
    save_model(
        kb,
        "surrogate",
        workload,
        model,
        features=list(model.features),
        training_ids=ids,
        metrics={p: model.cv_scores[p] for p in ("p50", "p95", "p99")},
        meta={"campaign": f"c-{workload}", "chosen": model.chosen, "solo": model.solo},
    )
    return {"chosen": model.chosen, "predictions": [model.predict(v) for v in PROBES]}


def _others(kb: Any) -> dict[str, Any]:
    """Calibration, host caps, a capacity profile and a retrain device profile."""
    from edgewise.interference.calibration import Calibration, save_calibration
    from edgewise.interference.stressors import HostCaps
    from edgewise.kb import models as m
    from edgewise.kb import save_model
    from edgewise.planning.retrain import DeviceProfile, Intensity
    from edgewise.retrain.records import save_profiles

    caps = HostCaps(ncpus=2, membw_mbs=18000.0, mem_bytes=2.0e9)
    cal = Calibration(
        "release-host",
        caps,
        {"cpu": ([0.0, 0.5, 1.0], [0.0, 0.4, 0.9]), "membw": ([0.0, 1.0], [0.0, 0.8])},
    )
    save_calibration(kb, cal, metrics={"within": 0.9})
    save_model(kb, "host_caps", "release-host", dict(caps.__dict__), meta={"probed": True})
    with kb.transaction() as s:
        s.add(
            m.CapacityProfile(
                model="mobilenet_v2",
                flavor="small",
                batch_size=1,
                host="release-host",
                cpus=0.5,
                service_ms={
                    "p50": 30.0,
                    "p95": 36.0,
                    "p99": 41.0,
                    "mean": 31.0,
                    "samples": SERVICE_SAMPLES_MS,
                },
                slo_ms=200.0,
                percentile=99.0,
                capacity_rps=21.5,
                validation={},
            )
        )
    profiles = {
        "pi-a": DeviceProfile(
            "pi-a", (Intensity(1, 0, 14.0, 22.0), Intensity(2, 5, 25.0, 31.0)), 18.0
        ),
        "pi-b": DeviceProfile("pi-b", (Intensity(1, 10, 9.5, 40.0),), 35.0),
    }
    save_profiles(kb, "pool-0123456789ab", profiles, metrics={"n": 2})
    return {"knob_cpu_0.6": cal.knob("cpu", 0.6), "pool": "pool-0123456789ab"}


def cli_answers(db: Path, workdir: Path) -> dict[str, Any]:
    """``predict`` and ``plan`` as the CLI answers them (JSON) on the knowledge base ``db``.

    Runs in-process with the host name of the stored capacity profile. Used by the
    generator (against the release) and by the migration test (against this tree).
    """
    import os
    import socket
    from unittest import mock

    from typer.testing import CliRunner

    from edgewise.cli.main import make_app

    service, flavors = workdir / "service.yaml", workdir / "flavors.yaml"
    service.write_text(SERVICE_YAML)
    flavors.write_text(FLAVORS_YAML)
    commands = {
        "predict": ["predict", "mobilenet_v2@20rps", "--with", "stress:cpu=0.5", "--json"],
        "plan": [
            "plan",
            "--service",
            str(service),
            "--flavors",
            str(flavors),
            "--rate",
            "60",
            "--json",
        ],
    }
    env = {"EDGEWISE_DB_URL": f"sqlite:///{db}", "EDGEWISE_HOME": str(workdir)}
    out: dict[str, Any] = {}
    with (
        mock.patch.object(socket, "gethostname", lambda: RELEASE_HOST),
        mock.patch.dict(os.environ, env),
    ):
        for name, args in commands.items():
            res = CliRunner().invoke(make_app(), args)
            assert res.exit_code == 0, f"{name}: {res.output}"
            out[name] = json.loads(res.output[res.output.index("{") :])
    return out


def main(path: str) -> None:
    """Write the fixture at ``path`` (replacing it) and print the expected numbers."""
    from edgewise.kb import KnowledgeBase

    target = Path(path)
    for stale in (target, *target.parent.glob(target.name + "-*")):
        stale.unlink(missing_ok=True)
    kb = KnowledgeBase.open(f"sqlite:///{target}")
    expected = {
        "mobilenet_v2@20rps": _surrogate(kb, "mobilenet_v2@20rps", 1, ("gp",)),
        "resnet18@20rps": _surrogate(kb, "resnet18@20rps", 2, ("linear",)),
        **_others(kb),
    }
    kb.close()
    conn = sqlite3.connect(target, isolation_level=None)  # fold the WAL in: one file
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("VACUUM")
    conn.close()
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:  # the CLI writes (a plan row): use a copy
        copy = Path(tmp) / "kb.sqlite"
        shutil.copy(target, copy)
        expected["cli"] = cli_answers(copy, Path(tmp))
    print(json.dumps(expected, indent=2, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1])
