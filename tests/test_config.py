from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgewise.config import (
    ServiceSpec,
    load_devices,
    load_flavors,
    load_service,
    load_stress_space,
    parse_spec,
)
from edgewise.errors import SpecError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("name", "loader"),
    [
        ("devices-hetero.yaml", load_devices),
        ("flavors.yaml", load_flavors),
        ("service.yaml", load_service),
        ("stress-space.yaml", load_stress_space),
    ],
)
def test_examples_load(name: str, loader) -> None:
    spec = loader(EXAMPLES / name)
    assert spec is not None


def test_device_with_zero_cpus_names_file_and_field(tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text("devices:\n  - {name: a, cpus: 1}\n  - {name: b, cpus: 0}\n")
    with pytest.raises(SpecError) as err:
        load_devices(f)
    msg = str(err.value)
    assert str(f) in msg and "devices[1].cpus" in msg and "greater than 0" in msg
    assert "\n" not in msg


def test_malformed_yaml_reports_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("flavors:\n  - {name: a, cpus: 1\n")
    with pytest.raises(SpecError, match=r"line \d+, column \d+: malformed YAML"):
        load_flavors(f)


def test_negative_price_and_duplicates(tmp_path: Path) -> None:
    f = tmp_path / "f.yaml"
    f.write_text("flavors:\n  - {name: a, cpus: 1, price_per_hour: -1}\n")
    with pytest.raises(SpecError, match=r"flavors\[0\]\.price_per_hour"):
        load_flavors(f)
    f.write_text(
        "flavors:\n  - {name: a, cpus: 1, price_per_hour: 1}\n  - {name: a, cpus: 2, price_per_hour: 2}\n"
    )
    with pytest.raises(SpecError, match="duplicate name 'a'"):
        load_flavors(f)


def test_missing_file_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_devices(tmp_path / "nope.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(SpecError, match="file is empty"):
        load_devices(tmp_path / "empty.yaml")


def test_service_model_shorthand() -> None:
    spec = parse_spec(
        {"name": "s", "model": "resnet18", "slo": {"latency_ms": 50}}, ServiceSpec, "x"
    )
    assert spec.variants[0].model == "resnet18" and spec.slo.percentile == 99.0


def test_stress_space_rejects_inverted_range() -> None:
    from edgewise.config import StressSpace

    with pytest.raises(SpecError, match="lower bound"):
        parse_spec({"resources": {"cpu": [0.8, 0.2]}}, StressSpace, "s.yaml")
    with pytest.raises(SpecError, match=r"resources\.cpu"):
        parse_spec({"resources": {"cpu": [0.0, 1.5]}}, StressSpace, "s.yaml")


def test_cli_turns_user_errors_into_one_line_exit_2() -> None:
    import typer

    from edgewise.cli.main import EdgewiseGroup

    app = typer.Typer(cls=EdgewiseGroup)

    @app.command()
    def boom() -> None:
        raise SpecError("x.yaml: devices[0].cpus: bad")

    @app.command()
    def ok() -> None:
        pass

    result = CliRunner().invoke(app, ["boom"])
    assert result.exit_code == 2
    assert "edgewise: error: x.yaml: devices[0].cpus: bad" in result.output


def test_model_names_have_one_home() -> None:
    """The zoo builds exactly the names the specs accept; the torch-free list agrees."""
    from edgewise.config import MODEL_NAMES
    from edgewise.workloads import _names, zoo

    assert zoo.MODEL_NAMES is MODEL_NAMES
    assert set(zoo._BUILDERS) == set(MODEL_NAMES)
    assert _names.MODEL_NAMES == MODEL_NAMES


def test_identical_variants_name_the_file_and_the_variant(tmp_path: Path) -> None:
    f = tmp_path / "svc.yaml"
    f.write_text(
        "name: s\nslo: {latency_ms: 50}\nvariants:\n"
        "  - {model: resnet18, accuracy: 0.7}\n  - {model: mobilenet_v2}\n"
        "  - {model: resnet18, accuracy: 0.7}\n"
    )
    with pytest.raises(SpecError) as err:
        load_service(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: variants: variants[2] repeats variants[0]")
    assert "'resnet18'" in msg and "\n" not in msg
    # the same model at another batch size is another variant
    f.write_text(
        "name: s\nslo: {latency_ms: 50}\nvariants:\n"
        "  - {model: resnet18}\n  - {model: resnet18, batch_size: 4}\n"
    )
    assert len(load_service(f).variants) == 2


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("name: s\nmodel: resnet19\nslo: {latency_ms: 50}\n", "variants[0].model"),
        (
            "name: s\nslo: {latency_ms: 50}\nvariants: [{model: resnet18}, {model: ''}]\n",
            "variants[1].model",
        ),
    ],
)
def test_unknown_model_in_a_service_lists_the_known_ones(
    tmp_path: Path, text: str, field: str
) -> None:
    from edgewise.config import MODEL_NAMES

    f = tmp_path / "svc.yaml"
    f.write_text(text)
    with pytest.raises(SpecError) as err:
        load_service(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: {field}:") and "\n" not in msg
    assert ", ".join(MODEL_NAMES) in msg


def test_unknown_background_model_names_the_device_field(tmp_path: Path) -> None:
    f = tmp_path / "devices.yaml"
    f.write_text(
        "devices:\n  - {name: a, cpus: 1}\n  - {name: b, cpus: 1}\n"
        "  - name: c\n    cpus: 0.5\n"
        "    background: {model: yolo, rate_rps: 5, deadline_ms: 100}\n"
    )
    with pytest.raises(SpecError) as err:
        load_devices(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}: devices[2].background.model: unknown model 'yolo'")
    assert "known models: mobilenet_v2" in msg and "\n" not in msg


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_non_finite_numbers_are_refused(tmp_path: Path, value: str) -> None:
    f = tmp_path / "flavors.yaml"
    f.write_text(f"flavors:\n  - {{name: a, cpus: {value}, price_per_hour: 1}}\n")
    with pytest.raises(SpecError, match=r"flavors\[0\]\.cpus: Input should be a finite number"):
        load_flavors(f)


def test_retrain_with_an_unknown_background_model_fails_at_once(tmp_path: Path) -> None:
    """Through the real entry point: exit 2, one line, no work directory, in seconds."""
    import os
    import subprocess
    import sys
    import time

    home = tmp_path / "home"
    bad = tmp_path / "BAD.yaml"
    bad.write_text(
        "devices:\n  - {name: a, cpus: 0.5, "
        "background: {model: no_such_model, rate_rps: 5, deadline_ms: 100}}\n"
    )
    env = {**os.environ, "EDGEWISE_HOME": str(home)}
    env.pop("EDGEWISE_DB_URL", None)
    env.pop("EDGEWISE_DEBUG", None)
    entry = "from edgewise.cli.main import main; main()"
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", entry, "retrain", "--devices", str(bad)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"edgewise: error: {bad}: devices[0].background.model:")
    assert "unknown model 'no_such_model'" in lines[0]
    # before the fix it failed after 69 s; 30 s leaves room for a busy 2-core host
    assert elapsed < 30, f"took {elapsed:.1f} s"
    assert not (home / "retrain").exists()
    leftovers = [p for p in home.rglob("*") if p.is_dir()] if home.exists() else []
    assert leftovers == [], leftovers


def test_a_service_variant_names_a_registered_version_or_a_model_file(tmp_path: Path) -> None:
    from edgewise.config import ServiceSpec, parse_spec

    model_file = tmp_path / "digits.pt"
    model_file.write_bytes(b"")
    spec = {
        "name": "own",
        "variants": [
            {"model": "digits:v2", "accuracy": 0.9},
            {"model": str(model_file), "accuracy": 0.8},
            {"model": "digits_cnn", "accuracy": 0.7},
        ],
        "slo": {"latency_ms": 100, "percentile": 99},
    }
    got = parse_spec(spec, ServiceSpec, "own.yaml")
    assert [v.model for v in got.variants] == ["digits:v2", str(model_file), "digits_cnn"]
    # a bare name outside the zoo is a typo until proven otherwise; a missing file too, and
    # a path that exists but holds no model (the home directory, a text file)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model")
    for bad in (
        "digits",
        str(tmp_path / "missing.pt"),
        "digits:v0",
        "~",
        str(tmp_path),
        str(notes),
    ):
        wrong = {**spec, "variants": [{"model": bad, "accuracy": 0.9}]}
        with pytest.raises(SpecError, match=r"variants\[0\]\.model: unknown model"):
            parse_spec(wrong, ServiceSpec, "own.yaml")
