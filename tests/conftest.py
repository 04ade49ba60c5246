"""Shared test fixtures: every test gets its own EDGEWISE_HOME and no DB URL override."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the CLI does, before torch loads


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "edgewise-home"
    monkeypatch.setenv("EDGEWISE_HOME", str(home))
    monkeypatch.delenv("EDGEWISE_DB_URL", raising=False)
    yield home


#: Test files that start Ray (and Ray Serve, whose proxy takes a fixed port): under
#: ``pytest -n 2`` (``make test``) their tests run one at a time on one worker, while
#: the other worker takes everything else.
_RAY_FILES = (
    "tests/bench/test_bench_serving_live.py",
    "tests/serving/test_faults.py",
    "tests/serving/test_faults_controller.py",
    "tests/serving/test_ingress.py",
    "tests/serving/test_multinode.py",
    "tests/serving/test_predict_ray.py",
    "tests/serving/test_replay_cli.py",
    "tests/serving/test_replay_pool_ray.py",
    "tests/serving/test_rollout_cli_ray.py",
    "tests/serving/test_rollout_ray.py",
    "tests/serving/test_runtime_ray.py",
    "tests/serving/test_sockets.py",
    "tests/test_multinode_system.py",
    "tests/test_quiet.py",
)


#: Test files whose verdict rests on latency measured on the live system (attainment
#: after a fault, a canary gated on its p99, live decisions matched against the
#: simulator's): marked ``alone``, ``make test`` runs them after the parallel phase with
#: nothing else on the host. On both cores one of them saw 68 % attainment after a
#: replica kill for the other worker's load (99 % alone).
_ALONE_FILES = (
    "tests/serving/test_faults.py",
    "tests/serving/test_faults_controller.py",
    "tests/retrain/test_retrain_calibrate.py",
    "tests/serving/test_replay_cli.py",
    "tests/serving/test_replay_pool_ray.py",
    "tests/serving/test_rollout_cli_ray.py",
    "tests/serving/test_rollout_ray.py",
    "tests/test_demo_own_model.py",
)


def _listed(item: pytest.Item, files: tuple[str, ...]) -> bool:
    path = item.path.as_posix()
    return any(path.endswith(name.removeprefix("tests")) for name in files)


def _starts_ray(item: pytest.Item) -> bool:
    return _listed(item, _RAY_FILES) or "demo" in item.path.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group the tests that start Ray on one xdist worker; mark the latency judges ``alone``.

    The ``xdist_group`` is a no-op without xdist; ``alone`` lets ``make test`` run those
    tests in a second, serial phase (``-m alone``) after the parallel one (``-m "not alone"``).
    """
    for item in items:
        if _listed(item, _ALONE_FILES):
            item.add_marker(pytest.mark.alone)
        if _starts_ray(item):
            item.add_marker(pytest.mark.xdist_group("ray"))


_RAY_ENV = ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_METRICS_PORT")


@pytest.fixture(scope="module", autouse=True)
def _no_ray_outlives_its_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """A module that starts Ray leaves none behind, even when one of its tests failed.

    Without it, one failure cascades: the next module finds a Ray instance (perhaps one
    started for the other ingress) already joined by this process.
    """
    saved = {k: os.environ.get(k) for k in _RAY_ENV}
    yield
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        serve = sys.modules.get("ray.serve")
        if serve is not None:
            with contextlib.suppress(Exception):
                serve.shutdown()
        ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def served_url(proc: Any, home: Path, app: str, timeout_s: float) -> str:
    """The URL of service ``app`` that ``edgewise serve --port 0`` (``proc``) started.

    Read from the record the serve process writes under ``home`` once its deployment
    runs (``edgewise.serving.runtime.services``): the port is one free once Ray was up.
    """
    import json
    import time

    path = home / "services" / f"{app}.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"edgewise serve exited with {proc.returncode}: {err[-2000:]}")
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            if record.get("pid") == proc.pid:
                return str(record["url"])
        time.sleep(0.5)
    raise AssertionError(f"edgewise serve wrote no record at {path} within {timeout_s:.0f} s")


@pytest.fixture
def service_url() -> Any:
    """:func:`served_url`, for tests that start ``edgewise serve`` in a process."""
    return served_url
