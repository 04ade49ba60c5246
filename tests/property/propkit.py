"""The harness of the bad-input suite: a sandbox that runs the CLI in-process and checks
the contract every rejected input must meet.

The contract (issue 22): exit code 2, exactly one line on stderr naming the file, field
or value, no traceback, no process started, nothing written to the knowledge base and
no file left behind in the working, input or state directory. The knowledge base is
compared by its row counts (``KnowledgeBase.counts()``) around each test and by its
file's bytes around each case (a count query per case would double a case's cost).

Commands run through ``edgewise.cli.main.app`` with Typer's ``CliRunner``. Typer builds
the click command again on every ``invoke`` (about 0.1 s of signature inspection); the
sandbox builds it once, which keeps 500 cases of a command within seconds.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer.main
import typer.testing
from hypothesis import HealthCheck, settings
from typer.testing import CliRunner, Result

from edgewise.cli.main import app
from edgewise.kb import KnowledgeBase

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GOOD_SERVICE = EXAMPLES / "service.yaml"
GOOD_FLAVORS = EXAMPLES / "flavors.yaml"
GOOD_DEVICES = EXAMPLES / "devices-hetero.yaml"

CASES = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.data_too_large,
    ],
)
"""Hypothesis settings of every property here: 500 cases, no per-case deadline."""


class ProcessStarted(Exception):
    """Raised by the sandbox's tripwire when a command tries to start a process."""


@dataclass
class Sandbox:
    """Temporary state, working and input directories around in-process CLI calls.

    Attributes
    ----------
    home : Path
        ``EDGEWISE_HOME``, holding an initialised knowledge base.
    work : Path
        The current directory while commands run; must stay empty.
    inputs : Path
        Where cases write their files; only those files may be there afterwards.
    kb : KnowledgeBase
        The knowledge base under ``home``, for row counts.
    started : list of str
        Processes the commands tried to start (the tripwire refuses them).
    """

    home: Path
    work: Path
    inputs: Path
    kb: KnowledgeBase
    started: list[str] = field(default_factory=list)
    runner: CliRunner = field(default_factory=CliRunner)

    def write(self, name: str, content: bytes) -> Path:
        """Write an input file (replacing any from an earlier case) and return its path."""
        for old in self.inputs.iterdir():
            old.unlink()
        path = self.inputs / name
        path.write_bytes(content)
        return path

    def invoke(self, args: Sequence[str]) -> Result:
        """Run ``edgewise ARGS`` in-process."""
        self.started.clear()
        return self.runner.invoke(app, list(args))

    def check_rejected(
        self,
        args: Sequence[str],
        names: Sequence[str],
        *,
        tolerate: re.Pattern[str] | None = None,
    ) -> str:
        """Run ``edgewise ARGS`` and assert the bad-input contract; return the error line.

        Parameters
        ----------
        args : sequence of str
            The command line after ``edgewise``.
        names : sequence of str
            Substrings the error line must contain (the file, field or value).
        tolerate : re.Pattern, optional
            Lines of a known, separately xfailed violation that may precede the error.
        """
        kb_bytes = _kb_digest(self.home)
        state = _listing(self.home)
        inputs = _listing(self.inputs)
        res = self.invoke(args)
        where = f"edgewise {' '.join(args)}"
        assert not self.started, f"{where}: started a process before validating: {self.started}"
        assert "Traceback" not in res.stderr + res.stdout, f"{where}: traceback:\n{res.stderr}"
        assert res.exception is None or isinstance(res.exception, SystemExit), (
            f"{where}: {res.exception!r}"
        )
        assert res.exit_code == 2, f"{where}: exit {res.exit_code}: {res.stderr!r}"
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        if tolerate is not None:
            lines = [ln for ln in lines if not tolerate.match(ln)]
        assert len(lines) == 1, f"{where}: {len(lines)} lines on stderr: {res.stderr!r}"
        line = lines[0]
        assert line.startswith("edgewise: error: "), f"{where}: {line!r}"
        for name in names:
            assert name in line, f"{where}: {name!r} not named in {line!r}"
        assert _kb_digest(self.home) == kb_bytes, f"{where}: wrote to the knowledge base"
        assert _listing(self.home) == state, f"{where}: changed files under EDGEWISE_HOME"
        assert _listing(self.work) == [], f"{where}: left files in the working directory"
        assert _listing(self.inputs) == inputs, f"{where}: changed the input directory"
        return line


def _kb_digest(home: Path) -> str:
    return hashlib.sha256((home / "kb.sqlite").read_bytes()).hexdigest()


def _listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "-journal" not in p.name)


def _refuse(what: str, started: list[str]) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        cmd = args[1] if what == "Popen" and len(args) > 1 else kwargs.get("args", args[:1])
        started.append(f"{what} {cmd!r}")
        raise ProcessStarted(f"{what} {cmd!r}")

    return refuse


@pytest.fixture
def sandbox(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sandbox]:
    """A :class:`Sandbox` with a tripwire on process creation and a once-built command."""
    root = tmp_path_factory.mktemp("prop")
    home, work, inputs = root / "home", root / "work", root / "inputs"
    for d in (work, inputs):
        d.mkdir()
    monkeypatch.setenv("EDGEWISE_HOME", str(home))
    monkeypatch.delenv("EDGEWISE_DB_URL", raising=False)
    monkeypatch.delenv("EDGEWISE_DEBUG", raising=False)
    monkeypatch.chdir(work)
    kb = KnowledgeBase.open()
    box = Sandbox(home=home, work=work, inputs=inputs, kb=kb)
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("Popen", box.started))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse(name, box.started))
    command = typer.main.get_command(app)
    monkeypatch.setattr(typer.testing, "_get_command", lambda _app: command)
    counts = kb.counts()
    try:
        yield box
        assert kb.counts() == counts, "the knowledge base's row counts changed"
    finally:
        kb.close()
