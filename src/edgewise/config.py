"""Specifications loaded from YAML: devices, flavors, services and stress spaces.

Pure data: pydantic models with the constraints a user must respect, and loaders that
turn any problem (unreadable file, bad YAML, a key given twice, a field out of range, a
model the zoo does not know, two identical service variants) into one
:class:`~edgewise.errors.SpecError` line naming the file, the field and the fault, when
the file is loaded, before any process starts.

The zoo's model names live here (:data:`MODEL_NAMES`), in the core, so that a spec can
be checked without importing torch or the workloads adapter; the zoo builds from them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edgewise.errors import SpecError
from edgewise.modelfiles import is_model_path
from edgewise.paths import user_path

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
RESOURCES: tuple[str, ...] = ("cpu", "membw", "llc", "disk", "net", "mem")

MODEL_NAMES: tuple[str, ...] = (
    "mobilenet_v2",
    "resnet18",
    "resnet50",
    "vit_tiny",
    "distilbert",
    "digits_cnn",
)
"""Names of the zoo's models (:func:`edgewise.workloads.zoo.build_model`), in listing order."""


def known_model(name: str) -> str:
    """Return ``name`` if it names a zoo model, a registered version or a model file.

    A registered model is written ``NAME:vN``; a path must exist. Anything else raises
    ``ValueError`` listing the zoo's models.

    Parameters
    ----------
    name : str
        A model reference as written in a spec.

    Returns
    -------
    str
        ``name``, unchanged.

    Raises
    ------
    ValueError
        One line: the unknown name and the known names (:data:`MODEL_NAMES`).
    """
    if name in MODEL_NAMES or _VERSIONED_REF.fullmatch(name) or _is_model_path(name):
        return name
    raise ValueError(
        f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)} (a registered "
        "model is named with its version, NAME:vN, or by the path of its file)"
    )


#: A registered model named with its version (``NAME:vN`` or ``NAME:N``); a bare name
#: that is not in the zoo is refused here, so that a typo is caught when the spec loads.
_VERSIONED_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}:v?[1-9][0-9]*")


def _is_model_path(name: str) -> bool:
    """Whether ``name`` is the path of a model file or directory the registry reads
    (``~`` alone is the home directory, not a model)."""
    return any(c in name for c in "/.~") and is_model_path(user_path(name))


def known_neighbour(name: str) -> str:
    """Return a neighbour spec stripped if it can name a co-located workload.

    A neighbour is ``host`` (the host's observed utilisation), a stress mix
    ``stress:RES=V,...`` (its resources are checked where it is parsed), a zoo model or a
    workload ``MODEL@RATErps``.

    Parameters
    ----------
    name : str
        The spec as written (``--with`` or a service spec's ``neighbours:``).

    Returns
    -------
    str
        ``name`` without surrounding blanks.

    Raises
    ------
    ValueError
        One line: the spec is empty, or names a model the zoo does not have.
    """
    spec = name.strip()
    if not spec:
        raise ValueError("an empty neighbour; give host, stress:RES=V,..., MODEL or MODEL@RATErps")
    if spec == "host" or spec.startswith("stress:"):
        return spec
    model = spec.split("@", 1)[0]
    if model not in MODEL_NAMES:
        raise ValueError(
            f"neighbour {spec!r}: unknown model {model!r}; known models: "
            f"{', '.join(MODEL_NAMES)} (or host, stress:RES=V,...)"
        )
    return spec


class _Spec(BaseModel):
    # no spec field is sensibly infinite or NaN: refuse them where they are read
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class BackgroundApp(_Spec):
    """A latency-critical app that already runs on a device."""

    model: str = "digits_cnn"
    rate_rps: Positive
    deadline_ms: Positive
    percentile: Annotated[float, Field(gt=0, le=100)] = 99.0
    batch_size: Annotated[int, Field(ge=1)] = 1

    _known_model = field_validator("model")(known_model)


class DeviceSpec(_Spec):
    """An edge device: real (a Ray node with ``labels``) or emulated by a cgroup quota."""

    name: Annotated[str, Field(min_length=1)]
    cpus: Positive = Field(description="CPU share or cores (1.0 = one full core)")
    memory_mb: Annotated[int, Field(gt=0)] = 1024
    gpu: str | None = None
    price_per_hour: NonNegative = 0.0
    background: BackgroundApp | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class DevicePool(_Spec):
    devices: Annotated[list[DeviceSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> DevicePool:
        _check_unique([d.name for d in self.devices], "devices")
        return self

    def background_models(self) -> dict[str, str]:
        """Each background app's model reference, keyed by where the spec names it."""
        return {
            f"device {d.name!r}, background app": d.background.model
            for d in self.devices
            if d.background is not None
        }


class FlavorSpec(_Spec):
    """A container or VM size a replica can run in."""

    name: Annotated[str, Field(min_length=1)]
    cpus: Positive
    memory_mb: Annotated[int, Field(gt=0)] = 2048
    price_per_hour: NonNegative
    max_replicas: Annotated[int, Field(ge=0)] = 100


class FlavorCatalog(_Spec):
    flavors: Annotated[list[FlavorSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> FlavorCatalog:
        _check_unique([f.name for f in self.flavors], "flavors")
        return self


class SLO(_Spec):
    latency_ms: Positive
    percentile: Annotated[float, Field(gt=0, le=100)] = 99.0


class ModelVariant(_Spec):
    """One model that can serve a service's task, with its accuracy."""

    model: str
    accuracy: Fraction = 1.0
    batch_size: Annotated[int, Field(ge=1)] = 1

    _known_model = field_validator("model")(known_model)


class RolloutSettings(_Spec):
    """How ``edgewise rollout`` gates a new version of the service (its ``rollout:`` block).

    The canary answers ``canary_share`` of live requests until ``min_requests`` answers
    are in; it must keep the SLO, agree with the serving version on at least
    ``min_agreement`` of them (or, with ``min_labelled`` labelled requests, lose at most
    ``max_accuracy_drop`` of accuracy), fail at most ``max_error_rate`` of them, and be
    judged within ``max_canary_s``; on a host slow for both versions it is held to the
    serving version's own tail plus ``max_latency_increase``.
    """

    canary_share: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    min_requests: Annotated[int, Field(ge=1)] = 50
    min_agreement: Fraction = 0.9
    max_accuracy_drop: Fraction = 0.02
    min_labelled: Annotated[int, Field(ge=1)] = 30
    max_error_rate: Fraction = 0.0
    max_canary_s: Annotated[float, Field(gt=0.0)] = 120.0
    max_latency_increase: NonNegative = 0.2


class ServiceSpec(_Spec):
    """A prediction service: one task, one or more model variants, one SLO."""

    name: Annotated[str, Field(min_length=1)]
    variants: Annotated[list[ModelVariant], Field(min_length=1)]
    slo: SLO
    min_accuracy: Fraction = 0.0
    startup_s: NonNegative = 60.0
    neighbours: list[Annotated[str, AfterValidator(known_neighbour)]] = Field(default_factory=list)
    """Workloads beside every replica (see :func:`known_neighbour`): capacity is derated
    by the slowdown the knowledge base's interference model predicts next to them."""
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    """The gate of ``edgewise rollout`` (flags given to the command override it)."""

    @model_validator(mode="before")
    @classmethod
    def _model_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "model" in data and "variants" not in data:
            data = dict(data)
            data["variants"] = [{"model": data.pop("model")}]
        return data

    @field_validator("variants")
    @classmethod
    def _distinct_variants(cls, variants: list[ModelVariant]) -> list[ModelVariant]:
        first: dict[tuple[str, int], int] = {}
        for i, v in enumerate(variants):
            key = (v.model, v.batch_size)
            if key in first:
                raise ValueError(
                    f"variants[{i}] repeats variants[{first[key]}] "
                    f"(model {v.model!r}, batch size {v.batch_size})"
                )
            first[key] = i
        return variants


class StressSpace(_Spec):
    """Per-resource intensity ranges (normalised to [0, 1]) a campaign explores."""

    resources: dict[Literal["cpu", "membw", "llc", "disk", "net", "mem"], tuple[Fraction, Fraction]]

    @model_validator(mode="after")
    def _ordered(self) -> StressSpace:
        if not self.resources:
            raise ValueError("at least one resource is needed")
        for name, (lo, hi) in self.resources.items():
            if lo > hi:
                raise ValueError(f"resource {name}: lower bound {lo} above upper bound {hi}")
        return self


def _check_unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate name {n!r} in {what}")
        seen.add(n)


S = TypeVar("S", bound=BaseModel)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def parse_spec(data: Any, model: type[S], source: str) -> S:
    """Validate already-parsed data against ``model``; one-line SpecError on failure."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = _format_loc(tuple(first.get("loc", ())))
        msg = first.get("msg", "invalid").removeprefix("Value error, ")
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise SpecError(f"{source}: {loc}: {msg}{more}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a mapping with the same key twice."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
        if isinstance(key, (str, int, float, bool)) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        if isinstance(key, (str, int, float, bool)):
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


_UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,  # type: ignore[arg-type]
)


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; unreadable, non-UTF-8 or malformed files raise one-line SpecErrors.

    A key given twice in one mapping is an error (plain YAML keeps the last one silently).
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise SpecError(f"{p}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SpecError(
            f"{p}: not a UTF-8 text file (byte {err.start}: {err.object[err.start]:#04x})"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{p}: {where}malformed YAML: {problem}") from None


def load_spec(path: str | Path, model: type[S]) -> S:
    data = load_yaml(path)
    if data is None:
        raise SpecError(f"{path}: file is empty")
    return parse_spec(data, model, str(path))


def load_devices(path: str | Path) -> DevicePool:
    return load_spec(path, DevicePool)


def load_flavors(path: str | Path) -> FlavorCatalog:
    return load_spec(path, FlavorCatalog)


def load_service(path: str | Path) -> ServiceSpec:
    return load_spec(path, ServiceSpec)


def load_stress_space(path: str | Path) -> StressSpace:
    return load_spec(path, StressSpace)
