"""Headroom of the mini world: a k-shot linear probe on frozen image features against zero-shot.

A learned prompt can only gain on the classes it is trained on where the frozen image features hold class
information that the hand-written prompt's text embedding does not use. A linear probe (logistic regression on
L2-normalised image features, its regularisation chosen on the val split, as CoOp's ``lpclip``) measures how much
there is: on real CLIP it beats zero-shot by 10-20 points on most of the paper's datasets.

    python tools/mini_headroom.py --shots 16 --seeds 1,2,3     # the packaged prograd-mini weights
    python tools/mini_headroom.py --weights other.pt --out headroom.md
    python tools/mini_headroom.py --styles all --seeds 1       # every task in every style (world design)

Images are rendered in memory with the same pixels as the generated datasets (``render_task_item``), at the
model's input size, without augmentation.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mini_zeroshot import class_text_features, render_split

from prograd_pl.data.base2new import base_class_count
from prograd_pl.linear_probe import fit_logistic, search_regularisation
from prograd_pl.mini.styles import STYLES
from prograd_pl.mini.tasks import TASKS, MiniTask

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
PROBE_MAX_ITER = 2000


def load_mini(weights: str | Path | None = None):
    """The prograd-mini model (eval mode) and its tokenizer; ``weights`` defaults to the packaged file."""
    import open_clip

    from prograd_pl.mini.weights import MODEL_NAME, mini_weights_path, register_mini_config

    register_mini_config()
    path = str(weights) if weights is not None else str(mini_weights_path())
    model = open_clip.create_model(MODEL_NAME, pretrained=path)
    model.eval()
    return model, open_clip.get_tokenizer(MODEL_NAME)


@torch.no_grad()
def image_features(model, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """L2-normalised image embeddings [N, D] of preprocessed ``images``."""
    out = []
    for i in range(0, len(images), batch_size):
        f = model.encode_image(images[i : i + batch_size])
        out.append(f / f.norm(dim=-1, keepdim=True))
    return torch.cat(out).numpy().astype(np.float64)


def few_shot_indices(labels: Sequence[int], shots: int, seed: int) -> np.ndarray:
    """``shots`` indices per class drawn without replacement (all of a class if it has fewer)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    picked = [
        rng.choice(np.flatnonzero(labels == c), min(shots, int((labels == c).sum())), replace=False)
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picked))


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c_grid: Sequence[float] = C_GRID,
) -> tuple[float, float]:
    """Test accuracy (%) of a logistic regression whose inverse regularisation C maximises val accuracy.

    The baseline's own search (:func:`~prograd_pl.linear_probe.search_regularisation`) over ``c_grid``
    without its refinement rounds, on the (already normalised, float64) features: ties go to the strongest
    regularisation (smallest C), and the chosen model is refit on train only (as lpclip).
    Returns (test accuracy, chosen C).
    """
    found = search_regularisation(
        *map(torch.from_numpy, (train_x, train_y, val_x, val_y)),
        grid=c_grid,
        refine_steps=0,
        max_iter=PROBE_MAX_ITER,
        normalise=False,
    )
    clf = fit_logistic(train_x, train_y, found.C, PROBE_MAX_ITER)
    return 100.0 * float((clf.predict(test_x) == test_y).mean()), found.C


def _features(model, tokenizer, task: MiniTask) -> tuple[dict, dict, np.ndarray]:
    """Image features and labels of the train/val/test splits of ``task``, and its class text features."""
    splits = {s: render_split(task, s) for s in ("train", "val", "test")}
    feats = {s: image_features(model, x) for s, (x, _) in splits.items()}
    labels = {s: np.asarray(y) for s, (_, y) in splits.items()}
    text = class_text_features(model, tokenizer, task.classnames, task.template).numpy()
    return feats, labels, text


def half_predictions(
    scores: np.ndarray, labels: np.ndarray, n_base: int
) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """Per half (base: the classes ``< n_base``; new: the rest), ``(labels, predictions, lo, hi)``: the labels of
    its images and their predictions among that half's classes ``lo .. hi-1`` only, as base-to-new scores them."""
    out = []
    for lo, hi in ((0, n_base), (n_base, scores.shape[1])):
        half = (labels >= lo) & (labels < hi)
        out.append((labels[half], scores[half][:, lo:hi].argmax(1) + lo, lo, hi))
    return out


def half_accuracies(scores: np.ndarray, labels: np.ndarray, n_base: int) -> tuple[float, float]:
    """Zero-shot accuracy (%) on the base classes (``< n_base``) among the base classes only, and on the new
    ones among the new ones only: what base-to-new evaluation measures."""
    (y_base, p_base, _, _), (y_new, p_new, _, _) = half_predictions(scores, labels, n_base)
    return 100.0 * float((p_base == y_base).mean()), 100.0 * float((p_new == y_new).mean())


def prediction_sinks(
    scores: np.ndarray, labels: np.ndarray, n_base: int
) -> tuple[tuple[int, float], tuple[int, float]]:
    """Per half (scored among its own classes, as :func:`half_accuracies`), the class that takes the largest share
    of the zero-shot predictions and that share (%): ``((base class, %), (new class, %))``.

    With balanced test splits a perfect classifier gives each class 100 / (classes in the half) %; a style that
    draws one class's evidence into every image (a grout colour that is also a class colour) makes that class a
    sink that takes most predictions, and a learned context then helps every class alike by ignoring it.
    """
    out = []
    for y, pred, lo, hi in half_predictions(scores, labels, n_base):
        counts = np.bincount(pred - lo, minlength=hi - lo)
        top = int(counts.argmax())
        out.append((lo + top, 100.0 * float(counts[top]) / max(len(y), 1)))
    return out[0], out[1]


def _probe(feats: dict, labels: dict, shots: int, seed: int) -> tuple[float, float]:
    """Test accuracy (%) and C of a linear probe on ``shots`` train images per class (drawn with ``seed``)."""
    idx = few_shot_indices(labels["train"], shots, seed)
    return linear_probe(
        feats["train"][idx], labels["train"][idx], feats["val"], labels["val"], feats["test"], labels["test"]
    )


def task_headroom(model, tokenizer, task: MiniTask, shots: int, seeds: Sequence[int]) -> dict:
    """Zero-shot and ``shots``-shot linear-probe test accuracy (%) on all classes of ``task`` (probe: mean over
    ``seeds``)."""
    feats, labels, text = _features(model, tokenizer, task)
    zs = 100.0 * float(((feats["test"] @ text.T).argmax(1) == labels["test"]).mean())
    accs, cs = zip(*(_probe(feats, labels, shots, seed) for seed in seeds))
    return {
        "task": task.name,
        "zero_shot": round(zs, 2),
        "linear_probe": round(float(np.mean(accs)), 2),
        "linear_probe_std": round(float(np.std(accs)), 2),
        "gain": round(float(np.mean(accs)) - zs, 2),
        "C": list(cs),
    }


def style_scan(
    model,
    tokenizer,
    task: MiniTask,
    styles: Sequence[str | None],
    shots: int = 16,
    base_shots: int = 4,
    seed: int = 1,
) -> list[dict]:
    """Headroom of ``task`` drawn in each of ``styles`` (``None``: unstyled), one probe seed.

    Per style: all-class zero-shot and ``shots``-shot probe; zero-shot on the base and new halves (as base-to-new
    evaluates them); and a ``base_shots``-shot probe on the base classes only, i.e. what a base-to-new run trains
    on (its gain over base zero-shot bounds what a prompt can gain there from the features alone).
    """
    n_base = base_class_count(len(task.classnames))
    rows = []
    for style in styles:
        feats, labels, text = _features(model, tokenizer, dataclasses.replace(task, style=style))
        scores = feats["test"] @ text.T
        zs = 100.0 * float((scores.argmax(1) == labels["test"]).mean())
        zs_base, zs_new = half_accuracies(scores, labels["test"], n_base)
        sink_base, sink_new = prediction_sinks(scores, labels["test"], n_base)
        lp, _ = _probe(feats, labels, shots, seed)
        base = {s: labels[s] < n_base for s in labels}
        lp_base, _ = _probe(
            {s: feats[s][base[s]] for s in feats}, {s: labels[s][base[s]] for s in labels}, base_shots, seed
        )
        rows.append(
            {
                "task": task.name,
                "style": style or "none",
                "zero_shot": round(zs, 2),
                "linear_probe": round(lp, 2),
                "gain": round(lp - zs, 2),
                "zero_shot_base": round(zs_base, 2),
                "zero_shot_new": round(zs_new, 2),
                "sink_base": [task.classnames[sink_base[0]], round(sink_base[1], 1)],
                "sink_new": [task.classnames[sink_new[0]], round(sink_new[1], 1)],
                "base_probe": round(lp_base, 2),
                "base_gain": round(lp_base - zs_base, 2),
            }
        )
    return rows


def style_table(rows: list[dict], shots: int, base_shots: int, seed: int) -> str:
    """Markdown table of :func:`style_scan` rows."""
    lines = [
        f"Headroom by style (probe seed {seed}; all classes: zero-shot vs {shots}-shot probe; base half: zero-shot "
        f"vs {base_shots}-shot probe on the base classes; new half: zero-shot; sink: the class taking the largest "
        "share of a half's zero-shot predictions; 100/k % for a perfect classifier of a k-class half)",
        "",
        f"| task | style | zero-shot | probe · {shots} shots | gain | base zero-shot | base probe · {base_shots} shots "
        "| base gain | new zero-shot | base sink | new sink |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['style']} | {r['zero_shot']:.2f} | {r['linear_probe']:.2f} | {r['gain']:+.2f} | "
            f"{r['zero_shot_base']:.2f} | {r['base_probe']:.2f} | {r['base_gain']:+.2f} | {r['zero_shot_new']:.2f} | "
            f"{r['sink_base'][0]} {r['sink_base'][1]:.0f}% | {r['sink_new'][0]} {r['sink_new'][1]:.0f}% |"
        )
    return "\n".join(lines)


def headroom_table(rows: list[dict], shots: int, n_seeds: int) -> str:
    """Markdown table: per task zero-shot vs linear probe, and the average."""
    lines = [
        f"Linear-probe headroom ({shots} shots, all classes, mean of {n_seeds} seeds)",
        "",
        f"| task | zero-shot | linear probe · {shots} shots | gain |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['zero_shot']:.2f} | {r['linear_probe']:.2f} ± {r['linear_probe_std']:.2f} | "
            f"{r['gain']:+.2f} |"
        )
    zs = float(np.mean([r["zero_shot"] for r in rows]))
    lp = float(np.mean([r["linear_probe"] for r in rows]))
    lines.append(f"| **average** | {zs:.2f} | {lp:.2f} | {lp - zs:+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/mini_headroom.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="default: the packaged prograd-mini weights")
    p.add_argument("--tasks", default=",".join(n for n, t in TASKS.items() if not t.test_only))
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--out", type=Path, default=None, help="also write the table (.md) and rows (.json) here")
    p.add_argument(
        "--styles",
        default=None,
        help="scan the tasks drawn in these styles instead ('all', or a comma list of "
        f"{', '.join(STYLES)}, none); probe seed: the first of --seeds",
    )
    p.add_argument("--base-shots", type=int, default=4, help="--styles: shots of the base-class probe")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    seeds = [int(s) for s in a.seeds.split(",")]
    styles: list[str | None] = []
    if a.styles is not None:
        names = ["none", *STYLES] if a.styles == "all" else a.styles.split(",")
        unknown = [n for n in names if n != "none" and n not in STYLES]
        if unknown:
            p.error(
                f"--styles: unknown style {', '.join(unknown)} (expected all, none or {', '.join(STYLES)})"
            )
        styles = [None if n == "none" else n for n in names]
    model, tokenizer = load_mini(a.weights)
    if styles:
        rows = [
            r
            for n in a.tasks.split(",")
            for r in style_scan(model, tokenizer, TASKS[n], styles, a.shots, a.base_shots, seeds[0])
        ]
        table = style_table(rows, a.shots, a.base_shots, seeds[0])
        print(table)
        print(f"style scan: {len(rows)} task-styles in {time.time() - t0:.0f}s")
        _write(a.out, table, rows)
        return 0
    rows = [task_headroom(model, tokenizer, TASKS[n], a.shots, seeds) for n in a.tasks.split(",")]
    table = headroom_table(rows, a.shots, len(seeds))
    print(table)
    print(f"headroom: {len(rows)} tasks in {time.time() - t0:.0f}s")
    _write(a.out, table, rows)
    return 0


def _write(out: Path | None, table: str, rows: list[dict]) -> None:
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".md").write_text(table + "\n")
        out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
