"""The rollout gate: whether a canary version may replace the serving one, purely.

A rollout sends a share of live traffic to the new version (the canary) and watches it:
its latency against the service's SLO percentile, its failures, and its accuracy, which
is measured on labelled requests when clients send labels and otherwise as agreement
with the serving version on the same inputs. :func:`judge` turns one snapshot of those
observations (:class:`CanaryContext`) into a :class:`Verdict` (wait, promote or roll
back, with the reason in words); :func:`promotion_steps` plans the replica-by-replica
promotion that follows. Nothing here touches Ray, HTTP or a clock: the runtime's rollout
driver gathers the observations, passes ``now`` in and applies the verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from edgewise.errors import SpecError

Action = Literal["wait", "promote", "rollback"]


@dataclass(frozen=True)
class RolloutPolicy:
    """Thresholds of the gate (a service's ``rollout:`` settings).

    Attributes
    ----------
    canary_share : float
        Share of live requests the canary answers while it is judged, in (0, 1).
    min_requests : int
        Canary answers needed before a verdict.
    min_agreement : float
        Least share of canary answers whose top label equals the serving version's on
        the same input (used when too few requests carry labels).
    max_accuracy_drop : float
        On labelled requests: the canary's accuracy may fall at most this far below the
        serving version's.
    min_labelled : int
        Labelled canary requests needed to judge accuracy by labels instead of by
        agreement.
    max_error_rate : float
        Largest share of canary requests that may fail.
    max_canary_s : float
        Longest the canary may run without a verdict; past it the rollout rolls back
        (too little traffic to judge).
    max_latency_increase : float
        When the serving version itself misses the SLO during the canary (a slow host,
        not a slow version), the canary is held to the serving version's own tail
        latency at the same time, plus this share.
    """

    canary_share: float = 0.1
    min_requests: int = 50
    min_agreement: float = 0.9
    max_accuracy_drop: float = 0.02
    min_labelled: int = 30
    max_error_rate: float = 0.0
    max_canary_s: float = 120.0
    max_latency_increase: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.canary_share < 1.0:
            raise SpecError(f"rollout canary_share {self.canary_share} must lie in (0, 1)")
        if self.min_requests < 1 or self.min_labelled < 1:
            raise SpecError("rollout min_requests and min_labelled must be at least 1")
        for name in (
            "min_agreement",
            "max_accuracy_drop",
            "max_error_rate",
            "max_latency_increase",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise SpecError(f"rollout {name} {value} must lie in [0, 1]")
        if not self.max_canary_s > 0:
            raise SpecError(f"rollout max_canary_s {self.max_canary_s} must be positive")


@dataclass(frozen=True)
class CanaryStats:
    """What the canary did since it started (counts over all its replicas).

    Attributes
    ----------
    latencies_ms : tuple of float
        In-replica latency of each canary answer.
    errors : int
        Canary requests that failed (the model raised).
    compared : int
        Canary answers also run on the serving version; ``agreed`` of them had the
        same top label.
    labelled, correct : int
        Canary requests that carried a label, and how many the canary got right.
    stable_labelled, stable_correct : int
        The same for the serving version over the same period.
    stable_latencies_ms : tuple of float
        In-replica latency of the serving version's answers over the same period.
    """

    latencies_ms: tuple[float, ...] = ()
    stable_latencies_ms: tuple[float, ...] = ()
    errors: int = 0
    compared: int = 0
    agreed: int = 0
    labelled: int = 0
    correct: int = 0
    stable_labelled: int = 0
    stable_correct: int = 0

    @property
    def answered(self) -> int:
        return len(self.latencies_ms)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CanaryStats:
        """Build from the plain dict the coordinator keeps (unknown keys ignored)."""
        series = ("latencies_ms", "stable_latencies_ms")
        counts = {k: int(data.get(k, 0)) for k in cls.__dataclass_fields__ if k not in series}
        return cls(
            latencies_ms=tuple(float(v) for v in data.get("latencies_ms", ())),
            stable_latencies_ms=tuple(float(v) for v in data.get("stable_latencies_ms", ())),
            **counts,
        )


@dataclass(frozen=True)
class CanaryContext:
    """One snapshot the gate judges: time, the SLO and the canary's observations."""

    now: float
    started_at: float
    slo_ms: float
    percentile: float
    canary: CanaryStats


@dataclass(frozen=True)
class Verdict:
    """The gate's decision and why, in words a person reads in the rollout's output."""

    action: Action
    reason: str


def judge(ctx: CanaryContext, policy: RolloutPolicy) -> Verdict:
    """Decide whether the canary waits, is promoted or is rolled back.

    Failures roll back at once, and so do more answers over the SLO than its percentile
    allows in the judged sample; otherwise latency and accuracy are judged once
    ``min_requests`` canary answers are in; a canary that gets too little traffic within
    ``max_canary_s`` is rolled back rather than promoted unjudged.

    Parameters
    ----------
    ctx : CanaryContext
        The canary's observations and the SLO.
    policy : RolloutPolicy
        The thresholds.

    Returns
    -------
    Verdict
        ``wait`` (not enough evidence yet), ``promote`` or ``rollback``.
    """
    c = ctx.canary
    attempts = c.answered + c.errors
    if c.errors and c.errors > policy.max_error_rate * attempts:
        return Verdict("rollback", f"the canary failed {c.errors} of {attempts} requests")
    pname = f"p{ctx.percentile:g}"
    bound, bound_words = latency_bound(ctx, policy)
    over = sum(v > bound for v in c.latencies_ms)
    judged = max(policy.min_requests, c.answered)
    if over > (1.0 - ctx.percentile / 100.0) * judged:
        # Already more answers over the bound than the percentile allows in the sample the
        # gate will judge: waiting for the rest only sends more requests to a bad canary.
        return Verdict(
            "rollback",
            f"{over} of {c.answered} canary answers over {bound_words}, more than its "
            f"{pname} allows in {judged}",
        )
    if c.answered < policy.min_requests:
        waited = ctx.now - ctx.started_at
        if waited > policy.max_canary_s:
            return Verdict(
                "rollback",
                f"only {c.answered} canary answers in {waited:.0f} s "
                f"(the gate needs {policy.min_requests})",
            )
        return Verdict("wait", f"{c.answered} of {policy.min_requests} canary answers")
    tail = canary_percentile(c.latencies_ms, ctx.percentile)
    if tail > bound:
        return Verdict(
            "rollback", f"canary {pname} {tail:.1f} ms is over {bound_words} ({c.answered} answers)"
        )
    accuracy = _judge_accuracy(c, policy)
    if accuracy is not None:
        return accuracy
    return Verdict(
        "promote",
        f"canary {pname} {tail:.1f} ms within {bound_words} and "
        f"{_accuracy_words(c, policy)} over {c.answered} answers",
    )


def latency_bound(ctx: CanaryContext, policy: RolloutPolicy) -> tuple[float, str]:
    """The latency the canary's tail is held to, and its name in words.

    The SLO; but when the serving version's own tail over the same period (at least
    ``min_requests`` answers) is over the SLO too, the host is what is slow, and the
    canary is held to that tail plus ``max_latency_increase``.
    """
    stable = ctx.canary.stable_latencies_ms
    if len(stable) >= policy.min_requests:
        stable_tail = canary_percentile(stable, ctx.percentile)
        if stable_tail > ctx.slo_ms:
            bound = stable_tail * (1.0 + policy.max_latency_increase)
            return bound, (
                f"the serving version's own p{ctx.percentile:g} {stable_tail:.1f} ms "
                f"+{policy.max_latency_increase:.0%} (it misses the SLO's {ctx.slo_ms:g} ms "
                "meanwhile)"
            )
    return ctx.slo_ms, f"the SLO's {ctx.slo_ms:g} ms"


def _judge_accuracy(c: CanaryStats, policy: RolloutPolicy) -> Verdict | None:
    """A rollback verdict when the canary is less accurate than allowed, else ``None``."""
    if c.labelled >= policy.min_labelled and c.stable_labelled >= policy.min_labelled:
        canary_acc = c.correct / c.labelled
        stable_acc = c.stable_correct / c.stable_labelled
        if canary_acc < stable_acc - policy.max_accuracy_drop:
            return Verdict(
                "rollback",
                f"canary accuracy {canary_acc:.1%} on {c.labelled} labelled requests is more "
                f"than {policy.max_accuracy_drop:.1%} below the serving version's "
                f"{stable_acc:.1%}",
            )
        return None
    if c.compared < policy.min_requests:
        # Answers outran the comparisons (they trail by a poll); judge on the next look.
        return Verdict("wait", f"{c.compared} of {policy.min_requests} answers compared")
    agreement = c.agreed / c.compared
    if agreement < policy.min_agreement:
        return Verdict(
            "rollback",
            f"canary agrees with the serving version on {agreement:.1%} of {c.compared} "
            f"requests (the gate needs {policy.min_agreement:.0%})",
        )
    return None


def _accuracy_words(c: CanaryStats, policy: RolloutPolicy) -> str:
    if c.labelled >= policy.min_labelled and c.stable_labelled >= policy.min_labelled:
        return (
            f"accuracy {c.correct / c.labelled:.1%} (serving version "
            f"{c.stable_correct / c.stable_labelled:.1%})"
        )
    return f"agreement {c.agreed / c.compared:.1%}"


def canary_percentile(latencies_ms: tuple[float, ...], percentile: float) -> float:
    """The ``percentile`` (0-100) of a latency sample in ms; NaN when it is empty."""
    if not latencies_ms:
        return math.nan
    return float(np.percentile(np.asarray(latencies_ms, dtype=float), percentile))


def promotion_steps(replicas: list[str]) -> list[list[str]]:
    """The replica-by-replica promotion plan: after step ``i`` the first ``i + 1`` replicas
    (in the order given) serve the new version, so a stop leaves a known prefix.

    Parameters
    ----------
    replicas : list of str
        Replica ids of the service, in promotion order.

    Returns
    -------
    list of list of str
        One entry per replica; the last names them all.
    """
    return [list(replicas[: i + 1]) for i in range(len(replicas))]


def check_compatible(current: Any, new: Any, new_ref: str) -> None:
    """Refuse a rollout to a model that cannot take the serving model's requests.

    Parameters
    ----------
    current, new : ModelCard
        The serving model's card and the new version's.
    new_ref : str
        The new version's reference, named in the message.

    Raises
    ------
    SpecError
        One line naming the field that differs (input kind, shape, dtype or task).
    """
    for field in ("kind", "shape", "dtype"):
        was, now = getattr(current.input, field), getattr(new.input, field)
        if tuple(np.atleast_1d(was)) != tuple(np.atleast_1d(now)):
            raise SpecError(
                f"{new_ref}: input.{field} {_words(now)} differs from the serving model's "
                f"{_words(was)}; a rollout needs the same input"
            )
    if current.task != new.task:
        raise SpecError(
            f"{new_ref}: task {new.task!r} differs from the serving model's {current.task!r}"
        )


def _words(value: Any) -> str:
    return str(list(value)) if isinstance(value, tuple) else repr(value)
