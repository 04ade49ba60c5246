"""One screen of a fleet simulation, shared by ``simulate serving --fleet`` and ``bench fleet``."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def fleet_table(out: dict[str, Any]) -> tuple[Table, list[str]]:
    """A table of every policy's cost and SLO attainment, and the comparison lines under it.

    Parameters
    ----------
    out : dict
        :meth:`edgewise.api.fleet.FleetSimulation.as_dict`.

    Returns
    -------
    (Table, list of str)
        One row per policy (cost, cost per million served requests, services below the
        SLO target, worst attainment), then ours against the blind baselines and where
        the interference models came from.
    """
    table = Table(
        title=f"fleet: {len(out['services'])} services on {out['nodes']} nodes, "
        f"{out['days']:g} days of {out['trace']}"
    )
    for col in ("policy", "cost", "per million served", "below SLO", "worst attainment"):
        table.add_column(col)
    for name, e in out["policies"].items():
        per = e["cost_per_million_served"]
        worst = min(e["slo_attainment"].values()) if e["slo_attainment"] else 1.0
        table.add_row(
            name,
            f"{e['cost']:.2f}",
            "n/a" if per is None else f"{per:.3g}",
            str(e["services_below_slo"]),
            f"{worst:.3%}",
        )
    lines = [
        f"{key}: {out[key]}"
        for key in ("services_below_slo", "cost_ratio_vs_best_blind", "best_blind")
        if key in out
    ]
    lines.append(f"interference: {out['interference_source']}")
    return table, lines
