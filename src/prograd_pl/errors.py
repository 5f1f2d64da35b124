"""The exceptions that mean "bad input": reported as one sentence, without a traceback."""

from __future__ import annotations

from prograd_pl.data.base import DatasetError
from prograd_pl.methods.losses import NonFiniteLossError
from prograd_pl.methods.module import MethodError
from prograd_pl.models.backbone import BackboneError
from prograd_pl.models.prompt_learner import PromptError
from prograd_pl.run import ConfigError

USER_ERRORS = (ConfigError, DatasetError, PromptError, MethodError, BackboneError, NonFiniteLossError)
