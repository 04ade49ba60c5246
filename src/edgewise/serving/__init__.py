"""Serve pillar: replica capacity under an SLO, capacity profiles, serving and autoscaling.

Pure models (``capacity``) are separate from the adapters that measure or serve
(``profiles`` runs replica processes in cgroups).
"""

from edgewise.serving.capacity import capacity_rps, latency_percentile

__all__ = ["capacity_rps", "latency_percentile"]
