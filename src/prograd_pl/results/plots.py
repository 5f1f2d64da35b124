"""Figures of the report's tables: few-shot curves (accuracy vs shots, as in CoOp/ProGrad's figures) and grouped
bars for the other tables; each saved as PNG and PDF.

What a reader of a paper expects: a title that says what is shown, labelled axes, the legend outside the data,
error bars (± population std over seeds) only where a point has two seeds or more and a spread to show, and every
marker explained in the legend (hollow markers and hatched bars: fewer seeds than the others, the table's ``*``).
"""

from __future__ import annotations

import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from prograd_pl.results.aggregate import Cell, Table, backbone_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS: tuple[str, ...] = ("png", "pdf")
INCOMPLETE = "fewer seeds than the others (* in the table)"
SPREAD = "± std over seeds (where n ≥ 2)"


def _x(shots: int) -> float:
    """log2 shot axis; 0 shots (zero-shot CLIP) sits one step left of 1 shot."""
    return math.log2(shots) if shots > 0 else -1.0


def _has_spread(cell: Cell) -> bool:
    """An error bar is drawn only for two seeds or more with a non-zero spread (never a zero-length bar)."""
    return not cell.empty and cell.n >= 2 and cell.std is not None and cell.std > 0


def _figure(**kwargs) -> Figure:
    """A Figure on an Agg canvas, not pyplot: no global backend switch, safe in notebooks and headless jobs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def _title(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width=max(width, 40)))


LEGEND_CHARS = 44  # legend entries wrap at this many characters


def _legend_labels(labels: Sequence[str]) -> tuple[list[str], float]:
    """Legend labels wrapped to ``LEGEND_CHARS`` and the width (inches) the legend needs at 9 pt beside the axes."""
    wrapped = [
        "\n".join(textwrap.wrap(label, LEGEND_CHARS, break_on_hyphens=False)) or label for label in labels
    ]
    longest = max((len(line) for label in wrapped for line in label.splitlines()), default=0)
    return wrapped, 0.075 * longest + 0.9


def fewshot_figure(tables: Sequence[Table], ncols: int = 4) -> Figure | None:
    """One panel per dataset plus "Average", one line per method (few-shot tables of ``aggregate.fewshot_tables``).

    Filled markers: every seed present; hollow: fewer seeds than the others; a star: a 0-shot method (zero-shot
    CLIP); error bars: ± std over seeds where a point has two seeds or more. None if there is nothing to plot.
    """
    import matplotlib
    from matplotlib.lines import Line2D

    curves = [t for t in tables if t.meta.get("kind") == "fewshot"]
    if not curves:
        return None
    panels: list[str] = []
    for t in curves:
        panels += [label for label, _ in t.rows if label != "Average" and label not in panels]
    panels.append("Average")
    backbones = sorted({backbone_label(t.meta["backbone"], t.meta["pretrained"]) for t in curves})
    all_shots = sorted({s for t in curves for s in t.meta["shots"]})

    ncols = max(1, min(ncols, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = _figure(figsize=(3.6 * ncols + 3.6, 3.1 * nrows + 0.6))  # resized to the legend below
    axes = fig.subplots(nrows, ncols, squeeze=False)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: dict[str, Line2D] = {}
    any_hollow = any_bars = False
    for ax, panel in zip(axes.flat, panels):
        for i, t in enumerate(curves):
            label = t.meta["method"] + (f" [{t.meta['variant']}]" if t.meta["variant"] else "")
            if len(backbones) > 1:
                label += f" · {t.meta['backbone']}"
            row = next((cells for lab, cells in t.rows if lab == panel), None)
            pts = [(s, c) for s, c in zip(t.meta["shots"], row or []) if not c.empty]
            if not pts:
                continue
            colour = colours[i % len(colours)]
            zero_shot = len(pts) == 1 and pts[0][0] == 0
            marker, size = ("*", 11) if zero_shot else ("o", 5)
            xs, ys = [_x(s) for s, _ in pts], [c.mean for _, c in pts]
            if len(pts) > 1:
                ax.plot(xs, ys, color=colour, linewidth=1.5, zorder=2)
            for x, (_, c) in zip(xs, pts):
                ax.plot([x], [c.mean], linestyle="none", marker=marker, markersize=size, color=colour,
                        markerfacecolor="white" if c.mark else colour, zorder=3)  # fmt: skip
                any_hollow |= c.mark
            bars = [(x, c) for x, (_, c) in zip(xs, pts) if _has_spread(c)]
            if bars:
                any_bars = True
                ax.errorbar([x for x, _ in bars], [c.mean for _, c in bars], yerr=[c.std for _, c in bars],
                            fmt="none", ecolor=colour, elinewidth=1, capsize=2.5, zorder=2)  # fmt: skip
            handles.setdefault(label, Line2D([], [], color=colour, marker=marker, markersize=size,
                                             linestyle="none" if zero_shot else "-"))  # fmt: skip
        ax.set_title(panel, fontsize=11)
        ax.set_xticks([_x(s) for s in all_shots], [str(s) for s in all_shots])
        ax.set_xlabel("shots per class", fontsize=10)
        ax.set_ylabel("accuracy (%)", fontsize=10)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if any_hollow:
        handles[f"hollow: {INCOMPLETE}"] = Line2D([], [], color="grey", marker="o", markerfacecolor="white",
                                                  linestyle="none")  # fmt: skip
    if any_bars:
        handles[f"bars: {SPREAD}"] = Line2D([], [], color="grey", marker="|", markersize=10, linestyle="none")
    labels, legend_width = _legend_labels(list(handles))
    fig.set_figwidth(3.6 * ncols + legend_width)
    title = f"Few-shot accuracy (%) vs shots per class · {', '.join(backbones)}"
    fig.suptitle(_title(title, int(9.5 * fig.get_figwidth())), fontsize=14)
    _legend_beside(axes[0, ncols - 1], list(handles.values()), labels)
    return fig


def _legend_beside(ax, handles: Sequence[object], labels: Sequence[str], title: str | None = None) -> None:
    """The legend to the right of ``ax``, top-aligned with it: outside every data area, below the figure's title
    (constrained layout makes room for it)."""
    ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.03, 1.0), borderaxespad=0.0, fontsize=9,
              frameon=False, title=title, title_fontsize=9, alignment="left")  # fmt: skip


_XLABEL = {
    "base2new": "classes (H = harmonic mean of base and new)",
    "base2new-average": "classes (H = harmonic mean of base and new)",
    "dg": "evaluated on (the source first)",
    "xd": "evaluated on (the source first)",
    "fewshot-transfer": "evaluated on (the source first)",
    "checkpoints": "evaluated on",
}


def bars_figure(table: Table) -> Figure | None:
    """Grouped bars of one table: a group per column, a bar per row; error bars where a cell has two seeds or
    more; hatched bars: fewer seeds than the others; empty cells draw nothing. None if the table has no rows."""
    import matplotlib
    from matplotlib.patches import Patch

    if not table.rows or not table.columns:
        return None
    n_rows, n_cols = len(table.rows), len(table.columns)
    width = 0.8 / n_rows
    _, legend_width = _legend_labels([label for label, _ in table.rows] + [f"hatched: {INCOMPLETE}"])
    data_width = max(4.5, 0.3 * n_rows * n_cols + 2.0)
    fig = _figure(figsize=(data_width + legend_width, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    handles: dict[str, object] = {}
    any_hatched = any_bars = False
    for i, (label, cells) in enumerate(table.rows):
        colour = colours[i % len(colours)]
        offset = (i - (n_rows - 1) / 2) * width
        full = [(j + offset, c) for j, c in enumerate(cells) if not c.empty]
        if not full:
            continue
        drawn = ax.bar([x for x, _ in full], [c.mean for _, c in full], width, color=colour, edgecolor="white",
                       linewidth=0.5)  # fmt: skip
        for patch, (_, c) in zip(drawn, full):
            if c.mark:
                patch.set_hatch("//")
        any_hatched |= any(c.mark for _, c in full)
        spread = [(x, c) for x, c in full if _has_spread(c)]
        if spread:
            any_bars = True
            ax.errorbar([x for x, _ in spread], [c.mean for _, c in spread], yerr=[c.std for _, c in spread],
                        fmt="none", ecolor="black", elinewidth=1, capsize=2.5)  # fmt: skip
        handles[label] = Patch(facecolor=colour)
    if any_hatched:
        handles[f"hatched: {INCOMPLETE}"] = Patch(facecolor="white", edgecolor="grey", hatch="//")
    if any_bars:
        from matplotlib.lines import Line2D

        handles[f"bars: {SPREAD}"] = Line2D(
            [], [], color="black", marker="|", markersize=10, linestyle="none"
        )
    ax.set_xticks(
        range(n_cols), table.columns, rotation=25 if n_cols > 4 else 0, ha="right" if n_cols > 4 else "center"
    )
    ax.set_ylabel("accuracy (%)", fontsize=11)
    ax.set_xlabel(_XLABEL.get(str(table.meta.get("kind")), table.row_header), fontsize=11)
    ax.set_ylim(bottom=0)
    ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(_title(table.title, int(10 * (data_width + legend_width))), fontsize=13)
    _legend_beside(ax, list(handles.values()), _legend_labels(list(handles))[0], title=table.row_header)
    return fig


def save_figure(fig: Figure, path: str | Path, formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``fig`` as ``path`` with each suffix of ``formats`` (PNG at 150 dpi, PDF as vectors)."""
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        target = base.with_suffix(f".{fmt}")
        fig.savefig(target, dpi=150)
        out.append(target)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "table"


def write_figures(
    setting: str, tables: Sequence[Table], out: str | Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """The figures of one setting's tables under ``out``; returns the files written.

    Few-shot: ``fewshot_curves.*`` (every dataset and the average). Base-to-new: the per-backbone summary over
    methods (or, with one method, its table). Domain generalisation, cross-dataset, few-shot transfer and saved
    prompts: one figure per table. The first bars figure of a setting is ``<setting>.*``, the others
    ``<setting>-<table>.*``.
    """
    out = Path(out)
    written: list[Path] = []
    if setting == "fewshot":
        fig = fewshot_figure(tables)
        if fig is not None:
            written += save_figure(fig, out / "fewshot_curves", formats)
        bar_tables = [t for t in tables if t.meta.get("kind") == "fewshot-transfer"]
        stem = "fewshot_transfer"
    else:
        summaries = {
            (t.meta.get("backbone"), t.meta.get("pretrained"))
            for t in tables
            if t.meta.get("kind") == "base2new-average"
        }
        bar_tables = [t for t in tables if t.meta.get("kind") != "base2new"
                      or (t.meta.get("backbone"), t.meta.get("pretrained")) not in summaries]  # fmt: skip
        stem = setting
    for i, table in enumerate(bar_tables):
        fig = bars_figure(table)
        if fig is not None:
            name = stem if i == 0 else f"{stem}-{_slug(table.name.split(':', 1)[-1])}"
            written += save_figure(fig, out / name, formats)
    return written
