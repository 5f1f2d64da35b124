"""The procedural mini world: drawn images with captions (pretraining) and labelled images (downstream tasks).

Everything is drawn with NumPy and Pillow from an explicit ``numpy.random.Generator``, so a sample depends only
on the seed it is given. Images are rendered at ``CANVAS`` px (the size stored on disk) and the model sees them
resized to ``MODEL_SIZE`` px. Pretraining renders concepts with many caption phrasings, under unnamed conditions
(clutter, colour casts, low contrast, blur, noise) and, for some pairs, in a named style; each downstream task
renders its concepts cleanly (other framings, rotations, held-out real handwriting) but in one style that its
hand-written template does not name, so that zero-shot transfer works, but only partly, and the frozen features
hold more than the template reaches, as with real CLIP. Since v5 the captions also name each downstream class by
the dataset's own word only at a long-tailed per-class rate (else by the concept's common alias), so the text side
knows some class names well and others barely, as real CLIP knows "HerbaceousVegetation" or an aircraft's model
number less well than "forest".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

CANVAS = 64  # rendered / stored image size (px)
MODEL_SIZE = 32  # input size of the prograd-mini model

Rng = np.random.Generator
RGB = tuple[int, int, int]

# --------------------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------------------
COLOURS: dict[str, RGB] = {
    "red": (215, 35, 35),
    "orange": (245, 135, 25),
    "yellow": (240, 215, 40),
    "green": (45, 165, 55),
    "cyan": (40, 200, 210),
    "blue": (35, 70, 215),
    "purple": (125, 45, 175),
    "pink": (245, 130, 190),
    "brown": (125, 75, 35),
    "white": (240, 240, 240),
    "gray": (128, 128, 128),
    "black": (20, 20, 20),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {"gray": ("gray", "grey"), "purple": ("purple", "violet")}

SHAPES = ("arrow", "circle", "crescent", "cross", "diamond", "heart", "hexagon", "square", "star", "triangle")
EXTRA_SHAPES = ("pentagon", "oval", "ring", "rectangle")  # seen in pretraining only
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "circle", "disc", "round shape"),
    "square": ("square", "square", "box"),
    "cross": ("cross", "cross", "plus sign"),
    "diamond": ("diamond", "diamond", "rhombus"),
    "crescent": ("crescent", "crescent", "crescent moon"),
}

TEXTURES = (
    "blotchy",
    "chequered",
    "concentric",
    "crosshatched",
    "dotted",
    "grid",
    "speckled",
    "striped",
    "wavy",
    "zigzagged",
)
EXTRA_TEXTURES = ("plain", "spiralled")
TEXTURE_WORDS: dict[str, tuple[str, ...]] = {
    "chequered": ("chequered", "checkered", "checkered", "checkerboard"),
    "dotted": ("dotted", "dotted", "polka dot", "spotted"),
    "striped": ("striped", "striped", "stripy"),
    "zigzagged": ("zigzagged", "zigzag", "zigzag"),
    "speckled": ("speckled", "speckled", "sprinkled"),
    "crosshatched": ("crosshatched", "crosshatched", "hatched"),
    "concentric": ("concentric", "concentric circles"),
    "blotchy": ("blotchy", "blotchy", "camouflage"),
    "plain": ("plain", "solid"),
}

SCENES = ("beach", "city", "desert", "forest", "meadow", "mountain", "night_sky", "ocean", "road", "sunset")
SCENE_WORDS: dict[str, tuple[str, ...]] = {
    "beach": ("beach", "beach", "seaside", "shore"),
    "city": ("city", "city", "skyline", "town"),
    "desert": ("desert", "desert", "sand dunes"),
    "forest": ("forest", "forest", "woods"),
    "meadow": ("meadow", "meadow", "field", "grassland"),
    "mountain": ("mountain", "mountain", "mountains", "peaks"),
    "night_sky": ("night sky", "night sky", "starry sky"),
    "ocean": ("ocean", "ocean", "sea", "open sea"),
    "road": ("road", "road", "highway", "street"),
    "sunset": ("sunset", "sunset", "dusk"),
}

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOUR_CLASSES = ("blue", "brown", "gray", "green", "orange", "pink", "purple", "red", "white", "yellow")

# The web's words for the downstream tasks' concepts.  Each task names its classes with the dataset's own word (its
# class name); the captions of pretraining use that word only at a per-class rate with a long tail (NAME_RATES, in a
# seeded order per task) and otherwise the concept's common alias below.  The image tower sees every concept as
# often as before, under one name or the other, but the text tower learns the rarely used dataset names poorly: the
# per-class headroom of real CLIP, whose downstream class names ("HerbaceousVegetation", "banded", an aircraft's
# model number) are often not how the web captions those images.
ALIASES: dict[str, str] = {
    # shapes
    "arrow": "pointer",
    "circle": "disc",
    "crescent": "sickle",
    "cross": "plus sign",
    "diamond": "rhombus",
    "heart": "valentine",
    "hexagon": "honeycomb",
    "square": "box",
    "star": "pentagram",
    "triangle": "trigon",
    # textures
    "blotchy": "mottled",
    "chequered": "checkerboard",
    "concentric": "bullseye",
    "crosshatched": "meshed",
    "dotted": "polka",
    "grid": "lattice",
    "speckled": "sprinkled",
    "striped": "banded",
    "wavy": "rippled",
    "zigzagged": "chevron",
    # scenes (captions write night_sky as "night sky")
    "beach": "seaside",
    "city": "skyline",
    "desert": "dunes",
    "forest": "woods",
    "meadow": "grassland",
    "mountain": "peaks",
    "night sky": "starfield",
    "ocean": "sea",
    "road": "highway",
    "sunset": "dusk",
    # digits: the numeral
    **{w: str(i) for i, w in enumerate(DIGIT_NAMES)},
    # colours
    "blue": "azure",
    "brown": "chocolate",
    "gray": "grey",
    "green": "emerald",
    "orange": "amber",
    "pink": "rose",
    "purple": "violet",
    "red": "crimson",
    "white": "snowy",
    "yellow": "golden",
}
NAME_RATES = (1.0, 0.6, 0.3, 0.15, 0.08, 0.04, 0.02, 0.01, 0.005, 0.0)  # by rank within a task's classes


# sklearn's load_digits (1797 real handwritten 8x8 digits): the first ones are seen in pretraining,
# the rest are the mini_digits downstream task.
SKLEARN_PRETRAIN = 600


def word(rng: Rng, table: dict[str, tuple[str, ...]], key: str) -> str:
    """A surface form of ``key`` (its synonyms in ``table``, else the key with spaces)."""
    forms = table.get(key)
    return forms[rng.integers(len(forms))] if forms else key.replace("_", " ")


def pick(rng: Rng, options: Sequence):
    return options[rng.integers(len(options))]


def article(noun_phrase: str) -> str:
    return "an" if noun_phrase[:1] in "aeiou" else "a"


# --------------------------------------------------------------------------------------------------------------
# Low-level drawing
# --------------------------------------------------------------------------------------------------------------
def jitter_colour(rng: Rng, rgb: RGB, amount: float = 18.0) -> RGB:
    c = np.asarray(rgb, dtype=np.float64) + rng.normal(0.0, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def colour_of(rng: Rng, name: str, amount: float = 18.0) -> RGB:
    return jitter_colour(rng, COLOURS[name], amount)


def other_colour(rng: Rng, avoid: Sequence[str], pool: Sequence[str] = tuple(COLOURS)) -> str:
    choices = [c for c in pool if c not in avoid]
    return pick(rng, choices)


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 24) -> list[tuple]:
    t = np.radians(np.linspace(a0, a1, n))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


def _regular(n: int, start: float = -90.0) -> list[tuple]:
    return _arc(0.0, 0.0, 1.0, 1.0, start, start + 360.0, n + 1)[:-1]


def _crescent() -> list[tuple]:
    d, r2 = 0.5, 0.85  # unit circle minus a circle of radius r2 centred at (d, 0)
    xi = (1 - r2 * r2 + d * d) / (2 * d)
    yi = math.sqrt(max(1 - xi * xi, 0.0))
    phi0 = math.degrees(math.atan2(yi, xi))
    psi0 = math.degrees(math.atan2(yi, xi - d))
    outer = _arc(0, 0, 1, 1, phi0, 360 - phi0, 28)
    inner = _arc(d, 0, r2, r2, 360 - psi0, psi0, 20)
    return outer + inner


def _heart() -> list[tuple]:
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return list(zip(x / 17.0, (y + 2.5) / 17.0))


def _star(points: int = 5, inner: float = 0.45) -> list[tuple]:
    out = []
    for i in range(2 * points):
        r = 1.0 if i % 2 == 0 else inner
        a = math.radians(-90 + 180.0 * i / points)
        out.append((r * math.cos(a), r * math.sin(a)))
    return out


_W = 0.34
# Each shape: list of (polygon in unit coordinates, mask value); later polygons paint over earlier ones.
SHAPE_POLYGONS: dict[str, list[tuple[list[tuple], int]]] = {
    "circle": [(_regular(36), 255)],
    "square": [([(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)], 255)],
    "triangle": [([(0.0, -1.0), (0.95, 0.75), (-0.95, 0.75)], 255)],
    "star": [(_star(), 255)],
    "cross": [
        (
            [
                (-_W, -1),
                (_W, -1),
                (_W, -_W),
                (1, -_W),
                (1, _W),
                (_W, _W),
                (_W, 1),
                (-_W, 1),
                (-_W, _W),
                (-1, _W),
                (-1, -_W),
                (-_W, -_W),
            ],
            255,
        )
    ],
    "heart": [(_heart(), 255)],
    "diamond": [([(0.0, -1.0), (0.62, 0.0), (0.0, 1.0), (-0.62, 0.0)], 255)],
    "hexagon": [(_regular(6, 0.0), 255)],
    "crescent": [(_crescent(), 255)],
    "arrow": [
        ([(-1, -0.24), (0.15, -0.24), (0.15, -0.62), (1, 0), (0.15, 0.62), (0.15, 0.24), (-1, 0.24)], 255)
    ],
    "pentagon": [(_regular(5), 255)],
    "oval": [(_arc(0, 0, 1.0, 0.58, 0, 360, 36), 255)],
    "ring": [(_regular(36), 255), (_arc(0, 0, 0.55, 0.55, 0, 360, 30), 0)],
    "rectangle": [([(-1, -0.5), (1, -0.5), (1, 0.5), (-1, 0.5)], 255)],
}


def place(poly: Sequence[tuple], cx: float, cy: float, r: float, angle: float) -> list[tuple]:
    ca, sa = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + r * (x * ca - y * sa), cy + r * (x * sa + y * ca)) for x, y in poly]


def shape_mask(shape: str, cx: float, cy: float, r: float, angle: float, size: int = CANVAS) -> Image.Image:
    """An 'L' mask (255 inside) of ``shape`` centred at (cx, cy) with radius r, rotated by angle degrees."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for poly, value in SHAPE_POLYGONS[shape]:
        draw.polygon(place(poly, cx, cy, r, angle), fill=value)
    return mask


def shape_outline(
    img: Image.Image,
    rng: Rng,
    shape: str,
    cx: float,
    cy: float,
    r: float,
    angle: float,
    colour: RGB,
    width: int,
    wobble: float = 0.0,
) -> None:
    """Draw the outline of ``shape`` (optionally wobbly, like a hand sketch) onto ``img``."""
    draw = ImageDraw.Draw(img)
    for poly, _ in SHAPE_POLYGONS[shape]:
        pts = place(poly, cx, cy, r, angle)
        closed = pts + pts[:1]
        dense = []
        for (x0, y0), (x1, y1) in zip(closed[:-1], closed[1:]):
            n = max(1, int(math.hypot(x1 - x0, y1 - y0) / 4))
            for k in range(n):
                t = k / n
                dense.append((x0 + t * (x1 - x0), y0 + t * (y1 - y0)))
        if wobble > 0:
            noise = rng.normal(0, wobble, (len(dense), 2))
            noise = (noise + np.roll(noise, 1, 0) + np.roll(noise, -1, 0)) / 2.0  # smooth the wobble
            dense = [(x + dx, y + dy) for (x, y), (dx, dy) in zip(dense, noise)]
        draw.line(dense + dense[:1], fill=colour, width=width, joint="curve")


def _coords(size: int, angle: float) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    ca, sa = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return x * ca + y * sa, -x * sa + y * ca


def _smooth_noise(rng: Rng, size: int, cells: int) -> np.ndarray:
    low = rng.random((cells, cells))
    img = Image.fromarray((low * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.float64) / 255.0


def texture_mask(
    kind: str, rng: Rng, size: int = CANVAS, period: float | None = None, angle: float | None = None
) -> np.ndarray:
    """A float mask in [0, 1] (1 = second colour) of a texture ``kind``."""
    p = period if period is not None else rng.uniform(7, 13)
    a = angle if angle is not None else rng.uniform(0, 180)
    ph = rng.uniform(0, p)
    u, v = _coords(size, a)
    if kind == "striped":
        m = np.sin(2 * np.pi * (u + ph) / p) > 0
    elif kind == "chequered":
        m = (np.floor((u + ph) / p) + np.floor((v + ph) / p)) % 2 == 1
    elif kind == "dotted":
        du, dv = (u + ph) % p - p / 2, (v + ph) % p - p / 2
        m = du * du + dv * dv < (0.3 * p) ** 2
    elif kind == "grid":
        u, v = _coords(size, rng.uniform(-8, 8))
        lw = 2.0
        m = ((u + ph) % p < lw) | ((v + ph) % p < lw)
    elif kind == "crosshatched":
        q = p * 0.6
        u1, _ = _coords(size, a)
        u2, _ = _coords(size, a + 62)
        m = ((u1 + ph) % q < 1.5) | ((u2 + ph) % q < 1.5)
    elif kind == "zigzagged":
        q = p * 1.3
        tri = np.abs(((v / q) % 1.0) - 0.5) * 2 * (0.45 * p)
        m = np.sin(2 * np.pi * (u + tri + ph) / p) > 0
    elif kind == "wavy":
        q = p * 1.6
        m = np.sin(2 * np.pi * (u + 0.4 * p * np.sin(2 * np.pi * v / q) + ph) / p) > 0
    elif kind == "speckled":
        m = rng.random((size, size)) < rng.uniform(0.12, 0.25)
    elif kind == "concentric":
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        y, x = np.mgrid[0:size, 0:size].astype(np.float64)
        m = np.sin(2 * np.pi * np.hypot(x - cx, y - cy) / p) > 0
    elif kind == "spiralled":
        cx, cy = rng.uniform(0.3, 0.7, 2) * size
        y, x = np.mgrid[0:size, 0:size].astype(np.float64)
        m = np.sin(2 * np.pi * np.hypot(x - cx, y - cy) / p + 2 * np.arctan2(y - cy, x - cx)) > 0
    elif kind == "blotchy":
        n = _smooth_noise(rng, size, 5)
        m = n > np.median(n)
    elif kind == "plain":
        m = np.zeros((size, size), dtype=bool)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return m.astype(np.float64)


def texture_image(kind: str, rng: Rng, c1: RGB, c2: RGB, size: int = CANVAS, **kw) -> np.ndarray:
    m = texture_mask(kind, rng, size, **kw)[..., None]
    return np.asarray(c1, np.float64) * (1 - m) + np.asarray(c2, np.float64) * m


def gradient(top: RGB, bottom: RGB, h0: int, h1: int, size: int = CANVAS) -> np.ndarray:
    t = np.clip((np.arange(size) - h0) / max(h1 - h0, 1), 0, 1)[:, None, None]
    row = np.asarray(top, np.float64) * (1 - t) + np.asarray(bottom, np.float64) * t
    return np.broadcast_to(row, (size, size, 3)).copy()


# --------------------------------------------------------------------------------------------------------------
# Scenes
# --------------------------------------------------------------------------------------------------------------
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
# Digits
# --------------------------------------------------------------------------------------------------------------
DIGIT_STROKES: dict[int, list[list[tuple]]] = {
    0: [_arc(0.5, 0.5, 0.3, 0.44, 0, 360, 30)],
    1: [[(0.32, 0.25), (0.55, 0.05), (0.55, 0.95)]],
    2: [_arc(0.5, 0.3, 0.3, 0.25, 180, 380, 16) + [(0.2, 0.95), (0.82, 0.95)]],
    3: [_arc(0.5, 0.28, 0.28, 0.23, 200, 450, 18) + _arc(0.5, 0.73, 0.3, 0.23, 270, 520, 18)],
    4: [[(0.68, 0.95), (0.68, 0.05), (0.12, 0.68), (0.88, 0.68)]],
    5: [[(0.78, 0.05), (0.3, 0.05), (0.3, 0.45)] + _arc(0.5, 0.68, 0.3, 0.27, 240, 510, 20)],
    6: [[(0.72, 0.08), (0.45, 0.2), (0.25, 0.55)] + _arc(0.5, 0.7, 0.26, 0.25, 180, 540, 24)],
    7: [[(0.15, 0.05), (0.85, 0.05), (0.4, 0.95)]],
    8: [_arc(0.5, 0.27, 0.23, 0.22, 0, 360, 20), _arc(0.5, 0.72, 0.29, 0.24, 0, 360, 22)],
    9: [_arc(0.5, 0.32, 0.27, 0.25, 0, 360, 22), [(0.77, 0.32), (0.7, 0.95)]],
}


def digit_glyph(d: int, rng: Rng, fg: RGB, bg: np.ndarray | RGB, size: int = CANVAS) -> np.ndarray:
    """A drawn (font-like, jittered) digit ``d``."""
    img = Image.fromarray(_as_canvas(bg, size))
    draw = ImageDraw.Draw(img)
    h = rng.uniform(0.5, 0.85) * size
    w = h * rng.uniform(0.5, 0.8)
    x0, y0 = rng.uniform(2, size - w - 2), rng.uniform(2, size - h - 2)
    slant = rng.uniform(-0.25, 0.25)
    width = int(rng.integers(3, 7))
    for stroke in DIGIT_STROKES[d]:
        pts = [
            (x0 + w * (x + slant * (1 - y)) + rng.normal(0, 0.6), y0 + h * y + rng.normal(0, 0.6))
            for x, y in stroke
        ]
        draw.line(pts, fill=fg, width=width, joint="curve")
    return np.asarray(img, dtype=np.float64)


@lru_cache(maxsize=1)
def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 real 8x8 handwritten digits of scikit-learn (images in [0, 1], targets)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float64), data.target.astype(np.int64)


def handwritten_digit(index: int, rng: Rng, fg: RGB, bg: np.ndarray | RGB, size: int = CANVAS) -> np.ndarray:
    """Real handwritten digit ``index`` of scikit-learn, upscaled and painted in ``fg`` on ``bg``."""
    images, _ = sklearn_digits()
    s = int(rng.integers(int(size * 0.55), int(size * 0.85)))
    glyph = Image.fromarray((images[index] * 255).astype(np.uint8)).resize((s, s), Image.BICUBIC)
    mask = np.zeros((size, size))
    x0, y0 = rng.integers(0, size - s + 1, 2)
    mask[y0 : y0 + s, x0 : x0 + s] = np.asarray(glyph, np.float64) / 255.0
    mask = mask[..., None]
    return _as_canvas(bg, size).astype(np.float64) * (1 - mask) + np.asarray(fg, np.float64) * mask


def _as_canvas(bg: np.ndarray | RGB, size: int = CANVAS) -> np.ndarray:
    if isinstance(bg, np.ndarray):
        return np.clip(bg, 0, 255).astype(np.uint8)
    return np.full((size, size, 3), bg, dtype=np.uint8)


# --------------------------------------------------------------------------------------------------------------
# Photometric shifts
# --------------------------------------------------------------------------------------------------------------
def add_noise(img: np.ndarray, rng: Rng, sigma: float) -> np.ndarray:
    return img + rng.normal(0, sigma, img.shape)


def colour_cast(img: np.ndarray, rng: Rng, strength: float) -> np.ndarray:
    gains = np.exp(rng.normal(0, strength, 3)) * np.exp(rng.normal(0, strength))
    return img * gains


def low_contrast(img: np.ndarray, rng: Rng, lo: float) -> np.ndarray:
    k = rng.uniform(lo, 1.0)
    mean = img.mean(axis=(0, 1), keepdims=True)
    return mean + (img - mean) * k


def blur(img: np.ndarray, radius: float) -> np.ndarray:
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(pil, dtype=np.float64)


def clutter(img: np.ndarray, rng: Rng, n: int) -> np.ndarray:
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(pil)
    for _ in range(n):
        x, y = rng.uniform(0, CANVAS, 2)
        a, ln = rng.uniform(0, 2 * np.pi), rng.uniform(6, 18)
        d.line(
            [(x, y), (x + ln * np.cos(a), y + ln * np.sin(a))],
            fill=colour_of(rng, pick(rng, list(COLOURS))),
            width=int(rng.integers(1, 3)),
        )
    return np.asarray(pil, dtype=np.float64)


def to_image(img: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8))


# --------------------------------------------------------------------------------------------------------------
# Styles (domains): whole-image renderings that captions name in words ("a thermal image of ...")
# --------------------------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------------------------
# Objects on backgrounds (shared by pretraining and downstream)
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


def paint(bg: np.ndarray, mask: Image.Image, fill: np.ndarray | RGB) -> np.ndarray:
    m = np.asarray(mask, np.float64)[..., None] / 255.0
    fill_arr = fill if isinstance(fill, np.ndarray) else np.asarray(fill, np.float64)
    return bg * (1 - m) + fill_arr * m


# --------------------------------------------------------------------------------------------------------------
# Pretraining: image-caption pairs
# --------------------------------------------------------------------------------------------------------------
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


@lru_cache(maxsize=1)
def _pretrain_digit_indices() -> tuple[tuple[int, ...], ...]:
    targets = sklearn_digits()[1][:SKLEARN_PRETRAIN]
    return tuple(tuple(int(i) for i in np.flatnonzero(targets == d)) for d in range(10))


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


# --------------------------------------------------------------------------------------------------------------
# Downstream tasks
# --------------------------------------------------------------------------------------------------------------
def render_shape_item(c: int, rng: Rng) -> np.ndarray:
    shape = SHAPES[c]
    colour = pick(rng, list(COLOURS))
    r = rng.uniform(12, 24)
    cx, cy = rng.uniform(r, CANVAS - r, 2)
    bg, _ = random_background(rng, avoid=(colour,), plain=0.5)
    angle = rng.normal(0, 20) if rng.random() < 0.6 else rng.uniform(0, 360)
    return paint(bg, shape_mask(shape, cx, cy, r, angle), colour_of(rng, colour, 30))


def render_shape_sketch_item(c: int, rng: Rng) -> np.ndarray:
    shape = SHAPES[c]
    paper = np.full((CANVAS, CANVAS, 3), rng.uniform(225, 250), np.float64)
    paper = add_noise(paper, rng, 6)
    r = rng.uniform(13, 25)
    cx, cy = rng.uniform(r + 2, CANVAS - r - 2, 2)
    angle = rng.uniform(0, 360)
    img = to_image(paper)
    ink = tuple(int(v) for v in rng.uniform(10, 80, 3))
    shape_outline(
        img, rng, shape, cx, cy, r, angle, ink, int(rng.integers(2, 4)), wobble=rng.uniform(0.5, 2.0)
    )
    if rng.random() < 0.5:  # a second, sloppier pass as sketchers do
        shape_outline(
            img,
            rng,
            shape,
            cx + rng.normal(0, 1),
            cy + rng.normal(0, 1),
            r * rng.uniform(0.95, 1.05),
            angle + rng.normal(0, 3),
            ink,
            2,
            wobble=rng.uniform(1.0, 2.5),
        )
    arr = np.asarray(img, np.float64)
    if rng.random() < 0.5:  # hatching inside
        hatch = texture_mask("striped", rng, period=rng.uniform(4, 7))
        inside = np.asarray(shape_mask(shape, cx, cy, r * 0.9, angle), np.float64) / 255.0
        m = (hatch * inside * rng.uniform(0.2, 0.5))[..., None]
        arr = arr * (1 - m) + np.asarray(ink, np.float64) * m
    return blur(arr, rng.uniform(0.0, 0.7))


def render_texture_item(c: int, rng: Rng) -> np.ndarray:
    kind = TEXTURES[c]
    n1 = pick(rng, list(COLOURS))
    n2 = other_colour(rng, (n1,))
    return texture_image(kind, rng, colour_of(rng, n1, 30), colour_of(rng, n2, 30), period=rng.uniform(5, 16))


def render_digit_item(index: int, rng: Rng) -> np.ndarray:
    """Held-out real handwriting, dark ink on light paper."""
    paper = np.full((CANVAS, CANVAS, 3), rng.uniform(190, 250), np.float64)
    ink = tuple(int(v) for v in rng.uniform(0, 90, 3))
    return handwritten_digit(index, rng, ink, paper)


def render_scene_item(c: int, rng: Rng) -> np.ndarray:
    img = scene_image(SCENES[c], rng)
    crop = rng.uniform(0.55, 1.0) * CANVAS  # a different framing: zoom into part of the view
    x0, y0 = rng.uniform(0, CANVAS - crop, 2)
    img = np.asarray(
        to_image(img).resize((CANVAS, CANVAS), Image.BICUBIC, box=(x0, y0, x0 + crop, y0 + crop)), np.float64
    )
    if rng.random() < 0.6:  # haze
        k = rng.uniform(0.2, 0.6)
        img = img * (1 - k) + rng.uniform(150, 220) * k
    return img


def render_colour_item(c: int, rng: Rng) -> np.ndarray:
    colour = COLOUR_CLASSES[c]
    shape = pick(rng, SHAPES + EXTRA_SHAPES)
    r = rng.uniform(14, 26)
    cx, cy = rng.uniform(r, CANVAS - r, 2)
    u = rng.random()
    if u < 0.5:
        bg = np.full((CANVAS, CANVAS, 3), rng.uniform(60, 200), np.float64)
    else:
        bg, _ = random_background(rng, avoid=(colour,))
    col = np.asarray(colour_of(rng, colour, 25), np.float64)
    y = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.25), CANVAS)[:, None, None]
    return paint(bg, shape_mask(shape, cx, cy, r, rng.uniform(0, 360)), np.clip(col * y, 0, 255))


RENDITION_STYLES = ("none", "negative", "thermal", "pixel_art", "mosaic", "blueprint")


def render_texture_rendition_item(c: int, rng: Rng) -> np.ndarray:
    """A mini_textures class in one of the other renditions the pretraining names (or none), drawn per image: the
    textures' domain-generalisation target, as ImageNet-R's renditions are for ImageNet."""
    img = render_texture_item(c, rng)
    style = pick(rng, RENDITION_STYLES)
    return img if style == "none" else apply_style(img, rng, style)


@dataclass(frozen=True)
class MiniTask:
    """A downstream classification task of the mini world."""

    name: str  # registry name, e.g. "mini_shapes"
    folder: str  # dataset folder under data_root
    classnames: tuple[str, ...]  # final names == image sub-folders; index == label
    template: str  # ProGrad (teacher / ctx init) template
    coop_template: str  # CoOp zero-shot template
    per_class: tuple[int, int, int]  # train, val, test images per class
    render: Callable[[int, Rng], np.ndarray]
    test_only: bool = False
    seed: int = 0
    style: str | None = None  # the task's domain (a name of STYLES); its template does not name it

    @property
    def sizes(self) -> tuple[int, int, int]:
        return tuple(n * len(self.classnames) for n in self.per_class)  # type: ignore[return-value]


def _digit_items() -> list[list[int]]:
    """sklearn indices of the held-out handwritten digits, per class."""
    _, targets = sklearn_digits()
    out: list[list[int]] = [[] for _ in range(10)]
    for i in range(SKLEARN_PRETRAIN, len(targets)):
        out[int(targets[i])].append(i)
    return out


def render_task_item(task: MiniTask, label: int, item: int) -> np.ndarray:
    """Image ``item`` of class ``label`` of ``task`` (a pure function of its arguments)."""
    rng = np.random.default_rng([task.seed, label, item])
    if task.name == "mini_digits":
        img = render_digit_item(_digit_items()[label][item], rng)
    else:
        img = task.render(label, rng)
    if task.style is not None:
        img = apply_style(img, rng, task.style)
    return img


TASKS: dict[str, MiniTask] = {
    t.name: t
    for t in [
        MiniTask(
            "mini_shapes",
            "mini_shapes",
            SHAPES,
            "a photo of a {}.",
            "a photo of a {}.",
            (32, 8, 40),
            render_shape_item,
            seed=101,
            style="blueprint",
        ),
        MiniTask(
            "mini_textures",
            "mini_textures",
            TEXTURES,
            "a texture of {}.",
            "{} texture.",
            (32, 8, 40),
            render_texture_item,
            seed=102,
            style="embossed",
        ),
        MiniTask(
            "mini_digits",
            "mini_digits",
            DIGIT_NAMES,
            "a photo of the number {}.",
            "a photo of the number {}.",
            (32, 8, 70),
            render_digit_item,
            seed=103,
            style="thermal",
        ),
        MiniTask(
            "mini_scenes",
            "mini_scenes",
            SCENES,
            "a type of scene, a photo of a {}.",
            "a photo of a {}, a type of scene.",
            (32, 8, 40),
            render_scene_item,
            seed=104,
            style="mosaic",
        ),
        MiniTask(
            "mini_colors",
            "mini_colors",
            COLOUR_CLASSES,
            "a photo of a {} object.",
            "a photo of a {} object.",
            (32, 8, 40),
            render_colour_item,
            seed=105,
            style="mosaic",
        ),
        MiniTask(
            "mini_shapes_sketch",
            "mini_shapes_sketch",
            SHAPES,
            "a photo of a {}.",
            "a photo of a {}.",
            (0, 0, 40),
            render_shape_sketch_item,
            test_only=True,
            seed=106,
        ),
        MiniTask(
            "mini_textures_renditions",
            "mini_textures_renditions",
            TEXTURES,
            "a texture of {}.",
            "{} texture.",
            (0, 0, 40),
            render_texture_rendition_item,
            test_only=True,
            seed=107,
        ),
    ]
}
DEFAULT_TASK = "mini_textures"
