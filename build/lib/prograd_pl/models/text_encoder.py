"""Text encoding from prompt embeddings: plain (full context), truncated, and shared-prefix.

All three compute the same function.  CLIP's text transformer is causal: token ``i`` only attends to tokens
``<= i``, LayerNorm and MLP act per token and positions are absolute, so the EOT feature depends only on the tokens
up to EOT.  Hence

* truncating every prompt to ``L = max EOT index + 1`` tokens (with ``positional_embedding[:L]`` and the
  ``L x L`` corner of the mask) changes nothing but float summation order;
* when all prompts start with the same ``P`` embeddings (SOT + a generic context), those ``P`` rows are identical
  for every prompt at every layer, so they can be computed once (batch 1) and each prompt's remaining rows attend
  to them as extra keys/values.  The backward pass accumulates into the single shared prefix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
        full prompt (``>= P``).
        """
        tower = self.tower
        if not self.supports_shared_prefix:
            raise ValueError("this text tower does not support shared-prefix encoding")
        n, s_len, _ = suffix.shape
        p_len = prefix.shape[0]
        dtype = tower.positional_embedding.dtype
        pos = tower.positional_embedding
        hp = (prefix.to(dtype) + pos[:p_len]).unsqueeze(0)
        hs = suffix.to(dtype) + pos[p_len : p_len + s_len]
        # suffix row i sees the whole prefix and suffix rows <= i
        causal = tower.attn_mask[p_len : p_len + s_len, p_len : p_len + s_len]
        suffix_mask = torch.cat([causal.new_zeros(s_len, p_len), causal], dim=1).to(dtype)
        prefix_mask = tower.attn_mask[:p_len, :p_len].to(dtype)
        for block in tower.transformer.resblocks:
            hp, hs = _shared_prefix_block(block, hp, hs, prefix_mask, suffix_mask)
        x = tower.ln_final(hs[torch.arange(n, device=hs.device), eot - p_len])
        return _project(tower, x)


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, length, d = x.shape
    return x.view(b, length, n_heads, d // n_heads).transpose(1, 2)


def _shared_prefix_block(
    block: nn.Module,
    hp: torch.Tensor,
    hs: torch.Tensor,
    prefix_mask: torch.Tensor,
    suffix_mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One residual attention block, prefix computed once (batch 1), suffixes attending to it."""
    attn: nn.MultiheadAttention = block.attn
    heads = attn.num_heads
    n = hs.shape[0]
    qp, kp, vp = F.linear(block.ln_1(hp), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    qs, ks, vs = F.linear(block.ln_1(hs), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    qp, kp, vp = _heads(qp, heads), _heads(kp, heads), _heads(vp, heads)
    qs, ks, vs = _heads(qs, heads), _heads(ks, heads), _heads(vs, heads)
    op = F.scaled_dot_product_attention(qp, kp, vp, attn_mask=prefix_mask)
    keys = torch.cat([kp.expand(n, -1, -1, -1), ks], dim=2)
    values = torch.cat([vp.expand(n, -1, -1, -1), vs], dim=2)
    os_ = F.scaled_dot_product_attention(qs, keys, values, attn_mask=suffix_mask)

    def finish(h: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        o = o.transpose(1, 2).reshape(h.shape)
        h = h + block.ls_1(attn.out_proj(o))
        return h + block.ls_2(block.mlp(block.ln_2(h)))

    return finish(hp, op), finish(hs, os_)
