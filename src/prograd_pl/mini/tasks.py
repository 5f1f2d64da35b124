"""The downstream classification tasks of the mini world (``TASKS``): one renderer per task and the pure function
``render_task_item(task, label, item)`` that gives every image of every split."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from prograd_pl.mini.digits import SKLEARN_PRETRAIN, handwritten_digit, sklearn_digits
from prograd_pl.mini.drawing import (
    CANVAS,
    add_noise,
    blur,
    colour_of,
    other_colour,
    paint,
    shape_mask,
    shape_outline,
    texture_image,
    texture_mask,
    to_image,
)
from prograd_pl.mini.scenes import random_background, scene_image
from prograd_pl.mini.styles import apply_style
from prograd_pl.mini.vocabulary import (
    COLOUR_CLASSES,
    COLOURS,
    DIGIT_NAMES,
    EXTRA_SHAPES,
    SCENES,
    SHAPES,
    TEXTURES,
    Rng,
    pick,
)


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
