"""``prograd-pl interpret``: the vocabulary words nearest to each learned context vector (as CoOp's script).

Distances are Euclidean in the token-embedding space by default (what CoOp's ``interpret_prompt.py`` reports);
``--metric cosine`` ranks by cosine similarity instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from prograd_pl.errors import UserError
from prograd_pl.models.checkpoint import CHECKPOINT_NAME, read_checkpoint


def nearest_words(
    ctx: torch.Tensor,
    token_embedding: torch.Tensor,
    decode: Callable[[int], str],
    topk: int = 3,
    metric: str = "euclidean",
) -> list:
    """Top-k vocabulary tokens per context vector, best first.

    Args:
        ctx: ``[n_ctx, d]`` (generic context) or ``[n_cls, n_ctx, d]`` (class-specific context).
        token_embedding: ``[V, d]`` token embedding matrix of the text encoder.
        decode: token id → text.
        topk: neighbours per vector.
        metric: ``euclidean`` (ascending distance) or ``cosine`` (descending similarity).

    Returns:
        ``[n_ctx][topk]`` of ``(token_id, word, score)``, or ``[n_cls][n_ctx][topk]`` for a 3-d ``ctx``.
    """
    if ctx.dim() == 3:
        return [nearest_words(c, token_embedding, decode, topk, metric) for c in ctx]
    if ctx.dim() != 2 or token_embedding.dim() != 2:
        raise ValueError(
            f"ctx must be [n_ctx, d] or [n_cls, n_ctx, d] and token_embedding [V, d]; "
            f"got {tuple(ctx.shape)} and {tuple(token_embedding.shape)}"
        )
    if ctx.shape[-1] != token_embedding.shape[-1]:
        raise ValueError(
            f"context width {ctx.shape[-1]} does not match the token embedding width "
            f"{token_embedding.shape[-1]} (checkpoint from another backbone?)"
        )
    c = ctx.detach().float().cpu()
    e = token_embedding.detach().float().cpu()
    k = max(1, min(int(topk), e.shape[0]))
    if metric == "euclidean":
        scores = torch.cdist(c, e)
        values, idx = scores.topk(k, dim=1, largest=False)
    elif metric == "cosine":
        scores = torch.nn.functional.normalize(c, dim=1) @ torch.nn.functional.normalize(e, dim=1).T
        values, idx = scores.topk(k, dim=1, largest=True)
    else:
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    return [
        [(int(i), decode(int(i)), float(v)) for i, v in zip(row_idx, row_val)]
        for row_idx, row_val in zip(idx.tolist(), values.tolist())
    ]


def token_decoder(tokenizer: Any = None) -> Callable[[int], str]:
    """Token id → word for an open_clip tokenizer (BPE end-of-word marker ``</w>`` removed)."""
    table = getattr(tokenizer, "decoder", None)
    if not isinstance(table, dict):
        inner = getattr(tokenizer, "tokenizer", None)
        convert = getattr(inner, "convert_ids_to_tokens", None)
        if callable(convert):  # Hugging Face tokenizer wrapped by open_clip
            return lambda i: str(convert(int(i)))
        from open_clip.tokenizer import _tokenizer  # the default CLIP SimpleTokenizer

        table = _tokenizer.decoder

    def decode(i: int) -> str:
        return str(table.get(int(i), f"<{int(i)}>")).replace("</w>", "")

    return decode


def load_checkpoint(path: str | Path) -> tuple[torch.Tensor, dict]:
    """``(ctx, meta)`` of a checkpoint file or run folder (read with ``weights_only=True``)."""
    blob = read_checkpoint(path)
    return blob["ctx"], dict(blob["meta"])


def _load_backbone(name: str, pretrained: str | None) -> Any:
    from prograd_pl.models.backbone import load_backbone

    return load_backbone(name, pretrained)


def format_neighbours(
    neighbours: list, metric: str = "euclidean", classnames: Sequence[str] | None = None
) -> str:
    """Plain-text table: one line per context position with its words and scores."""
    score = "dist" if metric == "euclidean" else "cos"

    def block(rows: list) -> list[str]:
        lines = []
        for pos, row in enumerate(rows, 1):
            words = "  ".join(f"{w!r} ({score} {v:.4f})" for _, w, v in row)
            lines.append(f"  ctx {pos:>2}: {words}")
        return lines

    if (
        neighbours
        and isinstance(neighbours[0], list)
        and neighbours[0]
        and isinstance(neighbours[0][0], list)
    ):
        out = []
        for ci, rows in enumerate(neighbours):
            name = classnames[ci] if classnames and ci < len(classnames) else f"class {ci}"
            out.append(f"[{name}]")
            out += block(rows)
        return "\n".join(out)
    return "\n".join(block(neighbours))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``prograd-pl interpret <checkpoint> [--topk K] [--metric euclidean|cosine]``."""
    parser = argparse.ArgumentParser(
        prog="prograd-pl interpret",
        description="Print the vocabulary words nearest to each learned context vector.",
    )
    parser.add_argument("checkpoint", type=Path, help=f"{CHECKPOINT_NAME} or the run folder holding it")
    parser.add_argument("--topk", type=int, default=3, help="words per context vector (default 3)")
    parser.add_argument("--metric", choices=("euclidean", "cosine"), default="euclidean")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        ctx, meta = load_checkpoint(args.checkpoint)
    except UserError as err:
        print(f"prograd_pl: error: {err}", file=sys.stderr)
        return 1
    backbone = _load_backbone(meta["backbone"], meta.get("pretrained"))
    embedding = backbone.model.token_embedding.weight
    try:
        neighbours = nearest_words(ctx, embedding, token_decoder(backbone.tokenizer), args.topk, args.metric)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(
        f"checkpoint {args.checkpoint} · {meta['backbone']} ({meta.get('pretrained')}) · "
        f"method {meta.get('method')} · dataset {meta.get('dataset')} · ctx {tuple(ctx.shape)} · "
        f"init {meta.get('init')!r}"
    )
    print(format_neighbours(neighbours, args.metric, meta.get("classnames")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
