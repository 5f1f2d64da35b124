"""One run, one folder, one ``results.json``: folder naming, atomic writes and tolerant reading.

A folder whose ``results.json`` reads back valid is a finished run; sweeps skip it. Reading a whole output tree
never crashes on one bad file: it is named in a warning and skipped.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prograd_pl.atomic import atomic_open

SCHEMA_VERSION = 1
RESULTS_NAME = "results.json"
IDENTITY_NAME = "identity.json"

# Top-level keys every results.json holds (shared/DESIGN.md, docs/INTERFACES.md) and the nested ones.
REQUIRED_KEYS: tuple[str, ...] = (
    "schema_version",
    "method",
    "dataset",
    "eval_dataset",
    "backbone",
    "pretrained",
    "setting",
    "subsample",
    "shots",
    "seed",
    "n_classes",
    "metrics",
    "train",
    "config",
    "versions",
)
REQUIRED_NESTED: dict[str, tuple[str, ...]] = {"metrics": ("acc", "n_test"), "train": ("epochs", "seconds")}

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


class ResultsError(ValueError):
    """A results.json that cannot be used; the message names the file and what is wrong."""


class ResultsWarning(UserWarning):
    """A results.json skipped while reading an output tree."""


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:n]


def _sanitise(text: str) -> str:
    """Make ``text`` one safe, readable path segment (``ViT-B/16`` → ``ViT-B-16``)."""
    out = _UNSAFE.sub("-", text.replace("/", "-").replace("\\", "-")).strip("-")
    if out in ("", ".", ".."):
        out = "_" + _short_hash(text, 6)
    return out


def pretrained_tag(pretrained: str | None) -> str:
    """Short path tag for a pretrained tag: ``openai`` stays, a local checkpoint path becomes ``<stem>-<hash>``."""
    if pretrained is None or str(pretrained) == "":
        return "none"
    text = str(pretrained)
    if "/" in text or "\\" in text or os.path.sep in text or len(text) > 40:
        stem = _sanitise(Path(text).stem or Path(text).name)[:24].rstrip("-.") or "ckpt"
        return f"{stem}-{_short_hash(text)}"
    return _sanitise(text)


def _results_file(path: str | Path) -> Path:
    """Accept a run folder or the results file itself."""
    p = Path(path)
    return p if p.suffix == ".json" else p / RESULTS_NAME


def validate_results(data: Any, where: str = "results") -> dict:
    """Check the schema of a results mapping; raise ResultsError naming ``where`` and the problem."""
    if not isinstance(data, dict):
        raise ResultsError(f"{where}: expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ResultsError(f"{where}: schema_version is {version!r}, this version reads {SCHEMA_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    for key, subkeys in REQUIRED_NESTED.items():
        sub = data.get(key)
        if key in data and not isinstance(sub, dict):
            missing.append(f"{key} (not an object)")
        elif isinstance(sub, dict):
            missing += [f"{key}.{s}" for s in subkeys if s not in sub]
    if missing:
        raise ResultsError(f"{where}: missing keys {', '.join(missing)}")
    acc = data["metrics"]["acc"]
    if isinstance(acc, bool) or not isinstance(acc, (int, float)):
        raise ResultsError(f"{where}: metrics.acc must be a number, got {acc!r}")
    if not math.isfinite(acc):
        raise ResultsError(f"{where}: metrics.acc must be a finite number, got {acc!r}")
    if not 0.0 <= acc <= 100.0:
        raise ResultsError(f"{where}: metrics.acc must be a percentage in 0..100, got {acc!r}")
    n_test = data["metrics"]["n_test"]
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 0:
        raise ResultsError(f"{where}: metrics.n_test must be a non-negative integer, got {n_test!r}")
    for key in ("shots", "seed"):
        if isinstance(data[key], bool) or not isinstance(data[key], int):
            raise ResultsError(f"{where}: {key} must be an integer, got {data[key]!r}")
    return data


def _json_default(obj: Any) -> Any:
    """Serialise what runs naturally produce (Paths, numpy/torch scalars); refuse anything else."""
    if isinstance(obj, Path):
        return str(obj)
    item = getattr(obj, "item", None)
    if callable(item) and getattr(obj, "ndim", 0) == 0:
        return item()
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def write_results(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Validate and write ``results.json`` atomically (temp file in the same folder, fsync, rename).

    ``path`` is the run folder or the file. ``schema_version`` and ``finished_at`` are filled in when absent.
    On any failure the previous file (if any) is left untouched and no temp file remains.
    """
    target = _results_file(path)
    record = dict(data)
    record.setdefault("schema_version", SCHEMA_VERSION)
    record.setdefault("finished_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    validate_results(record, str(target))
    text = json.dumps(record, indent=2, sort_keys=True, default=_json_default) + "\n"
    with atomic_open(target, "w") as fh:
        fh.write(text)
    try:  # make the rename itself durable; not possible on every platform
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return target
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    return target


def read_results(path: str | Path) -> dict:
    """Read and validate one results.json (run folder or file); ResultsError names the file on any problem."""
    target = _results_file(path)
    try:
        text = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{target}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"{target}: cannot read ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ResultsError(f"{target}: not valid JSON, truncated or corrupt ({err})") from None
    return validate_results(data, str(target))


def is_finished(run_dir: str | Path) -> bool:
    """True when the run folder holds a readable, valid results.json."""
    try:
        read_results(run_dir)
    except ResultsError:
        return False
    return True


def iter_results(
    root: str | Path, errors: list[tuple[Path, str]] | None = None
) -> Iterator[tuple[Path, dict]]:
    """Yield ``(path, data)`` for every valid results.json under ``root`` (sorted, ``evals/*`` included).

    Bad files are skipped with a ResultsWarning naming the file; pass ``errors`` to also collect them.
    """
    root = Path(root)
    if root.is_file():
        candidates = [root]
    else:
        candidates = sorted(p for p in root.rglob(RESULTS_NAME) if p.is_file())
    for path in candidates:
        try:
            data = read_results(path)
        except ResultsError as err:
            warnings.warn(f"skipping {err}", ResultsWarning, stacklevel=2)
            if errors is not None:
                errors.append((path, str(err)))
            continue
        yield path, data


def run_folder_of(results_file: str | Path) -> Path:
    """The run folder of a results.json: its own folder, or the run above ``evals/<target>/`` for a sub-result."""
    folder = Path(results_file).parent
    return folder.parent.parent if folder.parent.name == "evals" else folder


def output_root_of(results_file: str | Path, record: Mapping[str, Any]) -> Path | None:
    """The output root a run was written under: the folder above ``<setting>/<dataset>/`` on the run's path
    (``<root>/<setting>/<dataset>/<method>/...``), or None when the path does not show it."""
    parts = run_folder_of(results_file).parts
    setting, dataset = str(record.get("setting")), str(record.get("dataset"))
    for i in range(len(parts) - 2, -1, -1):  # the deepest match: an output root may sit inside another
        if parts[i] == setting and parts[i + 1] in (dataset, _sanitise(dataset)):
            return Path(*parts[:i]) if i else Path(".")
    return None


def by_output_root(found: Iterable[tuple[Path, dict]], default: Path) -> dict[Path, list[tuple[Path, dict]]]:
    """Group ``(path, record)`` pairs by the output root each run was written under (``default`` where the path
    does not show one), so that separate output roots (``outputs`` and ``outputs/demo``) are never merged."""
    groups: dict[Path, list[tuple[Path, dict]]] = {}
    for path, record in found:
        root = output_root_of(path, record) or default
        groups.setdefault(root, []).append((path, record))
    return groups
