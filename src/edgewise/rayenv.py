"""The one Ray adapter: start or join a Ray instance, shut it down if we started it.

Both pillars that run on Ray use this session: the serving runtime (which adds its
ingress environment on top, see :class:`edgewise.serving.runtime.app.RaySession`) and
the retrain device pool (:class:`edgewise.retrain.raypool.RayPool`). Effects only: the
decision of what to start lies with the caller.

Three rules hold for the Ray sessions edgewise opens:

* **Loopback only.** The instance's node IP is ``127.0.0.1``, which is what makes Ray
  bind its GCS, raylet, object manager, workers, runtime-env and dashboard agents and
  its metrics exports to loopback (Ray's servers listen on loopback exactly when the
  node IP is ``127.0.0.1``, and on all interfaces otherwise). Joining a cluster
  (``address=...``) leaves Ray's own choice, since other nodes must reach this one;
  joining a loopback address (another edgewise process's instance, ``edgewise
  rollout`` joining ``edgewise serve``'s) takes loopback as the node IP as well, after
  a bounded check that something listens there.
* **Our SIGTERM.** ``ray.init`` replaces the driver's SIGTERM handling with Ray's own
  (a Python handler, and under it the core worker's C++ failure handler, which aborts
  the process: exit -6, nothing closed). The session puts back the handler that was
  there before (the CLI's SIGTERM -> ``KeyboardInterrupt``, ``serve``'s orderly stop),
  so SIGTERM takes the path SIGINT takes in every command that starts or joins Ray;
  see :class:`SigtermGuard`.
* **A quiet screen.** Ray's and Serve's log lines, the error messages Ray's driver
  prints itself (``(raylet) Task ... failed``) and third-party Python warnings go to
  :func:`log_path`, not the terminal, unless :func:`route_logs` was asked for
  ``verbose`` (the CLI's ``--verbose``).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from edgewise.errors import EnvironmentProblem

NAMESPACE = "edgewise"
"""Ray namespace of every named actor edgewise creates (coordinators, device agents)."""

LOOPBACK = "127.0.0.1"
"""The node IP of every Ray instance edgewise starts itself."""

LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch between a single-machine instance and a cluster node.

Set to ``0``, Ray takes ``127.0.0.1`` as the node IP (as it does on macOS and Windows,
where the switch defaults to off); Ray reads it when it is imported, so the processes a
local instance starts inherit it and the driver's copy is set for the ``ray.init`` call.
"""

LOG_FILE = "edgewise.log"
"""Name of the log file under ``$EDGEWISE_HOME/logs``."""

# Loggers whose records go to the log file instead of the terminal: Ray's (Serve's own
# logger does not propagate, so it is named too) and Python's warnings.
_ROUTED_LOGGERS: tuple[str, ...] = ("ray", "ray.serve", "py.warnings")


def log_path() -> Path:
    """The log file of Ray's and Serve's lines and third-party warnings.

    Returns
    -------
    pathlib.Path
        ``$EDGEWISE_HOME/logs/edgewise.log`` (the directory is created on first use).
    """
    from edgewise.paths import home

    return home() / "logs" / LOG_FILE


class _StateLogHandler(logging.FileHandler):
    """Appends to :func:`log_path`, opened at the first record, never failing loudly.

    The state directory is resolved when the first record arrives, so a command that
    logs nothing creates nothing; a log file that cannot be written drops the records
    instead of printing a logging traceback on the screen it should keep quiet.
    """

    def __init__(self) -> None:
        super().__init__(LOG_FILE, mode="a", encoding="utf-8", delay=True)
        self.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        )

    def _open(self) -> Any:
        path = log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.baseFilename = str(path)
        return super()._open()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            super().emit(record)
        except (EnvironmentProblem, OSError):
            self.stream = None  # type: ignore[assignment]

    def handleError(self, record: logging.LogRecord) -> None:
        """Drop a record that cannot be written (no traceback on the terminal)."""


class _Routing:
    """Which loggers we took over, and what they had before, to give them back."""

    def __init__(self) -> None:
        self.verbose = True  # until route_logs() is called, nothing is touched
        self.handler: _StateLogHandler | None = None
        self.saved: dict[str, tuple[list[logging.Handler], bool]] = {}
        self.showwarning: Callable[..., None] | None = None
        self.print_to_stdstream: Callable[..., None] | None = None


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` while quiet: edgewise's own on screen, the rest to the log."""
    if str(message).startswith("edgewise") and _routing.showwarning is not None:
        _routing.showwarning(message, category, filename, lineno, file, line)
        return
    text = warnings.formatwarning(message, category, filename, lineno, line)
    logging.getLogger("py.warnings").warning("%s", text.rstrip())


_routing = _Routing()

_RAY_WORKER = "ray._private.worker"
"""Ray's driver module whose ``print_to_stdstream`` prints error messages to stdout."""


def _print_to_log(data: dict[str, Any], ignore_prefix: bool = False) -> None:
    """``ray._private.worker.print_to_stdstream`` while quiet: the lines go to the log.

    Ray's driver thread ``listen_error_messages`` prints the errors its instance
    publishes (``(raylet) Task ServeController.graceful_shutdown failed ...``) with this
    module-level function, not a logger; it is looked up at call time, so replacing it
    in Ray's module sends them to the log file with Ray's own prefix.
    """
    source = data.get("actor_name") or data.get("task_name")
    pid = data.get("pid")
    prefix = f"({source} pid={pid})" if source else f"({pid})"
    logger = logging.getLogger("ray")
    for line in data.get("lines", ()):
        logger.warning("%s %s", prefix, line)


def _route_ray_prints() -> None:
    """Swap Ray's ``print_to_stdstream`` for :func:`_print_to_log` once Ray is imported."""
    worker: Any = sys.modules.get(_RAY_WORKER)
    if worker is None or worker.print_to_stdstream is _print_to_log:
        return
    _routing.print_to_stdstream = worker.print_to_stdstream
    worker.print_to_stdstream = _print_to_log


def route_logs(verbose: bool | None = None) -> None:
    """Send Ray's and Serve's log lines and third-party warnings to :func:`log_path`.

    Parameters
    ----------
    verbose : bool or None
        ``True`` gives the terminal back to them (Ray's own handlers, warnings printed);
        ``False`` sends them to the log file; ``None`` re-applies the last choice, for a
        caller that has just imported Ray or Serve (both install their own terminal
        handlers when first imported).

    Notes
    -----
    The CLI's root callback calls this once per invocation with ``--verbose``; the Ray
    session calls it again (``None``) after importing Ray, the serving runtime after
    importing Serve. Warnings edgewise issues itself begin with ``edgewise`` and stay on
    the terminal (the cgroup fallback, for one); all other warnings go to the file. Once
    Ray is imported, the error messages its driver prints to stdout itself go to the
    file as well (see :func:`_print_to_log`).
    """
    if verbose is not None:
        _routing.verbose = verbose
    if _routing.verbose:
        _release_loggers()
        return
    if _routing.handler is None:
        _routing.handler = _StateLogHandler()
    if warnings.showwarning is not _show_warning:
        _routing.showwarning = warnings.showwarning
        warnings.showwarning = _show_warning
    _route_ray_prints()
    for name in _ROUTED_LOGGERS:
        logger = logging.getLogger(name)
        if name not in _routing.saved:
            _routing.saved[name] = (list(logger.handlers), logger.propagate)
        if logger.handlers != [_routing.handler]:
            logger.handlers = [_routing.handler]
        logger.propagate = False


def _release_loggers() -> None:
    """Give the routed loggers back their own handlers; warnings print again."""
    if _routing.showwarning is not None:
        warnings.showwarning = _routing.showwarning
        _routing.showwarning = None
    worker: Any = sys.modules.get(_RAY_WORKER)
    if worker is not None and _routing.print_to_stdstream is not None:
        worker.print_to_stdstream = _routing.print_to_stdstream
    _routing.print_to_stdstream = None
    for name, (handlers, propagate) in _routing.saved.items():
        logger = logging.getLogger(name)
        logger.handlers = handlers
        logger.propagate = propagate
    _routing.saved.clear()
    if _routing.handler is not None:
        _routing.handler.close()
        _routing.handler = None


@contextmanager
def loopback_node() -> Iterator[None]:
    """Make the Ray instance started inside the block take ``127.0.0.1`` as its node IP.

    Ray decides between loopback and all interfaces from the node IP alone: its gRPC
    servers (GCS, raylet, workers) listen on ``127.0.0.1`` when the node IP is
    ``127.0.0.1``, and so do the runtime-env agent, the dashboard's and autoscaler's
    metrics servers. ``ray.init(_node_ip_address="127.0.0.1")`` does not get there: Ray
    resolves a loopback address given there to the host's routable IP unless
    :data:`LOCAL_ONLY_ENV` is ``0``, which Ray reads at import. So the environment
    variable is set for the processes the instance starts, and the driver's value read
    at import (``ray._private.ray_constants.ENABLE_RAY_CLUSTER``) is set for the call
    and restored after it, so that a later ``address=...`` join behaves as Ray's default.
    """

    from ray._private import ray_constants

    saved_env = os.environ.get(LOCAL_ONLY_ENV)
    saved_const = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOCAL_ONLY_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        if saved_env is None:
            os.environ.pop(LOCAL_ONLY_ENV, None)
        else:
            os.environ[LOCAL_ONLY_ENV] = saved_env


JOIN_TIMEOUT_S = 5.0
"""Seconds to wait for the GCS of a Ray instance on this machine before giving up."""

_LOOPBACK_HOSTS = ("localhost", "::1", "[::1]")


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` address; ``None`` for anything else
    (``auto``, ``ray://...``, no port)."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or "://" in address or not port.isdigit():
        return None
    return host, int(port)


def is_loopback_address(address: str) -> bool:
    """Whether ``address`` (``HOST:PORT``) names a Ray instance bound to loopback here.

    Parameters
    ----------
    address : str
        A Ray address as ``ray.init`` takes it.

    Returns
    -------
    bool
        ``True`` for ``127.x.x.x``, ``localhost`` and ``::1`` with a port.
    """
    parsed = _host_port(address)
    if parsed is None:
        return False
    host = parsed[0]
    return host.startswith("127.") or host in _LOOPBACK_HOSTS


def check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast when nothing listens at ``address`` (Ray itself retries for minutes).

    Parameters
    ----------
    address : str
        ``HOST:PORT`` of a Ray instance's GCS (other forms are not checked).
    timeout_s : float
        Seconds to wait for the TCP connection.

    Raises
    ------
    ConnectionError
        Nothing accepted a connection there within ``timeout_s``.
    """
    import socket

    parsed = _host_port(address)
    if parsed is None:
        return
    host, port = parsed
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout_s):
            pass
    except OSError as err:
        raise ConnectionError(
            f"nothing answers at {address} within {timeout_s:.0f} s ({err.strerror or err})"
        ) from None


AUTH_MODE_ENV = "RAY_AUTH_MODE"
"""Ray's switch for token authentication (``token`` or ``disabled``)."""


def _local_token_auth() -> tuple[bool, str | None]:
    """Turn on token authentication for joining a Ray instance on this machine.

    A local instance runs with token authentication (Ray's default), and its driver's
    children inherit ``RAY_AUTH_MODE=token``; another process that joins it by address
    does not: Ray enables authentication by itself only for ``ray.init()`` with no
    address, so the join was refused ("Authentication token is missing"). The token
    is the machine's own (``~/.ray/auth_token`` or ``RAY_AUTH_TOKEN``), the one the
    instance was started with. A mode the environment sets stays as it is.

    Returns
    -------
    tuple of (bool, str or None)
        Whether the environment was changed, and its value before.
    """
    before = os.environ.get(AUTH_MODE_ENV)
    if before is not None:
        return False, before
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # pragma: no cover - a Ray without token authentication
        return False, None
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    return os.environ.get(AUTH_MODE_ENV) is not None, None


class SigtermGuard:
    """Keep the process's SIGTERM handling across ``ray.init``; give it back at the end.

    Call :meth:`save` before ``ray.init``, :meth:`take_back` once it returned and
    :meth:`restore` after ``ray.shutdown``. Signal handlers belong to the main thread: in
    any other thread (a device pool started from a worker thread) all three do nothing.

    Notes
    -----
    One rule: SIGTERM goes where it went before Ray started. A Python handler in place
    before (the CLI's, which raises ``KeyboardInterrupt`` as Ctrl-C does; ``serve``'s,
    which sets its stop event as Ctrl-C does) is installed again. With none (a library
    caller at the default), Ray's own Python handler (``sys.exit``) is installed again at
    the C level, so that the process exits through Python's clean-up instead of the core
    worker's C++ handler aborting it.
    """

    def __init__(self) -> None:
        self._saved: Any = None
        self._installed: Any = None
        self._active = False

    def save(self) -> None:
        """Remember the SIGTERM handler in place now (before ``ray.init``)."""
        self._active = threading.current_thread() is threading.main_thread()
        if self._active:
            self._saved = signal.getsignal(signal.SIGTERM)
            self._installed = None

    def take_back(self) -> None:
        """After ``ray.init``: SIGTERM to the remembered Python handler (or Ray's)."""
        if not self._active:
            return
        handler = self._saved if callable(self._saved) else signal.getsignal(signal.SIGTERM)
        if callable(handler):
            signal.signal(signal.SIGTERM, handler)
            self._installed = handler

    def restore(self) -> None:
        """After ``ray.shutdown`` (or a failed ``ray.init``): SIGTERM as before :meth:`save`.

        A handler set since :meth:`take_back` is kept (the CLI's handler sets the
        default on the first SIGTERM, so that a second one kills at once), and set again
        so that it holds at the C level as well.
        """
        if not self._active:
            return
        current = signal.getsignal(signal.SIGTERM)
        if self._installed is None or current is self._installed:
            current = signal.SIG_DFL if self._saved is None else self._saved
        signal.signal(signal.SIGTERM, current)
        self._active = False
        self._saved = self._installed = None


class RaySession:
    """Start (or join) Ray once for several users; shut it down on exit if we started it.

    Parameters
    ----------
    address : str or None
        Cluster to join (``HOST:6379`` or ``auto``); ``None`` starts a fresh local
        instance of our own, bound to loopback, never one another process on this
        machine started.
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
        self._saved_auth: tuple[bool, str | None] = (False, None)
        self._sigterm = SigtermGuard()

    @property
    def started(self) -> bool:
        """Whether this session started (and so will shut down) the Ray instance."""
        return self._started

    def __enter__(self) -> RaySession:
        import ray

        route_logs()  # Ray's import installed its own terminal handler
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
        self._sigterm.save()
        try:
            if self.address and not is_loopback_address(self.address):
                ray.init(**kwargs)
            else:
                # A loopback address is an instance edgewise started on this machine
                # (bound to loopback): joining it needs loopback as our node IP too,
                # or Ray swaps 127.0.0.1 for the host's routable IP and retries
                # the unreachable GCS there without end.
                if self.address:
                    check_reachable(self.address, JOIN_TIMEOUT_S)
                    self._saved_auth = _local_token_auth()
                with loopback_node():
                    ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as err:
            self._sigterm.restore()
            self._restore_env()
            self._restore_auth()
            where = self.address or "a local Ray instance"
            raise EnvironmentProblem(f"cannot start or reach Ray at {where}: {err}") from None
        self._sigterm.take_back()
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
        self._sigterm.restore()
        self._restore_env()
        self._restore_auth()

    def _restore_auth(self) -> None:
        changed, value = self._saved_auth
        if changed:
            if value is None:
                os.environ.pop(AUTH_MODE_ENV, None)
            else:
                os.environ[AUTH_MODE_ENV] = value
        self._saved_auth = (False, None)
