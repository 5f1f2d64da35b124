"""The exceptions that mean "bad input": reported as one sentence, without a traceback.

Defined here, at the bottom of the import graph, so that every package raises them without importing the others.
"""

from __future__ import annotations

import errno


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


class DiskError(UserError, OSError):
    """A file could not be written (full, read-only or over-quota file system); the message names the file. The
    previous content of the file is kept and no temporary file is left."""


DISK_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG)
"""The ``errno`` values of a file system that cannot take a write (reported as :class:`DiskError`)."""


def disk_error(err: BaseException, path: object) -> DiskError | None:
    """A :class:`DiskError` naming ``path`` when ``err`` (or what caused it) is a full or read-only file system."""
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, DiskError):
            return cause
        if isinstance(cause, OSError) and cause.errno in DISK_ERRNOS:
            reason = cause.strerror or errno.errorcode.get(cause.errno or 0, "error")
            disk = DiskError(f"cannot write {path}: {reason}; the previous file is kept.")
            disk.errno = cause.errno
            return disk
        cause = cause.__cause__ or cause.__context__
    return None


USER_ERRORS: tuple[type[BaseException], ...] = (UserError,)
