"""Profiling campaigns: design points -> stressed runs -> stored runs -> fitted surrogate.

One concern per module:

- :mod:`.records`: the typed run record and solo reference (pure data, stored shape
  unchanged);
- :mod:`.config`: :class:`CampaignConfig`, the default stress space, feature names;
- :mod:`.fit`: drift-corrected training sets and :func:`fit_interference_model`
  (optionally warm-started from other workloads' runs: the transfer part);
- :mod:`.curves`: learning and transfer curves, held-out errors of refits;
- :mod:`.planning`: :func:`plan_next`, seed design first, then the candidate that most
  lowers the surrogates' integrated variance;
- :mod:`.measure`: one run (stress mix, warm-up, the target's window, achieved vector);
- :mod:`.store`: the campaign and its runs in the knowledge base;
- :mod:`.runner`: :class:`CampaignRunner`, the loop that ties them together;
- :mod:`.holdout`: held-out points measured after a campaign to score its model;
- :mod:`.evaluation`: an app's campaigns, then its held-out points and noise runs.

The pure modules decide; ``measure``, ``store`` and ``runner`` act. Every public name is
re-exported here: import from ``edgewise.interference.campaign``.
"""

from __future__ import annotations

from edgewise.interference.campaign.config import (
    DEFAULT_SPACE,
    FEATURES,
    SOLO_FEATURES,
    CampaignConfig,
    Confine,
    Method,
    default_space,
    resources_of,
)
from edgewise.interference.campaign.curves import (
    holdout_error,
    learning_curve,
    p50_holdout_ape,
    transfer_curve,
)
from edgewise.interference.campaign.evaluation import (
    AppEvaluation,
    EvaluationSetup,
    evaluate_app,
    run_campaigns,
)
from edgewise.interference.campaign.fit import (
    InterferenceModel,
    PoolSet,
    count_stressed,
    features_of,
    fit_interference_model,
    pooled_arrays,
    prefix,
    reference_at,
    solo_reference,
    solo_summary,
    training_arrays,
    training_set,
)
from edgewise.interference.campaign.holdout import (
    HeldOutPoint,
    combine_repeats,
    holdout_design,
    holdout_records,
    measure_holdout_and_solos,
    measure_noise,
    noise_cv,
    row_ape,
    space_centre,
)
from edgewise.interference.campaign.measure import (
    Measured,
    Placement,
    measure_point,
    placement_cpus,
)
from edgewise.interference.campaign.planning import expected_achieved, plan_next
from edgewise.interference.campaign.records import (
    RunLike,
    RunRecord,
    SoloReference,
    as_run,
    as_runs,
)
from edgewise.interference.campaign.runner import CampaignRunner, solo_due
from edgewise.interference.campaign.store import (
    attach_holdout,
    campaign_records,
    campaign_runs,
    load_pool,
    open_campaign,
    runs_of,
    set_status,
    store_run,
)

__all__ = [
    "DEFAULT_SPACE",
    "FEATURES",
    "SOLO_FEATURES",
    "AppEvaluation",
    "CampaignConfig",
    "CampaignRunner",
    "Confine",
    "EvaluationSetup",
    "HeldOutPoint",
    "InterferenceModel",
    "Measured",
    "Method",
    "Placement",
    "PoolSet",
    "RunLike",
    "RunRecord",
    "SoloReference",
    "as_run",
    "as_runs",
    "attach_holdout",
    "campaign_records",
    "campaign_runs",
    "combine_repeats",
    "count_stressed",
    "default_space",
    "evaluate_app",
    "expected_achieved",
    "features_of",
    "fit_interference_model",
    "holdout_design",
    "holdout_error",
    "holdout_records",
    "learning_curve",
    "load_pool",
    "measure_holdout_and_solos",
    "measure_noise",
    "measure_point",
    "noise_cv",
    "open_campaign",
    "p50_holdout_ape",
    "placement_cpus",
    "plan_next",
    "pooled_arrays",
    "prefix",
    "reference_at",
    "resources_of",
    "row_ape",
    "run_campaigns",
    "runs_of",
    "set_status",
    "solo_due",
    "solo_reference",
    "solo_summary",
    "space_centre",
    "store_run",
    "training_arrays",
    "training_set",
    "transfer_curve",
]
