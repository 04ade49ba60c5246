"""``edgewise bench rollout``: a rollout on a live service under open-loop load.

Three versions of a small image classifier, saved as TorchScript with their cards: v1
serves; v3 is v2 behind a few hundred matrix products (a deliberately slower canary) and
must be rolled back by the gate with v1 still answering; v2 (v1's weights nudged, so it
agrees with v1) must then be promoted replica by replica with no failed request and the
clients' p99 within the SLO. The load is Poisson at a share (default 70%) of the service's
capacity measured in the same run. The figures come from :func:`edgewise.api.rollout.
rollout_under_load`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import typer

SUMMARY_KEYS = (
    "failed_requests",
    "p99_during_rollout_ms",
    "slo_ms",
    "promote_s",
    "promoted",
    "rolled_back",
    "answering_after_rollback",
    "rollback_reason",
)
CARD = {
    "task": "classification",
    "input": {"kind": "image", "shape": [1, 16, 16], "mean": [0.5], "std": [0.25]},
    "labels": [f"class{i}" for i in range(10)],
}


def build_versions(directory: Path, seed: int = 0) -> dict[str, str]:
    """Write v1, v2 (agreeing with v1) and v3 (v2, slower) as TorchScript with cards.

    Returns
    -------
    dict
        ``{"v1": path, "v2": path, "v3": path}``.
    """
    import torch
    import yaml
    from torch import nn

    class Slower(nn.Module):
        """A network behind matrix products that change nothing but the time taken."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net
            self.w = nn.Parameter(torch.eye(256) * 0.5, requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.ones(256, 256)
            for _ in range(150):
                y = torch.tanh(y @ self.w)
            return self.net(x) + 0.0 * y.sum()

    def save(module: nn.Module, name: str) -> str:
        path = directory / f"{name}.pt"
        torch.jit.save(torch.jit.script(module.eval()), str(path))
        path.with_name(path.name + ".card.yaml").write_text(yaml.safe_dump(CARD))
        return str(path)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10)
        )
    paths = {"v1": save(net, "classifier-v1")}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1e-4)
    paths["v2"] = save(net, "classifier-v2")
    paths["v3"] = save(Slower(net), "classifier-v3-slow")
    return paths


def run(
    *,
    slo_ms: float = 150.0,
    load_fraction: float = 0.7,
    replicas: int = 2,
    cpus_per_replica: float = 0.5,
    canary_share: float = 0.1,
    min_requests: int = 100,
    port: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """The benchmark's figures (see the module docstring) as JSON-ready data."""
    from edgewise.api.rollout import rollout_under_load
    from edgewise.serving.rollout import RolloutPolicy

    policy = RolloutPolicy(canary_share=canary_share, min_requests=min_requests, max_canary_s=60)
    with tempfile.TemporaryDirectory(prefix="edgewise-rollout-") as tmp:
        versions = build_versions(Path(tmp), seed)
        slow, good = rollout_under_load(
            serving=versions["v1"],
            to=[versions["v3"], versions["v2"]],
            slo_ms=slo_ms,
            load_fraction=load_fraction,
            replicas=replicas,
            cpus_per_replica=cpus_per_replica,
            policy=policy,
            load_s=60.0,
            port=port,
            seed=seed,
        )
    return {
        "slo_ms": slo_ms,
        "slo_percentile": good.rollout.slo_percentile,
        "capacity_rps": good.capacity_rps,
        "rate_rps": good.rate_rps,
        "failed_requests": good.failed_requests,
        "requests_during_rollout": good.requests,
        "p99_during_rollout_ms": good.p99_during_rollout_ms,
        "p99_before_rollout_ms": good.p99_before_rollout_ms,
        "failed_before_rollout": good.failed_before_rollout,
        "promote_s": good.rollout.promote_s,
        "promoted": good.rollout.promoted,
        "promote_reason": good.rollout.reason,
        "answering_after_promotion": sorted(set(good.answering)),
        "rolled_back": slow.rollout.rolled_back,
        "rollback_reason": slow.rollout.reason,
        "answering_after_rollback": sorted(set(slow.answering)),
        "slow_canary": slow.as_dict(),
        "good_canary": good.as_dict(),
    }


def rollout_cmd(
    slo_ms: float = typer.Option(150.0, "--slo-ms", help="The service's p99 SLO in ms."),
    load_fraction: float = typer.Option(
        0.7, "--load", min=0.05, max=1.0, help="Offered load as a share of capacity."
    ),
    replicas: int = typer.Option(2, "--replicas", min=1, help="Replicas of the service."),
    canary_share: float = typer.Option(0.1, "--canary-share", help="Canary share of traffic."),
    port: int = typer.Option(0, "--port", help="HTTP port of the service (0: any free one)."),
    seed: int = typer.Option(0, "--seed"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """A slow canary rolled back and a good version promoted, under 70% load."""
    res = run(
        slo_ms=slo_ms,
        load_fraction=load_fraction,
        replicas=replicas,
        canary_share=canary_share,
        port=port,
        seed=seed,
    )
    if as_json:
        typer.echo(json.dumps(res, indent=2, default=str))
    else:
        for key in SUMMARY_KEYS:
            typer.echo(f"{key}: {res[key]}")


def register_bench(bench_app: typer.Typer) -> None:
    """Add the ``rollout`` subcommand to the ``edgewise bench`` group."""
    bench_app.command("rollout")(rollout_cmd)
