"""Device profiles predicted from the knowledge base: the first re-training plan needs no
measurement, the measurement corrects it, and the report puts one beside the other."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from edgewise.api import retrain as api_retrain
from edgewise.api.retrain_bench import (
    first_plan_report,
    predict_background,
    predict_profiles,
    prediction_report,
)
from edgewise.config import BackgroundApp, DevicePool, DeviceSpec
from edgewise.interference.predictor import Predictor
from edgewise.kb import KnowledgeBase
from edgewise.planning.retrain import DeviceProfile, Intensity, RetrainPlan, plan_exact
from edgewise.retrain.jobs import BackgroundSummary, device_states, make_constraints
from edgewise.retrain.profiler import (
    NICE_PRESSURE,
    app_cpu_demand,
    candidate_intensities,
    max_prediction_error,
    predicted_profile,
    prediction_errors,
    quota_binds,
    quota_runtime_ms,
    quota_solo_ms,
    throttled_latency_ms,
    training_neighbour,
    training_pressure,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "kb-release-0.1.sqlite"
APP = "mobilenet_v2@20rps"  # the fixture holds its interference model


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    db = tmp_path / "kb.sqlite"
    shutil.copyfile(FIXTURE, db)
    return KnowledgeBase.open(f"sqlite:///{db}")


def _device(
    name: str,
    cpus: float,
    model: str | None = "mobilenet_v2",
    rate: float = 20.0,
    deadline: float = 500.0,
) -> DeviceSpec:
    bg = None if model is None else BackgroundApp(model=model, rate_rps=rate, deadline_ms=deadline)
    return DeviceSpec(name=name, cpus=cpus, memory_mb=2048, background=bg)


def test_training_pressure_is_the_device_share_and_nice_yields() -> None:
    assert training_pressure(1, 0, 1.0) == 1.0
    assert training_pressure(1, 0, 2.0) == 0.5
    assert training_pressure(2, 0, 2.0) == 1.0
    assert training_pressure(4, 0, 0.5) == 1.0  # more threads than CPUs: the whole share
    assert training_pressure(1, 19, 1.0) == pytest.approx(NICE_PRESSURE)
    assert training_neighbour(1, 0, 2.0) == "stress:cpu=0.500"
    with pytest.raises(ValueError, match="positive CPU"):
        training_pressure(1, 0, 0.0)


def test_predicted_profile_scales_throughput_to_the_device() -> None:
    lat = {(1, 0): 90.0, (1, 19): 40.0, (2, 0): 120.0, (2, 19): 50.0}
    p = predicted_profile("d", 0.5, lat, sps_per_cpu=400.0, solo_latency_ms=30.0)
    assert [k.label for k in p.intensities] == ["t1n0", "t1n19"]  # 2 threads: not on 0.5 CPU
    assert [k.throughput_sps for k in p.intensities] == [200.0, 200.0]
    assert [k.bg_latency_ms for k in p.intensities] == [90.0, 40.0]
    assert p.solo_latency_ms == 30.0
    big = predicted_profile("e", 2.0, lat, sps_per_cpu=400.0)
    assert {k.label: k.throughput_sps for k in big.intensities}["t2n0"] == 800.0


def test_a_quota_the_app_does_not_exhaust_leaves_its_solo_latency_alone() -> None:
    # digits_cnn at 5 rps: 1.4 ms a request, 0.007 CPUs of demand
    demand = app_cpu_demand(5.0, 1.4)
    assert demand == pytest.approx(0.007)
    for cpus in (0.5, 0.33, 1.0, 2.0):
        assert quota_solo_ms(1.4, cpus, 5.0, demand) == pytest.approx(1.4)
    # a request longer than a period's runtime (2.5 ms) waits out the rest of each period
    assert quota_solo_ms(6.0, 0.5, 5.0, 0.1) == pytest.approx(6.0 + 2 * 2.5)
    assert quota_solo_ms(6.0, 1.0, 5.0, 0.1) == pytest.approx(6.0)  # one CPU: never throttled
    # an app that exhausts the quota alone: the fluid stretch, a lower bound
    assert quota_solo_ms(1.4, 0.5, 5.0, 0.6) == pytest.approx(2.8)


def test_the_quota_binds_where_training_exceeds_it_not_where_the_cpus_do() -> None:
    assert quota_binds(0.5, 1, 0.007) and quota_binds(0.33, 1, 0.0)
    assert not quota_binds(1.0, 1, 0.2)  # one thread and the app fill the CPU: weights share it
    assert not quota_binds(2.0, 2, 0.2)
    assert quota_binds(1.5, 2, 0.0)
    assert not quota_binds(1.5, 1, 0.2) and quota_binds(1.5, 1, 0.6)
    # the runtime a period gives each CPU the group runs on
    assert quota_runtime_ms(0.5, 5.0) == pytest.approx(2.5)
    assert quota_runtime_ms(1.5, 5.0) == pytest.approx(3.75)
    assert quota_runtime_ms(2.0, 5.0) == pytest.approx(5.0)


def test_the_throttling_tail_is_the_rest_of_the_period() -> None:
    # the group runs 2.5 ms of each 5 ms period; the tail waits out the other 2.5 ms
    assert throttled_latency_ms(1.4, 0.5, 5.0) == pytest.approx(1.4 + 2.5)
    assert throttled_latency_ms(1.4, 0.25, 5.0) == pytest.approx(1.4 + 3.75)
    # whole CPUs: nothing to throttle
    assert throttled_latency_ms(1.4, 1.0, 5.0) == pytest.approx(1.4)
    assert throttled_latency_ms(1.4, 2.0, 5.0) == pytest.approx(1.4)
    # the median waits less than the tail; a smaller quota waits longer
    p50 = throttled_latency_ms(1.4, 0.5, 5.0, percentile=50.0)
    assert 1.4 < p50 < 3.9
    assert throttled_latency_ms(1.4, 0.33, 5.0) > throttled_latency_ms(1.4, 0.5, 5.0)


class _FakeModel:
    def __init__(self) -> None:
        self.solo = {"p50": 1.4, "p95": 1.8, "p99": 2.0, "cpu": 0.005}


class _FakeLatency:
    def __init__(self, scale: float) -> None:
        self.p50, self.p95, self.p99 = (scale * v for v in (1.4, 1.8, 2.0))


class _FakePredictor:
    """An interference model for any app: solo latency x (1 + 3 x the neighbour's CPU)."""

    def __init__(self, _kb: Any) -> None:
        pass

    def model(self, _app: str) -> _FakeModel:
        return _FakeModel()

    def predict(self, _app: str, neighbours: list[str], solo_p50_ms: float) -> _FakeLatency:
        cpu = sum(float(n.split("=")[1]) for n in neighbours)
        return _FakeLatency(solo_p50_ms / 1.4 * (1.0 + 3.0 * cpu))


def test_a_saturated_small_quota_predicts_a_throttling_tail_nice_does_not_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgewise.interference.predictor as predictor

    monkeypatch.setattr(predictor, "Predictor", _FakePredictor)
    devices = [
        _device("gateway", 1.0, "digits_cnn", 5.0),
        _device("jetson", 0.5, "digits_cnn", 5.0),
        _device("pi", 0.33, "digits_cnn", 5.0),
    ]
    got = predict_profiles(None, devices, sps_per_cpu=300.0, period_ms=5.0)
    assert got.complete
    for name, cpus in (("jetson", 0.5), ("pi", 0.33)):
        prof = got.profiles[name]
        # 1.4 ms at 5 rps does not exhaust the quota: the solo latency is not stretched
        assert prof.solo_latency_ms == pytest.approx(2.0)
        lat = {k.label: k.bg_latency_ms for k in prof.intensities}
        assert set(lat) == {"t1n0", "t1n19"}
        want = throttled_latency_ms(2.0, cpus, 5.0, 99.0)
        assert lat["t1n0"] == pytest.approx(want) and lat["t1n19"] == pytest.approx(want)
        assert "throttling" in got.sources[name] and "not stretched" in got.sources[name]
    assert got.profiles["pi"].intensities[0].bg_latency_ms > (
        got.profiles["jetson"].intensities[0].bg_latency_ms
    )
    # the 1-CPU device: the interference model as before, nice 19 yields
    gw = {k.label: k.bg_latency_ms for k in got.profiles["gateway"].intensities}
    assert gw["t1n0"] == pytest.approx(2.0 * (1.0 + 3.0 * 1.0))
    assert gw["t1n19"] == pytest.approx(2.0 * (1.0 + 3.0 * NICE_PRESSURE))
    assert got.profiles["gateway"].solo_latency_ms == pytest.approx(2.0)
    assert "CPU pressure" in got.sources["gateway"]


def test_a_calibrated_device_tail_replaces_the_throttling_formula_where_the_quota_binds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edgewise.interference.predictor as predictor

    monkeypatch.setattr(predictor, "Predictor", _FakePredictor)
    asked: list[tuple[str, int, int, float, float]] = []

    def calibrate(d: Any, threads: int, nice: int, burst_ms: float, percentile: float) -> float:
        asked.append((d.name, threads, nice, burst_ms, percentile))
        return 10.0 + 10.0 * (1.0 - d.cpus) + (1.0 if nice == 0 else 0.0)

    devices = [_device("gateway", 1.0, "digits_cnn", 5.0), _device("pi", 0.5, "digits_cnn", 5.0)]
    got = predict_profiles(None, devices, sps_per_cpu=300.0, period_ms=5.0, calibrate=calibrate)
    # the small device: the tail of a burst of the app's compute (its solo p50, 1.4 ms)
    # next to one training thread at each nice, plus the rest of the app's solo p99
    assert sorted(asked) == [("pi", 1, 0, 1.4, 99.0), ("pi", 1, 19, 1.4, 99.0)]
    lat = {k.label: k.bg_latency_ms for k in got.profiles["pi"].intensities}
    assert lat["t1n0"] == pytest.approx(16.0 + 0.6) and lat["t1n19"] == pytest.approx(15.0 + 0.6)
    assert "calibrated" in got.sources["pi"]
    # the 1-CPU device's quota does not bind: the interference model, not the calibration
    gw = {k.label: k.bg_latency_ms for k in got.profiles["gateway"].intensities}
    assert gw["t1n0"] == pytest.approx(2.0 * (1.0 + 3.0 * 1.0))
    assert "calibrated" not in got.sources["gateway"]


def test_prediction_errors_compare_the_plans_intensity_with_the_measurement() -> None:
    its = {"a": Intensity(1, 19, 100.0, 120.0), "b": Intensity(1, 0, 50.0, 80.0)}
    plan = RetrainPlan("exact", {"a": 600, "b": 424}, its, 6.0)
    got = prediction_errors(plan, {"a": 100.0, "b": 100.0, "c": 5.0})
    assert got["a"] == {
        "intensity": "t1n19",
        "predicted_p99_ms": 120.0,
        "measured_p99_ms": 100.0,
        "prediction_error": pytest.approx(0.2),
    }
    assert got["b"]["prediction_error"] == pytest.approx(0.2)
    assert max_prediction_error(got) == pytest.approx(0.2)
    # a device without a finite measurement is left out; nothing to compare is None
    assert prediction_errors(plan, {"a": float("nan")}) == {}
    assert max_prediction_error({}) is None


def test_profiles_are_predicted_from_the_apps_interference_model(kb: KnowledgeBase) -> None:
    devices = [_device("a", 1.0), _device("b", 0.5), _device("c", 1.0, model=None)]
    got = predict_profiles(kb, devices, sps_per_cpu=300.0, period_ms=5.0)
    assert got.complete and not got.missing
    pred = Predictor(kb)
    solo = float(pred.model(APP).solo["p50"])
    demand = app_cpu_demand(20.0, solo)
    for d in devices[:2]:
        prof = got.profiles[d.name]
        assert [(k.threads, k.nice) for k in prof.intensities] == candidate_intensities(d.cpus)
        on_device = quota_solo_ms(solo, d.cpus, 5.0, demand)
        for k in prof.intensities:
            want = pred.predict(
                APP, [training_neighbour(k.threads, k.nice, d.cpus)], solo_p50_ms=on_device
            ).p99
            assert k.bg_latency_ms == pytest.approx(want)
            assert k.throughput_sps == pytest.approx(300.0 * min(k.threads, d.cpus))
        assert APP in got.sources[d.name] and "estimated" in got.sources[d.name]
    # a 13 ms request is longer than the 2.5 ms a half-CPU quota runs per 5 ms period: it
    # is throttled for the rest of five periods, nearly twice as long, and shares the CPU
    # with the trainer by weight (the interference model, not the throttling tail)
    a, b = (got.profiles[n].intensities[0].bg_latency_ms for n in ("a", "b"))
    assert solo > 2.5
    assert b == pytest.approx(a * (solo + 5 * 2.5) / solo)
    assert "CPU pressure" in got.sources["b"]
    # a device without an app keeps no deadline: 0 ms at every intensity
    assert {k.bg_latency_ms for k in got.profiles["c"].intensities} == {0.0}
    assert "c" not in got.sources and "c" not in got.by_label()
    assert set(got.by_label()["a"]) == {"t1n0", "t1n19"}
    assert got.as_dict()["complete"] is True


def test_an_app_without_a_model_falls_back_to_measurement(kb: KnowledgeBase) -> None:
    devices = [_device("a", 1.0), _device("b", 1.0, model="digits_cnn", rate=5.0)]
    got = predict_profiles(kb, devices, sps_per_cpu=300.0)
    assert not got.complete and got.profiles == {}
    assert set(got.missing) == {"b"}
    assert got.missing["b"].startswith("measured: ") and "digits_cnn@5rps" in got.missing["b"]
    assert predict_background(kb, devices) is None
    assert predict_background(kb, devices[:1]) is not None


def test_the_first_plan_keeps_the_deadline_the_prediction_says_nice_0_breaks(
    kb: KnowledgeBase,
) -> None:
    # the deadline between the predicted latencies at nice 19 and at nice 0
    probe = predict_profiles(kb, [_device("a", 1.0)], sps_per_cpu=300.0).profiles["a"]
    lat = {k.label: k.bg_latency_ms for k in probe.intensities}
    assert lat["t1n19"] < lat["t1n0"]
    deadline = (lat["t1n19"] + lat["t1n0"]) / 2 / 0.9
    spec = DevicePool(devices=[_device("a", 1.0, deadline=deadline), _device("c", 1.0, None)])
    prediction = predict_profiles(kb, spec.devices, sps_per_cpu=300.0)
    first = plan_exact(
        device_states(spec), prediction.profiles, make_constraints("digits_cnn", 256)
    )
    assert first.intensities["a"].label == "t1n19"
    # the measurement at the same intensity: 25 % below the prediction
    measured = {
        "a": DeviceProfile("a", (Intensity(1, 19, 280.0, lat["t1n19"] / 1.25),)),
        "c": DeviceProfile("c", (Intensity(1, 0, 300.0, 0.0),)),
    }
    report = first_plan_report(spec, prediction, measured, 256, "digits_cnn")
    assert report["first_plan"]["intensities"]["a"]["nice"] == 19
    row = report["devices"]["a"]
    assert row["predicted_p99_ms"] == pytest.approx(lat["t1n19"])
    assert row["prediction_error"] == pytest.approx(0.25)
    assert report["max_prediction_error"] == pytest.approx(0.25)
    assert "c" not in report["devices"]  # no app: nothing predicted


def test_first_plan_report_says_why_there_is_none(kb: KnowledgeBase) -> None:
    spec = DevicePool(devices=[_device("b", 1.0, model="digits_cnn", rate=5.0)])
    prediction = predict_profiles(kb, spec.devices, sps_per_cpu=300.0)
    report = first_plan_report(spec, prediction, {}, 256, "digits_cnn")
    assert report["first_plan"] is None and report["devices"] == {}
    assert "digits_cnn@5rps" in report["first_plan_note"]
    tight = DevicePool(devices=[_device("a", 1.0, deadline=1.0)])
    got = first_plan_report(
        tight, predict_profiles(kb, tight.devices, sps_per_cpu=300.0), {}, 256, "digits_cnn"
    )
    assert got["first_plan"] is None and "no device can take part" in got["first_plan_note"]


def test_prediction_report_against_the_background_measured_in_training(
    kb: KnowledgeBase,
) -> None:
    prediction = predict_profiles(kb, [_device("a", 1.0)], sps_per_cpu=300.0)
    k = prediction.profiles["a"].intensities[1]
    plan = RetrainPlan("exact", {"a": 256}, {"a": k}, 1.0)
    bg = {"a": BackgroundSummary(10.0, k.bg_latency_ms * 1.1, 500.0, 0.0, 80, 0)}
    got = prediction_report(prediction, plan, bg)
    assert got["devices"]["a"]["measured_p99_ms"] == pytest.approx(k.bg_latency_ms * 1.1)
    assert got["max_prediction_error"] == pytest.approx(0.1 / 1.1)
    missing = predict_profiles(kb, [_device("b", 1.0, "digits_cnn", 5.0)], sps_per_cpu=1.0)
    assert prediction_report(missing, plan, bg)["max_prediction_error"] is None


class _FakePool:
    def __init__(self) -> None:
        self.waited = 0

    def wait_background_ready(self) -> None:
        self.waited += 1


def _setup(spec: DevicePool, tmp_path: Path) -> Any:
    return api_retrain._Setup(
        spec,
        "devices.yaml",
        make_constraints("digits_cnn", 256),
        tmp_path,
        10,
        tmp_path / "base.pt",
        task=("digits_cnn", "digits", "rotation", 0),
        names=("digits_cnn", "digits"),
        evaluate=lambda _w: 0.5,
    )


def test_retrain_plans_first_from_the_prediction_then_measures_without_a_model(
    kb: KnowledgeBase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgewise.api.retrain_bench as bench_api

    measured = {"b": DeviceProfile("b", (Intensity(1, 19, 100.0, 50.0),))}
    calls: list[str] = []

    def fake_pool_profiles(*_a: Any, **_k: Any) -> tuple[dict[str, DeviceProfile], str]:
        calls.append("measured")
        return measured, "measured"

    monkeypatch.setattr(api_retrain, "pool_profiles", fake_pool_profiles)
    monkeypatch.setattr(bench_api, "_timed_sps", lambda *_a, **_k: 250.0)
    say = lambda *_a: None  # noqa: E731
    pool = _FakePool()
    spec = DevicePool(devices=[_device("a", 1.0)])
    got, source, prediction = api_retrain._first_profiles(
        pool, _setup(spec, tmp_path), kb, "key-a", False, say
    )
    assert source == "predicted" and calls == [] and pool.waited == 1
    assert prediction is not None and got == prediction.profiles
    # an app without a model: measured as before, the prediction says why
    spec_b = DevicePool(devices=[_device("b", 1.0, "digits_cnn", 5.0)])
    got, source, prediction = api_retrain._first_profiles(
        pool, _setup(spec_b, tmp_path), kb, "key-b", False, say
    )
    assert source == "measured" and got == measured and calls == ["measured"]
    assert prediction is not None and not prediction.complete
    # --reprofile asks for the measurement
    _, source, prediction = api_retrain._first_profiles(
        pool, _setup(spec, tmp_path), kb, "key-a", True, say
    )
    assert source == "measured" and prediction is None


def test_bench_json_lifts_the_largest_prediction_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgewise.bench import retrain as bench_retrain

    class _Result:
        def as_dict(self) -> dict[str, Any]:
            return {"background_prediction": {"max_prediction_error": 0.12, "devices": {}}}

    monkeypatch.setattr(bench_retrain, "benchmark_retrain", lambda **_k: _Result())
    got = bench_retrain.run("devices.yaml")
    assert got["max_prediction_error"] == 0.12
    assert "max_prediction_error" in bench_retrain.SUMMARY_KEYS


@pytest.mark.slow
def test_retrain_starts_from_the_predicted_profiles_and_reports_the_error(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    """One emulated device next to mobilenet_v2 at 20 rps, 8 steps, no profiling (~30 s)."""
    from sklearn.datasets import load_digits

    from edgewise.api.retrain import retrain
    from edgewise.registry import register_model, save_trainable, zoo_card
    from edgewise.workloads.userdata import write_image_folder
    from edgewise.workloads.zoo import build_model

    card = zoo_card("digits_cnn").with_labels(tuple(str(i) for i in range(10)))
    module = build_model("digits_cnn", seed=3).module
    model = save_trainable(module, card, tmp_path / "v1", arch="digits_cnn")
    register_model(kb, "digits", model)
    bunch = load_digits()
    folder = write_image_folder(bunch.images[:100] / 16.0, bunch.target[:100], tmp_path / "img")
    devices = tmp_path / "devices.yaml"
    devices.write_text(
        "devices:\n  - name: a\n    cpus: 1.0\n    memory_mb: 2048\n"
        "    background: {model: mobilenet_v2, rate_rps: 20, deadline_ms: 1000}\n"
    )
    res = retrain(
        devices=devices,
        model="digits",
        data=str(folder),
        steps=8,
        global_batch=64,
        workdir=tmp_path / "job",
        kb=f"sqlite:///{tmp_path / 'kb.sqlite'}",  # the fixture's copy
    )
    job = res.job
    assert job is not None and job.profiles == "predicted"
    got = job.as_dict()
    row = got["background_prediction"]["devices"]["a"]
    assert row["intensity"] == job.plan.intensities["a"].label
    assert row["measured_p99_ms"] == pytest.approx(job.background["a"].p99_ms)
    assert got["max_prediction_error"] == pytest.approx(row["prediction_error"])
    assert got["background_prediction"]["prediction"]["complete"] is True
