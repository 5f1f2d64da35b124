"""Turn results.json records into the paper's tables (pure functions, no I/O).

Seeds are aggregated as ``mean ± population std`` (ddof=0, as CoOp's ``parse_test_res.py``), optionally with
``ci95 = 1.96·std/√n``; a cell of one seed has no spread. The seeds a configuration should have are, unless given,
every seed found in that setting: a cell with fewer is marked and named in the table's notes; a missing cell is
shown empty and named too; an average over an incomplete set of cells is marked and says what it lacks.
Evaluations of a saved prompt (``ckpt=``) have tables of their own (``checkpoint_tables``); results that no table
shows are named by ``unshown_notes``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def latest_per_seed(records: Iterable[Mapping[str, Any]]) -> tuple[dict[int, Mapping[str, Any]], tuple[int, ...]]:
    """One record per seed, the latest (``finished_at``) where a seed has several, and the seeds that had several.

    The one place where runs of one configuration are reduced to one accuracy per seed (tables and summaries).
    """
    by_seed: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for rec in records:
        by_seed[int(rec["seed"])].append(rec)
    latest = {s: max(runs, key=lambda r: str(r.get("finished_at") or "")) for s, runs in sorted(by_seed.items())}
    return latest, tuple(s for s, runs in sorted(by_seed.items()) if len(runs) > 1)


def seed_stats(records: Iterable[Mapping[str, Any]], expected_seeds: Sequence[int] = ()) -> SeedStats:
    """``metrics.acc`` of one configuration over its seeds (latest result per seed); ``expected_seeds`` names the
    seeds it should have (those absent are ``missing_seeds``)."""
    latest, dups = latest_per_seed(records)
    if not latest:
        raise ValueError("seed_stats of no records")
    m, s = mean_std([float(r["metrics"]["acc"]) for r in latest.values()])
    missing = tuple(x for x in expected_seeds if x not in latest)
    return SeedStats(m, s, len(latest), tuple(latest), missing, dups)


def found_seeds(records: Iterable[Mapping[str, Any]]) -> dict[str, tuple[int, ...]]:
    """Per setting, every seed of its trained runs (zero-shot runs are deterministic: one seed is complete)."""
    seeds: dict[str, set[int]] = defaultdict(set)
    for rec in records:
        if int(rec["shots"]) > 0:
            seeds[str(rec["setting"])].add(int(rec["seed"]))
    return {k: tuple(sorted(v)) for k, v in seeds.items()}


def group_runs(
    records: Iterable[Mapping[str, Any]], expected_seeds: Sequence[int] | None = None
) -> dict[GroupKey, SeedStats]:
    """Aggregate ``metrics.acc`` over seeds for every configuration.

    All seeds found are used; ``missing_seeds`` lists expected seeds without a run (by default the seeds found in
    the configuration's setting; a 0-shot configuration such as zero-shot CLIP is deterministic and complete with
    any one seed). If one seed has several results, the latest (``finished_at``) is used and the seed is listed in
    ``duplicate_seeds``.
    """
    records = list(records)
    by_key: dict[GroupKey, list[Mapping[str, Any]]] = defaultdict(list)
    for rec in records:
        by_key[group_key(rec)].append(rec)
    per_setting = found_seeds(records)
    out: dict[GroupKey, SeedStats] = {}
    for key, recs in by_key.items():
        expected = per_setting.get(key.setting, ()) if expected_seeds is None else tuple(expected_seeds)
        out[key] = seed_stats(recs, () if key.shots == 0 else expected)
    return out


@dataclass
class Cell:
    """One table entry; ``mark`` flags an incomplete aggregate (explained in the table notes).

    ``seeds`` are the seeds behind a seed-aggregated entry (None for averages and derived entries such as H);
    ``std`` and ``ci95`` are None where there is no spread to show (fewer than two seeds, averages).
    """

    mean: float | None = None
    std: float | None = None
    ci95: float | None = None
    n: int = 0
    mark: bool = False
    seeds: tuple[int, ...] | None = None

    @classmethod
    def of(cls, stats: SeedStats | None) -> Cell:
        if stats is None:
            return cls()
        spread = stats.n >= 2
        return cls(
            stats.mean,
            stats.std if spread else None,
            stats.ci95 if spread else None,
            stats.n,
            not stats.complete,
            stats.seeds,
        )

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
        return [f"{where}: no runs" + (f" (expected seeds {_seeds_text(expected_seeds)})" if expected_seeds else "")]
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


def is_checkpoint_eval(record: Mapping[str, Any]) -> bool:
    """A run that evaluated a saved prompt (``ckpt=``) instead of training one: its tables are its own."""
    return record.get("ckpt") not in (None, "")


def _setting_records(records: Iterable[Mapping[str, Any]], setting: str) -> list[Mapping[str, Any]]:
    """The records of ``setting`` that belong in its tables (evaluations of a saved prompt do not)."""
    return [r for r in records if str(r["setting"]) == setting and not is_checkpoint_eval(r)]


def _expected(records: Sequence[Mapping[str, Any]], setting: str, expected_seeds: Sequence[int] | None) -> tuple[int, ...]:
    return tuple(expected_seeds) if expected_seeds is not None else found_seeds(records).get(setting, ())


def _shots_label(shots: int) -> str:
    return f"{shots} shot{'s' if shots != 1 else ''}"


# --------------------------------------------------------------------------------------------------- few-shot
def fewshot_tables(
    records: Iterable[Mapping[str, Any]],
    expected_seeds: Sequence[int] | None = None,
    expected_shots: Sequence[int] | None = None,
    expected_datasets: Sequence[str] | None = None,
) -> list[Table]:
    """Per method and backbone: rows = datasets + Average, columns = shots; then one summary per backbone.

    Expected datasets/shots default to every one seen for that backbone, so a method lacking a cell other
    methods have is reported. The Average row is the mean over datasets of the seed means. Runs also evaluated on
    other datasets (``eval_datasets=``) get a transfer table of those evaluations after them.
    """
    records = _setting_records(records, "fewshot")
    expected_seeds = _expected(records, "fewshot", expected_seeds)
    stats = {
        k: v
        for k, v in group_runs(records, expected_seeds).items()
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
    tables += transfer_tables(
        _with_other_targets(records), "fewshot", expected_seeds, with_average=False, kind="fewshot-transfer",
        title="Few-shot transfer",
    )  # fmt: skip
    return tables


def _with_other_targets(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records of every run (all its seeds) that was also evaluated on a dataset other than its own."""
    source = lambda k: (k.method, k.variant, k.backbone, k.pretrained, k.dataset, k.shots)  # noqa: E731
    keys = {source(group_key(r)) for r in records if group_key(r).eval_dataset != group_key(r).dataset}
    return [r for r in records if source(group_key(r)) in keys]


# --------------------------------------------------------------------------------------------- base-to-new
def base2new_tables(
    records: Iterable[Mapping[str, Any]],
    expected_seeds: Sequence[int] | None = None,
    expected_datasets: Sequence[str] | None = None,
) -> list[Table]:
    """Per method, backbone and shots: rows = datasets + Average, columns Base, New, H; then a summary.

    H per dataset comes from the seed-averaged B and N; the Average row averages B and N over datasets and
    recomputes H from those averages (not the mean of per-dataset H).
    """
    records = _setting_records(records, "base2new")
    expected_seeds = _expected(records, "base2new", expected_seeds)
    stats = {
        k: v
        for k, v in group_runs(records, expected_seeds).items()
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
    expected_seeds: Sequence[int] | None = None,
    expected_targets: Sequence[str] | None = None,
    with_average: bool | None = None,
    kind: str | None = None,
    title: str | None = None,
) -> list[Table]:
    """Domain generalisation (``dg``) or cross-dataset (``xd``): rows = methods, columns = source + targets.

    One table per (backbone, shots, source dataset). Cross-dataset adds the average over targets (not source).
    Expected targets default to every target seen for that source, so a method lacking one is reported.
    ``kind`` and ``title`` name such a table of another setting (few-shot runs with ``eval_datasets``).
    """
    if with_average is None:
        with_average = setting == "xd"
    records = _setting_records(records, setting)
    expected_seeds = _expected(records, setting, expected_seeds)
    stats = group_runs(records, expected_seeds)
    kind = kind or setting
    title = title or {"dg": "Domain generalisation", "xd": "Cross-dataset transfer"}.get(setting, setting)
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
            name=f"{kind}:{source}:{_shots_label(shots)}:{backbone_label(*bb)}",
            title=f"{title} accuracy (%) · source {source} · {_shots_label(shots)} · {backbone_label(*bb)}",
            row_header="Method",
            columns=columns,
            meta={
                "kind": kind,
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


# ------------------------------------------------------------------------------------ saved-prompt evaluations
_TRAINING_KEYS = ("ckpt", "trainer.max_epochs")  # an evaluation of a saved prompt differs in these by definition


def _ckpt_label(record: Mapping[str, Any]) -> str:
    """The saved prompt a record evaluated: its path (the run-folder part of it) and the start of its SHA-256."""
    parts = Path(str(record["ckpt"])).parts
    path = "/".join(parts[-7:]) if len(parts) <= 7 else ".../" + "/".join(parts[-7:])
    ident = record.get("identity")
    sha = ident.get("ckpt") if isinstance(ident, Mapping) else None
    sha = sha.get("sha256") if isinstance(sha, Mapping) else None
    return f"{path} (sha256 {sha[:8]})" if isinstance(sha, str) else path


def checkpoint_tables(records: Iterable[Mapping[str, Any]], expected_seeds: Sequence[int] | None = None) -> list[Table]:
    """Evaluations of saved prompts (runs with ``ckpt=``), one table per backbone: rows = method and saved prompt,
    columns = every dataset (and class subset) it was evaluated on. Seeds as in the other tables."""
    records = [r for r in records if is_checkpoint_eval(r)]
    if expected_seeds is None:
        expected_seeds = sorted({int(r["seed"]) for r in records})
    tables: list[Table] = []
    backbones = sorted({(str(r["backbone"]), str(r.get("pretrained") or "")) for r in records})
    for bb in backbones:
        rows: dict[tuple[str, str, int], dict[str, list[Mapping[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for r in records:
            if (str(r["backbone"]), str(r.get("pretrained") or "")) != bb:
                continue
            extras = r.get("extras") if isinstance(r.get("extras"), Mapping) else {}
            variant = variant_of({"extras": {k: v for k, v in extras.items() if not k.startswith(_TRAINING_KEYS)}})
            key = (method_label(str(r["method"]), variant), _ckpt_label(r), int(r["shots"]))
            sub = str(r.get("subsample") or "all")
            column = str(r.get("eval_dataset") or r["dataset"]) + ("" if sub == "all" else f" ({sub})")
            rows[key][column].append(r)
        columns = sorted({c for cols in rows.values() for c in cols}, key=dataset_sort_key)
        several_shots = len({shots for _, _, shots in rows}) > 1
        table = Table(
            setting="checkpoints",
            name=f"checkpoints:{backbone_label(*bb)}",
            title=f"Saved prompts (ckpt=) evaluated: accuracy (%) · {backbone_label(*bb)}",
            row_header="Method · saved prompt",
            columns=columns,
            meta={"kind": "checkpoints", "backbone": bb[0], "pretrained": bb[1]},
        )
        for (method, ckpt, shots), by_column in sorted(rows.items()):
            label = f"{method} · {ckpt}" + (f" · {_shots_label(shots)}" if several_shots else "")
            found = [seed_stats(by_column[c], expected_seeds) if c in by_column else None for c in columns]
            table.rows.append((label, [Cell.of(st) for st in found]))
            for col, st in zip(columns, found):
                if st is not None:
                    table.notes += _stats_note(f"{label}, {col}", st, expected_seeds)
        tables.append(table)
    return tables


def _shown(key: GroupKey, setting: str) -> bool:
    """Whether the tables of ``setting`` show a result of this configuration."""
    if setting == "base2new":
        return key.eval_dataset == key.dataset and key.subsample in ("base", "new")
    return key.subsample == "all"  # few-shot (own dataset or transfer table), dg, xd


def unshown_notes(records: Iterable[Mapping[str, Any]], setting: str) -> list[str]:
    """One line per configuration of ``setting`` whose results no table of the setting shows (never dropped
    silently): e.g. a few-shot run evaluated on a class subset."""
    counts: dict[GroupKey, int] = defaultdict(int)
    for rec in _setting_records(records, setting):
        key = group_key(rec)
        if not _shown(key, setting):
            counts[key] += 1
    why = {"base2new": "base-to-new tables show each dataset's own base and new classes"}.get(
        setting, "these tables show whole test sets (subsample all)"
    )
    return [
        f"not shown: {n} result{'s' if n != 1 else ''} of {method_label(k.method, k.variant)} trained on {k.dataset} "
        f"({backbone_label(k.backbone, k.pretrained)}, {_shots_label(k.shots)}) evaluated on {k.eval_dataset} "
        f"(subsample {k.subsample}): {why}"
        for k, n in sorted(counts.items())
    ]


def build_tables(
    records: Iterable[Mapping[str, Any]],
    setting: str,
    expected_seeds: Sequence[int] | None = None,
    expected_shots: Sequence[int] | None = None,
) -> list[Table]:
    """All tables of one setting (``fewshot``, ``base2new``, ``dg`` or ``xd``), or ``checkpoints``: the
    evaluations of saved prompts of every setting, which the others leave out."""
    records = list(records)
    if setting == "fewshot":
        return fewshot_tables(records, expected_seeds, expected_shots)
    if setting == "base2new":
        return base2new_tables(records, expected_seeds)
    if setting in ("dg", "xd"):
        return transfer_tables(records, setting, expected_seeds)
    if setting == "checkpoints":
        return checkpoint_tables(records, expected_seeds)
    raise ValueError(f"unknown setting {setting!r}; expected one of {', '.join(SETTINGS)} or checkpoints")
