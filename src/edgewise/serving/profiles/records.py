"""Typed records of capacity profiling: service-time summaries, load tests, profiles.

Pure data, no effects. Each record that is stored in the knowledge base or printed as
JSON has an ``as_dict()`` giving the stored layout (the keys of the ``service_ms`` and
``validation`` columns of :class:`edgewise.kb.models.CapacityProfile`), so the storage
format does not depend on these classes; :meth:`StoredProfile.from_row` reads a row back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewise.serving.capacity import PROFILE_BLOCK, capacity_rps

if TYPE_CHECKING:
    from edgewise.kb.models import CapacityProfile


@dataclass(frozen=True)
class ProfileVsTest:
    """One statistic of the service times in the profile and during the load test (ms)."""

    profile: float
    test: float

    def as_dict(self) -> dict[str, float]:
        """``{"profile": ..., "test": ...}``."""
        return {"profile": self.profile, "test": self.test}


@dataclass(frozen=True)
class LoadTest:
    """The model against one measured open-loop run (see :func:`.compare.compare_latency`).

    Attributes
    ----------
    rate_rps, requests, duration_s, percentile
        The offered load, how many requests it sent over how long, the percentile checked.
    measured_ms, measured_ci95_ms
        The measured percentile (after the burn-in) and its 95% bootstrap interval.
    predicted_ms, predicted_run_range95_ms
        The model's percentile for the same arrivals, and where 95% of its simulated runs
        of that length fall.
    rel_error, passed, conclusive, requests_needed
        ``predicted / measured - 1``; whether it is within tolerance or inside the
        measured interval; whether enough requests lie beyond the percentile; how many a
        conclusive test sends.
    measured_p50_ms, predicted_p50_ms, predicted_from_test_service_ms
        The medians, and the model fed with the test's own service times.
    service_mean_ms, service_p99_ms
        Service-time statistics of the profile and of the test.
    cpu_mean_ms, idle_share, sender_late_p50_ms, sender_late_p99_ms
        Diagnostics: CPU per request, share of requests that found the replica idle, how
        late the generator wrote requests.
    """

    rate_rps: float
    requests: int
    duration_s: float
    percentile: float
    measured_ms: float
    measured_ci95_ms: tuple[float, float]
    predicted_ms: float
    rel_error: float
    predicted_run_range95_ms: tuple[float, float]
    passed: bool
    conclusive: bool
    requests_needed: int
    measured_p50_ms: float
    predicted_p50_ms: float
    predicted_from_test_service_ms: float
    service_mean_ms: ProfileVsTest
    service_p99_ms: ProfileVsTest
    cpu_mean_ms: float
    idle_share: float
    sender_late_p50_ms: float
    sender_late_p99_ms: float

    @property
    def service_drift(self) -> float:
        """Relative change of the mean service time from the profile to the load test."""
        return float(self.service_mean_ms.test / self.service_mean_ms.profile - 1.0)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, in the stored layout."""
        return {
            "rate_rps": self.rate_rps,
            "requests": self.requests,
            "duration_s": self.duration_s,
            "percentile": self.percentile,
            "measured_ms": self.measured_ms,
            "measured_ci95_ms": list(self.measured_ci95_ms),
            "predicted_ms": self.predicted_ms,
            "rel_error": self.rel_error,
            "predicted_run_range95_ms": list(self.predicted_run_range95_ms),
            "passed": self.passed,
            "conclusive": self.conclusive,
            "requests_needed": self.requests_needed,
            "measured_p50_ms": self.measured_p50_ms,
            "predicted_p50_ms": self.predicted_p50_ms,
            "predicted_from_test_service_ms": self.predicted_from_test_service_ms,
            "service_mean_ms": self.service_mean_ms.as_dict(),
            "service_p99_ms": self.service_p99_ms.as_dict(),
            "cpu_mean_ms": self.cpu_mean_ms,
            "idle_share": self.idle_share,
            "sender_late_ms": {"p50": self.sender_late_p50_ms, "p99": self.sender_late_p99_ms},
        }


@dataclass(frozen=True)
class ValidationAttempt:
    """One profile-then-load-test round of a flavor's validation."""

    capacity_rps: float
    service_drift: float
    rel_error: float
    passed: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "capacity_rps": self.capacity_rps,
            "service_drift": self.service_drift,
            "rel_error": self.rel_error,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class Validation:
    """A flavor's validation: its last load test and every attempt that led to it.

    Attributes
    ----------
    test : LoadTest
        The last load test (against the profile that was kept).
    load_fraction : float
        Share of the derived capacity the load tests offered.
    service_load : float or None
        Load of the requests whose service times were sampled (``None``: bursts).
    attempts : tuple of ValidationAttempt
        Every round; more than one when the host drifted under a profile.
    """

    test: LoadTest
    load_fraction: float
    service_load: float | None
    attempts: tuple[ValidationAttempt, ...]

    @property
    def service_drift(self) -> float:
        """Drift of the mean service time in the last round."""
        return self.attempts[-1].service_drift

    @property
    def reprofiled(self) -> int:
        """How often the flavor was profiled again after a drift."""
        return len(self.attempts) - 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form, in the stored layout (the load test's keys, then the rounds')."""
        return self.test.as_dict() | {
            "load_fraction": self.load_fraction,
            "service_load": self.service_load,
            "service_drift": self.service_drift,
            "reprofiled": self.reprofiled,
            "attempts": [a.as_dict() for a in self.attempts],
        }


@dataclass(frozen=True)
class ServiceSummary:
    """Percentiles of a flavor's service times (ms), and how they were measured."""

    p50: float
    p95: float
    p99: float
    mean: float
    n: int
    threads: int
    isolated: bool
    samples: tuple[float, ...]

    def as_dict(self, keep_samples: bool = True) -> dict[str, Any]:
        """JSON-able form (the ``service_ms`` column), with or without the samples."""
        out: dict[str, Any] = {
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "mean": self.mean,
            "n": self.n,
            "threads": self.threads,
            "isolated": self.isolated,
        }
        if keep_samples:
            out["samples"] = list(self.samples)
        return out


@dataclass(frozen=True)
class FlavorProfile:
    """Service times of one model in one flavor and the capacity they give."""

    model: str
    flavor: str
    cpus: float
    batch_size: int
    threads: int
    isolated: bool
    service_ms: np.ndarray
    slo_ms: float
    percentile: float
    capacity_rps: float
    validation: Validation | None = None

    def summary(self) -> ServiceSummary:
        """Percentiles of the service times (samples rounded to 0.1 µs, as stored)."""
        s = self.service_ms
        p50, p95, p99 = (float(v) for v in np.percentile(s, [50, 95, 99]))
        return ServiceSummary(
            p50=p50,
            p95=p95,
            p99=p99,
            mean=float(s.mean()),
            n=int(s.size),
            threads=self.threads,
            isolated=self.isolated,
            samples=tuple(round(float(v), 4) for v in s),
        )

    def validation_dict(self) -> dict[str, Any]:
        """The validation's JSON form, ``{}`` when the flavor was not load-tested."""
        return self.validation.as_dict() if self.validation is not None else {}


@dataclass(frozen=True)
class StoredProfile:
    """A capacity profile as read back from the knowledge base."""

    id: int
    model: str
    flavor: str
    batch_size: int
    host: str
    cpus: float
    samples_ms: np.ndarray
    slo_ms: float
    percentile: float
    capacity_rps: float

    @classmethod
    def from_row(cls, row: CapacityProfile) -> StoredProfile:
        """Read a :class:`edgewise.kb.models.CapacityProfile` row."""
        return cls(
            id=int(row.id),
            model=row.model,
            flavor=row.flavor,
            batch_size=int(row.batch_size),
            host=row.host,
            cpus=float(row.cpus),
            samples_ms=np.asarray(row.service_ms.get("samples", []), dtype=float),
            slo_ms=float(row.slo_ms),
            percentile=float(row.percentile),
            capacity_rps=float(row.capacity_rps),
        )

    def capacity_at(self, slo_ms: float, percentile: float, seed: int = 0) -> float:
        """Capacity under an SLO: the stored value when the SLO is the same, else recomputed."""
        if math.isclose(self.slo_ms, slo_ms) and math.isclose(self.percentile, percentile):
            return self.capacity_rps
        return capacity_rps(self.samples_ms, slo_ms, percentile, seed, block=PROFILE_BLOCK)
