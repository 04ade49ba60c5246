"""Comparing simulated runs at equal service: cost over HPA's, and the oracle's settings.

Pure functions over :class:`edgewise.sim.serving.SimResult` and the per-policy entries of
a report (dicts as ``bench serving --json`` prints them, which they complete in place).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from edgewise.sim.serving import SimResult

__all__ = ["compare_oracle", "compare_ours", "vs_hpa", "worst_trace"]


def vs_hpa(
    attainment: float, cost: float, hpa_runs: Sequence[tuple[str, SimResult]]
) -> dict[str, Any]:
    """Cost over the cheapest HPA setting whose attainment is at least ``attainment``.

    When no setting reaches it, over the setting with the best attainment, and
    ``hpa_reached`` is false.

    Parameters
    ----------
    attainment, cost : float
        The run compared.
    hpa_runs : sequence of (label, SimResult)
        HPA's sweep.

    Returns
    -------
    dict
        ``hpa_reference``, ``hpa_reached`` and ``cost_ratio_vs_hpa``.
    """
    reach = [(lab, r) for lab, r in hpa_runs if r.slo_attainment >= attainment]
    if reach:
        label, ref = min(reach, key=lambda x: x[1].cost)
    else:
        label, ref = max(hpa_runs, key=lambda x: x[1].slo_attainment)
    return {
        "hpa_reference": label,
        "hpa_reached": bool(reach),
        "cost_ratio_vs_hpa": cost / ref.cost if ref.cost > 0 else None,
    }


def compare_ours(
    out: dict[str, Any],
    per_policy: dict[str, Any],
    hpa_runs: Sequence[tuple[str, SimResult]] | None,
) -> None:
    """Our attainment and cost ratios against HPA and the oracle, into ``out``."""
    ours = per_policy.get("edgewise")
    if ours is None:
        return
    out["slo_attainment"] = ours["slo_attainment"]
    if hpa_runs:
        ref = vs_hpa(ours["slo_attainment"], ours["cost"], hpa_runs)
        out["hpa_reached_our_attainment"] = ref["hpa_reached"]
        out["hpa_reference"] = ref["hpa_reference"]
        out["cost_ratio_vs_hpa"] = ref["cost_ratio_vs_hpa"]
    if "oracle" in per_policy:
        oracle = per_policy["oracle"]
        oc = oracle["cost"]
        out["cost_ratio_vs_oracle"] = ours["cost"] / oc if oc > 0 else None
        out["attainment_vs_oracle_pt"] = 100.0 * (ours["slo_attainment"] - oracle["slo_attainment"])


def compare_oracle(
    out: dict[str, Any],
    per_policy: dict[str, Any],
    hpa_runs: Sequence[tuple[str, SimResult]] | None,
) -> None:
    """Each oracle setting against HPA (into its entry) and the best of them, into ``out``."""
    if "oracle" not in per_policy or not hpa_runs:
        return
    main = per_policy["oracle"]
    entries = [main, *main.get("sweep", [])]
    for e in entries:
        e.update(vs_hpa(e["slo_attainment"], e["cost"], hpa_runs))
    out["oracle_cost_ratio_vs_hpa"] = main["cost_ratio_vs_hpa"]
    reached = [e for e in entries if e["hpa_reached"] and e["cost_ratio_vs_hpa"] is not None]
    if reached:
        best = min(reached, key=lambda e: e["cost_ratio_vs_hpa"])
        out["oracle_best_cost_ratio_vs_hpa"] = best["cost_ratio_vs_hpa"]
        out["oracle_best_setting"] = best["setting"]


def worst_trace(reports: dict[str, dict[str, Any]]) -> str:
    """The trace on which our policy did worst: highest cost over the oracle's.

    Runs without an oracle ratio rank after those with one, by lowest attainment (ours,
    else the first policy's); ties keep the given order.

    Parameters
    ----------
    reports : dict
        ``bench serving --json`` report of each trace, by trace name (at least one).

    Returns
    -------
    str
        The name of the worst trace.
    """
    if not reports:
        raise ValueError("no trace to compare")

    def badness(item: tuple[int, tuple[str, dict[str, Any]]]) -> tuple[int, float, int]:
        index, (_, report) = item
        ratio = report.get("cost_ratio_vs_oracle")
        if ratio is not None:
            return (1, float(ratio), -index)
        attain = report.get("slo_attainment")
        if attain is None:
            first: dict[str, Any] = next(iter(report.get("policies", {}).values()), {})
            attain = first.get("slo_attainment", 1.0)
        return (0, -float(attain), -index)

    return max(enumerate(reports.items()), key=badness)[1][0]
