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
from typing import Any, Iterable, Sequence

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics.functional.classification as tmf
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from prograd_pl.methods.base import MIXED_DTYPES
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
    x = x.detach().cpu()
    x = x if x.dtype == torch.float64 else x.float()  # float64 features stay float64
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


class LinearProbe(L.LightningModule):
    """The linear probe as an evaluation pipeline: fitted on frozen features, evaluated with ``trainer.test``.

    Not a prompt method (no gradient steps, nothing prompted): the config's ``method=linear_probe`` names this
    class, and the run fits it with :meth:`fit_loaders` (or :meth:`fit_features` with cached features) on the
    train and val splits, then evaluates it like any method (image batches or cached 2-d feature batches).  Only
    the training classes can be classified.

    Args:
        backbone: the frozen open_clip model (its image tower gives the features).
        classnames: the training classes (index = label).
        precision: ``32`` or ``bf16-mixed``/``16-mixed`` (autocast of the image tower).
        grid, refine_steps, max_iter: the regularisation search (:func:`search_regularisation`).
    """

    def __init__(
        self,
        backbone: Backbone,
        classnames: Sequence[str],
        *,
        precision: str = "32",
        grid: Sequence[float] = COARSE_GRID,
        refine_steps: int = 6,
        max_iter: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.clip = backbone.model
        self.backbone = backbone
        self.mixed_dtype = MIXED_DTYPES.get(str(precision))
        self.search_options = {"grid": tuple(grid), "refine_steps": int(refine_steps), "max_iter": int(max_iter)}
        self.train_classnames = list(classnames)
        self.n_classes = len(self.train_classnames)
        self.probe: dict[str, Any] | None = None
        self.register_buffer("logit_scale", torch.ones(()), persistent=False)  # device anchor, as other methods
        self.register_buffer("weight", torch.zeros(0), persistent=False)
        self.register_buffer("bias", torch.zeros(0), persistent=False)
        self.automatic_optimization = False

    only_training_classes = True
    """It has weights for its training classes only: base-to-new and transfer cannot evaluate it."""

    def train(self, mode: bool = True) -> "LinearProbe":
        super().train(mode)
        self.clip.eval()
        return self

    def configure_optimizers(self):
        return None

    @torch.no_grad()
    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised fp32 features of the frozen image tower."""
        if self.mixed_dtype is None:
            feats = self.clip.encode_image(images)
        else:
            with torch.autocast(device_type=images.device.type, dtype=self.mixed_dtype):
                feats = self.clip.encode_image(images)
        return F.normalize(feats.float(), dim=-1)

    @torch.no_grad()
    def encode(self, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of a whole loader (deterministic transform expected)."""
        self.eval()
        device = self.logit_scale.device
        feats, labels = [], []
        for images, y in loader:
            feats.append(self.image_features(images.to(device)).cpu())
            labels.append(y.cpu())
        return torch.cat(feats), torch.cat(labels)

    def fit_loaders(self, train_loader: Iterable, val_loader: Iterable) -> dict[str, Any]:
        """Encode the train and val splits and fit the probe (see :meth:`fit_features`)."""
        return self.fit_features(self.encode(train_loader), self.encode(val_loader))

    def fit_features(
        self, train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor]
    ) -> dict[str, Any]:
        """Search ``C`` on ``val``, fit on ``train``; returns ``{"C", "val_acc", "search"}`` (kept as ``probe``)."""
        found = search_regularisation(*train, *val, **self.search_options)
        clf = fit_logistic(_numpy(train[0], True), train[1].cpu().numpy(), found.C, self.search_options["max_iter"])
        weight = torch.zeros(self.n_classes, train[0].shape[1], dtype=torch.float64)
        bias = torch.full((self.n_classes,), -torch.inf, dtype=torch.float64)  # a class without shots never wins
        classes = torch.as_tensor(clf.classes_).long()
        coef, intercept = torch.from_numpy(clf.coef_), torch.from_numpy(clf.intercept_)
        if len(classes) == 2:  # sklearn's binary model is one row: the logit of the second class
            coef, intercept = torch.cat([-coef, coef]) / 2, torch.cat([-intercept, intercept]) / 2
        weight[classes], bias[classes] = coef, intercept
        self.weight = weight.to(self.logit_scale.device)
        self.bias = bias.to(self.logit_scale.device)
        self.probe = {"C": found.C, "val_acc": found.val_acc, "search": [[c, a] for c, a in found.tried]}
        return self.probe

    def set_eval_classes(self, classnames: Sequence[str], template: str | None = None) -> None:
        """Only the training classes: a linear probe has no weights for other classes."""
        if list(classnames) != self.train_classnames:
            raise LinearProbeError(
                "method=linear_probe classifies only its training classes; evaluate it in setting=fewshot on its "
                "own test split."
            )

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        if self.probe is None:
            raise LinearProbeError("the linear probe is evaluated before fit_loaders/fit_features was called.")
        return F.normalize(features.to(self.weight), dim=-1) @ self.weight.t() + self.bias

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(self.image_features(images))

    def on_test_epoch_start(self) -> None:
        self._preds, self._labels = [], []

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        feats = images.to(self.logit_scale.device) if images.dim() == 2 else self.image_features(images)
        self._preds.append(self.logits(feats).argmax(-1).cpu())
        self._labels.append(labels.cpu())

    def on_test_epoch_end(self) -> None:
        preds, labels = torch.cat(self._preds), torch.cat(self._labels)
        task = dict(num_classes=max(self.n_classes, 2))
        acc = float(tmf.multiclass_accuracy(preds, labels, average="micro", **task)) * 100.0
        per_class = tmf.multiclass_accuracy(preds, labels, average="none", **task)[: self.n_classes]
        self.test_results = {
            "acc": acc,
            "macro_f1": float(tmf.multiclass_f1_score(preds, labels, average="macro", **task)) * 100.0,
            "per_class_acc": [float(a) * 100.0 for a in per_class],
            **(self.probe or {}),
        }
        self.log("test/acc", acc)
