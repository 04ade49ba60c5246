"""Ray Serve custom autoscaling policy that follows the coordinator's target.

Ray Serve 2.60 calls ``policy(ctx) -> (replicas, policy_state)`` in its controller
every control-loop tick and adds or removes replicas without touching survivors. The
decision itself is made by edgewise's own policies in the controller; this function
only relays the target, and wakes a deployment scaled to zero when requests queue.
"""

from __future__ import annotations

from typing import Any

_handles: dict[str, Any] = {}


def follow_target(ctx: Any) -> tuple[int, dict[str, Any]]:
    import ray

    from edgewise.serving.runtime.coordinator import NAMESPACE, coordinator_name

    state = dict(ctx.policy_state or {})
    app = ctx.app_name or "default"
    try:
        handle = _handles.get(app)
        if handle is None:
            handle = ray.get_actor(coordinator_name(app), namespace=NAMESPACE)
            _handles[app] = handle
        target = int(ray.get(handle.get_target.remote(), timeout=2.0))
        handle.report_queue.remote(float(ctx.total_num_requests or 0.0))
        state["last_target"] = target
    except Exception:
        _handles.pop(app, None)
        target = int(state.get("last_target", ctx.current_num_replicas))
    if target == 0 and float(ctx.total_num_requests or 0) > 0:
        target = 1  # cold start: a request is waiting for a replica
    lo, hi = ctx.capacity_adjusted_min_replicas, ctx.capacity_adjusted_max_replicas
    return max(lo, min(hi, target)), state
