"""``prograd-pl diff A B``: the configuration values that differ between two run folders.

A and B may be any two folders of runs: one run (``.../cfg-<digest>/seed1``), every seed of a configuration
(``.../cfg-<digest>``), or a whole setting or output root. A run is read from its ``identity.json`` (the identifying
config written beside its results), else from the identity its ``results.json`` holds. For each side, a key that
has one value in all its runs is that value; a key whose value varies (``seed`` over a configuration's seeds) is
the set of its values. A key is printed where the two sides differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from prograd_pl.results.store import IDENTITY_NAME, RESULTS_NAME

ABSENT = "(absent)"


class DiffError(ValueError):
    """A folder that holds no readable run identity; the message is one sentence naming it."""


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two identities: ``{key: (value in a, value in b)}``."""
    fa, fb = flatten(a), flatten(b)
    missing = object()
    out = {}
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key, missing), fb.get(key, missing)
        if va != vb:
            out[key] = (None if va is missing else va, None if vb is missing else vb)
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise DiffError(
            f"cannot read {path} ({getattr(err, 'strerror', None) or err}); expected a run's file."
        ) from None
    except json.JSONDecodeError as err:
        raise DiffError(
            f"{path} is not valid JSON ({err.msg} at line {err.lineno}); expected a run's identity."
        ) from None


def _as_identity(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        kind = {list: "a JSON list", str: "a JSON string"}.get(type(data), f"a JSON {type(data).__name__}")
        raise DiffError(
            f"{path} holds {kind}, not an object; expected a run's identity (config keys and values)."
        )
    return data


def read_run(path: Path) -> dict[str, Any]:
    """The identity of one run from its ``identity.json`` or ``results.json`` (that file or the run folder)."""
    if path.is_dir():
        path = path / IDENTITY_NAME if (path / IDENTITY_NAME).is_file() else path / RESULTS_NAME
    data = _as_identity(_read_json(path), path)
    if path.name == IDENTITY_NAME:
        return data
    ident = data.get("identity", data.get("config"))
    if ident is None:
        raise DiffError(f"{path} holds no identity or config; expected the results.json of a run.")
    return _as_identity(ident, path)


def run_files(folder: Path) -> list[Path]:
    """Every run at or below ``folder``: its ``identity.json``, or its ``results.json`` where it has none
    (evaluation sub-results under ``evals/`` are parts of their run, not runs)."""
    if folder.is_file():
        return [folder]
    runs: dict[Path, Path] = {}
    for name in (IDENTITY_NAME, RESULTS_NAME):
        for path in sorted(folder.rglob(name)):
            if path.is_file() and "evals" not in path.relative_to(folder).parts[:-1]:
                runs.setdefault(path.parent, path)
    return [runs[k] for k in sorted(runs)]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def values_by_key(identities: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Per dotted key, the distinct values (canonical JSON, sorted) over ``identities``; ``ABSENT`` where a run
    lacks the key."""
    flat = [flatten(i) for i in identities]
    keys = sorted({k for f in flat for k in f})
    return {k: sorted({_key(f[k]) if k in f else ABSENT for f in flat}, key=_order) for k in keys}


def _order(text: str) -> tuple[int, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return (2, text)
    return (0, value) if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, text)


def _show(values: Sequence[str]) -> str:
    return values[0] if len(values) == 1 else "one of " + ", ".join(values)


def describe(folder: Path, identities: Sequence[Mapping[str, Any]]) -> str:
    seeds = sorted({i.get("seed") for i in identities if isinstance(i.get("seed"), int)})
    n = len(identities)
    text = f"{folder} ({n} run{'s' if n != 1 else ''}"
    return text + (f": seed{'s' if len(seeds) != 1 else ''} {', '.join(map(str, seeds))})" if seeds else ")")


def diff_folders(a: Path, b: Path) -> list[str]:
    """The lines ``prograd-pl diff`` prints: each folder and its runs, then ``key: A -> B`` per differing key."""
    sides = []
    for folder in (a, b):
        if not folder.exists():
            raise DiffError(f"{folder} does not exist; expected a run folder (or a folder of runs).")
        files = run_files(folder)
        if not files:
            raise DiffError(
                f"{folder} holds no {IDENTITY_NAME} or {RESULTS_NAME}; expected a run folder (or a folder of runs)."
            )
        sides.append([read_run(p) for p in files])
    va, vb = values_by_key(sides[0]), values_by_key(sides[1])
    lines = [f"A: {describe(a, sides[0])}", f"B: {describe(b, sides[1])}"]
    diff = [k for k in sorted(set(va) | set(vb)) if va.get(k, [ABSENT]) != vb.get(k, [ABSENT])]
    lines += [f"{k}: {_show(va.get(k, [ABSENT]))} -> {_show(vb.get(k, [ABSENT]))}" for k in diff]
    if not diff:
        lines.append("same configuration")
    return lines


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one sentence and exit 1, as every bad input
        print(f"prograd_pl: error: diff: {message}; expected two run folders: prograd-pl diff RUN_A RUN_B.",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    """``prograd-pl diff A B``; returns the exit status (1 with one sentence on bad input)."""
    p = _Parser(prog="prograd-pl diff", description=__doc__.splitlines()[0].split(": ", 1)[1])
    p.add_argument(
        "run_a", type=Path, help="a run folder, a cfg-<digest> folder of seeds, or any folder of runs"
    )
    p.add_argument("run_b", type=Path, help="the same for the other side")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        lines = diff_folders(args.run_a, args.run_b)
    except DiffError as err:
        print(f"prograd_pl: error: {err}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0
