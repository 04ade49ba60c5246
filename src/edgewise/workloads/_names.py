"""Zoo model names, importable without torch (the CLI lists them in ``--help``)."""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = (
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "vit_tiny",
    "distilbert",
    "digits_cnn",
)
"""Names :func:`edgewise.workloads.zoo.build_model` knows, in listing order."""
