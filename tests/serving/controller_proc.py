"""A live controller in a process of its own, attached to a running deployment.

Run by ``test_faults_controller`` so that the test can SIGKILL the controller and nothing
else: the deployment (replicas, proxy, coordinator actor) lives in the test's Ray
instance and keeps serving. The controller reaches it through the coordinator actor,
as ``edgewise serve``'s controller does, and stores its state in the knowledge base
given on the command line. It prints ``ready`` once attached and started.

Usage: ``python controller_proc.py CONFIG_JSON`` with the keys ``gcs`` (Ray's GCS
address), ``app``, ``kb``, ``run_key``, ``policy`` and ``policy_params``, ``flavor`` (a
:class:`FlavorOption`'s fields), ``slo_ms``, ``history``, ``history_bin_s``,
``initial_replicas`` and ``seconds``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


class AttachedRuntime:
    """The :class:`RuntimePort` of a deployment another process started (its coordinator)."""

    def __init__(self, app: str) -> None:
        import ray

        from edgewise.serving.runtime.coordinator import NAMESPACE, coordinator_name

        self._ray = ray
        self._coord = ray.get_actor(coordinator_name(app), namespace=NAMESPACE)

    def snapshot(self, window_s: float = 10.0) -> dict[str, Any]:
        snap: dict[str, Any] = self._ray.get(self._coord.snapshot.remote(window_s))
        return snap

    def running_replicas(self) -> int:
        now = time.time()
        reps = self.snapshot()["replicas"].values()
        return sum(1 for v in reps if now - float(v.get("seen", 0)) < 3.0)

    def scale_to(self, replicas: int) -> None:
        self._ray.get(self._coord.set_target.remote(int(replicas)))

    def set_cpus(self, cpus: float) -> None:
        self._ray.get(self._coord.set_cpus.remote(float(cpus)))

    def set_info(self, **info: Any) -> None:
        self._ray.get(self._coord.set_info.remote(info))


def main(cfg: dict[str, Any]) -> None:
    import ray

    from edgewise.kb import KnowledgeBase
    from edgewise.serving.controller import LiveController
    from edgewise.serving.policies import FlavorOption, make_policy
    from edgewise.serving.runtime.coordinator import NAMESPACE

    ray.init(address=cfg["gcs"], namespace=NAMESPACE, log_to_driver=False)
    ctl = LiveController(
        AttachedRuntime(cfg["app"]),
        make_policy(cfg["policy"], **cfg["policy_params"]),
        FlavorOption(**cfg["flavor"]),
        slo_ms=cfg["slo_ms"],
        startup_s=cfg.get("startup_s", 5.0),
        history_bin_s=cfg["history_bin_s"],
        history=cfg["history"],
        kb=KnowledgeBase.open(cfg["kb"]),
        run_key=cfg["run_key"],
    )
    ctl.start(cfg["initial_replicas"])
    print("ready", flush=True)
    ctl.run(cfg["seconds"])


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
