"""Admission control in front of Ray Serve's router: refuse at once what cannot meet the SLO.

Why in front of the router, in the HTTP proxy: measured on the 2-core VM (one 0.2-CPU
``digits_cnn`` replica serving ~15 requests/s, a 150 requests/s flood), Ray Serve's own
bound (``max_ongoing_requests=4`` running + ``max_queued_requests=8`` queued) held 37-55
requests at once, not 12, and for up to 7 s. Ray counts a request as queued only while
it chooses a replica: one sent to a replica and waiting for its accept/reject answer is
not counted, and one the replica rejected goes back into the queue without meeting the
bound again. A CPU-capped replica answers late (its event loop shares the flavor's
quota with the model), so bursts slipped in, then everything got a 503 for seconds:
served per second, by send time, [37, 0, 55, 0], and 503s went on after the flood. A
gate in the replica itself does not help: its 503s wait for the same capped event loop
(measured 2-10 s each).

So the gate sits in Serve's HTTP proxy (an ASGI middleware that Ray installs from
``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``, see :data:`PROXY_CALLBACK`): it counts
the ``/predict`` requests of each route prefix between arrival and answer and refuses
those above the prefix's limit with ``503`` and ``Retry-After`` before Ray's router sees
them. With it, the same flood was served at [22, 20, 18, 17] per second, 503s took
2 ms (p99 12 ms), admitted requests 356 ms at p50, and nothing was refused after the
flood. The limit is the service's, ``floor(share x SLO x capacity)`` per replica times
the replicas (:func:`admission_limit`); the driver publishes it on a small named actor
(:func:`publish_limit`) that the proxy polls. A prefix without a published limit is not
gated (Ray's own bound applies).

Decisions are pure (:func:`admission_limit`, :func:`admits`, :func:`gated_prefix`);
:class:`AdmissionGate` holds one count; :class:`AdmissionMiddleware` and the board
functions are the effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
"""Ray Serve's setting naming a function that returns the proxy's ASGI middlewares."""

PROXY_CALLBACK = "edgewise.serving.runtime.admission:proxy_middlewares"
"""The value of :data:`PROXY_CALLBACK_ENV` that installs the gate in the proxy."""

BOARD_NAME = "edgewise-admission"
"""Name of the actor holding the published limits (in edgewise's Ray namespace)."""

POLL_S = 0.5
"""How often the proxy reads the published limits."""

RETRY_AFTER_S = 1
"""Seconds a refused client is told to wait (``Retry-After``)."""

QUEUE_SHARE = 0.6
"""Default share of the SLO that waiting in the service may take (see
:func:`admission_limit`). Little's law gives the mean; the tail of a CPU-capped replica
is wider (its quota throttles in 100 ms periods): measured with one 0.2-CPU replica at
14-16 requests/s and a 500 ms SLO, the full SLO (limit 7) gave admitted requests a p99
of 526 ms, 0.8 (limits 5 and 6) 459 and 525 ms."""

GATED_ENDPOINT = "/predict"
"""Only requests for this endpoint are gated; health checks and metrics always pass."""

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
LimitsSource = Callable[[], Awaitable[dict[str, int] | None]]


def admission_limit(
    slo_ms: float, capacity_rps: float, replicas: int = 1, share: float = QUEUE_SHARE
) -> int:
    """Requests a service may hold so that the ones it admits still meet the SLO.

    A replica serving ``capacity_rps`` requests per second holding ``n`` requests
    answers them in ``n / capacity_rps`` seconds on average (Little's law), so each may
    hold ``floor(share * slo_s * capacity_rps)``, at least one (an idle replica always
    takes a request). ``share`` leaves the rest of the SLO to the spread of service times.

    Parameters
    ----------
    slo_ms : float
        The latency objective in milliseconds (> 0).
    capacity_rps : float
        One replica's saturated throughput in requests per second (> 0).
    replicas : int
        Replicas serving the route (>= 1).
    share : float
        Share of the SLO that waiting may take, in (0, 1].

    Returns
    -------
    int
        The number of requests admitted at once over all replicas.

    Raises
    ------
    ValueError
        If ``slo_ms`` or ``capacity_rps`` is not a positive finite number, ``replicas``
        is below one or ``share`` is outside (0, 1].
    """
    for name, value in (("slo_ms", slo_ms), ("capacity_rps", capacity_rps)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if replicas < 1:
        raise ValueError(f"replicas must be at least 1, got {replicas}")
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    return int(replicas) * max(1, math.floor(share * slo_ms / 1000.0 * capacity_rps))


def pool_admission_limit(
    slo_ms: float,
    flavors: Sequence[Any],
    replicas: Mapping[str, int],
    cpus: Mapping[str, float],
    share: float = QUEUE_SHARE,
) -> int:
    """The limit of a pool: :func:`admission_limit` of each flavor's replicas, summed.

    A flavor's capacity is scaled by the CPU quota its replicas run at against the
    flavor's nominal ``cpus``. A pool scaled to zero is woken by a request into one
    replica of the first flavor (the runtime's cold start), so its limit is that one
    replica's, never below one.

    Parameters
    ----------
    slo_ms : float
        The latency objective in milliseconds.
    flavors : sequence of flavor options
        Each with ``name``, ``cpus`` and ``capacity_rps`` (the serving variant's).
    replicas, cpus : mapping
        Replicas asked for and the CPU quota of each, per flavor name.
    share : float
        As :func:`admission_limit`.
    """

    def one(f: Any) -> int:
        cap = float(f.capacity_rps) * float(cpus.get(f.name, f.cpus)) / float(f.cpus)
        return admission_limit(slo_ms, max(cap, 1e-9), share=share)

    total = sum(int(replicas.get(f.name, 0)) * one(f) for f in flavors)
    if total == 0 and flavors:
        total = one(flavors[0])
    return max(1, total)


def admits(in_flight: int, limit: int) -> bool:
    """Whether a request arriving while ``in_flight`` are held may enter."""
    return in_flight < limit


def is_gated_path(path: str) -> bool:
    """Whether requests for ``path`` go through a gate (:data:`GATED_ENDPOINT` only)."""
    return path.rstrip("/").endswith(GATED_ENDPOINT)


def gated_prefix(prefixes: Mapping[str, Any], path: str) -> str | None:
    """The route prefix whose gate ``path`` passes through, ``None`` for an ungated path.

    Only :data:`GATED_ENDPOINT` requests are gated; of the prefixes that ``path`` lies
    under (``"/"`` holds every path), the longest wins, as in Serve's own routing.
    """
    if not is_gated_path(path):
        return None
    best: str | None = None
    for prefix in prefixes:
        base = prefix.rstrip("/")
        if (path == base or path.startswith(base + "/")) and (
            best is None or len(base) > len(best.rstrip("/"))
        ):
            best = prefix
    return best


class AdmissionGate:
    """The requests one route holds, and those refused above ``limit``.

    Used from one event loop only, where :meth:`try_enter` and :meth:`leave` never
    interleave, so it needs no lock. The limit may change while requests are held: the
    ones already in keep their place, new ones wait for the count to fall below it.
    """

    def __init__(self, limit: int) -> None:
        self.limit = int(limit)
        self.in_flight = 0
        self.refused = 0

    def try_enter(self) -> bool:
        """Take a place if one is free; count a refusal otherwise."""
        if admits(self.in_flight, self.limit):
            self.in_flight += 1
            return True
        self.refused += 1
        return False

    def leave(self) -> None:
        """Give back a place taken by :meth:`try_enter`."""
        self.in_flight -= 1


def _refusal_body(gate: AdmissionGate) -> bytes:
    message = (
        f"overloaded: {gate.in_flight} requests in service (limit {gate.limit}); "
        f"retry in {RETRY_AFTER_S} s"
    )
    return json.dumps({"error": message}).encode()


class AdmissionMiddleware:
    """ASGI middleware: gate ``/predict`` per route prefix, answer ``503`` above the limit.

    Parameters
    ----------
    app : ASGI application
        What admitted requests go to (Serve's proxy).
    limits : callable, optional
        Coroutine function returning ``{route_prefix: limit}``, or ``None`` when the
        limits cannot be read now (the last ones stay). Default: the published board
        (:func:`read_board`).
    poll_s : float
        Seconds between reads of ``limits``.
    """

    def __init__(
        self, app: ASGIApp, limits: LimitsSource | None = None, poll_s: float = POLL_S
    ) -> None:
        self.app = app
        self.gates: dict[str, AdmissionGate] = {}
        self._limits = limits if limits is not None else read_board
        self._poll_s = poll_s
        self._poller: asyncio.Task[None] | None = None
        self._first_read = asyncio.Event()
        with contextlib.suppress(RuntimeError):  # built in the proxy's loop: read now
            asyncio.get_running_loop()
            self._ensure_poller()

    def update(self, limits: Mapping[str, int]) -> None:
        """Apply a set of limits: new prefixes get a gate, dropped ones are ungated."""
        for prefix, limit in limits.items():
            gate = self.gates.get(prefix)
            if gate is None:
                self.gates[prefix] = AdmissionGate(limit)
            else:
                gate.limit = int(limit)
        for prefix in set(self.gates) - set(limits):
            del self.gates[prefix]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._ensure_poller()
        if not self._first_read.is_set() and is_gated_path(scope["path"]):
            # The limits published before the proxy started apply from its first request.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._first_read.wait(), self._poll_s)
        prefix = gated_prefix(self.gates, scope["path"])
        if prefix is None:
            await self.app(scope, receive, send)
            return
        gate = self.gates[prefix]
        if not gate.try_enter():
            await _refuse(send, _refusal_body(gate))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave()

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                limits = await self._limits()
                if limits is not None:
                    self.update(limits)
            self._first_read.set()
            await asyncio.sleep(self._poll_s)


async def _refuse(send: Send, body: bytes) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER_S).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def proxy_middlewares() -> list[Any]:
    """The proxy's middlewares (Ray Serve calls this through :data:`PROXY_CALLBACK_ENV`)."""
    from starlette.middleware import Middleware

    return [Middleware(AdmissionMiddleware)]  # type: ignore[arg-type]


# --- the board: the driver publishes limits, the proxy reads them ---------------------


class AdmissionBoard:
    """The published limits, ``{route_prefix: limit}`` (the body of the named actor)."""

    def __init__(self) -> None:
        self._limits: dict[str, int] = {}

    def set_limit(self, prefix: str, limit: int | None) -> None:
        """Gate ``prefix`` at ``limit`` requests (``None``: stop gating it)."""
        if limit is None:
            self._limits.pop(prefix, None)
        else:
            self._limits[prefix] = max(1, int(limit))

    def limits(self) -> dict[str, int]:
        return dict(self._limits)


_held: dict[str, Any] = {}
"""The board actor this driver created, per connection to a Ray instance: Ray destroys a
named actor that is not detached once its creator drops the handle it was created with
(a handle found by name does not keep it)."""


def _board(create: bool) -> Any:
    import ray

    from edgewise.rayenv import NAMESPACE

    if not create:
        if not ray.is_initialized():  # never start a Ray instance just to look
            raise ValueError("not connected to Ray")
        return ray.get_actor(BOARD_NAME, namespace=NAMESPACE)
    ctx = ray.get_runtime_context()
    key = f"{ctx.gcs_address}/{ctx.get_job_id()}"
    if key not in _held:
        actor = ray.remote(num_cpus=0)(AdmissionBoard)
        _held[key] = actor.options(  # type: ignore[attr-defined]
            name=BOARD_NAME, namespace=NAMESPACE, get_if_exists=True
        ).remote()
    return _held[key]


def publish_limit(route_prefix: str, limit: int | None) -> None:
    """Gate ``route_prefix`` at ``limit`` requests in service; ``None`` lifts the gate.

    Called by the driver that owns the service (after a scale or a flavor change, with
    :func:`admission_limit` of the new replica count); the proxy applies it within
    :data:`POLL_S`. Needs a connected Ray driver.
    """
    import ray

    ray.get(_board(create=True).set_limit.remote(route_prefix, limit))


async def read_board() -> dict[str, int] | None:
    """The published limits; ``{}`` when nothing was published, ``None`` on a failed read.

    The board's handle is looked up once per Ray instance and kept while it answers.
    """
    loop = asyncio.get_running_loop()
    board: Any = _found.get("board")
    if board is None:
        try:
            board = await loop.run_in_executor(None, _board, False)
        except ValueError:  # no board: nothing published, nothing gated
            return {}
        _found["board"] = board
    try:
        limits: dict[str, int] = await board.limits.remote()
    except Exception:
        _found.pop("board", None)
        return None
    return limits


_found: dict[str, Any] = {}
"""The board handle the proxy found (looked up again after a failed read)."""
