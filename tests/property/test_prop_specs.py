"""Malformed spec files through every command that takes one: one line, exit 2, no trace.

Each case is checked against the loader first, so that a case the loader accepted could
never start a campaign, a training job or a Ray cluster here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from propkit import CASES, GOOD_FLAVORS, GOOD_SERVICE, Sandbox
from specgen import DEVICES, FLAVORS, SERVICE, SPACE, BadFile, SpecKind, bad_spec

from edgewise.config import load_devices, load_flavors, load_service, load_stress_space
from edgewise.errors import SpecError

Args = Callable[[Path], list[str]]

COMMANDS: dict[str, tuple[SpecKind, Callable[[Path], Any], Args]] = {
    "plan --service": (
        SERVICE,
        load_service,
        lambda f: ["plan", "--service", str(f), "--flavors", str(GOOD_FLAVORS), "--rate", "4"],
    ),
    "serve SERVICE": (SERVICE, load_service, lambda f: ["serve", str(f), "--seconds", "1"]),
    "plan --flavors": (
        FLAVORS,
        load_flavors,
        lambda f: ["plan", "--service", str(GOOD_SERVICE), "--flavors", str(f), "--rate", "4"],
    ),
    "capacity --flavors": (
        FLAVORS,
        load_flavors,
        lambda f: ["capacity", "digits_cnn", "--flavors", str(f), "--slo-ms", "100"],
    ),
    "serve --flavors": (
        FLAVORS,
        load_flavors,
        lambda f: ["serve", str(GOOD_SERVICE), "--flavors", str(f), "--seconds", "1"],
    ),
    "retrain --devices": (DEVICES, load_devices, lambda f: ["retrain", "--devices", str(f)]),
    "profile --space": (
        SPACE,
        load_stress_space,
        lambda f: ["profile", "digits_cnn", "--space", str(f), "--budget", "1"],
    ),
}


def check_spec_case(sandbox: Sandbox, command: str, case: BadFile) -> None:
    """Write ``case``, make sure the loader refuses it, then run ``command`` on it."""
    _, loader, args = COMMANDS[command]
    f = sandbox.write("BAD-spec.yaml", case.content)
    with pytest.raises(SpecError):  # never run a command on a file the loader accepts
        loader(f)
    sandbox.check_rejected(args(f), (str(f), *case.names))


def _property(command: str) -> Callable[[Sandbox], None]:
    kind = COMMANDS[command][0]

    @CASES
    @given(case=bad_spec(kind))
    def prop(sandbox: Sandbox, case: BadFile) -> None:
        check_spec_case(sandbox, command, case)

    return prop


test_plan_service = _property("plan --service")
test_serve_service = _property("serve SERVICE")
test_plan_flavors = _property("plan --flavors")
test_capacity_flavors = _property("capacity --flavors")
test_serve_flavors = _property("serve --flavors")
test_retrain_devices = _property("retrain --devices")
test_profile_space = _property("profile --space")
