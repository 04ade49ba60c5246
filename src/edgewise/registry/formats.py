"""Model file formats: detect one from a path, open it safely, and run it on numpy batches.

Formats (:data:`FORMATS`):

- ``torchscript``: ``torch.jit.save`` archives (``.pt``, ``.ts``, ``.torchscript``), opened
  with ``torch.jit.load`` (TorchScript's own loader, not Python's unpickler);
- ``export``: ``torch.export.save`` programs (``.pt2``); the archive is checked first to
  hold only plain tensors (no pickled payloads), then opened with ``torch.export.load``;
- ``onnx``: run by onnxruntime on its CPU execution provider;
- ``huggingface``: a directory with ``config.json`` and ``model.safetensors``, opened from
  the local path only (``local_files_only``, never remote code);
- ``safetensors``: weights (a ``.safetensors`` file, or a directory holding
  ``model.safetensors``) plus an architecture named by the card: a zoo name or a builder
  ``package.module:function``.

Everything a user can get wrong (an unknown extension, a truncated file, an operator
onnxruntime lacks) raises :class:`ModelFileError`: one line naming the file.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from edgewise.errors import EdgewiseError
from edgewise.modelfiles import WEIGHTS_FILE, ModelFileError, detect_format
from edgewise.registry.card import InputSpec, ModelCard, ModelCardError

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMATS",
    "TRAINABLE_FORMATS",
    "ModelFileError",
    "Runner",
    "build_arch",
    "derived_card",
    "detect_format",
    "open_runner",
    "torch_module",
    "torch_runner",
    "weights_file",
]

FORMATS: tuple[str, ...] = ("torchscript", "export", "onnx", "huggingface", "safetensors", "zoo")
#: Formats that :func:`edgewise.registry.trainable_module` can re-train.
TRAINABLE_FORMATS: tuple[str, ...] = ("huggingface", "safetensors", "zoo")


#: A model as a function: a numpy batch in, the raw output (numpy) out.
Runner = Callable[[np.ndarray], np.ndarray]


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(err).__name__)
    return line[:240]


def weights_file(path: Path) -> Path:
    """The safetensors file of a ``safetensors``/``huggingface`` model at ``path``."""
    return path / WEIGHTS_FILE if path.is_dir() else path


# ------------------------------------------------------------------ architectures


def build_arch(arch: str, card: ModelCard) -> torch.nn.Module:
    """Build the (untrained) architecture ``arch`` for ``card``.

    Parameters
    ----------
    arch
        A zoo name (:data:`edgewise.workloads.zoo.MODEL_NAMES`), built with the card's
        output size and sequence length, or a builder ``package.module:function``
        called without arguments.
    card
        The model's card (its labels or ``num_outputs`` give the head's size).

    Raises
    ------
    ModelCardError
        If the builder cannot be imported or does not return an ``nn.Module``.
    """
    import torch

    from edgewise.workloads.zoo import MODEL_NAMES, build_model

    if arch in MODEL_NAMES:
        outputs = card.num_outputs or (len(card.labels) if card.labels else None)
        seq_len = card.input.shape[0] if card.input.kind == "text" else 128
        return build_model(arch, num_classes=outputs, seq_len=seq_len).module
    module_name, sep, func_name = arch.partition(":")
    if not sep or not module_name or not func_name:
        raise ModelCardError(
            f"arch {arch!r} is neither a zoo model ({', '.join(MODEL_NAMES)}) nor a "
            "builder package.module:function"
        )
    try:
        builder = getattr(importlib.import_module(module_name), func_name)
        module = builder()
    except (ImportError, AttributeError) as err:
        raise ModelCardError(f"arch {arch!r} cannot be imported ({_first_line(err)})") from None
    except Exception as err:
        raise ModelCardError(f"arch {arch!r} failed to build ({_first_line(err)})") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelCardError(f"arch {arch!r} returned {type(module).__name__}, not an nn.Module")
    return module


# ----------------------------------------------------------------- torch formats


def _check_pt2_archive(path: Path) -> None:
    """Refuse a ``.pt2`` archive whose payloads would need Python's unpickler.

    ``torch.export.load`` unpickles weights or constants saved with ``use_pickle``,
    custom and opaque objects, and falls back to a full unpickle of the sample inputs
    when the safe one fails: every such payload is refused here first.
    """
    import torch

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            for name in names:
                parts = name.split("/")
                if name.endswith("_config.json") and "data" in parts:
                    config = json.loads(archive.read(name)).get("config", {})
                    for fqn, meta in config.items():
                        pickled = bool(meta.get("use_pickle"))
                        path_name = str(meta.get("path_name", ""))
                        if pickled or path_name.startswith(("custom_obj", "opaque_obj")):
                            raise ModelFileError(
                                f"{path}: {fqn} is stored as a pickle and is not loaded; "
                                "export plain tensors"
                            )
                if "sample_inputs" in parts and name.endswith(".pt"):
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                if parts[-2:-1] in (["weights"], ["constants"]) and name.endswith(".pt"):
                    raise ModelFileError(f"{path}: legacy pickled payload {name} is not loaded")
    except ModelFileError:
        raise
    except Exception as err:
        raise ModelFileError(
            f"{path}: not a readable torch.export archive ({_first_line(err)})"
        ) from None


def _open_export(path: Path) -> torch.export.ExportedProgram:
    """A ``.pt2`` program, after :func:`_check_pt2_archive` found nothing pickled."""
    import torch

    _check_pt2_archive(path)
    return torch.export.load(str(path))


def _load_torch(path: Path, fmt: str, card: ModelCard | None) -> torch.nn.Module:
    import torch

    if fmt == "torchscript":
        return cast("torch.nn.Module", torch.jit.load(str(path), map_location="cpu"))
    if fmt == "export":
        return _open_export(path).module()
    if fmt == "huggingface":
        return _load_huggingface(path)
    if card is None or card.arch is None:
        raise ModelCardError(
            f"{path}: safetensors weights need an architecture: arch in the card "
            "(a zoo name or package.module:function) or --arch"
        )
    from safetensors.torch import load_model

    module = build_arch(card.arch, card)
    load_model(module, str(weights_file(path)), strict=True)
    return module


def _load_huggingface(path: Path) -> torch.nn.Module:
    import transformers

    config = transformers.AutoConfig.from_pretrained(
        str(path), local_files_only=True, trust_remote_code=False
    )
    architectures = list(getattr(config, "architectures", None) or [])
    cls = getattr(transformers, architectures[0], None) if architectures else None
    if not isinstance(cls, type) or not hasattr(cls, "from_pretrained"):
        cls = transformers.AutoModel
    return cast(
        "torch.nn.Module",
        cls.from_pretrained(
            str(path), local_files_only=True, trust_remote_code=False, use_safetensors=True
        ),
    )


def torch_module(path: Path, fmt: str, card: ModelCard | None) -> torch.nn.Module:
    """Open a torch-based model (every format but ONNX) as an ``nn.Module`` in eval mode.

    Raises
    ------
    ModelFileError
        If the file is truncated, corrupt, unsafe or not of format ``fmt``.
    ModelCardError
        If safetensors weights name no usable architecture.
    """
    try:
        module = _load_torch(path, fmt, card)
    except EdgewiseError:
        raise
    except Exception as err:
        raise ModelFileError(f"{path}: not a readable {fmt} model ({_first_line(err)})") from None
    module.eval()
    return module


def torch_runner(module: torch.nn.Module) -> Runner:
    """The module as a :data:`Runner`: no autograd, the logits of any output form."""
    import torch

    from edgewise.workloads.zoo import logits_of

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            output = module(torch.from_numpy(np.ascontiguousarray(batch)))
        if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
            output = output[0]
        return logits_of(output).detach().float().numpy()

    return run


# -------------------------------------------------------------------------- ONNX


def _onnx_session(path: Path) -> Any:
    """An onnxruntime CPU session with as many intra-op threads as torch uses here.

    A replica sets torch's threads from its CPU share
    (:func:`edgewise.workloads.runner.set_threads` with
    :func:`edgewise.isolation.threads_for`); the session follows the same rule instead
    of onnxruntime's default of one thread a core.
    """
    import onnxruntime
    import torch

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:
        line = _first_line(err)
        # "[ONNXRuntimeError] : 1 : FAIL : Load model from <path> failed:<reason>"
        reason = line.split(" failed:", 1)[-1].removeprefix("Fatal error:").strip()
        if re.search(r"registered|implementation for|not implemented", reason, re.IGNORECASE):
            raise ModelFileError(f"{path}: onnxruntime (CPU) cannot run it: {reason}") from None
        raise ModelFileError(f"{path}: not a readable ONNX model ({reason})") from None


def _onnx_runner(session: Any) -> Runner:
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {name: np.ascontiguousarray(batch)})[0])

    return run


# ------------------------------------------------------------------------ cards


def open_runner(path: Path, fmt: str, card: ModelCard | None) -> tuple[Runner, Any]:
    """A runner for the model at ``path`` and the opened object (module or session)."""
    if fmt == "onnx":
        session = _onnx_session(path)
        return _onnx_runner(session), session
    if fmt == "export":
        try:
            program = _open_export(path)
            module = program.module()
        except EdgewiseError:
            raise
        except Exception as err:
            raise ModelFileError(
                f"{path}: not a readable export model ({_first_line(err)})"
            ) from None
        return torch_runner(module), program
    module = torch_module(path, fmt, card)
    return torch_runner(module), module


_ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(float16)": "float16",
}


def _spec_from_shape(shape: tuple[int, ...], dtype: str) -> InputSpec:
    if dtype in ("int64", "int32") and len(shape) == 1:
        return InputSpec("text", shape, dtype)
    if len(shape) == 3 and shape[0] in (1, 3) and dtype.startswith("float"):
        return InputSpec("image", shape, dtype)
    return InputSpec("tensor", shape, dtype)


def derived_card(path: Path, fmt: str, opened: Any) -> ModelCard | None:
    """A card read off the model itself, where the format records its input.

    ONNX graphs with static non-batch dimensions, exported programs (their example
    inputs) and Hugging Face configs (image size and channels, or sequence length and
    ``id2label``) say what they take; TorchScript and bare weights do not (``None``).
    """
    if fmt == "onnx":
        first = opened.get_inputs()[0]
        dims = list(first.shape)[1:]
        dtype = _ONNX_DTYPES.get(str(first.type))
        if dtype is None or not dims or not all(isinstance(d, int) and d > 0 for d in dims):
            return None
        return ModelCard("other", _spec_from_shape(tuple(dims), dtype))
    if fmt == "export":
        return _export_card(opened)
    if fmt == "huggingface":
        return _huggingface_card(path)
    return None


def _export_card(program: Any) -> ModelCard | None:
    import torch

    example = getattr(program, "example_inputs", None)
    if not example:
        return None
    args = example[0]
    if not args or not isinstance(args[0], torch.Tensor) or args[0].dim() < 2:
        return None
    dtype = str(args[0].dtype).removeprefix("torch.")
    return ModelCard("other", _spec_from_shape(tuple(int(d) for d in args[0].shape[1:]), dtype))


def _huggingface_card(path: Path) -> ModelCard | None:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    labels = _hf_labels(config)
    task = "classification" if labels is not None or "num_labels" in config else "other"
    if "num_channels" in config and "image_size" in config:
        size = int(config["image_size"])
        spec = InputSpec("image", (int(config["num_channels"]), size, size))
    elif "vocab_size" in config:
        seq_len = min(int(config.get("max_position_embeddings", 128)), 128)
        has_tokenizer = any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt"))
        tokenizer = "." if has_tokenizer else None  # relative to the model directory
        spec = InputSpec("text", (seq_len,), "int64", tokenizer=tokenizer)
    else:
        return None
    return ModelCard("classification" if task == "classification" else "other", spec, labels)


def _hf_labels(config: dict[str, Any]) -> tuple[str, ...] | None:
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    labels = [str(id2label[k]) for k in sorted(id2label, key=lambda k: int(k))]
    if all(label == f"LABEL_{i}" for i, label in enumerate(labels)):
        return None
    return tuple(labels)
