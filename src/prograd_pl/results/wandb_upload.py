"""``prograd-pl report --wandb``: the aggregated tables (W&B Tables) and the report's plots, uploaded to the W&B
group of the sweep that produced them, so the dashboard shows the paper-style table beside the runs."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prograd_pl.results.aggregate import Table


def sweep_group(setting: str, backbone: str) -> str:
    """The W&B group of a sweep: one per paper table and backbone (``fewshot-RN50-quickgelu``). Runs log it as
    their group; the report's upload joins it."""
    return f"{setting}-{backbone}"


def table_rows(table: Table) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of a W&B Table: the row label, then per column the mean, the std and the seed count
    (numbers, so the dashboard can sort and plot them), and the rendered ``mean ± std`` text."""
    columns = [table.row_header]
    for col in table.columns:
        columns += [col, f"{col} std", f"{col} n", f"{col} text"]
    rows = []
    for label, cells in table.rows:
        row: list[Any] = [label]
        for c in cells:
            text = "" if c.empty else f"{c.mean:.2f}" + ("" if c.std is None else f" ± {c.std:.2f}") + ("*" if c.mark else "")
            row += [c.mean, c.std, c.n, text]
        rows.append(row)
    return columns, rows


LONG_COLUMNS = ["setting", "table", "method", "variant", "backbone", "row", "column", "mean", "std", "n", "text"]


def long_rows(setting: str, table: Table) -> list[list[Any]]:
    """One row per cell (the CSV's long format), so one W&B Table holds every table of a sweep and the dashboard
    can filter and pivot it by method, dataset or shots."""
    _, rows = table_rows(table)
    meta = table.meta
    out = []
    for row in rows:
        for j, col in enumerate(table.columns):
            mean, std, n, text = row[1 + 4 * j : 5 + 4 * j]
            out.append([setting, table.title, meta.get("method", row[0]), meta.get("variant", ""),
                        meta.get("backbone", ""), row[0], col, mean, std, n, text])  # fmt: skip
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_") or "table"


def upload(tables: dict[str, Sequence[Table]], images: dict[str, Sequence[Path]], project: str = "prograd_pl",
           entity: str | None = None, mode: str | None = None, out_dir: str | Path | None = None,
           group: str | None = None) -> list[str]:  # fmt: skip
    """One W&B run (``job_type=report``) per sweep group holding its tables: ``table/<setting>`` (every cell, long
    format) and ``table/<setting>/<table>`` (as printed), and the setting's ``images`` (``plot/<file stem>``);
    returns the groups uploaded to. ``mode`` is W&B's (online | offline),
    ``None`` leaves it to ``WANDB_MODE``."""
    import wandb

    by_group: dict[str, list[tuple[str, Table]]] = defaultdict(list)
    for setting, ts in tables.items():
        for t in ts:
            name = group or sweep_group(setting, str(t.meta.get("backbone") or "all"))
            by_group[name].append((setting, t))
    done = []
    for name, entries in by_group.items():
        settings = sorted({s for s, _ in entries})
        run = wandb.init(project=project, entity=entity, group=name, job_type="report", name=f"report-{name}",
                         dir=str(out_dir) if out_dir is not None else None, mode=mode, reinit="create_new",
                         config={"settings": settings})  # fmt: skip
        payload: dict[str, Any] = {}
        for setting in settings:
            rows = [r for s, t in entries if s == setting for r in long_rows(s, t)]
            payload[f"table/{setting}"] = wandb.Table(columns=LONG_COLUMNS, data=rows)
        for setting, t in entries:
            columns, rows = table_rows(t)
            payload[f"table/{setting}/{_slug(t.name)}"] = wandb.Table(columns=columns, data=rows)
        for setting in settings:
            for img in images.get(setting, []):
                payload[f"plot/{Path(img).stem}"] = wandb.Image(str(img))
        run.log(payload)
        run.finish()
        done.append(name)
    return done
