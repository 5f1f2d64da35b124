"""The mini world's words: its concepts (colours, shapes, textures, scenes, digits), their caption synonyms and the
web's aliases for the downstream class names, and the small helpers that draw words from a seeded generator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Rng = np.random.Generator
RGB = tuple[int, int, int]

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


def word(rng: Rng, table: dict[str, tuple[str, ...]], key: str) -> str:
    """A surface form of ``key`` (its synonyms in ``table``, else the key with spaces)."""
    forms = table.get(key)
    return forms[rng.integers(len(forms))] if forms else key.replace("_", " ")


def pick(rng: Rng, options: Sequence):
    return options[rng.integers(len(options))]


def article(noun_phrase: str) -> str:
    return "an" if noun_phrase[:1] in "aeiou" else "a"
