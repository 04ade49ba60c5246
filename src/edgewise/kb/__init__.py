"""The edgewise knowledge base: workloads, footprints, runs, fitted models, plans.

A SQLite file under ``$EDGEWISE_HOME`` by default (WAL mode), any SQLAlchemy URL
(PostgreSQL included) through ``$EDGEWISE_DB_URL`` or :meth:`KnowledgeBase.open`.

>>> from edgewise.kb import KnowledgeBase, models as m
>>> kb = KnowledgeBase.open("sqlite://")
>>> with kb.transaction() as s:
...     s.add(m.Workload(name="mobilenet_v2@20rps", kind="zoo", params={"rps": 20}))
>>> kb.counts()["workloads"]
1
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edgewise.kb import models
from edgewise.kb.artifacts import load_model, save_model
from edgewise.kb.store import (
    SCHEMA_VERSION,
    KnowledgeBase,
    counts,
    default_url,
    mask_url,
    resolve_table,
    table_names,
)

if TYPE_CHECKING:
    from edgewise.kb.export import ExportResult, export_table, export_tables

_LAZY_EXPORTS = ("ExportResult", "export_table", "export_tables")


def __getattr__(name: str) -> Any:
    # The exporters pull in pandas and pyarrow (~0.5 s): load them on first use only.
    if name in _LAZY_EXPORTS:
        from edgewise.kb import export

        return getattr(export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION",
    "ExportResult",
    "KnowledgeBase",
    "counts",
    "default_url",
    "export_table",
    "export_tables",
    "load_model",
    "mask_url",
    "models",
    "resolve_table",
    "save_model",
    "table_names",
]
