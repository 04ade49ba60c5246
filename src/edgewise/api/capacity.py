"""Capacity use case: measure a model's service times per flavor and store each capacity.

:func:`capacity` profiles a model in each flavor of a catalog (a real cgroup with the
flavor's CPU quota, :func:`edgewise.serving.profiles.profile_flavor`), derives each
flavor's capacity under the SLO, optionally checks it with an open-loop load test, and
stores every profile in the knowledge base. The model is any reference: a zoo name, a
registered ``NAME[:vN]`` (profiles are stored under the ``NAME:vN`` it resolves to) or a
model file, timed on an example batch of its card's input. Next to declared neighbours (``--with``) each
flavor's capacity is also derated by the slowdown the knowledge base's interference model
predicts (:func:`edgewise.api.colocation.neighbour_slowdown`; the stored profile stays the
solo measurement). :func:`measure_profiles` is the measuring step alone, shared with
:func:`edgewise.api.plan.plan` (which measures missing profiles).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgewise.api.colocation import Slowdown, derated_capacity_rps, neighbour_slowdown
from edgewise.config import FlavorSpec, load_flavors
from edgewise.errors import SpecError
from edgewise.serving.profiles import DRIFT_TOLERANCE, FlavorProfile, profile_flavor, save_profile

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase

__all__ = ["CapacityReport", "SavedProfile", "capacity", "measure_profiles"]

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)`` with phase ``MODEL/FLAVOR/STEP``.

STEP is ``start``, ``service`` (done of total service-time samples), ``validate`` (load
tests done) or ``done`` (the flavor is measured).
"""


@dataclass(frozen=True)
class SavedProfile:
    """A measured profile and the id of its knowledge-base row."""

    id: int
    profile: FlavorProfile

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form: the service-time summary without the samples."""
        p = self.profile
        return {
            "id": self.id,
            "model": p.model,
            "flavor": p.flavor,
            "cpus": p.cpus,
            "service_ms": p.summary().as_dict(keep_samples=False),
            "capacity_rps": p.capacity_rps,
            "validation": p.validation_dict(),
        }


@dataclass(frozen=True)
class CapacityReport:
    """The result of :func:`capacity`: one stored profile per flavor measured."""

    model: str
    slo_ms: float
    percentile: float
    profiles: tuple[SavedProfile, ...]
    slowdown: Slowdown | None = None
    """The predicted slowdown next to the declared neighbours (``None``: none declared)."""
    colocated_rps: tuple[float, ...] = ()
    """Each profile's capacity derated by :attr:`slowdown` (empty without neighbours)."""

    def capacity_rps(self, index: int) -> float:
        """The capacity the ``index``-th flavor is planned with: derated next to neighbours."""
        if self.colocated_rps:
            return self.colocated_rps[index]
        return self.profiles[index].profile.capacity_rps

    @property
    def isolated(self) -> bool:
        """Whether every flavor ran in a real cgroup (else CPU affinity approximated it)."""
        return all(s.profile.isolated for s in self.profiles)

    def no_flavor_meets(self) -> str | None:
        """Why no flavor can meet the SLO (a one-line message), or ``None`` if one can."""
        profiles = [s.profile for s in self.profiles]
        if not profiles or any(self.capacity_rps(i) > 0 for i in range(len(profiles))):
            return None
        pct = self.percentile
        factor = 1.0 if self.slowdown is None else self.slowdown.factor
        best = min(profiles, key=lambda p: float(np.percentile(p.service_ms, pct)))
        lone = factor * float(np.percentile(best.service_ms, pct))
        beside = " next to its neighbours" if factor > 1.0 else ""
        return (
            f"SLO p{pct:g} <= {self.slo_ms:g} ms cannot be met by {self.model} in any flavor: "
            f"a lone request takes {lone:.1f} ms at p{pct:g}{beside} even in {best.flavor}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-able form (what ``edgewise capacity --json`` prints).

        Next to neighbours it adds ``neighbours``, ``slowdown``, ``slowdown_source`` and
        each flavor's ``capacity_colocated_rps``.
        """
        flavors = [s.as_dict() for s in self.profiles]
        if self.slowdown is None:
            return {
                "model": self.model,
                "slo_ms": self.slo_ms,
                "percentile": self.percentile,
                "flavors": flavors,
            }
        for row, rps in zip(flavors, self.colocated_rps, strict=True):
            row["capacity_colocated_rps"] = rps
        return {
            "model": self.model,
            "slo_ms": self.slo_ms,
            "percentile": self.percentile,
            **self.slowdown.as_dict(),
            "flavors": flavors,
        }


def measure_profiles(
    model: str,
    flavors: Sequence[FlavorSpec],
    *,
    kb: KnowledgeBase,
    progress: Progress | None = None,
    **options: Any,
) -> list[SavedProfile]:
    """Profile ``model`` in each of ``flavors`` and store every profile in ``kb``.

    Parameters
    ----------
    model : str
        A zoo name, a registry entry ``NAME:vN`` (looked up in ``kb``) or a model file.
    flavors : sequence of FlavorSpec
        The flavors to measure, in order.
    kb : KnowledgeBase
        Where the profiles are stored.
    progress : callable, optional
        ``progress("MODEL/FLAVOR/STEP", done, total)``.
    **options
        Keyword arguments of :func:`edgewise.serving.profiles.profile_flavor`
        (``slo_ms`` is required; ``kb_url`` defaults to ``kb``'s URL, so that the
        replica resolves a registry entry where the profile is stored).

    Returns
    -------
    list of SavedProfile
        One per flavor, with its row id.
    """
    samples = int(options.get("samples", 200))
    options.setdefault("kb_url", kb.url)
    out: list[SavedProfile] = []
    for flavor in flavors:
        prefix = f"{model}/{flavor.name}/"

        def report(phase: str, done: int, total: int, prefix: str = prefix) -> None:
            if progress is not None:
                progress(prefix + phase, done, total)

        prof = profile_flavor(model, flavor, progress=report, **options)
        out.append(SavedProfile(save_profile(kb, prof), prof))
        report("done", samples, samples)
    return out


def _chosen_flavors(path: str | Path, names: Sequence[str] | None) -> list[FlavorSpec]:
    """The catalog's flavors, or only those named (a :class:`SpecError` for an unknown one)."""
    chosen = list(load_flavors(path).flavors)
    if not names:
        return chosen
    known = {f.name for f in chosen}
    unknown = [f for f in names if f not in known]
    if unknown:
        raise SpecError(
            f"{path}: no flavor named {unknown[0]!r}; known: {', '.join(sorted(known))}"
        )
    return [f for f in chosen if f.name in set(names)]


def capacity(
    *,
    model: str,
    flavors: str | Path,
    slo_ms: float,
    percentile: float = 99.0,
    batch_size: int = 1,
    samples: int = 200,
    time_budget_s: float = 120.0,
    validate: bool = False,
    load_fraction: float = 0.8,
    validate_requests: int | None = None,
    validate_max_s: float = 600.0,
    max_reprofiles: int = 2,
    drift_tolerance: float = DRIFT_TOLERANCE,
    service_load: float = 0.5,
    only_flavors: Sequence[str] | None = None,
    neighbours: Sequence[str] = (),
    seed: int = 0,
    kb: str | None = None,
    progress: Progress | None = None,
) -> CapacityReport:
    """Measure ``model``'s service times per flavor and store each flavor's capacity.

    Parameters
    ----------
    model : str
        A zoo name (see ``edgewise models``), a registered ``NAME[:vN]`` (profiled and
        stored as the ``NAME:vN`` it resolves to) or the path of a model file.
    flavors : str or Path
        Flavors YAML file.
    slo_ms, percentile : float
        The latency bound and its percentile.
    batch_size, samples, time_budget_s
        Samples per request; service-time samples per flavor; stop sampling a flavor
        after this many seconds (with at least 30 samples).
    validate, load_fraction, validate_requests, validate_max_s
        Also run an open-loop load test at ``load_fraction`` of the capacity, of
        ``validate_requests`` requests (default: enough for the percentile), for at most
        ``validate_max_s`` seconds.
    max_reprofiles, drift_tolerance
        Re-profile and re-test a flavor at most ``max_reprofiles`` times when the load
        test's mean service time drifted more than ``drift_tolerance`` from the profile's.
    service_load : float
        Load (share of saturation) of the Poisson requests whose service times are
        sampled; 0 samples back-to-back bursts.
    only_flavors : sequence of str, optional
        Measure only these flavors of the catalog.
    neighbours : sequence of str
        Workloads beside every replica (``host``, ``stress:RES=V,...``, ``MODEL``,
        ``MODEL@RATErps``): each capacity is also derated by the predicted slowdown next
        to them (solo, with a note, where the knowledge base has no interference model
        for ``model`` or never profiled a neighbour). Checked before measuring.
    seed : int
        Seed of weights, simulation and arrivals.
    kb : str, optional
        Knowledge-base URL (default: the file under the state directory).
    progress : callable, optional
        ``progress("MODEL/FLAVOR/STEP", done, total)``.

    Returns
    -------
    CapacityReport
        Every flavor's stored profile; :meth:`CapacityReport.no_flavor_meets` says when
        the SLO is out of reach everywhere (the profiles are stored all the same).
    """
    from edgewise.api.colocation import check_neighbours
    from edgewise.kb import KnowledgeBase
    from edgewise.registry import canonical_ref, parse_ref

    registered = parse_ref(model).kind == "registry"
    if not registered:  # a zoo name or a file is checked before anything is opened
        model = canonical_ref(model)
    near = check_neighbours(neighbours)
    chosen = _chosen_flavors(flavors, only_flavors)
    store = KnowledgeBase.open(kb)
    if registered:
        model = canonical_ref(model, store)
    saved = measure_profiles(
        model,
        chosen,
        kb=store,
        progress=progress,
        slo_ms=slo_ms,
        percentile=percentile,
        batch_size=batch_size,
        samples=samples,
        time_budget_s=time_budget_s,
        validate=validate,
        load_fraction=load_fraction,
        validate_requests=validate_requests,
        validate_max_s=validate_max_s,
        max_reprofiles=max_reprofiles,
        drift_tolerance=drift_tolerance,
        service_load=service_load or None,
        seed=seed,
    )
    report = CapacityReport(model, slo_ms, percentile, tuple(saved))
    return _beside(report, near, store, seed) if near else report


def _beside(
    report: CapacityReport, neighbours: Sequence[str], kb: KnowledgeBase, seed: int
) -> CapacityReport:
    """``report`` with each capacity derated by the slowdown predicted next to neighbours."""
    slowdown = neighbour_slowdown(app=report.model, neighbours=neighbours, kb=kb)
    derated = tuple(
        s.profile.capacity_rps
        if slowdown.factor <= 1.0
        else derated_capacity_rps(
            s.profile.service_ms,
            slowdown.factor,
            slo_ms=report.slo_ms,
            percentile=report.percentile,
            seed=seed,
        )
        for s in report.profiles
    )
    return replace(report, slowdown=slowdown, colocated_rps=derated)
