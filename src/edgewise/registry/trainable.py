"""Trainable forms of a model: open one as an ``nn.Module``, save one back as safe data.

A model can be re-trained when its weights and its architecture are both at hand: a
Hugging Face directory (config + safetensors), safetensors weights with an
architecture (a zoo name or a builder ``package.module:function``), or a zoo model.
TorchScript, exported programs and ONNX are inference forms: asking to re-train one is
one line saying which forms can.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgewise.errors import EdgewiseError
from edgewise.registry.card import CARD_FILE, ModelCard, card_path_for
from edgewise.registry.formats import (
    TRAINABLE_FORMATS,
    WEIGHTS_FILE,
    ModelFileError,
    derived_card,
    detect_format,
    torch_module,
)
from edgewise.registry.loading import kb_or_default, zoo_card
from edgewise.registry.refs import parse_ref
from edgewise.registry.store import resolve

if TYPE_CHECKING:
    import torch

    from edgewise.kb import KnowledgeBase

__all__ = ["NotTrainableError", "save_trainable", "trainable_module"]

_TRAINABLE_FORMS = (
    "a Hugging Face directory (config.json + model.safetensors), safetensors weights with "
    "an architecture (a zoo name or package.module:function in the card), or a zoo model"
)


class NotTrainableError(EdgewiseError):
    """A model given for re-training is in an inference-only form."""


def _card_for(path: Path, fmt: str) -> ModelCard:
    if card_path_for(path).is_file():
        return ModelCard.load(path)
    card = derived_card(path, fmt, None) if fmt == "huggingface" else None
    if card is None:
        ModelCard.load(path)  # raises the one-line "no model card" error
    assert card is not None
    return card


def trainable_module(
    ref: str, kb: KnowledgeBase | None = None
) -> tuple[torch.nn.Module, ModelCard]:
    """Open the model ``ref`` names as a trainable ``nn.Module`` with its card.

    Parameters
    ----------
    ref
        A zoo name, a registry entry ``NAME[:vN]`` or a path (see
        :mod:`edgewise.registry.refs`).
    kb
        The registry's knowledge base (default: the default one, for registry refs).

    Returns
    -------
    (torch.nn.Module, ModelCard)
        The module in eval mode (the trainer sets train mode) and its card.

    Raises
    ------
    NotTrainableError
        If the model is TorchScript, an exported program or ONNX (the message lists the
        forms that can be re-trained).
    ModelFileError, ModelCardError, UnknownNameError
        As :func:`edgewise.registry.load_model`.
    """
    parsed = parse_ref(ref)
    if parsed.kind == "zoo":
        from edgewise.workloads.zoo import build_model

        return build_model(parsed.name).module, zoo_card(parsed.name)
    card: ModelCard | None
    if parsed.kind == "registry":
        with kb_or_default(kb) as opened:
            version = resolve(opened, ref)
        path, fmt, card = version.path, version.format, version.card
    else:
        assert parsed.path is not None
        path = parsed.path
        fmt = detect_format(path)
        card = _card_for(path, fmt) if fmt in TRAINABLE_FORMATS else None
    if fmt not in TRAINABLE_FORMATS:
        raise NotTrainableError(
            f"{ref} is a {fmt} model, which cannot be re-trained; re-training takes "
            f"{_TRAINABLE_FORMS}"
        )
    assert card is not None
    return torch_module(path, fmt, card), card


def _output_size(module: torch.nn.Module, card: ModelCard) -> int | None:
    import torch

    from edgewise.workloads.zoo import logits_of

    spec = card.input
    zeros = torch.from_numpy(np.zeros((1, *spec.shape), dtype=np.dtype(spec.dtype)))
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            out = logits_of(module(zeros))
    finally:
        module.train(was_training)
    return int(out.shape[1]) if out.dim() == 2 else None


def save_trainable(module: torch.nn.Module, card: ModelCard, out_dir: Path, *, arch: str) -> Path:
    """Save ``module`` as safetensors weights with its card, in a trainable form.

    A ``transformers`` model is saved as a Hugging Face directory (``save_pretrained``
    with safetensors; ``arch`` is not needed); any other module as
    ``model.safetensors`` plus ``card.yaml`` naming ``arch``. Either is loadable by
    :func:`~edgewise.registry.load_model` and :func:`trainable_module`, and
    registrable with :func:`~edgewise.registry.register_model`.

    Parameters
    ----------
    module
        The trained module.
    card
        Its card (labels and input); ``arch`` and the output size are filled in.
    out_dir
        Directory to write (created; must not hold a model already).
    arch
        The architecture that rebuilds ``module``: a zoo name or ``package.module:function``.

    Returns
    -------
    Path
        ``out_dir``.
    """
    from safetensors.torch import save_model

    if (out_dir / WEIGHTS_FILE).exists():
        raise ModelFileError(f"{out_dir} holds a model already; pick another directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    save_pretrained = getattr(module, "save_pretrained", None)
    if callable(save_pretrained) and hasattr(module, "config"):
        save_pretrained(str(out_dir), safe_serialization=True)
        saved = card.with_arch(None)
    else:
        outputs = card.num_outputs
        if outputs is None and card.labels is None:
            outputs = _output_size(module, card)
        save_model(module, str(out_dir / WEIGHTS_FILE))
        saved = card.with_arch(arch, outputs)
    saved.save(out_dir / CARD_FILE)
    return out_dir
