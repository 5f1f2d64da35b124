"""Low-level drawing of the mini world: colours, shape masks and outlines, textures, gradients, photometric
shifts, and the conversion to an image. Everything draws from an explicit ``numpy.random.Generator``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from prograd_pl.mini.vocabulary import COLOURS, RGB, Rng, pick

CANVAS = 64  # rendered / stored image size (px)
MODEL_SIZE = 32  # input size of the prograd-mini model


def jitter_colour(rng: Rng, rgb: RGB, amount: float = 18.0) -> RGB:
    c = np.asarray(rgb, dtype=np.float64) + rng.normal(0.0, amount, 3)
    return tuple(int(v) for v in np.clip(c, 0, 255))


def colour_of(rng: Rng, name: str, amount: float = 18.0) -> RGB:
    return jitter_colour(rng, COLOURS[name], amount)


def other_colour(rng: Rng, avoid: Sequence[str], pool: Sequence[str] = tuple(COLOURS)) -> str:
    choices = [c for c in pool if c not in avoid]
    return pick(rng, choices)


def arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 24) -> list[tuple]:
    """``n`` points of the ellipse centred at (cx, cy) with radii (rx, ry), from angle a0 to a1 (degrees)."""
    t = np.radians(np.linspace(a0, a1, n))
    return list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))


def _regular(n: int, start: float = -90.0) -> list[tuple]:
    return arc(0.0, 0.0, 1.0, 1.0, start, start + 360.0, n + 1)[:-1]


def _crescent() -> list[tuple]:
    d, r2 = 0.5, 0.85  # unit circle minus a circle of radius r2 centred at (d, 0)
    xi = (1 - r2 * r2 + d * d) / (2 * d)
    yi = math.sqrt(max(1 - xi * xi, 0.0))
    phi0 = math.degrees(math.atan2(yi, xi))
    psi0 = math.degrees(math.atan2(yi, xi - d))
    outer = arc(0, 0, 1, 1, phi0, 360 - phi0, 28)
    inner = arc(d, 0, r2, r2, 360 - psi0, psi0, 20)
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
    "oval": [(arc(0, 0, 1.0, 0.58, 0, 360, 36), 255)],
    "ring": [(_regular(36), 255), (arc(0, 0, 0.55, 0.55, 0, 360, 30), 0)],
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
# Objects on backgrounds (shared by pretraining and downstream)
# --------------------------------------------------------------------------------------------------------------


def paint(bg: np.ndarray, mask: Image.Image, fill: np.ndarray | RGB) -> np.ndarray:
    m = np.asarray(mask, np.float64)[..., None] / 255.0
    fill_arr = fill if isinstance(fill, np.ndarray) else np.asarray(fill, np.float64)
    return bg * (1 - m) + fill_arr * m
