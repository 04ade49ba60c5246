"""Model zoo: real architectures with random weights, built offline from configs.

Every model is constructed from a ``transformers`` configuration object (never from a
hub: nothing is downloaded) or, for ``digits_cnn``, from plain ``torch.nn`` layers.
Latency does not depend on weight values, so random weights give the real serving cost.
Weights are initialised under a forked torch RNG seeded with ``seed``: the same name
and seed give the same weights, and the caller's global RNG state is left untouched.

Pure construction only: thread counts are set by :func:`edgewise.workloads.runner.set_threads`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from edgewise.config import MODEL_NAMES
from edgewise.errors import UnknownNameError

__all__ = ["MODEL_NAMES", "DigitsCNN", "ZooModel", "build_model", "check_model_name", "logits_of"]

IMAGENET_CLASSES = 1000
IMAGE_SIZE = 224
DEFAULT_SEQ_LEN = 128
DIGITS_SIZE = 32


class DigitsCNN(nn.Module):
    """A small CNN for 1×32×32 digit images: three conv blocks and a two-layer head.

    Parameters
    ----------
    num_classes : int
        Number of output logits.
    in_channels : int
        Channels of the input images.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d((4, 4)),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def logits_of(output: Any) -> torch.Tensor:
    """The logits tensor of a model output (plain tensor or a ``transformers`` output)."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    raise TypeError(f"model output {type(output).__name__} carries no logits tensor")


@dataclass(frozen=True)
class ZooModel:
    """A built zoo model in eval mode, with what a runner needs to feed it.

    Attributes
    ----------
    name : str
        Zoo name (one of :data:`MODEL_NAMES`).
    kind : {'image', 'text'}
        Image models take float tensors ``(B, C, H, W)``; text models take token ids ``(B, L)``.
    module : torch.nn.Module
        The network, in eval mode.
    input_shape : tuple of int
        Shape of one sample, without the batch dimension.
    num_classes : int
        Number of output logits.
    vocab_size : int or None
        Token vocabulary of text models; ``None`` for image models.
    """

    name: str
    kind: Literal["image", "text"]
    module: nn.Module
    input_shape: tuple[int, ...]
    num_classes: int
    vocab_size: int | None = None

    @property
    def param_count(self) -> int:
        """Number of parameters (weights and biases)."""
        return int(sum(p.numel() for p in self.module.parameters()))

    def example_batch(self, batch_size: int, seed: int = 0) -> torch.Tensor:
        """A random input batch: standard-normal images or uniform token ids.

        Parameters
        ----------
        batch_size : int
            Number of samples (at least 1).
        seed : int
            Seed of a private ``torch.Generator``; global RNG state is not touched.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        gen = torch.Generator().manual_seed(seed)
        shape = (batch_size, *self.input_shape)
        if self.kind == "text":
            assert self.vocab_size is not None
            return torch.randint(0, self.vocab_size, shape, generator=gen, dtype=torch.long)
        return torch.randn(shape, generator=gen, dtype=torch.float32)

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Run the module on ``batch`` and return the logits ``(B, num_classes)``."""
        return logits_of(self.module(batch))


def _mobilenet_v2(num_classes: int | None, seq_len: int) -> ZooModel:
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    n = num_classes or IMAGENET_CLASSES
    config = MobileNetV2Config(num_labels=n, image_size=IMAGE_SIZE)
    return ZooModel(
        "mobilenet_v2",
        "image",
        MobileNetV2ForImageClassification(config),
        (3, IMAGE_SIZE, IMAGE_SIZE),
        n,
    )


def _resnet(name: str, num_classes: int | None) -> ZooModel:
    from transformers import ResNetConfig, ResNetForImageClassification

    n = num_classes or IMAGENET_CLASSES
    if name == "resnet18":
        config = ResNetConfig(
            layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[64, 128, 256, 512], num_labels=n
        )
    else:
        config = ResNetConfig(
            layer_type="bottleneck",
            depths=[3, 4, 6, 3],
            hidden_sizes=[256, 512, 1024, 2048],
            num_labels=n,
        )
    module = ResNetForImageClassification(config)
    return ZooModel(name, "image", module, (3, IMAGE_SIZE, IMAGE_SIZE), n)


def _vit_tiny(num_classes: int | None, seq_len: int) -> ZooModel:
    from transformers import ViTConfig, ViTForImageClassification

    n = num_classes or IMAGENET_CLASSES
    config = ViTConfig(
        hidden_size=192,
        num_hidden_layers=12,
        num_attention_heads=3,
        intermediate_size=768,
        patch_size=16,
        image_size=IMAGE_SIZE,
        num_labels=n,
    )
    return ZooModel(
        "vit_tiny", "image", ViTForImageClassification(config), (3, IMAGE_SIZE, IMAGE_SIZE), n
    )


def _distilbert(num_classes: int | None, seq_len: int) -> ZooModel:
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    n = num_classes or 2
    config = DistilBertConfig(num_labels=n)
    if seq_len > config.max_position_embeddings:
        raise ValueError(
            f"distilbert takes at most {config.max_position_embeddings} tokens, got {seq_len}"
        )
    module = DistilBertForSequenceClassification(config)
    return ZooModel("distilbert", "text", module, (seq_len,), n, vocab_size=config.vocab_size)


def _digits_cnn(num_classes: int | None, seq_len: int) -> ZooModel:
    n = num_classes or 10
    return ZooModel("digits_cnn", "image", DigitsCNN(n), (1, DIGITS_SIZE, DIGITS_SIZE), n)


_BUILDERS: dict[str, Callable[[int | None, int], ZooModel]] = {
    "mobilenet_v2": _mobilenet_v2,
    "resnet18": lambda n, _s: _resnet("resnet18", n),
    "resnet50": lambda n, _s: _resnet("resnet50", n),
    "vit_tiny": _vit_tiny,
    "distilbert": _distilbert,
    "digits_cnn": _digits_cnn,
}


def check_model_name(name: str) -> str:
    """Return ``name`` if the zoo knows it; raise :class:`UnknownNameError` otherwise.

    Only the zoo: a spec's model fields also take registered versions and model files
    (:func:`edgewise.config.known_model`), which :mod:`edgewise.registry` loads.
    """
    if name not in MODEL_NAMES:
        raise UnknownNameError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return name


def build_model(
    name: str,
    seed: int = 0,
    *,
    num_classes: int | None = None,
    seq_len: int = DEFAULT_SEQ_LEN,
) -> ZooModel:
    """Build a zoo model with seeded random weights, in eval mode, offline.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.
    seed : int
        Seed of the weight initialisation (run under ``torch.random.fork_rng``, so the
        caller's global RNG state is unchanged).
    num_classes : int, optional
        Size of the classification head; default 1000 for the ImageNet-style image
        models, 2 for ``distilbert`` and 10 for ``digits_cnn``.
    seq_len : int
        Tokens per sample for text models (ignored by image models).

    Raises
    ------
    UnknownNameError
        If ``name`` is not in the zoo; the message lists the known names.
    """
    builder = _BUILDERS[check_model_name(name)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(num_classes, seq_len)
    model.module.eval()
    return model
