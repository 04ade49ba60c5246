"""A variant switch of the live controller is handed to its callback and recorded.

The controller knows nothing of the knowledge base: ``edgewise serve`` passes it the
:class:`~edgewise.api.served.ServedRecorder`'s ``switched``, which records ``variant
switched`` in ``served_versions``. Fakes on a virtual clock, a SQLite knowledge base.
"""

from __future__ import annotations

from pathlib import Path

from test_controller_pool import LARGE, SMALL, FakePoolRuntime, ScriptedPolicy, _decision

from edgewise.api.served import recorded_serving
from edgewise.clock import VirtualClock
from edgewise.kb import KnowledgeBase
from edgewise.kb.served import served_history
from edgewise.serving.controller import LiveController


def _controller(script: list, on_variant: object) -> LiveController:
    clock = VirtualClock(0.0)
    return LiveController(
        FakePoolRuntime(clock),
        ScriptedPolicy(script),
        (LARGE, SMALL),
        variant="resnet50",
        slo_ms=100,
        clock=clock,
        startup_s=5,
        on_variant=on_variant,  # type: ignore[arg-type]
    )


def test_each_switch_is_handed_to_the_callback_once() -> None:
    seen: list[str] = []
    script = [
        _decision(1, 0),
        _decision(1, 0, "mobilenet_v2"),
        _decision(1, 0, "mobilenet_v2"),
        _decision(1, 0, "resnet50"),
    ]
    ctl = _controller(script, seen.append)
    ctl.start_pool({"large": 1})
    res = ctl.run(40.0)
    assert seen == ["mobilenet_v2", "resnet50"] and res.variant_switches == 2


def test_serving_records_the_switches_between_start_and_stop(tmp_path: Path) -> None:
    kb = KnowledgeBase.open(f"sqlite:///{tmp_path / 'kb.sqlite'}")
    script = [_decision(1, 0), _decision(1, 0, "mobilenet_v2")]
    with recorded_serving(kb, "svc", "resnet50") as served:
        ctl = _controller(script, served.switched)
        ctl.start_pool({"large": 1})
        ctl.run(20.0)
    first, second = served_history(kb, "svc")
    assert (first.served.ref, first.started_because, first.ended_because) == (
        "resnet50",
        "serve started",
        "variant switched",
    )
    assert (second.served.ref, second.started_because, second.ended_because) == (
        "mobilenet_v2",
        "variant switched",
        "stopped",
    )
    assert first.until == second.since and second.until is not None
