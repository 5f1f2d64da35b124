"""Pretrain the project's small CLIPs (``prograd-mini``, ``prograd-mini-vit``) on the procedural mini world.

CLIP's symmetric contrastive loss (repeated captions count as joint positives), AdamW with linear warmup and
cosine decay, on an endless stream of drawn image-caption pairs (``prograd_pl.mini.stream``). Deterministic: the
data of step ``s`` depends only on (seed, s); torch is seeded and uses deterministic algorithms. About 13 minutes
with one torch thread plus one data process (2 CPU cores).

    python tools/mini_pretrain.py --out src/prograd_pl/assets/prograd_mini.pt   # = make pretrain-mini
    python tools/mini_pretrain.py --model prograd-mini-vit --out src/prograd_pl/assets/prograd_mini_vit.pt

The output is an fp16 state_dict that loads with ``open_clip.create_model(<model>, pretrained=PATH)``; both
architectures are pretrained on the same stream with the same recipe (``models/model_configs/<model>.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import numpy as np
import open_clip
import torch
from mini_zeroshot import render_split, to_model_input, zero_shot_accuracy

from prograd_pl.atomic import atomic_open
from prograd_pl.mini.stream import pretrain_batch
from prograd_pl.mini.tasks import TASKS
from prograd_pl.mini.weights import MINI_MODELS, MODEL_NAME, register_mini_config


class PairStream(torch.utils.data.IterableDataset):
    """Batches ``0 .. steps-1`` of the pretraining stream, tokenised, generated in order by a single worker."""

    def __init__(self, seed: int, steps: int, batch_size: int, model: str = MODEL_NAME) -> None:
        self.seed, self.steps, self.batch_size, self.model = seed, steps, batch_size, model

    def __iter__(self):
        torch.set_num_threads(1)
        register_mini_config()
        tokenizer = open_clip.get_tokenizer(self.model)
        for step in range(self.steps):
            images, captions = pretrain_batch(self.seed, step, self.batch_size)
            yield step, to_model_input(images), tokenizer(captions)


def multi_positive_clip_loss(
    image_f: torch.Tensor, text_f: torch.Tensor, scale: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """Symmetric CLIP loss where every pair with an identical caption counts as a positive.

    The mini world has few distinct captions ("the number seven" comes up often in one batch); open_clip's
    ``ClipLoss`` would treat the repeats as negatives of each other. With unique captions this equals ``ClipLoss``.
    """
    logits = scale * image_f @ text_f.T
    same = (tokens[:, None, :] == tokens[None, :, :]).all(dim=-1).float()
    target = same / same.sum(dim=1, keepdim=True)
    loss_i = -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss_t = -(target * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return (loss_i + loss_t) / 2


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * 0.5 * (1 + math.cos(math.pi * t))


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices and conv kernels only (not on gains, biases, embeddings, logit scale)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "embedding" in name or "logit_scale" in name or "bn" in name or ".ln" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def evaluate(model: torch.nn.Module, tokenizer, eval_sets: dict) -> dict[str, float]:
    """Zero-shot top-1 (%) on each task's test split with the task's ProGrad template."""
    model.eval()
    out = {}
    for name, (x, y) in eval_sets.items():
        task = TASKS[name]
        out[name] = round(zero_shot_accuracy(model, tokenizer, x, y, task.classnames, task.template), 2)
    model.train()
    return out


def save_fp16(model: torch.nn.Module, path: Path) -> None:
    """Write the state_dict with floating tensors in fp16, atomically."""
    state = {k: (v.half() if v.is_floating_point() else v).clone() for k, v in model.state_dict().items()}
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)


def pretrain(
    out: Path,
    steps: int = 2400,
    batch_size: int = 128,
    lr: float = 2e-3,
    weight_decay: float = 0.1,
    warmup: int = 100,
    seed: int = 0,
    threads: int = 1,
    workers: int = 1,
    eval_every: int = 0,
    log_every: int = 50,
    eval_limit: int | None = None,
    save_every: int = 0,
    model_name: str = MODEL_NAME,
) -> dict:
    """Train ``model_name`` from scratch and write fp16 weights to ``out``; return a summary (for the model card)."""
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    register_mini_config()
    model = open_clip.create_model(model_name)
    tokenizer = open_clip.get_tokenizer(model_name)
    # The temperature stays at CLIP's final 1/100 (the config's init_logit_scale): a small model on noisy,
    # repetitive captions learns a far softer one (12.6 in v2), which makes prompt-tuning gradients 8x smaller
    # and ProGrad's zero-shot teacher far flatter than on real CLIP.
    model.logit_scale.requires_grad_(False)
    model.train()
    opt = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    eval_sets = {
        name: render_split(task, "test", limit=min(20, eval_limit or 20)) for name, task in TASKS.items()
    }
    stream = PairStream(seed, steps, batch_size, model_name)
    # One worker process draws the next batches while the main process trains (the data of a step does not
    # depend on where it is drawn); workers=0 draws them in the main process.
    loader = torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=workers, prefetch_factor=4 if workers else None
    )
    history = []
    t0 = time.time()
    running = 0.0
    for step, images, tokens in loader:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        image_f, text_f, scale = model(images, tokens)
        loss = multi_positive_clip_loss(image_f, text_f, scale, tokens)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
            save_fp16(model, Path(out).with_suffix(f".step{step + 1}.pt"))
        running += loss.item()
        if (step + 1) % log_every == 0:
            msg = (
                f"step {step + 1}/{steps} loss {running / log_every:.3f} scale {model.logit_scale.detach().exp().item():.1f} "
                f"{time.time() - t0:.0f}s"
            )
            running = 0.0
            if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
                acc = evaluate(model, tokenizer, eval_sets)
                history.append({"step": step + 1, **acc})
                msg += " " + json.dumps(acc)
            print(msg, flush=True)
    seconds = time.time() - t0
    model.eval()
    save_fp16(model, Path(out))
    full = {name: render_split(task, "test", limit=eval_limit) for name, task in TASKS.items()}
    reloaded = open_clip.create_model(model_name, pretrained=str(out))
    acc = evaluate(reloaded, tokenizer, full)
    summary = {
        "model": model_name,
        "steps": steps,
        "batch_size": batch_size,
        "pairs": steps * batch_size,
        "lr": lr,
        "seed": seed,
        "threads": threads,
        "workers": workers,
        "seconds": round(seconds, 1),
        "file_mb": round(Path(out).stat().st_size / 2**20, 2),
        "logit_scale": round(float(reloaded.logit_scale.detach().exp()), 2),
        "zero_shot_test_acc": acc,
        "chance": {name: round(100.0 / len(t.classnames), 2) for name, t in TASKS.items()},
        "history": history,
    }
    print(json.dumps(summary, indent=1), flush=True)
    return summary


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="where to write the fp16 state_dict (.pt)")
    p.add_argument("--model", default=MODEL_NAME, choices=sorted(MINI_MODELS),
                   help="the architecture (models/model_configs/<model>.json)")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 is fastest for this tiny model and robust on a shared machine",
    )
    p.add_argument("--workers", type=int, default=1, help="data-drawing processes (0: draw in the main one)")
    p.add_argument(
        "--eval-every", type=int, default=0, help="zero-shot check every N steps (0: only at the end)"
    )
    p.add_argument(
        "--save-every", type=int, default=0, help="also write weights every N steps (<out>.stepN.pt)"
    )
    p.add_argument("--summary", type=Path, default=None, help="also write the summary JSON here")
    a = p.parse_args(argv)
    summary = pretrain(
        a.out,
        steps=a.steps,
        batch_size=a.batch_size,
        lr=a.lr,
        seed=a.seed,
        threads=a.threads,
        workers=a.workers,
        eval_every=a.eval_every,
        save_every=a.save_every,
        model_name=a.model,
    )
    if a.summary:
        a.summary.write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
