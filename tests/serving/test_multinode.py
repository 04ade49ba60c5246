"""Serving across the nodes of a real (local) multi-node Ray cluster."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_replicas_spread_over_cluster_nodes_and_serve() -> None:
    import ray
    from ray.cluster_utils import Cluster

    from edgewise.serving.runtime import RuntimeConfig, ServingRuntime

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1, resources={"edge-b": 1})
        cluster.wait_for_nodes()
        ray.init(
            address=cluster.address,
            include_dashboard=False,
            log_to_driver=False,
            namespace="edgewise",
        )
        # 0.75 CPU per replica on 1-CPU nodes: two replicas must land on two nodes.
        cfg = RuntimeConfig(
            model="digits_cnn",
            app="multinode",
            cpus_per_replica=0.75,
            initial_replicas=1,
            max_replicas=2,
            port=0,
            address=cluster.address,
        )
        with ServingRuntime(cfg) as rt:
            rt.scale_to(2)
            rt.wait_for_replicas(2, timeout_s=240)
            nodes = {v["node"] for v in rt.replicas().values()}
            assert len(nodes) == 2 and nodes <= {n["NodeID"] for n in ray.nodes()}
            buf = io.BytesIO()
            np.save(buf, np.zeros((1, 32, 32), np.float32))
            codes = {
                httpx.post(rt.url + "/predict", content=buf.getvalue(), timeout=60).status_code
                for _ in range(20)
            }
            assert codes == {200}
    finally:
        ray.shutdown()
        cluster.shutdown()
