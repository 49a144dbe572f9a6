"""Training logs a person can read: one JSON object per line (metrics.jsonl) and a PNG of the curves.

matplotlib is optional: without it the PNG is skipped and each script's closing summary line says
how to get it (the JSONL is always there, and any plotting tool reads it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path


class MetricsLog:
    """Append-only metrics.jsonl; on --resume the existing lines are kept and new ones follow."""

    def __init__(self, path: str | Path, resume: bool = False, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not resume and self.path.exists():
                self.path.unlink()

    def log(self, **row) -> None:
        if not self.enabled:
            return
        clean = {k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def truncate_after(path: str | Path, key: str, value) -> None:
    """Drop rows whose `key` is beyond `value` (a resumed run rewrites what came after its checkpoint)."""
    path = Path(path)
    if not path.exists():
        return
    rows = [r for r in read_jsonl(path) if r.get(key, -math.inf) <= value]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def plot_curves(path: str | Path, out_png: str | Path, panels: list[tuple[str, list[str]]], x: str = "step",
                title: str = "") -> Path | None:
    """Draw one panel per (title, [keys]) from metrics.jsonl. Returns the PNG's path, or None when
    matplotlib is not installed (`summary_outputs` then says how to install it)."""
    try:
        # A Figure drawn straight onto the Agg canvas: no pyplot and no change of matplotlib's backend,
        # so a notebook that calls the scripts keeps drawing its own figures inline.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    rows = read_jsonl(path)
    fig = Figure(figsize=(4.2 * len(panels), 3.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (name, keys) in zip(axes[0], panels):
        for key in keys:
            pts = [(r[x], r[key]) for r in rows if key in r and x in r and r[key] is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o" if len(pts) < 30 else None, ms=3, label=key)
        ax.set_title(name)
        ax.set_xlabel(x)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return Path(out_png)


# ----------------------------------------------------------------------------------------------------
# The closing `summary:` line of each training script: what was done, how well, and where it all is.

def duration(seconds: float) -> str:
    """3 min 57 s, 42 s, 1 h 05 min: how long a run trained, for a person to read."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def summary_outputs(checkpoint: str | Path, metrics: str | Path, plot: Path | None) -> str:
    """checkpoint ..., metrics ..., plot ... (or how to get the plot when matplotlib is missing)."""
    drawn = f"plot {plot}" if plot is not None else "no plot: pip install -e '.[plot]'"
    return f"checkpoint {checkpoint}, metrics {metrics}, {drawn}"
