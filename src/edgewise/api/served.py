"""Recording which version a service serves: the use cases' side of ``served_versions``.

``serve`` records ``serve started`` once its first replica answers, ``variant switched``
each time its controller moves it to another model variant (written from a thread of
its own by :class:`ServedRecorder`, so that a locked knowledge base never holds up the
control loop) and ``stopped`` when it ends; ``rollout`` records the canary and its verdict (``rollout promoted`` or
``rollout rolled back: <reason>``). A model reference is recorded as the service
resolved it: ``NAME`` becomes the registry's latest ``NAME:vN`` with its version
number; a zoo name or a file path is recorded as it is, with no version. The intervals
themselves are decided by :func:`edgewise.kb.served.plan_change` and written in one
transaction by :func:`edgewise.kb.served.record_change`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from edgewise.errors import EdgewiseError
from edgewise.kb import KnowledgeBase
from edgewise.kb.served import Change, Interval, ServedChange, ServedModel, record_change
from edgewise.registry.refs import parse_ref
from edgewise.registry.store import resolve

__all__ = [
    "ServedRecorder",
    "record_served",
    "record_stopped",
    "recorded_serving",
    "served_model",
]

_log = logging.getLogger(__name__)


def served_model(ref: str, kb: KnowledgeBase) -> ServedModel:
    """``ref`` as a service serves it (a registry name resolved to its version).

    Parameters
    ----------
    ref : str
        A zoo name, ``NAME[:vN]`` or a model file's path.
    kb : KnowledgeBase
        The registry a ``NAME`` is resolved in.

    Returns
    -------
    ServedModel
        The reference, the model's name (or path) and its registry version.
    """
    parsed = parse_ref(ref)
    if parsed.kind == "registry":
        version = resolve(kb, ref)
        return ServedModel(version.ref, version.name, version.version)
    return ServedModel(ref, parsed.name)


def record_served(
    kb: KnowledgeBase,
    service: str,
    change: Change,
    ref: str,
    *,
    canary_since: datetime | None = None,
    reason: str = "",
    at: datetime | None = None,
) -> list[Interval]:
    """Record that ``service`` started serving ``ref``, or a rollout's verdict on it.

    Parameters
    ----------
    kb : KnowledgeBase
        Where the intervals live (the service's knowledge base).
    service : str
        The service's name.
    change : {'serve started', 'rollout promoted', 'rollout rolled back'}
        What happened.
    ref : str
        What serves now, or the version rolled out.
    canary_since : datetime, optional
        A rollout: when its canary began.
    reason : str
        A rollback: the gate's reason.
    at : datetime, optional
        When (default: now).

    Returns
    -------
    list of Interval
        The intervals closed and added.
    """
    when = at or datetime.now(UTC)
    served = served_model(ref, kb)
    return record_change(
        kb, ServedChange(service, change, when, served, canary_since=canary_since, reason=reason)
    )


def record_stopped(kb: KnowledgeBase, service: str, at: datetime | None = None) -> None:
    """Close ``service``'s open intervals (it stopped); a failure is logged, never raised,
    so that it cannot hide why the service stopped nor keep it from shutting down.

    Parameters
    ----------
    kb : KnowledgeBase
        The service's knowledge base.
    service : str
        The service's name.
    at : datetime, optional
        When (default: now).
    """
    try:
        record_change(kb, ServedChange(service, "stopped", at or datetime.now(UTC)))
    except (SQLAlchemyError, EdgewiseError) as err:
        _log.warning("could not record that service %r stopped: %s", service, err)


class ServedRecorder:
    """Records a running service's variant switches from a thread of its own.

    :meth:`switched` only queues the change with its time, so the caller (the live
    controller's loop) never waits for the knowledge base; the writer thread records
    the changes in order, and one that cannot be written (the knowledge base locked past
    its timeout, a version gone) is logged, never raised.

    Parameters
    ----------
    kb : KnowledgeBase
        The service's knowledge base.
    service : str
        The service's name.
    """

    def __init__(self, kb: KnowledgeBase, service: str) -> None:
        self.kb = kb
        self.service = service
        self.failed = 0
        self._queue: queue.Queue[tuple[str, datetime] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._write, name=f"served-{service}", daemon=True)
        self._thread.start()

    def switched(self, ref: str, at: datetime | None = None) -> None:
        """Queue ``variant switched`` to ``ref`` at ``at`` (default: now); returns at once."""
        self._queue.put((ref, at or datetime.now(UTC)))

    def _write(self) -> None:
        while (item := self._queue.get()) is not None:
            ref, at = item
            try:
                record_served(self.kb, self.service, "variant switched", ref, at=at)
            except (SQLAlchemyError, EdgewiseError) as err:
                self.failed += 1
                _log.warning(
                    "could not record that service %r switched to %s: %s", self.service, ref, err
                )

    def close(self, timeout_s: float = 10.0) -> bool:
        """Write what is queued (waiting at most ``timeout_s``); whether all of it was."""
        self._queue.put(None)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


@contextmanager
def recorded_serving(kb: KnowledgeBase, service: str, ref: str) -> Iterator[ServedRecorder]:
    """``serve started`` on entry, ``stopped`` on exit (however the block ends).

    Yields the :class:`ServedRecorder` of the service's variant switches; what it queued
    is written before ``stopped``.

    Parameters
    ----------
    kb : KnowledgeBase
        The service's knowledge base.
    service : str
        The service's name.
    ref : str
        The model reference it serves.
    """
    record_served(kb, service, "serve started", ref)
    recorder = ServedRecorder(kb, service)
    try:
        yield recorder
    finally:
        if not recorder.close():
            _log.warning("service %r: variant switches still unwritten at its stop", service)
        record_stopped(kb, service)
