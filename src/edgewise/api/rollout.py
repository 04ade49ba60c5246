"""The rollout use case: move a running service to a new model version behind a gate.

:func:`rollout` finds the running service (the record ``edgewise serve`` left in the
state directory, or a Ray address), checks that the new version loads and takes the
serving model's input, then runs the rollout driver
(:func:`edgewise.serving.runtime.rollout.run_rollout`): a canary share of live traffic,
the gate on the service's SLO percentile and on accuracy (labelled requests, else
agreement with the serving version), then promotion replica by replica or a rollback
with the reason; the canary and the verdict are recorded in the service's knowledge base
(:mod:`edgewise.api.served`). :func:`rollout_under_load` is the benchmark's use case: a service of its
own, open-loop load at a share of its measured capacity, and a rollout during that load.
Effects: Ray, HTTP and the clock; every verdict is the pure gate's.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgewise.clock import WallClock
from edgewise.config import load_service
from edgewise.errors import SpecError
from edgewise.serving.rollout import RolloutPolicy, canary_percentile, check_compatible

BASELINE_S = 8.0
"""Seconds of load before each rollout of :func:`rollout_under_load` (its noise floor)."""

__all__ = ["LoadedRollout", "RolloutResult", "rollout", "rollout_under_load", "sample_request"]


@dataclass(frozen=True)
class RolloutResult:
    """How a rollout ended, with the figures the gate judged.

    Attributes
    ----------
    service, to : str
        The service and the version rolled out.
    promoted, rolled_back : bool
        Every replica answers with the new version, or the serving one still does.
    reason : str
        The gate's reason (or what went wrong), in words.
    canary_share : float
        Share of requests the canary answered while judged.
    canary_requests : int
        Canary answers the verdict rested on.
    canary_latency_ms : float
        The canary's latency at the SLO percentile (NaN: no answer).
    agreement : float or None
        Share of canary answers equal to the serving version's (``None``: none compared).
    slo_ms, slo_percentile : float
        The service's SLO.
    load_s, canary_s, promote_s : float
        Seconds to load the new version everywhere, to judge it, to promote it.
    replicas : int
        Replicas promoted (0 when rolled back).
    steps : tuple of str
        What happened, one line per step.
    """

    service: str
    to: str
    promoted: bool
    rolled_back: bool
    reason: str
    canary_share: float
    canary_requests: int
    canary_latency_ms: float
    agreement: float | None
    slo_ms: float
    slo_percentile: float
    load_s: float
    canary_s: float
    promote_s: float
    replicas: int
    steps: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready data."""
        out = asdict(self)
        out["steps"] = list(self.steps)
        return out


def rollout(
    *,
    service: Path,
    to: str,
    canary_share: float | None = None,
    min_requests: int | None = None,
    min_agreement: float | None = None,
    max_accuracy_drop: float | None = None,
    max_canary_s: float | None = None,
    address: str | None = None,
    kb: str | None = None,
) -> RolloutResult:
    """Roll the running service out to ``to`` behind the SLO and accuracy gate.

    Parameters
    ----------
    service : Path
        The service YAML the service runs with (its name and SLO).
    to : str
        The new version: ``NAME:vN``, or any model reference the replicas can load.
    canary_share, min_requests, min_agreement, max_accuracy_drop, max_canary_s
        The gate's thresholds (see :class:`edgewise.serving.rollout.RolloutPolicy`);
        ``None`` takes the service YAML's ``rollout:`` setting (or its default).
    address : str, optional
        Ray address of the service (default: the one its record names).
    kb : str, optional
        Knowledge base URL the new version is looked up in (default: the service's).

    Returns
    -------
    RolloutResult
        Promoted, or rolled back with the reason; the service keeps serving either way.

    Raises
    ------
    EdgewiseError
        A bad service file, no such running service, a version that does not exist or
        does not load, a model with another input: one line, and nothing changes.
    """
    from edgewise.serving.runtime.rollout import CoordinatorPort, run_rollout
    from edgewise.serving.runtime.services import attach_coordinator, read_record

    spec = load_service(service)
    given = {
        "canary_share": canary_share,
        "min_requests": min_requests,
        "min_agreement": min_agreement,
        "max_accuracy_drop": max_accuracy_drop,
        "max_canary_s": max_canary_s,
    }
    settings = {**spec.rollout.model_dump(), **{k: v for k, v in given.items() if v is not None}}
    policy = RolloutPolicy(**settings)
    record = read_record(spec.name) if address is None else {}
    kb = kb or record.get("kb")
    checked = record.get("model")
    check_version(to, checked, kb)  # before anything of the service is touched
    with attach_coordinator(spec.name, address) as coordinator:
        port = CoordinatorPort(coordinator)
        view = port.rollout_view()
        if view.get("rollout") is not None:
            raise SpecError(
                f"service {spec.name!r} is already rolling out {view['rollout']['ref']}; "
                "wait for it to end"
            )
        serving = view.get("serving_ref")
        if serving and serving != checked:  # an earlier rollout promoted another version
            check_version(to, serving, kb)
        canary_since = datetime.now(UTC)
        outcome = run_rollout(
            port,
            to,
            policy,
            slo_ms=spec.slo.latency_ms,
            percentile=spec.slo.percentile,
            clock=WallClock(),
        )
    outcome.steps.extend(record_outcome(kb, spec.name, outcome, canary_since))
    return _result(spec.name, spec.slo.latency_ms, spec.slo.percentile, policy, outcome)


def record_outcome(kb: str | None, service: str, outcome: Any, canary_since: datetime) -> list[str]:
    """Record the canary and the verdict in the service's knowledge base.

    Parameters
    ----------
    kb : str or None
        The service's knowledge-base URL (``None``: the default one).
    service : str
        The service's name.
    outcome : RolloutOutcome
        How the rollout ended.
    canary_since : datetime
        When the canary began.

    Returns
    -------
    list of str
        Nothing, or one step saying why the record could not be written (the rollout
        has happened either way, so that is no error of the rollout).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from edgewise.api.served import record_served
    from edgewise.errors import EdgewiseError
    from edgewise.kb import KnowledgeBase
    from edgewise.kb.served import Change

    change: Change = "rollout promoted" if outcome.promoted else "rollout rolled back"
    try:
        with KnowledgeBase.open(kb) as store:
            record_served(
                store,
                service,
                change,
                outcome.ref,
                canary_since=canary_since,
                reason="" if outcome.promoted else outcome.reason,
            )
    except (SQLAlchemyError, EdgewiseError) as err:
        return [f"not recorded in the knowledge base: {err}"]
    return []


def check_version(to: str, serving: str | None, kb: str | None) -> None:
    """Load the new version here first: a missing version, a corrupt file or another
    input kind than the serving model's is one line before any replica is touched."""
    from edgewise.serving.runtime.replica import load_reference

    new = load_reference(to, kb)
    if serving:
        check_compatible(load_reference(serving, kb).card, new.card, to)


def _result(
    service: str, slo_ms: float, percentile: float, policy: RolloutPolicy, outcome: Any
) -> RolloutResult:
    stats = outcome.canary
    return RolloutResult(
        service=service,
        to=outcome.ref,
        promoted=outcome.promoted,
        rolled_back=outcome.rolled_back,
        reason=outcome.reason,
        canary_share=policy.canary_share,
        canary_requests=stats.answered,
        canary_latency_ms=canary_percentile(stats.latencies_ms, percentile),
        agreement=stats.agreed / stats.compared if stats.compared else None,
        slo_ms=slo_ms,
        slo_percentile=percentile,
        load_s=outcome.load_s,
        canary_s=outcome.canary_s,
        promote_s=outcome.promote_s,
        replicas=outcome.replicas,
        steps=tuple(outcome.steps),
    )


@dataclass(frozen=True)
class LoadedRollout:
    """A rollout during open-loop load: what the clients saw, and how it ended.

    Attributes
    ----------
    rollout : RolloutResult
        The rollout itself.
    rate_rps, capacity_rps : float
        The offered load and the service's measured capacity.
    covered : bool
        The load lasted until the rollout ended.
    requests, failed_requests : int
        Requests sent while the rollout ran, and how many got no 200 answer.
    p99_during_rollout_ms : float
        The clients' p99 latency over those requests.
    failed_before_rollout, p99_before_rollout_ms : int, float
        The same over the seconds of load before the rollout began (the noise floor).
    answering : list of str
        ``model`` (``:vN``) of the answers to requests sent after the rollout ended.
    """

    rollout: RolloutResult
    rate_rps: float
    capacity_rps: float
    covered: bool
    requests: int
    failed_requests: int
    p99_during_rollout_ms: float
    failed_before_rollout: int
    p99_before_rollout_ms: float
    answering: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready data."""
        out = asdict(self)
        out["rollout"] = self.rollout.as_dict()
        out["answering"] = list(self.answering)
        return out


def rollout_under_load(
    *,
    serving: str,
    to: list[str],
    slo_ms: float,
    percentile: float = 99.0,
    load_fraction: float = 0.7,
    replicas: int = 2,
    cpus_per_replica: float = 0.5,
    policy: RolloutPolicy | None = None,
    load_s: float = 40.0,
    port: int = 8000,
    seed: int = 0,
) -> list[LoadedRollout]:
    """Serve ``serving``, then roll out each of ``to`` in turn under open-loop load.

    The service's capacity is measured first (service times probed through HTTP, then
    the largest Poisson rate each replica keeps within the SLO); each rollout then runs while Poisson arrivals at ``load_fraction`` of that capacity reach the
    service, and what the clients saw during it is reported.

    Parameters
    ----------
    serving : str
        The model reference the service starts with.
    to : list of str
        Versions to roll out, one after the other (a rolled-back one leaves the serving
        version in place for the next).
    slo_ms, percentile : float
        The service's SLO.
    load_fraction : float
        Offered load as a share of the measured capacity.
    replicas, cpus_per_replica : int, float
        The service's size.
    policy : RolloutPolicy, optional
        The gate's thresholds.
    load_s : float
        Seconds of load per rollout (the rollout starts :data:`BASELINE_S` in; requests
        after it ended are not counted).
    port : int
        HTTP port of the service.
    seed : int
        Seed of the arrivals and the request body.

    Returns
    -------
    list of LoadedRollout
        One per version in ``to``.
    """
    from edgewise.serving.capacity import capacity_rps
    from edgewise.serving.live import probe_live_service
    from edgewise.serving.runtime import RuntimeConfig, ServingRuntime, stdout_to_stderr

    gate = policy or RolloutPolicy()
    cfg = RuntimeConfig(
        model=serving,
        app="rollout-bench",
        cpus_per_replica=cpus_per_replica,
        initial_replicas=replicas,
        max_replicas=replicas,
        port=port,
        num_cpus=max(2, math.ceil(replicas * cpus_per_replica)),
    )
    body = sample_request(serving, seed)
    results: list[LoadedRollout] = []
    with stdout_to_stderr(), ServingRuntime(cfg) as rt:
        rt.wait_for_replicas(replicas, timeout_s=300)
        url = rt.url + "/predict"
        # Capacity as edgewise defines it: the largest Poisson rate the replicas keep
        # within the SLO, from service times probed one request at a time through HTTP.
        service_ms = probe_live_service(url, body, "application/octet-stream", n=150)
        capacity = replicas * capacity_rps(service_ms, slo_ms, percentile, seed=seed)
        for i, ref in enumerate(to):
            results.append(
                _one_under_load(
                    rt,
                    url,
                    body,
                    ref,
                    gate,
                    (slo_ms, percentile),
                    load_fraction * capacity,
                    capacity,
                    load_s,
                    seed + i,
                )
            )
    return results


def _one_under_load(
    rt: Any,
    url: str,
    body: bytes,
    ref: str,
    policy: RolloutPolicy,
    slo: tuple[float, float],
    rate: float,
    capacity: float,
    load_s: float,
    seed: int,
) -> LoadedRollout:
    """One rollout while a child process sends Poisson arrivals at ``rate``: the first
    :data:`BASELINE_S` seconds without a rollout (the same run's noise floor), then the
    rollout."""
    import httpx
    import numpy as np

    from edgewise.serving.loadgen import constant_arrivals, run_load
    from edgewise.serving.runtime.rollout import run_rollout

    slo_ms, percentile = slo
    arrivals = constant_arrivals(rate, load_s, seed)
    load: dict[str, Any] = {}
    t_load = time.monotonic()
    thread = threading.Thread(
        target=lambda: load.update(result=run_load(url, arrivals, body)), daemon=True
    )
    thread.start()
    time.sleep(BASELINE_S)
    t0 = time.monotonic() - t_load
    outcome = run_rollout(
        rt.rollout_port(), ref, policy, slo_ms=slo_ms, percentile=percentile, clock=WallClock()
    )
    t1 = time.monotonic() - t_load
    with httpx.Client(timeout=30) as client:
        answering = tuple(_answered_by(client, url, body) for _ in range(5))
    thread.join()
    res = load["result"]
    before = (res.scheduled_s >= 1.0) & (res.scheduled_s < t0)
    during = (res.scheduled_s >= t0) & (res.scheduled_s <= t1)

    def p99(mask: np.ndarray) -> float:
        lat = res.latency_ms[mask & (res.status == 200)]
        return float(np.percentile(lat, 99)) if lat.size else math.nan

    return LoadedRollout(
        rollout=_result(rt.config.app, slo_ms, percentile, policy, outcome),
        rate_rps=rate,
        capacity_rps=capacity,
        covered=t1 <= load_s,
        requests=int(during.sum()),
        failed_requests=int((during & (res.status != 200)).sum()),
        p99_during_rollout_ms=p99(during),
        failed_before_rollout=int((before & (res.status != 200)).sum()),
        p99_before_rollout_ms=p99(before),
        answering=answering,
    )


def sample_request(ref: str, seed: int = 0) -> bytes:
    """A valid ``/predict`` body for the model ``ref``: one random sample of its card's
    input as a ``.npy`` tensor (images already normalised, texts token ids)."""
    import io

    import numpy as np

    from edgewise.serving.runtime.replica import load_reference

    spec = load_reference(ref).card.input
    rng = np.random.default_rng(seed)
    if spec.kind == "text":
        sample = rng.integers(0, 1000, size=(1, *spec.shape)).astype(spec.dtype)
    else:
        sample = rng.normal(size=(1, *spec.shape)).astype(spec.dtype)
    buf = io.BytesIO()
    np.save(buf, sample)
    return buf.getvalue()


def _answered_by(client: Any, url: str, body: bytes, tries: int = 10) -> str:
    """``model[:vN]`` of the service's answer to ``body`` (a refusal under load is retried),
    else ``HTTP <status>``."""
    for _ in range(tries):
        resp = client.post(url, content=body)
        if resp.status_code == 200:
            break
        time.sleep(0.2)
    if resp.status_code != 200:
        return f"HTTP {resp.status_code}"
    doc = resp.json()
    version = doc.get("version")
    return str(doc.get("model")) + ("" if version is None else f":v{version}")
