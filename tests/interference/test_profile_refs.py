"""App references of the interference profiler: what is refused, in one line, and how a
registry version is spelled where its measurements are stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgewise.errors import UnknownNameError
from edgewise.interference.apps import parse_workload_name, spell_app, workload_name
from edgewise.interference.target import check_app


@pytest.mark.parametrize(
    ("app", "words"),
    [
        ("nosuch", "unknown app 'nosuch': expected a zoo model (mobilenet_v2"),
        ("resnet.50", "unknown app 'resnet.50': expected"),
    ],
)
def test_a_reference_the_profiler_does_not_run_is_one_line(
    app: str, words: str, tmp_path: Path
) -> None:
    with pytest.raises(UnknownNameError) as err:
        check_app(app, f"sqlite:///{tmp_path / 'kb.sqlite'}")
    assert str(err.value).startswith(words) and "\n" not in str(err.value)
    assert "a registered NAME:vN, model@RATErps or cmd:COMMAND" in str(err.value)


def test_a_model_file_is_named_as_one(tmp_path: Path) -> None:
    path = tmp_path / "net.onnx"
    path.write_bytes(b"")
    with pytest.raises(UnknownNameError, match=r"is a model file: .*register it first"):
        check_app(str(path))


@pytest.mark.parametrize(
    ("app", "spelled"),
    [
        ("tiny:1", "tiny:v1"),
        ("tiny:v2", "tiny:v2"),
        ("tiny:3@5rps", "tiny:v3@5rps"),
        ("tiny:3@5rpsx4", "tiny:v3@5rpsx4"),
        ("mobilenet_v2@20rps", "mobilenet_v2@20rps"),
        ("tiny", "tiny"),
        ("cmd:sleep 1", "cmd:sleep 1"),
    ],
)
def test_a_registry_version_is_always_stored_as_vN(app: str, spelled: str) -> None:
    assert spell_app(app) == spelled


def test_a_versioned_workload_name_round_trips() -> None:
    name = workload_name("tiny:v4", 12.5, batch_size=2)
    assert name == "tiny:v4@12.5rpsx2"
    assert parse_workload_name(name) == ("tiny:v4", 12.5, 2)
    assert parse_workload_name("tiny:4@3rps") == ("tiny:v4", 3.0, 1)
    assert parse_workload_name("tiny:v4") is None
