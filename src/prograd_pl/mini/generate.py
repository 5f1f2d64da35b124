"""Write the mini world's downstream datasets to disk in CoOp's layout.

Each task becomes ``<data_root>/<folder>/images/<class>/<class>_<i>.png`` plus ``split_<task>.json``
(``{"train"|"val"|"test": [[relpath, label, classname], ...]}``, paths relative to ``images/``). A dataset is
written into a temporary folder and renamed into place only when complete, with a ``.complete`` marker, so an
interrupted generation never leaves a half dataset that passes for a whole one. Pixels depend only on
(task, class, index): two generations give identical files.

    python -m prograd_pl.mini.generate --data-root data
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from prograd_pl.mini.drawing import to_image
from prograd_pl.mini.tasks import TASKS, MiniTask, render_task_item

GENERATOR_VERSION = 5  # bump when the rendering changes: existing datasets are then regenerated
MARKER = ".complete"
IMAGE_DIR = "images"
STALE_TMP_SECONDS = 3600

log = logging.getLogger(__name__)


def split_file_name(task: MiniTask) -> str:
    return f"split_{task.name}.json"


def marker_content(task: MiniTask) -> dict:
    return {"task": task.name, "generator_version": GENERATOR_VERSION, "sizes": list(task.sizes)}


def is_complete(task: MiniTask, dataset_dir: Path) -> bool:
    """Whether ``dataset_dir`` holds a finished generation of ``task`` by this generator version."""
    try:
        marker = json.loads((Path(dataset_dir) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return marker == marker_content(task) and (Path(dataset_dir) / split_file_name(task)).is_file()


def _write(task: MiniTask, out: Path) -> None:
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    bounds = {
        "train": (0, task.per_class[0]),
        "val": (task.per_class[0], task.per_class[0] + task.per_class[1]),
    }
    bounds["test"] = (bounds["val"][1], sum(task.per_class))
    for label, classname in enumerate(task.classnames):
        class_dir = out / IMAGE_DIR / classname
        class_dir.mkdir(parents=True)
        for split, (lo, hi) in bounds.items():
            for item in range(lo, hi):
                rel = f"{classname}/{classname}_{item:04d}.png"
                to_image(render_task_item(task, label, item)).save(out / IMAGE_DIR / rel, format="PNG")
                splits[split].append([rel, label, classname])
    (out / split_file_name(task)).write_text(format_split_json(splits), encoding="utf-8")
    (out / MARKER).write_text(json.dumps(marker_content(task)) + "\n", encoding="utf-8")


def format_split_json(splits: dict[str, list]) -> str:
    """The split JSON with one ``[relpath, label, classname]`` entry per line (readable, diff-friendly)."""
    parts = []
    for key, entries in splits.items():
        body = ",\n".join("  " + json.dumps(e) for e in entries)
        parts.append(f'"{key}": [\n{body}\n]' if entries else f'"{key}": []')
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _remove_stale_tmp(parent: Path, folder: str) -> None:
    now = time.time()
    for p in parent.glob(f".{folder}.tmp-*"):
        try:
            if now - p.stat().st_mtime > STALE_TMP_SECONDS:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def generate_task(task: MiniTask | str, dataset_dir: str | Path, force: bool = False) -> Path:
    """Make sure ``dataset_dir`` holds the complete dataset of ``task``; generate it if not. Returns the folder.

    Safe against interruption (temp folder + atomic rename + marker) and against concurrent generators
    (the first rename wins, the others discard their copy).
    """
    task = TASKS[task] if isinstance(task, str) else task
    dataset_dir = Path(dataset_dir).expanduser().absolute()
    if not force and is_complete(task, dataset_dir):
        return dataset_dir
    parent = dataset_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(parent, dataset_dir.name)
    tmp = parent / f".{dataset_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    t0 = time.time()
    try:
        tmp.mkdir()
        _write(task, tmp)
        if dataset_dir.exists():  # incomplete, outdated or forced: move it aside, then drop it
            if not force and is_complete(task, dataset_dir):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return dataset_dir
            old = parent / f".{dataset_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dataset_dir, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, dataset_dir)
        except OSError:
            if not is_complete(task, dataset_dir):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # lost the race to an identical copy
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "generated %s (%d images) in %s in %.1fs", task.name, sum(task.sizes), dataset_dir, time.time() - t0
    )
    return dataset_dir


def generate_all(
    data_root: str | Path, tasks: list[str] | None = None, force: bool = False
) -> dict[str, Path]:
    """Generate every mini dataset (or ``tasks``) under ``data_root``; already complete ones are kept."""
    return {
        name: generate_task(TASKS[name], Path(data_root) / TASKS[name].folder, force=force)
        for name in (tasks or list(TASKS))
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Generate the mini world's downstream datasets (CoOp layout).")
    p.add_argument("--data-root", type=Path, default=Path(os.environ.get("PROGRAD_DATA", "data")))
    p.add_argument("--tasks", nargs="*", choices=list(TASKS), default=None, help="default: all")
    p.add_argument("--force", action="store_true", help="regenerate even if complete")
    a = p.parse_args(argv)
    t0 = time.time()
    for name, path in generate_all(a.data_root, a.tasks, a.force).items():
        print(f"{name}: {path} (train/val/test {'/'.join(map(str, TASKS[name].sizes))})")
    print(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
