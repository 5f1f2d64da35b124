"""Results store, aggregation (hand-checked numbers), renderers, report CLI and context interpretation."""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from pathlib import Path

import pytest
import torch

from prograd_pl.results import aggregate, interpret, report, store
from prograd_pl.results.store import ResultsError, ResultsWarning


def make_record(
    *,
    acc: float,
    dataset: str = "dtd",
    method: str = "prograd",
    seed: int = 1,
    shots: int = 4,
    setting: str = "fewshot",
    eval_dataset: str | None = None,
    subsample: str = "all",
    backbone: str = "RN50",
    pretrained: str = "openai",
) -> dict:
    return {
        "schema_version": store.SCHEMA_VERSION,
        "method": method,
        "dataset": dataset,
        "eval_dataset": eval_dataset or dataset,
        "backbone": backbone,
        "pretrained": pretrained,
        "setting": setting,
        "subsample": subsample,
        "shots": shots,
        "seed": seed,
        "n_classes": 10,
        "metrics": {"acc": acc, "n_test": 100, "macro_f1": acc / 100, "error": 100 - acc},
        "train": {"epochs": 1, "seconds": 0.1, "steps": 1},
        "config": {"shots": shots, "seed": seed},
        "versions": {"prograd_pl": "0.1.0"},
    }


def put(root: Path, rec: dict, sub: str | None = None) -> Path:
    """Write ``rec`` into a folder of its own (or an ``evals/<sub>`` sub-result) under ``root``."""
    run = root.joinpath(rec["setting"], rec["dataset"], rec["method"], rec["backbone"].replace("/", "-"),
                        str(rec["pretrained"]), f"shots{rec['shots']}", f"seed{rec['seed']}")  # fmt: skip
    target = run / "evals" / sub if sub else run
    return store.write_results(target, rec)


# ----------------------------------------------------------------------------------------------- store
def test_write_and_read_roundtrip(tmp_path):
    rec = make_record(acc=61.5)
    path = store.write_results(tmp_path / "run", rec)
    assert path == tmp_path / "run" / "results.json"
    back = store.read_results(tmp_path / "run")
    assert back["metrics"]["acc"] == 61.5 and back["schema_version"] == 1 and "finished_at" in back
    assert store.is_finished(tmp_path / "run")
    assert not store.is_finished(tmp_path / "nothing")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    run = tmp_path / "run"
    store.write_results(run, make_record(acc=50.0))
    before = (run / "results.json").read_bytes()
    bad = make_record(acc=70.0)
    bad["config"] = {"obj": object()}
    with pytest.raises(TypeError):
        store.write_results(run, bad)
    assert (run / "results.json").read_bytes() == before
    assert os.listdir(run) == ["results.json"]  # no temp file left behind
    missing = make_record(acc=70.0)
    del missing["metrics"]["n_test"]
    with pytest.raises(ResultsError, match=r"metrics\.n_test"):
        store.write_results(run, missing)
    assert (run / "results.json").read_bytes() == before


def test_bad_results_are_named_and_skipped(tmp_path):
    good = put(tmp_path, make_record(acc=60.0, seed=1))
    truncated = put(tmp_path, make_record(acc=61.0, seed=2))
    truncated.write_text(truncated.read_text()[:40])
    other = put(tmp_path, make_record(acc=62.0, seed=3))
    data = json.loads(other.read_text())
    data["schema_version"] = 99
    other.write_text(json.dumps(data))
    with pytest.raises(ResultsError, match="truncated"):
        store.read_results(truncated)
    with pytest.raises(ResultsError, match="schema_version"):
        store.read_results(other)
    assert not store.is_finished(truncated.parent)
    errors: list = []
    with pytest.warns(ResultsWarning) as caught:
        found = list(store.iter_results(tmp_path, errors=errors))
    assert [p for p, _ in found] == [good]
    messages = " ".join(str(w.message) for w in caught)
    assert str(truncated) in messages and str(other) in messages
    assert {p for p, _ in errors} == {truncated, other}


def test_iter_results_includes_eval_subresults(tmp_path):
    put(tmp_path, make_record(acc=60.0, setting="dg", dataset="imagenet"))
    put(
        tmp_path,
        make_record(acc=50.0, setting="dg", dataset="imagenet", eval_dataset="imagenetv2"),
        sub="imagenetv2-all",
    )
    evals = sorted(d["eval_dataset"] for _, d in store.iter_results(tmp_path))
    assert evals == ["imagenet", "imagenetv2"]


# ------------------------------------------------------------------------------------------- aggregation
def test_mean_population_std_and_ci95():
    recs = [make_record(acc=a, seed=s) for a, s in [(60.0, 1), (62.0, 2), (67.0, 3)]]
    (stats,) = aggregate.group_runs(recs).values()
    mean = (60 + 62 + 67) / 3
    std = math.sqrt(((60 - mean) ** 2 + (62 - mean) ** 2 + (67 - mean) ** 2) / 3)  # ddof = 0
    assert stats.mean == pytest.approx(mean) and stats.std == pytest.approx(std) and stats.n == 3
    assert stats.ci95 == pytest.approx(1.96 * std / math.sqrt(3))
    assert stats.complete


def test_harmonic_mean_checked_example():
    assert round(aggregate.harmonic_mean(69.34, 74.22), 2) == 71.70


def test_fewshot_table_and_missing_seeds():
    recs = []
    for s, (a, b) in enumerate([(60.0, 80.0), (62.0, 82.0), (64.0, 84.0)], 1):
        recs += [make_record(acc=a, dataset="dtd", seed=s), make_record(acc=b, dataset="eurosat", seed=s)]
    recs += [make_record(acc=70.0, dataset="dtd", shots=16, seed=1)]  # 16 shots: seeds 2, 3 missing
    recs += [make_record(acc=55.0, dataset="dtd", method="coop", seed=s) for s in (1, 2, 3)]
    tables = aggregate.fewshot_tables(recs)
    prograd = next(t for t in tables if t.meta.get("method") == "prograd")
    assert prograd.columns == ["4", "16"]
    assert prograd.cell("dtd", "4").mean == pytest.approx(62.0)
    assert prograd.cell("dtd", "4").std == pytest.approx(math.sqrt(8 / 3))
    assert prograd.cell("Average", "4").mean == pytest.approx((62.0 + 82.0) / 2)
    assert not prograd.cell("Average", "4").mark
    assert prograd.cell("dtd", "16").mark and prograd.cell("eurosat", "16").empty
    assert prograd.cell("Average", "16").mark  # only one of two datasets, and that one incomplete
    notes = "\n".join(prograd.notes)
    assert "dtd, 16 shots: missing seeds 2, 3" in notes
    assert "eurosat, 16 shots: no runs" in notes
    coop = next(t for t in tables if t.meta.get("method") == "coop")
    assert any("eurosat: no runs at any shot count" in n for n in coop.notes)
    summary = next(t for t in tables if t.meta["kind"] == "fewshot-average")
    assert summary.cell("prograd", "4").mean == pytest.approx(72.0)
    assert summary.cell("coop", "4").mark


def test_base2new_h_from_seed_averaged_b_and_n():
    recs = []
    # dtd: base 60, 62, 64 (mean 62), new 40, 44, 48 (mean 44); eurosat base 90, new 70 (all seeds equal).
    for s, (b, n) in enumerate([(60.0, 40.0), (62.0, 44.0), (64.0, 48.0)], 1):
        recs += [
            make_record(acc=b, dataset="dtd", setting="base2new", subsample="base", seed=s),
            make_record(acc=n, dataset="dtd", setting="base2new", subsample="new", seed=s),
            make_record(acc=90.0, dataset="eurosat", setting="base2new", subsample="base", seed=s),
            make_record(acc=70.0, dataset="eurosat", setting="base2new", subsample="new", seed=s),
        ]
    (t,) = aggregate.base2new_tables(recs)
    assert t.cell("dtd", "H").mean == pytest.approx(2 * 62 * 44 / (62 + 44))
    assert t.cell("Average", "Base").mean == pytest.approx(76.0)
    assert t.cell("Average", "New").mean == pytest.approx(57.0)
    h_avg = t.cell("Average", "H").mean
    assert h_avg == pytest.approx(2 * 76 * 57 / (76 + 57))  # H of the averages,
    mean_of_h = (2 * 62 * 44 / 106 + 2 * 90 * 70 / 160) / 2
    assert h_avg != pytest.approx(mean_of_h)  # not the average of per-dataset H
    assert not t.notes


def test_base2new_average_row_matches_spec_example():
    # Two datasets whose base/new averages are 69.34 / 74.22 → H 71.70 (spec §5 checked example).
    recs = []
    for ds, b, n in [("dtd", 68.34, 75.22), ("eurosat", 70.34, 73.22)]:
        for s in (1, 2, 3):
            recs += [
                make_record(acc=b, dataset=ds, setting="base2new", subsample="base", seed=s),
                make_record(acc=n, dataset=ds, setting="base2new", subsample="new", seed=s),
            ]
    (t,) = aggregate.base2new_tables(recs)
    assert round(t.cell("Average", "Base").mean, 2) == 69.34
    assert round(t.cell("Average", "New").mean, 2) == 74.22
    assert round(t.cell("Average", "H").mean, 2) == 71.70


def test_transfer_tables_dg_and_xd():
    recs = []
    for s in (1, 2, 3):
        recs.append(make_record(acc=60.0 + s, setting="xd", dataset="imagenet", seed=s))
        recs.append(make_record(acc=40.0, setting="xd", dataset="imagenet", eval_dataset="dtd", seed=s))
        recs.append(make_record(acc=50.0, setting="xd", dataset="imagenet", eval_dataset="eurosat", seed=s))
        recs.append(
            make_record(acc=55.0, setting="dg", dataset="imagenet", eval_dataset="imagenetv2", seed=s)
        )
        recs.append(make_record(acc=61.0, setting="dg", dataset="imagenet", seed=s))
    recs.append(make_record(acc=30.0, setting="xd", dataset="imagenet", eval_dataset="dtd", method="coop"))
    (xd,) = aggregate.transfer_tables(recs, "xd")
    assert xd.columns == ["imagenet", "dtd", "eurosat", "Average"]
    assert xd.cell("prograd", "imagenet").mean == pytest.approx(62.0)
    assert xd.cell("prograd", "Average").mean == pytest.approx(45.0)
    assert xd.cell("coop", "Average").mark
    notes = "\n".join(xd.notes)
    assert "coop, imagenet: no runs" in notes and "coop, dtd: missing seeds 2, 3" in notes
    (dg,) = aggregate.transfer_tables(recs, "dg")
    assert dg.columns == ["imagenet", "imagenetv2"] and dg.cell("prograd", "imagenetv2").mean == 55.0


# -------------------------------------------------------------------------------------- report CLI
def synthetic_tree(root: Path) -> None:
    for s in (1, 2, 3):
        for shots, base in [(1, 50.0), (2, 55.0), (4, 60.0)]:
            put(root, make_record(acc=base + s, dataset="dtd", shots=shots, seed=s))
            put(root, make_record(acc=base + 20 + s, dataset="eurosat", shots=shots, seed=s))
            if s != 3:  # coop lacks seed 3 everywhere
                put(root, make_record(acc=base - 2, dataset="dtd", shots=shots, seed=s, method="coop"))
        for ds in ("dtd", "eurosat"):
            put(root, make_record(acc=69.34, dataset=ds, setting="base2new", subsample="base", seed=s))
            put(
                root,
                make_record(acc=74.22, dataset=ds, setting="base2new", subsample="new", seed=s),
                sub=f"{ds}-new",
            )
    put(root, make_record(acc=44.0, dataset="dtd", shots=0, seed=1, method="zeroshot"))


def test_report_main_writes_all_formats(tmp_path, capsys):
    root = tmp_path / "outputs"
    synthetic_tree(root)
    bad = put(root, make_record(acc=1.0, dataset="ucf101", seed=1))
    bad.write_text("{")
    assert report.main([str(root), "--seeds", "1,2,3"]) == 0
    captured = capsys.readouterr()
    out = root / "tables"
    for name in (
        "fewshot.md",
        "fewshot.csv",
        "fewshot.tex",
        "base2new.md",
        "base2new.csv",
        "base2new.tex",
        "fewshot_curves.png",
    ):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert not (out / "dg.md").exists()  # no dg runs: nothing written
    assert (out / "fewshot_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(bad) in captured.err  # skipped file named

    md = (out / "fewshot.md").read_text()
    assert "| dtd | 52.00 ± 0.82 | 57.00 ± 0.82 | 62.00 ± 0.82 |" in md  # 50+s → mean 52, std √(2/3)
    assert "| Average | 62.00 | 67.00 | 72.00 |" in md
    assert "48.00 ± 0.00*" in md and "missing seeds 3" in md  # coop marked, not silently averaged
    assert md in captured.out
    b2n = (out / "base2new.md").read_text()
    assert "| dtd | 69.34 ± 0.00 | 74.22 ± 0.00 | 71.70 |" in b2n
    assert "| Average | 69.34 | 74.22 | 71.70 |" in b2n

    rows = list(csv.DictReader((out / "fewshot.csv").open()))
    dtd4 = next(r for r in rows if r["method"] == "prograd" and r["row"] == "dtd" and r["column"] == "4")
    assert float(dtd4["mean"]) == pytest.approx(62.0) and dtd4["n"] == "3" and dtd4["complete"] == "true"
    assert float(dtd4["ci95"]) == pytest.approx(1.96 * math.sqrt(2 / 3) / math.sqrt(3), abs=1e-4)

    tex = (out / "fewshot.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"52.00$\pm$0.82" in tex and r"$^{*}$" in tex


def test_report_options(tmp_path, capsys):
    root = tmp_path / "outputs"
    synthetic_tree(root)
    out = tmp_path / "tbl"
    args = [
        str(root),
        "--setting",
        "fewshot",
        "--out",
        str(out),
        "--ci95",
        "--format",
        "md",
        "--seeds",
        "1,2",
    ]
    assert report.main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["fewshot.md", "fewshot_curves.pdf", "fewshot_curves.png"]
    md = (out / "fewshot.md").read_text()
    ci = 1.96 * math.sqrt(2 / 3) / math.sqrt(3)
    assert f"52.00 ± {ci:.2f} |" in md and "95% CI" in md
    assert "missing seeds" not in md  # seeds 1,2 expected: coop is complete
    assert report.main([str(root), "--setting", "dg", "--out", str(out)]) == 1
    assert report.main([str(tmp_path / "nope")]) == 1  # bad input: one sentence, exit status 1
    capsys.readouterr()


def test_python_dash_m_entry_point_exists():
    import prograd_pl.results.__main__ as entry

    assert entry.main is report.main


# ------------------------------------------------------------------------------------------- interpret
VOCAB = ["a", "photo", "of", "the", "dog", "texture", "car", "sky"]


def test_nearest_words_ranks_exact_rows_first():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(len(VOCAB), 16, generator=g)
    ctx = emb[[5, 1, 7]].clone() + 1e-4
    res = interpret.nearest_words(ctx, emb, VOCAB.__getitem__, topk=3)
    assert [row[0][1] for row in res] == ["texture", "photo", "sky"]
    assert all(len(row) == 3 and row[0][2] < row[1][2] <= row[2][2] for row in res)
    cos = interpret.nearest_words(ctx * 3.0, emb, VOCAB.__getitem__, topk=2, metric="cosine")
    assert [row[0][1] for row in cos] == ["texture", "photo", "sky"]
    csc = interpret.nearest_words(torch.stack([emb[[0, 4]], emb[[6, 3]]]), emb, VOCAB.__getitem__, topk=1)
    assert [[r[0][1] for r in cls] for cls in csc] == [["a", "dog"], ["car", "the"]]
    with pytest.raises(ValueError, match="width"):
        interpret.nearest_words(torch.zeros(2, 8), emb, VOCAB.__getitem__)


def test_interpret_main_with_fake_backbone(tmp_path, monkeypatch, capsys):
    emb = torch.nn.Embedding(len(VOCAB), 8)

    class FakeTokenizer:
        def __init__(self):
            self.decoder = {i: w + "</w>" for i, w in enumerate(VOCAB)}

    class FakeBackbone:
        model = type("M", (), {"token_embedding": emb})()
        tokenizer = FakeTokenizer()

    monkeypatch.setattr(interpret, "_load_backbone", lambda name, pretrained: FakeBackbone())
    ctx = emb.weight.detach()[[4, 2]].clone()
    meta = {
        "format": 1,
        "backbone": "tiny",
        "pretrained": None,
        "n_ctx": 2,
        "init": "",
        "position": "end",
        "csc": False,
        "template": "a photo of a {}.",
        "dataset": "dtd",
        "classnames": ["x"],
        "method": "prograd",
        "epoch": 1,
    }
    torch.save({"ctx": ctx, "meta": meta}, tmp_path / "prompt_learner.pt")
    assert interpret.main([str(tmp_path), "--topk", "2"]) == 0
    out = capsys.readouterr().out
    assert "ctx  1: 'dog'" in out and "ctx  2: 'of'" in out and "</w>" not in out
    assert interpret.main([str(tmp_path / "missing")]) == 1  # bad input: exit status 1, one sentence


def test_no_warning_for_clean_tree(tmp_path):
    synthetic_tree(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(store.iter_results(tmp_path))) > 0


def test_demo_summary_uses_the_latest_result_of_a_seed():
    """Two runs of one seed in one output root (e.g. before and after new mini weights): the summary reads the
    later one, as the tables do, whatever order the files are found in."""
    from prograd_pl.results.report import base2new_summary

    def rec(method: str, sub: str, acc: float, finished: str) -> dict:
        return {"setting": "base2new", "dataset": "mini_scenes", "method": method, "subsample": sub, "seed": 1,
                "metrics": {"acc": acc}, "finished_at": finished}  # fmt: skip

    records = [
        rec("coop", "base", 70.0, "2026-11-30T02:00:00"),
        rec("coop", "new", 30.0, "2026-11-30T02:00:00"),
        rec("coop", "base", 50.0, "2026-11-29T02:00:00"),  # an older run, found later
        rec("coop", "new", 60.0, "2026-11-29T02:00:00"),
    ]
    table = base2new_summary(records, "mini_scenes", methods=("coop",))
    assert "| coop | 70.00 | 30.00 |" in table  # one seed: no spread to show
