"""``prograd-pl data check|download|prepare|list``: the data commands, and the dataset guide shipped in the package."""

from __future__ import annotations

import sys
import textwrap
from importlib import resources

from .manifest import MANIFESTS

GUIDE = "DATASETS.md"

USAGE = """\
usage: prograd-pl data <command> ...

  check    [dataset=NAME[,NAME...]] [data_root=PATH]   which datasets are complete, what is missing and where
  download <dataset>|all [--mirror URL] [--data-root PATH] [--keep-archives]
                                                     fetch, verify and unpack into the layout the readers expect
  prepare  imagenet --from <ILSVRC folder>            ImageNet's layout and classnames.txt from your ILSVRC copy
  prepare  <dataset> --make-split [--seed S]          a generated split, not the paper's (dataset.split=generated)
  list     [<dataset>] [--guide]                      sources, sizes, licences, files; --guide prints the whole guide

Your own images: python -m prograd_pl dataset=folder dataset.path=<dir>  (<class>/<images> or
train|val|test/<class>/<images>; see "Your own dataset" in the guide).
Data root: --data-root / data_root=, else $PROGRAD_DATA, else data/.
"""


def guide_text() -> str:
    """The dataset guide (DATASETS.md) as installed with the package."""
    return resources.files("prograd_pl.data").joinpath(GUIDE).read_text(encoding="utf-8")


def guide_section(title_start: str) -> str:
    """The guide's ``##``/``###``/``-`` section whose heading or bullet starts with ``title_start``."""
    lines = guide_text().splitlines()
    out: list[str] = []
    for line in lines:
        if out and (line.startswith("#") or line.startswith("- **")):
            break
        if out or line.lstrip("#- *").lower().startswith(title_start.lower()):
            out.append(line)
    return "\n".join(out).strip()


def _how(m) -> str:
    """What ``data download`` can do for a dataset without a mirror."""
    if not m.files:
        return "no: prepare --from"
    required = [f for f in m.files if f.required]
    archives = all(f.url for f in required if f.is_archive)
    others = all(f.url or f.copy_from for f in required if not f.is_archive)
    if archives and others:
        return "yes"
    return "images; split by hand" if archives else "--mirror or by hand"


def _list(argv: list[str]) -> int:
    if "--guide" in argv:
        print(guide_text())
        return 0
    names = [a for a in argv if not a.startswith("-")]
    unknown = [n for n in names if n not in MANIFESTS]
    if unknown:
        print(f"prograd_pl: error: unknown dataset {unknown[0]!r}; expected one of {', '.join(MANIFESTS)}.",
              file=sys.stderr)  # fmt: skip
        return 1
    if not names:
        print(f"{'dataset':<16} {'folder':<22} {'data download':<22} {'licence'}")
        for m in MANIFESTS.values():
            how = _how(m)
            print(f"{m.name:<16} {m.folder + '/':<22} {how:<22} {m.licence}")
        print("\n`prograd-pl data list <dataset>` for its files and sources; `--guide` for the whole guide "
              f"({GUIDE}, shipped with the package).")  # fmt: skip
        return 0
    for name in names:
        m = MANIFESTS[name]
        print(f"{m.name}: folder {m.folder}/, {m.approx_size or 'size not published'}, licence: {m.licence}")
        print(f"  homepage: {m.homepage}")
        if m.note:
            print(f"  note: {m.note}")
        for f in m.files:
            where = f.url or f"no live original source: {f.get_it or 'a mirror'}"
            check = f"MD5 {f.md5} ({f.checksum_source})" if f.md5 else "no published checksum"
            extra = "" if f.required else " (optional)"
            print(f"  - {f.name}{extra}: {where}; {check}")
        print(textwrap.indent(guide_section(_GUIDE_TITLES.get(name, name)) or "", "  "))
    return 0


_GUIDE_TITLES = {
    "imagenet": "ImageNet**", "caltech101": "Caltech101**", "oxford_pets": "Oxford-IIIT Pets**",
    "stanford_cars": "Stanford Cars**", "oxford_flowers": "Oxford Flowers-102**", "food101": "Food-101**",
    "fgvc_aircraft": "FGVC-Aircraft**", "sun397": "SUN397**", "dtd": "DTD**", "eurosat": "EuroSAT**",
    "ucf101": "UCF101**", "imagenetv2": "ImageNetV2**", "imagenet_sketch": "ImageNet-Sketch**",
    "imagenet_a": "ImageNet-A**", "imagenet_r": "ImageNet-R**",
}  # fmt: skip


def main(argv: list[str]) -> int:
    """Dispatch ``prograd-pl data <command>``; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        print(guide_section("Datasets") or "")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "download":
        from .download import main as download_main

        return download_main(rest)
    if cmd == "prepare":
        from .prepare import main as prepare_main

        return prepare_main(rest)
    if cmd == "list":
        return _list(rest)
    from .check import main as check_main

    return check_main(rest if cmd == "check" else argv)
