"""From the options of ``edgewise profile`` to a campaign: name, configuration, target.

:func:`profile_campaign` names a campaign from the user's inputs alone
(:func:`~.config.default_campaign_name`), configures it and builds the target it
measures (:func:`campaign_target`); on resume the target is the stored campaign's (its
rate, not one timed again). Effectful: KB reads,
and timing a zoo model's solo service when a new campaign is given a ``load``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from edgewise.errors import SpecError
from edgewise.interference.campaign.config import CampaignConfig, default_campaign_name
from edgewise.interference.campaign.measure import Placement, placement_cpus
from edgewise.interference.campaign.store import campaign_exists_error, find_campaign
from edgewise.interference.target import CommandTarget, ZooTarget, make_target


def campaign_target(
    kb: Any,
    campaign: str,
    *,
    resume: bool,
    app: str,
    rate_rps: float = 20.0,
    load: float | None = None,
    batch_size: int = 1,
    cpus: Sequence[int] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> ZooTarget | CommandTarget:
    """The target campaign ``campaign`` measures, checked against the stored campaign.

    A resumed zoo campaign keeps the rate stored with it: a ``load`` is not timed again
    (the host's speed moves, and a new rate would be a new workload). Starting a
    campaign whose name is taken, without ``resume``, is refused here, before any
    process starts.

    Parameters
    ----------
    kb : KnowledgeBase
        The open knowledge base.
    campaign : str
        The campaign's name.
    resume : bool
        Continue the stored campaign of that name.
    app, rate_rps, load, batch_size, cpus, seed, device
        As for :func:`edgewise.api.profile.profile` (``cpus``: where the target runs).

    Returns
    -------
    ZooTarget or CommandTarget
        Not started.

    Raises
    ------
    EdgewiseError
        The campaign exists and ``resume`` is false.
    SpecError
        The stored campaign profiles another workload than ``app`` names.
    """
    stored = find_campaign(kb, campaign)
    if stored is not None and not resume:
        raise campaign_exists_error(campaign, stored.status)
    if stored is not None and stored.kind == "zoo" and stored.rate_rps is not None:
        rate_rps, load = stored.rate_rps, None
    target = make_target(
        app,
        rate_rps=rate_rps,
        batch_size=batch_size,
        cpus=cpus,
        seed=seed,
        device=device,
        load=load,
        kb=kb,
    )
    if stored is not None and stored.workload and target.name != stored.workload:
        raise SpecError(
            f"campaign {campaign!r} profiles {stored.workload}, not {target.name}: "
            "resume it with the app it was started with, or give another --name"
        )
    return target


def profile_campaign(
    kb: Any,
    *,
    name: str | None,
    resume: bool,
    app: str,
    rate_rps: float = 20.0,
    load: float | None = None,
    batch_size: int = 1,
    seed: int = 0,
    device: str = "cpu",
    confine: str = "none",
    placement: Placement = "any",
    space: Mapping[str, tuple[float, float]],
    target_cpus: Sequence[int],
    allowed_cpus: Sequence[int],
    **options: Any,
) -> tuple[CampaignConfig, ZooTarget | CommandTarget]:
    """The campaign ``edgewise profile`` runs: its configuration and its target.

    Parameters
    ----------
    kb : KnowledgeBase
        The open knowledge base.
    name, resume
        The campaign's name (``None``: :func:`~.config.default_campaign_name` of the
        inputs, never of anything measured); continue the stored campaign of that name.
    app, rate_rps, load, batch_size, seed, device
        As for :func:`edgewise.api.profile.profile`.
    confine, placement
        The ``--confine`` option, and where it puts the stressors.
    space : mapping
        The stress space (``gpu`` included on a GPU; the name leaves it out).
    target_cpus, allowed_cpus
        The target's CPUs and every CPU this process may use.
    **options
        The remaining :class:`~.config.CampaignConfig` fields (``budget``, ``seconds``...).

    Returns
    -------
    tuple
        ``(config, target)``; the target is not started.
    """
    campaign = name or default_campaign_name(
        app,
        rate_rps=rate_rps,
        load=load,
        batch_size=batch_size,
        device=device,
        confine=confine,
        space={k: v for k, v in space.items() if k != "gpu"},
        seed=seed,
    )
    target = campaign_target(
        kb,
        campaign,
        resume=resume,
        app=app,
        rate_rps=rate_rps,
        load=load,
        batch_size=batch_size,
        cpus=target_cpus,
        seed=seed,
        device=device,
    )
    stress_cpus, cpu_stress_cpus = placement_cpus(placement, target_cpus, allowed_cpus)
    cfg = CampaignConfig(
        name=campaign,
        seed=seed,
        space=dict(space),
        stress_cpus=stress_cpus,
        cpu_stress_cpus=cpu_stress_cpus,
        confine="cgroup" if confine == "cgroup" else "taskset",
        **options,
    )
    return cfg, target
