"""Profile one model in one flavor: a replica in a real cgroup, its service times, its capacity.

The orchestration of the effect side: :func:`profile_flavor` starts a replica inside a
cgroup with the flavor's CPU quota and memory limit (:class:`edgewise.isolation.CGroup`),
running :func:`edgewise.isolation.threads_for` torch threads, samples its service times
(:func:`.loadtest.collect_service_times`), derives the capacity with the pure
:func:`edgewise.serving.capacity.capacity_rps` and, when asked, load-tests it
(:func:`.loadtest.validate_capacity`), profiling again when the host drifted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgewise.isolation import threads_for
from edgewise.serving.capacity import PROFILE_BLOCK, capacity_rps
from edgewise.serving.profiles.compare import DRIFT_TOLERANCE
from edgewise.serving.profiles.loadtest import (
    Progress,
    collect_service_times,
    validate_capacity,
)
from edgewise.serving.profiles.process import Replica, ReplicaSpec, start_replica
from edgewise.serving.profiles.records import FlavorProfile, Validation, ValidationAttempt

if TYPE_CHECKING:
    from edgewise.config import FlavorSpec
    from edgewise.isolation import CGroup


@dataclass(frozen=True)
class ProfileSettings:
    """How a replica is sampled and validated (see the parameters of :func:`profile_flavor`)."""

    slo_ms: float
    percentile: float = 99.0
    samples: int = 200
    warmup: int = 20
    time_budget_s: float | None = 120.0
    validate: bool = False
    load_fraction: float = 0.8
    validate_requests: int | None = None
    validate_max_s: float = 600.0
    seed: int = 0
    service_load: float | None = 0.5
    drift_tolerance: float = DRIFT_TOLERANCE
    max_reprofiles: int = 2


def _replica_group(model: str, flavor: FlavorSpec, cpu_weight: int | None) -> CGroup:
    """The replica's cgroup: the flavor's quota and memory, labelled with the reference's
    safe characters (no ``/`` of a path, no ``:`` of a version)."""
    from edgewise.isolation import CGroup

    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"capacity-{model}-{flavor.name}")
    return CGroup(label, cpus=flavor.cpus, memory_mb=flavor.memory_mb, cpu_weight=cpu_weight)


def profile_flavor(
    model: str,
    flavor: FlavorSpec,
    *,
    slo_ms: float,
    percentile: float = 99.0,
    batch_size: int = 1,
    samples: int = 200,
    warmup: int = 20,
    time_budget_s: float | None = 120.0,
    validate: bool = False,
    load_fraction: float = 0.8,
    validate_requests: int | None = None,
    validate_max_s: float = 600.0,
    seed: int = 0,
    progress: Progress | None = None,
    spin_ms: float = 1.0,
    cpu_weight: int | None = 1000,
    service_load: float | None = 0.5,
    drift_tolerance: float = DRIFT_TOLERANCE,
    max_reprofiles: int = 2,
    kb_url: str | None = None,
) -> FlavorProfile:
    """Measure ``model`` in ``flavor`` (real cgroup) and derive its capacity under the SLO.

    Parameters
    ----------
    model : str
        Zoo name, registry ``NAME[:vN]`` or model file (``"spin"``: CPU burn of mean ``spin_ms``).
    flavor : FlavorSpec
        CPU quota, memory limit of the replica's cgroup.
    slo_ms, percentile : float
        The latency bound and its percentile.
    samples, warmup, time_budget_s
        Service-time sample size, discarded warm-up requests, time budget (stops early,
        with at least 30 samples).
    service_load : float, optional
        Load (fraction of saturation) of the open-loop Poisson requests whose service
        times are sampled; ``None`` samples back-to-back bursts.
    validate : bool
        Also run an open-loop load test at ``load_fraction`` of the capacity.
    drift_tolerance, max_reprofiles
        A load test whose mean service time differs from the profile's by more than
        ``drift_tolerance`` (relative) shows that the host changed under the profile (on a
        shared host, another job started or stopped): the flavor is then profiled again
        and re-tested, at most ``max_reprofiles`` times. The last profile is the one kept,
        and every attempt is listed in ``validation.attempts``.
    seed : int
        Seeds the model weights, the capacity simulation and the load's arrivals.
    progress : callable, optional
        ``progress(phase, done, total)``.
    cpu_weight : int, optional
        CPU weight of the replica's group (v2 scale, default 100): a flavor's CPUs are
        reserved, so on a shared host the replica should reach its quota.
    kb_url : str, optional
        Knowledge base the replica looks a registry entry up in (default: the default one).

    Returns
    -------
    FlavorProfile
        The kept service times, the capacity and the validation (``None`` without one).
    """
    settings = ProfileSettings(
        slo_ms=slo_ms,
        percentile=percentile,
        samples=samples,
        warmup=warmup,
        time_budget_s=time_budget_s,
        validate=validate,
        load_fraction=load_fraction,
        validate_requests=validate_requests,
        validate_max_s=validate_max_s,
        seed=seed,
        service_load=service_load,
        drift_tolerance=drift_tolerance,
        max_reprofiles=max_reprofiles,
    )
    threads = threads_for(flavor.cpus)
    spec = ReplicaSpec(model, batch_size, threads, seed, spin_ms=spin_ms, kb=kb_url)
    group = _replica_group(model, flavor, cpu_weight)
    with group as cg:
        if progress is not None:
            progress("start", 0, samples)
        with start_replica(spec, cg) as replica:
            service, capacity, validation = profile_replica(replica, settings, progress)
        isolated = cg.isolated
    return FlavorProfile(
        model=model,
        flavor=flavor.name,
        cpus=flavor.cpus,
        batch_size=batch_size,
        threads=threads,
        isolated=isolated,
        service_ms=service,
        slo_ms=slo_ms,
        percentile=percentile,
        capacity_rps=capacity,
        validation=validation,
    )


def profile_replica(
    replica: Replica, settings: ProfileSettings, progress: Progress | None
) -> tuple[np.ndarray, float, Validation | None]:
    """Service times, capacity and validation of a running replica.

    Samples the service times and derives the capacity; with ``settings.validate``, load-
    tests it and, while the load test's mean service time drifted more than
    ``settings.drift_tolerance`` from the profile's, profiles again and re-tests (at most
    ``settings.max_reprofiles`` times). See :func:`profile_flavor`.

    Parameters
    ----------
    replica : Replica
        A running replica (or anything with its ``burst`` and ``run_arrivals``).
    settings : ProfileSettings
        The SLO, sample sizes, load test and drift rule.
    progress : callable, optional
        ``progress(phase, done, total)``.

    Returns
    -------
    tuple
        The kept service times (ms), their capacity (rps) and the validation (``None``
        without a load test, or when no rate meets the SLO).
    """
    s = settings

    def measure(attempt: int) -> tuple[np.ndarray, float]:
        times = collect_service_times(
            replica,
            s.samples,
            s.warmup,
            s.time_budget_s,
            progress=progress,
            load=s.service_load,
            seed=s.seed + attempt,
        )
        return times, capacity_rps(times, s.slo_ms, s.percentile, seed=s.seed, block=PROFILE_BLOCK)

    service, capacity = measure(0)
    if not s.validate or capacity <= 0:
        return service, capacity, None
    attempts: list[ValidationAttempt] = []
    while True:
        if progress is not None:
            progress("validate", len(attempts), s.max_reprofiles + 1)
        test = validate_capacity(
            replica,
            service,
            s.load_fraction * capacity,
            s.percentile,
            s.validate_requests,
            s.validate_max_s,
            s.seed + len(attempts),
        )
        drift = test.service_drift
        attempts.append(ValidationAttempt(capacity, drift, test.rel_error, test.passed))
        if abs(drift) <= s.drift_tolerance or len(attempts) > s.max_reprofiles:
            break
        # The host changed under the profile: measure again, now, and re-test.
        service, capacity = measure(len(attempts))
        if capacity <= 0:
            break
    if progress is not None:
        progress("validate", len(attempts), len(attempts))
    validation = Validation(test, s.load_fraction, s.service_load, tuple(attempts))
    return service, capacity, validation
