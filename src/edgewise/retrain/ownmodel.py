"""The user's own model and data in a re-training job: read, checked, handed over, registered.

:func:`prepare_own` resolves a model reference (a registry entry ``NAME[:VERSION]`` or a
trainable path) to its module and card, reads the user's data through the card
(:mod:`edgewise.workloads.userdata`: an image folder or an ``.npz``, a seeded held-out
split, a fingerprint) and sizes the model's training memory. The ranks get the model in
its trainable form and the training tensors as files in the job directory
(:meth:`OwnModel.save`, :func:`write_job_inputs`), so they load them exactly as a
restarted rank does. :func:`register_retrained` saves the re-trained module and, when
it came from the registry, registers it as the next version with its lineage.

Pure parts: :class:`OwnData`, :class:`OwnModel`. Everything else reads or writes files
or the knowledge base; torch and the registry are imported inside the calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgewise.errors import SpecError

__all__ = [
    "OwnData",
    "OwnModel",
    "held_out_accuracy",
    "output_size",
    "own_data",
    "prepare_own",
    "register_retrained",
    "write_job_inputs",
]


@dataclass(frozen=True)
class OwnData:
    """The user's data for one job: a training part, a held-out part, a fingerprint.

    ``x_*`` are float32 tensors in the model's input shape, ``y_*`` int64 class indices.
    """

    x_train: Any
    y_train: Any
    x_held: Any
    y_held: Any
    num_classes: int
    fingerprint: str


def output_size(module: Any, sample_shape: Sequence[int]) -> int:
    """The model's number of outputs (classes), from one forward pass on zeros."""
    import torch

    from edgewise.workloads.zoo import logits_of

    was = module.training
    module.eval()
    with torch.no_grad():
        out = logits_of(module(torch.zeros((1, *sample_shape))))
    module.train(was)
    return int(out.shape[-1])


def own_data(
    data: str,
    *,
    sample_shape: Sequence[int],
    num_outputs: int,
    preprocess: Any = None,
    labels: Sequence[str] | None = None,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> OwnData:
    """The user's data (an image folder or an ``.npz``), checked and split.

    Read with :func:`edgewise.workloads.userdata.load_user_data` and split with the
    seeded stratified :func:`~edgewise.workloads.userdata.held_out_split`. A built-in
    data set's name is refused: its samples are normalised with the set's own statistics,
    not with the model card's (a folder of that name is ``./digits``).

    Raises
    ------
    SpecError
        Bad data (one line naming the file), a built-in set's name, or samples whose
        shape the model does not take.
    """
    import torch

    from edgewise.workloads.datasets import DATASETS
    from edgewise.workloads.userdata import held_out_split, load_user_data

    if data in DATASETS:
        raise SpecError(
            f"--data {data}: the built-in data sets re-train the zoo models; give your "
            f"model an image folder (one sub-folder per class; a folder here: ./{data}) "
            "or an .npz with x and y"
        )
    user = load_user_data(
        data,
        preprocess=preprocess,
        sample_shape=sample_shape,
        labels=labels,
        num_outputs=num_outputs,
    )
    if tuple(user.x.shape[1:]) != tuple(sample_shape):
        raise SpecError(
            f"{data}: images preprocess to shape {tuple(user.x.shape[1:])}, the model "
            f"takes {tuple(sample_shape)}"
        )
    train, held = held_out_split(user.y, test_fraction=test_fraction, seed=seed)
    x, y = torch.from_numpy(user.x), torch.from_numpy(user.y)
    return OwnData(x[train], y[train], x[held], y[held], num_outputs, user.fingerprint)


def write_job_inputs(inputs: Path, own: OwnData, state: Mapping[str, Any]) -> tuple[Path, Path]:
    """The ranks' inputs in the job directory: the training tensors and the start weights.

    Returns ``(tensor file, weights file)``; the ranks read the first as their data set
    (:func:`edgewise.retrain.trainer.train_split`) and start from the second.
    """
    import torch

    inputs.mkdir(parents=True, exist_ok=True)
    out = (inputs / "train.pt", inputs / "init.pt")
    parts: tuple[dict[str, Any], dict[str, Any]] = (
        {"x": own.x_train.contiguous(), "y": own.y_train, "num_classes": own.num_classes},
        {k: v.detach().clone() for k, v in state.items()},
    )
    for path, body in zip(out, parts, strict=True):
        tmp = path.with_suffix(".tmp")
        torch.save(body, tmp)
        tmp.replace(path)
    return out


def held_out_accuracy(module: Any, weights: Path | None, own: OwnData) -> float:
    """Accuracy on the held-out part, of ``module`` as it is or with ``weights`` loaded."""
    import torch

    from edgewise.retrain.trainer import accuracy

    if weights is not None:
        module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return accuracy(module, own.x_held, own.y_held)


@dataclass(frozen=True)
class OwnModel:
    """The user's model and data, resolved once for a job.

    Attributes
    ----------
    ref : str
        The model as resolved: ``NAME:vN`` for a registry entry, else the path given.
    module : torch.nn.Module
        The trainable module with its weights.
    card : edgewise.registry.ModelCard
        Its card (input, labels, architecture).
    data : OwnData
        The training and held-out parts.
    parent : str or None
        ``NAME:vN`` when the model came from the registry (the new version's parent).
    memory_mb : tuple of float
        Training memory: fixed MB and MB per sample.
    """

    ref: str
    module: Any
    card: Any
    data: OwnData
    parent: str | None
    memory_mb: tuple[float, float]

    @property
    def name(self) -> str | None:
        """The registry name of the parent, ``None`` for a path."""
        return None if self.parent is None else self.parent.rsplit(":", 1)[0]

    @property
    def stem(self) -> str:
        """A file-name-safe label of the model and the data (the job directory's name)."""
        label = self.name or Path(self.ref).name or "model"
        digest = self.data.fingerprint.rsplit(":", 1)[-1].replace("/", "-")[:12]
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{label}-{digest}")

    def save(self, out: Path) -> Path:
        """The module, as it is now, in its trainable form under ``out`` (loadable again)."""
        import shutil

        from edgewise.registry import save_trainable

        if out.exists():  # a rerun of the job replaces its own earlier copy
            shutil.rmtree(out)
        return save_trainable(self.module, self.card, out, arch=self.card.arch or "")


def prepare_own(kb: Any, model: str, data: str, *, seed: int) -> OwnModel:
    """Resolve the user's model and read the user's data through its card.

    Parameters
    ----------
    kb : KnowledgeBase
        Where registry entries are looked up.
    model : str
        ``NAME[:VERSION]`` or a trainable path (a Hugging Face directory, or safetensors
        with an architecture).
    data : str
        An image folder or an ``.npz``.
    seed : int
        The held-out split's seed.

    Raises
    ------
    EdgewiseError
        A model that does not exist or cannot be trained (one line naming the forms
        that can), a model that takes text, or bad data (one line naming the file).
    """
    from edgewise.registry import resolve, trainable_module
    from edgewise.retrain.jobs import memory_mb

    parent = None if Path(model).exists() else resolve(kb, model).ref
    module, card = trainable_module(parent or model, kb)
    if card.input.kind == "text":
        raise SpecError(
            f"{model}: takes text; re-training on your own data takes image or tensor models"
        )
    shape = tuple(card.input.shape)
    own = own_data(
        data,
        sample_shape=shape,
        num_outputs=output_size(module, shape),
        preprocess=card.preprocess_image if card.input.kind == "image" else None,
        labels=card.labels,
        seed=seed,
    )
    params = sum(int(p.numel()) for p in module.parameters())
    return OwnModel(parent or model, module, card, own, parent, memory_mb(params, shape))


def register_retrained(
    kb: Any, own: OwnModel, weights: Path, accuracy: tuple[float, float], out: Path
) -> tuple[Path, str | None]:
    """Save the re-trained model; register it as the next version when it has a parent.

    Parameters
    ----------
    kb : KnowledgeBase
        The registry's knowledge base.
    own : OwnModel
        The job's model (its module receives ``weights``).
    weights : Path
        The job's final state dict.
    accuracy : tuple of float
        Held-out accuracy before and after.
    out : Path
        Where the trainable form is written.

    Returns
    -------
    tuple
        The saved trainable form, and the new ``NAME:vN`` (``None`` for a path).
    """
    import torch

    from edgewise.registry import register_model

    own.module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    path = own.save(out)
    if own.name is None:
        return path, None
    version = register_model(
        kb,
        own.name,
        path,
        card=own.card,
        parent=own.parent,
        data_fingerprint=own.data.fingerprint,
        accuracy_before=accuracy[0],
        accuracy_after=accuracy[1],
    )
    return path, version.ref
