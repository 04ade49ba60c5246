"""A quiet screen: Ray's and Serve's lines and third-party warnings go to the log file.

``--verbose`` gives them back to the terminal. The unit tests use the loggers alone; the
slow one starts a real Ray instance in a subprocess and reads its stderr.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.rayenv import log_path, route_logs


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("EDGEWISE_HOME", str(tmp_path / "home"))
    ray_logger = logging.getLogger("ray")
    level = ray_logger.level
    ray_logger.setLevel(logging.INFO)  # as importing Ray does
    yield tmp_path / "home"
    route_logs(verbose=True)  # give the loggers back to the next test
    ray_logger.setLevel(level)


def test_log_path_is_under_the_state_directory(home: Path) -> None:
    assert log_path() == home / "logs" / "edgewise.log"


def test_quiet_routes_ray_serve_and_warnings_to_the_file(
    home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    route_logs(verbose=False)
    logging.getLogger("ray").info("ray says hello")
    logging.getLogger("ray.serve").warning("serve says hello")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a third-party deprecation", DeprecationWarning, stacklevel=1)
    out, err = capfd.readouterr()
    assert "hello" not in out + err and "deprecation" not in out + err
    text = (home / "logs" / "edgewise.log").read_text()
    assert "ray says hello" in text and "serve says hello" in text
    assert "a third-party deprecation" in text


def test_edgewise_own_warnings_stay_on_the_terminal(
    home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    shown: list[str] = []
    saved = warnings.showwarning
    warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
    try:
        route_logs(verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("edgewise: cgroups are not writable here", RuntimeWarning, stacklevel=1)
            warnings.warn("some library changed its mind", FutureWarning, stacklevel=1)
    finally:
        route_logs(verbose=True)
        warnings.showwarning = saved
    assert shown == ["edgewise: cgroups are not writable here"]
    assert "changed its mind" in (home / "logs" / "edgewise.log").read_text()


def test_verbose_gives_the_terminal_back(home: Path) -> None:
    ray_logger = logging.getLogger("ray")
    before = (list(ray_logger.handlers), ray_logger.propagate, warnings.showwarning)
    route_logs(verbose=False)
    assert warnings.showwarning is not before[2]
    route_logs(verbose=True)
    assert (list(ray_logger.handlers), ray_logger.propagate, warnings.showwarning) == before
    assert not (home / "logs").exists()  # nothing was logged, nothing was created


def test_reapplying_keeps_the_last_choice(home: Path) -> None:
    route_logs(verbose=False)
    logging.getLogger("ray").handlers = [logging.StreamHandler()]  # as Ray's import does
    route_logs()
    logging.getLogger("ray").info("after the import")
    assert "after the import" in (home / "logs" / "edgewise.log").read_text()


def test_an_unwritable_log_file_drops_records_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    monkeypatch.setenv("EDGEWISE_HOME", str(blocker / "home"))
    try:
        route_logs(verbose=False)
        logging.getLogger("ray").warning("nowhere to go")
    finally:
        route_logs(verbose=True)
    err = capfd.readouterr().err
    assert "nowhere to go" not in err and "Logging error" not in err


def test_rays_own_error_prints_go_to_the_file_and_come_back_with_verbose(
    home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from ray._private import worker

    original = worker.print_to_stdstream
    error = {
        "lines": ["Task ServeController.graceful_shutdown failed: the actor died"],
        "pid": "raylet",
        "is_err": False,
    }
    try:
        route_logs(verbose=False)
        # looked up as a module global at call time, as listen_error_messages does
        worker.print_to_stdstream(error, ignore_prefix=False)
    finally:
        route_logs(verbose=True)
    out, err = capfd.readouterr()
    assert "graceful_shutdown" not in out + err
    text = (home / "logs" / "edgewise.log").read_text()
    assert "(raylet) Task ServeController.graceful_shutdown failed: the actor died" in text
    assert worker.print_to_stdstream is original
    worker.print_to_stdstream(error, ignore_prefix=False)
    assert "graceful_shutdown failed" in capfd.readouterr().out


def test_the_cli_has_verbose_next_to_debug(home: Path) -> None:
    res = CliRunner().invoke(make_app(["models"]), ["--help"])
    assert res.exit_code == 0 and "--verbose" in res.output and "--debug" in res.output
    res = CliRunner().invoke(make_app(["models"]), ["--verbose", "models", "--help"])
    assert res.exit_code == 0, res.output


_RAY_SCRIPT = """
import os
import sys
import time
import ray
from edgewise.rayenv import RaySession, route_logs
route_logs(verbose=sys.argv[1] == "verbose")
with RaySession(num_cpus=1):
    print("answer", ray.get(ray.remote(lambda: 42).remote()))
    # a worker dying makes the raylet publish an error, which Ray's driver thread
    # prints to stdout itself ("(raylet) A worker died ..."), not through a logger
    die = ray.remote(max_retries=0)(lambda: os._exit(1))
    try:
        ray.get(die.remote())
    except ray.exceptions.WorkerCrashedError:
        pass
    time.sleep(3)  # the driver's error thread polls the published errors
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_a_real_ray_start_keeps_the_terminal_quiet(tmp_path: Path, mode: str) -> None:
    env = {**os.environ, "EDGEWISE_HOME": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-c", _RAY_SCRIPT, mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "answer 42" in res.stdout
    log = tmp_path / "logs" / "edgewise.log"
    started = "Started a local Ray instance"
    if mode == "quiet":
        assert " INFO " not in res.stderr and started not in res.stderr, res.stderr
        assert "WARNING" not in res.stderr, res.stderr
        assert "(raylet)" not in res.stdout + res.stderr, res.stdout
        assert started in log.read_text()
        assert "(raylet) A worker died" in log.read_text()
    else:
        assert started in res.stderr
        assert "(raylet)" in res.stdout and "A worker died" in res.stdout
        assert not log.exists()
