"""The pretraining stream: batches of image-caption pairs drawn from the caption drawers' mix, with families of
hard negatives, unnamed nuisances, named styles, the web's words for class names, filler words and caption noise.
Batch ``step`` depends only on (seed, step)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

from prograd_pl.mini.captions import (
    pretrain_digit,
    pretrain_object,
    pretrain_scene,
    pretrain_texture,
    pretrain_two_objects,
)
from prograd_pl.mini.drawing import MODEL_SIZE, add_noise, blur, clutter, colour_cast, low_contrast, to_image
from prograd_pl.mini.styles import STYLES, apply_style, styled_caption
from prograd_pl.mini.vocabulary import (
    ALIASES,
    COLOUR_CLASSES,
    DIGIT_NAMES,
    EXTRA_SHAPES,
    NAME_RATES,
    SCENES,
    SHAPES,
    TEXTURES,
    Rng,
    pick,
)

PRETRAIN_MIX: list[tuple[float, Callable[..., tuple[np.ndarray, str]]]] = [
    (0.4, pretrain_object),
    (0.06, pretrain_two_objects),
    (0.2, pretrain_texture),
    (0.22, pretrain_digit),
    (0.12, pretrain_scene),
]
# Families: FAMILY_SIZE pairs in a batch that share every nuisance (colours, background, position, caption
# wording) and differ only in the concept, as hard negatives for the contrastive loss; without them a small
# model gets by on colour and learns shapes and digits slowly.
FAMILY_SHARE = 0.5
FAMILY_SIZE = 4
FAMILY_CONCEPTS: dict[Callable, tuple[str, Sequence[str]]] = {
    pretrain_object: ("shape", SHAPES + EXTRA_SHAPES),
    pretrain_texture: ("kind", TEXTURES),
    pretrain_digit: ("digit", tuple(str(i) for i in range(10))),
    pretrain_scene: ("kind", SCENES),
}
_FAMILY_DRAW = FAMILY_SHARE / (
    FAMILY_SIZE - (FAMILY_SIZE - 1) * FAMILY_SHARE
)  # per draw, for FAMILY_SHARE of pairs
# Share of pairs drawn in a style (STYLES) that the caption names; each downstream task comes in one style
# that its hand-written template does not name (as satellite or texture photos on real CLIP).
STYLE_SHARE = 0.3
CAPTION_NOISE = 0.05  # fraction of pairs whose caption belongs to another image (web noise)
# Content-free words around some captions: web captions are long and wordy, and the prompts of prompt tuning
# (16 context tokens before the class name) need the later positions of the text tower trained too.
FILLER = (
    "image",
    "picture",
    "photo",
    "stock",
    "free",
    "download",
    "simple",
    "flat",
    "style",
    "digital",
    "art",
    "illustration",
    "hd",
    "wallpaper",
    "from",
    "my",
    "collection",
    "here",
    "we",
    "can",
    "see",
    "this",
    "is",
    "the",
    "best",
    "new",
    "vector",
    "graphic",
    "design",
    "for",
    "kids",
    "example",
    "page",
    "file",
)


def with_filler(rng: Rng, caption: str) -> str:
    """Pad ``caption`` with 2-14 filler words before and/or after it."""
    n = int(rng.integers(2, 15))
    words = [pick(rng, FILLER) for _ in range(n)]
    k = int(rng.integers(0, n + 1))
    before, after = " ".join(words[:k]), " ".join(words[k:])
    return ", ".join(p for p in (before, caption, after) if p)


def nuisances(rng: Rng, img: np.ndarray) -> np.ndarray:
    """Conditions the downstream renderings also have (clutter, colour casts, low contrast, blur); captions do
    not mention them, so the image tower learns to see through them."""
    if rng.random() < 0.2:
        img = clutter(img, rng, int(rng.integers(1, 3)))
    if rng.random() < 0.3:
        img = colour_cast(img, rng, 0.15)
    if rng.random() < 0.2:
        img = low_contrast(img, rng, 0.4)
    if rng.random() < 0.15:
        img = blur(img, rng.uniform(0.3, 1.0))
    return img


@lru_cache(maxsize=1)
def name_rates() -> dict[str, float]:
    """The rate at which pretraining captions use each downstream class name (else its alias): NAME_RATES in an
    order drawn per task from a seed of its own class list (so rarity is not alphabetical)."""
    rates: dict[str, float] = {}
    for names in (SHAPES, TEXTURES, SCENES, DIGIT_NAMES, COLOUR_CLASSES):
        order = np.random.default_rng([7, *map(ord, "".join(names))]).permutation(len(names))
        for name, rank in zip(names, order):
            rates[name.replace("_", " ")] = NAME_RATES[int(rank)]
    return rates


_CLASS_WORD = re.compile(r"\b(" + "|".join(sorted(ALIASES, key=len, reverse=True)) + r")\b")


def web_words(rng: Rng, cap: str) -> str:
    """``cap`` with each downstream class name kept at its rate (:func:`name_rates`) or replaced by its alias
    (one draw per name and caption)."""
    found = sorted(set(_CLASS_WORD.findall(cap)))
    if not found:
        return cap
    keep = {name: rng.random() < name_rates()[name] for name in found}
    return _CLASS_WORD.sub(lambda m: m.group(0) if keep[m.group(0)] else ALIASES[m.group(0)], cap)


def _finish(rng: Rng, img: np.ndarray, cap: str) -> tuple[np.ndarray, str]:
    img = nuisances(rng, img)
    cap = web_words(rng, cap)
    if rng.random() < STYLE_SHARE:
        style = pick(rng, tuple(STYLES))
        img = apply_style(img, rng, style)
        cap = styled_caption(rng, style, cap)
    if rng.random() < 0.15:
        img = add_noise(img, rng, rng.uniform(3, 12))
    if rng.random() < 0.3:
        cap = with_filler(rng, cap)
    return img, cap


def _kind(rng: Rng) -> Callable[..., tuple[np.ndarray, str]]:
    probs = np.array([p for p, _ in PRETRAIN_MIX])
    return PRETRAIN_MIX[rng.choice(len(PRETRAIN_MIX), p=probs / probs.sum())][1]


def pretrain_sample(rng: Rng) -> tuple[np.ndarray, str]:
    """One image (CANVAS px, float RGB) and its caption."""
    img, cap = _kind(rng)(rng)
    return _finish(rng, img, cap)


def pretrain_family(rng: Rng) -> list[tuple[np.ndarray, str]]:
    """FAMILY_SIZE pairs that differ only in their concept (shape, colour, texture, digit or scene)."""
    fn = _kind(rng)
    if fn not in FAMILY_CONCEPTS:
        fn = pretrain_object
    arg, concepts = FAMILY_CONCEPTS[fn]
    if fn is pretrain_object and rng.random() < 0.3:
        arg, concepts = "colour", COLOUR_CLASSES
    chosen = rng.choice(len(concepts), FAMILY_SIZE, replace=False)
    style_seed = int(rng.integers(2**62))
    out = []
    for c in chosen:
        style = np.random.default_rng(style_seed)  # the same nuisance draws for every member
        img, cap = fn(style, **{arg: concepts[c]})
        out.append(_finish(style, img, cap))
    return out


def pretrain_batch(seed: int, step: int, batch_size: int) -> tuple[np.ndarray, list[str]]:
    """Batch ``step`` of the pretraining stream: uint8 images [B, MODEL_SIZE, MODEL_SIZE, 3] and captions."""
    rng = np.random.default_rng([seed, step])
    pairs: list[tuple[np.ndarray, str]] = []
    while len(pairs) < batch_size:
        if batch_size - len(pairs) >= FAMILY_SIZE and rng.random() < _FAMILY_DRAW:
            pairs.extend(pretrain_family(rng))
        else:
            pairs.append(pretrain_sample(rng))
    images = [np.asarray(to_image(img).resize((MODEL_SIZE, MODEL_SIZE), Image.BICUBIC)) for img, _ in pairs]
    captions = [cap for _, cap in pairs]
    n_noisy = int(round(CAPTION_NOISE * batch_size))
    for i, j in zip(
        rng.choice(batch_size, n_noisy, replace=False), rng.choice(batch_size, n_noisy, replace=False)
    ):
        captions[i] = captions[j]
    return np.stack(images), captions
