"""Inference and training-step runners with explicit thread counts.

This is an effect module (it runs models and reads the wall clock to measure them);
the numbers it returns (latencies in ms, losses) are plain numpy data that pure code
downstream (capacity models, planners) consumes. :func:`set_threads` is the only place
in edgewise that changes torch's thread pools.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from edgewise.workloads.zoo import ZooModel, build_model, logits_of

if TYPE_CHECKING:
    from edgewise.kb import KnowledgeBase
    from edgewise.registry import LoadedModel

_interop_fixed = False


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads in this process (and ``n`` inter-op threads if still possible).

    torch accepts ``set_num_interop_threads`` only once and only before any parallel
    work has started; later calls keep the inter-op pool as it is (inference of one
    model does not use it).

    Parameters
    ----------
    n : int
        Number of threads, at least 1.
    """
    global _interop_fixed
    if n < 1:
        raise ValueError(f"thread count must be at least 1, got {n}")
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if not _interop_fixed:
        _interop_fixed = True
        # raises once the inter-op pool has started: torch then keeps its first setting
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(n)


class InferenceRunner:
    """Runs one zoo model under ``torch.inference_mode`` with a fixed thread count.

    Parameters
    ----------
    model : str or ZooModel
        A zoo name (built with ``seed``) or an already built model.
    batch_size : int
        Samples per call of :meth:`measure`'s example batch.
    threads : int
        Intra-op threads used for every call (set through :func:`set_threads`).
    seed : int
        Seed of the weights (when ``model`` is a name) and of the example batch.
    """

    def __init__(
        self, model: str | ZooModel, batch_size: int = 1, threads: int = 1, seed: int = 0
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.model = build_model(model, seed=seed) if isinstance(model, str) else model
        self.batch_size = batch_size
        self.threads = threads
        self.batch = self.model.example_batch(batch_size, seed=seed)

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of ``batch``, computed without autograd."""
        set_threads(self.threads)
        with torch.inference_mode():
            return logits_of(self.model.module(batch))

    def measure(self, n: int, warmup: int = 5) -> np.ndarray:
        """Closed-loop latencies in ms of ``n`` calls on the example batch.

        Each entry is the wall time of one call of ``batch_size`` samples, measured with
        ``time.perf_counter_ns``; ``warmup`` calls run first and are not recorded.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        set_threads(self.threads)
        module, batch = self.model.module, self.batch
        out = np.empty(n, dtype=float)
        with torch.inference_mode():
            for _ in range(warmup):
                module(batch)
            for i in range(n):
                t0 = time.perf_counter_ns()
                module(batch)
                out[i] = (time.perf_counter_ns() - t0) / 1e6
        return out


class LoadedRunner:
    """Runs a model opened through the registry with a fixed thread count.

    The same surface as :class:`InferenceRunner` (``batch``, :meth:`infer`,
    :meth:`measure`) for any model reference: a registered version or a model file, in
    whichever format the registry opened it (a torch module or an onnxruntime session).
    Each call goes through :meth:`~edgewise.registry.LoadedModel.forward`, as a serving
    replica's does, so the card's input check is part of what is timed.

    Parameters
    ----------
    model : LoadedModel
        The opened model.
    batch_size : int
        Samples per call of :meth:`measure`'s example batch.
    threads : int
        Intra-op torch threads used for every call (set through :func:`set_threads`).
    seed : int
        Seed of the example batch (:meth:`~edgewise.registry.LoadedModel.example_batch`).
    """

    def __init__(
        self, model: LoadedModel, batch_size: int = 1, threads: int = 1, seed: int = 0
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self.model = model
        self.batch_size = batch_size
        self.threads = threads
        self.batch = torch.from_numpy(model.example_batch(batch_size, seed=seed))

    def infer(self, batch: torch.Tensor) -> torch.Tensor:
        """The model's output on ``batch`` (float32, batch first)."""
        set_threads(self.threads)
        return torch.from_numpy(self.model.forward(batch.numpy()))

    def measure(self, n: int, warmup: int = 5) -> np.ndarray:
        """Closed-loop latencies in ms of ``n`` calls on the example batch.

        As :meth:`InferenceRunner.measure`: ``warmup`` calls first, not recorded.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        set_threads(self.threads)
        forward, batch = self.model.forward, self.batch.numpy()
        out = np.empty(n, dtype=float)
        for _ in range(warmup):
            forward(batch)
        for i in range(n):
            t0 = time.perf_counter_ns()
            forward(batch)
            out[i] = (time.perf_counter_ns() - t0) / 1e6
        return out


def runner_for(
    model: str,
    *,
    batch_size: int = 1,
    threads: int = 1,
    seed: int = 0,
    kb: KnowledgeBase | None = None,
) -> InferenceRunner | LoadedRunner:
    """A runner of any model reference: the zoo's as before, anything else via the registry.

    Parameters
    ----------
    model : str
        A zoo name (built with seeded weights by :class:`InferenceRunner`, as always), a
        registry entry ``NAME[:vN]`` or the path of a model file or directory (opened by
        :func:`edgewise.registry.load_model`).
    batch_size, threads, seed
        As for :class:`InferenceRunner`.
    kb : KnowledgeBase, optional
        Where registry entries are looked up (default: the default knowledge base,
        ``$EDGEWISE_DB_URL`` when set).

    Raises
    ------
    UnknownNameError, ModelFileError, ModelCardError
        A reference that names no zoo model, registered version or readable model file.
    """
    from edgewise.workloads._names import MODEL_NAMES

    if model in MODEL_NAMES:
        return InferenceRunner(model, batch_size=batch_size, threads=threads, seed=seed)
    from edgewise.registry import load_model

    loaded = load_model(model, kb)
    return LoadedRunner(loaded, batch_size=batch_size, threads=threads, seed=seed)


@dataclass(frozen=True)
class TrainStats:
    """What :func:`train_steps` did: one loss and one wall time (ms) per step."""

    losses: np.ndarray
    step_ms: np.ndarray
    samples: int

    @property
    def samples_per_s(self) -> float:
        """Training throughput over the measured steps."""
        total_s = float(self.step_ms.sum()) / 1e3
        return self.samples / total_s if total_s > 0 else float("nan")


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_step(
    module: nn.Module | ZooModel,
    loss_fn: LossFn,
    x: torch.Tensor,
    y: torch.Tensor,
    optimizer: torch.optim.Optimizer,
) -> float:
    """One step: forward, loss on the logits, backward, optimizer step. Returns the loss.

    The module is put in train mode; the caller chooses the thread count (see
    :func:`train_steps`).
    """
    net = module.module if isinstance(module, ZooModel) else module
    net.train()
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(logits_of(net(x)), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def train_steps(
    module: nn.Module | ZooModel,
    loss_fn: LossFn,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    threads: int | None = None,
) -> TrainStats:
    """Run one training step per ``(x, y)`` batch with ``threads`` intra-op threads.

    Parameters
    ----------
    module : torch.nn.Module or ZooModel
        Network to train (left in the mode it was in before the call).
    loss_fn : callable
        ``loss_fn(logits, targets) -> scalar tensor``, e.g. ``nn.CrossEntropyLoss()``.
    batches : iterable of (x, y)
        Input and target tensors, one pair per step.
    optimizer : torch.optim.Optimizer
        Optimizer over the module's parameters.
    threads : int, optional
        Thread count to set first; ``None`` keeps the current one.
    """
    net: Any = module.module if isinstance(module, ZooModel) else module
    if threads is not None:
        set_threads(threads)
    was_training = net.training
    losses: list[float] = []
    times: list[float] = []
    samples = 0
    try:
        for x, y in batches:
            t0 = time.perf_counter_ns()
            losses.append(train_step(net, loss_fn, x, y, optimizer))
            times.append((time.perf_counter_ns() - t0) / 1e6)
            samples += int(x.shape[0])
    finally:
        net.train(was_training)
    return TrainStats(np.asarray(losses), np.asarray(times), samples)
