"""Every command line in the README names a real command and only options it has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgewise.cli.main import make_app

README = Path(__file__).resolve().parents[1] / "README.md"
GROUPS = {"bench", "kb", "simulate"}


def _command_lines() -> list[str]:
    blocks = re.findall(r"```\n(.*?)```", README.read_text(), flags=re.S)
    lines = [ln.strip() for b in blocks for ln in b.splitlines()]
    return [ln for ln in lines if re.match(r"edgewise [a-z]", ln)]


def test_readme_starts_with_the_two_commands() -> None:
    first = re.search(r"```\n(.*?)```", README.read_text(), flags=re.S)
    assert first is not None and first.group(1).split() == ["make", "demo", "make", "test"]


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
