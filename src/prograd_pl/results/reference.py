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


def papers_beside(tables: Sequence[Table], reference: dict[Key, tuple[float, str]]) -> str:
    """Markdown: each method's average over datasets beside the published average of the same method and setting,
    whatever the backbone and shots (``--papers``). For runs that cannot match the papers' (the mini world): read
    the order of the methods, not the numbers; there is no difference column."""
    lines = ["| method | ours: Base | New | H | backbone · shots | paper: Base | New | H | backbone · shots | source |",
             "|---|---:|---:|---:|---|---:|---:|---:|---|---|"]  # fmt: skip
    found = 0
    for table in tables:
        meta = table.meta
        if meta.get("kind") != "base2new" or meta.get("variant"):
            continue
        method = meta["method"]
        published = {(k[1], k[2]): k for k in reference if k[0] == table.setting and k[3] == method
                     and k[4] == "Average"}  # fmt: skip
        if not published:
            continue
        try:
            ours = [table.cell("Average", column) for column in ("Base", "New", "H")]
        except (KeyError, ValueError):
            continue
        for backbone, shots in sorted(published):
            refs = [reference.get((table.setting, backbone, shots, method, "Average", c)) for c in ("Base", "New", "H")]
            if any(r is None for r in refs):
                continue
            found += 1
            mine = " | ".join("–" if c.empty else f"{c.mean:.2f}" for c in ours)
            theirs = " | ".join(f"{r[0]:.2f}" for r in refs)  # type: ignore[index]
            lines.append(f"| {method} | {mine} | {meta.get('backbone', '')} · {meta.get('shots', '')} | {theirs} "
                         f"| {backbone} · {shots} | {refs[0][1]} |")  # type: ignore[index]  # fmt: skip
    return "\n".join(lines) if found else ""
