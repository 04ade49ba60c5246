"""Malformed traces through every command that reads one: one line naming the file.

A trace the generator got wrong (one the loader accepts) fails the case on its exit
code; the sandbox's tripwire keeps such a case from starting Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hypothesis import given
from propkit import CASES, GOOD_FLAVORS, GOOD_SERVICE, Sandbox
from tracegen import BadTrace, bad_trace

Args = Callable[[Path], list[str]]

COMMANDS: dict[str, Args] = {
    "forecast": lambda f: ["forecast", str(f)],
    "simulate serving": lambda f: ["simulate", "serving", "--trace", str(f)],
    "plan --forecast": lambda f: [
        "plan",
        "--service",
        str(GOOD_SERVICE),
        "--flavors",
        str(GOOD_FLAVORS),
        "--forecast",
        str(f),
    ],
    "replay --trace": lambda f: ["replay", "--trace", str(f)],
}


def check_trace_case(sandbox: Sandbox, command: str, case: BadTrace) -> None:
    """Write ``case`` and run ``command`` on it."""
    f = sandbox.write(f"BAD-trace{case.suffix}", case.content)
    sandbox.check_rejected(COMMANDS[command](f), (str(f), *case.names))


def _property(command: str) -> Callable[[Sandbox], None]:
    @CASES
    @given(case=bad_trace())
    def prop(sandbox: Sandbox, case: BadTrace) -> None:
        check_trace_case(sandbox, command, case)

    return prop


test_forecast_trace = _property("forecast")
test_simulate_trace = _property("simulate serving")
test_plan_forecast_trace = _property("plan --forecast")
test_replay_trace = _property("replay --trace")
