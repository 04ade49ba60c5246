"""Queueing approximations for the fast serving simulator. Pure numpy functions.

Replicas of one flavor behind Ray Serve's router behave close to an M/G/c queue: Poisson
arrivals, a general service-time distribution, c servers fed in arrival order. Per
second the simulator needs, for many (rate, c) pairs at once, the probability that a
request finishes within the SLO. We use

* Erlang C for the probability of waiting (exact for M/M/c, computed through the
  Poisson distribution so that c up to thousands is cheap and stable),
* an exponential waiting time given a wait, with rate ``(cμ - λ) · 2 / (1 + cv²)``
  (the Allen-Cunneen correction of the mean wait for a general service time),
* the service time itself from the measured (or default) sample distribution, so
  ``P(T ≤ x) = (1 - P_w) F_S(x) + P_w E[(1 - e^{-θ(x - S)})⁺]``.

:mod:`edgewise.sim.events` simulates the same queue request by request; the tests check
the two agree on short segments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

#: Utilisation used in place of an overloaded one (the fluid backlog carries the rest).
RHO_CAP = 0.999


@dataclass(frozen=True)
class ServiceProfile:
    """Service-time distribution of one request on one replica.

    Attributes
    ----------
    samples_ms : numpy.ndarray
        Sorted service times (ms), measured or quantiles of a fitted distribution.
    cpus : float
        CPUs the samples were measured with.
    source : str
        Where the samples come from (shown in benchmark output).
    """

    samples_ms: np.ndarray
    cpus: float = 1.0
    source: str = ""
    mean_ms: float = field(init=False)
    cv2: float = field(init=False)
    p99_ms: float = field(init=False)

    def __post_init__(self) -> None:
        s = np.sort(np.asarray(self.samples_ms, dtype=float))
        if s.size == 0 or not np.all(np.isfinite(s)) or s[0] <= 0:
            raise ValueError("service samples must be positive, finite and non-empty")
        s.setflags(write=False)
        object.__setattr__(self, "samples_ms", s)
        mean = float(s.mean())
        object.__setattr__(self, "mean_ms", mean)
        object.__setattr__(self, "cv2", float(s.var() / mean**2))
        object.__setattr__(self, "p99_ms", float(np.quantile(s, 0.99)))

    def scaled(
        self, factor: float, cpus: float | None = None, source: str | None = None
    ) -> ServiceProfile:
        """The same distribution with every service time multiplied by ``factor``."""
        return ServiceProfile(
            self.samples_ms * factor,
            self.cpus if cpus is None else cpus,
            self.source if source is None else source,
        )

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` service times (ms) drawn from the samples."""
        return rng.choice(self.samples_ms, size=n)


def lognormal_profile(
    median_ms: float = 16.0, sigma: float = 0.25, cpus: float = 1.0, n: int = 256
) -> ServiceProfile:
    """A lognormal service-time profile given by its quantiles (deterministic)."""
    from scipy.stats import lognorm

    q = (np.arange(n) + 0.5) / n
    samples = lognorm.ppf(q, s=sigma, scale=median_ms)
    src = f"default lognormal: median {median_ms:g} ms, sigma {sigma:g} at {cpus:g} CPU"
    return ServiceProfile(samples, cpus, src)


def speed_factor(
    nominal_cpus: float, cpus: np.ndarray | float, max_speedup: float = 2.0
) -> np.ndarray:
    """Service-time multiplier at ``cpus`` for a profile measured at ``nominal_cpus``.

    ``nominal / cpus`` (a CFS quota slows a busy replica in proportion), but extra CPUs
    speed a request up at most ``max_speedup`` times.
    """
    c = np.maximum(np.asarray(cpus, dtype=float), 1e-6)
    return np.maximum(nominal_cpus / c, 1.0 / max_speedup)


def erlang_c(servers: np.ndarray, load: np.ndarray) -> np.ndarray:
    """Probability of waiting in M/M/c with ``servers`` c and offered load a = λ/μ (< c)."""
    c = np.asarray(servers, dtype=float)
    a = np.maximum(np.asarray(load, dtype=float), 1e-12)
    # Erlang B = Poisson pmf(c; a) / cdf(c; a), in logs for large c.
    log_pmf = c * np.log(a) - a - special.gammaln(c + 1.0)
    cdf = special.gammaincc(c + 1.0, a)
    b = np.exp(log_pmf) / np.maximum(cdf, 1e-300)
    b = np.clip(b, 0.0, 1.0)
    rho = a / np.maximum(c, 1e-12)
    out = b / np.maximum(1.0 - rho * (1.0 - b), 1e-12)
    return np.where(c >= 1, np.clip(out, 0.0, 1.0), 1.0)


def wait_parameters(
    rate_rps: np.ndarray, servers: np.ndarray, mean_s: np.ndarray, cv2: float
) -> tuple[np.ndarray, np.ndarray]:
    """(probability of waiting, rate θ of the exponential wait) per row.

    The load is capped at :data:`RHO_CAP` of the servers (an overload shows up as the
    simulator's fluid backlog instead).
    """
    c = np.asarray(servers, dtype=float)
    mu = 1.0 / np.asarray(mean_s, dtype=float)
    lam = np.minimum(np.asarray(rate_rps, dtype=float), RHO_CAP * c * mu)
    pw = erlang_c(c, lam / mu)
    theta = np.maximum(c * mu - lam, 1e-9) * 2.0 / (1.0 + cv2)
    return pw, theta


def prob_within(
    x_s: np.ndarray,
    pw: np.ndarray,
    theta: np.ndarray,
    factor: np.ndarray,
    profile: ServiceProfile,
    chunk: int = 32768,
) -> np.ndarray:
    """P(wait + service <= x) per row; service times are the profile's × ``factor``.

    Parameters
    ----------
    x_s : numpy.ndarray
        Latency bound per row in seconds (the SLO less any fluid delay; <= 0 gives 0).
    pw, theta : numpy.ndarray
        Probability and rate of the exponential wait (see :func:`wait_parameters`).
    factor : numpy.ndarray
        Service-time multiplier per row (vertical scaling).
    profile : ServiceProfile
        Service-time samples at the nominal size.
    """
    x = np.asarray(x_s, dtype=float)
    out = np.zeros(x.shape)
    base = profile.samples_ms / 1000.0
    k = base.size
    thin = base[:: max(1, k // 64)]
    for lo in range(0, x.size, chunk):
        sl = slice(lo, lo + chunk)
        xs, ps, ts, fs = x[sl], pw[sl], theta[sl], factor[sl]
        f_s = np.searchsorted(base, xs / fs, side="right") / k
        s = thin[None, :] * fs[:, None]
        slack = np.maximum(xs[:, None] - s, 0.0)
        wait_ok = np.mean(-np.expm1(-ts[:, None] * slack), axis=1)
        out[sl] = (1.0 - ps) * f_s + ps * wait_ok
    return np.where(x > 0, np.clip(out, 0.0, 1.0), 0.0)


def p99_estimate_ms(
    pw: np.ndarray,
    theta: np.ndarray,
    factor: np.ndarray,
    profile: ServiceProfile,
    delay_s: np.ndarray,
) -> np.ndarray:
    """Cheap 99th-percentile latency: delay + service p99 + the wait's 99th percentile."""
    wait = np.where(pw > 0.01, np.log(np.maximum(pw, 0.01) / 0.01) / theta, 0.0)
    return 1000.0 * (np.asarray(delay_s) + wait) + profile.p99_ms * np.asarray(factor)


def capacity_rps(profile: ServiceProfile, slo_ms: float, percentile: float = 99.0) -> float:
    """Largest Poisson rate one replica (M/G/1) serves with ``percentile`` % within the SLO.

    Used when ``edgewise.serving.capacity`` is unavailable; 0 when even an idle replica
    misses the SLO.
    """
    target = percentile / 100.0
    mean_s = profile.mean_ms / 1000.0

    def ok(rate: float) -> bool:
        pw, th = wait_parameters(np.array([rate]), np.array([1.0]), np.array([mean_s]), profile.cv2)
        p = prob_within(np.array([slo_ms / 1000.0]), pw, th, np.ones(1), profile)
        return bool(p[0] >= target)

    if not ok(1e-9):
        return 0.0
    lo, hi = 0.0, 1.0 / mean_s
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo
