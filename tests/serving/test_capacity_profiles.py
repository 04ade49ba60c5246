"""Capacity profiles: replica processes, knowledge-base rows, the real `capacity` command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgewise.cli.main import make_app
from edgewise.config import FlavorSpec
from edgewise.kb import KnowledgeBase
from edgewise.serving.capacity import capacity_rps
from edgewise.serving.profiles import (
    Exchange,
    FlavorProfile,
    ProfileSettings,
    ReplicaSpec,
    collect_service_times,
    compare_latency,
    find_profile,
    profile_capacity,
    profile_flavor,
    profile_replica,
    read_profile,
    requests_for_percentile,
    save_profile,
    service_drift,
    start_replica,
)
from edgewise.stats import poisson_times


def make_profile(flavor: str = "small", cpus: float = 0.5, mean_ms: float = 10.0) -> FlavorProfile:
    service = np.random.default_rng(1).gamma(9.0, mean_ms / 9.0, 200)
    return FlavorProfile(
        model="digits_cnn",
        flavor=flavor,
        cpus=cpus,
        batch_size=1,
        threads=1,
        isolated=True,
        service_ms=service,
        slo_ms=40.0,
        percentile=99.0,
        capacity_rps=capacity_rps(service, 40.0, 99.0, n_requests=20_000),
    )


def test_save_find_and_reuse() -> None:
    kb = KnowledgeBase.open()
    prof = make_profile()
    save_profile(kb, prof, host="elsewhere")
    newer = make_profile(mean_ms=12.0)
    save_profile(kb, newer, host="elsewhere")
    here = make_profile(mean_ms=11.0)
    save_profile(kb, here, host="this-host")
    save_profile(kb, make_profile(cpus=1.0), host="this-host")  # measured at other CPUs
    with kb.snapshot() as s:
        row = find_profile(s, "digits_cnn", "small", 0.5, host="this-host")
        assert row is not None and row.host == "this-host"
        assert row.service_ms["n"] == 200 and len(row.service_ms["samples"]) == 200
        other = find_profile(s, "digits_cnn", "small", 0.5, host="third")
        assert other is not None and other.service_ms["mean"] == pytest.approx(11.0, rel=0.1)
        assert find_profile(s, "digits_cnn", "small", 0.75) is None
        assert find_profile(s, "digits_cnn", "small", 0.5, batch_size=4) is None
        assert profile_capacity(row, 40.0, 99.0) == row.capacity_rps
        looser = profile_capacity(row, 80.0, 99.0)
        assert looser > row.capacity_rps
        # The stored layout of the JSON columns, and the typed record read back.
        assert set(row.service_ms) == {
            "p50",
            "p95",
            "p99",
            "mean",
            "n",
            "threads",
            "isolated",
            "samples",
        }
        assert row.validation == {}
        typed = read_profile(s, "digits_cnn", "small", 0.5, host="this-host")
        assert typed is not None and typed.id == row.id and typed.samples_ms.size == 200
        assert typed.capacity_at(40.0, 99.0) == row.capacity_rps
        assert typed.capacity_at(80.0, 99.0) == pytest.approx(looser)
        assert read_profile(s, "digits_cnn", "small", 0.75) is None


def fake_run(due_ms: list[float], service_ms: list[float], late_ms: float = 0.0) -> Exchange:
    """An Exchange as a FIFO replica would produce it for these due times and services."""
    due = np.asarray(due_ms) * 1e6
    done = np.empty_like(due)
    start = np.empty_like(due)
    free = -np.inf
    for k, (t, s) in enumerate(zip(due, np.asarray(service_ms) * 1e6, strict=True)):
        start[k] = max(t, free)
        free = done[k] = start[k] + s
    ints = [a.astype(np.int64) for a in (due, due + late_ms * 1e6, start, done)]
    return Exchange(*ints, cpu=np.full(due.size, 1_000_000, dtype=np.int64))


def test_exchange_service_times_are_fifo_consistent() -> None:
    run = fake_run([0, 1, 2, 50, 51], [10, 10, 10, 5, 5])
    assert np.allclose(run.service_ms(), [10, 10, 10, 5, 5])
    assert np.allclose(run.latency_ms(), [10, 19, 28, 5, 9])
    assert run.idle_start().tolist() == [True, False, False, True, False]
    assert np.allclose(run.cpu_ms(), 1.0) and np.allclose(run.lateness_ms(), 0.0)


def test_compare_latency_passes_a_matching_model_and_fails_a_wrong_one() -> None:
    rng = np.random.default_rng(5)
    service = rng.gamma(9.0, 10.0 / 9.0, 1500)
    due = np.cumsum(rng.exponential(1000 / 60.0, 4000))  # 60 rps, rho 0.6
    run = fake_run(list(due), list(rng.gamma(9.0, 10.0 / 9.0, 4000)))
    good = compare_latency(service, run, 60.0, 99.0)
    # One run's p99 is itself noisy: the check is the interval, not a fixed band.
    assert good.passed and abs(good.rel_error) < 0.25
    lo, hi = good.measured_ci95_ms
    assert lo <= good.measured_ms <= hi
    assert good.requests == 4000 and 0 < good.idle_share < 1
    bad = compare_latency(service * 0.5, run, 60.0, 99.0)  # profile says twice as fast
    assert not bad.passed and bad.rel_error < -0.3
    assert good.conclusive and good.requests_needed == 556  # 500 kept after 10%
    run_lo, run_hi = good.predicted_run_range95_ms
    assert run_lo < good.predicted_ms < run_hi and run_lo <= good.measured_ms <= run_hi
    assert bad.predicted_run_range95_ms[1] < bad.measured_ms
    # The stored layout: the same keys, nested and JSON-able.
    stored = good.as_dict()
    assert stored["measured_ci95_ms"] == [lo, hi] and stored["passed"] is True
    assert stored["service_mean_ms"]["profile"] == pytest.approx(float(np.mean(service)))
    assert set(stored["sender_late_ms"]) == {"p50", "p99"}
    assert service_drift(good) == pytest.approx(
        stored["service_mean_ms"]["test"] / stored["service_mean_ms"]["profile"] - 1.0
    )


def test_a_short_load_test_is_inconclusive_for_a_high_percentile() -> None:
    assert [requests_for_percentile(p) for p in (50, 95, 99, 99.9)] == [10, 100, 500, 5000]
    rng = np.random.default_rng(6)
    due = np.cumsum(rng.exponential(1000 / 2.0, 126))  # 126 requests, as at 0.5 CPU
    run = fake_run(list(due), list(rng.gamma(9.0, 70.0 / 9.0, 126)))
    out = compare_latency(rng.gamma(9.0, 70.0 / 9.0, 500), run, 2.0, 99.0)
    assert not out.conclusive
    assert compare_latency(rng.gamma(9.0, 70.0 / 9.0, 500), run, 2.0, 50.0).conclusive


class FakeReplica:
    """A FIFO replica in memory: gamma service times whose mean a load test can change.

    A load test (an exchange of more than 25 requests, the sampling chunk) first
    multiplies the mean by ``slow_down``, up to ``slow_downs`` times: a host that changed
    under the profile.
    """

    def __init__(self, mean_ms: float, slow_down: float = 1.0, slow_downs: int = 0) -> None:
        self.mean_ms = mean_ms
        self.slow_down = slow_down
        self.slow_downs = slow_downs
        self.rng = np.random.default_rng(11)

    def _service(self, n: int) -> list[float]:
        return list(self.rng.gamma(9.0, self.mean_ms / 9.0, n))

    def burst(self, n: int) -> np.ndarray:
        return fake_run([0.0] * n, self._service(n)).service_ms()

    def run_arrivals(self, arrivals_s: np.ndarray) -> Exchange:
        if len(arrivals_s) > 25 and self.slow_downs > 0:
            self.mean_ms *= self.slow_down
            self.slow_downs -= 1
        return fake_run(list(np.asarray(arrivals_s) * 1e3), self._service(len(arrivals_s)))


# Sampling noise moves the profile-vs-test mean by ~3%: a 15% change is a real drift.
SETTINGS = ProfileSettings(
    slo_ms=60.0,
    samples=200,
    warmup=5,
    validate=True,
    validate_requests=300,
    drift_tolerance=0.15,
    seed=2,
)


def test_profile_replica_without_drift_validates_once() -> None:
    phases: list[str] = []
    service, capacity, validation = profile_replica(
        FakeReplica(10.0),  # type: ignore[arg-type]
        SETTINGS,
        lambda phase, done, total: phases.append(phase),
    )
    assert service.size == 200 and capacity > 0
    assert validation is not None and validation.reprofiled == 0
    assert abs(validation.service_drift) <= SETTINGS.drift_tolerance
    (attempt,) = validation.attempts
    assert attempt.capacity_rps == capacity
    assert validation.test.rate_rps == pytest.approx(SETTINGS.load_fraction * capacity)
    assert phases[0] == "service" and phases[-1] == "validate"
    no_test = profile_replica(FakeReplica(10.0), replace(SETTINGS, validate=False), None)  # type: ignore[arg-type]
    assert no_test[2] is None


def test_profile_replica_profiles_again_after_a_drift() -> None:
    """The host slows 40% during the first load test: profiled again, capacity lower."""
    replica = FakeReplica(10.0, slow_down=1.4, slow_downs=1)
    service, capacity, validation = profile_replica(
        replica,  # type: ignore[arg-type]
        SETTINGS,
        None,
    )
    assert validation is not None and validation.reprofiled == 1
    first, second = validation.attempts
    assert first.service_drift > 0.15 and abs(second.service_drift) <= 0.15
    assert second.capacity_rps == capacity < first.capacity_rps
    assert float(np.mean(service)) > 12.0  # the kept profile is the slower, second one
    stored = validation.as_dict()
    assert stored["reprofiled"] == 1 and len(stored["attempts"]) == 2
    assert stored["service_drift"] == second.service_drift


def test_profile_replica_stops_after_max_reprofiles() -> None:
    replica = FakeReplica(10.0, slow_down=1.4, slow_downs=10)  # keeps slowing down
    settings = replace(SETTINGS, max_reprofiles=1)
    _, _, validation = profile_replica(replica, settings, None)  # type: ignore[arg-type]
    assert validation is not None and len(validation.attempts) == 2
    assert all(a.service_drift > 0.15 for a in validation.attempts)


def test_replica_process_burst_and_open_loop() -> None:
    """A real replica process (synthetic 2 ms CPU burns, no cgroup): both measurement modes."""
    spec = ReplicaSpec("spin", spin_ms=2.0, seed=1, warmup=2)
    with start_replica(spec, ready_timeout_s=60) as replica:
        burst = collect_service_times(replica, samples=40, warmup=5, chunk=20, load=None)
        assert burst.size == 40 and np.all(burst > 0)
        service = collect_service_times(replica, samples=60, warmup=5, chunk=30, load=0.3)
        assert service.size == 60 and np.all(service > 0)
        assert 0.5 < float(np.mean(service)) < 50.0
        arrivals = poisson_times(20.0, 2, n=30)
        run = replica.run_arrivals(arrivals)
        assert np.all(run.latency_ms() > 0) and np.all(run.cpu_ms() > 0)
        assert np.all(run.latency_ms() >= run.service_ms() - 1e-6)
        assert replica.open_loop(arrivals[:5]).size == 5
        assert replica.proc.poll() is None
    assert replica.proc.poll() is not None


def test_replica_that_dies_is_one_line() -> None:
    from edgewise.errors import EnvironmentProblem

    spec = ReplicaSpec("spin", spin_ms=-1.0, warmup=1)  # fails in its warm-up
    with pytest.raises(EnvironmentProblem) as err, start_replica(spec, ready_timeout_s=60):
        pass
    assert "\n" not in str(err.value) and "exited with 1" in str(err.value)


@pytest.mark.slow
def test_profile_flavor_in_real_cgroup() -> None:
    """Synthetic 4 ms CPU burns in a 0.5-CPU cgroup: service slows ~2x, validation runs."""
    flavor = FlavorSpec(name="half", cpus=0.5, price_per_hour=0.01, memory_mb=512)
    prof = profile_flavor(
        "spin",
        flavor,
        slo_ms=200.0,
        samples=100,
        warmup=10,
        validate=True,
        validate_requests=150,
        validate_max_s=15.0,
        spin_ms=4.0,
        seed=3,
        drift_tolerance=0.0,  # any drift at all: profile once more and re-test
        max_reprofiles=1,
    )
    assert prof.service_ms.size == 100 and prof.threads == 1
    # Half a CPU: a 4 ms burn takes ~8 ms of wall time on average (more on a busy host).
    assert float(np.mean(prof.service_ms)) > 5.0
    assert prof.capacity_rps > 0
    v = prof.validation
    assert v is not None
    t = v.test
    assert t.requests >= 50 and t.measured_ms > 0 and t.predicted_ms > 0
    assert np.isfinite(t.rel_error) and isinstance(t.passed, bool)
    lo, hi = t.measured_ci95_ms
    assert lo <= t.measured_ms <= hi
    # The replica burns ~4 ms of CPU per request; the quota stretches it in wall time.
    assert 2.0 < t.cpu_mean_ms < t.service_mean_ms.test
    # Re-profiled once after the first test's drift; the kept profile is the second one.
    assert v.reprofiled == 1 and len(v.attempts) == 2
    assert v.attempts[-1].capacity_rps == prof.capacity_rps
    assert v.service_drift == pytest.approx(service_drift(t))
    stored = v.as_dict()
    assert stored["reprofiled"] == 1 and stored["attempts"][-1]["capacity_rps"] == prof.capacity_rps


@pytest.mark.slow
def test_capacity_command_digits_cnn(tmp_path: Path) -> None:
    flavors = tmp_path / "flavors.yaml"
    flavors.write_text(
        "flavors:\n"
        "  - {name: one, cpus: 1.0, memory_mb: 2048, price_per_hour: 0.05}\n"
        "  - {name: half, cpus: 0.5, memory_mb: 2048, price_per_hour: 0.025}\n"
    )
    args = ["capacity", "digits_cnn", "--flavors", str(flavors), "--slo-ms", "50"]
    args += ["--flavor", "one", "--samples", "40", "--validate", "--validate-requests", "100"]
    # A zero drift tolerance re-tests after any change of the mean service time at all.
    retest = ["--drift-tolerance", "0", "--max-reprofiles", "1"]
    result = CliRunner().invoke(make_app(["plan"]), [*args, *retest, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output.strip().splitlines()[-1])
    (row,) = out["flavors"]
    assert row["flavor"] == "one" and row["service_ms"]["n"] >= 40
    assert row["capacity_rps"] > 0 and row["validation"]["requests"] >= 50
    assert row["validation"]["reprofiled"] == 1 and len(row["validation"]["attempts"]) == 2
    with KnowledgeBase.open().snapshot() as s:
        stored = find_profile(s, "digits_cnn", "one", 1.0)
        assert stored is not None and stored.capacity_rps == pytest.approx(row["capacity_rps"])

    tight = CliRunner().invoke(
        make_app(["plan"]),
        [*args[:4], "--slo-ms", "0.01", "--flavor", "half", "--samples", "30"],
    )
    assert tight.exit_code == 2
    assert "cannot be met by digits_cnn in any flavor" in tight.output
