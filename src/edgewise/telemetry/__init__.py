"""Telemetry: host and per-cgroup samples from /proc and cgroup v1/v2 files.

Pure parsers (:mod:`.procfs`, :mod:`.cgroupfs`) turn file text into numbers; thin
readers (:func:`read_host`, :func:`read_cgroup`) read the files; :func:`rates` turns
two samples into utilisations, bandwidths and rates; :class:`Sampler` runs the readers
on a clock in a background thread and can serve the figures to Prometheus (loopback by
default). ``perf stat`` counters and NVML GPUs are optional (:func:`perf_status`,
:func:`nvml_status` say whether they work here, in one line).
"""

from __future__ import annotations

from edgewise.telemetry.cgroupfs import (
    CgroupMounts,
    CGroupPaths,
    CGroupSample,
    find_mounts,
    read_cgroup,
    resolve_cgroup,
)
from edgewise.telemetry.host import HostSample, read_host
from edgewise.telemetry.hw import HwStatus, nvml_status, perf_status, read_gpus
from edgewise.telemetry.rates import cgroup_rates, host_rates, rates
from edgewise.telemetry.sampler import Sampler, SampleSet, rates_between

__all__ = [
    "CGroupPaths",
    "CGroupSample",
    "CgroupMounts",
    "HostSample",
    "HwStatus",
    "SampleSet",
    "Sampler",
    "cgroup_rates",
    "find_mounts",
    "host_rates",
    "nvml_status",
    "perf_status",
    "rates",
    "rates_between",
    "read_cgroup",
    "read_gpus",
    "read_host",
    "resolve_cgroup",
]
