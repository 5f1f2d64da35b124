"""Few-shot curves (accuracy vs shots, one line per method), as in CoOp/ProGrad's figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from prograd_pl.results.aggregate import Table


def _x(shots: int) -> float:
    """log2 shot axis; 0 shots (zero-shot CLIP) sits one step left of 1 shot."""
    return math.log2(shots) if shots > 0 else -1.0


def plot_fewshot_curves(tables: Sequence[Table], path: str | Path, ncols: int = 4) -> Path | None:
    """One subplot per dataset plus an "Average" panel; shaded band = ±std over seeds. None if nothing to plot.

    Takes the per-method few-shot tables from ``aggregate.fewshot_tables``; incomplete points are hollow.
    """
    # Figure + Agg canvas, not pyplot: no global backend switch, safe in notebooks and headless jobs.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = [t for t in tables if t.meta.get("kind") == "fewshot"]
    if not curves:
        return None
    panels: list[str] = []
    for t in curves:
        panels += [label for label, _ in t.rows if label != "Average" and label not in panels]
    panels.append("Average")
    backbones = {(t.meta["backbone"], t.meta["pretrained"]) for t in curves}
    all_shots = sorted({s for t in curves for s in t.meta["shots"]})

    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(3.6 * ncols, 3.0 * nrows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: dict[str, object] = {}
    for ax, panel in zip(axes.flat, panels):
        for i, t in enumerate(curves):
            label = t.meta["method"] + (f" [{t.meta['variant']}]" if t.meta["variant"] else "")
            if len(backbones) > 1:
                label += f" · {t.meta['backbone']}"
            row = next((cells for lab, cells in t.rows if lab == panel), None)
            if row is None:
                continue
            pts = [(s, c) for s, c in zip(t.meta["shots"], row) if not c.empty]
            if not pts:
                continue
            colour = colours[i % len(colours)]
            xs = [_x(s) for s, _ in pts]
            ys = [c.mean for _, c in pts]
            marker = "*" if len(pts) == 1 and pts[0][0] == 0 else "o"
            (line,) = ax.plot(
                xs,
                ys,
                marker=marker,
                color=colour,
                label=label,
                linestyle="-" if len(pts) > 1 else "none",
                markersize=9 if marker == "*" else 5,
            )
            for x, (_, c) in zip(xs, pts):
                if c.mark:
                    ax.plot([x], [c.mean], marker="o", color="white", markersize=3, zorder=3)
            stds = [c.std for _, c in pts]
            if len(pts) > 1 and all(s is not None for s in stds):
                ax.fill_between(
                    xs,
                    [y - s for y, s in zip(ys, stds)],
                    [y + s for y, s in zip(ys, stds)],
                    color=colour,
                    alpha=0.15,
                    linewidth=0,
                )
            handles.setdefault(label, line)
        ax.set_title(panel, fontsize=10)
        ax.set_xticks([_x(s) for s in all_shots], [str(s) for s in all_shots])
        ax.set_xlabel("shots per class", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=min(len(handles), 5),
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
        )
    fig.tight_layout(rect=(0, 0.06 if handles else 0, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_table_bars(tables: Sequence[Table], path: str | Path) -> Path | None:
    """Grouped bars of the last table that has rows (the averaged table of a base-to-new, DG or cross-dataset
    report): one group per column, one bar per row, error bars = std over seeds where known."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    table = next((t for t in reversed(tables) if t.rows), None)
    if table is None:
        return None
    n_rows = len(table.rows)
    width = 0.8 / max(n_rows, 1)
    fig = Figure(figsize=(max(4.0, 1.1 * len(table.columns) * max(1, n_rows / 2)), 3.4))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, cells) in enumerate(table.rows):
        xs = [j + (i - (n_rows - 1) / 2) * width for j in range(len(table.columns))]
        means = [0.0 if c.empty else c.mean for c in cells]
        errs = [0.0 if c.empty or c.std is None else c.std for c in cells]
        ax.bar(xs, means, width, yerr=errs, label=label, capsize=2)
    ax.set_xticks(range(len(table.columns)))
    ax.set_xticklabels(table.columns, rotation=20 if len(table.columns) > 4 else 0)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(table.title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
