"""``edgewise demo``: the three pillars end to end on embedded defaults, in minutes.

1. profile: a short interference campaign for ``digits_cnn`` (the app behind the
   replayed service), with its error on held-out stress mixes
   (:mod:`edgewise.demo.pillars`);
2. serve: forecast the bike-share trace, derate the capacity probed through the live HTTP
   path by the predicted slowdown next to a neighbour, and replay a compressed day live
   on Ray Serve with our autoscaler and the HPA baseline (:mod:`edgewise.demo.pillars`);
3. your model: a digits classifier trained on real scans, exported, registered and
   served; drift lowers its served accuracy; it is re-trained on three emulated devices
   (one killed mid-run) into the next version, rolled out on the running service behind
   the gate, and the served accuracy recovers (:mod:`edgewise.demo.ownloop`);
4. a one-screen summary (:mod:`edgewise.demo.summary`), and everything in the knowledge
   base for ``edgewise report``.

Orchestration only: every step calls the same use cases as the CLI commands.
"""

from __future__ import annotations

import time

from rich.console import Console

from edgewise.demo.summary import DemoSummary, print_summary, step

__all__ = ["DemoSummary", "print_summary", "run_demo"]


def run_demo(seed: int = 0, console: Console | None = None) -> DemoSummary:
    """Run the demo's steps in order and return their summary.

    Parameters
    ----------
    seed : int
        Seed of every random choice.
    console : Console, optional
        Progress output (default: stderr).

    Returns
    -------
    DemoSummary
        One row per step with its figure, and the seconds each part took.
    """
    from edgewise.demo.ownloop import run_own_model
    from edgewise.demo.pillars import APP, NEIGHBOUR, predicted_slowdown, run_profile, run_serve
    from edgewise.kb import KnowledgeBase

    console = console or Console(stderr=True)
    kb = KnowledgeBase.open()
    summary = DemoSummary()
    t = time.perf_counter()
    step(console, f"1/3 profile: how slow does {APP} get next to other work?")
    run_profile(kb, console, summary, seed)
    slowdown, source = predicted_slowdown(kb)
    console.print(
        f"predicted p50 slowdown of {APP} next to {NEIGHBOUR}: x{slowdown:.2f} ({source})"
    )
    summary.add(
        "profile", f"predicted p50 slowdown next to {NEIGHBOUR} ({source})", f"x{slowdown:.2f}"
    )
    summary.timings["profile"] = time.perf_counter() - t
    t = time.perf_counter()
    step(console, "2/3 serve: forecast, plan, replay a day live on Ray Serve")
    run_serve(kb, console, summary, seed)
    summary.timings["serve"] = time.perf_counter() - t
    step(console, "3/3 your model: train, serve, drift, re-train on the devices, roll out")
    run_own_model(kb, console, summary, seed)
    return summary
