"""The noise floor of the interference benchmark, from synthetic repeated windows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest

from edgewise.interference.campaign import AppEvaluation, HeldOutPoint
from edgewise.interference.campaign.evaluation import noise_floor
from edgewise.interference.campaign.holdout import (
    MAX_REFERENCE_SPREAD,
    judge_host,
    noise_floor_ape,
    perfect_predictor_apes,
    reference_spread,
    repeat_groups,
)


def _truth(achieved: Mapping[str, float]) -> float:
    return 10.0 * (1.0 + achieved["cpu"])


class _Model:
    """Predicts ``bias`` times the true p50 of a point (1.0: a perfect predictor)."""

    def __init__(self, bias: float) -> None:
        self.bias = bias

    def predict(self, achieved: Mapping[str, float], reference: Any = None) -> dict[str, Any]:
        p50 = self.bias * _truth(achieved)
        band = {"p50": p50, "p99": 2 * p50}
        return {"p50": p50, "p99": 2 * p50, "lower": band, "upper": band}


def _app(bias: float, *, points: int, repeats: int, cv: float, seed: int) -> AppEvaluation:
    """Held-out points measured ``repeats`` times with relative noise ``cv``."""
    rng = np.random.default_rng(seed)
    held = []
    for i in range(points):
        achieved = {"cpu": float(rng.random())}
        windows = tuple(
            {"achieved": achieved, "latency": {"p50": p, "p99": 2 * p}}
            for p in _truth(achieved) * (1 + cv * rng.standard_normal(repeats))
        )
        held.append(
            HeldOutPoint(i + 1, achieved, achieved, dict(windows[0]["latency"]), None, windows)
        )
    centre = 15.0 * (1 + cv * rng.standard_normal(3))
    return AppEvaluation(
        app="a",
        workload="a@20rps",
        window_s=6.0,
        campaigns={"active": "bench-a"},
        models={"active": _Model(bias)},  # type: ignore[dict-item]  # duck-typed model
        runs={"active": ()},
        held=tuple(held),
        noise=tuple({"p50": float(p), "p99": float(2 * p)} for p in centre),
        solos=({"p50": 10.0}, {"p50": 10.5}, {"p50": 9.8}),
    )


def test_perfect_predictor_apes_scale_deviations_from_the_mean() -> None:
    apes = perfect_predictor_apes([9.0, 11.0])
    assert apes == pytest.approx([100 * np.sqrt(2) / 9, 100 * np.sqrt(2) / 11])
    assert perfect_predictor_apes([5.0, 5.0, 5.0]) == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="at least 2 windows"):
        perfect_predictor_apes([5.0])


@pytest.mark.parametrize("k", [2, 3, 5])
def test_noise_floor_matches_a_predictor_that_knows_the_truth(k: int) -> None:
    """Over many points, the floor estimated without the truth is what the truth scores."""
    rng = np.random.default_rng(k)
    truth = rng.uniform(5, 50, size=3000)
    windows = truth[:, None] * (1 + 0.1 * rng.standard_normal((3000, k)))
    oracle = float(np.median(100 * np.abs(truth[:, None] - windows) / windows))
    floor = noise_floor_ape(windows.tolist())
    assert floor == pytest.approx(oracle, rel=0.08)
    # deviations from the windows' own mean, unscaled, read low by sqrt((k - 1) / k)
    naive = np.median(100 * np.abs(windows - windows.mean(axis=1, keepdims=True)) / windows)
    assert naive == pytest.approx(np.sqrt((k - 1) / k) * oracle, rel=0.08)


def test_noise_floor_ignores_points_measured_once() -> None:
    assert noise_floor_ape([[10.0], []]) is None
    assert noise_floor_ape([[10.0], [9.0, 11.0]]) == pytest.approx(
        float(np.median(perfect_predictor_apes([9.0, 11.0])))
    )


def test_repeat_groups_take_the_repeated_held_out_points_and_the_centre_runs() -> None:
    twice = ({"achieved": {}, "latency": {"p50": 9.0}}, {"achieved": {}, "latency": {"p50": 11.0}})
    held = [
        HeldOutPoint(1, {}, {}, {"p50": 10.0}, None, twice),
        HeldOutPoint(2, {}, {}, {"p50": 7.0}),
    ]
    noise = [{"p50": 20.0}, {"p50": 22.0}]
    assert repeat_groups(held, noise) == [[9.0, 11.0], [20.0, 22.0]]
    assert repeat_groups(held[1:], noise[:1]) == []


def test_reference_spread_is_the_range_over_the_median() -> None:
    assert reference_spread([{"p50": 10.0}, {"p50": 12.0}, {"p50": 11.0}]) == pytest.approx(2 / 11)
    assert reference_spread([{"p50": 10.0}]) == 0.0


def test_judge_host_names_every_bound_crossed() -> None:
    steady = judge_host(steal_frac=0.01, reference_spreads={"a": 0.1}, noise_floor=5.0)
    assert steady.steady and steady.reason is None
    assert judge_host(steal_frac=None, reference_spreads={}, noise_floor=None).steady
    bad = judge_host(
        steal_frac=0.2,
        reference_spreads={"a": 0.1, "b": MAX_REFERENCE_SPREAD + 0.1},
        noise_floor=30.0,
    )
    assert not bad.steady and len(bad.reasons) == 3
    assert bad.reason is not None
    assert "steal 20.0%" in bad.reason and "b: solo reference" in bad.reason
    assert "a:" not in bad.reason and "30.0%" in bad.reason


def test_a_perfect_model_scores_the_noise_floor() -> None:
    app = _app(1.0, points=400, repeats=3, cv=0.08, seed=3)
    out = noise_floor([app], steal_frac=0.0)
    assert out.noise_floor_ape is not None
    assert out.noise_floor_ape == pytest.approx(app.noise_floor_ape())
    assert out.excess_error == pytest.approx(1.0, abs=0.12)
    assert out.steadiness.steady
    d = out.as_dict()
    assert d["host_steady"] is True and d["host_unsteady_reason"] is None
    assert d["excess_error"] == pytest.approx(out.median_ape_single_window / out.noise_floor_ape)


def test_a_biased_model_scores_above_the_floor_and_steal_marks_the_host() -> None:
    app = _app(1.2, points=200, repeats=2, cv=0.05, seed=4)
    out = noise_floor([app], steal_frac=0.3)
    assert out.excess_error is not None and out.excess_error > 3.0
    assert not out.steadiness.steady
    assert out.as_dict()["host_unsteady_reason"].startswith("CPU steal 30.0%")
