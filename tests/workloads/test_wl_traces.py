"""Traces: the vendored bike-share trace, user CSVs, strict errors, resampling, arrivals."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgewise.errors import TraceError, UnknownNameError
from edgewise.stats import arrival_counts, expected_arrivals
from edgewise.workloads import traces
from edgewise.workloads.traces import (
    bin_seconds,
    compress_time,
    load_trace,
    poisson_arrivals,
    resample,
    scale_to_peak,
    trace_arrivals,
)


def _csv(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _hourly(n: int, start: str = "2024-01-01 00:00") -> str:
    times = pd.date_range(start, periods=n, freq="h")
    return "ts,count\n" + "".join(f"{t:%Y-%m-%d %H:%M:%S},{i % 7}\n" for i, t in enumerate(times))


def test_bikeshare_loads_hourly_without_gaps() -> None:
    s = load_trace("bikeshare")
    assert len(s) == 78_421
    assert s.index.freqstr == "h"
    assert s.dtype == np.float64 and float(s.min()) >= 0
    assert s.index[0] == pd.Timestamp("2010-09-20 12:00:00")
    assert s.index[-1] == pd.Timestamp("2019-09-01 00:00:00")
    assert s.attrs["filled_rows"] == 0
    assert 6.0 < float(s.max() / s.mean()) < 6.5  # peak/mean 6.2 (DESIGN.md)
    s.iloc[0] = -1.0  # a caller's copy: the cached trace stays intact
    assert load_trace("bikeshare").iloc[0] == 11.0


def test_plain_and_gzip_csv_give_the_same_series(tmp_path: Path) -> None:
    text = _hourly(30)
    plain = load_trace(_csv(tmp_path, text))
    gz = tmp_path / "trace.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    zipped = load_trace(gz)
    pd.testing.assert_series_equal(plain, zipped)
    assert plain.index.freqstr == "h" and plain.name == "count" and len(plain) == 30
    assert bin_seconds(plain) == 3600.0


def test_daily_and_minute_traces_and_column_choice(tmp_path: Path) -> None:
    daily = _csv(tmp_path, "day,visits\n2024-03-01,5\n2024-03-02,7\n2024-03-03,0\n", "d.csv")
    s = load_trace(daily)
    assert s.index.freqstr == "D" and s.tolist() == [5.0, 7.0, 0.0]
    minute = _csv(
        tmp_path,
        "id,requests,when,note\n"
        + "".join(f"{i},{i * 1.5},2024-03-01T10:{i:02d}:00,x\n" for i in range(5)),
        "m.csv",
    )
    m = load_trace(minute)
    assert m.index.freqstr == "min" and m.name == "id"  # first numeric column by default
    m2 = load_trace(minute, time_col="when", value_col="requests")
    assert m2.tolist() == [0.0, 1.5, 3.0, 4.5, 6.0] and bin_seconds(m2) == 60.0
    two = load_trace(_csv(tmp_path, "t,v\n2024-01-01 00:00,1\n2024-01-01 00:15,2\n", "two.csv"))
    assert two.index.freqstr == "15min"


BAD_FILES = [
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n2024-01-01 03:00,3\n",
        "line 4 (data row 3): gap in the time index: 1 missing h step(s)",
        id="gap",
    ),
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n2024-01-01 01:00,3\n",
        "line 4 (data row 3): duplicate timestamp 2024-01-01 01:00:00",
        id="duplicate",
    ),
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n2024-01-01 01:00,-5\n2024-01-01 02:00,3\n",
        "line 3 (data row 2): negative value -5 in column 'count'",
        id="negative",
    ),
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n2024-01-01 02:00,abc\n",
        "line 4 (data row 3): non-numeric value 'abc' in column 'count'",
        id="non-numeric",
    ),
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n2024-01-01 01:00,\n2024-01-01 02:00,3\n",
        "line 3 (data row 2): empty value in column 'count'",
        id="empty-value",
    ),
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n2024-01-01 01:00,2\nyesterday-ish,3\n",
        "line 4 (data row 3): unparsable time 'yesterday-ish' in column 'ts'",
        id="bad-time",
    ),
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n2024-01-01 02:00,2\n2024-01-01 01:00,3\n",
        "line 4 (data row 3): timestamps not sorted",
        id="unsorted",
    ),
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n2024-01-01 01:00,2\n2024-01-01 01:30,3\n2024-01-01 02:30,3\n",
        "line 4 (data row 3): irregular spacing",
        id="irregular",
    ),
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n2024-01-01 02:00,2\n2024-01-01 03:00,3\n"
        "2024-01-01 04:00,3\n2024-01-01 04:20,3\n",
        "line 3 (data row 2): gap in the time index",
        id="first-fault-wins",
    ),
    pytest.param(
        "ts,count\n2024-01-01 00:00,1\n", "needs at least 2 data rows, found 1", id="one-row"
    ),
    pytest.param("", "file is empty", id="empty-file"),
    pytest.param("a,b\nx,1\ny,2\n", "no date/time column found (columns: a, b)", id="no-time-col"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_FILES)
def test_bad_files_give_one_line_with_the_row(tmp_path: Path, text: str, expected: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(TraceError) as info:
        load_trace(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert str(path) in message


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = _csv(tmp_path, _hourly(3))
    with pytest.raises(TraceError, match=r"no time column 'when' \(columns: ts, count\)"):
        load_trace(path, time_col="when")
    with pytest.raises(TraceError, match="no value column 'rps'"):
        load_trace(path, value_col="rps")


def test_gzip_errors_carry_the_line_too(tmp_path: Path) -> None:
    gz = tmp_path / "bad.csv.gz"
    gz.write_bytes(gzip.compress(b"ts,count\n2024-01-01 00:00,1\n2024-01-01 00:00,2\n"))
    with pytest.raises(TraceError, match=r"bad.csv.gz line 3 \(data row 2\): duplicate"):
        load_trace(gz)


def test_unknown_trace_name() -> None:
    with pytest.raises(UnknownNameError, match="known trace names are: bikeshare"):
        load_trace("citibike")


def test_named_trace_gaps_are_filled_and_counted(tmp_path: Path) -> None:
    # The loader path the vendored trace takes: gaps interpolated, not rejected.
    text = "ts,count\n2024-01-01 00:00,2\n2024-01-01 01:00,4\n2024-01-01 04:00,10\n2024-01-01 05:00,1\n"
    s = traces._load_csv(_csv(tmp_path, text), "named", None, None, fill_gaps=True)
    assert s.attrs["filled_rows"] == 2
    assert s.index.freqstr == "h" and len(s) == 6
    assert s.tolist() == [2.0, 4.0, 6.0, 8.0, 10.0, 1.0]


def test_resample_keeps_totals_and_drops_partial_days() -> None:
    s = load_trace("bikeshare").iloc[: 24 * 10]  # starts at 12:00: first and last day partial
    daily = resample(s, "D")
    assert daily.index.freqstr == "D" and len(daily) == 9
    first_day = s["2010-09-21"].sum()
    assert daily.iloc[0] == first_day
    quarter = resample(s, "15min")
    assert len(quarter) == 4 * len(s) and quarter.sum() == pytest.approx(s.sum())
    rates = resample(s, "15min", how="mean")
    assert rates.iloc[:4].tolist() == [s.iloc[0]] * 4
    with pytest.raises(ValueError):
        resample(s, "7min")
    with pytest.raises(ValueError):
        resample(s, "90min")


def test_scale_to_peak_and_compress_time() -> None:
    s = load_trace("bikeshare").iloc[:48]
    r = scale_to_peak(s, 40.0)
    assert r.max() == pytest.approx(40.0)
    assert np.allclose(
        r.to_numpy() / s.to_numpy().clip(min=1e-12) * (s > 0), (40.0 / s.max()) * (s > 0)
    )
    fast = compress_time(r, 3600)
    assert bin_seconds(fast) == 1.0 and len(fast) == 48
    assert fast.to_numpy().tolist() == r.to_numpy().tolist()
    with pytest.raises(ValueError):
        compress_time(r, 0)
    with pytest.raises(TraceError):
        scale_to_peak(s * 0, 10.0)


@pytest.mark.parametrize("seed", range(5))
def test_poisson_arrival_count_matches_the_integral_of_the_rate(seed: int) -> None:
    rate = np.concatenate([np.linspace(0.0, 80.0, 50), np.zeros(10), np.full(40, 20.0)])
    times = poisson_arrivals(rate, bin_s=2.0, seed=seed)
    mean = expected_arrivals(rate, 2.0)
    # total ~ Poisson(mean): six standard deviations hold for any seed (p < 2e-9)
    assert abs(times.size - mean) < 6 * np.sqrt(mean)
    counts = arrival_counts(times, 2.0, rate.size)
    assert counts.sum() == times.size
    assert np.all(counts[50:60] == 0)  # zero-rate bins get nothing
    # placement inside each bin is uniform: about half fall in the first half of their bin
    first_half = np.mean(np.mod(times, 2.0) < 1.0)
    assert abs(first_half - 0.5) < 6 * np.sqrt(0.25 / times.size)


@settings(max_examples=30, deadline=None)
@given(
    rates=st.lists(st.floats(0.0, 50.0), min_size=0, max_size=30),
    bin_s=st.floats(0.1, 10.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_poisson_arrivals_are_sorted_in_range_and_reproducible(
    rates: list[float], bin_s: float, seed: int
) -> None:
    rate = np.asarray(rates)
    a = poisson_arrivals(rate, bin_s, seed, start_s=5.0)
    assert np.array_equal(
        a, poisson_arrivals(rate, bin_s, np.random.default_rng(seed), start_s=5.0)
    )
    assert np.all(np.diff(a) >= 0)
    if a.size:
        assert a[0] >= 5.0 and a[-1] < 5.0 + rate.size * bin_s


def test_poisson_arrivals_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        poisson_arrivals(np.array([1.0, -1.0]), 1.0, 0)
    with pytest.raises(ValueError):
        poisson_arrivals(np.array([1.0]), 0.0, 0)
    with pytest.raises(ValueError):
        poisson_arrivals(np.array([np.nan]), 1.0, 0)


def test_trace_arrivals_from_a_compressed_bikeshare_day() -> None:
    day = compress_time(scale_to_peak(load_trace("bikeshare").iloc[:24], 30.0), 3600)
    times = trace_arrivals(day, seed=7)
    mean = float(day.sum())  # 1-second bins
    assert abs(times.size - mean) < 6 * np.sqrt(mean)
    assert times[-1] < 24.0
