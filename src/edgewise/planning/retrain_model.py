"""The retrain planner's values: devices, profiles, constraints, plans, step times.

Immutable inputs and outputs of :mod:`edgewise.planning.retrain` (which re-exports
them), with the two formulas every planner shares: the communication cost of a group
(:func:`comm_cost`) and the predicted step time of shares (:func:`step_time`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class DeviceState:
    """What the planner knows about a device right now.

    ``deadline_ms`` is the background app's latency bound at its percentile (``None``:
    no latency-critical app). ``alive=False`` removes the device from every plan.
    """

    name: str
    cpus: float
    memory_mb: float
    deadline_ms: float | None = None
    alive: bool = True


@dataclass(frozen=True)
class Intensity:
    """One candidate training intensity on a device and what it does there."""

    threads: int
    nice: int
    throughput_sps: float
    bg_latency_ms: float = 0.0

    @property
    def label(self) -> str:
        return f"t{self.threads}n{self.nice}"


@dataclass(frozen=True)
class DeviceProfile:
    """Measured or predicted behaviour of one device at each candidate intensity."""

    name: str
    intensities: tuple[Intensity, ...]
    solo_latency_ms: float = 0.0


@dataclass(frozen=True)
class RetrainConstraints:
    """Job-level constraints: global batch, deadline margin, memory and communication."""

    global_batch: int
    deadline_margin: float = 0.1
    model_mb: float = 0.0
    per_sample_mb: float = 0.0
    comm_fixed_s: float = 0.0
    comm_per_device_s: float = 0.0

    def __post_init__(self) -> None:
        if self.global_batch < 1:
            raise ValueError(f"global_batch must be >= 1, got {self.global_batch}")
        if not 0.0 <= self.deadline_margin < 1.0:
            raise ValueError(f"deadline_margin must be in [0, 1), got {self.deadline_margin}")


@dataclass(frozen=True)
class RetrainPlan:
    """A plan: shares and intensities for the selected devices, and why.

    ``shares`` and ``intensities`` only hold selected devices (share ≥ 1); the shares
    sum to the global batch. ``step_time_s`` is the predicted time of one step.
    """

    method: str
    shares: dict[str, int]
    intensities: dict[str, Intensity]
    step_time_s: float
    explanation: dict[str, str] = field(default_factory=dict)

    @property
    def devices(self) -> list[str]:
        return list(self.shares)

    @property
    def global_batch(self) -> int:
        return sum(self.shares.values())

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "shares": dict(self.shares),
            "intensities": {
                n: {"threads": k.threads, "nice": k.nice, "throughput_sps": k.throughput_sps}
                for n, k in self.intensities.items()
            },
            "step_time_s": self.step_time_s,
            "explanation": dict(self.explanation),
        }


# ---------------------------------------------------------------- math helpers


def comm_cost(n: int, constraints: RetrainConstraints) -> float:
    """Per-step communication cost of an ``n``-device group (0 for one device)."""
    if n <= 1:
        return 0.0
    return constraints.comm_fixed_s + constraints.comm_per_device_s * (n - 1)


def step_time(
    shares: Mapping[str, int], intensities: Mapping[str, Intensity], c: RetrainConstraints
) -> float:
    """Predicted step time ``max_i b_i/θ_i + c(n)`` of given shares and intensities."""
    active = [n for n, b in shares.items() if b > 0]
    if not active:
        return float("inf")
    compute = max(shares[n] / intensities[n].throughput_sps for n in active)
    return compute + comm_cost(len(active), c)
