"""Which paths hold a model the registry reads: the rule on extensions and directories.

Kept apart from :mod:`edgewise.registry.formats` (which opens models with torch,
onnxruntime and transformers) so that a spec can be checked without importing any of them.
"""

from __future__ import annotations

from pathlib import Path

from edgewise.errors import EdgewiseError

__all__ = ["WEIGHTS_FILE", "ModelFileError", "detect_format", "is_model_path"]

_SUFFIXES: dict[str, str] = {
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
    ".pt2": "export",
    ".onnx": "onnx",
    ".safetensors": "safetensors",
}
WEIGHTS_FILE = "model.safetensors"


class ModelFileError(EdgewiseError):
    """A model file or directory that cannot be used: unknown, corrupt or unsafe."""


def detect_format(path: Path) -> str:
    """The format of the model at ``path``, from its extension or directory contents.

    Raises
    ------
    ModelFileError
        If ``path`` does not exist, has an unknown extension, or is a directory that
        holds no model this registry reads (pickled ``pytorch_model.bin`` included).
    """
    if not path.exists():
        raise ModelFileError(f"model path {path} does not exist")
    if path.is_dir():
        if (path / WEIGHTS_FILE).is_file():
            return "huggingface" if (path / "config.json").is_file() else "safetensors"
        if (path / "pytorch_model.bin").exists():
            raise ModelFileError(
                f"{path}: pytorch_model.bin is a pickle and is not loaded; save the model "
                "with safetensors (save_pretrained(..., safe_serialization=True))"
            )
        raise ModelFileError(
            f"{path}: a model directory needs {WEIGHTS_FILE} (and config.json for a "
            "Hugging Face model)"
        )
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ModelFileError(
            f"{path}: unknown model extension {path.suffix or '(none)'!r}; known: "
            f"{', '.join(sorted(_SUFFIXES))} or a Hugging Face directory"
        )
    return fmt


def is_model_path(path: Path) -> bool:
    """Whether ``path`` is a model file or directory of a format the registry reads."""
    try:
        detect_format(path)
    except ModelFileError:
        return False
    return True
