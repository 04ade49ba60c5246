"""Per-host calibration: requested knob -> achieved intensity, inverted monotonically.

Pure part: :func:`fit_curve` turns (knob, achieved) measurements into a monotone
curve and :meth:`Calibration.knob` inverts it (piecewise-linear, so the inverse stays
monotone and never overshoots). Effectful part: :func:`calibrate` sweeps each stressor's knob
with real stress-ng runs, :func:`verify` measures how often a requested intensity
lands within ±5 points, and :func:`save_calibration` / :func:`load_calibration` keep
the result in the KB (``FittedModel`` kind ``'calibration'``, name = host name), as
data: the ``edgewise.calibration`` and ``edgewise.host-caps`` formats registered here.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from edgewise.interference.stressors import Achieved, HostCaps, run_stress
from edgewise.kb.codecs import Codec, Encoded, register

CALIBRATED: tuple[str, ...] = ("cpu", "membw", "llc", "disk", "net")
Runner = Callable[[Mapping[str, float], float], Achieved]


def fit_curve(knobs: Sequence[float], achieved: Sequence[float]) -> tuple[list[float], list[float]]:
    """Monotone non-decreasing achieved(knob) curve through (0, 0).

    Repeated knobs are averaged; violations of monotonicity are pooled (isotonic
    regression by pool-adjacent-violators).
    """
    k = np.asarray(knobs, dtype=float)
    a = np.asarray(achieved, dtype=float)
    if k.shape != a.shape or k.size == 0:
        raise ValueError("knobs and achieved must be non-empty and of equal length")
    ok = np.isfinite(k) & np.isfinite(a)
    k, a = k[ok], a[ok]
    xs = np.unique(k)
    ys = np.array([a[k == x].mean() for x in xs])
    ws = np.array([(k == x).sum() for x in xs], dtype=float)
    # pool adjacent violators
    blocks: list[list[float]] = []  # [value, weight, count]
    for y, w in zip(ys, ws, strict=True):
        blocks.append([float(y), float(w), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, c2 = blocks.pop()
            v1, w1, c1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2])
    fitted: list[float] = []
    for v, _, c in blocks:
        fitted += [max(0.0, v)] * int(c)
    x_out = [0.0, *xs.tolist()] if xs[0] > 0 else xs.tolist()
    y_out = [0.0, *fitted] if xs[0] > 0 else fitted
    return [float(x) for x in x_out], [float(y) for y in y_out]


def invert_curve(xs: Sequence[float], ys: Sequence[float], target: float) -> float:
    """Knob x at which the monotone curve reaches ``target`` (clipped to the knob range)."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if x.size < 2 or y[-1] <= y[0]:
        return float(np.clip(target, 0.0, 1.0))
    if target <= y[0]:
        return float(x[0])
    if target >= y[-1]:
        # beyond the measured range: extrapolate from the last rising segment, capped
        i = int(np.nonzero(np.diff(y) > 1e-9)[0][-1])
        slope = (y[i + 1] - y[i]) / max(1e-9, x[i + 1] - x[i])
        return float(min(1.0, x[-1] + (target - y[-1]) / slope))
    i = int(np.argmax(y >= target))  # first point reaching the target; y[i-1] < target
    frac = (target - y[i - 1]) / (y[i] - y[i - 1])
    return float(np.clip(x[i - 1] + frac * (x[i] - x[i - 1]), 0.0, 1.0))


@dataclass(frozen=True)
class Calibration:
    """Curves achieved(knob) per resource plus the host peaks they were measured with."""

    host: str
    caps: HostCaps
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)

    def knob(self, resource: str, requested: float) -> float:
        """Knob value expected to achieve ``requested`` (identity if uncalibrated)."""
        curve = self.curves.get(resource)
        if curve is None:
            return float(requested)
        return invert_curve(curve[0], curve[1], float(requested))

    def to_state(self) -> dict[str, Any]:
        """Plain JSON data: ``{host, caps: {...}, curves: {resource: [knobs, achieved]}}``."""
        return {
            "host": self.host,
            "caps": caps_to_state(self.caps),
            "curves": {k: [list(v[0]), list(v[1])] for k, v in self.curves.items()},
        }

    @staticmethod
    def from_state(state: Mapping[str, Any]) -> Calibration:
        """The calibration :meth:`to_state` described."""
        curves = {k: (list(v[0]), list(v[1])) for k, v in dict(state["curves"]).items()}
        return Calibration(str(state["host"]), caps_from_state(state["caps"]), curves)

    def to_dict(self) -> dict[str, Any]:
        """Same as :meth:`to_state` (the name reports use)."""
        return self.to_state()

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Calibration:
        """Same as :meth:`from_state`."""
        return Calibration.from_state(d)


def caps_to_state(caps: HostCaps) -> dict[str, Any]:
    """Host peaks as plain JSON data (the dataclass fields)."""
    return asdict(caps)


def caps_from_state(state: Mapping[str, Any]) -> HostCaps:
    """The :class:`HostCaps` of :func:`caps_to_state`."""
    return HostCaps(**dict(state))


CALIBRATION_FORMAT = "edgewise.calibration"
HOST_CAPS_FORMAT = "edgewise.host-caps"
register(
    Codec(
        format=CALIBRATION_FORMAT,
        version=1,
        type_of=lambda: Calibration,
        encode=lambda cal: Encoded(cal.to_state()),
        decode=lambda state, _parts, _version: Calibration.from_state(state),
    )
)
register(
    Codec(
        format=HOST_CAPS_FORMAT,
        version=1,
        type_of=lambda: HostCaps,
        encode=lambda caps: Encoded(caps_to_state(caps)),
        decode=lambda state, _parts, _version: caps_from_state(state),
    )
)


def host_name() -> str:
    return socket.gethostname()


def probe_caps(caps: HostCaps, seconds: float = 1.5) -> HostCaps:
    """Measure the peaks of memory bandwidth, disk and loopback stressors at full knob."""
    a = run_stress({"membw": 1.0}, seconds, caps=replace(caps, membw_mbs=1e6), warmup_s=0.5)
    d = run_stress({"disk": 1.0}, seconds, caps=caps, warmup_s=0.5)
    n = run_stress({"net": 1.0}, seconds, caps=caps, warmup_s=0.5)
    mbs = a.raw.get("membw_mbs")
    return replace(
        caps,
        membw_mbs=float(mbs) if mbs else caps.membw_mbs,
        disk_bps=float(d.raw.get("disk", 0.0)) or caps.disk_bps,
        net_cpu=float(n.raw.get("net", 0.0)) or caps.net_cpu,
    )


def calibrate(
    resources: Sequence[str] = CALIBRATED,
    levels: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
    seconds: float = 1.5,
    caps: HostCaps | None = None,
    runner: Runner | None = None,
    progress: Callable[[str], None] | None = None,
) -> Calibration:
    """Sweep each resource's knob alone and fit achieved(knob) curves.

    ``runner(intensity, seconds) -> Achieved`` is injectable (tests pass a fake);
    by default real stress-ng runs with the probed ``caps``.
    """
    caps = caps or HostCaps.default()
    if runner is None:
        probed = probe_caps(caps, seconds)

        def real(intensity: Mapping[str, float], secs: float) -> Achieved:
            return run_stress(intensity, secs, caps=probed, warmup_s=0.5)

        run: Runner = real
        caps = probed
    else:
        run = runner
    curves: dict[str, tuple[list[float], list[float]]] = {}
    for res in resources:
        ks: list[float] = []
        ys: list[float] = []
        for lv in levels:
            if progress:
                progress(f"{res} knob {lv:.2f}")
            ach = run({res: lv}, seconds)
            ks.append(lv)
            ys.append(float(ach.intensity.get(res, 0.0)))
        curves[res] = fit_curve(ks, ys)
    return Calibration(host_name(), caps, curves)


def verify(
    calibration: Calibration,
    requests: Sequence[Mapping[str, float]],
    runner: Callable[[Mapping[str, float], Calibration], Achieved],
    tolerance_points: float = 5.0,
) -> dict[str, Any]:
    """Fraction of (run, resource) pairs whose achieved value is within tolerance."""
    hits = 0
    total = 0
    deltas: list[float] = []
    for req in requests:
        ach = runner(req, calibration)
        for res, r in req.items():
            if r <= 0:
                continue
            d = 100.0 * (ach.intensity.get(res, 0.0) - r)
            deltas.append(d)
            total += 1
            hits += abs(d) <= tolerance_points
    return {
        "within": hits / total if total else float("nan"),
        "n": total,
        "median_abs_delta_points": float(np.median(np.abs(deltas))) if deltas else float("nan"),
    }


def save_calibration(
    kb: Any, calibration: Calibration, metrics: Mapping[str, Any] | None = None
) -> Any:
    """Store the calibration in the KB (FittedModel kind='calibration', name=host)."""
    from edgewise.kb import save_model

    return save_model(
        kb,
        "calibration",
        calibration.host,
        calibration,
        features=list(calibration.curves),
        metrics=dict(metrics or {}),
        meta={"caps": caps_to_state(calibration.caps)},
    )


def load_calibration(kb: Any, host: str | None = None) -> Calibration | None:
    """The latest calibration for ``host`` (default: this host), or None."""
    from edgewise.errors import EdgewiseError, UnknownNameError
    from edgewise.kb import load_model

    try:
        obj, _ = load_model(kb, "calibration", host or host_name())
    except UnknownNameError:
        return None
    if not isinstance(obj, Calibration):
        raise EdgewiseError(f"stored calibration of {host or host_name()!r} is not a calibration")
    return obj


def host_caps(kb: Any, probe: bool = True, seconds: float = 1.5) -> HostCaps:
    """This host's peaks: a stored calibration's, else stored probed caps, else probe now.

    Probing (``probe=True``) runs the membw, disk and net stressors at full knob once
    (a few seconds) and stores the result in the KB (``FittedModel`` kind
    ``'host_caps'``, name = host) so later runs normalise the same way.
    """
    from edgewise.errors import UnknownNameError
    from edgewise.kb import load_model, save_model

    cal = load_calibration(kb)
    if cal is not None:
        return cal.caps
    try:
        obj, _ = load_model(kb, "host_caps", host_name())
    except UnknownNameError:
        obj = None
    if isinstance(obj, HostCaps):
        return obj
    caps = HostCaps.default()
    if not probe:
        return caps
    probed = probe_caps(caps, seconds)
    save_model(kb, "host_caps", host_name(), probed, meta={"probed": True})
    return probed
