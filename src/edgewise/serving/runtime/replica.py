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
from edgewise.serving.runtime.batching import MicroBatcher, Outputs
from edgewise.serving.runtime.predictor import DEFAULT_TOP_K, Predictor

POLL_INTERVAL_S = 0.2


class ModelReplica:
    """Serve one model reference; used as ``serve.deployment(ModelReplica)``.

    ``kb`` is the knowledge base URL that ``NAME[:vN]`` references are looked up in
    (``None``: the default one).
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
        self._predictor = Predictor(load_reference(model, kb), top_k=top_k)
        self._spec = self._predictor.spec
        self._torch = torch
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self._cpus = float(cpus)
        self._pool.submit(torch.set_num_threads, threads_for(cpus)).result()
        self._id = f"{socket.gethostname()}:{os.getpid()}"
        self._coordinator = ray.get_actor(coordinator_name(app), namespace=NAMESPACE)
        self._pending: list[float] = []
        self._infer_ms: list[float] = []  # forward passes since the last push
        self._rejected = 0
        self._ongoing = 0
        ray.get(
            self._coordinator.register.remote(
                self._id, os.getpid(), ray.get_runtime_context().get_node_id(), cpus
            )
        )
        # Warm the model so the first real request is not a cold one.
        self._pool.submit(self._infer, self._predictor.warm_batch()).result()
        # Join the flavor's cgroup once warm: start-up (imports, model build) is not
        # what the flavor's quota is meant to throttle.
        self._cgroup: Any = _enter_own_cgroup(app, cpus) if use_cgroup else None
        self._loop_task: asyncio.Task[None] | None = None
        self._batcher = MicroBatcher(self._infer, self._pool, max_batch=max_batch)

    # --- request path -------------------------------------------------------------
    async def __call__(self, request: Request) -> Response:
        self._ensure_background()
        path = request.url.path.rstrip("/") or "/"
        if path.endswith("/healthz"):
            return JSONResponse(
                {
                    "status": "ok",
                    "model": self._predictor.name,
                    "version": self._predictor.version,
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
            body = await request.body()
            try:
                batch = decode(body, request.headers.get("content-type"), self._spec)
            except BadRequest as err:
                self._rejected += 1
                return JSONResponse({"error": err.message}, status_code=err.status)
            try:
                outputs = await self._batcher.submit(batch)
            except EdgewiseError as err:  # the model refused the input (its card's check)
                self._rejected += 1
                return JSONResponse({"error": str(err)}, status_code=422)
        finally:
            self._ongoing -= 1
        self._pending.append((time.perf_counter() - start) * 1000.0)
        return Response(json.dumps(self._predictor.answer(outputs)), media_type="application/json")

    def _infer(self, batch: np.ndarray) -> Outputs:
        start = time.perf_counter()
        with self._torch.inference_mode():
            outputs = self._predictor.infer(batch)
        self._infer_ms.append((time.perf_counter() - start) * 1000.0)
        return outputs

    # --- background: metrics push and vertical scaling ------------------------------
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
        cpus = float(
            await self._coordinator.record.remote(
                self._id, batch, rejected, self._ongoing, time.process_time(), infer_ms
            )
        )
        if abs(cpus - self._cpus) > 1e-6:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._apply_cpus, cpus)

    def _apply_cpus(self, cpus: float) -> None:
        if self._cgroup is not None:
            self._cgroup.set_cpus(cpus)
        self._torch.set_num_threads(threads_for(cpus))
        self._cpus = cpus

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
