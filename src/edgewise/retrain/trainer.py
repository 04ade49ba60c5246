"""Weighted-share data-parallel trainer (torch.distributed, gloo over loopback).

DDP (and :func:`allreduce_mean_grads`, which the workers use) averages gradients with
equal weight per rank. Rank ``i`` holding ``b_i`` of a
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
import json
import os
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

from edgewise.planning.retrain import min_max_shares
from edgewise.procs import die_with_parent, free_port
from edgewise.retrain.checkpoint import load_checkpoint, save_checkpoint
from edgewise.workloads.zoo import logits_of


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


def allreduce_mean_grads(
    params: list[torch.Tensor], world: int, extra: tuple[int, float] | None = None
) -> list[float]:
    """Replace every parameter's gradient by its mean over the group (what DDP does).

    One flat all-reduce per step instead of DDP's bucketed hooks: on a CPU-throttled
    device the overlap buys nothing, and a separate call lets the trainer time its
    compute and its communication apart (the planner's affine step model needs both).
    A parameter without a gradient contributes zeros. ``extra=(rank, value)`` also
    all-gathers one float per rank in the same message (returned, indexed by rank;
    empty without ``extra``).
    """
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    parts = [g.reshape(-1) for g in grads]
    if extra is not None:
        slots = torch.zeros(world, dtype=parts[0].dtype if parts else torch.float32)
        slots[extra[0]] = extra[1]
        parts.append(slots)
    flat = torch.cat(parts)
    if world > 1:
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    gathered = [float(v) for v in flat[flat.numel() - world :]] if extra is not None else []
    flat /= world
    pos = 0
    for p in params:
        n = p.numel()
        p.grad = flat[pos : pos + n].view_as(p).clone()
        pos += n
    return gathered


def broadcast_params(module: nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, 0)


@dataclass(frozen=True)
class BalanceState:
    """Smoothed per-rank compute rates (samples/s) of the ranks seen so far."""

    rates: tuple[float, ...] = ()
    steps: int = 0


def rebalance(
    shares: list[int],
    compute_s: list[float],
    state: BalanceState,
    global_batch: int,
    alpha: float = 0.5,
    min_gain: float = 0.03,
    warmup: int = 1,
) -> tuple[list[int] | None, BalanceState]:
    """Online share balancing from the compute times every rank just measured (pure).

    Each rank's compute rate ``share/compute_s`` is smoothed (EWMA, weight ``alpha``);
    after ``warmup`` steps, new shares minimise the predicted ``max share/rate`` over the
    ranks that hold a share (ranks at share 0 stay at 0: nothing is known of them). New
    shares are returned only when they cut the predicted compute time by more than
    ``min_gain`` (no churn on noise). Every rank calls this with the same all-reduced
    inputs, so every rank reaches the same shares.
    """
    now = [s / t if s > 0 and t > 0 else 0.0 for s, t in zip(shares, compute_s, strict=True)]
    if len(state.rates) != len(now):
        rates = now
    else:
        rates = [
            (alpha * n + (1 - alpha) * o) if n > 0 and o > 0 else (n or o)
            for n, o in zip(now, state.rates, strict=True)
        ]
    new_state = BalanceState(tuple(rates), state.steps + 1)
    active = [i for i, s in enumerate(shares) if s > 0]
    if new_state.steps <= warmup or len(active) < 2 or any(rates[i] <= 0 for i in active):
        return None, new_state
    theta = np.array([rates[i] for i in active])
    caps = np.full(len(active), global_batch, dtype=np.int64)
    b = min_max_shares(theta, caps, global_batch)
    if np.any(b < 1):  # keep every member busy: never starve a rank to zero here
        return None, new_state
    old_t = max(shares[i] / rates[i] for i in active)
    new_t = float(np.max(b / theta))
    if new_t >= old_t * (1.0 - min_gain):
        return None, new_state
    out = [0] * len(shares)
    for i, v in zip(active, b, strict=True):
        out[i] = int(v)
    return out, new_state


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
    max_grad_norm: float | None = 5.0
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


def is_tensor_file(data: str) -> bool:
    """Whether ``data`` names a job's tensor file (the user's data) rather than a data set."""
    return data.endswith(".pt") and Path(data).is_file()


def train_split(data: str, drift: str, seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The training split and the class count: the job's tensor file, or a data set's.

    A job on the user's own data hands its ranks a tensor file in the job directory
    (``x``, ``y``, ``num_classes``; read with ``weights_only``). A built-in data set's
    drifted split is cached under ``$EDGEWISE_HOME``: building it (upscaling and rotating
    every image) took about 7 s on a busy 2-core host, and a rank that restarts after a
    failure loads the cached tensors in milliseconds instead, most of ``recovery_s``.
    """
    from edgewise.paths import home

    if is_tensor_file(data):
        got = torch.load(data, map_location="cpu", weights_only=True)
        return got["x"], got["y"], int(got["num_classes"])
    path = home() / "retrain-cache" / f"train-{data}-{drift}-{seed}.pt"
    with contextlib.suppress(Exception):
        got = torch.load(path, map_location="cpu")
        return got["x"], got["y"], int(got["num_classes"])
    task = load_task(data, drift, seed)
    x, y = task.drift_train
    n = _num_classes(task)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"x": x, "y": y, "num_classes": n}, tmp)
    os.replace(tmp, path)
    return x, y, n


def build_module(model: str, seed: int, num_classes: int) -> nn.Module:
    """A trainable module in train mode: a zoo model, or the user's trainable form.

    A name outside the zoo is a trainable reference (a Hugging Face directory, or
    safetensors with an architecture) loaded with its own weights and head.
    """
    from edgewise.config import MODEL_NAMES

    if model in MODEL_NAMES:
        from edgewise.workloads.zoo import build_model

        module = build_model(model, seed=seed, num_classes=num_classes).module
    else:
        from edgewise.registry import trainable_module

        module = trainable_module(model)[0]
    module.train()
    return module


def accuracy(module: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Top-1 accuracy of ``module`` on ``(x, y)``."""
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


@dataclass
class _RankShare:
    """What one rank trains on each step: its config, the shares, its slice and loss scale."""

    me: RankConfig
    shares: list[int]
    offset: int
    scale: float
    bstate: BalanceState = field(default_factory=BalanceState)

    @classmethod
    def of(
        cls, ranks: list[RankConfig], rank: int, me: RankConfig, global_batch: int
    ) -> _RankShare:
        shares = [r.share for r in ranks]
        return cls(
            me,
            shares,
            rank_offsets(shares)[rank],
            loss_scale(me.share, len(ranks), global_batch),
        )

    def reshare(self, shares: list[int], rank: int, global_batch: int) -> None:
        """New shares from the in-loop rebalancer (same ranks, same intensities)."""
        self.shares = shares
        self.me = RankConfig(self.me.device, shares[rank], self.me.threads, self.me.nice)
        self.offset = rank_offsets(shares)[rank]
        self.scale = loss_scale(self.me.share, len(shares), global_batch)


def _restore(cfg: TrainJobConfig, module: nn.Module, opt: torch.optim.Optimizer) -> int:
    """Load the checkpoint or initial weights the job starts from; the first step."""
    if cfg.resume_from:
        ck = load_checkpoint(Path(cfg.resume_from))
        module.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        return int(ck["step"])
    if cfg.init_weights:
        module.load_state_dict(torch.load(cfg.init_weights, map_location="cpu"))
    return cfg.start_step


def _meet_peers(cfg: TrainJobConfig, rank: int, work: Path) -> bool:
    """Wait for every rank's ready file, then join the gloo group; False on failure."""
    # start-up (imports, data) can be slow on a throttled device: meet on files first,
    # so that the short gloo timeout only has to cover the connection itself
    (work / f"ready-g{cfg.generation}-r{rank}").write_text("1")
    give_up = time.time() + float(cfg.extra.get("startup_timeout_s", 120.0))
    while not all((work / f"ready-g{cfg.generation}-r{r}").exists() for r in range(cfg.world)):
        if time.time() > give_up:
            print(f"rank {rank}: peers did not start in time", file=sys.stderr)
            return False
        time.sleep(0.02)
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://{cfg.extra.get('master_addr', '127.0.0.1')}:{cfg.port}",
            rank=rank,
            world_size=cfg.world,
            timeout=timedelta(seconds=cfg.timeout_s),
        )
    except Exception as err:  # peer never came: report and leave
        print(f"rank {rank}: rendezvous failed: {err}", file=sys.stderr)
        return False
    return True


def _follow_live_plan(
    cfg: TrainJobConfig, rank: int, work: Path, plan_version: int, cur: _RankShare
) -> tuple[int, _RankShare]:
    """Adopt a newer published plan at this step boundary, on every rank at once."""
    version = torch.zeros(1, dtype=torch.int64)
    version[0] = read_live_version(work, cfg.generation) if rank == 0 else 0
    dist.broadcast(version, 0)
    if int(version[0]) <= plan_version:
        return plan_version, cur
    ranks = read_live_plan(work, cfg.generation, int(version[0]))
    apply_intensity(ranks[rank].threads, ranks[rank].nice)
    return int(version[0]), _RankShare.of(ranks, rank, ranks[rank], cfg.global_batch)


def _step(
    cfg: TrainJobConfig,
    rank: int,
    step: int,
    cur: _RankShare,
    model: tuple[nn.Module, torch.optim.Optimizer, list[torch.Tensor]],
    data: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, Any]:
    """One data-parallel step of this rank; the step's metrics record."""
    module, opt, params = model
    x, y = data
    t0 = time.time()
    idx = step_indices(len(y), cfg.global_batch, step, cfg.seed)
    me, step_shares = cur.me, cur.shares
    # a rank with share 0 stays in the group: a 2-sample pass weighted by 0
    mine = torch.as_tensor(idx[cur.offset : cur.offset + me.share] if me.share else idx[:2])
    opt.zero_grad()
    raw = nn.functional.cross_entropy(logits_of(module(x[mine])), y[mine])
    (raw * cur.scale).backward()
    t_fb = time.time()
    if cfg.extra.get("rebalance", False):
        # every rank's compute time rides on the gradient all-reduce (slot = rank)
        times = allreduce_mean_grads(params, cfg.world, extra=(rank, t_fb - t0))
        new, cur.bstate = rebalance(cur.shares, times, cur.bstate, cfg.global_batch)
        if new is not None:
            cur.reshare(new, rank, cfg.global_batch)
    else:
        allreduce_mean_grads(params, cfg.world)
    if cfg.max_grad_norm is not None:
        # every rank holds the same averaged gradient, so every rank clips alike
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
    t_ar = time.time()
    opt.step()
    return {
        "event": "step",
        "rank": rank,
        "device": me.device,
        "step": step + 1,
        "t0": t0,
        "t_fb": t_fb,
        "t_ar": t_ar,
        "t": time.time(),
        "loss": float(raw.detach()) if step_shares[rank] else 0.0,
        "share": step_shares[rank],
        "threads": me.threads,
        "nice": me.nice,
    }


def worker_main(config_path: str, rank: int) -> int:
    """Run one rank of the group described by ``config_path`` until done or failure.

    Rank 0 checkpoints every ``checkpoint_every`` steps (atomically) and writes the
    final weights. Every rank appends one JSON line per step to
    ``<workdir>/metrics-g<generation>-r<rank>.jsonl``. A dead peer surfaces as a gloo
    error within ``timeout_s``; the rank then exits with code 3.
    """
    die_with_parent()
    cfg = TrainJobConfig.from_json(Path(config_path).read_text())
    apply_intensity(cfg.ranks[rank].threads, cfg.ranks[rank].nice)
    work = Path(cfg.workdir)
    metrics = work / f"metrics-g{cfg.generation}-r{rank}.jsonl"
    x, y, n_classes = train_split(cfg.data, cfg.drift, cfg.seed)
    torch.manual_seed(cfg.seed)
    module = build_module(cfg.model, cfg.seed, n_classes)
    opt = torch.optim.SGD(module.parameters(), lr=cfg.lr, momentum=0.9)
    step = _restore(cfg, module, opt)
    from edgewise.retrain.devices import join_device_group

    join_device_group()
    if not _meet_peers(cfg, rank, work):
        return 3
    broadcast_params(module)
    model = (module, opt, list(module.parameters()))
    cur = _RankShare.of(list(cfg.ranks), rank, cfg.ranks[rank], cfg.global_batch)
    live, plan_version = bool(cfg.extra.get("live_plan", False)), 0
    _append(metrics, {"event": "start", "rank": rank, "step": step, "t": time.time()})
    try:
        while step < cfg.total_steps:
            if live:
                plan_version, cur = _follow_live_plan(cfg, rank, work, plan_version, cur)
            record = _step(cfg, rank, step, cur, model, (x, y))
            step += 1
            _append(metrics, record | {"plan_version": plan_version})
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
        print(f"rank {rank} ({cur.me.device}): group failed at step {step}: {err}", file=sys.stderr)
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
    broadcast_params(module)
    lo = rank_offsets(shares)[rank]
    sl = slice(lo, lo + shares[rank])
    loss = nn.functional.cross_entropy(module(x[sl]), y[sl]) * loss_scale(
        shares[rank], world, sum(shares)
    )
    loss.backward()
    allreduce_mean_grads(list(module.parameters()), world)
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
