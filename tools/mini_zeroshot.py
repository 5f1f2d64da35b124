"""Zero-shot classification with a CLIP model on mini-world images (used by the mini tools and the tests)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN as CLIP_MEAN
from open_clip.constants import OPENAI_DATASET_STD as CLIP_STD
from PIL import Image

from prograd_pl.mini.drawing import MODEL_SIZE, to_image
from prograd_pl.mini.tasks import MiniTask, render_task_item


def to_model_input(images: Sequence[Image.Image] | np.ndarray, size: int = MODEL_SIZE) -> torch.Tensor:
    """CLIP test preprocessing: bicubic resize to ``size`` (images are square), to tensor, normalise.

    ``images`` are PIL images of any size or a uint8 array [N, size, size, 3] already at ``size``.
    """
    if not isinstance(images, np.ndarray):
        images = np.stack(
            [np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)) for im in images]
        )
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def class_text_features(model, tokenizer, classnames: Sequence[str], template: str) -> torch.Tensor:
    """L2-normalised text features of ``template`` filled with each class name ('_' -> ' ')."""
    texts = [template.format(c.replace("_", " ")) for c in classnames]
    feats = model.encode_text(tokenizer(texts))
    return feats / feats.norm(dim=-1, keepdim=True)


@torch.no_grad()
def zero_shot_predict(
    model, tokenizer, images: torch.Tensor, classnames: Sequence[str], template: str, batch_size: int = 256
) -> torch.Tensor:
    """Predicted labels of preprocessed ``images`` [N, 3, H, W]."""
    text = class_text_features(model, tokenizer, classnames, template)
    preds = []
    for i in range(0, len(images), batch_size):
        f = model.encode_image(images[i : i + batch_size])
        f = f / f.norm(dim=-1, keepdim=True)
        preds.append((f @ text.T).argmax(dim=-1))
    return torch.cat(preds)


def zero_shot_accuracy(
    model, tokenizer, images: torch.Tensor, labels: Sequence[int], classnames: Sequence[str], template: str
) -> float:
    """Top-1 accuracy (%) of zero-shot classification."""
    pred = zero_shot_predict(model, tokenizer, images, classnames, template)
    return 100.0 * float((pred == torch.as_tensor(list(labels))).float().mean())


def render_split(
    task: MiniTask, split: str = "test", limit: int | None = None
) -> tuple[torch.Tensor, list[int]]:
    """Render a split of ``task`` in memory (same pixels as the files of ``generate``) as model input."""
    n_train, n_val, n_test = task.per_class
    start, count = {"train": (0, n_train), "val": (n_train, n_val), "test": (n_train + n_val, n_test)}[split]
    if limit is not None:
        count = min(count, limit)
    images, labels = [], []
    for label in range(len(task.classnames)):
        for item in range(start, start + count):
            images.append(to_image(render_task_item(task, label, item)))
            labels.append(label)
    return to_model_input(images), labels
