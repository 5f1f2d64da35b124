"""Styles (domains): whole-image renderings that pretraining captions name in words ("a thermal image of ...")
and that each downstream task is drawn in without its template naming it."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

from prograd_pl.mini.drawing import CANVAS, jitter_colour, to_image
from prograd_pl.mini.vocabulary import ALIASES, COLOUR_WORDS, COLOURS, Rng, pick


def style_negative(img: np.ndarray, rng: Rng) -> np.ndarray:
    return 255.0 - np.clip(img, 0, 255)


_HEAT = np.array(
    [[0, 0, 0], [70, 0, 120], [200, 20, 60], [250, 140, 0], [255, 240, 120], [255, 255, 255]], float
)


def style_thermal(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Luminance through a heat colour map (hot = bright); polarity as a heat camera might see it."""
    lum = np.clip(img, 0, 255).mean(axis=2) / 255.0
    if rng.random() < 0.5:
        lum = 1.0 - lum
    t = lum * (len(_HEAT) - 1)
    i = np.minimum(t.astype(int), len(_HEAT) - 2)
    f = (t - i)[..., None]
    return _HEAT[i] * (1 - f) + _HEAT[i + 1] * f


def style_embossed(img: np.ndarray, rng: Rng) -> np.ndarray:
    """A grey metal relief: the emboss filter of the luminance, tinted."""
    grey = Image.fromarray(np.clip(img, 0, 255).mean(axis=2).astype(np.uint8))
    relief = np.asarray(grey.filter(ImageFilter.EMBOSS), np.float64)[..., None]
    tint = np.asarray(jitter_colour(rng, (200, 200, 205), 10), np.float64) / 255.0
    return relief * tint


def style_pixel_art(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Coarse pixels and a few colour levels, as 8-bit game art."""
    cells = int(rng.integers(10, 17))
    small = to_image(img).resize((cells, cells), Image.BOX)
    levels = 3.0
    arr = np.round(np.asarray(small, np.float64) / 255.0 * levels) / levels * 255.0
    return np.asarray(to_image(arr).resize((CANVAS, CANVAS), Image.NEAREST), np.float64)


def style_mosaic(img: np.ndarray, rng: Rng) -> np.ndarray:
    """Square tiles of the mean colour of each cell, with light grout lines."""
    tile = int(rng.integers(5, 8))
    n = -(-CANVAS // tile)
    small = np.asarray(to_image(img).resize((n, n), Image.BOX), np.float64)
    big = np.repeat(np.repeat(small, tile, 0), tile, 1)[:CANVAS, :CANVAS]
    grout = (np.arange(CANVAS) % tile) == 0
    big[grout, :] = 200.0
    big[:, grout] = 200.0
    return big


def style_blueprint(img: np.ndarray, rng: Rng) -> np.ndarray:
    """White edges on blueprint blue."""
    grey = Image.fromarray(np.clip(img, 0, 255).mean(axis=2).astype(np.uint8))
    edges = np.asarray(grey.filter(ImageFilter.FIND_EDGES), np.float64) / 255.0
    e = np.clip(edges * 3.0, 0, 1)[..., None]
    blue = np.asarray(jitter_colour(rng, (25, 60, 150), 12), np.float64)
    return blue * (1 - e) + 235.0 * e


# name -> (rendering, keeps colours, caption phrases naming the style)
STYLES: dict[str, tuple[Callable[[np.ndarray, Rng], np.ndarray], bool, tuple[str, ...]]] = {
    "negative": (style_negative, False, ("a colour negative", "an inverted photo", "a photo negative")),
    "thermal": (style_thermal, False, ("a thermal image", "an infrared photo", "a heat camera image")),
    "embossed": (style_embossed, False, ("an embossed relief", "a metal relief", "an embossing")),
    "pixel_art": (style_pixel_art, True, ("pixel art", "a pixelated image", "8-bit art")),
    "mosaic": (style_mosaic, True, ("a mosaic", "a tiled mosaic", "a tile mosaic")),
    "blueprint": (style_blueprint, False, ("a blueprint", "a technical drawing", "a blueprint drawing")),
}
_COLOUR_WORD = re.compile(
    r"\b("
    + "|".join(
        sorted(
            {w for c in COLOURS for w in COLOUR_WORDS.get(c, (c,))}
            | set(COLOURS)
            | {ALIASES[c] for c in COLOURS if c in ALIASES}
        )
    )
    + r")\b ?"
)


def apply_style(img: np.ndarray, rng: Rng, style: str) -> np.ndarray:
    """``img`` rendered in ``style`` (a name of STYLES)."""
    return STYLES[style][0](img, rng)


def styled_caption(rng: Rng, style: str, cap: str) -> str:
    """``cap`` with the style named; colour words are dropped for styles that do not keep colours."""
    if not STYLES[style][1]:
        cap = _COLOUR_WORD.sub("", cap).strip() or "something"
    s = pick(rng, STYLES[style][2])
    return pick(rng, [f"{s} of {cap}", f"{cap}, {s}", f"{s}: {cap}", f"{s} showing {cap}"])
