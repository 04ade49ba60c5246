"""Hypothesis strategies of malformed trace files (CSV, plain or gzip).

Each case starts from a valid hourly trace and applies one fault: a gap, a negative
count, a non-numeric or empty cell, a duplicate or unparsable timestamp, too few rows,
garbage bytes, a corrupt or truncated gzip body, an empty file.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

import pandas as pd
from hypothesis import strategies as st


@dataclass(frozen=True)
class BadTrace:
    """A malformed trace file, its suffix and what its error line must name."""

    content: bytes
    suffix: str
    names: tuple[str, ...]
    fault: str


@st.composite
def _rows(draw: st.DrawFn, min_rows: int = 4) -> list[list[str]]:
    n = draw(st.integers(min_rows, 12))
    start = pd.Timestamp("2020-01-01") + pd.Timedelta(hours=draw(st.integers(0, 10_000)))
    values = draw(st.lists(st.integers(0, 10_000), min_size=n, max_size=n))
    return [[str(start + pd.Timedelta(hours=i)), str(v)] for i, v in enumerate(values)]


def _csv(rows: list[list[str]]) -> bytes:
    return ("time,value\n" + "".join(",".join(r) + "\n" for r in rows)).encode()


def _line(i: int) -> str:
    return f"line {i + 2} (data row {i + 1})"


@st.composite
def _gap(draw: st.DrawFn) -> BadTrace:
    rows = draw(_rows())
    i = draw(st.integers(1, len(rows) - 2))
    k = draw(st.integers(1, min(3, len(rows) - 1 - i, len(rows) - 3)))  # 3 rows stay
    del rows[i : i + k]
    return BadTrace(_csv(rows), ".csv", (_line(i), "gap in the time index"), f"gap of {k}")


@st.composite
def _negative(draw: st.DrawFn) -> BadTrace:
    rows = draw(_rows())
    i = draw(st.integers(0, len(rows) - 1))
    rows[i][1] = str(-draw(st.integers(1, 10**12)))
    return BadTrace(_csv(rows), ".csv", (_line(i), "negative value"), "negative")


_NOT_NUMBER = st.text(st.characters(codec="utf-8", exclude_characters=",\r\n\"'"), max_size=8)


def _is_number(s: str) -> bool:
    try:
        float(s.strip())
    except ValueError:
        return False
    return True


@st.composite
def _non_numeric(draw: st.DrawFn) -> BadTrace:
    rows = draw(_rows())
    i = draw(st.integers(0, len(rows) - 1))
    cell = draw(st.one_of(st.sampled_from(["nan", "inf", "-inf", "", "1,5"]), _NOT_NUMBER))
    cell = cell if cell in ("nan", "inf", "-inf") or not _is_number(cell) else cell + "x"
    cell = f'"{cell}"' if "," in cell else cell
    rows[i][1] = cell
    return BadTrace(_csv(rows), ".csv", (_line(i), "value"), f"cell {cell!r}")


@st.composite
def _duplicate_time(draw: st.DrawFn) -> BadTrace:
    rows = draw(_rows())
    i = draw(st.integers(1, len(rows) - 1))
    rows[i][0] = rows[i - 1][0]
    return BadTrace(_csv(rows), ".csv", (_line(i), "duplicate timestamp"), "duplicate time")


@st.composite
def _bad_time(draw: st.DrawFn) -> BadTrace:
    rows = draw(_rows())
    i = draw(st.integers(1, len(rows) - 1))
    rows[i][0] = draw(st.sampled_from(["", "yesterday", "2020-13-45 99:00", "not a time", "--"]))
    return BadTrace(_csv(rows), ".csv", (_line(i),), f"time {rows[i][0]!r}")


@st.composite
def _too_few(draw: st.DrawFn) -> BadTrace:
    rows = draw(_rows())[: draw(st.integers(0, 1))]
    return BadTrace(_csv(rows), ".csv", ("needs at least 2 data rows",), f"{len(rows)} rows")


@st.composite
def _garbage(draw: st.DrawFn) -> BadTrace:
    body = draw(st.binary(max_size=200))
    at = draw(st.integers(0, len(body)))
    return BadTrace(body[:at] + b"\xff\xfe" + body[at:], ".csv", (), "garbage bytes")


@st.composite
def _corrupt_gzip(draw: st.DrawFn) -> BadTrace:
    packed = bytearray(gzip.compress(_csv(draw(_rows(min_rows=6))), mtime=0))
    if draw(st.booleans()):  # flip bytes of the deflate body or the trailer (CRC, size)
        for at in draw(
            st.lists(st.integers(10, len(packed) - 1), min_size=1, max_size=4, unique=True)
        ):
            packed[at] ^= draw(st.integers(1, 255))
        fault = "corrupt gzip body"
    else:
        packed = packed[: draw(st.integers(10, len(packed) - 1))]
        fault = "truncated gzip"
    return BadTrace(bytes(packed), ".csv.gz", (), fault)


@st.composite
def _empty(draw: st.DrawFn) -> BadTrace:
    text = draw(st.sampled_from(["", "\n", "\n\n  \n"]))
    return BadTrace(text.encode(), ".csv", (), f"empty {text!r}")


def bad_trace() -> st.SearchStrategy[BadTrace]:
    """Malformed traces, one fault each, all sorts drawn evenly."""
    return st.one_of(
        _gap(),
        _negative(),
        _non_numeric(),
        _duplicate_time(),
        _bad_time(),
        _too_few(),
        _garbage(),
        _corrupt_gzip(),
        _empty(),
    )
