"""Every command line in the README names a real command and only options it has."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgewise.cli.main import make_app

README = Path(__file__).resolve().parents[1] / "README.md"
GROUPS = {"bench", "kb", "simulate", "models"}


def _fenced_blocks(lang: str = "") -> list[str]:
    """The README's fenced code blocks whose info string is ``lang`` ('' for plain)."""
    blocks, current, inside = [], [], None
    for line in README.read_text().splitlines():
        if line.startswith("```"):
            if inside is None:
                inside, current = line[3:].strip(), []
            else:
                if inside == lang:
                    blocks.append("\n".join(current) + "\n")
                inside = None
        elif inside is not None:
            current.append(line)
    return blocks


def _command_lines() -> list[str]:
    lines = [ln.strip() for b in _fenced_blocks() for ln in b.splitlines()]
    return [ln for ln in lines if re.match(r"edgewise [a-z]", ln)]


def test_readme_starts_with_the_two_commands() -> None:
    assert _fenced_blocks()[0].split() == ["make", "demo", "make", "test"]


@pytest.mark.parametrize("line", _command_lines())
def test_readme_command_exists_with_its_options(line: str) -> None:
    words = line.split()[1:]
    path = [words[0]]
    if words[0] in GROUPS:
        path.append(words[1])
    result = CliRunner().invoke(make_app(), [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, f"{' '.join(path)}: {result.output}"
    helptext = result.output
    for opt in (w.split("=")[0] for w in words if w.startswith("--")):
        assert opt in helptext, f"{line}: option {opt} not in `edgewise {' '.join(path)} --help`"


# --------------------------------------------------------------------------- Python API

#: README Python blocks cheap enough to run for real in the suite (seconds); the others
#: (a profiling campaign, a re-training) are checked against the API's signatures only.
RUN_FOR_REAL = ("stress(", "simulate_serving(", "add_model(")


def _python_blocks() -> list[str]:
    return _fenced_blocks("python")


def _api_calls(code: str) -> list[tuple[str, str, ast.Call]]:
    """``(module, name, call)`` for every call of a name imported from ``edgewise``."""
    tree = ast.parse(code)
    imported = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgewise")
        for alias in node.names
    }
    return [
        (*imported[node.func.id], node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in imported
    ]


def test_readme_has_a_python_example_per_pillar() -> None:
    modules = {m for code in _python_blocks() for m, _, _ in _api_calls(code)}
    assert {"edgewise.api.profile", "edgewise.api.simulate", "edgewise.api.retrain"} <= modules


@pytest.mark.parametrize("code", _python_blocks())
def test_readme_python_calls_match_the_api(code: str) -> None:
    import importlib
    import inspect

    calls = _api_calls(code)
    assert calls, "a Python example that calls no edgewise function"
    for module, name, call in calls:
        fn = getattr(importlib.import_module(module), name)
        args = [None] * len(call.args)
        kwargs = {kw.arg: None for kw in call.keywords if kw.arg is not None}
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as err:
            pytest.fail(f"README calls {module}.{name} with arguments it does not take: {err}")


@pytest.mark.slow
@pytest.mark.parametrize("code", [c for c in _python_blocks() if any(k in c for k in RUN_FOR_REAL)])
def test_readme_python_example_runs(code: str, tmp_path: Path) -> None:
    env = dict(os.environ, EDGEWISE_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # the examples write their files where they run
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "the example printed nothing"
