"""Landscapes (the scene concepts) and the random backgrounds that objects are drawn on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from prograd_pl.mini.drawing import (
    CANVAS,
    SHAPE_POLYGONS,
    add_noise,
    colour_of,
    gradient,
    jitter_colour,
    other_colour,
    place,
    texture_image,
)
from prograd_pl.mini.vocabulary import (
    EXTRA_TEXTURES,
    RGB,
    SCENE_WORDS,
    SCENES,
    TEXTURE_WORDS,
    TEXTURES,
    Rng,
    pick,
    word,
)


def _j(rng: Rng, rgb: RGB, a: float = 14.0) -> RGB:
    return jitter_colour(rng, rgb, a)


def scene_image(kind: str, rng: Rng, size: int = CANVAS) -> np.ndarray:
    """A float HxWx3 array of a simple landscape of ``kind``."""
    s = size
    h = int(rng.uniform(0.3, 0.5) * s)  # horizon
    sky = gradient(_j(rng, (90, 150, 230)), _j(rng, (180, 215, 245)), 0, h, s)
    img = sky
    pil = None

    def to_pil(a):
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))

    if kind == "beach":
        h2 = int(h + rng.uniform(0.12, 0.25) * s)
        img[h:h2] = _j(rng, (30, 90, 190))
        img[h2:] = _j(rng, (225, 200, 140))
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        for _ in range(rng.integers(1, 4)):
            y = rng.uniform(h + 2, h2 - 1)
            x = rng.uniform(0, s * 0.6)
            d.line([(x, y), (x + rng.uniform(8, 20), y)], fill=(220, 235, 250), width=1)
        if rng.random() < 0.5:
            x, y = rng.uniform(8, s - 8), rng.uniform(h2 + 6, s - 6)
            d.polygon(
                [(x - 7, y - 3), (x, y - 9), (x + 7, y - 3)],
                fill=colour_of(rng, pick(rng, ["red", "yellow", "blue"])),
            )
            d.line([(x, y - 9), (x, y + 5)], fill=(80, 60, 40), width=1)
    elif kind == "ocean":
        img[h:] = gradient(_j(rng, (25, 80, 170)), _j(rng, (10, 40, 110)), h, s, s)[h:]
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        for _ in range(rng.integers(4, 10)):
            x, y = rng.uniform(0, s), rng.uniform(h + 3, s - 2)
            w = rng.uniform(4, 10)
            d.arc([x - w, y - 2, x + w, y + 2], 180, 360, fill=(230, 240, 250), width=1)
    elif kind == "desert":
        img = gradient(_j(rng, (150, 190, 235)), _j(rng, (235, 225, 200)), 0, h, s)
        y, x = np.mgrid[0:s, 0:s]
        for k, col in enumerate([(225, 175, 95), (205, 145, 70)]):
            base = h + k * rng.uniform(5, 12)
            edge = base + 4 * np.sin(2 * np.pi * x / rng.uniform(25, 60) + rng.uniform(0, 6))
            img[y >= edge] = _j(rng, col)
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        if rng.random() < 0.5:
            cx, cy = rng.uniform(5, s - 5), rng.uniform(h + 10, s - 4)
            d.rectangle([cx - 2, cy - 14, cx + 2, cy], fill=(40, 120, 50))
            d.rectangle([cx - 7, cy - 9, cx - 2, cy - 7], fill=(40, 120, 50))
        if rng.random() < 0.6:
            cx, cy = rng.uniform(8, s - 8), rng.uniform(4, h - 4)
            d.ellipse([cx - 5, cy - 5, cx + 5, cy + 5], fill=(255, 235, 150))
    elif kind == "forest":
        img[:] = _j(rng, (30, 70, 35))
        img[: int(h * 0.4)] = _j(rng, (150, 190, 225))
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        for _ in range(rng.integers(10, 18)):
            x, yb = rng.uniform(-4, s + 4), rng.uniform(h * 0.7, s + 6)
            th, tw = rng.uniform(14, 30), rng.uniform(6, 11)
            d.rectangle([x - 1, yb - 4, x + 1, yb + 3], fill=(90, 60, 30))
            d.polygon([(x, yb - th), (x + tw, yb - 3), (x - tw, yb - 3)], fill=_j(rng, (35, 125, 45), 25))
    elif kind == "meadow":
        img[h:] = gradient(_j(rng, (110, 185, 70)), _j(rng, (60, 140, 40)), h, s, s)[h:]
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        for _ in range(rng.integers(8, 20)):
            x, y = rng.uniform(0, s), rng.uniform(h + 3, s)
            d.ellipse(
                [x - 1, y - 1, x + 1, y + 1],
                fill=colour_of(rng, pick(rng, ["red", "yellow", "white", "pink"])),
            )
        for _ in range(rng.integers(5, 12)):
            x, y = rng.uniform(0, s), rng.uniform(h + 3, s)
            d.line([(x, y), (x + rng.uniform(-2, 2), y - 4)], fill=(40, 110, 30), width=1)
    elif kind == "mountain":
        img[h + 10 :] = _j(rng, (70, 120, 55))
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        for _ in range(rng.integers(1, 4)):
            px, top = rng.uniform(8, s - 8), rng.uniform(4, h)
            w = rng.uniform(18, 32)
            base = h + 14
            d.polygon([(px, top), (px + w, base), (px - w, base)], fill=_j(rng, (115, 110, 120)))
            f = 0.3
            d.polygon(
                [(px, top), (px + w * f, top + (base - top) * f), (px - w * f, top + (base - top) * f)],
                fill=(245, 245, 250),
            )
    elif kind == "city":
        img = gradient(_j(rng, (100, 150, 210)), _j(rng, (200, 210, 230)), 0, s, s)
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        x = rng.uniform(-6, 0)
        while x < s:
            w, top = rng.uniform(7, 14), rng.uniform(s * 0.2, s * 0.7)
            d.rectangle([x, top, x + w, s], fill=_j(rng, (75, 78, 90), 20))
            for wy in np.arange(top + 3, s - 2, 5):
                for wx in np.arange(x + 2, x + w - 2, 4):
                    if rng.random() < 0.6:
                        d.rectangle([wx, wy, wx + 1, wy + 1], fill=(240, 220, 120))
            x += w + rng.uniform(0, 3)
    elif kind == "night_sky":
        img = gradient(_j(rng, (8, 10, 35)), _j(rng, (25, 35, 80)), 0, s, s)
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        for _ in range(rng.integers(15, 40)):
            x, y = rng.uniform(0, s, 2)
            r = rng.choice([0, 0, 1])
            d.ellipse([x - r, y - r, x + r, y + r], fill=(250, 250, 230))
        if rng.random() < 0.5:
            cx, cy = rng.uniform(10, s - 10, 2)
            d.polygon(
                place(SHAPE_POLYGONS["crescent"][0][0], cx, cy, 6, rng.uniform(0, 360)), fill=(245, 240, 200)
            )
        if rng.random() < 0.4:
            d.rectangle([0, s - rng.uniform(4, 10), s, s], fill=(5, 5, 10))
    elif kind == "road":
        img[h:] = _j(rng, (90, 150, 60))
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        vx = rng.uniform(s * 0.35, s * 0.65)
        bw = rng.uniform(s * 0.35, s * 0.6)
        d.polygon([(vx - 1, h), (vx + 1, h), (s / 2 + bw, s), (s / 2 - bw, s)], fill=_j(rng, (95, 95, 100)))
        for k in range(4):
            t0, t1 = 0.15 + k * 0.22, 0.25 + k * 0.22
            p0 = (vx + (s / 2 - vx) * t0, h + (s - h) * t0)
            p1 = (vx + (s / 2 - vx) * t1, h + (s - h) * t1)
            d.line([p0, p1], fill=(245, 245, 245), width=1 + k // 2)
    elif kind == "sunset":
        img = gradient(_j(rng, (110, 50, 120)), _j(rng, (250, 140, 50)), 0, h + 6, s)
        pil = to_pil(img)
        d = ImageDraw.Draw(pil)
        cx, r = rng.uniform(16, s - 16), rng.uniform(6, 11)
        d.ellipse([cx - r, h - r, cx + r, h + r], fill=(255, 210, 90))
        ground = (30, 20, 35) if rng.random() < 0.5 else (90, 50, 80)
        d.rectangle([0, h, s, s], fill=_j(rng, ground))
        if ground[0] > 50:  # sea: reflection of the sun
            for k in range(3):
                y = h + 4 + 5 * k
                d.line([(cx - r + 2 * k, y), (cx + r - 2 * k, y)], fill=(250, 180, 80), width=1)
    else:
        raise ValueError(f"unknown scene {kind!r}")
    if pil is None:
        pil = to_pil(img)
    return np.asarray(pil, dtype=np.float64)


# --------------------------------------------------------------------------------------------------------------
# Backgrounds (shared by pretraining and downstream)
# --------------------------------------------------------------------------------------------------------------


def random_background(rng: Rng, avoid: Sequence[str] = (), plain: float = 0.4) -> tuple[np.ndarray, str]:
    """A background (plain with probability ``plain``, else textured, a scene or noise) and its caption phrase
    ("" when not worth saying)."""
    u = rng.random()
    if u < plain:
        name = other_colour(rng, avoid)
        return np.full((CANVAS, CANVAS, 3), colour_of(rng, name), np.float64), f"on a {name} background"
    u = (u - plain) / (1 - plain)
    if u < 0.5:
        kind = pick(rng, TEXTURES + EXTRA_TEXTURES)
        c1, c2 = (colour_of(rng, other_colour(rng, avoid)) for _ in range(2))
        return texture_image(kind, rng, c1, c2), f"on a {word(rng, TEXTURE_WORDS, kind)} background"
    if u < 0.75:
        kind = pick(rng, SCENES)
        return scene_image(kind, rng), f"in front of a {word(rng, SCENE_WORDS, kind)}"
    base = np.full((CANVAS, CANVAS, 3), rng.uniform(60, 200), np.float64)
    return add_noise(base, rng, 25), ""
