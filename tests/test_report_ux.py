"""What a user of the results sees: `report` on nested output roots and mixed seeds, saved-prompt evaluations in
their own table, the figures' legends and error bars, `prograd-pl diff` on any two folders of runs, `make help`.

The runs are real: the tiny model trained for one epoch on miniature dataset trees (results.json, identity.json
and prompt_learner.pt as a user's sweep writes them)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, compose, small_overrides
from data_trees import build_tree

from prograd_pl.__main__ import cli
from prograd_pl.results import aggregate, plots, report, store
from prograd_pl.results.aggregate import Cell, Table
from prograd_pl.results.diff import diff_folders


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Real tiny runs: prograd on dtd (seeds 1, 2) and eurosat (seed 1), another configuration of dtd (2 epochs),
    a saved prompt evaluated on eurosat (ckpt=), a base-to-new run, dtd seed 3 in a nested output root
    ``out/demo``, and a few-shot run also evaluated on eurosat in an output root of its own."""
    from prograd_pl.app.run import run

    tmp = tmp_path_factory.mktemp("ux")
    build_tree("dtd", tmp / "data", n_classes=4)
    build_tree("eurosat", tmp / "data", n_classes=5)
    out = tmp / "out"

    def go(*extra: str) -> Path:
        return Path(
            run(compose(small_overrides(tmp, "method=prograd", "shots=2", "threads=1", *extra)))["run_dir"]
        )

    paths = {"out": out, "data": tmp / "data"}
    paths["dtd1"] = go("dataset=dtd")
    paths["dtd2"] = go("dataset=dtd", "seed=2")
    paths["eurosat1"] = go("dataset=eurosat")
    paths["epochs2"] = go("dataset=dtd", "trainer.max_epochs=2")
    paths["ckpt"] = go("dataset=eurosat", f"ckpt={paths['dtd1']}")
    paths["b2n"] = go("dataset=dtd", "setting=base2new")
    paths["demo3"] = go("dataset=dtd", "seed=3", f"output_root={out / 'demo'}")
    paths["xfer"] = go("dataset=dtd", "eval_datasets=[eurosat]", f"output_root={tmp / 'xfer'}")
    return paths


def _csv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------- report
def test_report_keeps_nested_roots_apart_and_reports_seeds_per_cell(runs, tmp_path, capsys):
    out = tmp_path / "tables"
    assert report.main([str(runs["out"]), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    # the nested root is named, not merged: dtd has seeds 1 and 2 here, seed 3 lives in out/demo
    assert re.search(r"note: left out \S*demo \(1 results\)", captured.err)
    rows = _csv_rows(out / "fewshot.csv")
    plain = [r for r in rows if r["method"] == "prograd" and r["variant"] == "trainer.max_epochs=1"]
    dtd = next(r for r in plain if r["row"] == "dtd" and r["column"] == "2")
    eurosat = next(r for r in plain if r["row"] == "eurosat" and r["column"] == "2")
    assert (dtd["n"], dtd["seeds"]) == ("2", "1 2") and (eurosat["n"], eurosat["seeds"]) == ("1", "1")
    assert (
        eurosat["std"] == "" and eurosat["ci95"] == "" and eurosat["complete"] == "false"
    )  # one seed: no spread
    assert dtd["std"] != "" and dtd["complete"] == "true"
    md = (out / "fewshot.md").read_text()
    table = md.split("### ")[1]  # the plain prograd table: n varies between its cells, so each cell says it
    eurosat_line = next(line for line in table.splitlines() if line.startswith("| eurosat |"))
    dtd_line = next(line for line in table.splitlines() if line.startswith("| dtd |"))
    assert "(n=1)" in eurosat_line and "±" not in eurosat_line and "*" in eurosat_line
    assert "(n=2)" in dtd_line and "±" in dtd_line
    assert (
        "eurosat, 2 shots: missing seeds 2" in table
    )  # expected = the seeds found in the setting, not 1,2,3
    # the saved prompt's evaluation is in its own table, not a main-table method titled [ckpt.sha256=...]
    assert "ckpt" not in md and "ckpt" not in (out / "base2new.md").read_text()
    ck = (out / "checkpoints.md").read_text()
    assert "Saved prompts (ckpt=) evaluated" in ck and "| Method · saved prompt | eurosat |" in ck
    assert "/seed1 (sha256 " in ck and str(runs["dtd1"].parent.name) in ck
    for name in (
        "fewshot_curves.png",
        "fewshot_curves.pdf",
        "checkpoints.png",
        "checkpoints.pdf",
        "base2new.png",
    ):
        assert (out / name).stat().st_size > 1000, name

    every = tmp_path / "every"
    assert report.main([str(runs["out"]), "--out", str(every), "--all-roots", "--no-plot"]) == 0
    capsys.readouterr()
    demo = _csv_rows(every / "demo" / "fewshot.csv")
    assert {(r["row"], r["seeds"]) for r in demo if r["column"] == "2" and r["row"] == "dtd"} == {
        ("dtd", "3")
    }
    assert (every / "fewshot.md").is_file() and (every / "checkpoints.md").is_file()


def test_report_of_a_folder_holding_only_nested_roots_reports_each(runs, tmp_path, capsys):
    parent = tmp_path / "outputs"
    shutil.copytree(runs["out"] / "demo", parent / "demo")
    shutil.copytree(runs["xfer"].parents[6], parent / "xfer")
    assert report.main([str(parent), "--no-plot", "--format", "md"]) == 0
    err = capsys.readouterr().err
    assert "reading output root" in err and "demo" in err and "xfer" in err
    assert (parent / "tables" / "demo" / "fewshot.md").is_file()
    xfer = (parent / "tables" / "xfer" / "fewshot.md").read_text()
    # a few-shot run also evaluated on another dataset: its other evaluation is in a transfer table, not dropped
    assert "Few-shot transfer accuracy (%) · source dtd" in xfer and "| Method | dtd | eurosat |" in xfer


def test_report_validates_and_names_what_it_skips(runs, tmp_path, capsys):
    root = tmp_path / "out"
    shutil.copytree(runs["out"] / "fewshot", root / "fewshot")
    shutil.copytree(runs["out"] / "base2new", root / "base2new")
    dtd1 = root / runs["dtd1"].relative_to(runs["out"]) / "results.json"
    record = json.loads(dtd1.read_text())
    too_high = dtd1.parent.parent / "seed7" / "results.json"
    too_high.parent.mkdir()
    too_high.write_text(json.dumps({**record, "seed": 7, "metrics": {**record["metrics"], "acc": 150.0}}))
    no_seed = dtd1.parent.parent / "seed8" / "results.json"
    no_seed.parent.mkdir()
    no_seed.write_text(json.dumps({k: v for k, v in record.items() if k != "seed"}))
    # a base-to-new result on another dataset: no base-to-new table shows it, so the report says so
    (b2n,) = (root / "base2new").rglob("evals/*/results.json")
    other = json.loads(b2n.read_text())
    store.write_results(b2n.parent.parent / "eurosat-new", {**other, "eval_dataset": "eurosat"})
    assert report.main([str(root), "--no-plot"]) == 0
    err = capsys.readouterr().err.splitlines()
    skipped = [line for line in err if line.startswith("warning: skipping")]
    assert len(skipped) == 2
    assert any(str(too_high) in line and "0..100" in line for line in skipped)
    assert any(str(no_seed) in line and "missing keys seed" in line for line in skipped)
    unshown = [line for line in err if "not shown" in line]
    assert len(unshown) == 1 and "evaluated on eurosat (subsample new)" in unshown[0]
    assert "evaluated on eurosat (subsample new)" in (root / "tables" / "base2new.md").read_text()
    assert "seeds 1, 2, 7" not in (root / "tables" / "fewshot.md").read_text()


def test_report_bad_out_and_bad_root_are_one_sentence(runs, tmp_path, capsys):
    a_file = tmp_path / "tables.md"
    a_file.write_text("mine\n")
    assert report.main([str(runs["out"]), "--out", str(a_file)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"prograd_pl: error: --out {a_file} is a file; expected a folder to write the tables into."
    ]
    assert a_file.read_text() == "mine\n"
    assert report.main([str(tmp_path / "missing")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("prograd_pl: error: output root") and "does not exist" in line


# -------------------------------------------------------------------------------------------------- plots
def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _check_layout(fig) -> list[str]:
    """Draw ``fig``; the legend must lie inside the figure, off every axes and off the title. Its labels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None] + list(fig.legends)
    assert len(legends) == 1
    box = legends[0].get_window_extent(renderer)
    assert (
        fig.bbox.x0 <= box.x0
        and box.x1 <= fig.bbox.x1 + 0.5
        and fig.bbox.y0 <= box.y0
        and box.y1 <= fig.bbox.y1 + 0.5
    )
    for ax in fig.axes:
        if ax.axison:
            assert not _overlaps(box, ax.get_window_extent(renderer)), ax.get_title()
    from matplotlib.text import Text

    (title,) = [
        t for t in fig.get_children() if isinstance(t, Text) and t.get_text() == fig.get_suptitle() != ""
    ]
    assert title.get_fontsize() >= 12
    assert not _overlaps(box, title.get_window_extent(renderer))
    for ax in fig.axes:
        if ax.axison:
            assert ax.get_xlabel() and ax.get_ylabel() == "accuracy (%)"
    return [t.get_text() for t in legends[0].get_texts()]


def _error_bars(fig) -> int:
    from matplotlib.container import ErrorbarContainer

    return sum(len(c.lines[2][0].get_segments()) for ax in fig.axes for c in ax.containers
               if isinstance(c, ErrorbarContainer))  # fmt: skip


def test_figures_of_real_runs_keep_the_legend_outside_and_explain_markers(runs, tmp_path):
    records = [rec for _, rec in store.iter_results(runs["out"]) if "demo" not in rec["run_dir"]]
    fewshot = aggregate.build_tables(records, "fewshot")
    labels = _check_layout(plots.fewshot_figure(fewshot))
    assert any(label.startswith("prograd") for label in labels)
    assert any(label.startswith("hollow:") for label in labels)  # eurosat lacks seed 2: its point is hollow
    (ckpt,) = aggregate.build_tables(records, "checkpoints")
    assert any(t.startswith("prograd · ") for t in _check_layout(plots.bars_figure(ckpt)))
    written = plots.write_figures("checkpoints", [ckpt], tmp_path)
    assert sorted(p.name for p in written) == ["checkpoints.pdf", "checkpoints.png"]
    assert (tmp_path / "checkpoints.pdf").read_bytes()[:5] == b"%PDF-"
    assert (tmp_path / "checkpoints.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_error_bars_only_where_two_seeds_or_more_vary():
    def cell(mean: float, std: float | None, n: int, mark: bool = False) -> Cell:
        return Cell(mean, std, None if std is None else 1.96 * std / n**0.5, n, mark, tuple(range(1, n + 1)))

    rows = [
        (f"m{i}", [cell(50, 2.0, 3), cell(40, None, 1, True), cell(45, 0.0, 2), Cell()]) for i in range(6)
    ]
    columns = ["imagenet", "imagenetv2", "imagenet_sketch", "imagenet_a"]
    table = Table("dg", "dg:x", "Domain generalisation accuracy (%) · source imagenet", "Method", columns, rows,
                  meta={"kind": "dg"})  # fmt: skip
    fig = plots.bars_figure(table)
    labels = _check_layout(fig)  # six methods: the legend still beside the bars, not over them
    assert _error_bars(fig) == 6  # one per method: n=1 and the zero spread draw none, nor does the empty cell
    assert {
        "hatched: fewer seeds than the others (* in the table)",
        "bars: ± std over seeds (where n ≥ 2)",
    } <= {label.replace("\n", " ") for label in labels}
    bars = [p for p in fig.axes[0].patches if p.get_height() > 0]
    assert len(bars) == 6 * 3  # the empty cell draws no zero-height bar

    curve = Table("fewshot", "fewshot:m", "Few-shot accuracy (%) · m", "Dataset", ["1", "2", "4"],
                  [("dtd", [cell(50, None, 1), cell(55, 1.0, 2), cell(60, 0.0, 3)]),
                   ("Average", [Cell(50.0), Cell(55.0), Cell(60.0)])],
                  meta={"kind": "fewshot", "method": "m", "variant": "", "backbone": "RN50", "pretrained": "openai",
                        "shots": [1, 2, 4]})  # fmt: skip
    fig = plots.fewshot_figure([curve])
    _check_layout(fig)
    assert _error_bars(fig) == 1


# --------------------------------------------------------------------------------------------------- diff
def test_diff_of_two_cfg_digest_folders_seeds_and_settings(runs, capsys):
    plain, longer = runs["dtd1"].parent, runs["epochs2"].parent
    assert plain.name.startswith("cfg-") and longer.name.startswith("cfg-") and plain != longer
    lines = diff_folders(plain, longer)
    assert lines[0] == f"A: {plain} (2 runs: seeds 1, 2)" and lines[1] == f"B: {longer} (1 run: seed 1)"
    assert "trainer.max_epochs: 1 -> 2" in lines and "seed: one of 1, 2 -> 1" in lines
    assert len(lines) == 4  # nothing else differs

    assert cli(["diff", str(runs["dtd1"]), str(runs["dtd2"])]) == 0
    assert capsys.readouterr().out.splitlines()[2:] == ["seed: 1 -> 2"]
    assert cli(["diff", str(runs["dtd1"]), str(runs["b2n"])]) == 0
    assert 'setting: "fewshot" -> "base2new"' in capsys.readouterr().out.splitlines()
    assert diff_folders(runs["dtd1"], runs["dtd1"])[2:] == ["same configuration"]
    # a saved prompt's evaluation: the ckpt's content is named
    assert any(
        line.startswith("ckpt.sha256: (absent) -> ") for line in diff_folders(runs["dtd1"], runs["ckpt"])
    )


def test_diff_answers_bad_input_in_one_sentence(runs, tmp_path, capsys):
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "identity.json").write_text(json.dumps([{"seed": 1}, {"seed": 2}]))
    assert cli(["diff", str(runs["dtd1"]), str(listed)]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("prograd_pl: error: ") and "holds a JSON list, not an object" in line
    assert cli(["diff", str(runs["dtd1"]), str(tmp_path / "nope")]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "does not exist" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["diff", str(empty), str(runs["dtd1"])]) == 1
    assert "holds no identity.json or results.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli(["diff", str(runs["dtd1"])])
    assert exit_info.value.code == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("prograd_pl: error: diff:") and "RUN_A RUN_B" in line


# ----------------------------------------------------------------------------------------------- make help
def test_make_help_lists_every_target_of_the_makefile():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, flags=re.M)) - {".PHONY", ".DEFAULT_GOAL"}
    phony = set(
        re.search(r"^\.PHONY:((?:.*\\\n)*.*)", text, flags=re.M).group(1).replace("\\\n", " ").split()
    )
    assert phony <= targets and "table-base2new" in targets
    proc = subprocess.run(["make", "-s", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    listed = {line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ") and line.split()}
    assert listed == targets
    assert "EXP=" not in proc.stdout
