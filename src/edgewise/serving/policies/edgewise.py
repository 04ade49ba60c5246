"""edgewise's predictive autoscaler (Barista): forecast, plan ahead, absorb error vertically.

Pure: ``decide(ctx) -> (decision, state)`` reads only the context; the caller applies the
decision (start or stop replicas, set CPU quotas in place) and stores the state.

Each control period it

1. forecasts the rate at ``t + Δ`` with Δ = replica start-up + control period: the
   forecaster (``edgewise.forecast``, refitted once per history bin) gives the shape of the
   coming hours, which is anchored on the rate observed now (``λ_now · f(t+Δ) / f(t)``);
2. corrects the trend by its own recent errors: the trend times ``1 + m``, where ``m`` is
   a quantile (the median by default) of this policy's recent relative errors against
   the 60 s mean rate (a calibration kept in the state), or a 10 s burst of the last
   minute when it exceeds the Poisson noise. The upper errors are not bought with
   replicas for every period: step 5 absorbs them in place within a period;
3. sizes the replica *pool* for that rate (``planner='pool'``: the replicas share a
   queue, M/G/c, from the flavors' service-time quantiles; the cheapest flavor mix from
   a cached cost/rate frontier) and scales out at once, topping up the running mix
   unless a new mix is ``mix_band`` cheaper;
4. scales in only when the lower plan has held for one start-up plus a period (at least
   ``scale_in_window_s``): keeping an unneeded replica longer costs more than the
   start-up a premature removal risks (the ski-rental break-even). The lower plan must
   cover the window's largest rate with a band and three standard deviations of the
   Poisson noise of a 60 s mean (no reversal within 5 minutes under a constant rate),
   no scale-out may have happened within the hold, and the forecast must not expect
   the rate back within it;
5. raises the CPU quota of running replicas in place (up to the flavor's limit) when the
   rate seen now exceeds what the ready replicas serve, while new replicas start;
6. goes to zero replicas when the forecast (upper bound) is about zero and no request
   came; a later request or forecast brings replicas back (the cold start is counted).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgewise.serving.policies._plan import Sizer, make_before_break, make_sizer, resize
from edgewise.serving.policies.base import (
    PolicyState,
    ScalingContext,
    ScalingDecision,
    max_block_mean,
    mean_last,
)

#: Window (s) of the realised mean rate that past predictions are scored against.


@dataclass(frozen=True)
class EdgewisePolicy:
    """Predictive horizontal and vertical autoscaling.

    Parameters
    ----------
    forecaster : str or None
        Name for :func:`edgewise.forecast.make_forecaster` (None: no forecast, trend only).
    level : int
        Interval level asked of the forecaster (used to decide scale to zero).
    history_bins : int
        Most history bins given to the forecaster.
    error_quantile : float
        Quantile of recent relative errors used as the margin (0.5: the median, a bias
        correction; vertical scaling absorbs the errors above it).
    error_window : int
        How many recent errors the calibration keeps.
    min_margin, max_margin : float
        Bounds of that margin.
    noise_z : float
        A ``burst_window_s`` mean above the trend counts as a surge when it exceeds the
        Poisson noise by this many standard deviations.
    rate_window_s, burst_window_s : float
        The observed rate is the mean of the last ``rate_window_s`` (60 s), which the
        forecast errors are also judged against; a burst is the largest mean over
        ``burst_window_s`` (10 s) blocks of it.
    scale_in_window_s : float
        A lower plan must hold at least this long before replicas are removed, and at
        least one start-up plus a period (:meth:`scale_in_hold_s`).
    scale_in_band : float
        The lower plan must still suffice for ``(1 + band)`` times the rate...
    scale_in_noise_z : float
        ... plus this many standard deviations of the Poisson noise of a
        ``rate_window_s`` mean of that rate (``sqrt(rate / 60)``), the noise the observed
        rate moves by.
    zero_rps : float
        Forecast upper bound under which the service may go to zero replicas.
    vertical : bool
        Whether to raise CPU quotas in place.
    planner : {'pool', 'heuristic', 'exact'}
        ``'pool'`` sizes the replica pool as a shared queue (M/G/c) from the flavors'
        service-time quantiles (falls back to the heuristic without them);
        ``'heuristic'``/``'exact'`` add per-replica capacities (part-1 planner).
    mix_band : float
        A change of flavor mix (rather than adding or trimming replicas of the current
        one) must save this fraction of the price.

    """

    forecaster: str | None = "seasonal_naive_weekly"
    level: int = 95
    history_bins: int = 24 * 7 * 5
    error_quantile: float = 0.5
    error_window: int = 240
    min_margin: float = 0.0
    max_margin: float = 0.5
    initial_margin: float = 0.1
    noise_z: float = 2.0
    rate_window_s: float = 60.0
    burst_window_s: float = 10.0
    scale_in_window_s: float = 60.0
    scale_in_band: float = 0.02
    scale_in_noise_z: float = 3.0
    zero_rps: float = 0.05
    vertical: bool = True
    planner: str = "pool"
    mix_band: float = 0.1
    period_s: float = 15.0
    name: str = "edgewise"

    # ------------------------------------------------------------------ decide
    def decide(self, ctx: ScalingContext) -> tuple[ScalingDecision, PolicyState]:
        st = ctx.policy_state
        delta = ctx.startup_s + ctx.period_s
        hold_s = self.scale_in_hold_s(ctx)
        arrivals = ctx.metrics.arrival_rps
        window_s, burst_s = self.rate_window_s, self.burst_window_s
        rate_now = mean_last(arrivals, window_s)
        rate_recent_max = max_block_mean(arrivals, max(1, round(burst_s)), window_s)

        forecast = self._forecast(ctx, st.get("forecast"))
        shape_now = _curve(ctx, forecast, ctx.now, "mean")
        shape_ahead = _curve(ctx, forecast, ctx.now + delta, "mean")
        if shape_now is not None and shape_ahead is not None and shape_now > 0:
            ratio = min(2.0, max(0.5, shape_ahead / shape_now))
        else:
            ratio = 1.0
        trend = rate_now * ratio if rate_now > 0 else (shape_ahead or 0.0)

        # Relative errors of past predictions against the window's mean centred on their time.
        errors, pending = _calibrate(st, ctx.now, rate_now, self.error_window)
        margin = self._margin(errors)
        # A burst counts as a surge only beyond the Poisson noise of its window's mean.
        surge = rate_recent_max - self.noise_z * math.sqrt(max(rate_recent_max, 0.0) / burst_s)
        rate_q = max(trend * (1.0 + margin), surge)
        pending.append([ctx.now + delta + window_s / 2, trend])
        # What the forecast expects once the scale-in window has passed: no scale-in
        # right before a ramp (it would be reversed within the window).
        shape_later = _curve(ctx, forecast, ctx.now + delta + hold_s, "mean")
        later = 0.0
        if shape_now is not None and shape_later is not None and shape_now > 0:
            later = rate_now * min(2.0, shape_later / shape_now) * (1.0 + margin)

        # Scale to zero when nothing came for a whole rate window (one observed, not an
        # empty history: a service just started has seen nothing yet) and the forecast's
        # upper bound is about zero.
        upper_ahead = _curve(ctx, forecast, ctx.now + delta, "upper")
        window_n = max(1, round(window_s))
        observed = arrivals.size >= window_n
        idle = observed and float(arrivals[-window_n:].sum()) == 0.0
        if (idle and upper_ahead is not None and upper_ahead < self.zero_rps) or (
            idle and forecast is None
        ):
            rate_q = 0.0

        flavors = ctx.flavors
        sizer = make_sizer(flavors, ctx.slo_ms, ctx.slo_percentile, self.planner)
        current = {f.name: int(ctx.replicas.get(f.name, 0)) for f in flavors}
        ready = {f.name: ctx.ready(f.name) for f in flavors}

        # Hysteresis: scale in for the largest rate of the window plus a band.
        window = [
            [float(t), float(r)] for t, r in st.get("recent", []) if ctx.now - float(t) < hold_s
        ]
        window.append([ctx.now, rate_q])
        held = max(max(r for _, r in window), later if rate_q > 0 else 0.0)
        serves_now = sizer.serves(current)
        last_up = float(st.get("last_up") or -math.inf)
        if serves_now < rate_q * (1 - 1e-9):
            target, why = resize(sizer, current, rate_q, self.mix_band), "scale out ahead"
        elif ctx.now - last_up < hold_s:
            target, why = current, "hold (scaled out recently)"
        elif not observed:
            target, why = current, "hold (less than a rate window observed)"
        else:
            need = held * (1.0 + self.scale_in_band) + self.scale_in_noise_z * math.sqrt(
                held / window_s
            )
            plan_down = sizer.plan(need)
            if held == 0.0 and rate_q == 0.0:
                plan_down = {f.name: 0 for f in flavors}
            if _price(flavors, plan_down) < _price(flavors, current) - 1e-12:
                target = resize(sizer, current, need, self.mix_band) if need > 0 else plan_down
                why = "scale in (held)"
            else:
                target, why = current, "hold"
        target = make_before_break(flavors, target, ready, rate_recent_max, sizer.serves)

        cpus = self._vertical(ctx, sizer, ready, max(rate_recent_max, rate_now))
        reason = (
            f"edgewise {why}: now={rate_now:.2f} trend={trend:.2f} q={rate_q:.2f} "
            f"margin={margin:.3f}"
        )
        if _price(flavors, target) > _price(flavors, current) + 1e-12:
            last_up = ctx.now
        state: PolicyState = {
            "last_up": last_up if math.isfinite(last_up) else None,
            "forecast": forecast,
            "errors": errors,
            "pending": pending,
            "recent": window,
        }
        return ScalingDecision(target, cpus, reason), state

    # ------------------------------------------------------------------ parts
    def scale_in_hold_s(self, ctx: ScalingContext) -> float:
        """How long a lower plan must hold before replicas go: at least a start-up and a period.

        Keeping a replica that turns out unneeded costs its price for the hold; removing
        one that is needed again costs a start-up (billed, and capacity missing meanwhile).
        Holding about one start-up plus a control period is the break-even (the
        ski-rental rule): longer holds pay more than the start-ups they save.
        """
        return max(self.scale_in_window_s, ctx.startup_s + ctx.period_s)

    def _margin(self, errors: Sequence[float]) -> float:
        if len(errors) < 20:
            return self.initial_margin
        q = _quantile(errors, self.error_quantile)
        return min(self.max_margin, max(self.min_margin, q))

    def _vertical(
        self,
        ctx: ScalingContext,
        sizer: Sizer,
        ready: dict[str, int],
        need_rps: float,
    ) -> dict[str, float]:
        """CPUs per replica: nominal, or raised in place while ready capacity falls short."""
        cpus = {f.name: f.cpus for f in ctx.flavors}
        if not self.vertical:
            return cpus
        cap = sizer.serves(ready)
        if cap <= 0 or need_rps <= cap:
            return cpus
        boost = need_rps / cap * 1.1
        for f in ctx.flavors:
            cpus[f.name] = min(f.max_cpus, f.cpus * boost)
        return cpus

    def _forecast(self, ctx: ScalingContext, cached: Any) -> dict[str, Any] | None:
        """Forecast of the bins after ``history_end``, refitted once per bin (cached in state)."""
        if isinstance(cached, dict) and cached.get("key") == ctx.history_end:
            return cached
        if self.forecaster is None:
            return None
        bin_s = ctx.history_bin_s
        trace_bin_s = bin_s * ctx.time_scale  # seasons are in trace time
        week = round(7 * 86400 / trace_bin_s)
        day = round(86400 / trace_bin_s)
        history = np.asarray(ctx.rate_history[-self.history_bins :], dtype=float)
        if len(history) < 2 * week or day < 1:
            return None
        try:
            from edgewise.forecast import make_forecaster
        except ImportError:
            return None
        h = max(2, math.ceil((ctx.startup_s + 2 * ctx.period_s) / bin_s) + 2)
        model = make_forecaster(self.forecaster, season_lengths=(day, week))
        result = model.forecast(history, h, level=(self.level,))
        mean = np.maximum(np.asarray(result.mean, dtype=float), 0.0)
        upper_raw = result.upper.get(self.level) if result.upper else None
        upper = (
            np.maximum(np.asarray(upper_raw, dtype=float), mean) if upper_raw is not None else mean
        )
        return {
            "key": ctx.history_end,
            "last": [float(v) for v in history[-2:]],
            "mean": [float(v) for v in mean],
            "upper": [float(v) for v in upper],
        }


def _curve(
    ctx: ScalingContext,
    forecast: dict[str, Any] | None,
    t: float,
    which: str,
) -> float | None:
    """Rate at time ``t`` on the line through the bin centres (history, then forecast)."""
    if forecast is None:
        return None
    bin_s = ctx.history_bin_s
    last = forecast["last"]
    values = [*last, *forecast[which]]
    x = (t - ctx.history_end) / bin_s + len(last) - 0.5  # position in bin-centre units
    if x <= 0:
        return float(values[0])
    if x >= len(values) - 1:
        return float(values[-1])
    i = int(x)
    frac = x - i
    return float(values[i] * (1.0 - frac) + values[i + 1] * frac)


def _quantile(values: Sequence[float], q: float) -> float:
    """Quantile with linear interpolation (numpy's default), for short lists."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    i = int(pos)
    if i + 1 >= len(ordered):
        return float(ordered[-1])
    return float(ordered[i] + (ordered[i + 1] - ordered[i]) * (pos - i))


def _calibrate(
    st: Any,
    now: float,
    realised: float,
    keep: int,
) -> tuple[list[float], list[list[float]]]:
    """Close predictions whose time has come: relative error of realised over predicted."""
    errors = list(st.get("errors", []))
    pending: list[list[float]] = []
    for t, pred in st.get("pending", []):
        if float(t) <= now:
            if float(pred) > 0:
                errors.append(realised / float(pred) - 1.0)
        else:
            pending.append([float(t), float(pred)])
    return errors[-keep:], pending


def _price(flavors: Sequence[Any], counts: dict[str, int]) -> float:
    return sum(f.price_per_hour * counts.get(f.name, 0) for f in flavors)
