"""Held-out points: fresh stress mixes measured after a campaign to score its model.

Pure part: :func:`holdout_design` and :func:`space_centre` (where to measure),
:func:`combine_repeats` (one truth from repeated windows), :class:`HeldOutPoint` and
:func:`holdout_records` (a model's predictions beside the measured truth), and the noise
floor of the same run: :func:`perfect_predictor_apes`, :func:`noise_floor_ape`,
:func:`reference_spread` and :func:`judge_host` (was the host steady enough to judge).
Effectful part: :func:`measure_holdout_and_solos` drives a started target through the
points, with solo baselines before, between and after them, and :func:`measure_noise`
through the noise-floor repeats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgewise.interference import doe
from edgewise.interference.campaign.fit import reference_at
from edgewise.interference.campaign.measure import Measured


@dataclass(frozen=True)
class HeldOutPoint:
    """One held-out stress mix and what was measured there.

    Attributes
    ----------
    pos : int
        Position among the held-out points (1-based; the solo baselines sit between).
    design : dict
        Requested intensities.
    achieved, latency : dict
        The measured truth (over ``repeats``: mean intensities, median latencies).
    reference : dict or None
        Solo latency interpolated between the held-out baselines around the point.
    repeats : tuple of dict
        Each window's ``{'achieved', 'latency'}`` when the point was measured repeatedly.
    """

    pos: int
    design: dict[str, float]
    achieved: dict[str, float]
    latency: dict[str, Any]
    reference: dict[str, float] | None = None
    repeats: tuple[dict[str, Any], ...] = field(default=())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HeldOutPoint:
        """From the benchmark's dict shape (missing keys take their defaults)."""
        ref = d.get("reference")
        return cls(
            pos=int(d.get("pos", 0)),
            design=dict(d.get("design") or {}),
            achieved=dict(d.get("achieved") or {}),
            latency=dict(d.get("latency") or {}),
            reference=dict(ref) if ref else None,
            repeats=tuple(d.get("repeats") or ()),
        )

    def as_dict(self) -> dict[str, Any]:
        """The benchmark's JSON shape (``repeats`` only when repeated)."""
        out: dict[str, Any] = {
            "pos": self.pos,
            "design": dict(self.design),
            "achieved": dict(self.achieved),
            "latency": dict(self.latency),
        }
        if self.repeats:
            out["repeats"] = [dict(r) for r in self.repeats]
        out["reference"] = dict(self.reference) if self.reference else None
        return out

    def first_window(self) -> HeldOutPoint:
        """The point as its first repeat alone measured it."""
        if not self.repeats:
            return self
        first = self.repeats[0]
        return HeldOutPoint(
            self.pos, self.design, dict(first["achieved"]), dict(first["latency"]), self.reference
        )


HeldLike = HeldOutPoint | Mapping[str, Any]


def as_held(h: HeldLike) -> HeldOutPoint:
    """``h`` as a :class:`HeldOutPoint` (a dict is converted)."""
    return h if isinstance(h, HeldOutPoint) else HeldOutPoint.from_dict(h)


def holdout_design(
    space: Mapping[str, tuple[float, float]], n: int, seed: int
) -> list[dict[str, float]]:
    """``n`` stress mixes drawn uniformly from ``space`` with ``seed`` (4 decimals)."""
    rng = np.random.default_rng(seed)
    names, lo, hi = doe.space_bounds(dict(space))
    return [
        dict(zip(names, (lo + rng.random(len(names)) * (hi - lo)).round(4).tolist(), strict=True))
        for _ in range(n)
    ]


def space_centre(space: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """The centre of ``space``: where the noise-floor repeats run."""
    names, lo, hi = doe.space_bounds(dict(space))
    return {n: round(float((lo[i] + hi[i]) / 2), 4) for i, n in enumerate(names)}


def combine_repeats(measured: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One held-out truth from repeated measurements of a point.

    Each numeric latency figure is the median over the repeats; the achieved vector is
    the mean (the model is fed the intensities the repeats averaged).
    """
    if not measured:
        raise ValueError("no measurement to combine")
    latency: dict[str, Any] = {}
    for key, v0 in measured[0]["latency"].items():
        vals = [m["latency"].get(key) for m in measured]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)
        latency[key] = float(np.median([float(v) for v in vals])) if numbers else v0
    achieved = {
        key: float(np.mean([float(m["achieved"].get(key, 0.0)) for m in measured]))
        for key in measured[0]["achieved"]
    }
    return {"achieved": achieved, "latency": latency}


def holdout_records(
    model: Any, held: Sequence[HeldLike], corrected: bool = True
) -> list[dict[str, float]]:
    """The report's per-point rows for ``model`` on measured held-out points.

    ``corrected`` scales each prediction by the point's fresh ``reference`` solo latency;
    otherwise by the model's stored solo baseline (what the predictor does).
    """
    rows = []
    for h in map(as_held, held):
        out = model.predict(h.achieved, reference=h.reference if corrected else None)
        rows.append(
            {
                "measured_p50": float(h.latency["p50"]),
                "predicted_p50": float(out["p50"]),
                "lower_p50": float(out["lower"]["p50"]),
                "upper_p50": float(out["upper"]["p50"]),
                "measured_p99": float(h.latency["p99"]),
                "predicted_p99": float(out["p99"]),
                "lower_p99": float(out["lower"]["p99"]),
                "upper_p99": float(out["upper"]["p99"]),
            }
        )
    return rows


def row_ape(row: Mapping[str, float], percentile: str = "p50") -> float:
    """Absolute percentage error (%) of one :func:`holdout_records` row."""
    truth = row[f"measured_{percentile}"]
    return float(100.0 * abs(row[f"predicted_{percentile}"] - truth) / truth)


def noise_cv(latencies: Sequence[Mapping[str, float]], percentile: str) -> float:
    """Run-to-run coefficient of variation (%) of ``percentile`` over identical runs."""
    v = np.array([float(lat[percentile]) for lat in latencies])
    return float(100 * v.std(ddof=1) / v.mean()) if len(v) > 1 else float("nan")


#: Host CPU steal (share of all CPU time over the run) above which a run is not judged:
#: the hypervisor took that much of the time the latencies were measured in.
MAX_STEAL_FRAC = 0.05
#: Largest spread (max - min over the median) of an app's solo reference windows, the
#: baselines measured before, between and after its held-out points: beyond it the
#: host's speed moved more during the held-out phase than a model can be judged against.
MAX_REFERENCE_SPREAD = 0.25
#: Largest noise floor (%): identical back-to-back windows that disagree by more than
#: this leave too little signal to tell a model's error from the host's.
MAX_NOISE_FLOOR_APE = 15.0


def perfect_predictor_apes(windows: Sequence[float]) -> list[float]:
    """APE (%) a perfect predictor scores against each of repeated windows of one point.

    A perfect predictor predicts the point's true latency; each window is one noisy
    measurement of it. The true value is unknown, so the mean of the ``k`` windows stands
    in; a window deviates from that mean less than from the truth (variance
    ``(k - 1) / k`` of the window's), so each deviation is scaled by ``sqrt(k / (k - 1))``
    to give, for independent windows, the error against the truth itself.

    Parameters
    ----------
    windows : sequence of float
        The same latency figure (e.g. p50, ms) of ``k >= 2`` windows of one point.

    Returns
    -------
    list of float
        One APE per window, ``100 * |truth - window| / window``.
    """
    v = np.asarray(windows, dtype=float)
    k = len(v)
    if k < 2:
        raise ValueError(f"a noise floor needs at least 2 windows of a point, got {k}")
    scale = float(np.sqrt(k / (k - 1)))
    return [float(e) for e in 100.0 * scale * np.abs(v - v.mean()) / v]


def noise_floor_ape(groups: Iterable[Sequence[float]]) -> float | None:
    """Median APE (%) a perfect predictor scores against single windows.

    ``groups`` are repeated windows of the same points in the same run (one sequence per
    point; a point with fewer than two windows adds nothing). ``None`` without any
    repeated point.
    """
    apes = [e for g in groups if len(g) >= 2 for e in perfect_predictor_apes(g)]
    return float(np.median(apes)) if apes else None


def repeat_groups(
    held: Sequence[HeldLike], noise: Sequence[Mapping[str, float]], percentile: str = "p50"
) -> list[list[float]]:
    """The ``percentile`` of each point's back-to-back repeated windows: every held-out
    point measured more than once, and the identical runs at the centre of the space."""
    groups = [
        [float(r["latency"][percentile]) for r in h.repeats]
        for h in map(as_held, held)
        if len(h.repeats) >= 2
    ]
    if len(noise) >= 2:
        groups.append([float(n[percentile]) for n in noise])
    return groups


def reference_spread(latencies: Sequence[Mapping[str, float]], percentile: str = "p50") -> float:
    """Spread of repeated reference windows: ``(max - min) / median`` of ``percentile``
    (0 for fewer than two windows)."""
    v = np.array([float(lat[percentile]) for lat in latencies])
    if len(v) < 2:
        return 0.0
    return float((v.max() - v.min()) / np.median(v))


@dataclass(frozen=True)
class Steadiness:
    """Whether the host was steady enough for a run's latency figures to be judged.

    Attributes
    ----------
    steady : bool
        No bound was crossed.
    reasons : tuple of str
        One line per bound crossed, with the figure and the bound.
    """

    steady: bool
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str | None:
        """The reasons in one line, ``None`` for a steady host."""
        return "; ".join(self.reasons) or None


def judge_host(
    *,
    steal_frac: float | None,
    reference_spreads: Mapping[str, float],
    noise_floor: float | None,
    max_steal_frac: float = MAX_STEAL_FRAC,
    max_reference_spread: float = MAX_REFERENCE_SPREAD,
    max_noise_floor_ape: float = MAX_NOISE_FLOOR_APE,
) -> Steadiness:
    """Judge a run's host from its steal, its reference windows and its noise floor.

    Parameters
    ----------
    steal_frac : float or None
        CPU steal over the run (share of all CPU time); ``None`` when not measured.
    reference_spreads : mapping
        :func:`reference_spread` of each app's solo reference windows.
    noise_floor : float or None
        :func:`noise_floor_ape` of the run (%).
    max_steal_frac, max_reference_spread, max_noise_floor_ape : float
        The bounds (module constants by default).

    Returns
    -------
    Steadiness
        Unsteady with one reason per bound crossed.
    """
    reasons = []
    if steal_frac is not None and steal_frac > max_steal_frac:
        reasons.append(
            f"CPU steal {100 * steal_frac:.1f}% of the run (bound {100 * max_steal_frac:g}%)"
        )
    for app, spread in reference_spreads.items():
        if spread > max_reference_spread:
            reasons.append(
                f"{app}: solo reference windows spread {100 * spread:.0f}% "
                f"(bound {100 * max_reference_spread:g}%)"
            )
    if noise_floor is not None and noise_floor > max_noise_floor_ape:
        reasons.append(
            f"identical windows disagree by {noise_floor:.1f}% (noise floor bound "
            f"{max_noise_floor_ape:g}%)"
        )
    return Steadiness(not reasons, tuple(reasons))


#: ``measure(design, seed, warmup_s)``: one window of the started target.
MeasureAt = Callable[[Mapping[str, float], int, float], Measured]


def measure_holdout_and_solos(
    measure: MeasureAt,
    points: Sequence[Mapping[str, float]],
    *,
    seed: int,
    warmup_s: float,
    repeats_per_point: int,
    solo_every: int,
    say: Callable[[str, int, int], None],
) -> tuple[list[HeldOutPoint], list[dict[str, float]]]:
    """Measure every held-out point, with solo baselines before, every
    ``solo_every // 2`` points and after them; each point gets its interpolated solo
    ``reference``. The seeds are the benchmark's since its first version.

    Returns
    -------
    held : list of HeldOutPoint
        The points in order.
    solos : list of dict
        The solo baselines' latencies in order: the repeated reference windows.
    """
    held: list[HeldOutPoint] = []
    solos: list[tuple[float, dict[str, float]]] = []
    say("held-out solo baseline", 0, 0)
    solos.append((0, measure({}, seed * 7919 + 100000, 0.0).latency))
    for i, pt in enumerate(points):
        measured = []
        for r in range(repeats_per_point):
            say("held-out point", i, len(points))
            meas = measure(pt, seed * 7919 + i + 1_000_003 * r, warmup_s)
            measured.append({"achieved": meas.achieved, "latency": meas.latency})
        truth = combine_repeats(measured)
        repeats = tuple(measured) if repeats_per_point > 1 else ()
        held.append(
            HeldOutPoint(i + 1, dict(pt), truth["achieved"], truth["latency"], None, repeats)
        )
        if (i + 1) % max(1, solo_every // 2) == 0 or i + 1 == len(points):
            say("held-out solo baseline", 0, 0)
            solos.append((i + 1, measure({}, seed * 7919 + 100001 + i, 0.0).latency))
    placed = [
        HeldOutPoint(h.pos, h.design, h.achieved, h.latency, reference_at(h.pos, solos), h.repeats)
        for h in held
    ]
    return placed, [dict(lat) for _, lat in solos]


def measure_noise(
    measure: MeasureAt,
    centre: Mapping[str, float],
    *,
    seed: int,
    warmup_s: float,
    repeats: int,
    say: Callable[[str, int, int], None],
) -> list[dict[str, float]]:
    """Latencies of ``repeats`` identical runs at ``centre``: the noise floor."""
    out = []
    for r in range(repeats):
        say("noise repeat", r, repeats)
        out.append(measure(centre, seed + 1 + r, warmup_s).latency)
    return out
