"""What the serving simulator is given: flavors with true service times, and its settings.

Plain frozen records and one pure routing rule; no state, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgewise.serving.policies.base import FlavorOption
from edgewise.sim.queueing import ServiceProfile

__all__ = ["SimConfig", "SimFlavor", "route_weight"]


@dataclass(frozen=True)
class SimFlavor:
    """A flavor in the simulator: what the policy sees, and its true service times."""

    option: FlavorOption
    profile: ServiceProfile

    @property
    def name(self) -> str:
        """The flavor's name (its option's)."""
        return self.option.name

    @property
    def mean_service_s(self) -> float:
        """Mean service time of one request at the flavor's CPUs, in seconds."""
        return self.profile.mean_ms / 1000.0


@dataclass(frozen=True)
class SimConfig:
    """Simulation settings.

    Attributes
    ----------
    slo_ms, slo_percentile : float
        Latency bound and the percentile it applies to (the policy's target).
    startup_s : int
        Seconds from asking for a replica to its readiness.
    queue_per_replica : int
        Queued requests per ready replica beyond which requests are rejected.
    max_speedup : float
        Most a request speeds up with CPUs above its flavor's.
    warmup_s : int
        Leading seconds excluded from attainment, cost and counts.
    seed : int
        Seed of the arrivals.
    history_bin_s : float
        Seconds per bin of the rate history handed to the policy.
    time_scale : float
        Trace seconds per wall second, passed on in the policy's context.
    check_state : bool
        JSON round-trip every policy state (slower; for tests).
    """

    slo_ms: float = 100.0
    slo_percentile: float = 99.0
    startup_s: int = 60
    queue_per_replica: int = 64
    max_speedup: float = 2.0
    warmup_s: int = 0
    seed: int = 0
    history_bin_s: float = 3600.0
    time_scale: float = 1.0
    check_state: bool = False


def route_weight(flavor: SimFlavor, factor: Any) -> Any:
    """Share of traffic per replica: its SLO capacity (speed for a flavor with none).

    Parameters
    ----------
    flavor : SimFlavor
        The flavor.
    factor : float or numpy.ndarray
        Service-time factor of its replicas at their CPUs (one, or one per second).

    Returns
    -------
    float or numpy.ndarray
        The routing weight of one replica, shaped like ``factor``.
    """
    cap = flavor.option.capacity_rps
    if cap > 0:
        return cap / factor
    return 1000.0 / (flavor.profile.mean_ms * factor)
