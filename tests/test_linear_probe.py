"""Linear probe: the regularisation search on a tiny problem, and the probe's test metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from prograd_pl.linear_probe import (
    COARSE_GRID,
    LinearProbeError,
    encode_image_features,
    linear_probe,
    search_regularisation,
)


def blobs(seed: int = 3):
    """4 classes in 8-d, 4 noisy training shots per class, 25 val and 25 test points per class."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, 8, generator=g)

    def draw(n):
        y = torch.arange(4).repeat(n)
        return centers[y] + 1.2 * torch.randn(len(y), 8, generator=g), y

    return draw(4), draw(25), draw(25)


def val_accuracy(train, val, c):
    """Independent of the module: sklearn on normalised features, accuracy in %."""
    xt, xv = F.normalize(train[0], dim=-1).double().numpy(), F.normalize(val[0], dim=-1).double().numpy()
    clf = LogisticRegression(C=c, max_iter=1000).fit(xt, train[1].numpy())
    return float((clf.predict(xv) == val[1].numpy()).mean() * 100.0), clf


def test_search_finds_the_best_regularisation_of_a_tiny_problem():
    train, val, _ = blobs()
    found = search_regularisation(*train, *val)
    coarse = {c: a for c, a in found.tried if c in COARSE_GRID}
    assert sorted(coarse) == sorted(COARSE_GRID)
    # both ends of the grid are worse than the middle: the regularisation matters on this problem
    assert max(coarse.values()) > max(coarse[1e-6], coarse[1e6])
    # refinement beat every grid value, and the chosen C is the best one tried
    assert found.val_acc > max(coarse.values())
    assert found.val_acc == max(a for _, a in found.tried)
    assert val_accuracy(train, val, found.C)[0] == pytest.approx(found.val_acc)
    # no C on a 4-per-decade grid from 1e-6 to 1e6 does better on val
    dense = [val_accuracy(train, val, 10.0 ** (k / 4))[0] for k in range(-24, 25)]
    assert found.val_acc >= max(dense)


def test_probe_metrics_equal_a_hand_fit_with_the_chosen_c():
    train, val, test = blobs()
    res = linear_probe(train, val, test, n_classes=4)
    _, clf = val_accuracy(train, val, res["C"])
    preds = clf.predict(F.normalize(test[0], dim=-1).double().numpy())
    expected = float((preds == test[1].numpy()).mean() * 100.0)
    assert res["acc"] == pytest.approx(expected)
    assert res["n_test"] == 100 and len(res["per_class_acc"]) == 4
    per_class = [float((preds[test[1].numpy() == k] == k).mean() * 100.0) for k in range(4)]
    assert np.allclose(res["per_class_acc"], per_class)
    assert res["search"][0][0] == min(COARSE_GRID)
    # features are normalised: scaling them changes nothing
    scaled = linear_probe((train[0] * 7.0, train[1]), (val[0] * 0.1, val[1]), (test[0] * 3.0, test[1]), 4)
    assert scaled["acc"] == res["acc"] and scaled["C"] == res["C"]


def test_probe_needs_a_val_split_and_two_classes():
    train, val, _ = blobs()
    with pytest.raises(LinearProbeError, match="val split, which is empty"):
        search_regularisation(*train, val[0][:0], val[1][:0])
    with pytest.raises(LinearProbeError, match="at least two classes"):
        search_regularisation(train[0][:1], train[1][:1], *val)


def test_encode_image_features_are_normalised_clip_features(tiny_backbone):
    images = torch.randn(5, 3, tiny_backbone.image_size, tiny_backbone.image_size)
    labels = torch.arange(5)
    feats, y = encode_image_features(tiny_backbone, [(images[:3], labels[:3]), (images[3:], labels[3:])])
    ref = F.normalize(tiny_backbone.model.encode_image(images), dim=-1)
    assert torch.equal(y, labels)
    assert (feats - ref).abs().max() <= 1e-6


def test_probe_module_evaluates_like_the_other_methods(tiny_backbone):
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    from prograd_pl.linear_probe import LinearProbe

    train, val, test = blobs()
    names = ["a", "b", "c", "d"]
    module = LinearProbe(tiny_backbone, names, precision="32")
    probe = module.fit_features(train, val)
    expected = linear_probe(train, val, test, n_classes=4)
    assert probe["C"] == expected["C"]
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, DataLoader(TensorDataset(*test), batch_size=30), verbose=False)
    assert module.test_results["acc"] == pytest.approx(expected["acc"])
    assert np.allclose(module.test_results["per_class_acc"], expected["per_class_acc"])
    module.set_eval_classes(names)  # its own classes: fine
    with pytest.raises(LinearProbeError, match="only its training classes"):
        module.set_eval_classes(["a", "b"])
    # from images: the frozen tower's normalised features
    g = torch.Generator().manual_seed(5)
    images = torch.randn(8, 3, tiny_backbone.image_size, tiny_backbone.image_size, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loader = DataLoader(TensorDataset(images, labels), batch_size=3)
    module.fit_loaders(loader, loader)
    feats, _ = module.encode(loader)
    assert (feats - F.normalize(tiny_backbone.model.encode_image(images), dim=-1)).abs().max() <= 1e-5
    assert torch.equal(module(images).argmax(-1), module.logits(feats).argmax(-1))
