"""What the interference profiler profiles: app references and workload names.

An app is a zoo model (``mobilenet_v2``), a registered model (``NAME:vN``; ``NAME`` and
``NAME:N`` resolve to the version they name), a workload ``MODEL@RATErps[xB][:cuda]``
of either, or ``cmd:COMMAND``. A workload name is how its measurements are kept in the
knowledge base; a registered model's always spells its version ``vN``
(``tiny:v1@5rps``), so that what is measured of one version is never read for another.
The device suffix comes after the rate, so a version's ``:`` is never ambiguous.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgewise.errors import EnvironmentProblem, SpecError, UnknownNameError
from edgewise.registry.refs import NAME_PATTERN, format_ref, parse_ref

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase

__all__ = [
    "check_app",
    "check_program",
    "parse_workload_name",
    "resolve_app",
    "spell_app",
    "spell_version",
    "stored_app",
    "workload_device",
    "workload_name",
    "zoo_names",
]


def workload_name(model: str, rate_rps: float, batch_size: int = 1, device: str = "cpu") -> str:
    """KB name of a model served at a rate, e.g. ``mobilenet_v2@20rps`` (``:cuda`` on GPU).

    ``model`` is a zoo name or a registered ``NAME:vN``, as it is stored.
    """
    return (
        f"{model}@{rate_rps:g}rps"
        + (f"x{batch_size}" if batch_size > 1 else "")
        + (":cuda" if device == "cuda" else "")
    )


_VERSIONED = re.compile(rf"(?P<name>{NAME_PATTERN}):v?(?P<version>[0-9]+)")
_WORKLOAD_RE = re.compile(
    rf"^(?P<model>[A-Za-z0-9_]+|{NAME_PATTERN}:v?[0-9]+)"
    r"@(?P<rate>[0-9.]+)rps(?:x(?P<batch>[0-9]+))?(?P<cuda>:cuda)?$"
)


def spell_version(model: str) -> str:
    """``model`` with a registry version spelled ``vN`` (``tiny:1`` -> ``tiny:v1``).

    Anything else (a zoo name, a bare registry name) is returned unchanged; nothing is
    looked up.
    """
    m = _VERSIONED.fullmatch(model)
    return format_ref(m["name"], int(m["version"])) if m else model


def spell_app(app: str) -> str:
    """``app`` (a model or a workload name) with a registry version spelled ``vN``.

    ``tiny:1@5rps`` -> ``tiny:v1@5rps``, ``tiny:1`` -> ``tiny:v1``; anything else is
    returned unchanged. Nothing is looked up.
    """
    model, at, rest = app.partition("@")
    return (
        spell_version(model) + at + rest if at and _WORKLOAD_RE.match(app) else spell_version(app)
    )


def parse_workload_name(name: str) -> tuple[str, float, int] | None:
    """Inverse of :func:`workload_name` (None if ``name`` is not of that form).

    The model comes back as stored: a registry version spelled ``vN``.
    """
    m = _WORKLOAD_RE.match(name)
    if not m:
        return None
    return spell_version(m["model"]), float(m["rate"]), int(m["batch"] or 1)


def workload_device(name: str) -> str:
    """``'cuda'`` for a GPU-served workload name, else ``'cpu'``."""
    m = _WORKLOAD_RE.match(name)
    return "cuda" if m and m["cuda"] else "cpu"


def zoo_names() -> tuple[str, ...] | None:
    """The zoo's model names, or ``None`` when the zoo cannot be imported."""
    try:
        from edgewise.workloads.zoo import MODEL_NAMES
    except ImportError:
        return None
    return tuple(MODEL_NAMES)


def check_program(program: str) -> None:
    """UnknownNameError unless ``program`` is on PATH or an existing path."""
    import os
    import shutil

    if shutil.which(program) is None and not os.path.exists(program):
        raise UnknownNameError(f"command not found: {program}")


def _forms(known: Sequence[str]) -> str:
    return f"a zoo model ({', '.join(known)}), a registered NAME:vN, model@RATErps or cmd:COMMAND"


def _registered(model: str, app: str, kb: KnowledgeBase | str | None, known: Sequence[str]) -> str:
    """The ``NAME:vN`` a registry reference resolves to in ``kb`` (one line if it does not)."""
    from edgewise.kb import KnowledgeBase
    from edgewise.registry import resolve

    db = kb if isinstance(kb, KnowledgeBase) else KnowledgeBase.open(kb)
    try:
        return resolve(db, model).ref
    except UnknownNameError as err:
        if str(err).startswith("no registered model"):
            raise UnknownNameError(f"unknown app {app!r}: expected {_forms(known)}") from None
        raise UnknownNameError(f"unknown app {app!r}: {err}") from None
    finally:
        if db is not kb:
            db.close()


def _not_a_model(app: str, model: str, known: Sequence[str]) -> UnknownNameError:
    """Why ``app`` names nothing the profiler serves: a model file says so, by name."""
    try:
        ref = parse_ref(model)
        is_file = ref.kind == "path" and ref.path is not None and ref.path.exists()
    except UnknownNameError:
        is_file = False
    if not is_file:
        return UnknownNameError(f"unknown app {app!r}: expected {_forms(known)}")
    return UnknownNameError(
        f"app {app!r} is a model file: the interference profiler takes {_forms(known)} "
        f"(register it first, edgewise models register NAME {model}; its capacity per "
        f"flavor: edgewise capacity {model})"
    )


def resolve_app(app: str, kb: KnowledgeBase | str | None = None) -> str:
    """Check an app reference without starting anything; return it as results are stored.

    A registered model's reference becomes the ``NAME:vN`` it resolves to (``tiny``,
    ``tiny:1@5rps`` -> ``tiny:v1``, ``tiny:v1@5rps``); zoo models, workload names of
    them and commands come back unchanged.

    Parameters
    ----------
    app : str
        A zoo model, a registered ``NAME[:vN]``, ``model@RATErps[xB][:cuda]`` of either,
        or ``cmd:COMMAND``.
    kb : KnowledgeBase or str, optional
        Where registered models are looked up (a URL, or ``None``: the default knowledge
        base); opened only for a registry reference.

    Returns
    -------
    str
        The app, a registry version spelled ``vN``.

    Raises
    ------
    UnknownNameError
        A model neither the zoo nor the registry has (the message lists the zoo's), a
        version that was never registered, a model file, or a command whose program is
        not found.
    SpecError
        ``cmd:`` with no command line.
    EnvironmentProblem
        The zoo cannot be imported.
    """
    if app.startswith("cmd:"):
        try:
            argv = shlex.split(app[4:])
        except ValueError as err:
            raise SpecError(f"bad command in {app!r}: {err}") from None
        if not argv:
            raise SpecError(f"empty command in {app!r}: expected cmd:COMMAND [ARGS...]")
        check_program(argv[0])
        return app
    parsed = parse_workload_name(app)
    model = parsed[0] if parsed is not None else app
    known = zoo_names()
    if known is None:
        raise EnvironmentProblem(
            "edgewise.workloads.zoo is not available: cannot serve a zoo model"
        )
    if model in known:
        return app
    if _is_registry_ref(model):
        stored = _registered(model, app, kb, known)
        return (
            stored if parsed is None else workload_name(stored, *parsed[1:], workload_device(app))
        )
    raise _not_a_model(app, model, known)


def _is_registry_ref(model: str) -> bool:
    try:
        return parse_ref(model).kind == "registry"
    except UnknownNameError:
        return False


def check_app(app: str, kb: KnowledgeBase | str | None = None) -> None:
    """Check an app reference without starting anything (see :func:`resolve_app`).

    Raises
    ------
    UnknownNameError, SpecError, EnvironmentProblem
        As :func:`resolve_app`.
    """
    resolve_app(app, kb)


def stored_app(app: str, kb: KnowledgeBase | str | None = None) -> str:
    """``app`` as its measurements are stored, for looking them up: a registry version
    spelled ``vN``, a bare registered ``NAME`` (or ``NAME@RATErps``) as its latest version.

    Anything else (zoo models, commands, ``stress:`` mixes, names nobody registered)
    comes back spelled as given, so the lookup reports what it did not find.
    """
    app = spell_app(app)
    parsed = parse_workload_name(app)
    model = parsed[0] if parsed is not None else app
    if app.startswith(("cmd:", "stress:")) or ":" in model or not _is_registry_ref(model):
        return app
    if model in (zoo_names() or ()):
        return app
    try:
        return resolve_app(app, kb)
    except UnknownNameError:
        return app
