"""Capacity profiles: measure one replica's service times in a flavor, derive and check capacity.

This is the effect side of :mod:`edgewise.serving.capacity`, one concern per module:

* :mod:`.worker`: the replica itself, a child process serving one request per line
  (``python -m edgewise.serving.profiles``);
* :mod:`.exchange`: the protocol's record, every request's timestamps (pure);
* :mod:`.process`: the parent side, starting a replica and timing requests to it;
* :mod:`.loadtest`: sampling service times under open-loop load, and the load test;
* :mod:`.compare`: the load test's verdict, the model against the measurement (pure);
* :mod:`.measure`: one model in one flavor's cgroup, end to end (:func:`profile_flavor`);
* :mod:`.records`: the typed records (profiles, service summaries, validations);
* :mod:`.store`: profiles in the knowledge base (:func:`save_profile`,
  :func:`find_profile`).

The names used elsewhere are re-exported here.
"""

from __future__ import annotations

from edgewise.isolation import threads_for
from edgewise.serving.profiles.compare import (
    DRIFT_TOLERANCE,
    TAIL_REQUESTS,
    VALIDATION_TOLERANCE,
    compare_latency,
    load_test_requests,
    requests_for_percentile,
    service_drift,
)
from edgewise.serving.profiles.exchange import Exchange
from edgewise.serving.profiles.loadtest import (
    MIN_SAMPLES,
    Progress,
    collect_service_times,
    validate_capacity,
)
from edgewise.serving.profiles.measure import ProfileSettings, profile_flavor, profile_replica
from edgewise.serving.profiles.process import Replica, ReplicaSpec, start_replica
from edgewise.serving.profiles.records import (
    FlavorProfile,
    LoadTest,
    ProfileVsTest,
    ServiceSummary,
    StoredProfile,
    Validation,
    ValidationAttempt,
)
from edgewise.serving.profiles.store import (
    MissingProfileError,
    find_profile,
    host_name,
    profile_capacity,
    read_profile,
    save_profile,
)
from edgewise.serving.profiles.worker import READY, replica_main

__all__ = [
    "DRIFT_TOLERANCE",
    "MIN_SAMPLES",
    "READY",
    "TAIL_REQUESTS",
    "VALIDATION_TOLERANCE",
    "Exchange",
    "FlavorProfile",
    "LoadTest",
    "MissingProfileError",
    "ProfileSettings",
    "ProfileVsTest",
    "Progress",
    "Replica",
    "ReplicaSpec",
    "ServiceSummary",
    "StoredProfile",
    "Validation",
    "ValidationAttempt",
    "collect_service_times",
    "compare_latency",
    "find_profile",
    "host_name",
    "load_test_requests",
    "profile_capacity",
    "profile_flavor",
    "profile_replica",
    "read_profile",
    "replica_main",
    "requests_for_percentile",
    "save_profile",
    "service_drift",
    "start_replica",
    "threads_for",
    "validate_capacity",
]
