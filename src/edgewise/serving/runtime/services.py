"""Where a running service can be found: a small record per service in the state directory.

``ServingRuntime`` writes ``$EDGEWISE_HOME/services/<app>.json`` (the Ray address, the
URL, the model reference it started with) once the service runs and removes it on
shutdown; another process (``edgewise rollout``) reads it to join the same Ray instance
and reach the service's coordinator actor. The recorded address is the instance's GCS
on loopback: :class:`edgewise.rayenv.RaySession` joins it with loopback as the node IP
and the machine's token authentication, as the instance's own driver does, and says
in one line within seconds when nothing listens there any more.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgewise.errors import UnknownNameError
from edgewise.paths import home


def record_path(app: str) -> Path:
    """The record file of service ``app``."""
    return home() / "services" / f"{app}.json"


def write_record(app: str, **info: Any) -> Path:
    """Write (atomically) what another process needs to reach service ``app``."""
    path = record_path(app)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"app": app, "pid": os.getpid(), **info}))
    tmp.replace(path)
    return path


def remove_record(app: str) -> None:
    """Forget service ``app`` (it stopped); written by this process only."""
    path = record_path(app)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def read_record(app: str) -> dict[str, Any]:
    """The record of a running service ``app``.

    Raises
    ------
    UnknownNameError
        If no service of that name runs here (no record, or its process is gone).
    """
    path = record_path(app)
    try:
        record: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        raise UnknownNameError(
            f"no running service {app!r} (no record at {path}); start it with edgewise serve"
        ) from None
    if not _alive(int(record.get("pid", -1))):
        raise UnknownNameError(
            f"service {app!r} is not running (its process {record.get('pid')} has exited)"
        )
    return record


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


@contextmanager
def attach_coordinator(app: str, address: str | None = None) -> Iterator[Any]:
    """The coordinator actor of running service ``app``, joining its Ray instance.

    Parameters
    ----------
    app : str
        The service (its name in the service YAML).
    address : str, optional
        Ray address; default: the one the service recorded (or this process's Ray).

    Raises
    ------
    UnknownNameError
        No such service.
    EnvironmentProblem
        Its Ray instance cannot be reached.
    """
    import ray

    from edgewise.rayenv import RaySession
    from edgewise.serving.runtime.coordinator import NAMESPACE, coordinator_name

    session: RaySession | None = None
    if not ray.is_initialized():
        address = address or str(read_record(app)["ray_address"])
        session = RaySession(address).__enter__()
    try:
        try:
            actor = ray.get_actor(coordinator_name(app), namespace=NAMESPACE)
        except ValueError:
            raise UnknownNameError(f"no running service {app!r} in this Ray instance") from None
        yield actor
    finally:
        if session is not None:
            session.__exit__(None, None, None)
