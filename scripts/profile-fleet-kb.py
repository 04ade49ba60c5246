#!/usr/bin/env python3
"""Profile every model of a fleet spec into one knowledge base (``bench fleet``'s setup).

For each zoo model the fleet's services run (every variant), ``edgewise profile MODEL``
runs its stress campaign on this host and stores the interference model and the
model's solo footprint in the knowledge base at ``KB`` (a SQLite file, created if
missing). ``edgewise bench fleet --kb sqlite:///KB`` then plans and serves the fleet
with these measured models. A model already profiled in ``KB`` is skipped, so an
interrupted setup resumes where it stopped.

Usage: scripts/profile-fleet-kb.py KB [--fleet examples/fleet.yaml] [--budget 20]
       [--load 0.3] [--seconds 4] [--warmup 1] [--seed 0]

With the defaults a model takes about two minutes on a 2-core host (about six seconds
per stressed run), the six of ``examples/fleet.yaml`` 14 minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fleet_models(fleet: Path) -> list[str]:
    """The zoo models of the fleet's services, in the order they first appear."""
    from edgewise.planning.fleet_spec import load_fleet

    seen: list[str] = []
    for service in load_fleet(fleet).services:
        for variant in service.variants:
            if variant.model not in seen:
                seen.append(variant.model)
    return seen


def profiled(kb_url: str, models: list[str]) -> set[str]:
    """Models ``kb_url`` already holds an interference model and a footprint of."""
    from edgewise.api.fleet import kb_slowdown

    return set(kb_slowdown(models, kb_url)[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kb", type=Path, help="SQLite file of the knowledge base")
    parser.add_argument("--fleet", type=Path, default=ROOT / "examples" / "fleet.yaml")
    parser.add_argument("--budget", type=int, default=20, help="stressed runs per model")
    parser.add_argument("--load", type=float, default=0.3, help="share of solo capacity")
    parser.add_argument("--seconds", type=float, default=4.0, help="window per run (s)")
    parser.add_argument("--warmup", type=float, default=1.0, help="stressor warm-up (s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    url = f"sqlite:///{args.kb.resolve()}"
    models = fleet_models(args.fleet)
    done = profiled(url, models) if args.kb.exists() else set()
    env = {**os.environ, "EDGEWISE_DB_URL": url}
    for model in models:
        if model in done:
            print(f"{model}: already profiled in {args.kb}", flush=True)
            continue
        cmd = [
            sys.executable,
            "-m",
            "edgewise.cli.main",
            "profile",
            model,
            "--budget",
            str(args.budget),
            "--load",
            str(args.load),
            "--seconds",
            str(args.seconds),
            "--warmup",
            str(args.warmup),
            "--seed",
            str(args.seed),
        ]
        print(f"{model}: {' '.join(cmd[3:])}", flush=True)
        if subprocess.run(cmd, env=env).returncode != 0:
            print(f"error: profiling {model} failed", file=sys.stderr)
            return 1
    missing = sorted(set(models) - profiled(url, models))
    if missing:
        print(f"error: no interference model stored for {', '.join(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
