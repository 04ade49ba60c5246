"""The demo's pieces that need no Ray: the digits' parts, their folders, the summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from edgewise.demo import DemoSummary
from edgewise.demo.owndata import LABELS, digits_parts, pixel_stats, write_folders
from edgewise.demo.ownloop import _labelled_images


def test_the_parts_are_disjoint_cover_the_digits_and_only_the_drifted_ones_turn() -> None:
    parts = digits_parts(seed=0)
    sizes = [len(getattr(parts, n)[1]) for n in parts.__dataclass_fields__]
    assert sum(sizes) == 1797 and min(sizes) > 150
    for name in parts.__dataclass_fields__:
        images, labels = getattr(parts, name)
        assert images.shape == (len(labels), 32, 32) and images.dtype == np.float32
        assert images.min() >= 0.0 and images.max() <= 1.0
        assert set(labels.tolist()) == set(range(10))
    unturned = digits_parts(seed=0, angle_deg=0.0)
    assert np.array_equal(parts.clean_test[0], unturned.clean_test[0])
    assert not np.allclose(parts.drift_test[0], unturned.drift_test[0], atol=0.05)
    assert np.array_equal(parts.drift_test[1], unturned.drift_test[1])
    other = digits_parts(seed=1)
    assert not np.array_equal(parts.clean_train[1], other.clean_train[1])


def test_the_folders_read_back_with_their_labels(tmp_path: Path) -> None:
    parts = digits_parts(seed=0)
    folders = write_folders(parts, tmp_path / "digits")
    (folders.clean_test / "3" / "stale.png").write_bytes(b"left by an earlier run")
    folders = write_folders(parts, tmp_path / "digits")  # a rerun replaces the folders
    assert sorted(p.name for p in folders.drift_test.iterdir()) == sorted(LABELS)
    labelled = list(_labelled_images(folders.drift_test))
    assert len(labelled) == len(parts.drift_test[1])
    assert sorted(label for _body, label in labelled) == sorted(str(d) for d in parts.drift_test[1])
    assert all(body.startswith(b"\x89PNG") for body, _label in labelled)
    mean, std = pixel_stats(parts.clean_train[0])
    assert 0.1 < mean < 0.5 and 0.1 < std < 0.5 and round(mean, 3) == mean


def test_summary_value_names_the_row() -> None:
    summary = DemoSummary()
    summary.add("serve", "served accuracy", "0.912")
    summary.add("serve", "served accuracy", "0.5")
    assert summary.value("served accuracy") == "0.912"
    with pytest.raises(KeyError):
        summary.value("no such row")


def test_the_demo_command_is_registered() -> None:
    from edgewise.cli.demo import register

    app = typer.Typer()
    register(app)
    app.command("other")(lambda: None)
    res = CliRunner().invoke(app, ["demo", "--help"])
    assert res.exit_code == 0 and "--seed" in res.output and "roll out" in res.output
