"""The ``with`` protocol for edgewise's resources, in one place.

A resource (a stressor, a control group, a knowledge-base connection, a contention
meter) is acquired when its ``with`` block begins and released by :meth:`Closing.close`
when the block ends, whether it ends normally or by an exception; the exception is
never swallowed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class Closing(ABC):
    """Mixin: ``with obj:`` calls :meth:`_on_enter`, then :meth:`close` on the way out.

    Subclasses implement :meth:`close` (idempotent where the class allows it) and
    override :meth:`_on_enter` when entering the block acquires something.
    """

    def _on_enter(self) -> None:  # noqa: B027 (an optional hook, empty by design)
        """Acquire what the ``with`` block needs; nothing by default."""

    @abstractmethod
    def close(self) -> None:
        """Release what the object holds."""

    def __enter__(self) -> Self:
        self._on_enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
