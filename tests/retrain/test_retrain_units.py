"""Unit tests of the retrain pillar's pure pieces (no processes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from edgewise.config import BackgroundApp, DeviceSpec
from edgewise.retrain.background import read_log, summarise
from edgewise.retrain.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from edgewise.retrain.profiler import (
    assemble,
    needs_reprofile,
    profiles_from_json,
    profiles_to_json,
)
from edgewise.retrain.trainer import loss_scale, rank_offsets, step_indices


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_loss_scale_makes_equal_average_the_global_mean(seed: int) -> None:
    """What DDP does (equal-weight mean of rank gradients) equals the global-batch gradient."""
    rng = np.random.default_rng(seed)
    world = int(rng.integers(2, 5))
    shares = list(rng.integers(1, 30, size=world))
    total = int(sum(shares))
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    x = torch.randn(total, 5, dtype=torch.float64, generator=gen)
    y = torch.randint(0, 3, (total,), generator=gen)
    torch.nn.functional.cross_entropy(x @ w, y).backward()
    ref = w.grad.clone()
    grads = []
    for r, lo in enumerate(rank_offsets(shares)):
        w.grad = None
        sl = slice(lo, lo + shares[r])
        (
            torch.nn.functional.cross_entropy(x[sl] @ w, y[sl])
            * loss_scale(shares[r], world, total)
        ).backward()
        grads.append(w.grad.clone())
    ddp_avg = sum(grads) / world
    assert float((ddp_avg - ref).abs().max()) < 1e-12
    unweighted = []
    for r, lo in enumerate(rank_offsets(shares)):
        w.grad = None
        sl = slice(lo, lo + shares[r])
        torch.nn.functional.cross_entropy(x[sl] @ w, y[sl]).backward()
        unweighted.append(w.grad.clone())
    if len(set(shares)) > 1:
        assert float((sum(unweighted) / world - ref).abs().max()) > 1e-6


def test_step_indices_deterministic_and_epochwise() -> None:
    a = step_indices(100, 32, 0, seed=5)
    assert np.array_equal(a, step_indices(100, 32, 0, seed=5))
    epoch = np.concatenate([step_indices(100, 32, s, seed=5) for s in range(3)])
    assert len(set(epoch.tolist())) == 96  # no repeats inside an epoch
    assert not np.array_equal(step_indices(100, 32, 3, 5), a)


def test_checkpoint_atomic_roundtrip(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path, 5, {"model": {"w": torch.ones(2)}})
    save_checkpoint(tmp_path, 10, {"model": {"w": torch.zeros(2)}})
    (tmp_path / "step-0000015.tmp123").write_bytes(b"partial")  # a crash mid-write
    step, path = latest_checkpoint(tmp_path)  # type: ignore[misc]
    assert step == 10 and load_checkpoint(path)["step"] == 10


def test_background_log_summary(tmp_path: Path) -> None:
    log = tmp_path / "bg.log"
    log.write_text(
        "".join(f"{t:.3f} {lat} 10\n" for t, lat in [(1.0, 5), (2.0, 50), (3.0, 7), (9.0, 99)])
    )
    arr = read_log(log)
    s = summarise(arr, deadline_ms=20.0, t0=0.0, t1=5.0)
    assert s["n"] == 3 and s["misses"] == 1 and s["miss_rate"] == pytest.approx(1 / 3)
    assert summarise(arr, 20.0, 100.0, 200.0)["n"] == 0


def test_profile_assembly_and_drift() -> None:
    spec = DeviceSpec(name="d", cpus=0.5, background=BackgroundApp(rate_rps=10, deadline_ms=50))
    log = np.array([[0.5, 2.0, 10], [0.6, 3.0, 10], [1.5, 30.0, 10], [1.6, 40.0, 10]])
    p = assemble(
        spec,
        [{"threads": 1, "nice": 0, "samples": 200, "seconds": 0.5, "t0": 1.0, "t1": 2.0}],
        log,
        (0.0, 1.0),
    )
    assert p.intensities[0].throughput_sps == 400.0
    assert 30.0 <= p.intensities[0].bg_latency_ms <= 40.0
    assert 2.0 <= p.solo_latency_ms <= 3.0
    assert profiles_from_json(profiles_to_json({"d": p}))["d"] == p
    assert needs_reprofile(100.0, 125.0) and not needs_reprofile(100.0, 115.0)


def test_cli_bad_devices_one_line(tmp_path: Path) -> None:
    from edgewise.cli.main import make_app

    app = make_app(["retrain"])
    runner = CliRunner()
    zero = tmp_path / "zero.yaml"
    zero.write_text("devices:\n  - {name: a, cpus: 0}\n")
    r = runner.invoke(app, ["retrain", "--devices", str(zero)])
    assert r.exit_code == 2 and "cpus" in r.output and len(r.output.strip().splitlines()) == 1
    tiny = tmp_path / "tiny.yaml"
    tiny.write_text("devices:\n  - {name: small-pi, cpus: 1, memory_mb: 8}\n")
    r = runner.invoke(app, ["retrain", "--devices", str(tiny)])
    assert r.exit_code == 2 and "small-pi" in r.output and "MB" in r.output


def test_rebalance_moves_work_to_measured_rates_and_ignores_noise() -> None:
    from edgewise.retrain.trainer import BalanceState, rebalance

    # planned 1:1:1, but rank 2 is three times slower than rank 0
    shares = [300, 300, 300]
    times = [0.1, 0.2, 0.3]
    new, st = rebalance(shares, times, BalanceState(), 900)
    assert new is None and st.steps == 1  # warm-up step: no decision yet
    new, st = rebalance(shares, times, st, 900)
    assert new is not None and sum(new) == 900
    assert new[0] > new[1] > new[2] >= 1
    # predicted step of the new shares is the water-filled optimum (about 900/5500 s)
    rates = np.array([3000.0, 1500.0, 1000.0])
    assert max(np.array(new) / rates) < 0.1667
    # already balanced within 3 %: no churn
    rates_now = [s / r for s, r in zip(new, rates, strict=True)]
    again, _ = rebalance(new, rates_now, st, 900)
    assert again is None
    # a rank at share 0 stays at 0, the others still balance
    new0, _ = rebalance([0, 450, 450], [0.01, 0.15, 0.45], BalanceState(steps=5), 900)
    assert new0 is not None and new0[0] == 0 and sum(new0) == 900 and new0[1] > new0[2]


def test_flat_allreduce_single_rank_keeps_grads_and_gathers_slot() -> None:
    from edgewise.retrain.trainer import allreduce_mean_grads

    w = torch.nn.Parameter(torch.ones(3))
    v = torch.nn.Parameter(torch.ones(2))  # no gradient: becomes zeros
    (w * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    got = allreduce_mean_grads([w, v], 1, extra=(0, 0.25))
    assert got == [0.25]
    assert torch.equal(w.grad, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(v.grad, torch.zeros(2))


def test_profile_pools_interleaved_phases_of_one_intensity() -> None:
    spec = DeviceSpec(name="d", cpus=0.5, background=BackgroundApp(rate_rps=10, deadline_ms=50))
    log = np.array([[1.5, 30.0, 10], [2.5, 5.0, 10], [3.5, 50.0, 10], [4.5, 6.0, 10]])
    phases = [
        {"threads": 1, "nice": 0, "samples": 100, "seconds": 1.0, "t0": 1.0, "t1": 2.0},
        {"threads": 1, "nice": 19, "samples": 90, "seconds": 1.0, "t0": 2.0, "t1": 3.0},
        {"threads": 1, "nice": 0, "samples": 300, "seconds": 1.0, "t0": 3.0, "t1": 4.0},
        {"threads": 1, "nice": 19, "samples": 110, "seconds": 1.0, "t0": 4.0, "t1": 5.0},
    ]
    p = assemble(spec, phases, log, (0.0, 1.0))
    by = {k.label: k for k in p.intensities}
    assert set(by) == {"t1n0", "t1n19"}
    assert by["t1n0"].throughput_sps == 200.0 and by["t1n19"].throughput_sps == 100.0
    assert 30.0 <= by["t1n0"].bg_latency_ms <= 50.0
    assert 5.0 <= by["t1n19"].bg_latency_ms <= 6.0


def test_bench_step_summaries() -> None:
    from edgewise.retrain.comparison import default_timeline_path
    from edgewise.retrain.jobs import final_shares, measured_rates

    steps = [
        {"device": "a", "step": s, "share": 100, "t0": 0.0, "t_fb": 0.1, "t": 0.12}
        for s in (1, 2, 3)
    ] + [
        {"device": "b", "step": 1, "share": 50, "t0": 0.0, "t_fb": 0.1, "t": 0.12},
        {"device": "b", "step": 2, "share": 0, "t0": 0.0, "t_fb": 0.1, "t": 0.12},
        {"device": "b", "step": 3, "share": 60, "t0": 0.0, "t_fb": 0.2, "t": 0.22},
    ]
    rates = measured_rates(steps)
    assert rates["a"] == pytest.approx(1000.0)
    assert 250.0 <= rates["b"] <= 500.0  # share-0 steps say nothing about speed
    assert final_shares(steps) == {"a": 100, "b": 60}
    assert default_timeline_path().name == "retrain-timeline-failure.png"


def test_train_split_is_cached_under_home(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from edgewise.retrain import trainer

    calls: list[tuple[str, str, int]] = []
    x, y = torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 3, 4, 1])

    def fake(data: str, drift: str, seed: int) -> SimpleNamespace:
        calls.append((data, drift, seed))
        return SimpleNamespace(drift_train=(x, y), base_train=(x, torch.zeros(6, dtype=int)))

    monkeypatch.setattr(trainer, "load_task", fake)
    first = trainer.train_split("digits", "rotation", 7)
    second = trainer.train_split("digits", "rotation", 7)
    assert calls == [("digits", "rotation", 7)]  # the second call read the cache
    for got in (first, second):
        assert torch.equal(got[0], x) and torch.equal(got[1], y) and got[2] == 5


def test_training_rank_does_not_load_the_serving_planner() -> None:
    """A rank imports everything its step loop calls up front, and nothing heavy: the
    serving planner's scipy.optimize once loaded inside the first step's re-balance and
    cost a 0.33-CPU rank a second there (every other rank waited in the all-reduce)."""
    import subprocess
    import sys

    code = (
        "import sys, edgewise.retrain.trainer as t; "
        "from edgewise.planning import plan_exact; "  # still reachable, lazily
        "assert callable(t.min_max_shares) and callable(plan_exact); "
        "print('scipy.optimize' in sys.modules)"
    )
    probe = "import sys, edgewise.retrain.trainer; print('scipy.optimize' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "True"
    )
