"""The exceptions that mean "bad input": reported as one sentence, without a traceback.

Defined here, at the bottom of the import graph, so that every package raises them without importing the others.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user; the message is one sentence naming the option or file and what was expected."""


class ConfigError(UserError):
    """An option with a value that cannot work."""


class DatasetError(UserError):
    """A dataset is missing, incomplete or malformed; the message names the path or option."""


class BackboneError(UserError):
    """A backbone that cannot be loaded or cannot be prompt-tuned."""


class PromptError(UserError):
    """Invalid prompt-learner options."""


class MethodError(UserError):
    """Invalid method options."""


class NonFiniteLossError(UserError, FloatingPointError):
    """A loss became NaN or infinite."""


class MiniWeightsError(UserError, FileNotFoundError):
    """The prograd-mini weights file is missing or unusable; the message names it and how to rebuild it."""


USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)
