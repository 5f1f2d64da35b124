"""Text encoding from prompt embeddings: plain (full context), truncated, and shared-prefix.

All three compute the same function.  CLIP's text transformer is causal: token ``i`` only attends to tokens
``<= i``, LayerNorm and MLP act per token and positions are absolute, so the EOT feature depends only on the tokens
up to EOT.  Hence

* truncating every prompt to ``L = max EOT index + 1`` tokens (with ``positional_embedding[:L]`` and the
  ``L x L`` corner of the mask) changes nothing but float summation order;
* when all prompts start with the same ``P`` embeddings (SOT + a generic context), those ``P`` rows are identical
  for every prompt at every layer, so they can be computed once (batch 1) and each prompt's remaining rows attend
  to them as extra keys/values.  Those keys/values are one matrix for all prompts, never copied per prompt (the
  scores against them are one matmul over every prompt's rows), and the backward pass accumulates into the
  single shared prefix.
* every prompt's suffix is padded to the longest one: rows after a prompt's EOT are never attended by its rows
  before it (causal), so they change nothing, and all prompts run as one group whose shapes are fixed when the
  class names are set (no op count that grows with the classes, nothing read back to the host); in the last
  block only the EOT rows are computed.

When the features are differentiated, QuickGELU (the activation of OpenAI's CLIP towers) saves its derivative
instead of its input, so each backward through it is one multiplication (ProGrad runs two backwards on one graph).
"""

from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import QuickGELU
from torch import nn

from prograd_pl.models.backbone import TextTower


def _project(tower: TextTower, x: torch.Tensor) -> torch.Tensor:
    proj = tower.text_projection
    if proj is None:
        return x
    if isinstance(proj, nn.Linear):
        return proj(x)
    return x @ proj


# frozen towers cast once to a lower precision, per (dtype, device), outside the modules' state
_cast_towers: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def cast_tower(tower: TextTower, dtype: torch.dtype) -> TextTower:
    """``tower`` with its weights cast to ``dtype``: a copy made once and reused (autocast would cast the frozen
    weights again at every call).  The copy is rebuilt when the tower moves or its weights change."""
    module = tower.module
    first = tower.token_embedding.weight
    if first.dtype == dtype:
        return tower
    tensors = [*module.parameters(), *module.buffers()]
    key = (dtype, first.device, first.data_ptr(), sum(t._version for t in tensors))
    copies = _cast_towers.setdefault(module, {})
    hit = copies.get(dtype)
    if hit is None or hit[0] != key:
        part = nn.Module()  # the text tower's pieces only (in open_clip's CLIP they sit beside the image tower)
        for name in ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection",
                     "attn_mask"):  # fmt: skip
            value = getattr(module, name, None)
            if isinstance(value, nn.Module):
                setattr(part, name, copy.deepcopy(value))
            elif isinstance(value, torch.Tensor):
                part.register_buffer(name, value.detach().clone())
            else:
                setattr(part, name, value)
        hit = copies[dtype] = (key, TextTower(part.requires_grad_(False).to(dtype), tower.pool_type, tower.eos_id))
    return hit[1]


class PromptTextEncoder(nn.Module):
    """Runs a frozen CLIP text tower on prompt embeddings and returns (unnormalised) text features.

    ``compute_dtype`` (None: the tower's own) runs the tower as a copy cast once to that dtype (bf16/fp16
    mixed precision: the prompt's learned part stays fp32 and is cast on the way in).
    """

    def __init__(self, tower: TextTower) -> None:
        super().__init__()
        self.base_tower = tower
        self.compute_dtype: torch.dtype | None = None
        self.causal = tower.attn_mask is not None
        blocks = list(tower.transformer.resblocks)
        self.supports_shared_prefix = self.causal and all(
            isinstance(getattr(b, "attn", None), nn.MultiheadAttention)
            and b.attn._qkv_same_embed_dim
            and not hasattr(b, "ln_1_kv")
            for b in blocks
        )

    @property
    def tower(self) -> TextTower:
        """The tower that runs: the frozen one, or its copy in ``compute_dtype``."""
        if self.compute_dtype is None:
            return self.base_tower
        cast = getattr(self, "_cast", None)
        if cast is not None and torch.compiler.is_compiling():  # checked by the eager calls; a graph takes it as is
            return cast
        self._cast = cast_tower(self.base_tower, self.compute_dtype)
        return self._cast

    def eot_index(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Position of the end-of-text token of each tokenised prompt."""
        if self.tower.pool_type == "eos" and self.tower.eos_id is not None:
            return (token_ids == self.tower.eos_id).int().argmax(dim=-1)
        return token_ids.argmax(dim=-1)

    def encode_embeddings(
        self,
        embeds: torch.Tensor,
        eot: torch.Tensor,
        truncate: bool = True,
        length: int | None = None,
        deep: "DeepPrompts | None" = None,
    ) -> torch.Tensor:
        """Encode full prompt embeddings ``[n, 77, d]``; ``truncate`` cuts them after the last EOT (exact).

        ``length`` is that cut (``max(eot) + 1``) when the caller knows it; otherwise it is read from ``eot``.
        ``deep`` replaces the context tokens' hidden states before the blocks after the first (deep prompts, as
        IVLP, MaPLe and PromptSRC insert them layer by layer).
        """
        tower = self.tower
        if truncate and self.causal:
            length = int(eot.max()) + 1 if length is None else length
            embeds = embeds[:, :length]
        length = embeds.shape[1]
        dtype = tower.positional_embedding.dtype
        x = embeds.to(dtype) + tower.positional_embedding[:length]
        mask = tower.attn_mask[:length, :length] if tower.attn_mask is not None else None
        if deep is None:
            x = tower.transformer(x, attn_mask=mask)
        else:
            x = deep.run(tower.transformer, x, mask)
        x = tower.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return _project(tower, x)

    def encode_tokens(self, token_ids: torch.Tensor, truncate: bool = True) -> torch.Tensor:
        """Encode tokenised text (what ``CLIP.encode_text`` does), optionally truncated."""
        embeds = self.tower.token_embedding(token_ids)
        return self.encode_embeddings(embeds, self.eot_index(token_ids), truncate=truncate)

    def encode_shared_prefix(self, prefix: torch.Tensor, suffixes: "PaddedSuffixes") -> torch.Tensor:
        """Encode prompts ``cat(prefix, suffix[i])`` where ``prefix [P, d]`` is common to all ``n`` prompts.

        ``suffixes`` holds the suffix rows of every prompt, padded to the longest of its length bucket (at most
        two buckets: short and long names), the row of each prompt's EOT and the attention masks, all fixed when
        the class names are set.  The prefix rows and every prompt's suffix rows are packed into one matrix:
        LayerNorms, projections and MLPs run once on all rows; per block the prefix attends causally to itself
        and each bucket's suffixes attend to ``[prefix keys, own keys]`` through one
        ``scaled_dot_product_attention``.  Rows after a prompt's EOT are padding that no kept row attends to (the
        mask is causal).  In the last block only the EOT rows are carried past attention.  The number of ops does
        not depend on the number of classes and nothing is read back to the host, so the forward compiles as one
        graph.

        ``prefix`` may also be ``[B, P, d]``: ``B`` prefixes (e.g. two copies of the same context, whose
        gradients one backward then returns separately), each with all ``n`` suffixes; the result is
        ``[B, n, dim]``.
        """
        tower = self.tower
        if not self.supports_shared_prefix:
            raise ValueError("this text tower does not support shared-prefix encoding")
        single = prefix.dim() == 2
        prefix = prefix.unsqueeze(0) if single else prefix
        b, p_len, width = prefix.shape
        dtype = tower.positional_embedding.dtype
        pos = tower.positional_embedding
        buckets = suffixes.buckets
        # rows: every copy's prefix, then per bucket every copy's suffixes (copy-major: a bucket's rows of all
        # copies are one block, so that its [copies * prompts] attention batch is a view)
        rows_with_positions = suffixes.rows.to(dtype) + pos[suffixes.positions]
        suffix = rows_with_positions
        if b > 1:
            parts = rows_with_positions.split([n * s for n, s in buckets])
            suffix = torch.cat([part.repeat(b, 1) for part in parts])
        h = torch.cat([(prefix.to(dtype) + pos[:p_len]).view(b * p_len, width), suffix])
        # the masks' rows are padded to an aligned length (fused GPU kernels want that); sliced to the keys here
        masks = [m.to(dtype)[:, : p_len + s] for m, (_, s) in zip(suffixes.masks, buckets)]
        blocks = list(tower.transformer.resblocks)
        for block in blocks[:-1]:
            h = _packed_block(block, h, b, p_len, buckets, masks)
        eot_masks = [
            (m.to(dtype) if b == 1 else m.to(dtype).repeat(b, 1, 1, 1))[..., : p_len + s]
            for m, (_, s) in zip(suffixes.eot_masks, buckets)
        ]
        eot_rows, unsort = suffixes.eot_rows_and_unsort(b)
        x = _packed_last_block(blocks[-1], h, b, p_len, buckets, eot_rows, eot_masks)
        x = _project(tower, tower.ln_final(x)).index_select(0, unsort)  # (bucket, copy, prompt) -> (copy, class)
        return x if single else x.view(b, -1, x.shape[-1])


class DeepPrompts:
    """Learned tokens inserted at the blocks after the first: before block ``i`` (``1 <= i <= len(prompts)``) the
    hidden states of the ``prompts[i-1].shape[0]`` tokens from position ``start`` are replaced by ``prompts[i-1]``
    (one ``[n_tok, d]`` tensor shared by every prompt).  The input-level tokens (block 0) are the prompt's own
    context embeddings, so depth J means ``J - 1`` tensors here; none is the shallow prompt."""

    def __init__(self, start: int, prompts: "list[torch.Tensor]") -> None:
        self.start, self.prompts = int(start), list(prompts)

    def run(self, transformer: nn.Module, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``transformer``'s blocks on batch-first ``x`` with the tokens replaced (open_clip's ``Transformer``)."""
        blocks = list(transformer.resblocks)
        if len(self.prompts) >= len(blocks):
            raise ValueError(f"{len(self.prompts)} deep prompt layers for a tower of {len(blocks)} blocks.")
        batch_first = getattr(transformer, "batch_first", True)
        for i, block in enumerate(blocks):
            if 1 <= i <= len(self.prompts):
                tokens = self.prompts[i - 1]
                stop = self.start + tokens.shape[0]
                tokens = tokens.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
                x = torch.cat([x[:, : self.start], tokens, x[:, stop:]], dim=1)
            x = block(x if batch_first else x.transpose(0, 1), attn_mask=mask)
            x = x if batch_first else x.transpose(0, 1)
        return x


@dataclass
class PaddedSuffixes:
    """The fixed part of ``n`` shared-prefix prompts, in at most two length buckets, each padded to its longest
    suffix (see :meth:`PromptTextEncoder.encode_shared_prefix`).

    ``buckets``: ``(prompts, suffix length S_g)`` of each bucket, prompts sorted by length; ``rows [sum n_g S_g,
    d]``: the suffix embeddings packed bucket by bucket; ``positions [sum n_g S_g]``: the position of each
    packed row; ``masks[g] [S_g, >= P + S_g]``: additive, each suffix row sees every prefix key and its own rows
    up to itself; ``eot_masks[g] [n_g, 1, 1, >= P + S_g]``: what each EOT row sees.  The masks' last dimension
    is padded to a multiple of 16 and sliced to ``P + S_g`` at use, so that their row stride is aligned as the
    fused attention kernels of a GPU require (an unaligned mask would be copied, or send attention to the
    unfused kernel, at every call).  ``rows_for`` maps a number of prefix copies ``B`` to ``(eot_rows
    [B*n], unsort [B*n])``: the packed row of each EOT in (bucket, copy, prompt) order, and the place of (copy,
    class) in that order (built once per ``B``: 1 and 2 are kept with the prompts).
    """

    buckets: tuple[tuple[int, int], ...]
    rows: torch.Tensor
    positions: torch.Tensor
    masks: tuple[torch.Tensor, ...]
    eot_masks: tuple[torch.Tensor, ...]
    rows_for: dict[int, tuple[torch.Tensor, torch.Tensor]]
    p_len: int
    eot_local: list[int]
    order: list[int]

    def eot_rows_and_unsort(self, copies: int) -> tuple[torch.Tensor, torch.Tensor]:
        if copies not in self.rows_for:
            dev = self.rows.device
            self.rows_for[copies] = tuple(
                t.to(dev) for t in eot_indices(self.buckets, self.eot_local, self.order, self.p_len, copies)
            )
        return self.rows_for[copies]


def length_buckets(lengths: list[int]) -> list[tuple[int, int]]:
    """Split suffix lengths (sorted) into one or two buckets ``(count, padded length)`` with the fewest padded
    rows; one only when all lengths are equal, so that every real class set runs the same ops (names of a
    dataset are mostly short, a few long: ImageNet's 1000 suffixes need 13 000 rows in one bucket, 5 728 in
    two)."""
    lengths = sorted(lengths)
    n = len(lengths)
    one = n * lengths[-1]
    best, split = one, n
    for k in range(1, n):
        rows = k * lengths[k - 1] + (n - k) * lengths[-1]
        if rows < best:
            best, split = rows, k
    if split == n:
        return [(n, lengths[-1])]
    return [(split, lengths[split - 1]), (n - split, lengths[-1])]


def eot_indices(
    buckets: tuple[tuple[int, int], ...], eot_local: list[int], order: list[int], p_len: int, copies: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For ``copies`` prefixes: the packed row of every EOT in (bucket, copy, prompt) order, and for every
    (copy, class) its place in that order (see :class:`PaddedSuffixes`)."""
    n = len(order)
    rows, place = [], torch.empty(copies * n, dtype=torch.long)
    start, done, out = copies * p_len, 0, 0
    for count, s_len in buckets:
        local = torch.tensor(eot_local[done : done + count])
        members = torch.tensor(order[done : done + count])
        for c in range(copies):
            rows.append(start + c * count * s_len + torch.arange(count) * s_len + local)
            place[c * n + members] = out + torch.arange(count)
            out += count
        start += copies * count * s_len
        done += count
    return torch.cat(rows), place


def padded_suffixes(suffix: torch.Tensor, eot: torch.Tensor, p_len: int) -> PaddedSuffixes:
    """:class:`PaddedSuffixes` of prompts whose fixed part after the ``p_len`` shared rows is ``suffix [n, >=S, d]``
    and whose EOT positions (in the full prompt) are ``eot``."""
    n, dev = suffix.shape[0], suffix.device
    local = [int(e) - p_len for e in eot.tolist()]  # EOT row within each suffix (read once, at set-up)
    order = sorted(range(n), key=lambda i: (local[i], i))
    buckets = tuple(length_buckets([e + 1 for e in local]))
    rows, positions, masks, eot_masks = [], [], [], []
    done = 0
    zero, inf = torch.zeros(()), torch.full((), float("-inf"))
    for count, s_len in buckets:
        members = order[done : done + count]
        rows.append(suffix[members, :s_len].reshape(count * s_len, -1))
        positions.append(torch.arange(p_len, p_len + s_len).repeat(count))
        own = torch.tensor([local[i] for i in members])
        keys = torch.arange(-(-(p_len + s_len) // 16) * 16)  # padded keys are never seen (-inf)
        causal = keys.unsqueeze(0) <= (p_len + torch.arange(s_len)).unsqueeze(1)
        sees = (keys.unsqueeze(0) <= (p_len + own).unsqueeze(1)).view(count, 1, 1, -1)
        masks.append(torch.where(causal, zero, inf).to(dev))
        eot_masks.append(torch.where(sees, zero, inf).to(dev))
        done += count
    sorted_local = [local[i] for i in order]
    rows_for = {c: tuple(t.to(dev) for t in eot_indices(buckets, sorted_local, order, p_len, c)) for c in (1, 2)}
    return PaddedSuffixes(
        buckets=buckets, rows=torch.cat(rows).clone(), positions=torch.cat(positions).to(dev), masks=tuple(masks),
        eot_masks=tuple(eot_masks), rows_for=rows_for, p_len=p_len, eot_local=sorted_local, order=order,
    )  # fmt: skip


def _packed_heads(
    x: torch.Tensor, b: int, p_len: int, buckets: tuple[tuple[int, int], ...], parts: int, heads: int
) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """Packed projections ``[B*P + sum B*n_g*S_g, parts*H*hd]`` (``parts`` of q, k, v) -> per part the prefixes
    ``[B, H, P, hd]``, and per bucket per part the suffixes ``[B, n_g, H, S_g, hd]`` (views; one op each in the
    backward)."""
    hd = x.shape[1] // (parts * heads)
    pieces = x.split([b * p_len, *(b * n * s for n, s in buckets)])
    prefix = list(pieces[0].view(b, p_len, parts, heads, hd).permute(2, 0, 3, 1, 4).unbind(0))
    suffixes = [
        list(piece.view(b, n, s, parts, heads, hd).permute(3, 0, 1, 4, 2, 5).unbind(0))
        for piece, (n, s) in zip(pieces[1:], buckets)
    ]
    return prefix, suffixes


def _prefix_keys(prefix: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """Keys (or values) ``[B*n, H, P + S, hd]`` of each prompt: its prefix's (``[B, H, P, hd]``), then its own
    (``[B, n, H, S, hd]``)."""
    n = own.shape[1]
    return torch.cat([prefix.unsqueeze(1).expand(-1, n, -1, -1, -1), own], dim=3).flatten(0, 1)


def _packed_block(
    block: nn.Module, h: torch.Tensor, b: int, p_len: int, buckets: tuple[tuple[int, int], ...],
    masks: list[torch.Tensor],
) -> torch.Tensor:  # fmt: skip
    """One residual attention block on the packed rows (every copy's prefix, then the buckets' suffixes)."""
    attn: nn.MultiheadAttention = block.attn
    heads, width = attn.num_heads, h.shape[-1]
    hd = width // heads
    qkv = F.linear(block.ln_1(h), attn.in_proj_weight, attn.in_proj_bias)
    (qp, kp, vp), suffixes = _packed_heads(qkv, b, p_len, buckets, 3, heads)
    op = F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)  # [B, H, P, hd]
    outs = [op.transpose(1, 2).reshape(-1, heads, hd)]
    for (qs, ks, vs), mask in zip(suffixes, masks):
        o = F.scaled_dot_product_attention(
            qs.flatten(0, 1), _prefix_keys(kp, ks), _prefix_keys(vp, vs), attn_mask=mask
        )  # [B*n, H, S, hd]
        outs.append(o.transpose(1, 2).reshape(-1, heads, hd))
    return _finish(block, h, torch.cat(outs).view(-1, width))


def _packed_last_block(
    block: nn.Module, h: torch.Tensor, b: int, p_len: int, buckets: tuple[tuple[int, int], ...],
    eot_rows: torch.Tensor, eot_masks: list[torch.Tensor],
) -> torch.Tensor:  # fmt: skip
    """The last block's output at the EOT rows ``eot_rows`` ((bucket, copy, prompt) order; keys from all rows)."""
    attn: nn.MultiheadAttention = block.attn
    heads, width = attn.num_heads, h.shape[-1]
    bias = attn.in_proj_bias
    kv = F.linear(block.ln_1(h), attn.in_proj_weight[width:], _rows(bias, width, None))
    (kp, vp), suffixes = _packed_heads(kv, b, p_len, buckets, 2, heads)
    h_eot = h.index_select(0, eot_rows)
    q = F.linear(block.ln_1(h_eot), attn.in_proj_weight[:width], _rows(bias, 0, width))
    outs = []
    for qs, (ks, vs), mask in zip(q.split([b * n for n, _ in buckets]), suffixes, eot_masks):
        o = F.scaled_dot_product_attention(
            qs.view(-1, heads, 1, width // heads), _prefix_keys(kp, ks), _prefix_keys(vp, vs), attn_mask=mask
        )  # [B*n_g, H, 1, hd]
        outs.append(o.view(-1, width))
    return _finish(block, h_eot, torch.cat(outs))


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, length, d = x.shape
    return x.view(b, length, n_heads, d // n_heads).transpose(1, 2)


def _qkv_heads(block: nn.Module, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values ``[b, H, length, hd]`` of the rows ``h [b, length, d]`` (``ln_1`` + in-proj)."""
    attn: nn.MultiheadAttention = block.attn
    q, k, v = F.linear(block.ln_1(h), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    return _heads(q, attn.num_heads), _heads(k, attn.num_heads), _heads(v, attn.num_heads)


def _attend(
    q: torch.Tensor,
    kp: torch.Tensor,
    vp: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of suffix queries over their prompt's prefix keys and their own suffix keys.

    ``kp, vp [B, H, P, hd]`` are ``B`` prefixes (one shared by all prompts: ``B = 1``; one per image: CoCoOp);
    ``q [B*m, H, Lq, hd]`` and ``k, v [B*m, H, L, hd]`` are the ``m`` prompts of each prefix, prefix-major.  A
    prefix's keys/values are one matrix for its ``m`` prompts, never copied per prompt (the scores against them
    are one matmul over all its prompts' rows, and their gradient is one matmul, not a sum over copies).
    ``mask [Lq, L]`` is additive, over the prompts' own keys (every suffix row sees the whole prefix).  One
    softmax over the ``P + L`` scores: the same function as attention over the concatenated keys.
    """
    rows, heads, lq, hd = q.shape
    b, _, p_len, _ = kp.shape
    m = rows // b

    def by_prefix(t: torch.Tensor) -> torch.Tensor:  # [B*m, H, Lq, x] -> [B, H, m*Lq, x]
        return t.view(b, m, heads, lq, -1).transpose(1, 2).reshape(b, heads, m * lq, t.shape[-1])

    def by_prompt(t: torch.Tensor) -> torch.Tensor:  # the inverse
        return t.view(b, heads, m, lq, -1).transpose(1, 2).reshape(rows, heads, lq, t.shape[-1])

    q = q * hd**-0.5
    s_prefix = by_prompt(by_prefix(q) @ kp.transpose(-2, -1))
    s_own = q @ k.transpose(-2, -1)
    if mask is not None:
        s_own = s_own + mask
    a_prefix, a_own = torch.softmax(torch.cat([s_prefix, s_own], dim=-1), dim=-1).split(
        [p_len, k.shape[2]], dim=-1
    )
    return by_prompt(by_prefix(a_prefix) @ vp) + a_own @ v


class _QuickGELUSavingSlope(torch.autograd.Function):
    """QuickGELU, ``x * sigmoid(1.702 x)``, that saves its derivative at ``x`` for the backward instead of ``x``.

    Autograd's own graph of the expression keeps ``x`` and the sigmoid and runs five elementwise passes over them
    per backward; here the slope is computed in the forward (while ``x`` is still in cache) and every backward is
    one multiplication.  ProGrad pushes two cotangents through the same graph, so the saving counts twice, and
    one saved tensor replaces two.  The forward is the module's own expression.  (Exact GELU is left to the
    module: its backward is already one fused pass.)
    """

    generate_vmap_rule = True  # torch.func.vmap batches its forward and backward (both are plain tensor ops)

    @staticmethod
    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = torch.sigmoid_(1.702 * x)
        y = x * s
        return y, torch.addcmul(s, y, 1.0 - s, value=1.702)  # the slope s + 1.702 x s (1 - s), an output to save

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        # The separate setup_context (rather than saving inside forward) is what torch.func transforms require.
        ctx.save_for_backward(output[1])
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # the slope has no gradient: no zero-filled tensor per backward

    @staticmethod
    def backward(ctx, grad: torch.Tensor | None, _slope_grad: None) -> torch.Tensor | None:
        (slope,) = ctx.saved_tensors
        return None if grad is None else grad * slope


def _is_quick_gelu_mlp(mlp: nn.Module) -> bool:
    """Whether ``mlp`` is open_clip's ``c_fc -> QuickGELU -> c_proj`` (an identity ``ln`` allowed)."""
    parts = dict(mlp.named_children())
    if set(parts) - {"ln"} != {"c_fc", "gelu", "c_proj"} or not isinstance(parts.get("ln", nn.Identity()), nn.Identity):
        return False
    return isinstance(parts["gelu"], QuickGELU)


def _mlp(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block.mlp(x)``; QuickGELU saves its slope when ``x`` is differentiated (the same function)."""
    mlp = block.mlp
    if torch.is_grad_enabled() and x.requires_grad and _is_quick_gelu_mlp(mlp):
        return mlp.c_proj(_QuickGELUSavingSlope.apply(mlp.c_fc(x))[0])
    return mlp(x)


def _finish(block: nn.Module, h: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """Output projection, residuals and MLP of a block, given the attention output ``o`` (heads merged)."""
    h = h + block.ls_1(block.attn.out_proj(o))
    return h + block.ls_2(_mlp(block, block.ln_2(h)))


def _rows(bias: torch.Tensor | None, start: int, stop: int | None) -> torch.Tensor | None:
    return None if bias is None else bias[start:stop]


def _merge_heads(o: torch.Tensor) -> torch.Tensor:
    b, heads, length, hd = o.shape
    return o.transpose(1, 2).reshape(b * length, heads * hd)
