"""Shared test fixtures: every test gets its own EDGEWISE_HOME and no DB URL override."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

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
    "tests/serving/test_rollout_cli_ray.py",
    "tests/serving/test_rollout_ray.py",
    "tests/serving/test_runtime_ray.py",
    "tests/serving/test_sockets.py",
    "tests/test_multinode_system.py",
    "tests/test_quiet.py",
)


def _starts_ray(item: pytest.Item) -> bool:
    path = item.path.as_posix()
    in_list = any(path.endswith(name.removeprefix("tests")) for name in _RAY_FILES)
    return in_list or "demo" in item.path.name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put every test that starts Ray in one ``xdist_group`` (a no-op without xdist)."""
    for item in items:
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
