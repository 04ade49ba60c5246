"""The demo's own-model loop: your model served, drift, re-training on the devices, rollout.

1. train a small digits classifier on real scans (:mod:`edgewise.demo.owndata`), export it
   in its trainable form and register it (``demo-digits:vN``);
2. serve it on Ray Serve and measure its accuracy through HTTP: labelled PNGs to
   ``/predict``, the answer's top label against the label, on clean held-out digits and
   on drifted (turned) ones; the drift lowers it;
3. re-train it on the emulated devices on a folder of drifted images (a device killed
   mid-run): the registry gets ``demo-digits:v(N+1)`` with its lineage;
4. roll the running service out to the new version behind the SLO and accuracy gate,
   clients sending labelled drifted digits meanwhile: the gate promotes it;
5. measure the served accuracy on the drifted digits again: it recovers.

Each step adds a row with its figure to the summary. Orchestration only: registering,
re-training and the rollout are the use cases the CLI calls (``models add``,
``retrain``, ``rollout``); the service is the serving runtime on loopback, its state in
``$EDGEWISE_HOME``, and the knowledge base records which version it served when, as for
``edgewise serve`` (:func:`edgewise.api.served.recorded_serving`). HTTP measurement is :func:`served_accuracy`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from edgewise.demo.owndata import ANGLE_DEG, ARCH, DigitsFolders
from edgewise.demo.summary import DemoSummary

__all__ = ["LoopOutcome", "LoopSettings", "ServedAccuracy", "run_own_model", "served_accuracy"]

MODEL_NAME = "demo-digits"
"""The registry name of the user's model, and the service's name."""
SLO_MS = 100.0
PERCENTILE = 95.0


@dataclass(frozen=True)
class LoopSettings:
    """Sizes of the loop; the defaults are the demo's, a test passes smaller ones.

    Attributes
    ----------
    epochs : int
        Passes of the first training over the clean folder.
    steps, global_batch : int
        The re-training job on the devices.
    devices : Path or None
        Devices YAML (default: the three heterogeneous devices of the examples).
    kill_at_step : int or None
        Kill ``kill_device`` at this step of the re-training (``None``: no kill).
    kill_device : str
        The device killed.
    canary_share, min_requests : float, int
        The rollout gate's traffic share and the canary answers it judges on (at least
        the gate's ``min_labelled``, 30, so that it judges accuracy by the labels the
        clients send rather than by agreement with the old version, which a better
        version must lack on drifted data).
    port : int
        HTTP port of the service (loopback; default 0: one free once Ray is up).
    """

    epochs: int = 8
    steps: int = 24
    global_batch: int = 128
    devices: Path | None = None
    kill_at_step: int | None = 10
    kill_device: str = "pi-c"
    canary_share: float = 0.2
    min_requests: int = 50
    port: int = 0


@dataclass(frozen=True)
class ServedAccuracy:
    """Accuracy of the service's answers to labelled images, and who answered them."""

    accuracy: float
    requests: int
    answered_by: tuple[str, ...]
    """``NAME:vN`` of the versions that answered, sorted."""

    def words(self) -> str:
        """``0.912 (180 requests, demo-digits:v1)``."""
        return f"{self.accuracy:.3f} ({self.requests} requests, {', '.join(self.answered_by)})"


@dataclass(frozen=True)
class LoopOutcome:
    """What the loop did: the versions and the served accuracy at each point.

    ``v2``, ``promoted`` and ``drift_after`` are what a re-training that registered
    nothing or a rolled-back rollout leaves (``None``, ``False``, the old version's).
    """

    v1: str
    clean: ServedAccuracy
    drift_before: ServedAccuracy
    drift_after: ServedAccuracy
    v2: str | None = None
    promoted: bool = False
    rollout_reason: str = ""


def _labelled_images(folder: Path) -> Iterator[tuple[bytes, str]]:
    """``(PNG bytes, label)`` for every image of a folder with one sub-folder per class."""
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for image in sorted(sub.glob("*.png")):
            yield image.read_bytes(), sub.name


def _post(client: Any, url: str, body: bytes, label: str) -> Any:
    return client.post(url, content=body, headers={"content-type": "image/png", "x-label": label})


def served_accuracy(url: str, folder: Path) -> ServedAccuracy:
    """Send every image of ``folder`` to ``url`` (``/predict``) with its label; score answers.

    Parameters
    ----------
    url : str
        The service's ``/predict`` URL.
    folder : Path
        One sub-folder per class, named by the model's labels.

    Returns
    -------
    ServedAccuracy
        Share of answers whose top label is the image's, over every image sent.

    Raises
    ------
    EnvironmentProblem
        If the service does not answer a request with 200.
    """
    import httpx

    from edgewise.errors import EnvironmentProblem

    right, sent, versions = 0, 0, set()
    with httpx.Client(timeout=30) as client:
        for body, label in _labelled_images(folder):
            resp = _post(client, url, body, label)
            if resp.status_code != 200:
                raise EnvironmentProblem(f"{url} answered {resp.status_code}: {resp.text[:200]}")
            doc = resp.json()
            right += int(doc["top"][0][0]["label"] == label)
            sent += 1
            versions.add(f"{doc['model']}:v{doc['version']}")
    return ServedAccuracy(right / max(sent, 1), sent, tuple(sorted(versions)))


def _devices(settings: LoopSettings) -> Path:
    if settings.devices is not None:
        return settings.devices
    devices = Path(__file__).resolve().parents[3] / "examples" / "devices-hetero.yaml"
    if devices.exists():
        return devices
    from edgewise.paths import data_file

    return data_file("devices-hetero.yaml")


def _register_v1(
    kb: Any, folders: DigitsFolders, pixels: Any, summary: DemoSummary, s: LoopSettings, seed: int
) -> str:
    """Train on the clean folder, export the trainable form, register it: ``NAME:vN``."""
    from edgewise.api.models import add_model
    from edgewise.demo.owndata import export_trained, train_classifier

    trained = train_classifier(folders, pixels, epochs=s.epochs, seed=seed)
    exported = export_trained(trained, folders.clean_train.parent / "exported-v1")
    version = add_model(name=MODEL_NAME, path=exported, kb=kb)
    summary.add(
        "model",
        f"{ARCH} trained on real digits ({s.epochs} epochs, held-out accuracy)",
        f"{trained.held_out_accuracy:.3f} in {trained.train_s:.1f} s",
    )
    summary.add("model", "exported (safetensors + card) and registered", version.ref)
    return version.ref


def _retrain(
    kb: Any, v1: str, folders: DigitsFolders, console: Console, s: LoopSettings, seed: int
) -> Any:
    """Re-train ``v1`` on the emulated devices on the drifted folder; the finished job."""
    from edgewise.api.retrain import retrain

    kill = (s.kill_at_step, s.kill_device) if s.kill_at_step is not None else (None, None)
    with console.status("re-training") as status:
        result = retrain(
            devices=_devices(s),
            model=v1,
            data=str(folders.drift_train),
            steps=s.steps,
            global_batch=s.global_batch,
            kill_at_step=kill[0],
            kill_device=kill[1],
            seed=seed,
            kb=kb.url,
            progress=lambda phase, done, total: status.update(f"re-training: {phase}"),
        )
    return result.job


def _summarise_retrain(summary: DemoSummary, job: Any, s: LoopSettings) -> None:
    summary.add(
        "retrain",
        f"re-trained on {len(job.plan.shares)} emulated devices: held-out drifted accuracy",
        f"{job.accuracy_before:.3f} -> {job.accuracy_after:.3f}",
    )
    summary.add("retrain", "registered with its lineage", f"{job.registered} (parent {job.parent})")
    if s.kill_at_step is not None and job.recovery_s is not None:
        summary.add(
            "retrain",
            f"device {s.kill_device} killed at step {s.kill_at_step}: recovery (s)",
            f"{job.recovery_s:.1f}",
        )
    bg = job.background
    kept = sum(1 for v in bg.values() if v.p99_ms <= v.deadline_ms)
    summary.add("retrain", "background apps within deadline (p99)", f"{kept} / {len(bg)}")


def _service_file(root: Path) -> Path:
    """The service YAML the rollout reads (its name and SLO).

    Its ``model`` is the architecture: service files name zoo models only, and the
    running service was started on the registered version (its record names it).
    """
    import yaml

    path = root / "service.yaml"
    doc = {
        "name": MODEL_NAME,
        "model": ARCH,
        "slo": {"latency_ms": SLO_MS, "percentile": PERCENTILE},
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _rollout(kb: Any, url: str, v2: str, folder: Path, s: LoopSettings) -> tuple[Any, int, int]:
    """Roll the service out to ``v2`` while a client sends labelled images from ``folder``.

    Returns the rollout's result, the requests sent meanwhile and how many failed.
    """
    import httpx

    from edgewise.api.rollout import rollout

    images = list(_labelled_images(folder))
    stop = threading.Event()
    counts = {"sent": 0, "failed": 0}

    def traffic() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                for body, label in images:
                    if stop.is_set():
                        break
                    counts["sent"] += 1
                    counts["failed"] += int(_post(client, url, body, label).status_code != 200)

    thread = threading.Thread(target=traffic, name="demo-clients", daemon=True)
    thread.start()
    try:
        result = rollout(
            service=_service_file(folder.parent),
            to=v2,
            canary_share=s.canary_share,
            min_requests=s.min_requests,
            kb=kb.url,
        )
    finally:
        stop.set()
        thread.join(timeout=60)
    return result, counts["sent"], counts["failed"]


def _serve_config(v1: str, kb: Any, s: LoopSettings) -> Any:
    from edgewise.serving.runtime import RuntimeConfig

    return RuntimeConfig(
        model=v1,
        app=MODEL_NAME,
        cpus_per_replica=1.0,
        initial_replicas=1,
        max_replicas=1,
        port=s.port,
        num_cpus=2,
        kb=kb.url,
    )


def run_own_model(
    kb: Any,
    console: Console,
    summary: DemoSummary,
    seed: int,
    settings: LoopSettings | None = None,
) -> LoopOutcome:
    """Train, register, serve, drift, re-train, roll out and measure, one row per step.

    Parameters
    ----------
    kb : KnowledgeBase
        Where the model is registered and the jobs recorded.
    console : Console
        Progress output.
    summary : DemoSummary
        Receives the rows.
    seed : int
        Seed of the data split, the training and the re-training.
    settings : LoopSettings, optional
        Sizes (default: the demo's).

    Returns
    -------
    LoopOutcome
        The versions and the served accuracy before and after the loop.
    """
    import time

    from edgewise.api.served import recorded_serving
    from edgewise.demo.owndata import digits_parts, write_folders
    from edgewise.paths import home
    from edgewise.serving.runtime import ServingRuntime

    s = settings or LoopSettings()
    t = time.perf_counter()
    parts = digits_parts(seed)
    folders = write_folders(parts, home() / "demo" / "digits")
    v1 = _register_v1(kb, folders, parts.clean_train[0], summary, s, seed)
    with ServingRuntime(_serve_config(v1, kb, s)) as rt:
        rt.wait_for_replicas(1, timeout_s=180)
        # which version served when, as edgewise serve records it: v1 from now, v2 from
        # the promotion (recorded by the rollout), until the service stops
        with recorded_serving(kb, MODEL_NAME, v1):
            url = f"{rt.url}/predict"
            console.print(f"serving {v1} at {url}")
            clean = served_accuracy(url, folders.clean_test)
            before = served_accuracy(url, folders.drift_test)
            summary.add("serve", "served accuracy, clean held-out digits (HTTP)", clean.words())
            summary.add(
                "serve",
                f"served accuracy, digits turned {ANGLE_DEG:g} deg, before the loop (HTTP)",
                before.words(),
            )
            outcome = LoopOutcome(v1, clean, before, before)
            job = _retrain(kb, v1, folders, console, s, seed)
            _summarise_retrain(summary, job, s)
            if job.registered is None:
                return outcome
            result, sent, failed = _rollout(kb, url, job.registered, folders.drift_test, s)
            verdict = "promoted" if result.promoted else "rolled back"
            summary.add(
                "rollout",
                f"{job.registered}: canary {s.canary_share:.0%}, gate on p{PERCENTILE:g} "
                f"{SLO_MS:g} ms and labels",
                f"{verdict} in {result.load_s + result.canary_s + result.promote_s:.1f} s "
                f"({result.reason})",
            )
            summary.add(
                "rollout", "client requests during the rollout: failed", f"{failed} / {sent}"
            )
            after = served_accuracy(url, folders.drift_test)
    gain = 100 * (after.accuracy - before.accuracy)
    summary.add(
        "serve",
        f"served accuracy, digits turned {ANGLE_DEG:g} deg, after the loop (HTTP)",
        f"{after.words()}, {gain:+.1f} points",
    )
    summary.timings["own model"] = time.perf_counter() - t
    return LoopOutcome(v1, clean, before, after, job.registered, result.promoted, result.reason)
