"""Headroom of the mini world: a k-shot linear probe on frozen image features against zero-shot.

A learned prompt can only gain on the classes it is trained on where the frozen image features hold class
information that the hand-written prompt's text embedding does not use. A linear probe (logistic regression on
L2-normalised image features, its regularisation chosen on the val split, as CoOp's ``lpclip``) measures how much
there is: on real CLIP it beats zero-shot by 10-20 points on most of the paper's datasets.

    python -m prograd_pl.mini.headroom --shots 16 --seeds 1,2,3          # the packaged prograd-mini weights
    python -m prograd_pl.mini.headroom --weights other.pt --out headroom.md

Images are rendered in memory with the same pixels as the generated datasets (``render_task_item``), at the
model's input size, without augmentation.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from prograd_pl.mini.world import TASKS, MiniTask
from prograd_pl.mini.zeroshot import class_text_features, render_split

C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)


def load_mini(weights: str | Path | None = None):
    """The prograd-mini model (eval mode) and its tokenizer; ``weights`` defaults to the packaged file."""
    import open_clip

    from prograd_pl.mini.pretrain import MODEL_NAME, register_mini_config
    from prograd_pl.mini.weights import mini_weights_path

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

    Ties go to the strongest regularisation (smallest C). The chosen model is refit on train only (as lpclip).
    Returns (test accuracy, chosen C).
    """
    from sklearn.linear_model import LogisticRegression

    best_c, best_val = c_grid[0], -1.0
    for c in c_grid:
        clf = LogisticRegression(C=c, max_iter=2000)
        clf.fit(train_x, train_y)
        val = float((clf.predict(val_x) == val_y).mean())
        if val > best_val + 1e-12:
            best_c, best_val = c, val
    clf = LogisticRegression(C=best_c, max_iter=2000).fit(train_x, train_y)
    return 100.0 * float((clf.predict(test_x) == test_y).mean()), best_c


def task_headroom(model, tokenizer, task: MiniTask, shots: int, seeds: Sequence[int]) -> dict:
    """Zero-shot and ``shots``-shot linear-probe test accuracy (%) on all classes of ``task`` (probe: mean over
    ``seeds``), plus the same split into base (first half of the classes) and new (second half) for zero-shot."""
    splits = {s: render_split(task, s) for s in ("train", "val", "test")}
    feats = {s: image_features(model, x) for s, (x, _) in splits.items()}
    labels = {s: np.asarray(y) for s, (_, y) in splits.items()}
    text = class_text_features(model, tokenizer, task.classnames, task.template).numpy()
    zs_pred = (feats["test"] @ text.T).argmax(1)
    zs = 100.0 * float((zs_pred == labels["test"]).mean())
    accs, cs = [], []
    for seed in seeds:
        idx = few_shot_indices(labels["train"], shots, seed)
        acc, c = linear_probe(
            feats["train"][idx],
            labels["train"][idx],
            feats["val"],
            labels["val"],
            feats["test"],
            labels["test"],
        )
        accs.append(acc)
        cs.append(c)
    return {
        "task": task.name,
        "zero_shot": round(zs, 2),
        "linear_probe": round(float(np.mean(accs)), 2),
        "linear_probe_std": round(float(np.std(accs)), 2),
        "gain": round(float(np.mean(accs)) - zs, 2),
        "C": cs,
    }


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
    p = argparse.ArgumentParser(
        prog="python -m prograd_pl.mini.headroom", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--weights", type=Path, default=None, help="default: the packaged prograd-mini weights")
    p.add_argument("--tasks", default=",".join(n for n, t in TASKS.items() if not t.test_only))
    p.add_argument("--shots", type=int, default=16)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--out", type=Path, default=None, help="also write the table (.md) and rows (.json) here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.time()
    model, tokenizer = load_mini(a.weights)
    seeds = [int(s) for s in a.seeds.split(",")]
    rows = [task_headroom(model, tokenizer, TASKS[n], a.shots, seeds) for n in a.tasks.split(",")]
    table = headroom_table(rows, a.shots, len(seeds))
    print(table)
    print(f"headroom: {len(rows)} tasks in {time.time() - t0:.0f}s")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.with_suffix(".md").write_text(table + "\n")
        a.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
