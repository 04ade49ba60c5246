"""Pure tests: knob mapping, calibration curves, DoE, surrogate contract, footprints."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from edgewise.config import StressSpace
from edgewise.errors import SpecError, UnknownNameError
from edgewise.interference import doe
from edgewise.interference.calibration import Calibration, calibrate, fit_curve, invert_curve
from edgewise.interference.footprint import combine, nearest, parse_stressor
from edgewise.interference.stressors import Achieved, HostCaps, plan_stressors
from edgewise.interference.surrogates import SURROGATES, select_surrogate
from edgewise.interference.target import parse_workload_name

CAPS = HostCaps(ncpus=2, membw_mbs=10000.0, mem_bytes=1e9)


def test_plan_maps_knobs(tmp_path: Path) -> None:
    plans = {
        p.resource: p
        for p in plan_stressors(
            {"cpu": 0.6, "membw": 0.3, "llc": 0.5, "disk": 0.2, "net": 0.1, "mem": 0.5},
            CAPS,
            seconds=5,
            workdir=tmp_path,
            cpus=[0],
        )
    }
    assert plans["cpu"].argv[plans["cpu"].argv.index("--cpu-load") + 1] == "60"
    assert plans["cpu"].argv[plans["cpu"].argv.index("--cpu") + 1] == "1"
    assert "--taskset" in plans["cpu"].argv
    mb = plans["membw"].argv
    assert (
        mb[mb.index("--memrate-rd-mbs") + 1] == "3000"
        and mb[mb.index("--memrate-wr-mbs") + 1] == "3000"
    )
    assert plans["llc"].duty == pytest.approx(0.5) and "--matrix-3d" in plans["llc"].argv
    assert plans["disk"].duty == pytest.approx(0.2) and str(tmp_path) in plans["disk"].argv
    assert "--sock" in plans["net"].argv
    assert plans["mem"].argv[plans["mem"].argv.index("--vm-bytes") + 1] == f"{int(0.5e9) // 1024}K"


def test_plan_skips_zero_and_never_writes_zero_rate(tmp_path: Path) -> None:
    plans = plan_stressors({"cpu": 0.0, "membw": 0.001}, CAPS, seconds=1, workdir=tmp_path)
    assert plans == []
    p = plan_stressors(
        {"membw": 0.01}, HostCaps(ncpus=2, membw_mbs=10.0), seconds=1, workdir=tmp_path
    )[0]
    assert p.argv[p.argv.index("--memrate-wr-mbs") + 1] != "0"


@pytest.mark.parametrize("bad", [{"cpu": 1.5}, {"cpu": -0.1}, {"gpu": 0.5}])
def test_bad_intensity_is_spec_error(tmp_path: Path, bad: dict[str, float]) -> None:
    with pytest.raises(SpecError):
        plan_stressors(bad, CAPS, seconds=1, workdir=tmp_path)


def test_calibration_curve_monotone_and_inverse() -> None:
    xs, ys = fit_curve([0.1, 0.3, 0.5, 0.5, 0.7, 0.9], [0.08, 0.2, 0.36, 0.34, 0.33, 0.7])
    assert xs[0] == 0.0 and all(b >= a for a, b in itertools.pairwise(ys))
    cal = Calibration("h", CAPS, {"cpu": (xs, ys)})
    for target in (0.1, 0.25, 0.5):
        k = cal.knob("cpu", target)
        assert np.interp(k, xs, ys) == pytest.approx(target, abs=0.03)
    assert cal.knob("llc", 0.4) == 0.4  # uncalibrated resource: identity
    assert 0.0 <= invert_curve(xs, ys, 5.0) <= 1.0


def test_calibrate_with_fake_runner_lands_within_tolerance() -> None:
    def fake(intensity: dict[str, float], seconds: float) -> Achieved:
        return Achieved({k: 0.7 * v**1.2 for k, v in intensity.items()}, {}, seconds)

    cal = calibrate(["cpu"], levels=(0.1, 0.3, 0.5, 0.7, 0.9, 1.0), runner=fake, caps=CAPS)
    for r in (0.1, 0.3, 0.5, 0.65):
        assert 0.7 * cal.knob("cpu", r) ** 1.2 == pytest.approx(r, abs=0.05)
    assert Calibration.from_dict(cal.to_dict()) == cal


@pytest.mark.parametrize("method", ["lhs", "sobol"])
def test_design_in_bounds_and_space_filling(method: str) -> None:
    space = StressSpace(resources={"cpu": (0.1, 0.9), "membw": (0.0, 0.5), "llc": (0.2, 0.4)})
    pts = doe.seed_design(space, 16, method, seed=3)  # type: ignore[arg-type]
    assert len(pts) == 16
    for p in pts:
        for k, (lo, hi) in space.resources.items():
            assert lo - 1e-9 <= p[k] <= hi + 1e-9
    u = doe.unit_design(16, 3, method, seed=3)  # type: ignore[arg-type]
    rnd = np.random.default_rng(0).random((16, 3))
    d = lambda x: doe.min_pairwise_distance([dict(enumerate(r)) for r in x])  # noqa: E731
    assert d(u) > 0.5 * d(rnd)
    if method == "lhs":  # one point per stratum in every dimension
        for j in range(3):
            assert sorted(np.floor(u[:, j] * 16).astype(int).tolist()) == list(range(16))
    assert doe.seed_design(space, 5, method, seed=1) == doe.seed_design(space, 5, method, seed=1)  # type: ignore[arg-type]


def test_next_point_takes_largest_std_and_skips_taken() -> None:
    cands = [{"a": 0.1}, {"a": 0.5}, {"a": 0.9}]
    std = lambda pts: np.array([p["a"] for p in pts])  # noqa: E731
    assert doe.next_point(cands, std) == {"a": 0.9}
    assert doe.next_point(cands, std, taken=[{"a": 0.9}]) == {"a": 0.5}


def _synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 4))
    y = 10 * np.exp(1.2 * X[:, 0] + 0.5 * X[:, 1] ** 2) * np.exp(rng.normal(0, 0.05, n))
    return X, y


@pytest.mark.parametrize("name", sorted(SURROGATES))
def test_check_surrogate(name: str) -> None:
    """One contract for every surrogate."""
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    est = SURROGATES[name]().set_params(cv=3)
    if name == "gbq":
        est.set_params(n_estimators=30)
    if name == "gp":
        est.set_params(n_restarts=0)
    params = est.get_params()
    assert clone(est).get_params() == params  # __init__ only stores parameters
    X, y = _synthetic(24, 1)
    with pytest.raises(NotFittedError):
        est.predict(X)
    assert est.fit(X, y) is est
    assert est.get_params() == params
    assert [a for a in vars(est) if a.endswith("_") and not a.startswith("_")]
    pred = est.predict(X[:5])
    assert pred.shape == (5,) and np.all(pred > 0)
    lo, hi = est.predict_interval(X[:5], 0.9)
    assert np.all(lo <= pred + 1e-9) and np.all(pred <= hi + 1e-9)
    assert np.all(est.predict_log_std(X[:5]) > 0)
    with pytest.raises(ValueError):
        est.predict(X[:, :2])
    with pytest.raises(ValueError):
        clone(est).fit(X, -y)
    assert np.allclose(clone(est).fit(X, y).predict(X[:5]), pred)  # deterministic


def test_intervals_cover_about_90_percent() -> None:
    X, y = _synthetic(40, 2)
    Xt, yt = _synthetic(300, 3)
    for name in ("gp", "linear"):
        est = SURROGATES[name]()
        if name == "gp":
            est.set_params(n_restarts=0)
        lo, hi = est.fit(X, y).predict_interval(Xt, 0.9)
        cover = np.mean((lo <= yt) & (yt <= hi))
        assert 0.8 <= cover <= 0.99, (name, cover)


def test_select_surrogate_prefers_accurate_model() -> None:
    X, y = _synthetic(20, 4)
    name, _model, scores = select_surrogate(X, y, names=("gp", "linear"), seed=0, cv=4)
    assert scores[name] == min(scores.values()) and set(scores) == {"gp", "linear"}
    assert scores["gp"] < 5.0
    # pooled rows train but are not scored; a single candidate skips the CV
    Xe, ye = _synthetic(10, 5)
    only, m, sc = select_surrogate(X, y, names=("linear",), extra_X=Xe, extra_y=ye)
    assert only == "linear" and np.isnan(sc["linear"]) and m.predict(X).shape == (20,)


def test_combine_saturates_and_nearest() -> None:
    c = combine([{"cpu": 0.7, "llc": 0.5}, {"cpu": 0.6, "llc": 0.5, "net": 0.1}])
    assert c["cpu"] == 1.0 and c["llc"] == pytest.approx(0.75) and c["net"] == pytest.approx(0.1)
    assert combine([]) == dict.fromkeys(c, 0.0)
    assert nearest({"cpu": 0.5}, {"a": {"cpu": 0.1}, "b": {"cpu": 0.45}})[0] == "b"
    assert parse_stressor("stress:cpu=0.5,membw=0.2") == {"cpu": 0.5, "membw": 0.2}
    assert parse_stressor("mobilenet_v2@20rps") is None
    with pytest.raises(UnknownNameError):
        parse_stressor("stress:cpu")
    with pytest.raises(SpecError):
        parse_stressor("stress:cpu=2")


def test_workload_names() -> None:
    assert parse_workload_name("resnet50@12.5rpsx4") == ("resnet50", 12.5, 4)


def test_campaign_flags_and_repeats_foreign_load(tmp_path: Path) -> None:
    """Campaign loop with a fake target and a fake measurement (no processes)."""
    from edgewise.interference.campaign import (
        CampaignConfig,
        CampaignRunner,
        Measured,
        learning_curve,
    )
    from edgewise.kb import KnowledgeBase
    from edgewise.kb import models as m

    class FakeTarget:
        name, kind, params = "fake@1rps", "command", {}

        def start(self) -> None: ...

        def close(self) -> None: ...

    calls: list[float] = []
    rng = np.random.default_rng(0)

    def measure(target: object, design: dict[str, float], **kw: object) -> Measured:
        calls.append(design.get("cpu", 0.0))
        foreign = 0.9 if len(calls) == 2 else 0.0  # the first stressed attempt is disturbed
        lat = 10.0 * (1 + design.get("cpu", 0.0)) * float(np.exp(rng.normal(0, 0.01)))
        return Measured(
            dict(design),
            {"cpu": design.get("cpu", 0.0), "target_cpu": 0.1},
            {"p50": lat, "p95": 1.2 * lat, "p99": 1.5 * lat, "mean": lat, "n": 10},
            foreign,
            {},
        )

    kb = KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    cfg = CampaignConfig(
        name="fake",
        budget=6,
        solo_runs=1,
        space={"cpu": (0.0, 0.9)},
        max_repeats=1,
        surrogates=("gp",),
        curve_step=2,
    )
    model = CampaignRunner(kb, FakeTarget(), cfg, measure=measure).run()
    with kb.snapshot() as s:
        runs = s.query(m.Run).order_by(m.Run.index).all()
        fm = s.query(m.FittedModel).filter_by(kind="surrogate").one()
        metrics = dict(fm.metrics)
    assert len(runs) == 7 and len(calls) == 8  # 1 solo + 6 stressed, one repeated
    assert any(f.startswith("foreign_cpu") for f in runs[1].flags) and runs[1].status == "ok"
    assert model.normalised and model.predict({"cpu": 0.5})["p50"] == pytest.approx(15.0, rel=0.1)
    # drift correction: a fresh solo reference scales the prediction
    assert model.predict({"cpu": 0.5}, reference={"p50": 20.0, "p95": 24.0, "p99": 30.0})[
        "p50"
    ] == pytest.approx(30.0, rel=0.1)
    # ... and so does the service's current solo p50 given to the predictor
    from edgewise.errors import SpecError
    from edgewise.interference.predictor import Predictor

    pred = Predictor(kb)
    now = pred.predict("fake@1rps", ["stress:cpu=0.5"], solo_p50_ms=2 * model.solo["p50"])
    then = pred.predict("fake@1rps", ["stress:cpu=0.5"])
    assert now.p50 == pytest.approx(2 * then.p50) and now.upper["p99"] == pytest.approx(
        2 * then.upper["p99"]
    )
    with pytest.raises(SpecError, match="solo p50"):
        pred.predict("fake@1rps", [], solo_p50_ms=0.0)
    assert metrics["learning_curve"] == []  # 6 stressed runs: too few for a CV error
    curve = learning_curve(
        [
            {"index": r.index, "status": r.status, "achieved": r.achieved, "latency": r.latency}
            | {"flags": r.flags}
            for r in runs
        ],
        "active",
        step=2,
        min_runs=4,
    )  # the report's data contract
    assert [c["runs"] for c in curve] == [4, 6]
    assert all(set(c) == {"runs", "cv_median_ape", "strategy"} for c in curve)
    assert {c["strategy"] for c in curve} == {"active"} and all(
        isinstance(c["cv_median_ape"], float) for c in curve
    )


def _run(index: int, lat: float, solo: bool = False, **ach: float) -> dict[str, object]:
    return {
        "index": index,
        "status": "ok",
        "flags": ["solo"] if solo else [],
        "achieved": {"target_cpu": 0.2, **ach},
        "latency": {"p50": lat, "p95": 1.2 * lat, "p99": 1.5 * lat},
    }


def test_training_set_divides_by_solo_interpolated_between_baselines() -> None:
    from edgewise.interference.campaign import prefix, training_set

    # the host drifts: solo 10 ms at run 0, 20 ms at run 3, so 13.3 and 16.7 ms between;
    # the stressed runs are 1.5x the solo latency of their moment
    runs = [
        _run(0, 10.0, solo=True),
        _run(1, 20.0, cpu=0.5),
        _run(2, 25.0, cpu=0.5),
        _run(3, 20.0, solo=True),
    ]
    X, ys, solo = training_set(runs, normalise=True)
    assert ys["p50"][1:3] == pytest.approx([1.5, 1.5])
    assert ys["p99"][1:3] == pytest.approx([1.5, 1.5])
    # a solo run is divided by the other baselines (here the one other)
    assert ys["p50"][0] == pytest.approx(0.5) and ys["p50"][3] == pytest.approx(2.0)
    assert solo["p50"] == pytest.approx(15.0) and X.shape == (4, 8)
    _, raw, _ = training_set(runs, normalise=False)
    assert raw["p50"].tolist() == [10.0, 20.0, 25.0, 20.0]
    assert [r["index"] for r in prefix(runs, 1)] == [0, 1]


def test_reference_at_interpolates_inside_and_holds_outside() -> None:
    from edgewise.interference.campaign import reference_at

    solos = [
        (2, {"p50": 10.0, "p95": 12.0, "p99": 14.0}),
        (6, {"p50": 30.0, "p95": 32.0, "p99": 34.0}),
    ]
    mid = reference_at(3, solos)
    assert mid == pytest.approx({"p50": 15.0, "p95": 17.0, "p99": 19.0})
    assert reference_at(2, solos) == pytest.approx({"p50": 10.0, "p95": 12.0, "p99": 14.0})
    before, after, single = (
        reference_at(0, solos),
        reference_at(9, solos),
        reference_at(4, solos[1:]),
    )
    assert before is not None and before["p50"] == 10.0  # held, not extrapolated
    assert after is not None and after["p50"] == 30.0
    assert single is not None and single["p50"] == 30.0
    assert reference_at(4, []) is None


def _workload_runs(solo_ms: float, gain: float, n: int, seed: int) -> list[dict[str, object]]:
    """Synthetic campaign: slowdown = 1 + gain * cpu + 0.3 * llc, multiplicative noise."""
    rng = np.random.default_rng(seed)
    runs = [_run(0, solo_ms, solo=True), _run(1, solo_ms * 1.01, solo=True)]
    for i in range(n):
        cpu, llc = rng.random(2)
        lat = solo_ms * (1 + gain * cpu + 0.3 * llc) * np.exp(rng.normal(0, 0.01))
        r = _run(i + 2, float(lat), cpu=float(cpu), llc=float(llc))
        r["achieved"]["target_cpu"] = solo_ms / 100.0  # type: ignore[index]
        runs.append(r)
    return runs


def test_transfer_warm_start_beats_scratch_with_few_runs() -> None:
    from edgewise.interference.campaign import PoolSet, transfer_curve

    pool = [
        PoolSet("a", tuple(_workload_runs(10.0, 1.0, 14, 1))),
        PoolSet("b", tuple(_workload_runs(40.0, 1.0, 14, 2))),
    ]
    new = _workload_runs(20.0, 1.0, 12, 3)
    held = [dict(r, reference=None) for r in _workload_runs(20.0, 1.0, 8, 4)[2:]]
    curve = transfer_curve(pool, new, held, [0, 2, 3, 12], name="gp", seed=0)
    warm = {c["runs"]: c["median_ape"] for c in curve if c["strategy"] == "warm"}
    scratch = {c["runs"]: c["median_ape"] for c in curve if c["strategy"] == "scratch"}
    assert set(warm) == {0, 2, 3, 12} and set(scratch) == {3, 12}  # scratch needs 3 runs
    assert warm[2] < 5.0  # the solo footprint plus two runs suffice
    assert warm[3] < scratch[3]


def test_net_and_llc_peaks_capped_by_scope_and_cgroup_plan(tmp_path: Path) -> None:
    caps = HostCaps(ncpus=2, net_cpu=1.6, llc_cpu=1.0)
    assert caps.peak("net", 1) == 1.0 and caps.peak("net", 2) == 1.6
    assert HostCaps(ncpus=2).net_cpu == 1.0
    plans = plan_stressors({"cpu": 0.5}, CAPS, seconds=1, workdir=tmp_path, cpus=[1], taskset=False)
    assert (
        "--taskset" not in plans[0].argv and plans[0].argv[plans[0].argv.index("--cpu") + 1] == "1"
    )


def test_gpu_helpers_without_cuda() -> None:
    from edgewise.interference.campaign import resources_of
    from edgewise.interference.gpu import duty_schedule, gpu_available

    assert duty_schedule(0.25, 0.2) == pytest.approx((0.05, 0.15))
    with pytest.raises(SpecError):
        duty_schedule(1.5, 0.1)
    av = gpu_available()
    assert isinstance(av.reason, str) and av.reason
    assert resources_of({"cpu": (0, 1), "gpu": (0, 1)})[-2:] == ("gpu", "gpumem")
    pts = doe.seed_design({"cpu": (0.0, 0.5), "gpu": (0.0, 1.0)}, 4, "lhs", seed=0)
    assert all(0 <= p["gpu"] <= 1 and 0 <= p["cpu"] <= 0.5 for p in pts)


def test_bench_helpers() -> None:
    from edgewise.bench.interference import runs_to_reach
    from edgewise.interference.campaign import holdout_records

    curve = [{"runs": 5, "median_ape": 9.0}, {"runs": 10, "median_ape": 4.0}]
    assert runs_to_reach(curve, 5.0) == 10 and runs_to_reach(curve, 1.0) is None

    class M:
        def predict(self, v: dict[str, float], reference: object = None) -> dict[str, object]:
            k = 2.0 if reference else 1.0
            return {
                "p50": 10 * k,
                "p99": 20 * k,
                "lower": {"p50": 9 * k, "p99": 18 * k},
                "upper": {"p50": 11 * k, "p99": 22 * k},
            }

    held = [{"achieved": {}, "latency": {"p50": 20.0, "p99": 41.0}, "reference": {"p50": 1}}]
    rows = holdout_records(M(), held)
    assert rows[0]["predicted_p50"] == 20.0 and rows[0]["measured_p99"] == 41.0
    assert {
        "measured_p50",
        "predicted_p50",
        "lower_p50",
        "upper_p50",
        "measured_p99",
        "predicted_p99",
    } <= set(rows[0])
    assert holdout_records(M(), held, corrected=False)[0]["predicted_p50"] == 10.0


def test_combine_repeats_takes_median_latencies_and_mean_intensities() -> None:
    from edgewise.interference.campaign import combine_repeats

    measured = [
        {"achieved": {"cpu": 0.3, "disk": 0.1}, "latency": {"p50": 10.0, "p99": 30.0, "n": 90}},
        {"achieved": {"cpu": 0.5, "disk": 0.1}, "latency": {"p50": 14.0, "p99": 80.0, "n": 95}},
        {"achieved": {"cpu": 0.4, "disk": 0.4}, "latency": {"p50": 11.0, "p99": 31.0, "n": 91}},
    ]
    out = combine_repeats(measured)
    # The median ignores the one slow window's p99; intensities average.
    assert out["latency"] == {"p50": 11.0, "p99": 31.0, "n": 91.0}
    assert out["achieved"] == pytest.approx({"cpu": 0.4, "disk": 0.2})
    assert combine_repeats(measured[:1])["latency"]["p50"] == 10.0
    with pytest.raises(ValueError, match="no measurement"):
        combine_repeats([])


def test_rate_for_load_is_a_fraction_of_the_solo_capacity() -> None:
    from edgewise.errors import SpecError
    from edgewise.interference.target import rate_for_load

    assert rate_for_load(27.0, 0.3) == pytest.approx(11.0)  # 0.3 / 27 ms = 11.1/s
    assert rate_for_load(130.0, 0.3) == pytest.approx(2.3)
    assert rate_for_load(0.3, 0.3) == pytest.approx(1000.0)
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(SpecError, match="outside"):
            rate_for_load(27.0, bad)


def test_a_bare_model_name_finds_the_rate_it_was_profiled_at(tmp_path: Path) -> None:
    from edgewise.interference.predictor import Predictor
    from edgewise.kb import KnowledgeBase, save_model

    kb = KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    pred = Predictor(kb)
    assert pred._resolve("mobilenet_v2") == "mobilenet_v2@20rps"  # nothing stored yet
    save_model(kb, "surrogate", "mobilenet_v2@7.3rps", {"m": 1})
    save_model(kb, "surrogate", "mobilenet_v2x@9rps", {"m": 2})  # another model's prefix
    assert pred._resolve("mobilenet_v2") == "mobilenet_v2@7.3rps"
    assert pred._resolve("mobilenet_v2@5rps") == "mobilenet_v2@5rps"  # an explicit rate wins
    save_model(kb, "surrogate", "mobilenet_v2@20rps", {"m": 3})
    assert pred._resolve("mobilenet_v2") == "mobilenet_v2@20rps"


def test_variance_reduction_prefers_runs_where_the_model_knows_least() -> None:
    from edgewise.interference.surrogates import GPSurrogate

    rng = np.random.default_rng(0)
    X = 0.3 * rng.random((12, 2))  # every run so far in one corner of the unit square
    y = np.exp(X[:, 0] + 0.01 * rng.normal(size=12))
    gp = GPSurrogate(cv=1).fit(X, y)
    cands = np.vstack([X[:3], rng.random((100, 2))])
    gain = gp.variance_reduction(cands)
    assert gain.shape == (103,) and np.all(gain >= 0)
    best = cands[int(np.argmax(gain))]
    assert best.max() > 0.4, best  # away from the runs already made
    assert gain[:3].max() < 0.2 * gain.max()  # repeating a run teaches little


def test_placement_cpus() -> None:
    from edgewise.interference.campaign import placement_cpus

    assert placement_cpus("split", [1], [0, 1]) == ((0,), (1,))
    assert placement_cpus("split", [0], [0]) == ((0,), (0,))  # one CPU: nowhere else to go
    assert placement_cpus("same", [1], [0, 1]) == ((1,), None)
    assert placement_cpus("any", [1], [0, 1]) == (None, None)
