"""The one Ray adapter: start or join a Ray instance, shut it down if we started it.

Both pillars that run on Ray use this session: the serving runtime (which adds its
ingress environment on top, see :class:`edgewise.serving.runtime.app.RaySession`) and
the retrain device pool (:class:`edgewise.retrain.raypool.RayPool`). Effects only: the
decision of what to start lies with the caller.
"""

from __future__ import annotations

from typing import Any

from edgewise.errors import EnvironmentProblem

NAMESPACE = "edgewise"
"""Ray namespace of every named actor edgewise creates (coordinators, device agents)."""


class RaySession:
    """Start (or join) Ray once for several users; shut it down on exit if we started it.

    Parameters
    ----------
    address : str or None
        Cluster to join (``HOST:6379`` or ``auto``); ``None`` starts a fresh local
        instance of our own, never one another process on this machine started.
    num_cpus : int or None
        CPUs of a local instance (ignored when joining a cluster).
    init_kwargs : dict or None
        Further ``ray.init`` arguments; they override the defaults.
    namespace : str
        Ray namespace of the driver.

    Notes
    -----
    Subclasses set up the environment a *local* instance's processes inherit in
    :meth:`_prepare_local_env` and undo it in :meth:`_restore_env`; the environment is
    restored when ``ray.init`` fails and on exit.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        init_kwargs: dict[str, Any] | None = None,
        namespace: str = NAMESPACE,
    ) -> None:
        self.address = address
        self.num_cpus = num_cpus
        self.init_kwargs = dict(init_kwargs or {})
        self.namespace = namespace
        self._started = False

    @property
    def started(self) -> bool:
        """Whether this session started (and so will shut down) the Ray instance."""
        return self._started

    def __enter__(self) -> RaySession:
        import ray

        if ray.is_initialized():
            return self
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "namespace": self.namespace,
            **self.init_kwargs,
        }
        if self.address:
            kwargs["address"] = self.address
        else:
            # "local": a fresh instance of our own, never a cluster some other
            # process on this machine started (ray.init() would join that one).
            kwargs["address"] = "local"
            if self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            self._prepare_local_env()
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            self._restore_env()
            where = self.address or "a local Ray instance"
            raise EnvironmentProblem(f"cannot start or reach Ray at {where}: {err}") from None
        self._started = True
        return self

    def _prepare_local_env(self) -> None:
        """Set the environment a local instance's processes inherit (none here)."""

    def _restore_env(self) -> None:
        """Undo :meth:`_prepare_local_env` (nothing here)."""

    def __exit__(self, *exc: object) -> None:
        import ray

        if self._started:
            ray.shutdown()
            self._started = False
        self._restore_env()
