"""Hypothesis strategies of malformed spec files (service, flavors, devices, stress space).

Each case starts from a valid document and applies one fault: a field set to a value its
constraint refuses (wrong type, negative, zero, NaN, infinite, huge, unknown model), a
required field removed, an unknown key, a container of the wrong type, a duplicate
entry; or a fault of the file itself: binary bytes, a key given twice, broken YAML, an
empty file, a top level that is not a mapping. A case carries the substrings its error
line must contain (the field, the duplicate, the fault).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from hypothesis import strategies as st

from edgewise.config import MODEL_NAMES

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class BadFile:
    """A malformed input file and what its one error line must name."""

    content: bytes
    names: tuple[str, ...]
    fault: str


@dataclass(frozen=True)
class SpecKind:
    """A spec kind: a valid document, its constrained fields and its shapes."""

    base: dict[str, Any]
    fields: dict[Path_, str]  # path -> rule
    required: tuple[Path_, ...]
    mappings: tuple[Path_, ...]  # where an unknown key is refused
    containers: tuple[Path_, ...]  # lists and mappings that must keep their type
    list_key: str | None  # the list whose entries must be distinct


SERVICE = SpecKind(
    base={
        "name": "svc",
        "variants": [
            {"model": "mobilenet_v2", "accuracy": 0.72, "batch_size": 1},
            {"model": "resnet50", "accuracy": 0.76},
        ],
        "min_accuracy": 0.7,
        "slo": {"latency_ms": 150, "percentile": 99},
        "startup_s": 60,
    },
    fields={
        ("name",): "name",
        ("variants", 0, "model"): "model",
        ("variants", 1, "model"): "model",
        ("variants", 0, "accuracy"): "frac",
        ("variants", 0, "batch_size"): "int_pos",
        ("min_accuracy",): "frac",
        ("slo", "latency_ms"): "pos",
        ("slo", "percentile"): "pct",
        ("startup_s",): "nonneg",
    },
    required=(("name",), ("variants",), ("slo",), ("slo", "latency_ms"), ("variants", 1, "model")),
    mappings=((), ("slo",), ("variants", 0)),
    containers=(("variants",), ("slo",), ("variants", 0)),
    list_key="variants",
)

FLAVORS = SpecKind(
    base={
        "flavors": [
            {"name": "small", "cpus": 0.5, "memory_mb": 1024, "price_per_hour": 0.025},
            {"name": "large", "cpus": 2.0, "price_per_hour": 0.096, "max_replicas": 20},
        ]
    },
    fields={
        ("flavors", 0, "name"): "name",
        ("flavors", 0, "cpus"): "pos",
        ("flavors", 1, "cpus"): "pos",
        ("flavors", 0, "memory_mb"): "int_pos",
        ("flavors", 0, "price_per_hour"): "nonneg",
        ("flavors", 1, "max_replicas"): "int_nonneg",
    },
    required=(
        ("flavors",),
        ("flavors", 1, "name"),
        ("flavors", 0, "cpus"),
        ("flavors", 1, "price_per_hour"),
    ),
    mappings=((), ("flavors", 0)),
    containers=(("flavors",), ("flavors", 1)),
    list_key="flavors",
)

DEVICES = SpecKind(
    base={
        "devices": [
            {
                "name": "a",
                "cpus": 1.0,
                "memory_mb": 2048,
                "price_per_hour": 0.0,
                "background": {
                    "model": "digits_cnn",
                    "rate_rps": 5,
                    "deadline_ms": 200,
                    "percentile": 99,
                    "batch_size": 1,
                },
                "labels": {"site": "lab"},
            },
            {"name": "b", "cpus": 0.5, "background": {"rate_rps": 2, "deadline_ms": 100}},
        ]
    },
    fields={
        ("devices", 0, "name"): "name",
        ("devices", 1, "cpus"): "pos",
        ("devices", 0, "memory_mb"): "int_pos",
        ("devices", 0, "price_per_hour"): "nonneg",
        ("devices", 0, "background", "model"): "model",
        ("devices", 1, "background", "model"): "model",
        ("devices", 0, "background", "rate_rps"): "pos",
        ("devices", 1, "background", "deadline_ms"): "pos",
        ("devices", 0, "background", "percentile"): "pct",
        ("devices", 0, "background", "batch_size"): "int_pos",
        ("devices", 0, "labels"): "labels",
    },
    required=(
        ("devices",),
        ("devices", 1, "name"),
        ("devices", 0, "cpus"),
        ("devices", 1, "background", "rate_rps"),
        ("devices", 0, "background", "deadline_ms"),
    ),
    mappings=((), ("devices", 1), ("devices", 0, "background")),
    containers=(
        ("devices",),
        ("devices", 0),
        ("devices", 0, "background"),
        ("devices", 0, "labels"),
    ),
    list_key="devices",
)

SPACE = SpecKind(
    base={"resources": {"cpu": [0.0, 0.9], "membw": [0.1, 0.8]}},
    fields={
        ("resources", "cpu", 0): "frac",
        ("resources", "cpu", 1): "frac",
        ("resources", "membw", 1): "frac",
    },
    required=(("resources",),),
    mappings=((),),
    containers=(("resources",), ("resources", "cpu")),
    list_key=None,
)


def format_loc(path: Path_) -> str:
    """A path as the spec loader names it: ``devices[0].background.model``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _numeric_text(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_NOT_NUMBER = st.one_of(
    _TEXT.filter(lambda s: not _numeric_text(s) and s.strip().lower() not in ("true", "false")),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
_FRACTIONAL = st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer())

BAD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "pos": st.one_of(st.floats(max_value=0.0), st.integers(max_value=0), _NOT_NUMBER),
    "nonneg": st.one_of(
        st.floats(max_value=0.0, exclude_max=True), st.integers(max_value=-1), _NOT_NUMBER
    ),
    "frac": st.one_of(
        st.floats(max_value=0.0, exclude_max=True),
        st.floats(min_value=1.0, exclude_min=True),
        st.floats(min_value=1e300),
        _NOT_NUMBER,
    ),
    "pct": st.one_of(
        st.floats(max_value=0.0), st.floats(min_value=100.0, exclude_min=True), _NOT_NUMBER
    ),
    "int_pos": st.one_of(st.integers(max_value=0), _FRACTIONAL, _NOT_NUMBER),
    "int_nonneg": st.one_of(st.integers(max_value=-1), _FRACTIONAL, _NOT_NUMBER),
    "name": st.one_of(st.just(""), st.integers(), st.lists(_TEXT, max_size=2)),
    "model": st.one_of(
        _TEXT.filter(lambda s: s not in MODEL_NAMES), st.integers(), st.lists(_TEXT, max_size=2)
    ),
    "labels": st.one_of(
        st.integers(),
        st.lists(_TEXT, min_size=1, max_size=2),
        st.dictionaries(
            st.from_regex(r"[a-z]{1,4}", fullmatch=True), st.integers(), min_size=1, max_size=2
        ),
    ),
}


def _get(doc: Any, path: Path_) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _dump(doc: Any) -> bytes:
    return yaml.safe_dump(doc, allow_unicode=True, sort_keys=False).encode("utf-8")


@st.composite
def _bad_value(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    doc = copy.deepcopy(kind.base)
    path = draw(st.sampled_from(sorted(kind.fields, key=str)))
    value = draw(BAD_VALUES[kind.fields[path]])
    _get(doc, path[:-1])[path[-1]] = value
    return BadFile(_dump(doc), (format_loc(path),), f"bad value {value!r} at {format_loc(path)}")


@st.composite
def _missing(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    doc = copy.deepcopy(kind.base)
    path = draw(st.sampled_from(kind.required))
    del _get(doc, path[:-1])[path[-1]]
    return BadFile(_dump(doc), (format_loc(path), "Field required"), f"missing {format_loc(path)}")


@st.composite
def _unknown_key(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    doc = copy.deepcopy(kind.base)
    path = draw(st.sampled_from(kind.mappings))
    target = _get(doc, path)
    key = draw(
        st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(lambda k: k not in target)
    )
    target[key] = draw(st.one_of(st.integers(), _TEXT))
    loc = format_loc((*path, key))
    return BadFile(_dump(doc), (loc,), f"unknown key {loc}")


@st.composite
def _wrong_type(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    doc = copy.deepcopy(kind.base)
    path = draw(st.sampled_from(kind.containers))
    was = _get(doc, path)
    other = (
        st.lists(st.integers(), max_size=2)
        if isinstance(was, dict)
        else st.dictionaries(st.sampled_from("xyz"), st.integers(), max_size=2)
    )
    value = draw(st.one_of(st.integers(), _TEXT.filter(lambda s: s.strip() != ""), other))
    _get(doc, path[:-1])[path[-1]] = value
    return BadFile(_dump(doc), (format_loc(path),), f"{format_loc(path)} as {value!r}")


@st.composite
def _duplicate(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    assert kind.list_key is not None
    doc = copy.deepcopy(kind.base)
    entries = doc[kind.list_key]
    i = draw(st.integers(0, len(entries) - 1))
    name = entries[i].get("name", entries[i].get("model"))
    entries.insert(draw(st.integers(0, len(entries))), copy.deepcopy(entries[i]))
    return BadFile(_dump(doc), (kind.list_key, repr(name)), f"duplicate {kind.list_key} entry")


@st.composite
def _duplicate_key(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    key = draw(st.sampled_from(list(kind.base)))
    text = _dump(kind.base) + f"{key}: {draw(st.integers())}\n".encode()
    return BadFile(text, (f"duplicate key {key!r}",), f"duplicate key {key}")


@st.composite
def _binary(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    body = draw(st.binary(max_size=64))
    at = draw(st.integers(0, len(body)))
    return BadFile(body[:at] + b"\xff" + body[at:], ("not a UTF-8 text file",), "binary")


@st.composite
def _broken_yaml(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    tail = draw(
        st.sampled_from(["x: [unclosed\n", "x: {a: 1\n", "a: b: c\n", "\tx: 1\n", '"open\n'])
    )
    return BadFile(_dump(kind.base) + tail.encode(), ("malformed YAML",), f"broken YAML {tail!r}")


@st.composite
def _empty(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    text = draw(
        st.sampled_from(["", "\n", "   \n\n", "# only a comment\n", "---\n", "~\n", "null\n"])
    )
    return BadFile(text.encode(), ("file is empty",), f"empty {text!r}")


@st.composite
def _not_a_mapping(draw: st.DrawFn, kind: SpecKind) -> BadFile:
    doc = draw(
        st.one_of(
            st.integers(),
            st.lists(st.integers(), max_size=3),
            _TEXT.filter(lambda s: s.strip() != ""),
        )
    )
    return BadFile(_dump(doc), ("(top level)",), f"top level {doc!r}")


def bad_spec(kind: SpecKind) -> st.SearchStrategy[BadFile]:
    """Malformed files of ``kind``, one fault each, all sorts drawn evenly."""
    makers: list[Callable[[SpecKind], st.SearchStrategy[BadFile]]] = [
        _bad_value,
        _bad_value,
        _missing,
        _unknown_key,
        _wrong_type,
        _duplicate_key,
        _binary,
        _broken_yaml,
        _empty,
        _not_a_mapping,
    ]
    if kind.list_key is not None:
        makers.append(_duplicate)
    return st.one_of(*(make(kind) for make in makers))
