"""``edgewise rollout SERVICE --to NAME:vN``: move a running service to a new version.

Parses the options, calls :func:`edgewise.api.rollout.rollout` and renders the outcome:
each step, then promoted or rolled back with the reason (``--json``: one object).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

__all__ = ["register", "rollout"]

console = Console(stderr=True)


def rollout(
    service: Path = typer.Argument(..., help="Service YAML of the running service."),
    to: str = typer.Option(..., "--to", help="The new version: NAME:vN (or a model file)."),
    canary_share: float | None = typer.Option(
        None, "--canary-share", help="Share of live requests the canary answers while judged."
    ),
    min_requests: int | None = typer.Option(
        None, "--min-requests", help="Canary answers to judge on."
    ),
    min_agreement: float | None = typer.Option(
        None, "--min-agreement", help="Least agreement with the serving version (no labels)."
    ),
    max_accuracy_drop: float | None = typer.Option(
        None, "--max-accuracy-drop", help="Largest accuracy drop on labelled requests."
    ),
    max_canary_s: float | None = typer.Option(
        None, "--max-canary-s", help="Roll back when the canary is not judged by then."
    ),
    address: str | None = typer.Option(
        None, help="Ray address of the service (default: the one it recorded)."
    ),
    db: str | None = typer.Option(
        None, "--db", help="Knowledge base of the registry (default: the service's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Canary the new version on live traffic, gate it on the SLO and on accuracy, then
    promote it replica by replica or roll back, saying why.

    The gate's thresholds come from the service YAML's ``rollout:`` block; a flag
    overrides one."""
    from edgewise.api.rollout import rollout as roll_out
    from edgewise.serving.runtime import stdout_to_stderr

    with stdout_to_stderr():
        result = roll_out(
            service=service,
            to=to,
            canary_share=canary_share,
            min_requests=min_requests,
            min_agreement=min_agreement,
            max_accuracy_drop=max_accuracy_drop,
            max_canary_s=max_canary_s,
            address=address,
            kb=db,
        )
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        for step in result.steps:
            console.print(step, soft_wrap=True)
        verdict = "promoted" if result.promoted else "rolled back"
        typer.echo(f"{result.service}: {result.to} {verdict}: {result.reason}")
    if result.rolled_back:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``rollout`` to the ``edgewise`` app."""
    app.command("rollout")(rollout)
