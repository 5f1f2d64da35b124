"""``prograd-pl report``: read every results.json under an output root and write the paper's tables.

Writes ``<out>/<setting>.{md,csv,tex}`` per setting (and ``checkpoints.*`` for evaluations of saved prompts),
``<out>/fewshot_curves.{png,pdf}`` and one bar figure per other table, and prints the Markdown. Markdown/LaTeX show
``mean ± std`` (population std over seeds, only where a cell has two seeds or more; ``--ci95`` shows the 95%
interval instead) and the seeds behind each cell (``n=``); the CSV is long-format with mean, std, ci95, n and the
seeds of every cell. Runs are found at any depth, but each output root (the folder a sweep wrote
``<setting>/<dataset>/...`` into, e.g. ``outputs`` and ``outputs/demo``) is reported on its own.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from prograd_pl.results.aggregate import (
    SETTINGS,
    Cell,
    Table,
    build_tables,
    harmonic_mean,
    seed_stats,
    unshown_notes,
)
from prograd_pl.results.store import ResultsWarning, by_output_root, iter_results

FORMATS = ("md", "csv", "tex")
MARK = "*"
CHECKPOINTS = "checkpoints"


def format_cell(
    cell: Cell, ci95: bool = False, pm: str = " ± ", empty: str = "–", mark: str = MARK, show_n: bool = False
) -> str:
    """``mean ± spread`` with two decimals (the spread only where the cell has one: two seeds or more);
    incomplete cells carry ``mark``; ``show_n`` appends the number of seeds, ``(n=2)``."""
    if cell.empty:
        return empty
    text = f"{cell.mean:.2f}"
    spread = cell.ci95 if ci95 else cell.std
    if spread is not None and cell.n >= 2:
        text += f"{pm}{spread:.2f}"
    text += mark if cell.mark else ""
    if show_n and cell.seeds is not None:
        text += f" (n={len(cell.seeds)})"
    return text


def _spread_name(ci95: bool) -> str:
    return "95% CI (1.96·std/√n)" if ci95 else "population std over seeds"


def seeds_summary(table: Table) -> tuple[bool, str]:
    """Whether the seed count varies between the table's cells (then every cell shows its ``n=``), and a sentence
    that says the seeds behind the cells."""
    seeds = [c.seeds for _, cells in table.rows for c in cells if c.seeds is not None]
    if not seeds:
        return False, "Each entry is a mean over datasets of seed means (see the per-method tables)."
    counts = sorted({len(s) for s in seeds})
    if len(counts) > 1:
        return True, f"n = the seeds behind each entry ({', '.join(map(str, counts))} in this table)."
    sets = sorted(set(seeds))
    plural = "s" if counts[0] != 1 else ""
    which = f" (seed{'s' if len(sets[0]) != 1 else ''} {', '.join(map(str, sets[0]))})" if len(sets) == 1 else ""
    return False, f"n = {counts[0]} seed{plural} in every entry{which}."


def _footer(table: Table, ci95: bool) -> str:
    if not any(c.seeds is not None for _, cells in table.rows for c in cells):
        return seeds_summary(table)[1]
    return f"Mean ± {_spread_name(ci95)} where n ≥ 2; {seeds_summary(table)[1]}"


# ------------------------------------------------------------------------------------------------ Markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(tables: Sequence[Table], ci95: bool = False) -> str:
    """Markdown tables, each followed by the seeds behind it and its notes on missing or incomplete entries."""
    out: list[str] = []
    for t in tables:
        show_n = seeds_summary(t)[0]
        out.append(f"### {_md_escape(t.title)}\n")
        out.append("| " + " | ".join(_md_escape(h) for h in [t.row_header, *t.columns]) + " |")
        out.append("|" + "---|" + "---:|" * len(t.columns))
        for label, cells in t.rows:
            row = [_md_escape(label)] + [format_cell(c, ci95, show_n=show_n) for c in cells]
            out.append("| " + " | ".join(row) + " |")
        out.append("")
        out.append(_footer(t, ci95))
        if t.notes:
            out.append(f"{MARK} incomplete; missing or incomplete entries:")
            out.append("")
            out += [f"- {_md_escape(n)}" for n in t.notes]
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------------- CSV
CSV_FIELDS = (
    "setting",
    "table",
    "method",
    "variant",
    "backbone",
    "pretrained",
    "row",
    "column",
    "mean",
    "std",
    "ci95",
    "n",
    "seeds",
    "complete",
)


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


def render_csv(tables: Sequence[Table]) -> str:
    """Long format: one line per cell with mean, std and ci95 (empty where fewer than two seeds), n (seeds, or the
    entries an average is over), the seeds and completeness (loads into pandas as is)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for t in tables:
        for label, cells in t.rows:
            for col, c in zip(t.columns, cells):
                writer.writerow(
                    [
                        t.setting,
                        t.name,
                        t.meta.get("method", label),
                        t.meta.get("variant", ""),
                        t.meta.get("backbone", ""),
                        t.meta.get("pretrained", ""),
                        label,
                        col,
                        _num(c.mean),
                        _num(c.std),
                        _num(c.ci95),
                        c.n,
                        "" if c.seeds is None else " ".join(map(str, c.seeds)),
                        "" if c.empty else str(not c.mark).lower(),
                    ]
                )
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------- LaTeX
_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "·": r"$\cdot$",
    "√": r"$\surd$",
    "≥": r"$\geq$",
    "–": "--",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def render_latex(tables: Sequence[Table], ci95: bool = False) -> str:
    """booktabs tables (``\\usepackage{booktabs}``), notes as a footnote-sized paragraph under each."""
    out: list[str] = [f"% generated by prograd-pl report; mean $\\pm$ {tex_escape(_spread_name(ci95))}"]
    for t in tables:
        show_n = seeds_summary(t)[0]
        out += [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            rf"\caption{{{tex_escape(t.title)}}}",
            r"\begin{tabular}{l" + "r" * len(t.columns) + "}",
            r"\toprule",
            " & ".join(tex_escape(h) for h in [t.row_header, *t.columns]) + r" \\",
            r"\midrule",
        ]
        for label, cells in t.rows:
            if label in ("Average",):
                out.append(r"\midrule")
            cells_tex = [
                format_cell(c, ci95, pm=r"$\pm$", empty="--", mark=r"$^{*}$", show_n=show_n) for c in cells
            ]
            out.append(" & ".join([tex_escape(label), *cells_tex]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\par\smallskip\footnotesize " + tex_escape(_footer(t, ci95))]
        if t.notes:
            out.append(
                r"\par\smallskip\footnotesize $^{*}$incomplete. Missing: "
                + "; ".join(tex_escape(n) for n in t.notes)
                + "."
            )
        out += [r"\end{table}", ""]
    return "\n".join(out)


RENDERERS = {"md": render_markdown, "csv": lambda t, ci95=False: render_csv(t), "tex": render_latex}


# ---------------------------------------------------------------------------------------------------- CLI
def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _formats(text: str) -> list[str]:
    fmts = [f.strip().lstrip(".") for f in text.split(",") if f.strip()]
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    return fmts


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prograd-pl report",
        description="Aggregate every results.json under OUTPUT_ROOT into tables (mean ± population std over "
        "seeds) and figures. Runs are found at any depth; each output root found (the folder a sweep wrote "
        "<setting>/<dataset>/... into) is reported on its own.",
    )
    p.add_argument("output_root", type=Path, help="folder holding the runs (searched recursively)")
    p.add_argument("--setting", choices=[*SETTINGS, CHECKPOINTS, "all"], default="all",
                   help="which tables (default all; checkpoints: evaluations of saved prompts, ckpt=)")  # fmt: skip
    p.add_argument(
        "--out", type=Path, default=None, help="folder to write tables and figures into (default OUTPUT_ROOT/tables)"
    )
    p.add_argument("--all-roots", action="store_true",
                   help="when OUTPUT_ROOT holds runs and other output roots below it (e.g. outputs/demo), report "
                   "those too, each into its own folder under --out (default: OUTPUT_ROOT's own runs only)")  # fmt: skip
    p.add_argument("--ci95", action="store_true", help="show 1.96·std/√n instead of std")
    p.add_argument(
        "--seeds",
        type=_int_list,
        default=None,
        help="seeds every configuration should have (default: every seed found in its setting)",
    )
    p.add_argument(
        "--shots",
        type=_int_list,
        default=None,
        help="shot counts the few-shot tables should have (default: every one found)",
    )
    p.add_argument(
        "--format",
        dest="formats",
        type=_formats,
        default=list(FORMATS),
        help="comma-separated subset of md,csv,tex (default all)",
    )
    p.add_argument("--no-plot", action="store_true", help="write no figures")
    p.add_argument("--reference", type=Path, action="append", default=[],
                   help="reference.csv of published numbers (experiments/<setting>/reference.csv) to print ours "
                   "beside, with the difference; repeatable")  # fmt: skip
    p.add_argument("--papers", type=Path, action="append", default=[],
                   help="reference.csv whose published averages to print beside each method's average whatever the "
                   "backbone (the mini world's runs: compare the order of the methods, not the numbers); repeatable")
    p.add_argument("--wandb", action="store_true",
                   help="also upload the tables (W&B Tables) and plots to each sweep's W&B group "
                   "(<setting>-<backbone>); WANDB_MODE=offline writes them under --out for `wandb sync`")  # fmt: skip
    p.add_argument("--wandb-project", default="prograd_pl", help="W&B project (default prograd_pl)")
    p.add_argument("--wandb-entity", default=None, help="W&B entity (default: your default entity)")
    p.add_argument("--wandb-group", default=None, help="upload everything to this group instead")
    return p


def _error(message: str) -> int:
    print(f"prograd_pl: error: {message}", file=sys.stderr)
    return 1


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _shown_path(path: Path, under: Path) -> str:
    """``path`` as the user would type it: relative to the folder they gave where it lies below it."""
    try:
        return str(under / path.resolve().relative_to(under.resolve()))
    except ValueError:
        return str(path)


def _subfolder(output_root: Path, root: Path) -> Path:
    """Where, under ``--out``, the tables of one of several output roots go: its path below ``root``."""
    try:
        return output_root.resolve().relative_to(root.resolve())
    except ValueError:
        return Path(output_root.resolve().name)


def choose_roots(root: Path, roots: Sequence[Path], all_roots: bool) -> tuple[list[Path], list[Path]]:
    """Which output roots to report (each on its own) and which to leave out: the given folder's own runs when it
    is an output root itself (others below it only with ``all_roots``), else every output root found."""
    own = [r for r in roots if _same(r, root)]
    if own and not all_roots:
        return own, [r for r in roots if r not in own]
    return sorted(roots, key=lambda r: (not _same(r, root), str(r))), []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prograd-pl report``; returns the exit status (1 with one sentence on bad input)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    root: Path = args.output_root
    if not root.exists():
        return _error(f"output root {root} does not exist; expected the folder a run or sweep wrote into.")
    out: Path = args.out if args.out is not None else (root if root.is_dir() else root.parent) / "tables"
    if out.exists() and not out.is_dir():
        return _error(f"--out {out} is a file; expected a folder to write the tables into.")

    skipped: list[tuple[Path, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultsWarning)  # reported below, one line per file
        found = list(iter_results(root, errors=skipped))
    for _, reason in skipped:
        print(f"warning: skipping {reason}", file=sys.stderr)
    if not found:
        return _error(f"no valid results.json under {root}; expected the runs of a sweep (see the warnings above).")

    groups = by_output_root(found, root if root.is_dir() else root.parent)
    chosen, left_out = choose_roots(root, list(groups), args.all_roots)
    for other in left_out:
        print(f"note: left out {_shown_path(other, root)} ({len(groups[other])} results): a separate output root; "
              f"`prograd-pl report {_shown_path(other, root)}` reports it (or --all-roots)", file=sys.stderr)  # fmt: skip
    written: list[Path] = []
    built: dict[str, list[Table]] = {}
    for output_root in chosen:
        where = out if len(chosen) == 1 else out / _subfolder(output_root, root)
        records = [data for _, data in groups[output_root]]
        shown = _shown_path(output_root, root)
        print(f"note: reading output root {shown} ({len(records)} results)", file=sys.stderr)
        try:
            tables = report_root(records, where, args, shown if len(chosen) > 1 else None, written)
        except OSError as err:
            return _error(f"cannot write the tables into {where} ({err.strerror or err}); expected a writable folder.")
        for setting, ts in tables.items():
            built.setdefault(setting, []).extend(ts)
    if not written:
        return _error(f"no results for setting {args.setting} under {root}.")
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    if args.wandb:
        from prograd_pl.results.wandb_upload import upload

        images = {s: [p for p in written if p.suffix == ".png" and p.stem.startswith(s)] for s in built}
        groups_up = upload(built, images, project=args.wandb_project, entity=args.wandb_entity, out_dir=out,
                           group=args.wandb_group)  # fmt: skip
        print("uploaded to W&B group(s) " + ", ".join(groups_up), file=sys.stderr)
    return 0


def report_root(
    records: Sequence[dict], out: Path, args: argparse.Namespace, label: str | None, written: list[Path]
) -> dict[str, list[Table]]:
    """Tables, files and figures of one output root's records; appends the files to ``written``."""
    if args.setting == "all":
        settings = [*SETTINGS, CHECKPOINTS]
    else:  # a setting's evaluations of saved prompts come with it, in their own table
        settings = [args.setting] + ([CHECKPOINTS] if args.setting in SETTINGS else [])
    heading = f" · output root {label}" if label else ""
    other = sorted({str(r["setting"]) for r in records} - set(SETTINGS))
    for name in other:
        n = sum(str(r["setting"]) == name for r in records)
        print(f"note: not shown: {n} results of setting {name!r} (a report knows {', '.join(SETTINGS)})",
              file=sys.stderr)  # fmt: skip
    built: dict[str, list[Table]] = {}
    for setting in settings:
        selected = records
        if setting == CHECKPOINTS and args.setting in SETTINGS:
            selected = [r for r in records if r["setting"] == args.setting]
        tables = build_tables(selected, setting, args.seeds, args.shots)
        unshown = unshown_notes(records, setting) if setting in SETTINGS else []
        for line in unshown:
            print(f"note: {line}", file=sys.stderr)
        if not tables:
            if args.setting == setting:
                print(f"note: no {setting} results under {label or args.output_root}", file=sys.stderr)
            continue
        built[setting] = tables
        out.mkdir(parents=True, exist_ok=True)
        md = render_markdown(tables, ci95=args.ci95)
        if unshown:
            md += "\nNot in these tables:\n\n" + "\n".join(f"- {_md_escape(n)}" for n in unshown) + "\n"
        for fmt in args.formats:
            path = out / f"{setting}.{fmt}"
            text = md if fmt == "md" else RENDERERS[fmt](tables, ci95=args.ci95)
            path.write_text(text, encoding="utf-8")
            written.append(path)
        if not args.no_plot:
            from prograd_pl.results.plots import write_figures

            written += write_figures(setting, tables, out)
        print(f"## {setting}{heading}\n")
        print(md)
        for ref_path in args.reference:
            from prograd_pl.results.reference import compare, read_reference

            side = compare(tables, read_reference(ref_path))
            if side:
                print(f"\n### ours beside the reference ({ref_path})\n\n{side}\n")
                (out / f"{setting}_vs_reference.md").write_text(side + "\n", encoding="utf-8")
        for ref_path in args.papers:
            from prograd_pl.results.reference import papers_beside, read_reference

            side = papers_beside(tables, read_reference(ref_path))
            if side:
                print(f"\n### each method's average beside the papers' ({ref_path}; other backbone and data: read "
                      f"the order, not the numbers)\n\n{side}\n")
                (out / f"{setting}_vs_papers.md").write_text(side + "\n", encoding="utf-8")
    return built


def base2new_summary(records: Sequence[dict], dataset: str, methods: Sequence[str] = ("zeroshot", "coop", "prograd")) -> str:
    """Markdown table of one dataset's base-to-new runs (mean ± population std over seeds, H of the means), and a
    line that says what to read in it: the paper's claim, checked on these numbers."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for rec in records:
        if rec["setting"] == "base2new" and rec["dataset"] == dataset:
            runs.setdefault((rec["method"], rec["subsample"]), []).append(rec)
    lines = [f"Base-to-new on {dataset} (mean ± std over seeds where n ≥ 2; n = seeds)", "",
             "| method | base | new | H |", "|---|---|---|---|"]  # fmt: skip
    # several results for one seed (e.g. runs of earlier weights in the same output root): the latest, as the tables
    stats = {m: (seed_stats(runs[(m, "base")]), seed_stats(runs[(m, "new")]))
             for m in methods if (m, "base") in runs and (m, "new") in runs}  # fmt: skip
    show_n = len({s.n for pair in stats.values() for s in pair}) > 1
    means: dict[str, tuple[float, float]] = {}
    for m in methods:
        if m not in stats:
            lines.append(f"| {m} | – | – | – |")
            continue
        b, n = stats[m]
        means[m] = (b.mean, n.mean)
        base, new = (format_cell(Cell.of(s), mark="", show_n=show_n) for s in (b, n))
        lines.append(f"| {m} | {base} | {new} | {harmonic_mean(b.mean, n.mean):.2f} |")
    if all(m in means for m in ("zeroshot", "coop", "prograd")):
        (zb, zn), (cb, cn), (pb, pn) = means["zeroshot"], means["coop"], means["prograd"]
        lines += ["", (
            f"Read: prompt tuning {'gains' if cb > zb else 'does not gain'} on the trained (base) classes "
            f"(CoOp {cb - zb:+.1f} vs zero-shot); CoOp {'forgets' if cn < zn else 'does not forget'} the unseen new "
            f"classes ({cn - zn:+.1f}); ProGrad {'keeps more of them' if pn > cn else 'does not keep more of them'} "
            f"({pn - cn:+.1f} vs CoOp on new, {pb - zb:+.1f} vs zero-shot on base)."
        )]  # fmt: skip
    return "\n".join(lines)


def print_base2new_summary(output_root: str | Path, dataset: str) -> None:
    """Print ``base2new_summary`` of the runs written with this ``output_root`` (not of other roots below it)."""
    root = Path(output_root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultsWarning)
        groups = by_output_root(iter_results(root), root)
    own = [g for r, g in groups.items() if _same(r, root)] or list(groups.values())
    print(base2new_summary([data for group in own for _, data in group], dataset))


if __name__ == "__main__":
    raise SystemExit(main())
