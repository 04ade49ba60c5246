"""What defines a campaign: its configuration, default stress space and feature names.

Pure data: :class:`CampaignConfig` is stored with the campaign (``to_json``) and checked
on resume; :func:`resources_of` says which resource features a campaign's space yields;
:func:`default_campaign_name` names a campaign from the user's inputs alone.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from edgewise.config import RESOURCES, StressSpace
from edgewise.interference.gpu import GPU_RESOURCES

SOLO_FEATURES: tuple[str, ...] = ("solo_cpu", "solo_log_p50")
FEATURES: tuple[str, ...] = (*RESOURCES, *SOLO_FEATURES)
Confine = Literal["taskset", "cgroup"]
Method = Literal["active", "lhs", "sobol"]


def resources_of(space: Mapping[str, Any]) -> tuple[str, ...]:
    """Resource features of a campaign: the host resources, plus GPU ones it explores."""
    extra = tuple(r for r in GPU_RESOURCES if r in space)
    if "gpu" in space and "gpumem" not in extra:
        extra = (*extra, "gpumem")
    return (*RESOURCES, *extra)


DEFAULT_SPACE = StressSpace(
    resources={
        "cpu": (0.0, 0.9),
        "membw": (0.0, 0.8),
        "llc": (0.0, 0.8),
        "disk": (0.0, 0.5),
        "net": (0.0, 0.5),
    }
)


def default_space() -> dict[str, tuple[float, float]]:
    """The built-in stress space as a plain ``{resource: (low, high)}`` dict."""
    return {str(k): v for k, v in DEFAULT_SPACE.resources.items()}


@dataclass(frozen=True)
class CampaignConfig:
    """Everything that defines a campaign (stored with it, checked on resume)."""

    name: str
    budget: int = 30
    seconds: float = 6.0
    warmup_s: float = 1.5
    seed: int = 0
    method: Method = "active"
    n_seed: int | None = None
    solo_runs: int = 2
    solo_every: int = 10
    space: dict[str, tuple[float, float]] = field(default_factory=default_space)
    stress_cpus: tuple[int, ...] | None = None
    cpu_stress_cpus: tuple[int, ...] | None = None
    confine: Confine = "taskset"
    foreign_threshold: float = 0.25
    max_repeats: int = 1
    target_cv_ape: float = 0.0
    surrogates: tuple[str, ...] = ("gp", "gbq", "linear")
    normalise: bool = True
    warm_start: bool = False
    curve_step: int = 5

    def seed_size(self) -> int:
        """Runs of the seed design (LHS or Sobol) before active sampling takes over."""
        if self.method != "active":
            return self.budget
        return (
            self.n_seed
            if self.n_seed is not None
            else max(2, min(self.budget, math.ceil(0.5 * self.budget)))
        )

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in the campaign's ``config`` column."""
        d = asdict(self)
        d["space"] = {k: list(v) for k, v in self.space.items()}
        d["surrogates"] = list(self.surrogates)
        d["stress_cpus"] = list(self.stress_cpus) if self.stress_cpus else None
        d["cpu_stress_cpus"] = list(self.cpu_stress_cpus) if self.cpu_stress_cpus else None
        return d

    @property
    def resources(self) -> tuple[str, ...]:
        """Resource features of this campaign's space (:func:`resources_of`)."""
        return resources_of(self.space)


def _space_tag(space: Mapping[str, tuple[float, float]] | None) -> str:
    """``''`` for the built-in space, else ``-space`` and 8 hex digits of its content."""
    if space is None:
        return ""
    norm = {str(k): [float(v[0]), float(v[1])] for k, v in space.items()}
    if norm == {k: list(v) for k, v in default_space().items()}:
        return ""
    digest = hashlib.sha256(json.dumps(norm, sort_keys=True).encode()).hexdigest()
    return f"-space{digest[:8]}"


def default_campaign_name(
    app: str,
    *,
    rate_rps: float = 20.0,
    load: float | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    confine: str = "none",
    space: Mapping[str, tuple[float, float]] | None = None,
    seed: int = 0,
) -> str:
    """The name of a campaign the user did not name, from the inputs they gave alone.

    Nothing measured enters it (the rate a ``load`` resolves to is timed at start and
    moves with the host's speed), so the same command names the same campaign and
    ``--resume`` finds it. A zoo model at a rate keeps its workload's name
    (``digits_cnn@20rps-seed0``, as campaigns were named before); at a load it reads
    ``digits_cnn@load0.2-seed0``; a non-default confinement and a custom stress space
    (by a hash of its bounds) are added before the seed.

    Parameters
    ----------
    app : str
        A zoo model, ``model@RATErps[xB][:cuda]`` or ``cmd:COMMAND``, as given.
    rate_rps, load, batch_size, device
        A zoo model's rate, or the fraction of its solo capacity; batch size; device.
    confine : str
        ``none``, ``taskset``, ``cgroup`` or ``split``.
    space : mapping, optional
        The stress space explored (``None`` or the built-in one adds nothing).
    seed : int
        The campaign's seed.

    Returns
    -------
    str
        The campaign name.
    """
    from edgewise.interference.target import parse_workload_name, workload_device, workload_name

    parsed = parse_workload_name(app)
    if app.startswith("cmd:"):
        base = app
    elif parsed is not None:
        base = workload_name(*parsed, device=workload_device(app))
    elif load is not None:
        base = (
            f"{app}@load{load:g}"
            + (f"x{batch_size}" if batch_size > 1 else "")
            + (":cuda" if device == "cuda" else "")
        )
    else:
        base = workload_name(app, rate_rps, batch_size, device)
    confined = "" if confine == "none" else f"-{confine}"
    return f"{base}{confined}{_space_tag(space)}-seed{seed}"
