"""The facts of the paper's protocol, each kept once: settings, dataset lists, targets, the training recipe.

The run (through the config's recipe resolvers), the sweep driver and the report all read them from here.
"""

from __future__ import annotations

SETTINGS: tuple[str, ...] = ("fewshot", "base2new", "dg", "xd")
"""fewshot: all classes; base2new: train on the first half of the classes, test on both halves;
dg: ImageNet -> its four variants; xd: ImageNet -> the other ten datasets."""

DATASETS: tuple[str, ...] = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
    "sun397", "dtd", "eurosat", "ucf101",
)  # fmt: skip
"""The eleven few-shot datasets in the order of the papers' tables."""

DG_TARGETS: tuple[str, ...] = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
XD_TARGETS: tuple[str, ...] = tuple(d for d in DATASETS if d != "imagenet")
SHOTS: tuple[int, ...] = (1, 2, 4, 8, 16)
SEEDS: tuple[int, ...] = (1, 2, 3)

LAMBDA_08_DATASETS: tuple[str, ...] = ("oxford_flowers", "dtd", "eurosat")
TABLE_ORDER: tuple[str, ...] = (*DATASETS, *DG_TARGETS)


def recipe_epochs(dataset: str, shots: int) -> int:
    """Training epochs of the ProGrad/CoOp recipe (spec §3.2): ImageNet 50; 1 shot 50; 2-4 shots 100; 8-16 shots
    200.  A method with a recipe of its own (CoCoOp's 10, zero-shot's 0) says so in its config (``method.epochs``)."""
    if dataset == "imagenet" or shots <= 1:
        return 50
    return 100 if shots <= 4 else 200


def recipe_lambda(dataset: str, shots: int) -> float:
    """ProGrad's lambda (spec §3.3): 0.8 for 8/16 shots on Flowers102, DTD and EuroSAT, else 1.0."""
    return 0.8 if dataset in LAMBDA_08_DATASETS and shots >= 8 else 1.0


def table_sort_key(name: str) -> tuple[int, str]:
    """The papers' dataset order, then anything else alphabetically."""
    return (TABLE_ORDER.index(name), name) if name in TABLE_ORDER else (len(TABLE_ORDER), name)
