"""Live serving on Ray Serve: the imperative shell around the serve pillar's policies.

``ServingRuntime`` starts a deployment of one zoo model whose replica count follows an
externally set target (a custom Ray Serve autoscaling policy reads it from the
``Coordinator`` actor, so scaling never restarts survivors) and whose replicas apply CPU
quota changes to their own cgroup in place (vertical scaling).
"""

from edgewise.serving.runtime.app import (
    RaySession,
    RuntimeConfig,
    ServingRuntime,
    probe_capacity,
    stdout_to_stderr,
)

__all__ = ["RaySession", "RuntimeConfig", "ServingRuntime", "probe_capacity", "stdout_to_stderr"]
