"""Weighted-share data-parallel trainer (torch.distributed, gloo over loopback).

DDP averages gradients with equal weight per rank. Rank ``i`` holding ``b_i`` of a
global batch ``B`` on ``W`` ranks therefore scales its mean loss by ``b_i · W / B``:
the all-reduced average then equals the gradient of the mean loss over the global
batch, i.e. single-process training (:func:`loss_scale`).

Pure parts: :func:`loss_scale`, :func:`rank_offsets`, :func:`step_indices` (which samples
a step uses, identical on every rank, so a resumed run continues the same sequence).
Effects: :func:`worker_main` (one rank, run as ``python -m edgewise.retrain.trainer``),
:func:`grad_check` (spawns ranks to compare gradients with single-process training).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from edgewise.retrain.checkpoint import load_checkpoint, save_checkpoint


def loss_scale(share: int, world: int, global_batch: int) -> float:
    """Factor on a rank's mean loss so DDP's equal-weight average is the global mean."""
    return share * world / global_batch


def rank_offsets(shares: list[int]) -> list[int]:
    """Start of each rank's slice inside the global batch."""
    return [int(v) for v in np.concatenate([[0], np.cumsum(shares)[:-1]])]


def step_indices(n_samples: int, global_batch: int, step: int, seed: int) -> np.ndarray:
    """Sample indices of global step ``step``: epoch-wise permutations, last partial batch dropped."""
    per_epoch = max(1, n_samples // global_batch)
    epoch, pos = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n_samples)
    if n_samples < global_batch:
        perm = np.resize(perm, global_batch)
    return perm[pos * global_batch : (pos + 1) * global_batch]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent exits (no orphans)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass
class RankConfig:
    """What one rank needs: its device, share and intensity."""

    device: str
    share: int
    threads: int = 1
    nice: int = 0


@dataclass
class TrainJobConfig:
    """One incarnation of a training group (serialised to JSON for the workers)."""

    model: str
    data: str
    drift: str
    seed: int
    global_batch: int
    total_steps: int
    ranks: list[RankConfig]
    port: int
    workdir: str
    lr: float = 0.05
    checkpoint_every: int = 10
    timeout_s: float = 5.0
    start_step: int = 0
    resume_from: str | None = None
    init_weights: str | None = None
    generation: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def world(self) -> int:
        return len(self.ranks)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> TrainJobConfig:
        raw = json.loads(text)
        raw["ranks"] = [RankConfig(**r) for r in raw["ranks"]]
        return cls(**raw)


def load_task(data: str, drift: str, seed: int) -> Any:
    """The drift splits of data set ``data`` ('digits' or 'lfw')."""
    from edgewise.workloads.datasets import make_drift_splits

    return make_drift_splits(dataset=data, drift=drift, seed=seed)


def build_module(model: str, seed: int, num_classes: int) -> nn.Module:
    """A trainable zoo module (train mode)."""
    from edgewise.workloads.zoo import build_model

    module = build_model(model, seed=seed, num_classes=num_classes).module
    module.train()
    return module


def accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy of ``module`` on ``(x, y)``."""
    from edgewise.workloads.zoo import logits_of

    was = module.training
    module.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            out = logits_of(module(x[i : i + batch]))
            correct += int((out.argmax(dim=1) == y[i : i + batch]).sum())
    module.train(was)
    return correct / max(1, len(y))


def _num_classes(task: Any) -> int:
    return int(max(int(task.base_train[1].max()), int(task.drift_train[1].max())) + 1)


def train_base(model: str, data: str, drift: str, seed: int, epochs: int = 8) -> dict[str, Any]:
    """Train the deployed model on the base split (single process); returns its state dict."""
    task = load_task(data, drift, seed)
    torch.manual_seed(seed)
    module = build_module(model, seed, _num_classes(task))
    x, y = task.base_train
    opt = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    steps = epochs * max(1, len(y) // 64)
    for s in range(steps):
        idx = torch.as_tensor(step_indices(len(y), 64, s, seed))
        opt.zero_grad()
        loss_fn(module(x[idx]), y[idx]).backward()
        opt.step()
    return {k: v.clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------- worker


def apply_intensity(threads: int, nice: int) -> None:
    """Set this process's torch threads and OS priority (root may also lower nice)."""
    torch.set_num_threads(max(1, threads))
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, nice)


def live_plan_path(workdir: Path, generation: int, version: int | None = None) -> Path:
    """The pointer file of a generation's live plan, or the file of one version."""
    if version is None:
        return Path(workdir) / f"live-plan-g{generation}.json"
    return Path(workdir) / f"live-plan-g{generation}-v{version}.json"


def write_live_plan(workdir: Path, generation: int, version: int, ranks: list[RankConfig]) -> None:
    """Publish new shares/intensities for a running group (versioned file, then pointer)."""
    body = json.dumps([asdict(r) for r in ranks])
    final = live_plan_path(workdir, generation, version)
    tmp = final.with_suffix(".tmp")
    tmp.write_text(body)
    os.replace(tmp, final)
    ptr = live_plan_path(workdir, generation)
    tmp = ptr.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": version}))
    os.replace(tmp, ptr)


def read_live_version(workdir: Path, generation: int) -> int:
    """Latest published live-plan version (0: none)."""
    try:
        return int(json.loads(live_plan_path(workdir, generation).read_text())["version"])
    except (OSError, ValueError, KeyError):
        return 0


def read_live_plan(workdir: Path, generation: int, version: int) -> list[RankConfig]:
    """The ranks of one published live-plan version."""
    raw = json.loads(live_plan_path(workdir, generation, version).read_text())
    return [RankConfig(**r) for r in raw]


def _append(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def worker_main(config_path: str, rank: int) -> int:
    """Run one rank of the group described by ``config_path`` until done or failure.

    Rank 0 checkpoints every ``checkpoint_every`` steps (atomically) and writes the
    final weights. Every rank appends one JSON line per step to
    ``<workdir>/metrics-g<generation>-r<rank>.jsonl``. A dead peer surfaces as a gloo
    error within ``timeout_s``; the rank then exits with code 3.
    """
    die_with_parent()
    cfg = TrainJobConfig.from_json(Path(config_path).read_text())
    me = cfg.ranks[rank]
    apply_intensity(me.threads, me.nice)
    work = Path(cfg.workdir)
    metrics = work / f"metrics-g{cfg.generation}-r{rank}.jsonl"
    task = load_task(cfg.data, cfg.drift, cfg.seed)
    x, y = task.drift_train
    torch.manual_seed(cfg.seed)
    module = build_module(cfg.model, cfg.seed, _num_classes(task))
    opt = torch.optim.SGD(module.parameters(), lr=cfg.lr, momentum=0.9)
    step = cfg.start_step
    if cfg.resume_from:
        ck = load_checkpoint(Path(cfg.resume_from))
        module.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step = int(ck["step"])
    elif cfg.init_weights:
        module.load_state_dict(torch.load(cfg.init_weights, map_location="cpu"))
    from edgewise.retrain.devices import join_device_group

    join_device_group()
    # start-up (imports, data) can be slow on a throttled device: meet on files first,
    # so that the short gloo timeout only has to cover the connection itself
    (work / f"ready-g{cfg.generation}-r{rank}").write_text("1")
    give_up = time.time() + float(cfg.extra.get("startup_timeout_s", 120.0))
    while not all((work / f"ready-g{cfg.generation}-r{r}").exists() for r in range(cfg.world)):
        if time.time() > give_up:
            print(f"rank {rank}: peers did not start in time", file=sys.stderr)
            return 3
        time.sleep(0.02)
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{cfg.port}",
            rank=rank,
            world_size=cfg.world,
            timeout=timedelta(seconds=cfg.timeout_s),
        )
    except Exception as err:  # peer never came: report and leave
        print(f"rank {rank}: rendezvous failed: {err}", file=sys.stderr)
        return 3
    ddp = nn.parallel.DistributedDataParallel(module)
    loss_fn = nn.CrossEntropyLoss()
    shares = [r.share for r in cfg.ranks]
    offset = rank_offsets(shares)[rank]
    scale = loss_scale(me.share, cfg.world, cfg.global_batch)
    live = bool(cfg.extra.get("live_plan", False))
    version = torch.zeros(1, dtype=torch.int64)
    plan_version = 0
    _append(metrics, {"event": "start", "rank": rank, "step": step, "t": time.time()})
    try:
        while step < cfg.total_steps:
            if live:
                # re-plans take effect at a step boundary, on every rank at once
                version[0] = read_live_version(work, cfg.generation) if rank == 0 else 0
                dist.broadcast(version, 0)
                if int(version[0]) > plan_version:
                    plan_version = int(version[0])
                    ranks = read_live_plan(work, cfg.generation, plan_version)
                    me = ranks[rank]
                    apply_intensity(me.threads, me.nice)
                    shares = [r.share for r in ranks]
                    offset = rank_offsets(shares)[rank]
                    scale = loss_scale(me.share, cfg.world, cfg.global_batch)
            t0 = time.time()
            idx = step_indices(len(y), cfg.global_batch, step, cfg.seed)
            # a rank with share 0 stays in the group: a 2-sample pass weighted by 0
            mine = torch.as_tensor(idx[offset : offset + me.share] if me.share else idx[:2])
            opt.zero_grad()
            loss = loss_fn(ddp(x[mine]), y[mine]) * scale
            loss.backward()
            opt.step()
            step += 1
            _append(
                metrics,
                {
                    "event": "step",
                    "rank": rank,
                    "device": me.device,
                    "step": step,
                    "t0": t0,
                    "t": time.time(),
                    "loss": float(loss.detach()) / scale if scale else 0.0,
                    "share": me.share,
                    "threads": me.threads,
                    "nice": me.nice,
                    "plan_version": plan_version,
                },
            )
            if rank == 0 and (step % cfg.checkpoint_every == 0 or step == cfg.total_steps):
                save_checkpoint(
                    work / "checkpoints",
                    step,
                    {"model": module.state_dict(), "optimizer": opt.state_dict()},
                )
        if rank == 0:
            tmp = work / "final.pt.tmp"
            torch.save(module.state_dict(), tmp)
            os.replace(tmp, work / "final.pt")
        dist.barrier()
    except Exception as err:
        print(f"rank {rank} ({me.device}): group failed at step {step}: {err}", file=sys.stderr)
        return 3
    finally:
        with contextlib.suppress(Exception):
            dist.destroy_process_group()
    _append(metrics, {"event": "done", "rank": rank, "step": step, "t": time.time()})
    return 0


# ---------------------------------------------------------------- gradient check


def _grad_rank(rank: int, world: int, port: int, shares: list[int], seed: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=20),
    )
    module, x, y = _grad_problem(seed, sum(shares))
    ddp = nn.parallel.DistributedDataParallel(module)
    lo = rank_offsets(shares)[rank]
    sl = slice(lo, lo + shares[rank])
    loss = nn.functional.cross_entropy(ddp(x[sl]), y[sl]) * loss_scale(
        shares[rank], world, sum(shares)
    )
    loss.backward()
    if rank == 0:
        torch.save([p.grad.detach().clone() for p in module.parameters()], out)
    dist.barrier()
    dist.destroy_process_group()


def _grad_problem(seed: int, batch: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    from edgewise.workloads.zoo import build_model

    module = build_model("digits_cnn", seed=seed).module.double().train()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, 1, 32, 32), generator=gen, dtype=torch.float64)
    y = torch.randint(0, 10, (batch,), generator=gen)
    return module, x, y


def grad_check(shares: list[int], seed: int = 0) -> float:
    """Max abs difference between weighted-share DDP and single-process gradients.

    Spawns ``len(shares)`` gloo ranks on loopback (float64 digits_cnn, random inputs).
    """
    import tempfile

    import torch.multiprocessing as tmp_mp

    module, x, y = _grad_problem(seed, sum(shares))
    nn.functional.cross_entropy(module(x), y).backward()
    ref = [p.grad.detach().clone() for p in module.parameters()]
    with tempfile.TemporaryDirectory() as d:
        out = str(Path(d) / "grads.pt")
        tmp_mp.spawn(
            _grad_rank,
            args=(len(shares), free_port(), shares, seed, out),
            nprocs=len(shares),
            join=True,
        )
        got = torch.load(out)
    return float(max((a - b).abs().max() for a, b in zip(ref, got, strict=True)))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    return worker_main(args[0], int(args[1]))


if __name__ == "__main__":
    sys.exit(main())
