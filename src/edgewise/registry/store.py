"""The registry's storage: content-addressed artifacts on disk, versions in the knowledge base.

An artifact is copied once to ``$EDGEWISE_HOME/models/<sha[:2]>/<sha>/<file or dir name>``
(``sha`` is the SHA-256 of the file, or of a directory's relative paths and contents in
order), whatever name and version it is registered under. Each registration adds one
``model_versions`` row, numbered per name (v1, v2, ...) inside the write transaction,
with its card and lineage. The copy is written under a temporary name and renamed into
place, and removed again when the row cannot be written, so a failure leaves neither.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from edgewise.errors import UnknownNameError
from edgewise.kb.models import RegisteredModel
from edgewise.paths import home
from edgewise.registry.card import ModelCard, card_path_for
from edgewise.registry.formats import ModelFileError
from edgewise.registry.refs import format_ref, parse_ref

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase

__all__ = [
    "STORE_DIR",
    "ModelVersion",
    "content_sha256",
    "copy_artifact",
    "export_version",
    "insert_version",
    "list_models",
    "remove_stored",
    "resolve",
    "store_artifact",
]

#: Directory under ``$EDGEWISE_HOME`` holding the stored artifacts.
STORE_DIR = "models"
_CHUNK = 1 << 20
_VERSION_TRIES = 5


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model.

    Attributes
    ----------
    name, version : str, int
        The registry name and its version number (1, 2, ...).
    format : str
        One of :data:`edgewise.registry.formats.FORMATS`.
    sha256 : str
        Hex digest of the artifact's content.
    path : Path
        The stored artifact (file or directory).
    card : ModelCard
        What the model takes and answers.
    parent : str or None
        ``NAME:vN`` this version was re-trained from.
    data_fingerprint : str or None
        Fingerprint of the data it was trained on.
    accuracy_before, accuracy_after : float or None
        Held-out accuracy of the parent and of this version.
    created_at : datetime
        When it was registered (UTC).
    """

    name: str
    version: int
    format: str
    sha256: str
    path: Path
    card: ModelCard
    parent: str | None
    data_fingerprint: str | None
    accuracy_before: float | None
    accuracy_after: float | None
    created_at: datetime

    @property
    def ref(self) -> str:
        """``NAME:vN``."""
        return format_ref(self.name, self.version)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (path and time as text, the card as data)."""
        return {
            "ref": self.ref,
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "sha256": self.sha256,
            "path": str(self.path),
            "card": self.card.to_dict(),
            "parent": self.parent,
            "data_fingerprint": self.data_fingerprint,
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "created_at": self.created_at.isoformat(),
        }

    @classmethod
    def from_row(cls, row: RegisteredModel) -> ModelVersion:
        """The version a ``model_versions`` row records."""
        return cls(
            name=row.name,
            version=row.version,
            format=row.format,
            sha256=row.sha256,
            path=home() / row.path,
            card=ModelCard.from_dict(row.card),
            parent=row.parent,
            data_fingerprint=row.data_fingerprint,
            accuracy_before=row.accuracy_before,
            accuracy_after=row.accuracy_after,
            created_at=row.created_at,
        )


# ------------------------------------------------------------------- artifacts


def _files_of(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def content_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, or of a directory's files (relative path and bytes) in order."""
    digest = hashlib.sha256()
    files = _files_of(path) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            name = file.relative_to(path).as_posix().encode()
            digest.update(len(name).to_bytes(8, "big") + name)
            digest.update(file.stat().st_size.to_bytes(8, "big"))
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def copy_artifact(source: Path, target: Path) -> None:
    """Copy a file or a directory tree to ``target`` (which must not exist)."""
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def store_artifact(source: Path, sha256: str) -> tuple[Path, bool]:
    """Copy ``source`` into the content-addressed store unless its content is there already.

    Returns
    -------
    (Path, bool)
        The stored path relative to the state directory, and whether this call created
        it (so a caller that fails afterwards knows to remove it).
    """
    relative = Path(STORE_DIR) / sha256[:2] / sha256 / source.name
    final_dir = home() / relative.parent
    if (home() / relative).exists():
        return relative, False
    staging = home() / STORE_DIR / f".staging-{uuid.uuid4().hex}"
    try:
        copy_artifact(source, staging / source.name)
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(final_dir)
        except OSError:
            if (home() / relative).exists():  # another process stored the same content
                return relative, False
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return relative, True


def remove_stored(relative: Path) -> None:
    """Remove a stored artifact's directory (after a failed registration)."""
    shutil.rmtree(home() / relative.parent, ignore_errors=True)


# -------------------------------------------------------------------- versions


def insert_version(
    kb: KnowledgeBase,
    *,
    name: str,
    format: str,
    sha256: str,
    relative: Path,
    card: ModelCard,
    lineage: dict[str, Any],
    meta: dict[str, Any],
) -> ModelVersion:
    """Add the next version of ``name`` (numbered inside the write transaction).

    SQLite serialises writers (``BEGIN IMMEDIATE``); on PostgreSQL two registrations of
    one name can read the same newest version, and the loser of the unique constraint
    numbers again (a few tries).
    """
    for attempt in range(_VERSION_TRIES):
        try:
            with kb.transaction() as session:
                newest = session.scalar(
                    select(func.max(RegisteredModel.version)).where(RegisteredModel.name == name)
                )
                row = RegisteredModel(
                    name=name,
                    version=int(newest or 0) + 1,
                    format=format,
                    sha256=sha256,
                    path=relative.as_posix(),
                    card=card.to_dict(),
                    meta=meta,
                    **lineage,
                )
                session.add(row)
                session.flush()
                return ModelVersion.from_row(row)
        except IntegrityError:
            if attempt == _VERSION_TRIES - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def list_models(kb: KnowledgeBase) -> list[ModelVersion]:
    """Every registered version, by name then version."""
    with kb.snapshot() as session:
        rows = session.scalars(
            select(RegisteredModel).order_by(RegisteredModel.name, RegisteredModel.version)
        ).all()
        return [ModelVersion.from_row(row) for row in rows]


def resolve(kb: KnowledgeBase, ref: str) -> ModelVersion:
    """The registered version ``ref`` names (``NAME``: the latest; ``NAME:vN``/``NAME:N``).

    Raises
    ------
    UnknownNameError
        If ``ref`` is not a registry reference, the name was never registered, or the
        version does not exist (the message lists the versions there are).
    """
    parsed = parse_ref(ref)
    if parsed.kind != "registry":
        raise UnknownNameError(
            f"{ref!r} is a {'zoo model' if parsed.kind == 'zoo' else 'path'}, "
            "not a registered NAME[:vN]"
        )
    with kb.snapshot() as session:
        rows = session.scalars(
            select(RegisteredModel)
            .where(RegisteredModel.name == parsed.name)
            .order_by(RegisteredModel.version)
        ).all()
        if not rows:
            raise UnknownNameError(
                f"no registered model named {parsed.name!r}; see `edgewise models list`"
            )
        if parsed.version is None:
            return ModelVersion.from_row(rows[-1])
        for row in rows:
            if row.version == parsed.version:
                return ModelVersion.from_row(row)
    versions = ", ".join(f"v{r.version}" for r in rows)
    raise UnknownNameError(
        f"model {parsed.name} has no version v{parsed.version} (versions: {versions})"
    )


def export_version(version: ModelVersion, out: Path) -> Path:
    """Copy a version's artifact to ``out`` with its card beside it; return the artifact path.

    ``out`` may be an existing directory (the artifact keeps its stored name inside it) or
    a new path. Nothing existing is overwritten.

    Raises
    ------
    ModelFileError
        If the target exists already.
    """
    target = out / version.path.name if out.is_dir() else out
    card_file = card_path_for(target) if version.path.is_file() else target / "card.yaml"
    if target.exists() or (version.path.is_file() and card_file.exists()):
        raise ModelFileError(f"export target {target} exists; pick another --out")
    copy_artifact(version.path, target)
    version.card.save(card_file)
    return target
