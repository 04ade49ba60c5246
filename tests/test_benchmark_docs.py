"""docs/benchmarks.md and the README's results table agree with benchmarks/results/."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "render_benchmarks", ROOT / "scripts" / "render-benchmarks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = _renderer()


def _wrapped(result: dict[str, Any], **host: Any) -> dict[str, Any]:
    base = {
        "cpu_model": "Test CPU",
        "cores": 4,
        "cores_usable": 4,
        "memory_gb": 8.0,
        "gpus": None,
        "cpu_steal_frac": 0.01,
        "cpu_busy_frac": 0.5,
        "loadavg_1m": {"start": 1.0, "mean": 1.0, "max": 1.5, "end": 1.0},
        "started": "2026-01-02T03:04:05+00:00",
        "wall_s": 30,
        "commit": "0123456789abcdef",
        "dirty": False,
    }
    return {"benchmark": "x", "command": "edgewise bench x", "host": base | host, "result": result}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the README and an empty results directory."""
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    (tmp_path / "results").mkdir()
    return tmp_path


def _args(tree: Path, *extra: str) -> list[str]:
    return [
        "--results",
        str(tree / "results"),
        "--page",
        str(tree / "benchmarks.md"),
        "--readme",
        str(tree / "README.md"),
        *extra,
    ]


def test_the_committed_docs_agree_with_the_results() -> None:
    """The repository's page and README table are what its JSON gives."""
    assert render.main(["--check"]) == 0


def test_missing_results_are_not_run_yet_and_the_gpu_path_untested(tree: Path) -> None:
    (tree / "results" / "plan.json").write_text(
        json.dumps(
            _wrapped({"solve_ms_p99": 42.4, "exact_matches_bruteforce": True}, cpu_steal_frac=0.2)
        )
    )
    assert render.main(_args(tree)) == 0
    page = (tree / "benchmarks.md").read_text()
    readme = (tree / "README.md").read_text()
    assert "p99 42 ms (≤ 100), exact = brute force" in page
    assert "Test CPU, 4 cores, 8.0 GB, no GPU" in page and "**Busy host** (steal above 5%)" in page
    assert page.count("**Current figures:** not run yet") == len(render.HEADLINES) - 2
    assert "**Untested.** No machine with a GPU has run `scripts/gpu-check.sh`" in page
    block = readme[readme.index(render.BEGIN) : readme.index(render.END)]
    assert (
        "| serve | `bench plan --flavors 20 --max-replicas 100 --instances 200` | p99 42 ms"
        in block
    )
    assert "| profile | `bench interference" in block and "| not run yet |" in block
    assert render.main(_args(tree, "--check")) == 0


def test_check_fails_when_the_readme_table_or_the_page_is_stale(tree: Path) -> None:
    assert render.main(_args(tree)) == 0
    readme = tree / "README.md"
    readme.write_text(readme.read_text().replace("not run yet", "99.99% (≥ 99.5%)", 1))
    assert render.main(_args(tree, "--check")) == 1
    assert render.main(_args(tree)) == 0
    (tree / "results" / "telemetry.json").write_text(
        json.dumps(_wrapped({"overhead_pct_at_1hz": 0.25}))
    )
    assert render.main(_args(tree, "--check")) == 1
    assert render.main(_args(tree)) == 0
    assert "sampler overhead 0.25% of a core" in (tree / "benchmarks.md").read_text()


def test_interference_states_its_noise_floor_and_an_unsteady_host() -> None:
    doc = _wrapped(
        {
            "median_ape": 9.0,
            "noise_floor_ape": 8.0,
            "excess_error": 1.2,
            "interval_coverage_90": 0.9,
            "host_steady": False,
            "host_unsteady_reason": "CPU steal 9.0% of the run (bound 5%)",
        }
    )
    text = render.headline("interference", doc)
    assert "noise floor 8.0%, excess error 1.20 (≤ 1.25)" in text
    assert "host unsteady: CPU steal 9.0%" in text


def test_a_result_without_its_headline_figure_is_not_invented() -> None:
    text = render.headline("serving", _wrapped({"slo_attainment": 0.999}))
    assert "lacks 'cost_ratio_vs_oracle'" in text and "%" not in text


def test_a_gpu_check_result_replaces_untested(tree: Path) -> None:
    gpu = _wrapped(
        {"apps": ["resnet50"], "device": "cuda", "median_ape": 3.2}, gpus=["GPU 0: NVIDIA H100"]
    )
    (tree / "results" / "gpu-check.json").write_text(json.dumps(gpu))
    assert render.main(_args(tree)) == 0
    page = (tree / "benchmarks.md").read_text()
    assert "Untested" not in page
    assert "resnet50 on cuda: p50 median APE 3.2% (≤ 5 with dedicated cores)" in page
    assert "GPU 0: NVIDIA H100" in page


def test_bench_all_wraps_each_result_with_the_host_fingerprint(tmp_path: Path) -> None:
    fake = tmp_path / "edgewise"
    fake.write_text('#!/bin/sh\necho \'{"overhead_pct_at_1hz": 0.1, "argv": "\'"$*"\'"}\'\n')
    fake.chmod(0o755)
    env = os.environ | {"EDGEWISE": str(fake), "PYTHON": sys.executable}
    out = tmp_path / "results"
    run = subprocess.run(
        [str(ROOT / "scripts" / "bench-all.sh"), "--only", "telemetry,plan", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads((out / "telemetry.json").read_text())
    assert doc["command"] == "edgewise bench telemetry --seconds 30 --json"
    assert doc["result"]["argv"] == "bench telemetry --seconds 30 --json"
    host = doc["host"]
    assert host["cores"] >= 1 and host["memory_gb"] > 0 and host["cpu_model"]
    assert 0.0 <= host["cpu_steal_frac"] <= 1.0
    assert host["steal_ticks"]["after"] >= host["steal_ticks"]["before"]
    assert host["loadavg_1m"]["mean"] is not None and len(host["commit"]) == 40
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "telemetry.json"]


def test_bench_all_refuses_an_unknown_benchmark(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            str(ROOT / "scripts" / "bench-all.sh"),
            "--only",
            "telemetry,nope",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "unknown benchmark nope" in run.stderr
    assert list(tmp_path.iterdir()) == []


def test_forecast_traces_names_each_target_and_the_traces_that_miss() -> None:
    traces = [
        {"trace": "bikeshare", "mae_ratio": 0.70, "coverage_90": 0.90, "fit_predict_ms": 120.0},
        {"trace": "wikipedia", "mae_ratio": 1.10, "coverage_90": 0.80, "fit_predict_ms": 300.0},
    ]
    doc = _wrapped(
        {
            "median_mae_ratio": 0.9,
            "worst_mae_ratio": 1.1,
            "worst_coverage_90": 0.80,
            "median_fit_predict_ms": 210.0,
            "traces": traces,
        }
    )
    text = render.headline("forecast-traces", doc)
    assert "2 traces: median MAE 0.900 of the best seasonal naive (≤ 0.85: **not met**)" in text
    assert "worst 1.100 (≤ 1.0: **not met**)" in text and "bikeshare 0.700 (≤ 0.75)," in text
    assert "0.800 (0.85–0.95: **not met**)" in text
    assert "210 ms per origin, median over the traces (≤ 250; slowest wikipedia 300 ms)" in text
    assert text.endswith("outside the per-trace targets: wikipedia")


def _serving_trace(ours_cost: float, ours_att: float, oracle_att: float) -> dict[str, Any]:
    return {
        "cost_ratio_vs_oracle": ours_cost,
        "slo_attainment": ours_att,
        "policies": {"oracle": {"slo_attainment": oracle_att}},
    }


def test_serving_traces_holds_every_trace_to_the_oracle() -> None:
    good = {"a": _serving_trace(1.02, 0.999, 0.9985), "b": _serving_trace(1.04, 0.998, 0.998)}
    text = render.headline("serving-traces", _wrapped({"traces": good, "worst_trace": "b"}))
    assert "a cost 1.020 of the oracle at +0.05 pt attainment" in text
    assert "(≤ 1.05 at ≥ the oracle's −0.1 pt); worst b" in text and "not met" not in text
    low = good | {"c": _serving_trace(1.01, 0.990, 0.995)}
    text = render.headline("serving-traces", _wrapped({"traces": low, "worst_trace": "b"}))
    assert "c cost 1.010 of the oracle at -0.50 pt attainment (**not met**)" in text


def test_fleet_says_plainly_that_its_interference_is_synthetic() -> None:
    result = {
        "services": [{"name": n} for n in "abcdef"],
        "nodes": 24,
        "services_below_slo": 0,
        "best_blind": "first-fit",
        "cost_ratio_vs_best_blind": 0.8,
        "interference_synthetic": ["resnet50", "vit_tiny"],
        "interference_source": "knowledge base (synthetic fixture models for resnet50, vit_tiny)",
    }
    text = render.headline("fleet", _wrapped(result))
    assert text.startswith("6 services on 24 nodes: 0 below their SLO (0), cost 0.800 of")
    assert "interference from SYNTHETIC models (resnet50, vit_tiny): not measured" in text
    real = result | {"interference_synthetic": [], "interference_source": "knowledge base"}
    assert "SYNTHETIC" not in render.headline("fleet", _wrapped(real))
    profiled = real | {"interference_models": {m: {"synthetic": False} for m in ("a", "b")}}
    text = render.headline("fleet", _wrapped(profiled))
    assert text.endswith("interference measured: 2 models profiled on the host")


def test_fleet_live_holds_each_service_and_the_cost_to_the_simulator() -> None:
    result = {
        "nodes": {"node-01": [0], "node-02": [1]},
        "live": {"slo_attainment": {"photos": 1.0, "products": 0.9990}},
        "max_attainment_gap_pt": 0.31,
        "cost_gap": 0.012,
    }
    text = render.headline("fleet-live", _wrapped(result))
    assert text == (
        "2 services on 2 nodes emulated by CPUs, live photos 100.00%, products 99.90%: "
        "within 0.31 pt of the simulator (≤ 1) at +1.2% of its node cost (≤ 5%)"
    )
    off = result | {"max_attainment_gap_pt": 1.69, "cost_gap": -0.07}
    text = render.headline("fleet-live", _wrapped(off))
    assert "within 1.69 pt of the simulator (≤ 1: **not met**)" in text
    assert "at -7.0% of its node cost (≤ 5%: **not met**)" in text


def test_rollout_reports_failures_the_tail_and_both_canaries() -> None:
    result = {
        "failed_requests": 0,
        "p99_during_rollout_ms": 120.4,
        "slo_ms": 150.0,
        "promote_s": 31.25,
        "promoted": True,
        "rolled_back": True,
    }
    text = render.headline("rollout", _wrapped(result))
    assert text == (
        "0 failed requests (0), p99 120 ms during the rollout (≤ 150), promoted in 31.2 s, "
        "slow canary rolled back"
    )
    bad = result | {"failed_requests": 3, "promoted": False, "promote_s": None}
    text = render.headline("rollout", _wrapped(bad))
    assert "3 failed requests (0: **not met**)" in text and "**not promoted**" in text


def test_bench_all_runs_a_setup_step_in_its_temporary_directory(tmp_path: Path) -> None:
    fake = tmp_path / "edgewise"
    fake.write_text('#!/bin/sh\necho \'{"argv": "\'"$*"\'"}\'\n')
    fake.chmod(0o755)
    python = tmp_path / "python"  # the setup step only creates its file
    python.write_text(
        f'#!/bin/sh\ncase "$1" in scripts/profile-fleet-kb.py) : >"$2"; exit 0;; esac\nexec {sys.executable} "$@"\n'
    )
    python.chmod(0o755)
    env = os.environ | {"EDGEWISE": str(fake), "PYTHON": str(python)}
    out = tmp_path / "results"
    run = subprocess.run(
        [str(ROOT / "scripts" / "bench-all.sh"), "--only", "fleet", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    doc = json.loads((out / "fleet.json").read_text())
    assert doc["setup"] == "python scripts/profile-fleet-kb.py $RUN/fleet-kb.sqlite"
    assert doc["command"].startswith("edgewise bench fleet --kb sqlite:///$RUN/fleet-kb.sqlite")
    kb = doc["result"]["argv"].split()[3].removeprefix("sqlite:///")
    assert kb.endswith("/fleet-kb.sqlite") and "$RUN" not in kb and Path(kb).exists()
