"""The model replica: a Ray Serve deployment serving one zoo model over HTTP.

Routes: ``POST /predict`` (PNG/JPEG, ``.npy`` tensor or JSON text), ``GET /healthz``,
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

from edgewise.isolation.cgroup import threads_for
from edgewise.serving.payload import BadRequest, InputSpec, decode
from edgewise.serving.runtime.batching import MicroBatcher

POLL_INTERVAL_S = 0.2


class ModelReplica:
    """Serve one zoo model; used as ``serve.deployment(ModelReplica)``."""

    def __init__(
        self, model: str, app: str, cpus: float, use_cgroup: bool = True, max_batch: int = 8
    ) -> None:
        import ray
        import torch

        from edgewise.serving.runtime.coordinator import NAMESPACE, coordinator_name
        from edgewise.workloads.zoo import build_model

        self._model_name = model
        self._app = app
        self._zoo = build_model(model)
        self._spec = InputSpec(kind=self._zoo.kind, shape=tuple(self._zoo.input_shape))
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
        warm = np.zeros(
            (1, *self._spec.shape), dtype=np.float32 if self._spec.kind == "image" else np.int64
        )
        self._pool.submit(self._infer, warm).result()
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
                {"status": "ok", "model": self._model_name, "replica": self._id, "cpus": self._cpus}
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
            classes, scores = await self._batcher.submit(batch)
        finally:
            self._ongoing -= 1
        self._pending.append((time.perf_counter() - start) * 1000.0)
        return Response(
            json.dumps({"model": self._model_name, "class": classes, "score": scores}),
            media_type="application/json",
        )

    def _infer(self, batch: np.ndarray) -> tuple[list[int], list[float]]:
        torch = self._torch
        start = time.perf_counter()
        with torch.inference_mode():
            out = self._zoo.module(torch.from_numpy(batch))
            logits = out.logits if hasattr(out, "logits") else out
            probs = torch.softmax(logits.float(), dim=-1)
            score, cls = probs.max(dim=-1)
        self._infer_ms.append((time.perf_counter() - start) * 1000.0)
        return [int(c) for c in cls], [round(float(s), 5) for s in score]

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


def _enter_own_cgroup(app: str, cpus: float) -> Any:
    """Move this replica process into its own cgroup with the given CPU quota."""
    from edgewise.isolation import CGroup, cgroups_writable

    if not cgroups_writable():
        return None
    # A weight lets the replica reach its quota on a busy host (the quota stays the cap).
    group = CGroup(f"serve-{app}", cpus=cpus, cpu_weight=1000).create()
    group.add_pid(os.getpid())
    return group
