"""The offline mini world: a small CLIP pretrained by the project and miniature CoOp-style datasets.

``world`` draws images and captions, ``pretrain`` trains ``prograd-mini`` on them, ``generate`` writes the
downstream datasets in CoOp's layout, ``weights`` finds and checks the pretrained weights.
"""

from prograd_pl.mini.weights import MiniWeightsError, check_mini_weights, mini_weights_path

__all__ = ["MiniWeightsError", "check_mini_weights", "mini_weights_path"]
