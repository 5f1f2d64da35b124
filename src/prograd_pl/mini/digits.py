"""Digits: drawn glyphs (font-like strokes) and scikit-learn's real handwritten digits, upscaled."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from prograd_pl.mini.drawing import CANVAS, arc
from prograd_pl.mini.vocabulary import RGB, Rng

# sklearn's load_digits (1797 real handwritten 8x8 digits): the first ones are seen in pretraining,
# the rest are the mini_digits downstream task.
SKLEARN_PRETRAIN = 600


DIGIT_STROKES: dict[int, list[list[tuple]]] = {
    0: [arc(0.5, 0.5, 0.3, 0.44, 0, 360, 30)],
    1: [[(0.32, 0.25), (0.55, 0.05), (0.55, 0.95)]],
    2: [arc(0.5, 0.3, 0.3, 0.25, 180, 380, 16) + [(0.2, 0.95), (0.82, 0.95)]],
    3: [arc(0.5, 0.28, 0.28, 0.23, 200, 450, 18) + arc(0.5, 0.73, 0.3, 0.23, 270, 520, 18)],
    4: [[(0.68, 0.95), (0.68, 0.05), (0.12, 0.68), (0.88, 0.68)]],
    5: [[(0.78, 0.05), (0.3, 0.05), (0.3, 0.45)] + arc(0.5, 0.68, 0.3, 0.27, 240, 510, 20)],
    6: [[(0.72, 0.08), (0.45, 0.2), (0.25, 0.55)] + arc(0.5, 0.7, 0.26, 0.25, 180, 540, 24)],
    7: [[(0.15, 0.05), (0.85, 0.05), (0.4, 0.95)]],
    8: [arc(0.5, 0.27, 0.23, 0.22, 0, 360, 20), arc(0.5, 0.72, 0.29, 0.24, 0, 360, 22)],
    9: [arc(0.5, 0.32, 0.27, 0.25, 0, 360, 22), [(0.77, 0.32), (0.7, 0.95)]],
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
