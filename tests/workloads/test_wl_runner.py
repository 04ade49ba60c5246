"""Runners: explicit thread counts, positive latencies, training steps that learn."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from edgewise.workloads.datasets import digits_images
from edgewise.workloads.runner import (
    InferenceRunner,
    set_threads,
    train_step,
    train_steps,
)
from edgewise.workloads.zoo import build_model


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_set_threads_sets_intra_op_threads() -> None:
    set_threads(1)
    assert torch.get_num_threads() == 1
    set_threads(2)
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError):
        set_threads(0)


def test_measure_returns_positive_latencies_with_the_requested_threads() -> None:
    runner = InferenceRunner("digits_cnn", batch_size=4, threads=1)
    lat = runner.measure(6, warmup=1)
    assert lat.shape == (6,)
    assert np.all(np.isfinite(lat)) and np.all(lat > 0)
    assert torch.get_num_threads() == 1
    out = runner.infer(runner.batch)
    assert tuple(out.shape) == (4, 10)
    assert not out.requires_grad


def test_runner_accepts_a_built_model_and_rejects_bad_sizes() -> None:
    model = build_model("digits_cnn")
    assert InferenceRunner(model).model is model
    with pytest.raises(ValueError):
        InferenceRunner(model, batch_size=0)
    with pytest.raises(ValueError):
        InferenceRunner(model, threads=0)
    with pytest.raises(ValueError):
        InferenceRunner(model).measure(0)


def test_latency_grows_with_batch_size() -> None:
    model = build_model("digits_cnn")
    small = np.median(InferenceRunner(model, batch_size=1, threads=1).measure(15, warmup=2))
    large = np.median(InferenceRunner(model, batch_size=128, threads=1).measure(15, warmup=2))
    assert large > small


@pytest.mark.slow
def test_train_steps_reduce_the_loss_on_real_digits() -> None:
    x, y = digits_images()
    model = build_model("digits_cnn", seed=0)
    opt = torch.optim.Adam(model.module.parameters(), lr=5e-3)
    batches = [(x[:32], y[:32])] * 15
    stats = train_steps(model, nn.CrossEntropyLoss(), batches, opt, threads=1)
    assert torch.get_num_threads() == 1
    assert stats.losses.shape == (15,) and stats.step_ms.shape == (15,)
    assert np.all(stats.step_ms > 0)
    assert stats.samples == 15 * 32 and stats.samples_per_s > 0
    assert stats.losses[-1] < 0.5 * stats.losses[0]
    assert not model.module.training  # mode restored


def test_train_step_updates_the_weights() -> None:
    net = nn.Linear(3, 2)
    before = net.weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    loss = train_step(
        net,
        nn.CrossEntropyLoss(),
        torch.randn(8, 3, generator=gen),
        torch.zeros(8, dtype=torch.long),
        opt,
    )
    assert loss > 0
    assert not torch.equal(before, net.weight)
