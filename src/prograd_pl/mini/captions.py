"""Pretraining image-caption pairs, one drawer per kind of concept (objects, two objects, textures, digits,
scenes): each draws an image and a caption in one of many phrasings, at uneven concept frequencies as on the web."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from prograd_pl.mini.digits import SKLEARN_PRETRAIN, digit_glyph, handwritten_digit, sklearn_digits
from prograd_pl.mini.drawing import (
    CANVAS,
    add_noise,
    colour_of,
    other_colour,
    paint,
    shape_mask,
    shape_outline,
    texture_image,
    to_image,
)
from prograd_pl.mini.scenes import random_background, scene_image
from prograd_pl.mini.vocabulary import (
    COLOUR_CLASSES,
    COLOURS,
    DIGIT_NAMES,
    EXTRA_SHAPES,
    EXTRA_TEXTURES,
    RGB,
    SCENE_WORDS,
    SCENES,
    SHAPE_WORDS,
    SHAPES,
    TEXTURE_WORDS,
    TEXTURES,
    Rng,
    article,
    pick,
    word,
)

POSITIONS = {
    (0, 0): "in the top left corner",
    (1, 0): "at the top",
    (2, 0): "in the top right corner",
    (0, 1): "on the left",
    (1, 1): "in the middle",
    (2, 1): "on the right",
    (0, 2): "in the bottom left corner",
    (1, 2): "at the bottom",
    (2, 2): "in the bottom right corner",
}
# Uneven concept frequencies, as on the web: the later concepts of each list are rarer.
_FREQ = np.array([1.0, 0.95, 0.9, 0.85, 0.8, 0.72, 0.64, 0.56, 0.48, 0.4])


def _weighted(rng: Rng, items: Sequence[str], extra: Sequence[str] = (), p_extra: float = 0.2) -> str:
    if extra and rng.random() < p_extra:
        return pick(rng, extra)
    order = np.asarray(rng_perm_for(items))
    w = _FREQ[: len(items)][np.argsort(order)]
    return items[rng.choice(len(items), p=w / w.sum())]


@lru_cache(maxsize=None)
def rng_perm_for(items: tuple) -> tuple:
    """A fixed (seeded by the list itself) frequency rank per concept, so rarity is not alphabetical."""
    seed = sum(ord(c) for c in "".join(items))
    return tuple(np.random.default_rng(seed).permutation(len(items)).tolist())


def _shape_phrase(rng: Rng, shape: str, colour: str | None, size_word: str | None) -> str:
    parts = [p for p in (size_word, colour) if p]
    return " ".join(parts + [word(rng, SHAPE_WORDS, shape)])


def pretrain_object(rng: Rng, shape: str | None = None, colour: str | None = None) -> tuple[np.ndarray, str]:
    family = shape is not None or colour is not None
    colour_family = colour is not None
    shape = shape or _weighted(rng, SHAPES, EXTRA_SHAPES, 0.25)
    colour = colour or _weighted(rng, COLOUR_CLASSES, ("cyan", "black"), 0.15)
    r = rng.uniform(9, 26)
    cx, cy = rng.uniform(r + 1, CANVAS - r - 1, 2)
    angle = rng.normal(0, 12) if rng.random() < 0.6 else rng.uniform(0, 360)
    bg, bg_phrase = random_background(rng, avoid=(colour,), plain=0.6)
    style = rng.random()
    col = colour_of(rng, colour)
    if style < 0.15:  # outline drawing
        img = to_image(bg if rng.random() < 0.5 else np.full_like(bg, 245))
        coloured = rng.random() < 0.5 or colour_family
        shape_outline(
            img,
            rng,
            shape,
            cx,
            cy,
            r,
            angle,
            col if coloured else (20, 20, 20),
            int(rng.integers(2, 4)),
            wobble=rng.uniform(0, 1.2),
        )
        img = np.asarray(img, np.float64)
        name = word(rng, SHAPE_WORDS, shape)
        a = article(name)
        cap = pick(
            rng,
            [
                f"a sketch of {a} {name}",
                f"an outline of {a} {name}",
                f"a drawing of {a} {name}",
                f"a line drawing of {a} {name}",
                f"{a} {name} drawn with a pen",
                f"{a} {name}",
                f"a photo of {a} {name}",
                f"{a} {name} shape",
            ],
        )
        if coloured and (colour_family or rng.random() < 0.5):
            cap = f"{cap} in {colour}"
        return img, cap
    fill: np.ndarray | RGB = col
    tex_phrase = ""
    if style < 0.25:
        kind = pick(rng, TEXTURES)
        fill = texture_image(kind, rng, col, colour_of(rng, other_colour(rng, (colour,))))
        tex_phrase = word(rng, TEXTURE_WORDS, kind)
    img = paint(bg, shape_mask(shape, cx, cy, r, angle), fill)
    size_word = None
    if rng.random() < 0.35:
        size_word = (
            pick(rng, ["small", "tiny"]) if r < 14 else pick(rng, ["large", "big"]) if r > 20 else None
        )
    with_colour = rng.random() < 0.75
    phrase = _shape_phrase(rng, shape, colour if with_colour else None, size_word)
    if tex_phrase:
        phrase = f"{tex_phrase} {phrase}"
    extras = []
    if bg_phrase and rng.random() < 0.4:
        extras.append(bg_phrase)
    if rng.random() < 0.25:
        extras.append(POSITIONS[(min(int(cx / CANVAS * 3), 2), min(int(cy / CANVAS * 3), 2))])
    tail = (" " + " ".join(extras)) if extras else ""
    a = article(phrase)
    if not family and rng.random() < 0.1:  # colour-only caption
        cap = pick(
            rng, [f"something {colour}", f"a {colour} object", f"a {colour} thing", f"the colour {colour}"]
        )
        return img, cap
    cap = pick(
        rng,
        [
            f"{a} {phrase}{tail}",
            f"a photo of {a} {phrase}{tail}",
            f"{phrase}",
            f"an image of {a} {phrase}{tail}",
            f"{a} {phrase}{tail}, a type of shape",
            f"clip art of {a} {phrase}",
            f"there is {a} {phrase}{tail}",
            f"a picture showing {a} {phrase}{tail}",
            f"{a} {phrase} shape{tail}",
        ],
    )
    return img, cap


def pretrain_two_objects(rng: Rng) -> tuple[np.ndarray, str]:
    bg, _ = random_background(rng, plain=0.6)
    img, names = bg, []
    for k in range(2):
        shape = _weighted(rng, SHAPES, EXTRA_SHAPES, 0.25)
        colour = _weighted(rng, COLOUR_CLASSES)
        r = rng.uniform(8, 14)
        cx = rng.uniform(r + 1, CANVAS / 2 - 1) + k * CANVAS / 2
        cy = rng.uniform(r + 1, CANVAS - r - 1)
        img = paint(img, shape_mask(shape, cx, cy, r, rng.normal(0, 15)), colour_of(rng, colour))
        names.append(f"{colour} {word(rng, SHAPE_WORDS, shape)}")
    if rng.random() < 0.5:
        names.reverse()
    return img, f"{article(names[0])} {names[0]} and {article(names[1])} {names[1]}"


def pretrain_texture(rng: Rng, kind: str | None = None) -> tuple[np.ndarray, str]:
    kind = kind or _weighted(rng, TEXTURES, EXTRA_TEXTURES, 0.1)
    n1 = pick(rng, list(COLOURS))
    n2 = other_colour(rng, (n1,))
    img = texture_image(kind, rng, colour_of(rng, n1), colour_of(rng, n2))
    if rng.random() < 0.3:
        img = add_noise(img, rng, 8)
    t = word(rng, TEXTURE_WORDS, kind)
    cap = pick(
        rng,
        [
            f"a {t} pattern",
            f"{t} texture",
            f"a {n1} and {n2} {t} pattern",
            f"a texture of {t}",
            f"{t} fabric",
            f"a close-up of a {t} surface",
            f"{n1} and {n2} {t} wallpaper",
            f"a {t} background",
            f"a {t} texture in {n1} and {n2}",
        ],
    )
    return img, cap


def pretrain_digit(rng: Rng, digit: str | None = None) -> tuple[np.ndarray, str]:
    fg_name = pick(rng, list(COLOURS))
    bg_name = other_colour(rng, (fg_name,))
    handwritten = rng.random() < 0.35
    d = int(digit) if digit is not None else int(_weighted(rng, tuple(str(i) for i in range(10))))
    if handwritten:
        index = int(pick(rng, _pretrain_digit_indices()[d]))
        img = handwritten_digit(index, rng, colour_of(rng, fg_name), colour_of(rng, bg_name))
    else:
        img = digit_glyph(d, rng, colour_of(rng, fg_name), colour_of(rng, bg_name))
    w, n = DIGIT_NAMES[d], str(d)
    kind = "handwritten " if handwritten and rng.random() < 0.5 else ""
    cap = pick(
        rng,
        [
            f"the number {w}",
            f"the number {n}",
            f"a {kind}{n}",
            f"the digit {w}",
            f"a {kind}digit {n}",
            f"a {fg_name} {n} on a {bg_name} background",
            f"the numeral {w}",
            f"{w}",
            f"a photo of the number {w}",
            f"a {kind}{w}",
        ],
    )
    return img, cap


def pretrain_scene(rng: Rng, kind: str | None = None) -> tuple[np.ndarray, str]:
    kind = kind or _weighted(rng, SCENES)
    img = scene_image(kind, rng)
    w = word(rng, SCENE_WORDS, kind)
    if rng.random() < 0.2:  # an object in the scene
        shape, colour = pick(rng, SHAPES), pick(rng, COLOUR_CLASSES)
        r = rng.uniform(6, 11)
        cx, cy = rng.uniform(r, CANVAS - r, 2)
        img = paint(img, shape_mask(shape, cx, cy, r, 0), colour_of(rng, colour))
        return img, f"a {colour} {word(rng, SHAPE_WORDS, shape)} in the {w}"
    adj = pick(rng, ["", "", "beautiful ", "quiet ", "sunny ", "distant "])
    cap = pick(
        rng,
        [
            f"a photo of a {adj}{w}",
            f"a {adj}{w}",
            f"{w}",
            f"a landscape with a {w}",
            f"a view of the {w}",
            f"a {w}, a type of scene",
            f"a painting of a {adj}{w}",
            f"the {w}",
        ],
    )
    return img, cap


@lru_cache(maxsize=1)
def _pretrain_digit_indices() -> tuple[tuple[int, ...], ...]:
    targets = sklearn_digits()[1][:SKLEARN_PRETRAIN]
    return tuple(tuple(int(i) for i in np.flatnonzero(targets == d)) for d in range(10))
