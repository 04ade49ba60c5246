"""Re-training report: per-device timeline plot with failures marked (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def timeline_plot(
    steps: Sequence[Mapping[str, Any]],
    failures: Sequence[Mapping[str, Any]],
    out: Path,
    title: str = "re-training timeline",
) -> Path:
    """One row per device, a bar per step it computed; failures as red lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not steps:
        raise ValueError("no steps to plot")
    t0 = min(float(s["t0"]) for s in steps)
    devices = sorted({str(s["device"]) for s in steps})
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(devices) + 1.5))
    for row, dev in enumerate(devices):
        spans = [
            (float(s["t0"]) - t0, float(s["t"]) - float(s["t0"]))
            for s in steps
            if s["device"] == dev
        ]
        ax.broken_barh(spans, (row - 0.35, 0.7), facecolors="tab:blue", edgecolor="white")
    for f in failures:
        t = float(f.get("t_kill", f["t"])) - t0
        ax.axvline(t, color="red", linestyle="--")
        label = f" failure: {', '.join(f['devices']) or 'group'}"
        # inside the axes, between the top two rows: never over the title
        ax.text(t, len(devices) - 1.5, label, color="red", va="center")
    ax.set_yticks(range(len(devices)), devices)
    ax.set_xlabel("seconds since the first step")
    ax.set_title(title)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
