"""Model zoo: every model builds offline and runs; seeding is deterministic and private."""

from __future__ import annotations

import pytest
import torch

from edgewise.errors import UnknownNameError
from edgewise.workloads.zoo import MODEL_NAMES, ZooModel, build_model

# Parameter counts of the reference architectures (torchvision / DeiT-tiny / DistilBERT):
# a wrong config (layer type, depths, widths) changes them.
REFERENCE_PARAMS = {
    "mobilenet_v2": 3_504_872,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
    "vit_tiny": 5_717_416,
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_builds_and_runs_a_forward_pass(name: str) -> None:
    model = build_model(name)
    assert isinstance(model, ZooModel)
    assert model.name == name
    assert not model.module.training
    batch = model.example_batch(1)
    assert tuple(batch.shape) == (1, *model.input_shape)
    with torch.inference_mode():
        logits = model.logits(batch)
    assert tuple(logits.shape) == (1, model.num_classes)
    assert torch.isfinite(logits).all()
    if name in REFERENCE_PARAMS:
        assert model.param_count == REFERENCE_PARAMS[name]
    if model.kind == "text":
        assert batch.dtype == torch.long
        assert model.vocab_size is not None and int(batch.max()) < model.vocab_size
    else:
        assert batch.dtype == torch.float32


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(UnknownNameError) as info:
        build_model("resnet1000")
    message = str(info.value)
    assert "resnet1000" in message and "\n" not in message
    for name in MODEL_NAMES:
        assert name in message


@pytest.mark.parametrize("name", ["digits_cnn", "resnet18"])
def test_seeded_weights_are_deterministic_and_leave_global_rng_alone(name: str) -> None:
    before = torch.random.get_rng_state()
    a, b, c = build_model(name, seed=3), build_model(name, seed=3), build_model(name, seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.module.state_dict(), b.module.state_dict(), c.module.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_example_batch_is_seeded() -> None:
    model = build_model("digits_cnn")
    assert torch.equal(model.example_batch(4, seed=1), model.example_batch(4, seed=1))
    assert not torch.equal(model.example_batch(4, seed=1), model.example_batch(4, seed=2))
    with pytest.raises(ValueError):
        model.example_batch(0)


def test_head_size_can_be_chosen_and_sequence_length_is_checked() -> None:
    cnn = build_model("digits_cnn", num_classes=2)
    assert cnn.num_classes == 2
    with torch.inference_mode():
        assert tuple(cnn.logits(cnn.example_batch(3)).shape) == (3, 2)
    with pytest.raises(ValueError, match="at most 512 tokens"):
        build_model("distilbert", seq_len=1000)
