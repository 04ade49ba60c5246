"""Write a small knowledge base with SYNTHETIC interference models of the six zoo models.

For the fleet tests and for running ``edgewise bench fleet`` where no knowledge base
holds real profiles of six models (profiling one takes minutes of stress-ng runs)::

    .venv/bin/python tests/fleet/make_fleet_kb.py /tmp/fleet-kb.sqlite
    edgewise bench fleet --kb sqlite:////tmp/fleet-kb.sqlite --json

Nothing here was measured. Each model gets campaign-like runs whose latency grows
linearly with the CPU, memory-bandwidth and cache pressure around it, with a
per-model sensitivity (:data:`SENSITIVITY`), and a solo footprint (:data:`FOOTPRINT`,
the pressure one replica puts on its node); the interference model is fitted on those
runs by the profile pillar's own ``fit_interference_model`` and stored with
``save_model`` under the workload name ``MODEL@20rps``, its metadata marked
``synthetic: true`` (the fleet benchmark reports that in ``interference_synthetic``).
The figures are shaped after what the dev host showed (ResNet-50 bound by memory
bandwidth, the digits CNN barely affected), not copied from a measurement.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: Latency growth per unit of (cpu, membw, llc) pressure around a replica, per model.
SENSITIVITY: dict[str, tuple[float, float, float]] = {
    "mobilenet_v2": (0.8, 0.3, 0.2),
    "resnet18": (0.9, 0.5, 0.4),
    "resnet50": (1.0, 1.2, 0.8),
    "vit_tiny": (0.7, 0.6, 0.5),
    "distilbert": (0.6, 0.9, 0.6),
    "digits_cnn": (0.2, 0.1, 0.1),
}
#: Pressure (cpu, membw, llc; normalised to the node) one replica of a model puts on it.
FOOTPRINT: dict[str, tuple[float, float, float]] = {
    "mobilenet_v2": (0.20, 0.08, 0.10),
    "resnet18": (0.25, 0.15, 0.15),
    "resnet50": (0.35, 0.40, 0.30),
    "vit_tiny": (0.25, 0.20, 0.15),
    "distilbert": (0.30, 0.35, 0.25),
    "digits_cnn": (0.04, 0.02, 0.02),
}
SOLO_P50_MS: dict[str, float] = {
    "mobilenet_v2": 15.7,
    "resnet18": 19.6,
    "resnet50": 52.9,
    "vit_tiny": 25.0,
    "distilbert": 30.0,
    "digits_cnn": 1.4,
}
RESOURCES = ("cpu", "membw", "llc")


def synthetic_runs(model: str, seed: int, n: int = 24) -> list[dict[str, Any]]:
    """Campaign-like runs of ``model``: every sixth solo, the rest under random pressure."""
    rng = np.random.default_rng(seed)
    a = np.array(SENSITIVITY[model])
    solo_ms = SOLO_P50_MS[model]
    runs = []
    for i in range(n):
        solo = i % 6 == 0
        x = np.zeros(3) if solo else rng.uniform(0.0, 1.0, 3)
        lat = solo_ms * (1.0 + float(a @ x)) * float(rng.lognormal(0.0, 0.02))
        runs.append(
            {
                "index": i,
                "status": "ok",
                "flags": ["solo"] if solo else [],
                "design": {r: round(float(v), 3) for r, v in zip(RESOURCES, x, strict=True)},
                "achieved": {
                    "target_cpu": FOOTPRINT[model][0],
                    **{r: float(v) for r, v in zip(RESOURCES, x, strict=True)},
                },
                "latency": {"p50": lat, "p95": 1.2 * lat, "p99": 1.45 * lat, "n": 200},
            }
        )
    return runs


def build(url: str, models: tuple[str, ...] = tuple(SENSITIVITY)) -> None:
    """Store a synthetic interference model and footprint for each of ``models``."""
    from edgewise.interference.campaign import fit_interference_model
    from edgewise.interference.footprint import store_footprint
    from edgewise.interference.target import workload_name
    from edgewise.kb import KnowledgeBase, save_model

    kb = KnowledgeBase.open(url)
    for seed, model in enumerate(models):
        name = workload_name(model, 20.0)
        fitted = fit_interference_model(
            name, synthetic_runs(model, seed), seed=seed, names=("linear",), resources=RESOURCES
        )
        save_model(
            kb,
            "surrogate",
            name,
            fitted,
            features=list(fitted.features),
            training_ids=[],
            metrics={p: fitted.cv_scores[p] for p in ("p50", "p95", "p99")},
            meta={
                "campaign": None,
                "synthetic": True,
                "generator": "tests/fleet/make_fleet_kb.py",
                "chosen": fitted.chosen,
                "solo": fitted.solo,
                "normalised": fitted.normalised,
            },
        )
        cpu, membw, llc = FOOTPRINT[model]
        store_footprint(
            kb,
            name,
            {
                **{p: float(fitted.solo[p]) for p in ("p50", "p95", "p99")},
                "cpu": cpu,
                "membw": membw,
                "llc": llc,
                "mem": 0.0,
            },
            kind="zoo",
            params={"rps": 20.0, "synthetic": True},
        )


if __name__ == "__main__":  # pragma: no cover - a generator run by hand
    if len(sys.argv) != 2:
        sys.exit("usage: make_fleet_kb.py PATH.sqlite")
    build(f"sqlite:///{sys.argv[1]}")
    print(f"wrote synthetic interference models of {len(SENSITIVITY)} models to {sys.argv[1]}")
