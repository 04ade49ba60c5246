"""Workload traces: load, check, resample, scale and expand to per-request arrivals.

:func:`load_trace` reads a vendored trace by its name (``bikeshare``, ``electricity``,
``pedestrians``, ``wikipedia``: :data:`TRACE_NAMES`) or any user CSV (plain or gzip), picks a time column and a value column, and checks the
file strictly: every fault (unparsable time, non-numeric or negative value, duplicate or
out-of-order timestamp, a gap in the time index, too few rows, a missing column) is one
:class:`~edgewise.errors.TraceError` line naming the file, its line and data row.
User traces with gaps are rejected; a vendored trace (none has gaps today) would have its gaps filled by linear interpolation, the number of filled rows
kept in ``series.attrs['filled_rows']``.

Reading the file is the only effect; the other helpers are pure functions of a series.
"""

from __future__ import annotations

import functools
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from edgewise.errors import TraceError, UnknownNameError
from edgewise.paths import data_file
from edgewise.stats import poisson_arrivals

__all__ = [
    "TRACE_NAMES",
    "bin_seconds",
    "compress_time",
    "load_trace",
    "poisson_arrivals",
    "resample",
    "scale_to_peak",
    "trace_arrivals",
]

TRACE_NAMES: dict[str, str] = {
    "bikeshare": "bikeshare_hourly.csv.gz",
    "electricity": "electricity_hourly.csv.gz",
    "pedestrians": "pedestrians_hourly.csv.gz",
    "wikipedia": "wikipedia_daily.csv.gz",
}
"""Named traces shipped in ``edgewise/data`` (name -> file); sources and licences in
``edgewise/data/ATTRIBUTION.md``: ``bikeshare`` (hourly rides), ``electricity`` (hourly
PJM East load, 16 weeks), ``pedestrians`` (hourly Melbourne station counts, 16 weeks),
``wikipedia`` (daily page views of one article, 448 days)."""

_SNIFF_ROWS = 20


def _where(name: str, row: int) -> str:
    """``'file.csv line 5 (data row 4)'`` for 0-based data index ``row`` (header on line 1)."""
    return f"{name} line {row + 2} (data row {row + 1})"


def _read_cells(path: Path, name: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            compression="infer",
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise TraceError(f"{name}: file is empty (expected a header line and data rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, zlib.error) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TraceError(f"{name}: cannot read as CSV: {first}") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.fillna("").apply(lambda col: col.str.strip())
    # blank lines at the end of a file are not data rows
    nonblank = (df != "").any(axis=1).to_numpy()
    last = int(np.flatnonzero(nonblank)[-1]) + 1 if nonblank.any() else 0
    return df.iloc[:last]


def _parse_times(cells: pd.Series) -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times = pd.to_datetime(cells, errors="coerce")
        if not pd.api.types.is_datetime64_any_dtype(times):  # mixed UTC offsets
            times = pd.to_datetime(cells, errors="coerce", utc=True)
    return times


def _numeric_share(cells: pd.Series) -> float:
    sample = cells[cells != ""].head(_SNIFF_ROWS)
    if sample.empty:
        return 0.0
    return float(pd.to_numeric(sample, errors="coerce").notna().mean())


def _pick_columns(
    df: pd.DataFrame, name: str, time_col: str | None, value_col: str | None
) -> tuple[str, str]:
    cols = list(df.columns)
    for wanted, role in ((time_col, "time"), (value_col, "value")):
        if wanted is not None and wanted not in cols:
            raise TraceError(f"{name}: no {role} column {wanted!r} (columns: {', '.join(cols)})")
    if time_col is None:
        for col in cols:
            if col == value_col or _numeric_share(df[col]) == 1.0:
                continue
            sample = df[col][df[col] != ""].head(_SNIFF_ROWS)
            if not sample.empty and _parse_times(sample).notna().mean() >= 0.5:
                time_col = col
                break
        else:
            raise TraceError(
                f"{name}: no date/time column found (columns: {', '.join(cols)}); pass time_col"
            )
    if value_col is None:
        rest = [c for c in cols if c != time_col]
        numeric = [c for c in rest if _numeric_share(df[c]) >= 0.5]
        if numeric:
            value_col = numeric[0]
        elif len(rest) == 1:
            value_col = rest[0]
        else:
            raise TraceError(
                f"{name}: no numeric value column found (columns: {', '.join(cols)}); pass value_col"
            )
    return time_col, value_col


def _step_of(diffs: np.ndarray) -> np.timedelta64:
    """Most common positive spacing (ties -> the smallest)."""
    values, counts = np.unique(diffs[diffs > np.timedelta64(0)], return_counts=True)
    return values[np.flatnonzero(counts == counts.max())[0]]


def _check_index(
    times: pd.Series, name: str, fill_gaps: bool
) -> tuple[pd.DatetimeIndex, pd.DateOffset, bool]:
    """Check order and spacing. Returns the index, its frequency and whether gaps exist."""
    t = pd.DatetimeIndex(times)
    diffs = np.diff(t.asi8)
    bad_order = np.flatnonzero(diffs <= 0)
    if bad_order.size:
        i = int(bad_order[0]) + 1
        if diffs[i - 1] == 0:
            raise TraceError(
                f"{_where(name, i)}: duplicate timestamp {t[i]} (same as the row before)"
            )
        raise TraceError(f"{_where(name, i)}: timestamps not sorted: {t[i]} comes after {t[i - 1]}")
    if len(t) >= 3:
        inferred = pd.infer_freq(t)
        if inferred is not None:
            return t, to_offset(inferred), False
    td = np.diff(t.values)
    step = _step_of(td)
    offset = to_offset(pd.Timedelta(step))
    off = np.flatnonzero(td != step)
    if off.size == 0:
        return t, offset, False
    for pos in off.tolist():
        i = pos + 1
        irregular = td[pos] % step != np.timedelta64(0) or td[pos] < step
        if irregular:
            raise TraceError(
                f"{_where(name, i)}: irregular spacing: {pd.Timedelta(td[pos])} after "
                f"{t[i - 1]}, expected multiples of {pd.Timedelta(step)}"
            )
        if not fill_gaps:
            missing = int(td[pos] // step) - 1
            raise TraceError(
                f"{_where(name, i)}: gap in the time index: {missing} missing "
                f"{offset.freqstr} step(s) between {t[i - 1]} and {t[i]}"
            )
    return t, offset, True


def _load_csv(
    path: Path, name: str, time_col: str | None, value_col: str | None, fill_gaps: bool
) -> pd.Series:
    df = _read_cells(path, name)
    if len(df) < 2:
        raise TraceError(f"{name}: needs at least 2 data rows, found {len(df)}")
    tcol, vcol = _pick_columns(df, name, time_col, value_col)

    times = _parse_times(df[tcol])
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        cell = df[tcol].iloc[i]
        what = "empty time" if cell == "" else f"unparsable time {cell!r}"
        raise TraceError(f"{_where(name, i)}: {what} in column {tcol!r}")

    values = pd.to_numeric(df[vcol], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        cell = df[vcol].iloc[i]
        what = "empty value" if cell == "" else f"non-numeric value {cell!r}"
        if cell != "" and not np.isnan(values[i]):
            what = f"non-finite value {cell!r}"
        raise TraceError(f"{_where(name, i)}: {what} in column {vcol!r}")
    bad = np.flatnonzero(values < 0)
    if bad.size:
        i = int(bad[0])
        raise TraceError(f"{_where(name, i)}: negative value {df[vcol].iloc[i]} in column {vcol!r}")

    index, offset, has_gaps = _check_index(times, name, fill_gaps)
    series = pd.Series(values, index=index, name=vcol)
    filled = 0
    if has_gaps:
        full = pd.date_range(index[0], index[-1], freq=offset)
        filled = len(full) - len(index)
        series = series.reindex(full).interpolate(method="linear")
    series.index = pd.DatetimeIndex(series.index, freq=offset)
    series.index.name = tcol
    series.attrs.update(
        {"source": str(path), "time_col": tcol, "value_col": vcol, "filled_rows": filled}
    )
    return series


@functools.lru_cache(maxsize=4)
def _load_named(trace: str) -> pd.Series:
    path = data_file(TRACE_NAMES[trace])
    return _load_csv(path, trace, None, None, fill_gaps=True)


def load_trace(
    source: str | Path, time_col: str | None = None, value_col: str | None = None
) -> pd.Series:
    """Load a trace as a float series on a regular :class:`pandas.DatetimeIndex`.

    Parameters
    ----------
    source : str or Path
        A name of :data:`TRACE_NAMES` (``'bikeshare'``: the vendored hourly Capital
        Bikeshare counts, 2010-09-20 to 2019-09-01, 78,421 hours) or the path of a CSV file, plain or compressed
        (``.gz``, ``.bz2``, ``.zip``, ``.xz``: inferred from the suffix).
    time_col : str, optional
        Column holding the timestamps; default: the first column, not all plain numbers,
        most of whose first values parse as date/times.
    value_col : str, optional
        Column holding the counts or rates; default: the first other numeric column.

    Returns
    -------
    pandas.Series
        Values as float64, index with its ``freq`` set (minute, hourly, daily, ...).
        ``attrs`` holds ``source``, ``time_col``, ``value_col`` and ``filled_rows``.

    Raises
    ------
    TraceError
        One line naming the file, its line and data row, and the fault.
    UnknownNameError
        ``source`` is neither a file nor a known trace name.
    """
    if isinstance(source, str) and source in TRACE_NAMES and not Path(source).exists():
        if time_col is not None or value_col is not None:
            raise TraceError(f"{source}: named traces have fixed columns (ts, count)")
        cached = _load_named(source)
        out = cached.copy()
        out.attrs = dict(cached.attrs)
        return out
    path = Path(source)
    if not path.is_file():
        raise UnknownNameError(
            f"no trace {str(source)!r}: not a file, and known trace names are: "
            f"{', '.join(TRACE_NAMES)}"
        )
    return _load_csv(path, str(source), time_col, value_col, fill_gaps=False)


def bin_seconds(series: pd.Series) -> float:
    """Length in seconds of one step of a regular series (its index ``freq``)."""
    index = series.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError("series must have a DatetimeIndex")
    freq = index.freq
    if freq is None:
        if len(index) < 2:
            raise ValueError("cannot tell the step of a series with no freq and < 2 points")
        return float((index[1] - index[0]).total_seconds())
    try:
        return float(pd.Timedelta(freq).total_seconds())
    except ValueError:
        raise ValueError(f"frequency {freq.freqstr!r} has no fixed length in seconds") from None


def resample(series: pd.Series, freq: str, how: str = "sum") -> pd.Series:
    """Change the step of a regular series.

    Parameters
    ----------
    series : pandas.Series
        Regular series from :func:`load_trace`.
    freq : str
        Target pandas frequency (``'min'``, ``'15min'``, ``'h'``, ``'D'``, ``'W'``...).
    how : {'sum', 'mean'}
        ``'sum'`` for counts (a coarser bin holds the sum; a finer bin an equal share),
        ``'mean'`` for rates (a coarser bin holds the mean; finer bins repeat the value).

    Coarser bins that the series covers only partly (at its two ends) are dropped when
    the ratio of the steps is fixed, so a daily sum never counts half a day.
    """
    if how not in ("sum", "mean"):
        raise ValueError(f"how must be 'sum' or 'mean', got {how!r}")
    target = to_offset(freq)
    try:
        new_s = float(pd.Timedelta(target).total_seconds())
    except ValueError:
        new_s = float("nan")
    old_s = bin_seconds(series)
    if np.isfinite(new_s) and new_s < old_s:
        ratio = old_s / new_s
        if abs(ratio - round(ratio)) > 1e-9:
            raise ValueError(f"step {old_s} s is not a whole multiple of {freq!r}")
        r = round(ratio)
        values = np.repeat(series.to_numpy(dtype=float), r)
        if how == "sum":
            values = values / r
        index = pd.date_range(series.index[0], periods=len(values), freq=target)
        out = pd.Series(values, index=index, name=series.name)
    else:
        grouped = series.resample(target, label="left", closed="left")
        out = grouped.sum() if how == "sum" else grouped.mean()
        if np.isfinite(new_s):
            ratio = new_s / old_s
            if abs(ratio - round(ratio)) > 1e-9:
                raise ValueError(f"{freq!r} is not a whole multiple of the step ({old_s} s)")
            full = round(ratio)
            out = out[grouped.count() == full]
            out.index = pd.DatetimeIndex(out.index, freq=None)
            if len(out) >= 2:
                out = out.asfreq(target)
    out.attrs = dict(series.attrs)
    return out


def scale_to_peak(series: pd.Series, peak_rps: float) -> pd.Series:
    """Rescale a trace linearly so that its maximum is ``peak_rps`` requests per second."""
    if not peak_rps > 0:
        raise ValueError(f"peak_rps must be positive, got {peak_rps}")
    peak = float(series.max())
    if not peak > 0:
        raise TraceError("cannot scale a trace whose values are all zero")
    out = series.astype(float) * (peak_rps / peak)
    out.attrs = dict(series.attrs)
    return out


def compress_time(series: pd.Series, speedup: float) -> pd.Series:
    """Replay a trace ``speedup`` times faster: same values, time axis divided by ``speedup``.

    An hourly trace compressed by 3600 has one point per second. Values are unchanged:
    scale them separately (:func:`scale_to_peak`) to the request rate of the replay.
    """
    if not speedup > 0:
        raise ValueError(f"speedup must be positive, got {speedup}")
    step = pd.Timedelta(seconds=bin_seconds(series) / speedup)
    if step <= pd.Timedelta(0):
        raise ValueError(f"speedup {speedup} leaves a step shorter than a nanosecond")
    start = series.index[0]
    index = pd.date_range(start, periods=len(series), freq=step)
    out = pd.Series(series.to_numpy(dtype=float), index=index, name=series.name)
    out.attrs = dict(series.attrs)
    return out


def trace_arrivals(rate_series: pd.Series, seed: int | np.random.Generator) -> np.ndarray:
    """Poisson arrival times (s from the first bin) for a series of rates in requests/s."""
    return poisson_arrivals(rate_series.to_numpy(dtype=float), bin_seconds(rate_series), seed)
