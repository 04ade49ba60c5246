"""Fault injection outside the controller: a launcher wrapper kills, failures come as data.

In-memory fakes only: a fake pool whose ranks advance one step per poll and write the
step records the controller reads, as the trainer does.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from edgewise.planning.retrain import DeviceProfile, DeviceState, Intensity, RetrainConstraints
from edgewise.planning.retrain import plan as plan_shares
from edgewise.retrain.controller import (
    DeviceFailure,
    FailureReporter,
    JobSpec,
    StepObserver,
    TrainingFailed,
    run_training,
)
from edgewise.retrain.faults import KillDeviceAtStep
from edgewise.retrain.trainer import TrainJobConfig


class FakeRank:
    """A rank that takes one step per poll and exits 0 at the job's last step."""

    def __init__(self, cfg_path: Path, rank: int, pid: int) -> None:
        self.cfg = TrainJobConfig.from_json(cfg_path.read_text())
        self.rank = rank
        self.pid = pid
        self.step = self.cfg.start_step
        self.code: int | None = None
        self.metrics = Path(self.cfg.workdir) / f"metrics-g{self.cfg.generation}-r{rank}.jsonl"

    def poll(self) -> int | None:
        if self.code is None and self.step < self.cfg.total_steps:
            self.step += 1
            t = 100.0 + self.step
            record = {
                "event": "step",
                "step": self.step,
                "device": self.cfg.ranks[self.rank].device,
                "share": self.cfg.ranks[self.rank].share,
                "t0": t - 0.5,
                "t": t,
            }
            with open(self.metrics, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        elif self.code is None:
            self.code = 0
        return self.code

    def kill_group(self, sig: int) -> None:
        if self.code is None:
            self.code = -sig


class FakePool:
    """A launcher that starts :class:`FakeRank`s and remembers the devices it lost."""

    def __init__(self) -> None:
        self.ranks: list[FakeRank] = []
        self.killed: list[str] = []

    def spawn(self, name: str, cmd: list[str], **kw: Any) -> FakeRank:
        proc = FakeRank(Path(cmd[-2]), int(cmd[-1]), pid=1000 + len(self.ranks))
        self.ranks.append(proc)
        return proc

    def kill_device(self, name: str) -> None:
        self.killed.append(name)

    def rendezvous(self, device: str) -> tuple[str, int]:
        return "127.0.0.1", 29500


def _job(tmp_path: Path, steps: int = 6) -> JobSpec:
    return JobSpec("digits_cnn", "digits", "rotation", 0, steps, tmp_path / "job", timeout_s=5.0)


def _train(launcher: Any, tmp_path: Path, names: tuple[str, ...] = ("a", "b")) -> Any:
    states = [DeviceState(n, 1.0, 1024.0) for n in names]
    profiles = {n: DeviceProfile(n, (Intensity(1, 0, 500.0),)) for n in names}
    c = RetrainConstraints(global_batch=32)
    return run_training(launcher, states, profiles, c, _job(tmp_path), plan_shares)


def test_the_wrapper_is_an_observer_and_a_reporter_the_plain_pool_is_neither() -> None:
    injector = KillDeviceAtStep(FakePool(), 3)
    assert isinstance(injector, StepObserver) and isinstance(injector, FailureReporter)
    assert not isinstance(FakePool(), StepObserver) and not isinstance(FakePool(), FailureReporter)


def test_without_injection_the_run_has_no_failure(tmp_path: Path) -> None:
    pool = FakePool()
    res = _train(pool, tmp_path)
    assert res.final_step == 6 and res.failures == [] and res.recovery_s is None
    assert pool.killed == [] and res.steps_lost is None


@pytest.mark.parametrize("victim", ["a", "b", None])
def test_killed_device_comes_back_as_data_and_is_planned_out(
    tmp_path: Path, victim: str | None
) -> None:
    pool = FakePool()
    injector = KillDeviceAtStep(pool, 3, victim, clock=lambda: 103.2)
    res = _train(injector, tmp_path)
    lost = victim or "b"  # by default the running group's last rank
    assert pool.killed == [lost]
    assert injector.killed == DeviceFailure(lost, 103.2, 3)
    assert injector.drain_failures() == []  # reported once, to the controller
    (failure,) = res.failures
    assert failure["devices"] == [lost] and failure["t_kill"] == failure["t"] == 103.2
    assert failure["resume_step"] == 0 and res.steps_lost == failure["step"] >= 3
    survivors = {"a", "b"} - {lost}
    assert set(res.plans[-1].shares) == survivors and res.final_step == 6
    assert {s["device"] for s in res.steps if s["generation"] == 1} == survivors
    # from the kill's time stamp to the end of the next generation's first step (t=101)
    assert res.recovery_s == pytest.approx(101.0 - 103.2)
    killed_rank = next(r for r in pool.ranks if r.cfg.ranks[r.rank].device == lost)
    assert killed_rank.code == -signal.SIGKILL


def test_a_victim_outside_the_plan_is_never_killed(tmp_path: Path) -> None:
    pool = FakePool()
    res = _train(KillDeviceAtStep(pool, 2, "z"), tmp_path)
    assert pool.killed == [] and res.failures == [] and res.final_step == 6


def test_losing_every_device_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(TrainingFailed, match="every device has failed"):
        _train(KillDeviceAtStep(FakePool(), 2, "a"), tmp_path, names=("a",))
