"""Files written and read whole: atomic writes (readers see the old file or the complete new one, never a
half-written one) and content digests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import IO

from prograd_pl.errors import disk_error


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success flush, fsync and rename it onto ``path``.

    On any error the temporary file is removed and ``path`` keeps its previous content; a full or read-only file
    system is reported as :class:`~prograd_pl.errors.DiskError` (one sentence naming ``path``).  The file gets the
    usual permissions (``0666 & ~umask``) rather than ``mkstemp``'s 0600, since data roots and output trees
    are often shared.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise (disk_error(err, path) or err) from err
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        disk = disk_error(err, path) if isinstance(err, Exception) else None
        if disk is not None and disk is not err:
            raise disk from err
        raise


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (split files, weights, checkpoints), cached by real path, size and mtime."""
    st = os.stat(path)
    return _sha256(os.path.realpath(path), st.st_size, st.st_mtime_ns)
