"""The retrain pillar (Deep-Edge): data-parallel re-training on heterogeneous edge devices.

Device pools (emulated by cgroups, or Ray nodes), the device profiler, the weighted-share
DDP trainer, the elastic controller that re-plans on a failure, checkpoints and drift
checks. The plan itself is pure and lives in :mod:`edgewise.planning.retrain`; the use
case that wires them is :func:`edgewise.api.retrain.retrain`.
"""
