"""Turn results.json records into the paper's tables (pure functions, no I/O).

Seeds are aggregated as ``mean ± population std`` (ddof=0, as CoOp's ``parse_test_res.py``), optionally with
``ci95 = 1.96·std/√n``. A cell with fewer seeds than expected is marked and named in the table's notes; a missing
cell is shown empty and named too; an average over an incomplete set of cells is marked and says what it lacks.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prograd_pl.paper import SEEDS, SETTINGS, table_sort_key  # noqa: F401  (SETTINGS re-exported)
from prograd_pl.results.store import pretrained_tag

DEFAULT_SEEDS: tuple[int, ...] = SEEDS


def dataset_sort_key(name: str) -> tuple[int, str]:
    """Known datasets in the papers' order, then the rest alphabetically."""
    return table_sort_key(name)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) of a non-empty sequence."""
    if not values:
        raise ValueError("mean_std of an empty sequence")
    m = math.fsum(values) / len(values)
    return m, math.sqrt(math.fsum((v - m) ** 2 for v in values) / len(values))


def harmonic_mean(base: float, new: float) -> float:
    """Base-to-new H = 2·B·N/(B+N)."""
    return 0.0 if base + new == 0 else 2.0 * base * new / (base + new)


@dataclass(frozen=True)
class SeedStats:
    """One configuration aggregated over its seeds."""

    mean: float
    std: float
    n: int
    seeds: tuple[int, ...]
    missing_seeds: tuple[int, ...] = ()
    duplicate_seeds: tuple[int, ...] = ()

    @property
    def ci95(self) -> float:
        return 1.96 * self.std / math.sqrt(self.n) if self.n else math.nan

    @property
    def complete(self) -> bool:
        return not self.missing_seeds


@dataclass(frozen=True, order=True)
class GroupKey:
    """Everything that identifies a configuration except the seed."""

    setting: str
    method: str
    variant: str
    backbone: str
    pretrained: str
    dataset: str
    eval_dataset: str
    subsample: str
    shots: int


def variant_of(record: Mapping[str, Any]) -> str:
    """Canonical ``k=v,...`` of a record's non-default options (``extras``/``variant`` key), '' if none."""
    extras = record.get("extras", record.get("variant"))
    if not extras:
        return ""
    if isinstance(extras, Mapping):  # the evaluation targets are the table's columns already
        return ",".join(f"{k}={extras[k]}" for k in sorted(extras) if extras[k] is not None and k != "eval_datasets")
    return str(extras)


def group_key(record: Mapping[str, Any]) -> GroupKey:
    return GroupKey(
        setting=str(record["setting"]),
        method=str(record["method"]),
        variant=variant_of(record),
        backbone=str(record["backbone"]),
        pretrained="" if record.get("pretrained") is None else str(record["pretrained"]),
        dataset=str(record["dataset"]),
        eval_dataset=str(record.get("eval_dataset") or record["dataset"]),
        subsample=str(record.get("subsample") or "all"),
        shots=int(record["shots"]),
    )


def group_runs(
    records: Iterable[Mapping[str, Any]], expected_seeds: Sequence[int] = DEFAULT_SEEDS
) -> dict[GroupKey, SeedStats]:
    """Aggregate ``metrics.acc`` over seeds for every configuration.

    All seeds found are used; ``missing_seeds`` lists expected seeds without a run (a 0-shot configuration such
    as zero-shot CLIP is deterministic and complete with any one seed). If one seed has several results, the
    latest (``finished_at``) is used and the seed is listed in ``duplicate_seeds``.
    """
    by_key: dict[GroupKey, dict[int, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        by_key[group_key(rec)][int(rec["seed"])].append(rec)
    out: dict[GroupKey, SeedStats] = {}
    for key, seeds in by_key.items():
        accs, dups = [], []
        for seed in sorted(seeds):
            runs = seeds[seed]
            if len(runs) > 1:
                dups.append(seed)
            latest = max(runs, key=lambda r: str(r.get("finished_at", "")))
            accs.append(float(latest["metrics"]["acc"]))
        m, s = mean_std(accs)
        have = tuple(sorted(seeds))
        missing = () if key.shots == 0 else tuple(x for x in expected_seeds if x not in seeds)
        out[key] = SeedStats(m, s, len(accs), have, missing, tuple(dups))
    return out


@dataclass
class Cell:
    """One table entry; ``mark`` flags an incomplete aggregate (explained in the table notes)."""

    mean: float | None = None
    std: float | None = None
    ci95: float | None = None
    n: int = 0
    mark: bool = False

    @classmethod
    def of(cls, stats: SeedStats | None) -> Cell:
        if stats is None:
            return cls()
        return cls(stats.mean, stats.std, stats.ci95, stats.n, not stats.complete)

    @property
    def empty(self) -> bool:
        return self.mean is None


@dataclass
class Table:
    """A rendered-agnostic table: row label + one Cell per column, with notes on anything missing."""

    setting: str
    name: str
    title: str
    row_header: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def cell(self, row: str, column: str) -> Cell:
        """Look up a cell by row label and column header."""
        j = self.columns.index(column)
        for label, cells in self.rows:
            if label == row:
                return cells[j]
        raise KeyError(row)


def method_label(method: str, variant: str = "") -> str:
    return f"{method} [{variant}]" if variant else method


def backbone_label(backbone: str, pretrained: str) -> str:
    return f"{backbone} ({pretrained_tag(pretrained or None)})"


def _seeds_text(seeds: Iterable[int]) -> str:
    return ", ".join(str(s) for s in seeds)


def _stats_note(where: str, stats: SeedStats | None, expected_seeds: Sequence[int]) -> list[str]:
    if stats is None:
        return [f"{where}: no runs (expected seeds {_seeds_text(expected_seeds)})"]
    notes = []
    if stats.missing_seeds:
        notes.append(
            f"{where}: missing seeds {_seeds_text(stats.missing_seeds)} "
            f"(mean of {stats.n} run{'s' if stats.n != 1 else ''}: seeds {_seeds_text(stats.seeds)})"
        )
    if stats.duplicate_seeds:
        notes.append(f"{where}: several results for seeds {_seeds_text(stats.duplicate_seeds)}; latest used")
    return notes


def _average_cell(cells: Sequence[Cell | None], labels: Sequence[str], where: str, notes: list[str]) -> Cell:
    """Mean over the non-empty cells; marked (with a note) when some are empty or incomplete."""
    have = [(lab, c) for lab, c in zip(labels, cells) if c is not None and not c.empty]
    if not have:
        return Cell()
    lacking = [lab for lab, c in zip(labels, cells) if c is None or c.empty]
    partial = [lab for lab, c in have if c.mark]
    mean = math.fsum(c.mean for _, c in have) / len(have)  # type: ignore[misc]
    if lacking:
        notes.append(f"{where}: over {len(have)} of {len(labels)} (missing: {', '.join(lacking)})")
    if partial:
        notes.append(f"{where}: includes incomplete entries ({', '.join(partial)})")
    return Cell(mean=mean, n=len(have), mark=bool(lacking or partial))


def _partition(stats: Mapping[GroupKey, SeedStats], setting: str) -> dict[GroupKey, SeedStats]:
    return {k: v for k, v in stats.items() if k.setting == setting}


def _shots_label(shots: int) -> str:
    return f"{shots} shot{'s' if shots != 1 else ''}"


# --------------------------------------------------------------------------------------------------- few-shot
def fewshot_tables(
    records: Iterable[Mapping[str, Any]],
    expected_seeds: Sequence[int] = DEFAULT_SEEDS,
    expected_shots: Sequence[int] | None = None,
    expected_datasets: Sequence[str] | None = None,
) -> list[Table]:
    """Per method and backbone: rows = datasets + Average, columns = shots; then one summary per backbone.

    Expected datasets/shots default to every one seen for that backbone, so a method lacking a cell other
    methods have is reported. The Average row is the mean over datasets of the seed means.
    """
    stats = {
        k: v
        for k, v in _partition(group_runs(records, expected_seeds), "fewshot").items()
        if k.eval_dataset == k.dataset and k.subsample == "all"
    }
    tables: list[Table] = []
    for bb in sorted({(k.backbone, k.pretrained) for k in stats}):
        bstats = {k: v for k, v in stats.items() if (k.backbone, k.pretrained) == bb}
        datasets = list(expected_datasets or sorted({k.dataset for k in bstats}, key=dataset_sort_key))
        all_shots = set(expected_shots or {k.shots for k in bstats if k.shots > 0})
        summary_rows: list[tuple[str, dict[int, Cell]]] = []
        summary_notes: list[str] = []
        for method, variant in sorted({(k.method, k.variant) for k in bstats}):
            mstats = {k: v for k, v in bstats.items() if (k.method, k.variant) == (method, variant)}
            own = {k.shots for k in mstats}
            shots = sorted(own if own == {0} else own | all_shots)
            label = method_label(method, variant)
            table = Table(
                setting="fewshot",
                name=f"fewshot:{label}:{backbone_label(*bb)}",
                title=f"Few-shot accuracy (%) · {label} · {backbone_label(*bb)}",
                row_header="Dataset",
                columns=[str(s) for s in shots],
                meta={
                    "kind": "fewshot",
                    "method": method,
                    "variant": variant,
                    "backbone": bb[0],
                    "pretrained": bb[1],
                    "shots": shots,
                    "datasets": datasets,
                },
            )
            by_cell = {(k.dataset, k.shots): v for k, v in mstats.items()}
            grid: dict[str, list[Cell]] = {}
            for ds in datasets:
                found = [by_cell.get((ds, s)) for s in shots]
                grid[ds] = [Cell.of(st) for st in found]
                table.rows.append((ds, grid[ds]))
                if all(st is None for st in found):
                    table.notes.append(f"{ds}: no runs at any shot count")
                    continue
                for s, st in zip(shots, found):
                    table.notes += _stats_note(f"{ds}, {_shots_label(s)}", st, expected_seeds)
            avg = [
                _average_cell(
                    [grid[ds][j] for ds in datasets], datasets, f"Average, {_shots_label(s)}", table.notes
                )
                for j, s in enumerate(shots)
            ]
            table.rows.append(("Average", avg))
            tables.append(table)
            summary_rows.append((label, dict(zip(shots, avg))))
            summary_notes += [f"{label}: {n}" for n in table.notes if n.startswith("Average")]
        if len(summary_rows) > 1:
            cols = sorted({s for _, row in summary_rows for s in row})
            summary = Table(
                setting="fewshot",
                name=f"fewshot:average:{backbone_label(*bb)}",
                title=f"Few-shot accuracy (%) averaged over datasets · {backbone_label(*bb)}",
                row_header="Method",
                columns=[str(s) for s in cols],
                rows=[(label, [row.get(s, Cell()) for s in cols]) for label, row in summary_rows],
                notes=summary_notes,
                meta={"kind": "fewshot-average", "backbone": bb[0], "pretrained": bb[1], "shots": cols},
            )
            tables.append(summary)
    return tables


# --------------------------------------------------------------------------------------------- base-to-new
def base2new_tables(
    records: Iterable[Mapping[str, Any]],
    expected_seeds: Sequence[int] = DEFAULT_SEEDS,
    expected_datasets: Sequence[str] | None = None,
) -> list[Table]:
    """Per method, backbone and shots: rows = datasets + Average, columns Base, New, H; then a summary.

    H per dataset comes from the seed-averaged B and N; the Average row averages B and N over datasets and
    recomputes H from those averages (not the mean of per-dataset H).
    """
    stats = {
        k: v
        for k, v in _partition(group_runs(records, expected_seeds), "base2new").items()
        if k.eval_dataset == k.dataset and k.subsample in ("base", "new")
    }
    tables: list[Table] = []
    for bb in sorted({(k.backbone, k.pretrained) for k in stats}):
        bstats = {k: v for k, v in stats.items() if (k.backbone, k.pretrained) == bb}
        datasets = list(expected_datasets or sorted({k.dataset for k in bstats}, key=dataset_sort_key))
        summary_rows: list[tuple[str, list[Cell]]] = []
        summary_notes: list[str] = []
        for method, variant, shots in sorted({(k.method, k.variant, k.shots) for k in bstats}):
            sel = {
                (k.dataset, k.subsample): v
                for k, v in bstats.items()
                if (k.method, k.variant, k.shots) == (method, variant, shots)
            }
            label = f"{method_label(method, variant)} · {_shots_label(shots)}"
            table = Table(
                setting="base2new",
                name=f"base2new:{label}:{backbone_label(*bb)}",
                title=f"Base-to-new accuracy (%) · {label} · {backbone_label(*bb)}",
                row_header="Dataset",
                columns=["Base", "New", "H"],
                meta={
                    "kind": "base2new",
                    "method": method,
                    "variant": variant,
                    "backbone": bb[0],
                    "pretrained": bb[1],
                    "shots": shots,
                },
            )
            bases, news = [], []
            for ds in datasets:
                b, n = sel.get((ds, "base")), sel.get((ds, "new"))
                cb, cn = Cell.of(b), Cell.of(n)
                bases.append(cb)
                news.append(cn)
                h = Cell()
                if b is not None and n is not None:
                    h = Cell(mean=harmonic_mean(b.mean, n.mean), n=min(b.n, n.n), mark=cb.mark or cn.mark)
                table.rows.append((ds, [cb, cn, h]))
                if b is None and n is None:
                    table.notes.append(f"{ds}: no runs (base or new)")
                    continue
                table.notes += _stats_note(f"{ds}, base", b, expected_seeds)
                table.notes += _stats_note(f"{ds}, new", n, expected_seeds)
            avg_b = _average_cell(bases, datasets, "Average, base", table.notes)
            avg_n = _average_cell(news, datasets, "Average, new", table.notes)
            avg_h = Cell()
            if not avg_b.empty and not avg_n.empty:
                avg_h = Cell(mean=harmonic_mean(avg_b.mean, avg_n.mean), mark=avg_b.mark or avg_n.mark)  # type: ignore[arg-type]
            table.rows.append(("Average", [avg_b, avg_n, avg_h]))
            tables.append(table)
            summary_rows.append((label, [avg_b, avg_n, avg_h]))
            summary_notes += [f"{label}: {n}" for n in table.notes if n.startswith("Average")]
        if len(summary_rows) > 1:
            tables.append(
                Table(
                    setting="base2new",
                    name=f"base2new:average:{backbone_label(*bb)}",
                    title=f"Base-to-new accuracy (%) averaged over datasets · {backbone_label(*bb)}",
                    row_header="Method",
                    columns=["Base", "New", "H"],
                    rows=summary_rows,
                    notes=summary_notes,
                    meta={"kind": "base2new-average", "backbone": bb[0], "pretrained": bb[1]},
                )
            )
    return tables


# ------------------------------------------------------------------------- domain generalisation, cross-dataset
def transfer_tables(
    records: Iterable[Mapping[str, Any]],
    setting: str,
    expected_seeds: Sequence[int] = DEFAULT_SEEDS,
    expected_targets: Sequence[str] | None = None,
    with_average: bool | None = None,
) -> list[Table]:
    """Domain generalisation (``dg``) or cross-dataset (``xd``): rows = methods, columns = source + targets.

    One table per (backbone, shots, source dataset). Cross-dataset adds the average over targets (not source).
    Expected targets default to every target seen for that source, so a method lacking one is reported.
    """
    if with_average is None:
        with_average = setting == "xd"
    stats = {k: v for k, v in _partition(group_runs(records, expected_seeds), setting).items()}
    title = {"dg": "Domain generalisation", "xd": "Cross-dataset transfer"}.get(setting, setting)
    tables: list[Table] = []
    for bb, shots, source in sorted({((k.backbone, k.pretrained), k.shots, k.dataset) for k in stats}):
        sel = {
            k: v
            for k, v in stats.items()
            if ((k.backbone, k.pretrained), k.shots, k.dataset) == (bb, shots, source)
        }
        targets = list(
            expected_targets
            or sorted({k.eval_dataset for k in sel if k.eval_dataset != source}, key=dataset_sort_key)
        )
        columns = [source] + targets + (["Average"] if with_average else [])
        table = Table(
            setting=setting,
            name=f"{setting}:{source}:{_shots_label(shots)}:{backbone_label(*bb)}",
            title=f"{title} accuracy (%) · source {source} · {_shots_label(shots)} · {backbone_label(*bb)}",
            row_header="Method",
            columns=columns,
            meta={
                "kind": setting,
                "source": source,
                "targets": targets,
                "backbone": bb[0],
                "pretrained": bb[1],
                "shots": shots,
            },
        )
        for method, variant in sorted({(k.method, k.variant) for k in sel}):
            label = method_label(method, variant)
            # The source column is the run's own test split; a subsample other than "all" is not a transfer.
            by_eval = {
                k.eval_dataset: v
                for k, v in sel.items()
                if (k.method, k.variant) == (method, variant) and k.subsample == "all"
            }
            found = [by_eval.get(c) for c in [source] + targets]
            cells = [Cell.of(st) for st in found]
            for col, st in zip([source] + targets, found):
                table.notes += _stats_note(f"{label}, {col}", st, expected_seeds)
            if with_average:
                cells.append(_average_cell(cells[1:], targets, f"{label}, average over targets", table.notes))
            table.rows.append((label, cells))
        tables.append(table)
    return tables


def build_tables(
    records: Iterable[Mapping[str, Any]],
    setting: str,
    expected_seeds: Sequence[int] = DEFAULT_SEEDS,
    expected_shots: Sequence[int] | None = None,
) -> list[Table]:
    """All tables of one setting (``fewshot``, ``base2new``, ``dg`` or ``xd``)."""
    records = list(records)
    if setting == "fewshot":
        return fewshot_tables(records, expected_seeds, expected_shots)
    if setting == "base2new":
        return base2new_tables(records, expected_seeds)
    if setting in ("dg", "xd"):
        return transfer_tables(records, setting, expected_seeds)
    raise ValueError(f"unknown setting {setting!r}; expected one of {', '.join(SETTINGS)}")
