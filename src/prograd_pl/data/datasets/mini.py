"""The mini world's downstream datasets (offline stand-ins for CoOp's eleven datasets).

Same layout and split format as the real ones: ``<folder>/images/<class>/*.png`` and ``split_<name>.json``.
Each reader generates its dataset on first use (deterministically, atomically; see ``prograd_pl.mini.generate``)
and then reads it like any CoOp JSON dataset. Two are test-only, domain-shifted renderings: ``mini_shapes_sketch``
(``mini_shapes`` as pencil sketches, the ImageNet-Sketch of the mini world) and ``mini_textures_renditions``
(``mini_textures`` in the other styles the pretraining names, its ImageNet-R).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prograd_pl.mini.generate import IMAGE_DIR, generate_task, split_file_name
from prograd_pl.mini.tasks import TASKS, MiniTask

from ..base import DatasetInfo, DatasetSplits, read_json_dataset


def _reader(task: MiniTask) -> Callable[[Path], DatasetSplits]:
    def read(dataset_dir: Path) -> DatasetSplits:
        generate_task(task, dataset_dir)
        return read_json_dataset(
            task.name, task.template, Path(dataset_dir), IMAGE_DIR, split_file_name(task)
        )

    read.__doc__ = f"Read (generating on first use) {task.name} from ``dataset_dir``."
    return read


MINI_DATASETS: dict[str, DatasetInfo] = {
    name: DatasetInfo(
        name=name,
        folder=task.folder,
        template=task.template,
        coop_template=task.coop_template,
        n_classes=len(task.classnames),
        sizes=task.sizes,
        test_only=task.test_only,
        reader=_reader(task),
        layout=(f"{IMAGE_DIR}/", split_file_name(task)),
    )
    for name, task in TASKS.items()
}
