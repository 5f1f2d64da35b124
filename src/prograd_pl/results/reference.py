"""Published numbers beside ours: ``experiments/<setting>/reference.csv`` read and matched to our tables.

A reference row is ``setting, backbone, shots, method, dataset, column, acc, source``: ``dataset`` is a registry
name or ``Average``; ``column`` is ``Base``/``New``/``H`` (base-to-new), the shot count (few-shot) or ``acc``
(domain generalisation, cross-dataset: the dataset is the evaluated target).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from prograd_pl.results.aggregate import Table

FIELDS = ("setting", "backbone", "shots", "method", "dataset", "column", "acc", "source")
Key = tuple[str, str, int, str, str, str]


def read_reference(path: str | Path) -> dict[Key, tuple[float, str]]:
    """``{(setting, backbone, shots, method, dataset, column): (acc, source)}``; lines starting with ``#`` are
    comments (where a table has no transcribed numbers, its file says why)."""
    rows: dict[Key, tuple[float, str]] = {}
    with open(path, encoding="utf-8") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.lstrip().startswith("#")]
    for rec in csv.DictReader(lines):
        missing = [f for f in FIELDS if f not in rec]
        if missing:
            raise ValueError(f"{path}: missing columns {', '.join(missing)}")
        key = (rec["setting"], rec["backbone"], int(rec["shots"]), rec["method"], rec["dataset"], rec["column"])
        rows[key] = (float(rec["acc"]), rec["source"])
    return rows


def _cells(table: Table) -> list[tuple[str, str, str, float | None]]:
    """``(method, dataset, column, ours)`` for every cell of a table that a reference can name."""
    kind, meta, out = table.meta.get("kind"), table.meta, []
    if meta.get("variant"):
        return out  # a variant of a method is not the published method
    for label, cells in table.rows:
        for column, cell in zip(table.columns, cells):
            ours = None if cell.empty else cell.mean
            if kind in ("base2new", "fewshot"):
                out.append((meta["method"], label, column, ours))
            elif kind in ("dg", "xd") and " [" not in label:
                out.append((label, column, "acc", ours))
    return out


def compare(tables: Sequence[Table], reference: dict[Key, tuple[float, str]]) -> str:
    """Markdown: our number, the reference and the difference, for every cell that has a reference."""
    lines = ["| setting | backbone | shots | method | dataset | column | ours | reference | Δ | source |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    found = 0
    for table in tables:
        meta = table.meta
        shots_of = meta.get("shots")
        for method, dataset, column, ours in _cells(table):
            shots = int(column) if meta.get("kind") == "fewshot" else int(shots_of) if isinstance(shots_of, int) else 0
            key = (table.setting, meta.get("backbone", ""), shots, method, dataset, column)
            if key not in reference:
                continue
            ref, source = reference[key]
            found += 1
            mine = "–" if ours is None else f"{ours:.2f}"
            delta = "–" if ours is None else f"{ours - ref:+.2f}"
            lines.append(f"| {key[0]} | {key[1]} | {shots} | {method} | {dataset} | {column} | {mine} | {ref:.2f} "
                         f"| {delta} | {source} |")  # fmt: skip
    return "\n".join(lines) if found else ""
