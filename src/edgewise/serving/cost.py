"""Cost accounting in trace time, shared by the live system and the simulator.

A replica costs its flavor's price per hour for every second it exists, from the moment
it is asked for (start-up is paid) until it is removed. A replica whose CPU quota is
raised in place is billed pro rata to its CPUs (``price × cpus / flavor cpus``). Both
the simulator and the live controller feed the same :class:`CostMeter` with change
points ``(t, flavor, replicas, cpus per replica)``, so their costs are comparable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class FlavorPrice:
    """Price of one replica of a flavor at its nominal CPU size."""

    name: str
    cpus: float
    price_per_hour: float


def replica_cost(
    replicas: np.ndarray,
    cpus_per_replica: np.ndarray,
    flavor: FlavorPrice,
    dt_s: float | np.ndarray = 1.0,
) -> float:
    """Cost of ``replicas[i]`` replicas at ``cpus_per_replica[i]`` CPUs for ``dt_s[i]`` seconds.

    Parameters
    ----------
    replicas, cpus_per_replica : numpy.ndarray
        Replicas and their CPU quota over consecutive intervals.
    flavor : FlavorPrice
        Price and nominal CPUs of the flavor.
    dt_s : float or numpy.ndarray
        Length of each interval in seconds.
    """
    n = np.asarray(replicas, dtype=float)
    c = np.asarray(cpus_per_replica, dtype=float)
    scale = c / flavor.cpus if flavor.cpus > 0 else np.ones_like(c)
    return float(np.sum(n * scale * np.asarray(dt_s, dtype=float)) * flavor.price_per_hour / 3600.0)


@dataclass
class CostMeter:
    """Integrates cost over change points; ``total(t)`` is the cost accrued up to ``t``.

    Parameters
    ----------
    flavors : Mapping[str, FlavorPrice]
        Prices by flavor name.
    start : float
        Time from which cost accrues.
    """

    flavors: Mapping[str, FlavorPrice]
    start: float = 0.0
    _since: dict[str, float] = field(default_factory=dict, init=False)
    _level: dict[str, tuple[int, float]] = field(default_factory=dict, init=False)
    _accrued: dict[str, float] = field(default_factory=dict, init=False)
    replica_seconds: dict[str, float] = field(default_factory=dict, init=False)

    def update(self, t: float, flavor: str, replicas: int, cpus_per_replica: float) -> None:
        """From time ``t`` on, ``flavor`` runs ``replicas`` replicas of ``cpus_per_replica``."""
        if flavor not in self.flavors:
            raise KeyError(f"no price for flavor {flavor!r}")
        self._close(flavor, t)
        self._level[flavor] = (max(0, int(replicas)), float(cpus_per_replica))
        self._since[flavor] = max(t, self.start)

    def _close(self, flavor: str, t: float) -> None:
        since = self._since.get(flavor)
        if since is None:
            return
        n, cpus = self._level[flavor]
        dt = max(0.0, t - since)
        price = self.flavors[flavor]
        self._accrued[flavor] = self._accrued.get(flavor, 0.0) + replica_cost(
            np.array([n]), np.array([cpus]), price, dt
        )
        self.replica_seconds[flavor] = self.replica_seconds.get(flavor, 0.0) + n * dt
        self._since[flavor] = max(since, t)

    def total(self, t: float) -> float:
        """Cost accrued up to time ``t`` (and closes the open intervals there)."""
        for flavor in list(self._since):
            self._close(flavor, t)
        return float(sum(self._accrued.values()))

    def breakdown(self, t: float) -> dict[str, float]:
        """Cost per flavor up to ``t``."""
        self.total(t)
        return dict(self._accrued)
