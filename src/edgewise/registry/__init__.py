"""The model registry: the user's own models, in the formats users export, with cards.

A model reference is a zoo name, a registry entry ``NAME[:VERSION]`` or a path to a
TorchScript file, an exported program (``.pt2``), an ONNX file, a Hugging Face
directory, or safetensors weights with an architecture. Registered versions are stored
content-addressed under ``$EDGEWISE_HOME/models`` and recorded, with their lineage, in
the knowledge base's ``model_versions`` table.

>>> from edgewise.registry import parse_ref
>>> parse_ref("digits:v2").version
2

Modules: :mod:`~edgewise.registry.card` (cards), :mod:`~edgewise.registry.formats`
(opening each format safely), :mod:`~edgewise.registry.refs` (references),
:mod:`~edgewise.registry.store` (storage and versions), :mod:`~edgewise.registry.loading`
(load and register), :mod:`~edgewise.registry.trainable` (re-trainable forms).
"""

from __future__ import annotations

from edgewise.registry.card import (
    InputSpec,
    ModelCard,
    ModelCardError,
    parse_input_flag,
    read_labels,
)
from edgewise.registry.formats import FORMATS, TRAINABLE_FORMATS, ModelFileError, detect_format
from edgewise.registry.loaded import InputMismatchError, LoadedModel
from edgewise.registry.loading import (
    canonical_ref,
    check_model,
    check_refs,
    load_model,
    load_version,
    open_path,
    register_model,
    zoo_card,
)
from edgewise.registry.refs import ModelRef, parse_ref
from edgewise.registry.store import (
    ModelVersion,
    content_sha256,
    export_version,
    list_models,
    resolve,
)
from edgewise.registry.trainable import NotTrainableError, save_trainable, trainable_module

__all__ = [
    "FORMATS",
    "TRAINABLE_FORMATS",
    "InputMismatchError",
    "InputSpec",
    "LoadedModel",
    "ModelCard",
    "ModelCardError",
    "ModelFileError",
    "ModelRef",
    "ModelVersion",
    "NotTrainableError",
    "canonical_ref",
    "check_model",
    "check_refs",
    "content_sha256",
    "detect_format",
    "export_version",
    "list_models",
    "load_model",
    "load_version",
    "open_path",
    "parse_input_flag",
    "parse_ref",
    "read_labels",
    "register_model",
    "resolve",
    "save_trainable",
    "trainable_module",
    "zoo_card",
]
