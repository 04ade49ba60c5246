"""Bad input and a broken environment give one line and an exit code, never a traceback."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgewise.cli.main import app
from edgewise.config import load_flavors, load_service, load_yaml
from edgewise.errors import EnvironmentProblem, SpecError, TraceError
from edgewise.workloads.traces import load_trace

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_binary_yaml_is_one_line_naming_the_file(tmp_path: Path) -> None:
    f = tmp_path / "flavors.yaml"
    f.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    with pytest.raises(SpecError, match=r"flavors\.yaml: not a UTF-8 text file"):
        load_flavors(f)


def test_duplicate_yaml_keys_are_an_error_with_the_line(tmp_path: Path) -> None:
    f = tmp_path / "service.yaml"
    f.write_text("name: svc\nslo_ms: 100\nslo_ms: 200\n")
    with pytest.raises(
        SpecError, match=r"service\.yaml: line 3, column 1: .*duplicate key 'slo_ms'"
    ):
        load_service(f)
    nested = tmp_path / "nested.yaml"
    nested.write_text("a:\n  b: 1\n  b: 2\n")
    with pytest.raises(SpecError, match="duplicate key 'b'"):
        load_yaml(nested)
    # the same key in two different mappings is fine
    ok = tmp_path / "ok.yaml"
    ok.write_text("- {name: a}\n- {name: b}\n")
    assert load_yaml(ok) == [{"name": "a"}, {"name": "b"}]


def test_corrupt_gzip_trace_is_one_line(tmp_path: Path) -> None:
    good = gzip.compress(
        b"time,value\n" + b"".join(b"2020-01-01 %02d:00,5\n" % h for h in range(24))
    )
    bad = tmp_path / "trace.csv.gz"
    bad.write_bytes(good[:20] + b"\x00" * 40 + good[60:])  # valid header, corrupt body
    with pytest.raises(TraceError, match=r"trace\.csv\.gz: cannot read as CSV"):
        load_trace(str(bad))


def test_read_only_state_directory_is_an_environment_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgewise.paths import home

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("EDGEWISE_HOME", str(blocker / "state"))
    with pytest.raises(EnvironmentProblem, match=r"cannot be created.*EDGEWISE_HOME"):
        home()
    if os.geteuid() != 0:  # root writes anywhere: only the creation failure can be shown
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        monkeypatch.setenv("EDGEWISE_HOME", str(ro))
        with pytest.raises(EnvironmentProblem, match="not writable"):
            home()


def test_cli_turns_a_binary_spec_into_one_line_and_exit_2(tmp_path: Path) -> None:
    f = tmp_path / "svc.yaml"
    f.write_bytes(b"\xff\xfe\xfd")
    res = CliRunner().invoke(
        app,
        ["plan", "--service", str(f), "--flavors", str(EXAMPLES / "flavors.yaml"), "--rate", "4"],
    )
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "svc.yaml: not a UTF-8 text file" in lines[0]


def test_unexpected_failure_is_one_line_exit_1_and_debug_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edgewise.cli.kb as kb_cli

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setenv("EDGEWISE_HOME", str(tmp_path))
    monkeypatch.delenv("EDGEWISE_DEBUG", raising=False)
    monkeypatch.setattr(kb_cli.KnowledgeBase, "open", boom)
    from edgewise.cli.main import make_app

    res = CliRunner().invoke(make_app(("kb",)), ["kb", "list"])
    assert res.exit_code == 1
    assert res.output.strip() == (
        "edgewise: error: RuntimeError: disk on fire (rerun with --debug for the traceback)"
    )
    res = CliRunner().invoke(make_app(("kb",)), ["--debug", "kb", "list"])
    assert isinstance(res.exception, RuntimeError)
    res = CliRunner().invoke(make_app(("kb",)), ["kb", "list"])
    assert res.exit_code == 1  # --debug holds for one invocation only


def test_kb_export_to_an_unwritable_place_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgewise.cli.main import make_app

    monkeypatch.setenv("EDGEWISE_HOME", str(tmp_path / "home"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = CliRunner().invoke(
        make_app(("kb",)), ["kb", "export", "all", "--out", str(blocker / "x")]
    )
    assert res.exit_code == 2
    assert res.output.strip().startswith(f"edgewise: error: --out {blocker / 'x'}: cannot write")


def test_a_wrong_option_value_or_command_is_one_line_exit_2() -> None:
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["retrain", "--devices", str(EXAMPLES / "devices-hetero.yaml"), "--drift", "spin"],
        prog_name="edgewise",
    )
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "edgewise: error: edgewise retrain: Invalid value for '--drift': Value error, "
        "'spin' is not one of 'rotation', 'noise', 'new_classes'."
    ]
    res = runner.invoke(app, ["plann"])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(app, ["forecast", "bikeshare", "--level", "150"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        "edgewise: error: --level: interval level must be an integer percent in (0, 100), got 150"
    )
