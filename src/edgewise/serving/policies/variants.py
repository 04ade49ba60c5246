"""Model variants: run any policy on the cheapest variant that is accurate enough. Pure.

A service may have several model variants (say ResNet-50 and MobileNetV2) with their
accuracies and a ``min_accuracy``; each variant has its own capacity in every flavor.
:class:`VariantPolicy` wraps any policy: every period it prices the rate ahead on each
variant at or above ``min_accuracy`` (the cheapest pool that serves it, the same sizer
the policies plan with), picks the cheapest one (the more accurate on a tie), and asks
the wrapped policy for the replicas with that variant's capacities. The decision names
the variant; the caller (the simulator, or the live controller whose replicas load it
in place) executes it.

A switch to another variant waits until that variant has been the cheapest for
``hold_s``, so that a rate hovering at a boundary does not flip the model back and
forth; a variant that cannot serve the rate at all is left at once. The rate ahead is
the true one when the context carries it (the clairvoyant oracle's input), else the
larger of the last minute's mean and its busiest 10 s, with ``band`` on top.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from edgewise.errors import InfeasibleError, SpecError
from edgewise.serving.policies._plan import make_sizer
from edgewise.serving.policies.base import (
    FlavorOption,
    Policy,
    PolicyState,
    ScalingContext,
    ScalingDecision,
    max_block_mean,
    mean_last,
)


@dataclass(frozen=True)
class ModelVariant:
    """One model a service may serve, with its accuracy and its capacity per flavor.

    Attributes
    ----------
    ref : str
        Model reference (a zoo name, ``NAME:vN`` or a file) the replicas load.
    accuracy : float
        Its accuracy in [0, 1].
    flavors : tuple of FlavorOption
        Every flavor with this model's capacity in it (the same flavor names for every
        variant of a service).
    """

    ref: str
    accuracy: float
    flavors: tuple[FlavorOption, ...]


@dataclass(frozen=True)
class VariantChoice:
    """A variant priced at a rate: its cheapest pool, that pool's price and reach."""

    variant: ModelVariant
    replicas: dict[str, int]
    price_per_hour: float
    serves_rps: float

    def covers(self, rate_rps: float) -> bool:
        """Whether the pool serves ``rate_rps`` within the SLO."""
        return self.serves_rps >= rate_rps * (1 - 1e-9)


def price_variant(
    variant: ModelVariant, rate_rps: float, slo_ms: float, percentile: float
) -> VariantChoice:
    """The cheapest pool of ``variant`` for ``rate_rps`` under the SLO, and its price."""
    sizer = make_sizer(variant.flavors, slo_ms, percentile, "pool")
    counts = sizer.plan(rate_rps)
    price = sum(f.price_per_hour * counts.get(f.name, 0) for f in variant.flavors)
    return VariantChoice(variant, counts, price, sizer.serves(counts))


def cheapest_variant(
    variants: Sequence[ModelVariant], rate_rps: float, slo_ms: float, percentile: float
) -> ModelVariant:
    """The variant whose pool serves ``rate_rps`` at the lowest price (ties: more accurate).

    When no variant's pool reaches the rate, the one that serves the most.
    """
    choices = [price_variant(v, rate_rps, slo_ms, percentile) for v in variants]
    covering = [c for c in choices if c.covers(rate_rps)]
    if covering:
        return min(covering, key=lambda c: (c.price_per_hour, -c.variant.accuracy)).variant
    return max(choices, key=lambda c: (c.serves_rps, c.variant.accuracy)).variant


@dataclass(frozen=True)
class VariantPolicy:
    """Any policy, run on the cheapest model variant at or above ``min_accuracy``.

    Parameters
    ----------
    inner : Policy
        The policy that sizes the pool (its state is kept under ``"inner"``).
    variants : tuple of ModelVariant
        The service's variants, each with its capacities in the same flavors.
    min_accuracy : float
        Variants below it are never served.
    hold_s : float
        A cheaper variant must stay the cheapest this long before the service switches.
    band : float
        Headroom on the observed rate when variants are priced.

    Raises
    ------
    InfeasibleError
        If every variant falls below ``min_accuracy``.
    SpecError
        If there is no variant, or the variants name different flavors.
    """

    inner: Policy
    variants: tuple[ModelVariant, ...]
    min_accuracy: float = 0.0
    hold_s: float = 60.0
    band: float = 0.1
    name: str = ""
    period_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.variants:
            raise SpecError("a variant policy needs at least one model variant")
        names = {tuple(f.name for f in v.flavors) for v in self.variants}
        if len(names) != 1:
            raise SpecError("every model variant must name the same flavors, in one order")
        if not self.eligible:
            best = max(self.variants, key=lambda v: v.accuracy)
            raise InfeasibleError(
                f"no model variant reaches the minimum accuracy {self.min_accuracy:g} "
                f"(the most accurate, {best.ref}, has {best.accuracy:g})"
            )
        object.__setattr__(self, "name", self.name or self.inner.name)
        object.__setattr__(self, "period_s", self.period_s or float(self.inner.period_s))

    @property
    def eligible(self) -> tuple[ModelVariant, ...]:
        """The variants at or above ``min_accuracy``, most accurate first."""
        ok = [v for v in self.variants if v.accuracy >= self.min_accuracy]
        return tuple(sorted(ok, key=lambda v: -v.accuracy))

    def variant(self, ref: str) -> ModelVariant:
        """The variant called ``ref``."""
        for v in self.variants:
            if v.ref == ref:
                return v
        raise KeyError(ref)

    def rate_ahead(self, ctx: ScalingContext) -> float:
        """The rate the variants are priced at (true when the context knows it)."""
        if ctx.future_rate is not None:
            horizon = ctx.now + ctx.startup_s + ctx.period_s
            return max(0.0, float(ctx.future_rate(ctx.now, horizon)))
        arrivals = ctx.metrics.arrival_rps
        observed = max(mean_last(arrivals, 60.0), max_block_mean(arrivals, 10, 60.0))
        return observed * (1.0 + self.band)

    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        st = ctx.policy_state
        eligible = self.eligible
        refs = {v.ref for v in eligible}
        kept = st.get("variant")
        current: str = str(kept) if kept in refs else eligible[0].ref
        rate = self.rate_ahead(ctx)
        best = cheapest_variant(eligible, rate, ctx.slo_ms, ctx.slo_percentile)
        candidate, since = st.get("candidate"), float(st.get("since") or math.inf)
        why = "kept"
        if best.ref == current:
            candidate, since = None, math.inf
        else:
            here = price_variant(self.variant(current), rate, ctx.slo_ms, ctx.slo_percentile)
            if candidate != best.ref:
                candidate, since = best.ref, ctx.now
            if not here.covers(rate) or ctx.now - since >= self.hold_s:
                current, candidate, since, why = best.ref, None, math.inf, "switched"
        chosen = self.variant(current)
        inner_ctx = dataclasses.replace(
            ctx, flavors=chosen.flavors, policy_state=dict(st.get("inner") or {})
        )
        decision, inner_state = self.inner.decide(inner_ctx)
        reason = f"{decision.reason}; variant {chosen.ref} {why} at {rate:.2f} rps"
        state: PolicyState = {
            "variant": chosen.ref,
            "candidate": candidate,
            "since": since if math.isfinite(since) else None,
            "inner": inner_state,
        }
        return dataclasses.replace(decision, reason=reason, variant=chosen.ref), state
