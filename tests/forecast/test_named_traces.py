"""The vendored test-set traces load with the strict loader, regular and without gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from edgewise.paths import data_file
from edgewise.workloads.traces import TRACE_NAMES, load_trace

EXPECTED = {"electricity": ("h", 2688), "pedestrians": ("h", 2688), "wikipedia": ("D", 448)}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_trace_loads_without_gaps(name: str) -> None:
    freq, n = EXPECTED[name]
    series = load_trace(name)
    assert len(series) == n
    assert series.index.freqstr == freq
    assert series.attrs["filled_rows"] == 0
    assert np.isfinite(series.to_numpy()).all() and series.min() >= 0
    full = pd.date_range(series.index[0], series.index[-1], freq=freq)
    assert len(full) == len(series)


def test_every_named_trace_is_attributed() -> None:
    attribution = data_file("ATTRIBUTION.md").read_text()
    for file in TRACE_NAMES.values():
        assert f"# {file}" in attribution
        assert data_file(file).stat().st_size < 400_000
