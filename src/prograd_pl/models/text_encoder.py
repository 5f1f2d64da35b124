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
* for the same reason each prompt needs only its rows up to its own EOT (prompts are grouped by that length
  instead of padded to the longest), and in the last block only the EOT row itself.

When the features are differentiated, QuickGELU (the activation of OpenAI's CLIP towers) saves its derivative
instead of its input, so each backward through it is one multiplication (ProGrad runs two backwards on one graph).
"""

from __future__ import annotations

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


class PromptTextEncoder(nn.Module):
    """Runs a frozen CLIP text tower on prompt embeddings and returns (unnormalised) text features."""

    def __init__(self, tower: TextTower) -> None:
        super().__init__()
        self.tower = tower
        self.causal = tower.attn_mask is not None
        blocks = list(tower.transformer.resblocks)
        self.supports_shared_prefix = self.causal and all(
            isinstance(getattr(b, "attn", None), nn.MultiheadAttention)
            and b.attn._qkv_same_embed_dim
            and not hasattr(b, "ln_1_kv")
            for b in blocks
        )

    def eot_index(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Position of the end-of-text token of each tokenised prompt."""
        if self.tower.pool_type == "eos" and self.tower.eos_id is not None:
            return (token_ids == self.tower.eos_id).int().argmax(dim=-1)
        return token_ids.argmax(dim=-1)

    def encode_embeddings(
        self, embeds: torch.Tensor, eot: torch.Tensor, truncate: bool = True
    ) -> torch.Tensor:
        """Encode full prompt embeddings ``[n, 77, d]``; ``truncate`` cuts them after the last EOT (exact)."""
        tower = self.tower
        length = embeds.shape[1]
        if truncate and self.causal:
            length = int(eot.max()) + 1
            embeds = embeds[:, :length]
        dtype = tower.positional_embedding.dtype
        x = embeds.to(dtype) + tower.positional_embedding[:length]
        mask = tower.attn_mask[:length, :length] if tower.attn_mask is not None else None
        x = tower.transformer(x, attn_mask=mask)
        x = tower.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot]
        return _project(tower, x)

    def encode_tokens(self, token_ids: torch.Tensor, truncate: bool = True) -> torch.Tensor:
        """Encode tokenised text (what ``CLIP.encode_text`` does), optionally truncated."""
        embeds = self.tower.token_embedding(token_ids)
        return self.encode_embeddings(embeds, self.eot_index(token_ids), truncate=truncate)

    def encode_shared_prefix(
        self, prefix: torch.Tensor, suffix: torch.Tensor, eot: torch.Tensor
    ) -> torch.Tensor:
        """Encode prompts ``cat(prefix, suffix[i])`` where ``prefix [P, d]`` is common to all ``n`` prompts.

        ``suffix`` is ``[n, S, d]`` (already truncated after the last EOT) and ``eot`` the EOT positions in the
        full prompt (``>= P``).  Each prompt's suffix is cut after its own EOT and the prompts are grouped by
        that length, so no padding row is computed; the row-wise layers (LayerNorm, projections, MLP) run on all
        groups' rows packed together.  In the last block only the EOT rows are carried past attention, since
        nothing else reaches the output.
        """
        tower = self.tower
        if not self.supports_shared_prefix:
            raise ValueError("this text tower does not support shared-prefix encoding")
        n, s_len, _ = suffix.shape
        p_len = prefix.shape[0]
        dtype = tower.positional_embedding.dtype
        pos = tower.positional_embedding
        hp = (prefix.to(dtype) + pos[:p_len]).unsqueeze(0)
        groups = _length_groups(eot - p_len + 1)
        causal = tower.attn_mask[p_len : p_len + s_len, p_len : p_len + s_len].to(dtype)
        rows = []
        for length, idx in groups:
            rows.append((suffix[idx, :length].to(dtype) + pos[p_len : p_len + length]).reshape(-1, suffix.shape[2]))
        hs = torch.cat(rows)
        # suffix row i of a group sees the whole prefix and the group's rows <= i (the mask of the latter)
        masks = [causal[:length, :length] for length, _ in groups]
        prefix_mask = tower.attn_mask[:p_len, :p_len].to(dtype)
        blocks = list(tower.transformer.resblocks)
        for block in blocks[:-1]:
            hp, hs = _shared_prefix_block(block, hp, hs, groups, prefix_mask, masks)
        x = tower.ln_final(_last_block_eot_rows(blocks[-1], hp, hs, groups))
        order = torch.cat([idx for _, idx in groups])
        x = x[torch.argsort(order)]
        return _project(tower, x)


def _length_groups(lengths: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """``(length, indices)`` of the prompts that need ``length`` suffix rows, by increasing length."""
    values = torch.unique(lengths.cpu())
    return [(int(v), torch.nonzero(lengths == v).flatten()) for v in values]


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, length, d = x.shape
    return x.view(b, length, n_heads, d // n_heads).transpose(1, 2)


def _split_groups(x: torch.Tensor, groups: list[tuple[int, torch.Tensor]]) -> list[torch.Tensor]:
    """Packed rows ``[R, d]`` -> one ``[n_g, length_g, d]`` tensor per group."""
    sizes = [length * len(idx) for length, idx in groups]
    return [part.view(len(idx), length, -1) for part, (length, idx) in zip(x.split(sizes), groups)]


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


def _shared_prefix_block(
    block: nn.Module,
    hp: torch.Tensor,
    hs: torch.Tensor,
    groups: list[tuple[int, torch.Tensor]],
    prefix_mask: torch.Tensor,
    masks: list[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One residual attention block: prefix computed once (batch 1), packed suffix rows attending to it."""
    attn: nn.MultiheadAttention = block.attn
    heads = attn.num_heads
    qp, kp, vp = _qkv_heads(block, hp)
    op = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=prefix_mask)
    q_all, k_all, v_all = F.linear(block.ln_1(hs), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    outs = []
    for q, k, v, mask in zip(
        _split_groups(q_all, groups), _split_groups(k_all, groups), _split_groups(v_all, groups), masks
    ):
        outs.append(_merge_heads(_attend(_heads(q, heads), kp, vp, _heads(k, heads), _heads(v, heads), mask)))
    hp = _finish(block, hp, _merge_heads(op).view_as(hp))
    return hp, _finish(block, hs, torch.cat(outs))


def _last_block_eot_rows(
    block: nn.Module, hp: torch.Tensor, hs: torch.Tensor, groups: list[tuple[int, torch.Tensor]]
) -> torch.Tensor:
    """The last block's output at each prompt's EOT row (the last row of its group), in group order."""
    attn: nn.MultiheadAttention = block.attn
    heads, width = attn.num_heads, hs.shape[-1]
    _, kp, vp = _qkv_heads(block, hp)
    bias = attn.in_proj_bias
    k_all, v_all = F.linear(block.ln_1(hs), attn.in_proj_weight[width:], _rows(bias, width, None)).chunk(2, dim=-1)
    last = [rows[:, -1] for rows in _split_groups(hs, groups)]
    h_eot = torch.cat(last)
    q_eot = F.linear(block.ln_1(h_eot), attn.in_proj_weight[:width], _rows(bias, 0, width))
    outs = []
    for q, k, v in zip(
        q_eot.split([len(idx) for _, idx in groups]), _split_groups(k_all, groups), _split_groups(v_all, groups)
    ):
        # the EOT row is the group's last row: it sees every key, no mask needed
        outs.append(_merge_heads(_attend(_heads(q.unsqueeze(1), heads), kp, vp, _heads(k, heads), _heads(v, heads))))
    return _finish(block, h_eot, torch.cat(outs))
