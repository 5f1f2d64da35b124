"""The offline mini world: a small CLIP pretrained by the project and miniature CoOp-style datasets.

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

Modules, bottom to top: ``vocabulary`` (words, aliases, seeded word picks), ``drawing`` (colours, shapes,
textures, photometric shifts, ``to_image``), ``scenes`` (landscapes, backgrounds), ``digits``, ``styles``
(domains and their caption phrases), ``captions`` (pretraining image-caption drawers), ``stream`` (the
pretraining batches), ``tasks`` (the downstream ``TASKS``), ``generate`` (datasets on disk in CoOp's layout),
``weights`` (the packaged weights, checked). The package imports nothing of prograd_pl but ``errors``; the tools
that rebuild the weights and measure the world's headroom are ``tools/mini_pretrain.py`` and
``tools/mini_headroom.py``, outside the package.
"""

from prograd_pl.mini.weights import MiniWeightsError, check_mini_weights, mini_weights_path

__all__ = ["MiniWeightsError", "check_mini_weights", "mini_weights_path"]
