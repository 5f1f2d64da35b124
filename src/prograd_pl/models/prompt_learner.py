"""Learnable prompt context (CoOp / ProGrad) and its assembly into per-class prompt embeddings."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from prograd_pl.errors import PromptError
from prograd_pl.models.backbone import Backbone
from prograd_pl.models.text_encoder import PaddedSuffixes, PromptTextEncoder, padded_suffixes

INITS = ("template", "phrase", "random")
POSITIONS = ("end", "middle", "front")
ENCODINGS = ("auto", "plain", "truncated", "shared_prefix")




def _at(tensors: tuple[torch.Tensor, ...], index: int) -> torch.Tensor:
    return tensors[index] if index < len(tensors) else torch.empty(0)


def template_phrase(template: str) -> str:
    """The words of a hand-crafted template before the class name: ``'a texture of {}.'`` -> ``'a texture of'``."""
    if "{}" not in template:
        raise PromptError(f"template '{template}' has no '{{}}' placeholder for the class name.")
    return template.split("{}")[0].strip()


def template_tail(template: str) -> str:
    """What follows the class name in a template (``'.'`` for all of the paper's templates)."""
    return template.split("{}", 1)[1]


def classname_text(name: str) -> str:
    return name.replace("_", " ")


class PromptLearner(nn.Module):
    """Context vectors ``ctx`` plus frozen token embeddings of everything else in each class prompt.

    Args:
        backbone: the frozen CLIP (tokenizer and token embedding are used).
        classnames: class names, index = label.
        n_ctx: number of context vectors (for ``init='phrase'`` the phrase's token count replaces it).
        init: ``template`` (ProGrad: the dataset template's words, right-aligned, zeros before),
            ``phrase`` (CoOp: embeddings of ``phrase``), or ``random`` (N(0, 0.02^2)).
        template: the dataset's hand-crafted template (used by ``init='template'``).
        phrase: initial words for ``init='phrase'``.
        csc: class-specific context (one ``ctx`` per class).
        position: class token at the ``end``, ``middle`` or ``front``.
        generator: RNG for the random init.
    """

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        n_ctx: int = 16,
        init: str = "random",
        template: str = "a photo of a {}.",
        phrase: str | None = None,
        csc: bool = False,
        position: str = "end",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if init not in INITS:
            raise PromptError(f"prompt.init='{init}' is not one of {', '.join(INITS)}.")
        if position not in POSITIONS:
            raise PromptError(f"prompt.position='{position}' is not one of {', '.join(POSITIONS)}.")
        if init == "template" and csc:
            raise PromptError(
                "prompt.csc=true cannot be combined with prompt.init=template (the template context is generic); "
                "use prompt.init=random or prompt.init=phrase for class-specific context."
            )
        if n_ctx < 1 and init != "phrase":
            raise PromptError(f"prompt.n_ctx={n_ctx} must be at least 1.")
        self.tokenizer = backbone.tokenizer
        self.text = backbone.text
        self.encoder = PromptTextEncoder(backbone.text)
        self.init, self.csc, self.position, self.template = init, csc, position, template
        self.phrase = phrase
        width = backbone.text.width
        emb_weight = backbone.text.token_embedding.weight

        tail = "."
        if init == "template":
            placeholder, tail, ids, n_words = self._template_prompt(template, n_ctx)
            ctx = torch.zeros(n_ctx, width)
            if n_words:
                ctx[n_ctx - n_words :] = emb_weight[ids].detach().float().cpu()
        elif init == "phrase":
            if not phrase:
                raise PromptError("prompt.init=phrase needs prompt.phrase (e.g. 'a photo of a').")
            ids = self._tokens(phrase)
            # n_ctx below the phrase's tokens: the first n_ctx are learned, the rest stay fixed text after them
            # (MaPLe's "a photo" + "of a"); otherwise the whole phrase is the context
            n_ctx = n_ctx if 1 <= n_ctx < len(ids) else len(ids)
            base = emb_weight[ids[:n_ctx]].detach().float()
            ctx = base.unsqueeze(0).repeat(len(classnames), 1, 1) if csc else base.clone()
            placeholder = phrase
        else:
            shape = (len(classnames), n_ctx, width) if csc else (n_ctx, width)
            ctx = torch.empty(shape).normal_(0.0, 0.02, generator=generator)
            placeholder = " ".join(["X"] * n_ctx)
        self.n_ctx = n_ctx
        self.placeholder = placeholder
        self.tail = tail
        # The context is initialised on the CPU (the same values whatever the device, a CPU generator), then
        # lives where the tower's weights are, as the buffers set_classnames registers do.
        self.ctx = nn.Parameter(ctx.to(emb_weight.device))
        self.set_classnames(classnames)

    def _template_prompt(self, template: str, n_ctx: int) -> tuple[str, str, list[int], int]:
        """Placeholder text, tail, phrase token ids and word count of the ProGrad template init (spec §2.1)."""
        phrase_text = template_phrase(template)
        n_words = len(phrase_text.split())
        if n_ctx < n_words:
            raise PromptError(
                f"prompt.n_ctx={n_ctx} is smaller than the {n_words} words of the template "
                f"'{template}'; expected n_ctx >= {n_words}."
            )
        # The reference counts whitespace words, not BPE tokens: with a comma the phrase has one token more than
        # words and its last token ends up in the frozen suffix.  Kept for fidelity.
        ids = self._tokens(phrase_text)[:n_words]
        placeholder = " ".join(["X"] * (n_ctx - n_words) + ([phrase_text] if phrase_text else []))
        return placeholder, template_tail(template), ids, n_words

    def _tokens(self, text: str) -> list[int]:
        """BPE ids of ``text`` without SOT/EOT."""
        ids = self.tokenizer([text])[0]
        eot = int(self.encoder.eot_index(ids.unsqueeze(0))[0])
        return ids[1:eot].tolist()

    @torch.no_grad()
    def set_classnames(self, classnames: Sequence[str], template: str | None = None) -> None:
        """(Re)build the frozen token prefix/suffix for ``classnames`` (e.g. new classes, another dataset).

        With template init, a new ``template`` (another dataset's) rebuilds the frozen words around the class
        name from that template's word count, as the reference does on cross-dataset evaluation.
        """
        if template is not None and self.init == "template":
            self.placeholder, self.tail, _, _ = self._template_prompt(template, self.n_ctx)
            self.template = template
        if self.csc and hasattr(self, "token_ids") and len(classnames) != self.ctx.shape[0]:
            raise PromptError(
                f"class-specific context was learned for {self.ctx.shape[0]} classes, cannot be used for "
                f"{len(classnames)} classes."
            )
        self.classnames = list(classnames)
        names = [classname_text(c) for c in classnames]
        prompts = [f"{self.placeholder} {name}{self.tail}" for name in names]
        token_ids = self.tokenizer(prompts).to(self.text.token_embedding.weight.device)
        emb = self.text.token_embedding(token_ids).float()
        n_leak = len(self._tokens(self.placeholder)) - self.n_ctx  # phrase tokens pushed past the context
        name_lens = [n_leak + len(self._tokens(name)) for name in names]
        self.register_buffer("token_ids", token_ids, persistent=False)
        self.register_buffer("token_prefix", emb[:, :1].clone(), persistent=False)
        self.register_buffer("token_suffix", emb[:, 1 + self.n_ctx :].clone(), persistent=False)
        self.name_lens = name_lens
        eot = self.encoder.eot_index(token_ids)
        self.register_buffer("eot", eot, persistent=False)
        # read once here, so that no forward asks the device for it
        self.prompt_length = int(eot.max()) + 1
        if self.position == "end" and self.ctx.dim() == 2:
            padded = padded_suffixes(self.token_suffix, eot, 1 + self.n_ctx)
            self._padded_meta = (padded.buckets, padded.p_len, padded.eot_local, padded.order)
            for name in ("rows", "positions"):
                self.register_buffer(f"suffix_{name}", getattr(padded, name), persistent=False)
            for g in range(2):  # at most two length buckets; an unused slot holds an empty tensor
                self.register_buffer(f"suffix_mask{g}", _at(padded.masks, g), persistent=False)
                self.register_buffer(f"suffix_eot_mask{g}", _at(padded.eot_masks, g), persistent=False)
            for copies in (1, 2):  # one context, and the two copies of the twin backward
                rows, unsort = padded.rows_for[copies]
                self.register_buffer(f"suffix_eot_rows{copies}", rows, persistent=False)
                self.register_buffer(f"suffix_unsort{copies}", unsort, persistent=False)

    @property
    def n_cls(self) -> int:
        return len(self.classnames)

    def _ctx_for_classes(self) -> torch.Tensor:
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return ctx

    def prompt_embeddings(self) -> torch.Tensor:
        """Full ``[n_cls, context_length, d]`` prompt embeddings in the configured layout."""
        ctx = self._ctx_for_classes().to(self.token_suffix.dtype)
        prefix, suffix = self.token_prefix, self.token_suffix
        if self.position == "end":
            return torch.cat([prefix, ctx, suffix], dim=1)
        rows = []
        half = self.n_ctx // 2
        for i, n_name in enumerate(self.name_lens):
            name, rest = suffix[i : i + 1, :n_name], suffix[i : i + 1, n_name:]
            c = ctx[i : i + 1]
            if self.position == "front":
                rows.append(torch.cat([prefix[i : i + 1], name, c, rest], dim=1))
            else:
                rows.append(torch.cat([prefix[i : i + 1], c[:, :half], name, c[:, half:], rest], dim=1))
        return torch.cat(rows, dim=0)

    def resolve_encoding(self, encoding: str = "auto") -> str:
        """Which encoding ``auto`` means here: shared prefix where exact and supported, else truncated."""
        if encoding not in ENCODINGS:
            raise PromptError(f"prompt.encoding='{encoding}' is not one of {', '.join(ENCODINGS)}.")
        if encoding == "auto":
            shareable = self.position == "end" and self.ctx.dim() == 2 and self.encoder.supports_shared_prefix
            return "shared_prefix" if shareable else "truncated"
        if encoding == "shared_prefix" and not (self.position == "end" and self.ctx.dim() == 2):
            raise PromptError("prompt.encoding=shared_prefix needs a generic context with the class token at the end.")
        return encoding

    def forward(self, encoding: str = "auto", ctx: torch.Tensor | None = None) -> torch.Tensor:
        """Class text features ``[n_cls, dim]`` (not normalised).

        ``ctx`` replaces the learned context; ``[B, n_ctx, d]`` (shared-prefix encoding only) gives the features
        of ``B`` contexts at once, ``[B, n_cls, dim]``.
        """
        mode = self.resolve_encoding(encoding)
        if mode == "shared_prefix":
            ctx = self.ctx if ctx is None else ctx
            sot = self.token_prefix[0]
            if ctx.dim() == 3:
                sot = sot.expand(ctx.shape[0], -1, -1)
            prefix = torch.cat([sot, ctx.to(self.token_prefix.dtype)], dim=-2)
            return self.encoder.encode_shared_prefix(prefix, self.padded_suffixes())
        if ctx is not None:
            raise PromptError("a context other than the learned one needs the shared-prefix encoding.")
        return self.encoder.encode_embeddings(
            self.prompt_embeddings(), self.eot, truncate=mode == "truncated", length=self.prompt_length
        )

    def padded_suffixes(self) -> PaddedSuffixes:
        """The fixed suffixes of the class prompts, padded to one length (shared-prefix encoding)."""
        buckets, p_len, eot_local, order = self._padded_meta
        k = len(buckets)
        return PaddedSuffixes(
            buckets=buckets, rows=self.suffix_rows, positions=self.suffix_positions,
            masks=(self.suffix_mask0, self.suffix_mask1)[:k], eot_masks=(self.suffix_eot_mask0, self.suffix_eot_mask1)[:k],
            rows_for={c: (getattr(self, f"suffix_eot_rows{c}"), getattr(self, f"suffix_unsort{c}")) for c in (1, 2)},
            p_len=p_len, eot_local=eot_local, order=order,
        )

    def learned_parameters(self) -> list[nn.Parameter]:
        """What the optimiser trains, in a fixed order (the context; subclasses add e.g. a meta-network)."""
        return [self.ctx]

    def learned_state(self) -> dict[str, torch.Tensor]:
        """Everything learned, by name (what a checkpoint stores besides :meth:`meta`)."""
        return {name: p.detach().cpu().clone() for name, p in self.named_parameters()}

    @torch.no_grad()
    def load_learned_state(self, state: dict[str, torch.Tensor]) -> None:
        """Copy a :meth:`learned_state` back in; names and shapes must match."""
        own = dict(self.named_parameters())
        if set(own) != set(state):
            raise PromptError(f"checkpoint holds {sorted(state)}, this prompt learns {sorted(own)}.")
        for name, value in state.items():
            if own[name].shape != value.shape:
                raise PromptError(
                    f"checkpoint tensor '{name}' has shape {tuple(value.shape)}, expected {tuple(own[name].shape)}."
                )
            own[name].copy_(value.to(own[name].dtype))

    def meta(self) -> dict:
        """What rebuilds this prompt (stored in checkpoints next to ``ctx``)."""
        return {
            "n_ctx": self.n_ctx,
            "init": self.init,
            "position": self.position,
            "csc": self.csc,
            "template": self.template,
            "phrase": self.phrase,
            "placeholder": self.placeholder,
            "tail": self.tail,
        }

