"""The model replica: a Ray Serve deployment serving one model reference over HTTP.

The reference is a zoo name, a registry entry ``NAME[:vN]`` or a model file; the replica
loads it with :func:`edgewise.registry.load_model`, preprocesses requests with the model's
card and answers what the model predicts (:mod:`edgewise.serving.runtime.predictor`),
naming the model and version that answered.

Routes: ``POST /predict`` (PNG/JPEG, ``.npy`` tensor or JSON), ``GET /healthz``,
``GET /metrics`` (Prometheus text, aggregated by the coordinator). Each replica puts its
own process in a cgroup with the flavor's CPU quota and polls the coordinator for the
CPUs it should have, applying a change in place (quota and torch threads) within a
fraction of a second. Bad requests get a 4xx with one line; the replica stays up.

The same poll carries a rollout's assignment: the replica loads the new version beside
the serving one (:mod:`edgewise.serving.runtime.lanes`), answers the canary share of its
requests with it, counts latency, failures, labels and agreement for the gate, and on
promotion answers everything with it, in place: no request fails and no process
restarts. A canary that fails on a request never fails that request (the serving
version answers it, and the failure is counted).

Outside a rollout the same machinery switches model variant: when the coordinator's
serving reference names another model than the one this replica serves (the controller
chose a cheaper or a more accurate variant), the replica loads it beside the serving
one off the request path, warms it, and then answers every new request with it; the
requests already queued for the old one finish on it. In a pool of several flavors the
CPUs the replica polls for are those of the flavor the coordinator gave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from edgewise.errors import EdgewiseError
from edgewise.isolation.cgroup import threads_for
from edgewise.serving.payload import BadRequest, decode
from edgewise.serving.rollout import check_compatible
from edgewise.serving.runtime.batching import MicroBatcher, Outputs
from edgewise.serving.runtime.lanes import (
    CanaryTally,
    Lane,
    ShareSplitter,
    parse_labels,
    top_answers,
)
from edgewise.serving.runtime.predictor import DEFAULT_TOP_K, Predictor

POLL_INTERVAL_S = 0.2


class ModelReplica:
    """Serve one model reference; used as ``serve.deployment(ModelReplica)``.

    ``kb`` is the knowledge base URL that ``NAME[:vN]`` references are looked up in
    (``None``: the default one). A replica that starts after a rollout promoted another
    version serves that version (the coordinator's ``serving_ref``).
    """

    def __init__(
        self,
        model: str,
        app: str,
        cpus: float,
        use_cgroup: bool = True,
        max_batch: int = 8,
        kb: str | None = None,
        top_k: int = DEFAULT_TOP_K,
    ) -> None:
        import ray
        import torch

        from edgewise.serving.runtime.coordinator import NAMESPACE, coordinator_name

        self._app = app
        self._kb = kb
        self._top_k = top_k
        self._max_batch = max_batch
        self._torch = torch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self._cpus = float(cpus)
        self._pool.submit(torch.set_num_threads, threads_for(cpus)).result()
        self._id = f"{socket.gethostname()}:{os.getpid()}"
        self._coordinator = ray.get_actor(coordinator_name(app), namespace=NAMESPACE)
        source = ray.get(self._coordinator.assignment.remote()).get("serving_ref") or model
        self._stable = self._make_lane(source, load_reference(source, kb))
        self._pending: list[float] = []
        self._infer_ms: list[float] = []  # forward passes since the last push
        self._rejected = 0
        self._ongoing = 0
        self._rollout: dict[str, Any] | None = None
        self._canary: Lane | None = None
        self._canary_error: str | None = None
        self._promoted = False
        self._splitter: ShareSplitter | None = None
        self._tally: CanaryTally | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._switching: str | None = None  # the variant being loaded, outside a rollout
        self._cpuset: list[int] | None = None  # the CPUs of its node in a fleet; None: any
        assigned = ray.get(
            self._coordinator.register.remote(
                self._id, os.getpid(), ray.get_runtime_context().get_node_id(), cpus
            )
        )
        if assigned is not None and abs(float(assigned) - self._cpus) > 1e-6:
            cpus = float(assigned)  # its flavor in a pool of several
            self._cpus = cpus
            self._pool.submit(torch.set_num_threads, threads_for(cpus)).result()
        # Warm the model so the first real request is not a cold one.
        self._pool.submit(
            self._stable.predictor.infer, self._stable.predictor.warm_batch()
        ).result()
        # Join the flavor's cgroup once warm: start-up (imports, model build) is not
        # what the flavor's quota is meant to throttle.
        self._cgroup: Any = _enter_own_cgroup(app, cpus) if use_cgroup else None
        self._loop_task: asyncio.Task[None] | None = None

    def _make_lane(self, source: str, loaded: Any) -> Lane:
        predictor = Predictor(loaded, top_k=self._top_k)

        def infer(batch: np.ndarray) -> Outputs:
            start = time.perf_counter()
            with self._torch.inference_mode():
                outputs = predictor.infer(batch)
            self._infer_ms.append((time.perf_counter() - start) * 1000.0)
            return outputs

        return Lane(source, predictor, MicroBatcher(infer, self._pool, max_batch=self._max_batch))

    # --- request path -------------------------------------------------------------
    async def __call__(self, request: Request) -> Response:
        self._ensure_background()
        path = request.url.path.rstrip("/") or "/"
        if path.endswith("/healthz"):
            return JSONResponse(
                {
                    "status": "ok",
                    "model": self._stable.predictor.name,
                    "version": self._stable.predictor.version,
                    "canary": None if self._canary is None else self._canary.source,
                    "replica": self._id,
                    "cpus": self._cpus,
                }
            )
        if path.endswith("/metrics"):
            body = await self._coordinator.render.remote()
            return Response(body, media_type="text/plain; version=0.0.4")
        if not path.endswith("/predict"):
            return JSONResponse({"error": f"no route {request.url.path}"}, status_code=404)
        if request.method != "POST":
            return JSONResponse({"error": "use POST for /predict"}, status_code=405)
        start = time.perf_counter()
        self._ongoing += 1
        try:
            return await self._predict(request, start)
        finally:
            self._ongoing -= 1

    async def _predict(self, request: Request, start: float) -> Response:
        body = await request.body()
        lane, canary = self._route()
        try:
            batch = decode(body, request.headers.get("content-type"), lane.predictor.spec)
            labels = parse_labels(request.headers.get("x-label"), batch.shape[0])
        except BadRequest as err:
            self._rejected += 1
            return JSONResponse({"error": err.message}, status_code=err.status)
        except ValueError as err:
            self._rejected += 1
            return JSONResponse({"error": str(err)}, status_code=422)
        tally = self._tally
        try:
            outputs = await lane.batcher.submit(batch)
        except EdgewiseError as err:
            if not canary:  # the model refused the input (its card's check)
                self._rejected += 1
                return JSONResponse({"error": str(err)}, status_code=422)
            lane, canary, outputs = await self._fallback(batch, tally)
        except Exception:
            if not canary:
                raise
            lane, canary, outputs = await self._fallback(batch, tally)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        self._pending.append(elapsed_ms)
        if tally is not None:
            answers = top_answers(lane.predictor, outputs)
            tally.count_labels(canary, answers, labels)
            if canary:
                tally.latencies_ms.append(elapsed_ms)
                # Agreement is measured on spare capacity: a canary input waits for the
                # serving version only when nothing else does.
                if self._stable.batcher.pending == 0:
                    self._spawn(self._compare(batch, answers, tally))
            elif self._splitter is not None:
                tally.stable_latencies_ms.append(elapsed_ms)
        return Response(json.dumps(lane.predictor.answer(outputs)), media_type="application/json")

    def _route(self) -> tuple[Lane, bool]:
        """The lane that answers the next request, and whether it is the judged canary."""
        if self._canary is None:
            return self._stable, False
        if self._promoted:
            return self._canary, False
        if self._splitter is not None and self._splitter.to_canary():
            return self._canary, True
        return self._stable, False

    async def _fallback(
        self, batch: np.ndarray, tally: CanaryTally | None
    ) -> tuple[Lane, bool, Outputs]:
        """A failing canary never fails a request: count it, let the serving lane answer."""
        if tally is not None:
            tally.errors += 1
        return self._stable, False, await self._stable.batcher.submit(batch)

    async def _compare(self, batch: np.ndarray, answers: list[Any], tally: CanaryTally) -> None:
        """Run a canary input on the serving version too and count whether they agree."""
        with contextlib.suppress(Exception):
            outputs = await self._stable.batcher.submit(batch)
            tally.count_agreement(answers, top_answers(self._stable.predictor, outputs))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- background: metrics push, vertical scaling, rollout -------------------------
    def _ensure_background(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._background())

    async def _background(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self._sync_once()
            await asyncio.sleep(POLL_INTERVAL_S)

    async def _sync_once(self) -> None:
        batch, self._pending = self._pending, []
        rejected, self._rejected = self._rejected, 0
        infer_ms, self._infer_ms = self._infer_ms, []
        canary = self._tally.take() if self._tally is not None else {}
        lane = {
            "rollout": None if self._rollout is None else self._rollout["id"],
            "serving": self._stable.source,
            "canary_ready": self._canary is not None,
            "canary_error": self._canary_error,
            "promoted": self._promoted,
        }
        assignment = await self._coordinator.sync.remote(
            self._id, batch, rejected, self._ongoing, time.process_time(), infer_ms, canary, lane
        )
        cpus = float(assignment["cpus"])
        if abs(cpus - self._cpus) > 1e-6:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._apply_cpus, cpus)
        cpuset = assignment.get("cpuset")
        if cpuset != self._cpuset:
            self._pin(cpuset)
        self._follow(assignment["rollout"], assignment["serving_ref"])

    def _follow(self, rollout: dict[str, Any] | None, serving_ref: str | None) -> None:
        """Apply the rollout assignment: load the canary, split, promote, or end; outside
        a rollout, switch to the serving reference when it names another model."""
        if rollout is None:
            self._end_rollout(serving_ref)
            if serving_ref and serving_ref not in (self._stable.source, self._switching):
                self._switching = serving_ref
                self._spawn(self._switch_variant(serving_ref))
            return
        if self._rollout is None or rollout["id"] != self._rollout["id"]:
            self._end_rollout(None)
            self._tally = CanaryTally(str(rollout["id"]))
            self._spawn(self._load_canary(str(rollout["id"]), str(rollout["ref"])))
        self._rollout = rollout
        if self._canary is None:
            return
        self._promoted = self._id in rollout["promoted"]
        share = float(rollout["share"])
        if share <= 0:
            self._splitter = None
        elif self._splitter is None or self._splitter.share != share:
            self._splitter = ShareSplitter(share)

    async def _load_canary(self, rollout: str, ref: str) -> None:
        """Load the new version beside the serving one, off the request path."""
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(None, load_reference, ref, self._kb)
            check_compatible(self._stable.predictor.model.card, loaded.card, ref)
            lane = self._make_lane(ref, loaded)
            await loop.run_in_executor(
                self._pool, lane.predictor.infer, lane.predictor.warm_batch()
            )
        except Exception as err:
            if self._rollout is not None and self._rollout["id"] == rollout:
                self._canary_error = (str(err).splitlines() or [type(err).__name__])[0]
            return
        if self._rollout is not None and self._rollout["id"] == rollout:
            self._canary = lane

    async def _switch_variant(self, ref: str) -> None:
        """Load ``ref`` beside the serving model, warm it, then answer with it.

        Requests already queued for the old model finish on it; none is dropped. A model
        that does not load leaves the old one serving (and is not tried again until the
        coordinator names another).
        """
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(None, load_reference, ref, self._kb)
            lane = self._make_lane(ref, loaded)
            await loop.run_in_executor(
                self._pool, lane.predictor.infer, lane.predictor.warm_batch()
            )
        except Exception:
            return
        if self._rollout is None and self._switching == ref:
            self._stable = lane
        self._switching = None

    def _end_rollout(self, serving_ref: str | None) -> None:
        """Back to one lane: the promoted canary when ``serving_ref`` names it."""
        if self._canary is not None and serving_ref == self._canary.source:
            self._stable = self._canary
        self._rollout = None
        self._canary = None
        self._canary_error = None
        self._promoted = False
        self._splitter = None
        self._tally = None

    def _pin(self, cpuset: list[int] | None) -> None:
        """Run on ``cpuset`` (the node a fleet placed this replica on); ``None``: anywhere."""
        from edgewise.isolation import pin_threads
        from edgewise.isolation.cgroup import cpus_available_at_start

        pin_threads(os.getpid(), cpuset or cpus_available_at_start())
        self._cpuset = cpuset

    def _apply_cpus(self, cpus: float) -> None:
        if self._cgroup is not None:
            self._cgroup.set_cpus(cpus)
        self._torch.set_num_threads(threads_for(cpus))
        self._cpus = cpus

    def __del__(self) -> None:
        """Stopped by Ray Serve: leave the coordinator, so a pool reassigns at once."""
        with contextlib.suppress(Exception):
            self._coordinator.unregister.remote(self._id)

    async def check_health(self) -> None:
        """Ray Serve's periodic health check; also keeps the background loop alive."""
        self._ensure_background()


def load_reference(model: str, kb: str | None = None) -> Any:
    """Load a model reference, looking registry entries up in the knowledge base ``kb``.

    Raises
    ------
    EdgewiseError
        If the reference names no zoo model, registry entry or readable model file.
    """
    from edgewise.registry import load_model

    if kb is None:
        return load_model(model)
    from edgewise.kb import KnowledgeBase

    with KnowledgeBase.open(kb) as store:
        return load_model(model, store)


def _enter_own_cgroup(app: str, cpus: float) -> Any:
    """Move this replica process into its own cgroup with the given CPU quota."""
    from edgewise.isolation import CGroup, cgroups_writable

    if not cgroups_writable():
        return None
    # A weight lets the replica reach its quota on a busy host (the quota stays the cap).
    group = CGroup(f"serve-{app}", cpus=cpus, cpu_weight=1000).create()
    group.add_pid(os.getpid())
    return group
