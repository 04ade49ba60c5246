"""``serve --fleet`` and ``bench fleet-live``: bad input is one line, exit code 2, before Ray."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from edgewise.cli.main import make_app

EXAMPLES = Path(__file__).parents[2] / "examples"


def _fleet(tmp_path: Path, nodes: int) -> Path:
    spec = (EXAMPLES / "fleet-live.yaml").read_text()
    spec = spec.replace("count: 2}", f"count: {nodes}}}")
    path = tmp_path / "fleet.yaml"
    path.write_text(spec)
    return path


def test_a_fleet_whose_nodes_need_more_cpus_than_the_host_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    host = len(os.sched_getaffinity(0))
    fleet = _fleet(tmp_path, host + 1)
    res = CliRunner().invoke(make_app(["serve"]), ["serve", "--fleet", str(fleet)])
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert "\n" not in line
    assert f"need {host + 1} whole CPUs to be emulated on this host, which has {host}" in line


def test_serve_takes_a_service_or_a_fleet_not_both(tmp_path: Path) -> None:
    fleet = _fleet(tmp_path, 2)
    both = ["serve", str(EXAMPLES / "service.yaml"), "--fleet", str(fleet)]
    res = CliRunner().invoke(make_app(["serve"]), both)
    assert res.exit_code == 2 and "not both" in res.output
    res = CliRunner().invoke(make_app(["serve"]), ["serve"])
    assert res.exit_code == 2 and "--fleet" in res.output


def test_bench_fleet_live_wants_whole_windows_of_whole_speedups() -> None:
    app = make_app(["bench"])
    res = CliRunner().invoke(app, ["bench", "fleet-live", "--hours", "3", "--window-s", "7200"])
    assert res.exit_code == 2 and "whole number of 7200 s windows" in res.output
    res = CliRunner().invoke(app, ["bench", "fleet-live", "--speedup", "7", "--window-s", "7200"])
    assert res.exit_code == 2 and "whole number of speedup 7" in res.output
