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
