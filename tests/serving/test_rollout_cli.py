"""``edgewise rollout`` and ``edgewise bench rollout`` without a cluster: bad input is one
line with exit code 2 and nothing is touched; the commands are registered and parse."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import typer
import yaml
from torch import nn
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.serving.runtime.services import read_record, remove_record, write_record

runner = CliRunner()


def _service(tmp: Path, name: str = "digits") -> Path:
    path = tmp / "service.yaml"
    path.write_text(
        yaml.safe_dump(
            {"name": name, "model": "digits_cnn", "slo": {"latency_ms": 100, "percentile": 99}}
        )
    )
    return path


def _tensor_model(tmp: Path) -> str:
    """A TorchScript model of plain 4-number tensors (another input kind than images)."""
    path = tmp / "tabular.pt"
    torch.jit.save(torch.jit.script(nn.Linear(4, 2).eval()), str(path))
    card = {"task": "classification", "input": {"kind": "tensor", "shape": [4]}}
    path.with_name(path.name + ".card.yaml").write_text(
        yaml.safe_dump({**card, "labels": ["a", "b"]})
    )
    return str(path)


def _rollout(*args: str) -> tuple[int, str]:
    res = runner.invoke(make_app(["rollout"]), ["rollout", *args])
    return res.exit_code, res.output


def test_no_running_service_is_one_line(tmp_path: Path) -> None:
    code, out = _rollout(str(_service(tmp_path)), "--to", "digits_cnn")
    assert code == 2
    assert "no running service 'digits'" in out and len(out.strip().splitlines()) == 1


def test_a_bad_service_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nslo: {latency_ms: -1}\nmodel: digits_cnn\n")
    code, out = _rollout(str(bad), "--to", "digits_cnn")
    assert code == 2 and len(out.strip().splitlines()) == 1


def test_a_version_that_does_not_exist_is_one_line_and_touches_nothing(tmp_path: Path) -> None:
    write_record("digits", ray_address="127.0.0.1:1", url="http://x", model="digits_cnn", kb=None)
    code, out = _rollout(str(_service(tmp_path)), "--to", "digits:v7")
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert "digits" in out
    assert read_record("digits")["model"] == "digits_cnn"  # the service is as it was


def test_a_rollout_to_another_input_kind_is_one_line(tmp_path: Path) -> None:
    write_record("digits", ray_address="127.0.0.1:1", url="http://x", model="digits_cnn", kb=None)
    code, out = _rollout(str(_service(tmp_path)), "--to", _tensor_model(tmp_path))
    assert code == 2
    assert "input.kind 'tensor' differs from the serving model's 'image'" in out
    assert len(out.strip().splitlines()) == 1


def test_impossible_gate_thresholds_are_one_line(tmp_path: Path) -> None:
    write_record("digits", ray_address="127.0.0.1:1", url="http://x", model="digits_cnn", kb=None)
    code, out = _rollout(str(_service(tmp_path)), "--to", "digits_cnn", "--canary-share", "1.5")
    assert code == 2 and "canary_share 1.5 must lie in (0, 1)" in out


def test_records_belong_to_live_processes(tmp_path: Path) -> None:
    path = write_record("svc", ray_address="a", url="u", model="m", kb=None)
    assert read_record("svc")["pid"] == os.getpid()
    remove_record("svc")
    assert not path.exists()
    path.write_text('{"app": "svc", "pid": 999999999}')
    with pytest.raises(Exception, match="is not running"):
        read_record("svc")


def test_bench_rollout_is_registered_with_its_options() -> None:
    from edgewise.bench.rollout import register_bench

    bench = typer.Typer()
    register_bench(bench)

    @bench.callback()
    def _group() -> None:
        """Benchmarks."""

    res = runner.invoke(bench, ["rollout", "--help"])
    assert res.exit_code == 0
    for option in ("--json", "--slo-ms", "--load", "--canary-share", "--replicas"):
        assert option in res.output


def test_bench_versions_are_what_the_benchmark_says(tmp_path: Path) -> None:
    import numpy as np

    from edgewise.bench.rollout import build_versions
    from edgewise.registry import load_model

    paths = build_versions(tmp_path)
    v1, v2, v3 = (load_model(paths[k]) for k in ("v1", "v2", "v3"))
    x = np.random.default_rng(0).normal(size=(8, 1, 16, 16)).astype(np.float32)
    top1 = [[t[0][0] for t in m.top_k(x, 1)] for m in (v1, v2, v3)]
    assert top1[0] == top1[1] == top1[2]  # v2 and v3 agree with v1
    np.testing.assert_allclose(v3.forward(x), v2.forward(x), atol=1e-5)


def test_the_gate_comes_from_the_service_yaml_and_a_flag_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgewise.api.rollout as api_rollout
    from edgewise.serving.rollout import RolloutPolicy

    path = _service(tmp_path)
    spec = yaml.safe_load(path.read_text())
    spec["rollout"] = {"canary_share": 0.25, "min_requests": 20, "max_canary_s": 30}
    path.write_text(yaml.safe_dump(spec))
    seen: list[RolloutPolicy] = []

    def stop(to: str, serving: str | None, kb: str | None) -> None:
        raise api_rollout.SpecError("stopped after the gate was built")

    real_policy = api_rollout.RolloutPolicy

    def spy(**kwargs: object) -> RolloutPolicy:
        seen.append(real_policy(**kwargs))  # type: ignore[arg-type]
        return seen[-1]

    monkeypatch.setattr(api_rollout, "RolloutPolicy", spy)
    monkeypatch.setattr(api_rollout, "check_version", stop)
    code, _ = _rollout(str(path), "--to", "digits_cnn", "--min-requests", "80")
    assert code == 2
    gate = seen[-1]
    assert (gate.canary_share, gate.min_requests, gate.max_canary_s) == (0.25, 80, 30.0)
    assert gate.min_agreement == 0.9  # the default where neither says
    # a bad setting in the YAML names its field
    spec["rollout"] = {"canary_share": 1.5}
    path.write_text(yaml.safe_dump(spec))
    code, out = _rollout(str(path), "--to", "digits_cnn")
    assert code == 2 and "rollout.canary_share" in out


def test_an_unreachable_ray_instance_is_one_line_not_a_hang(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{probe.getsockname()[1]}"
    write_record("digits", ray_address=address, url="http://x", model="digits_cnn", kb=None)
    t0 = time.monotonic()
    code, out = _rollout(str(_service(tmp_path)), "--to", "digits_cnn")
    assert code == 2 and len(out.strip().splitlines()) == 1
    assert f"cannot start or reach Ray at {address}" in out
    assert time.monotonic() - t0 < 60
