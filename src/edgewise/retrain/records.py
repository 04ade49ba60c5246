"""Knowledge-base records of re-training: jobs, checkpoints and cached device profiles.

Data contract (the report reads it). One ``TrainingJob`` row per run (``name``,
``model``, ``status``, ``config``) whose ``metrics`` hold::

    accuracy_before, accuracy_after, train_s,
    timeline:   [{device, step, t_start, t_end}]         (s since the run's first step)
    failure:    {device, t_kill, t_detect, t_resume}     (same clock; only with a failure)
    background: {DEVICE: {p50_ms, p99_ms, deadline_ms, miss_rate}}
    plan:       RetrainPlan.to_dict()
    replans:    [{t, step, reasons, shares}]             (load-aware re-plans, same clock)

``Checkpoint`` rows are written as checkpoints appear, one transaction each. Device
profiles are cached as ``FittedModel(kind='retrain-profile', name=<pool hash>)``; a
newer version with ``meta.stale=True`` asks the next run to re-profile (measured step
throughput drifted more than 20 % from the profile's prediction). They are stored as
data, format ``edgewise.retrain-profiles`` (:class:`ProfileSet`, registered here).

:func:`job_metrics`, :func:`pool_key` and :func:`measured_drift` are pure; the rest
write or read the KB.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edgewise.config import DeviceSpec
from edgewise.errors import EdgewiseError, UnknownNameError
from edgewise.kb.codecs import Codec, Encoded, register
from edgewise.planning.retrain import DeviceProfile, RetrainPlan
from edgewise.retrain.profiler import needs_reprofile, profiles_from_json, profiles_to_json

PROFILE_KIND = "retrain-profile"

#: Format name of stored device profiles (see :mod:`edgewise.kb.codecs`).
PROFILES_FORMAT = "edgewise.retrain-profiles"


@dataclass(frozen=True)
class ProfileSet:
    """The device profiles of one pool, as stored in the knowledge base."""

    profiles: Mapping[str, DeviceProfile]

    def to_state(self) -> dict[str, Any]:
        """Plain JSON data (:func:`~edgewise.retrain.profiler.profiles_to_json`)."""
        return profiles_to_json(self.profiles)

    @staticmethod
    def from_state(state: Mapping[str, Any]) -> ProfileSet:
        """The profile set :meth:`to_state` described."""
        return ProfileSet(profiles_from_json(state))


register(
    Codec(
        format=PROFILES_FORMAT,
        version=1,
        type_of=lambda: ProfileSet,
        encode=lambda profiles: Encoded(profiles.to_state()),
        decode=lambda state, _parts, _version: ProfileSet.from_state(state),
    )
)


def pool_key(devices: Sequence[DeviceSpec], model: str, data: str, batch: int) -> str:
    """Stable hash of what a profile depends on (devices, their apps, model, data, batch)."""
    raw = json.dumps(
        {
            "devices": [d.model_dump(mode="json") for d in devices],
            "model": model,
            "data": data,
            "batch": batch,
        },
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def job_metrics(
    steps: Sequence[Mapping[str, Any]],
    failures: Sequence[Mapping[str, Any]],
    *,
    accuracy_before: float,
    accuracy_after: float,
    background: Mapping[str, Mapping[str, float]],
    plan: RetrainPlan,
    replans: Sequence[Mapping[str, Any]] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``TrainingJob.metrics`` dict of one run (see the module docstring)."""
    t0 = min((float(s["t0"]) for s in steps), default=0.0)
    t1 = max((float(s["t"]) for s in steps), default=t0)
    out: dict[str, Any] = {
        "accuracy_before": float(accuracy_before),
        "accuracy_after": float(accuracy_after),
        "train_s": t1 - t0,
        "t0_unix": t0,
        "timeline": [
            {
                "device": str(s["device"]),
                "step": int(s["step"]),
                "t_start": float(s["t0"]) - t0,
                "t_end": float(s["t"]) - t0,
                "share": int(s.get("share", 0)),
            }
            for s in steps
        ],
        "background": {k: dict(v) for k, v in background.items()},
        "plan": plan.to_dict(),
        "replans": [{**dict(r), "t": float(r["t"]) - t0} for r in replans],
    }
    for f in failures:
        if "t_kill" not in f:
            continue
        after = [float(s["t"]) for s in steps if s.get("generation") == f["generation"] + 1]
        out["failure"] = {
            "device": ", ".join(f["devices"]),
            "t_kill": float(f["t_kill"]) - t0,
            "t_detect": float(f["t_detect"]) - t0,
            "t_resume": (min(after) - t0) if after else None,
        }
        break
    if extra:
        out.update(extra)
    return out


def measured_drift(
    steps: Sequence[Mapping[str, Any]], plan: RetrainPlan, tolerance: float = 0.2
) -> tuple[float, bool]:
    """Median measured step time over the plan's prediction, and whether it drifted.

    The group's throughput is ``B / step time``; a ratio outside ``1 ± tolerance``
    means the profile no longer describes the devices.
    """
    by_step: dict[int, list[float]] = {}
    for s in steps:
        by_step.setdefault(int(s["step"]), []).append(float(s["t"]) - float(s["t0"]))
    if not by_step or plan.step_time_s <= 0:
        return 1.0, False
    measured = float(np.median([max(v) for v in by_step.values()]))
    predicted_sps = plan.global_batch / plan.step_time_s
    measured_sps = plan.global_batch / measured if measured > 0 else 0.0
    return measured / plan.step_time_s, needs_reprofile(predicted_sps, measured_sps, tolerance)


# ---------------------------------------------------------------- effects


def start_job(kb: Any, name: str, model: str, config: Mapping[str, Any]) -> int:
    """Insert a ``running`` TrainingJob; returns its id."""
    from edgewise.kb import models as m

    with kb.transaction() as s:
        job = m.TrainingJob(name=name, model=model, status="running", config=dict(config))
        s.add(job)
        s.flush()
        return int(job.id)


def record_checkpoint(
    kb: Any, job_id: int, step: int, path: Path, meta: Mapping[str, Any] | None = None
) -> None:
    """One Checkpoint row (its own transaction)."""
    from edgewise.kb import models as m

    with kb.transaction() as s:
        s.add(m.Checkpoint(job_id=job_id, step=int(step), path=str(path), meta=dict(meta or {})))


def finish_job(kb: Any, job_id: int, status: str, metrics: Mapping[str, Any]) -> None:
    """Set the job's final status and metrics."""
    from edgewise.kb import models as m

    with kb.transaction() as s:
        job = s.get(m.TrainingJob, job_id)
        if job is None:
            raise UnknownNameError(f"no training job with id {job_id}")
        job.status = status
        job.metrics = json.loads(json.dumps(dict(metrics), default=float))
        job.finished_at = datetime.now(UTC)


def load_profiles(kb: Any, key: str) -> dict[str, DeviceProfile] | None:
    """Cached profiles of a pool, or ``None`` (absent, or marked stale)."""
    from edgewise.kb import load_model

    try:
        obj, row = load_model(kb, PROFILE_KIND, key)
    except UnknownNameError:
        return None
    if (row.meta or {}).get("stale"):
        return None
    if not isinstance(obj, ProfileSet):
        raise EdgewiseError(f"stored {PROFILE_KIND} {key!r} is not a set of device profiles")
    return dict(obj.profiles)


def save_profiles(
    kb: Any,
    key: str,
    profiles: Mapping[str, DeviceProfile],
    stale: bool = False,
    metrics: Mapping[str, Any] | None = None,
) -> None:
    """Store profiles as the next version of ``retrain-profile/<key>``."""
    from edgewise.kb import save_model

    save_model(
        kb,
        PROFILE_KIND,
        key,
        ProfileSet(dict(profiles)),
        features=sorted(profiles),
        metrics=dict(metrics or {}),
        meta={"stale": stale},
    )
