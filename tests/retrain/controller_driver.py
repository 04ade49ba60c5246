"""A controller process for the orphan tests: trains on two emulated devices.

``python controller_driver.py WORKDIR STEPS [--resume]``: writes the pids of every child
of the pool to ``WORKDIR/pids`` at each step, and ``WORKDIR/result.json`` at the end.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgewise.config import BackgroundApp, DeviceSpec
from edgewise.planning.retrain import (
    DeviceProfile,
    DeviceState,
    Intensity,
    RetrainConstraints,
    plan,
)
from edgewise.retrain.controller import JobSpec, run_training
from edgewise.retrain.devices import EmulatedPool


def main() -> None:
    work = Path(sys.argv[1])
    steps = int(sys.argv[2])
    resume = "--resume" in sys.argv
    specs = [
        DeviceSpec(name="a", cpus=1.0, background=BackgroundApp(rate_rps=5, deadline_ms=500)),
        DeviceSpec(name="b", cpus=0.5),
    ]
    states = [DeviceState(s.name, s.cpus, 1024.0) for s in specs]
    profiles = {s.name: DeviceProfile(s.name, (Intensity(1, 0, 500.0),)) for s in specs}
    job = JobSpec(
        "digits_cnn",
        "digits",
        "rotation",
        0,
        total_steps=steps,
        workdir=work / "job",
        checkpoint_every=2,
    )
    pids = work / "pids"
    with EmulatedPool(specs, work / "pool") as pool:

        def seen(step: int, _total: int) -> None:
            with open(pids, "a") as fh:
                fh.write("".join(f"{p}\n" for p in pool.pids()))
                fh.flush()

        res = run_training(
            pool,
            states,
            profiles,
            RetrainConstraints(global_batch=32),
            job,
            plan,
            on_step=seen,
            resume=resume,
        )
    first = min(int(s["step"]) for s in res.steps)
    (work / "result.json").write_text(json.dumps({"final": res.final_step, "first": first}))


if __name__ == "__main__":
    main()
