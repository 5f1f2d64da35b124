"""Linear probe (CoOp's ``lpclip`` baseline): logistic regression on frozen, L2-normalised CLIP image features.

The inverse regularisation strength ``C`` is chosen on the val split: a coarse grid over powers of ten, then a
local search in log space around the best grid value; the classifier with the chosen ``C`` is trained on the
train split only and evaluated on the test split.  All three splits are encoded with the deterministic test
transform, so their features can be cached (:class:`prograd_pl.models.feature_cache.FeatureCache`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics.functional.classification as tmf
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from prograd_pl.models.backbone import Backbone

COARSE_GRID = tuple(10.0**k for k in range(-6, 7, 2))


class LinearProbeError(ValueError):
    """A linear probe that cannot be fitted as asked."""


@dataclass
class ProbeSearch:
    """Outcome of the regularisation search."""

    C: float
    val_acc: float
    tried: list[tuple[float, float]] = field(default_factory=list)  # (C, val acc %) in the order evaluated


def _numpy(x: torch.Tensor, normalise: bool) -> np.ndarray:
    x = x.detach().float().cpu()
    return (F.normalize(x, dim=-1) if normalise else x).numpy().astype(np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, C: float, max_iter: int = 1000) -> LogisticRegression:
    """Multinomial logistic regression (L2 penalty ``1/C``, lbfgs), deterministic."""
    clf = LogisticRegression(C=C, max_iter=max_iter, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny C on few shots: converged enough to rank
        clf.fit(x, y)
    return clf


def _accuracy(clf: LogisticRegression, x: np.ndarray, y: np.ndarray) -> float:
    return float((clf.predict(x) == y).mean() * 100.0)


def search_regularisation(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    grid: Iterable[float] = COARSE_GRID,
    refine_steps: int = 6,
    max_iter: int = 1000,
    normalise: bool = True,
) -> ProbeSearch:
    """Choose ``C`` by val accuracy: best of ``grid``, then ``refine_steps`` rounds of local search in log space.

    Each round tries the geometric midpoints between the current best and its two neighbours; a strictly better
    one becomes the best, otherwise both neighbours move halfway in.  Ties keep the earlier (grid order) value.
    """
    if len(val_y) == 0:
        raise LinearProbeError(
            "the linear probe chooses its regularisation on the val split, which is empty."
        )
    xt, yt = _numpy(train_x, normalise), train_y.cpu().numpy()
    xv, yv = _numpy(val_x, normalise), val_y.cpu().numpy()
    if len(np.unique(yt)) < 2:
        raise LinearProbeError("the linear probe needs training images of at least two classes.")
    tried: list[tuple[float, float]] = []

    def score(c: float) -> float:
        acc = _accuracy(fit_logistic(xt, yt, c, max_iter), xv, yv)
        tried.append((c, acc))
        return acc

    cs = sorted(float(c) for c in grid)
    accs = [score(c) for c in cs]
    i = int(np.argmax(accs))
    best, best_acc = cs[i], accs[i]
    # neighbours in log space (one grid step beyond the ends)
    step_lo = math.log(cs[1] / cs[0]) if len(cs) > 1 else math.log(100.0)
    lo = cs[i - 1] if i > 0 else best / math.exp(step_lo)
    hi = cs[i + 1] if i + 1 < len(cs) else best * math.exp(step_lo)
    for _ in range(refine_steps):
        left, right = math.sqrt(lo * best), math.sqrt(best * hi)
        acc_l, acc_r = score(left), score(right)
        if acc_l > best_acc and acc_l >= acc_r:
            hi, best, best_acc = best, left, acc_l
        elif acc_r > best_acc:
            lo, best, best_acc = best, right, acc_r
        else:
            lo, hi = left, right
    return ProbeSearch(C=best, val_acc=best_acc, tried=tried)


def linear_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    n_classes: int,
    **search: Any,
) -> dict[str, Any]:
    """Fit the probe (``C`` searched on ``val``, fitted on ``train``) and evaluate it on ``test``.

    Each split is ``(features [N, D], labels [N])``.  Returns the metrics of a run (``acc``, ``macro_f1``,
    ``per_class_acc``, ``n_test``, ``error``, all in %) plus ``C``, ``val_acc`` and the ``search`` trace.
    """
    found = search_regularisation(*train, *val, **search)
    normalise = search.get("normalise", True)
    clf = fit_logistic(
        _numpy(train[0], normalise), train[1].cpu().numpy(), found.C, search.get("max_iter", 1000)
    )
    preds = torch.from_numpy(clf.predict(_numpy(test[0], normalise))).long()
    labels = test[1].cpu().long()
    task = dict(num_classes=max(n_classes, 2))
    acc = float(tmf.multiclass_accuracy(preds, labels, average="micro", **task)) * 100.0
    return {
        "acc": acc,
        "error": 100.0 - acc,
        "macro_f1": float(tmf.multiclass_f1_score(preds, labels, average="macro", **task)) * 100.0,
        "per_class_acc": [
            float(a) * 100.0
            for a in tmf.multiclass_accuracy(preds, labels, average="none", **task)[:n_classes]
        ],
        "n_test": int(len(labels)),
        "C": found.C,
        "val_acc": found.val_acc,
        "search": [[c, a] for c, a in found.tried],
    }


@torch.no_grad()
def encode_image_features(
    backbone: Backbone, loader: Iterable, mixed_dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen, L2-normalised fp32 image features and labels of a whole loader (on the backbone's device)."""
    model = backbone.model
    device = next(model.parameters()).device
    feats, labels = [], []
    for images, y in loader:
        images = images.to(device)
        if mixed_dtype is None:
            out = model.encode_image(images)
        else:
            with torch.autocast(device_type=device.type, dtype=mixed_dtype):
                out = model.encode_image(images)
        feats.append(F.normalize(out.float(), dim=-1).cpu())
        labels.append(y.cpu())
    return torch.cat(feats), torch.cat(labels)
