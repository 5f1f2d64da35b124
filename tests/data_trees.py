"""Miniature copies of the fifteen datasets in their real (CoOp) layouts, for tests.

``build_tree(name, root)`` writes ``root/<folder>/`` with a few tiny JPEGs per class and split
files shaped like the real ones (``split_zhou_*.json``, Aircraft's txt lists, ImageNet's
``classnames.txt``), and returns the dataset folder. Class names are real ones, so renaming
rules (Caltech, EuroSAT, Pets, Cars, SUN397, UCF101) show up in the files as in the real data.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

NAMES = (
    "imagenet",
    "caltech101",
    "oxford_pets",
    "stanford_cars",
    "oxford_flowers",
    "food101",
    "fgvc_aircraft",
    "sun397",
    "dtd",
    "eurosat",
    "ucf101",
    "imagenetv2",
    "imagenet_sketch",
    "imagenet_a",
    "imagenet_r",
)
FOLDERS = {
    "imagenet": "imagenet",
    "caltech101": "caltech-101",
    "oxford_pets": "oxford_pets",
    "stanford_cars": "stanford_cars",
    "oxford_flowers": "oxford_flowers",
    "food101": "food-101",
    "fgvc_aircraft": "fgvc_aircraft",
    "sun397": "sun397",
    "dtd": "dtd",
    "eurosat": "eurosat",
    "ucf101": "ucf101",
    "imagenetv2": "imagenetv2",
    "imagenet_sketch": "imagenet-sketch",
    "imagenet_a": "imagenet-adversarial",
    "imagenet_r": "imagenet-rendition",
}
TEST_ONLY = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")

# (name as stored by the source, final class name) — the first entries are the renamed ones.
CLASSES = {
    "caltech101": [
        ("airplanes", "airplane"),
        ("Faces", "face"),
        ("Leopards", "leopard"),
        ("Motorbikes", "motorbike"),
        ("accordion", "accordion"),
        ("yin_yang", "yin_yang"),
    ],
    "oxford_pets": [
        ("Abyssinian", "abyssinian"),
        ("american_bulldog", "american_bulldog"),
        ("Egyptian_Mau", "egyptian_mau"),
        ("great_pyrenees", "great_pyrenees"),
        ("Bengal", "bengal"),
        ("staffordshire_bull_terrier", "staffordshire_bull_terrier"),
    ],
    "stanford_cars": [
        ("Tesla Model S Sedan 2012", "2012 Tesla Model S Sedan"),
        ("AM General Hummer SUV 2000", "2000 AM General Hummer SUV"),
        ("Acura RL Sedan 2012", "2012 Acura RL Sedan"),
        ("Ford F-150 Regular Cab 2007", "2007 Ford F-150 Regular Cab"),
        ("Audi TTS Coupe 2012", "2012 Audi TTS Coupe"),
        ("BMW M3 Coupe 2012", "2012 BMW M3 Coupe"),
    ],
    "oxford_flowers": [
        (n, n)
        for n in (
            "pink primrose",
            "hard-leaved pocket orchid",
            "canterbury bells",
            "sweet pea",
            "english marigold",
            "tiger lily",
        )
    ],
    "food101": [
        (n, n)
        for n in ("apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare", "beet_salad")
    ],
    "fgvc_aircraft": [(n, n) for n in ("707-320", "A300B4", "F-16A/B", "Cessna 172", "DHC-1", "727-200")],
    "sun397": [
        ("/a/abbey", "abbey"),
        ("/a/apartment_building/outdoor", "outdoor apartment_building"),
        ("/b/bakery/shop", "shop bakery"),
        ("/c/campus", "campus"),
        ("/f/forest/broadleaf", "broadleaf forest"),
        ("/d/dining_room", "dining_room"),
    ],
    "dtd": [(n, n) for n in ("banded", "blotchy", "braided", "bubbly", "bumpy", "chequered")],
    "eurosat": [
        ("AnnualCrop", "Annual Crop Land"),
        ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
        ("Highway", "Highway or Road"),
        ("SeaLake", "Sea or Lake"),
        ("Forest", "Forest"),
        ("Residential", "Residential Buildings"),
    ],
    "ucf101": [
        ("ApplyEyeMakeup", "Apply_Eye_Makeup"),
        ("YoYo", "Yo_Yo"),
        ("PlayingCello", "Playing_Cello"),
        ("TaiChi", "Tai_Chi"),
        ("Skijet", "Skijet"),
        ("BandMarching", "Band_Marching"),
    ],
}
SPLIT_FILES = {
    "caltech101": "split_zhou_Caltech101.json",
    "oxford_pets": "split_zhou_OxfordPets.json",
    "stanford_cars": "split_zhou_StanfordCars.json",
    "oxford_flowers": "split_zhou_OxfordFlowers.json",
    "food101": "split_zhou_Food101.json",
    "sun397": "split_zhou_SUN397.json",
    "dtd": "split_zhou_DescribableTextures.json",
    "eurosat": "split_zhou_EuroSAT.json",
    "ucf101": "split_zhou_UCF101.json",
}
_WNIDS = [
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
    ("n01498041", "stingray"),
    ("n01514668", "rooster"),
]

_jpeg_cache: dict[int, bytes] = {}


def _jpeg(label: int) -> bytes:
    """A tiny 8x8 JPEG with a colour per class."""
    if label not in _jpeg_cache:
        buf = io.BytesIO()
        colour = ((53 * label) % 256, (101 * label + 40) % 256, (197 * label + 90) % 256)
        Image.new("RGB", (8, 8), colour).save(buf, "JPEG")
        _jpeg_cache[label] = buf.getvalue()
    return _jpeg_cache[label]


def _write_image(path: Path, label: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_jpeg(label))


def classes(name: str, n_classes: int) -> list[tuple[str, str]]:
    """(source name, final class name) of the first ``n_classes`` classes of a tree."""
    if name in CLASSES:
        pool = CLASSES[name]
        extra = [(f"class{i}", f"class{i}") for i in range(len(pool), n_classes)]
        if name == "sun397":
            extra = [(f"/z/class{i}", f"class{i}") for i in range(len(pool), n_classes)]
        if name == "stanford_cars":
            extra = [(f"Make Model{i} 2010", f"2010 Make Model{i}") for i in range(len(pool), n_classes)]
        if name == "ucf101":
            extra = [(f"Action{i}", f"Action{i}") for i in range(len(pool), n_classes)]
        if name == "eurosat":
            extra = [(f"Class{i}", f"Class{i}") for i in range(len(pool), n_classes)]
        return (pool + extra)[:n_classes]
    pool = _wnid_pool(2 * n_classes + 2)
    if name in ("imagenet_a", "imagenet_r"):  # a subset: every other wnid of classnames.txt
        return pool[0 : 2 * n_classes : 2]
    return pool[:n_classes]


def expected_classnames(name: str, n_classes: int = 4) -> list[str]:
    """The class names (index == label) a reader must return for ``build_tree(name, ...)``."""
    return [final for _, final in classes(name, n_classes)]


def tree_sizes(
    name: str, n_classes: int = 4, per_class: tuple[int, int, int] = (6, 3, 3)
) -> tuple[int, int, int]:
    """(train, val, test) sizes of ``build_tree(name, root, n_classes, per_class)``."""
    tr, va, te = per_class
    if name in TEST_ONLY:
        return 0, 0, n_classes * te
    if name == "imagenet":
        return n_classes * tr, 0, n_classes * te
    return n_classes * tr, n_classes * va, n_classes * te


def _wnid_pool(n: int) -> list[tuple[str, str]]:
    extra = [(f"n{9000000 + i:08d}", f"class {i}") for i in range(len(_WNIDS), n)]
    return (_WNIDS + extra)[:n]


def build_tree(
    name: str, root: Path, n_classes: int = 4, per_class: tuple[int, int, int] = (6, 3, 3)
) -> Path:
    """Write a miniature ``name`` dataset under ``root/<folder>`` and return that folder.

    ``per_class`` = images per class in (train, val, test); ImageNet uses train and test (its
    val folder is the test split), the test-only variants use the test count.
    """
    if name not in FOLDERS:
        raise ValueError(f"unknown dataset {name!r}")
    ddir = Path(root) / FOLDERS[name]
    ddir.mkdir(parents=True, exist_ok=True)
    cls = classes(name, n_classes)
    if name in SPLIT_FILES:
        _build_json_dataset(name, ddir, cls, per_class)
    elif name == "fgvc_aircraft":
        _build_aircraft(ddir, cls, per_class)
    else:
        _build_imagenet_family(name, ddir, n_classes, cls, per_class)
    return ddir


def _build_json_dataset(
    name: str, ddir: Path, cls: list[tuple[str, str]], per_class: tuple[int, int, int]
) -> None:
    image_dir = {
        "caltech101": "101_ObjectCategories",
        "oxford_pets": "images",
        "stanford_cars": "",
        "oxford_flowers": "jpg",
        "food101": "images",
        "sun397": "SUN397",
        "dtd": "images",
        "eurosat": "2750",
        "ucf101": "UCF-101-midframes",
    }[name]
    base = ddir / image_dir if image_dir else ddir
    split = {"train": [], "val": [], "test": []}
    counter = 0
    for label, (source, final) in enumerate(cls):
        for split_name, k in zip(("train", "val", "test"), per_class):
            for _ in range(k):
                counter += 1
                rel = _relpath(name, source, final, counter, split_name)
                _write_image(base / rel, label)
                split[split_name].append([rel, label, final])
    # Items of one class are interleaved with others in the real JSONs; shuffle deterministically.
    for key in split:
        split[key] = split[key][::2] + split[key][1::2]
    (ddir / SPLIT_FILES[name]).write_text(json.dumps(split))
    if name == "caltech101":  # folders the split ignores
        for folder in ("BACKGROUND_Google", "Faces_easy"):
            _write_image(base / folder / "image_0001.jpg", 0)
    elif name == "oxford_pets":
        (ddir / "annotations").mkdir(exist_ok=True)
        (ddir / "annotations" / "trainval.txt").write_text("")
    elif name == "oxford_flowers":
        (ddir / "cat_to_name.json").write_text(json.dumps({str(i + 1): f for i, (_, f) in enumerate(cls)}))
    elif name == "stanford_cars":
        (ddir / "devkit").mkdir(exist_ok=True)


def _relpath(name: str, source: str, final: str, n: int, split: str) -> str:
    if name == "caltech101":
        return f"{source}/image_{n:04d}.jpg"
    if name == "oxford_pets":
        return f"{source}_{n}.jpg"
    if name == "stanford_cars":
        return f"{'cars_test' if split == 'test' else 'cars_train'}/{n:05d}.jpg"
    if name == "oxford_flowers":
        return f"image_{n:05d}.jpg"
    if name == "food101":
        return f"{source}/{1000000 + n}.jpg"
    if name == "sun397":
        return f"{source.strip('/')}/sun_{n:016x}.jpg"
    if name == "dtd":
        return f"{source}/{source}_{n:04d}.jpg"
    if name == "eurosat":
        return f"{source}/{source}_{n}.jpg"
    if name == "ucf101":
        return f"{final}/v_{source}_g{n:02d}_c01.jpg"
    raise ValueError(name)


def _build_aircraft(ddir: Path, cls: list[tuple[str, str]], per_class: tuple[int, int, int]) -> None:
    variants = [final for _, final in cls]
    (ddir / "variants.txt").write_text("".join(v + "\n" for v in variants))
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    counter = 0
    for label, variant in enumerate(variants):
        for split, k in zip(lines, per_class):
            for _ in range(k):
                counter += 1
                image_id = f"{1000000 + counter * 37:07d}"
                _write_image(ddir / "images" / f"{image_id}.jpg", label)
                lines[split].append(f"{image_id} {variant}\n")
    for split, rows in lines.items():
        (ddir / f"images_variant_{split}.txt").write_text("".join(sorted(rows)))


def _build_imagenet_family(
    name: str, ddir: Path, n_classes: int, cls: list[tuple[str, str]], per_class: tuple[int, int, int]
) -> None:
    pool = _wnid_pool(2 * n_classes + 2)
    (ddir / "classnames.txt").write_text("".join(f"{w} {c}\n" for w, c in pool))
    tr, _, te = per_class
    for label, (wnid, classname) in enumerate(cls):
        if name == "imagenet":
            for i in range(tr):
                _write_image(ddir / "images" / "train" / wnid / f"{wnid}_{i + 1}.JPEG", label)
            for i in range(te):
                _write_image(
                    ddir / "images" / "val" / wnid / f"ILSVRC2012_val_{label * te + i + 1:08d}.JPEG", label
                )
        elif name == "imagenetv2":
            for i in range(te):
                _write_image(
                    ddir / "imagenetv2-matched-frequency-format-val" / str(label) / f"{i:040x}.jpeg", label
                )
        elif name == "imagenet_sketch":
            for i in range(te):
                _write_image(ddir / "images" / wnid / f"sketch_{i + 1}.JPEG", label)
        else:
            sub = "imagenet-a" if name == "imagenet_a" else "imagenet-r"
            for i in range(te):
                fname = f"0.{label:03d}{i:03d}_{classname} _ {classname}_0.5.jpg"  # real -A names have spaces
                _write_image(ddir / sub / wnid / (fname if name == "imagenet_a" else f"art_{i}.jpg"), label)
            (ddir / sub / "README.txt").write_text("a README, not a class folder\n")


# --- the same datasets as their sources publish them (archives in the upstream layouts), for `data download` ---
UPSTREAM_NAMES = (
    "dtd", "oxford_pets", "oxford_flowers", "eurosat", "caltech101", "food101", "fgvc_aircraft", "sun397",
    "ucf101", "stanford_cars",
)  # fmt: skip


def _pack(archive: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` (member name -> bytes) as a zip or a (gzip) tar, by the archive's file name."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".zip"):
        import zipfile

        with zipfile.ZipFile(archive, "w") as zf:
            for name, data in sorted(files.items()):
                zf.writestr(name, data)
        return
    import tarfile

    mode = "w" if archive.name.endswith(".tar") else "w:gz"
    with tarfile.open(archive, mode) as tf:
        dirs = sorted({"/".join(n.split("/")[:i]) for n in files for i in range(1, n.count("/") + 1)})
        for d in dirs:  # real archives list their folders too
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tf.addfile(info)
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def _under(ddir: Path, sub: str, prefix: str) -> dict[str, bytes]:
    """Every file below ``ddir/sub`` as ``prefix + path relative to ddir/sub``."""
    base = ddir / sub if sub else ddir
    return {
        prefix + p.relative_to(base).as_posix(): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }


def build_upstream(name: str, served: Path, work: Path, n_classes: int = 4, per_class=(6, 3, 3)) -> Path:
    """Write dataset ``name`` as its sources publish it into ``served/<folder>/`` (the archives under their
    published file names, plus CoOp's split file), from a miniature CoOp tree built under ``work``.

    Returns the CoOp-layout tree that a download must reproduce (``work/<folder>``).
    """
    ddir = build_tree(name, work, n_classes, per_class)
    out = Path(served) / FOLDERS[name]
    out.mkdir(parents=True, exist_ok=True)
    split = ddir / SPLIT_FILES[name] if name in SPLIT_FILES else None
    if split is not None:
        (out / split.name).write_bytes(split.read_bytes())
    if name == "dtd":
        files = _under(ddir, "images", "dtd/images/")
        files["dtd/labels/labels_joint_anno.txt"] = b"banded/banded_0001.jpg banded\n"
        files["dtd/imdb/imdb.mat"] = b"MATLAB 5.0 MAT-file"
        _pack(out / "dtd-r1.0.1.tar.gz", files)
    elif name == "oxford_pets":
        _pack(out / "images.tar.gz", _under(ddir, "images", "images/"))
        _pack(out / "annotations.tar.gz", {"annotations/list.txt": b"#\n", "annotations/trainval.txt": b""})
    elif name == "oxford_flowers":
        _pack(out / "102flowers.tgz", _under(ddir, "jpg", "jpg/"))
        (out / "imagelabels.mat").write_bytes(b"MATLAB 5.0 MAT-file, labels")
        (out / "cat_to_name.json").write_bytes((ddir / "cat_to_name.json").read_bytes())
    elif name == "eurosat":
        _pack(out / "EuroSAT.zip", _under(ddir, "2750", "2750/"))
    elif name == "caltech101":
        inner = work / "101_ObjectCategories.tar.gz"
        _pack(inner, _under(ddir, "101_ObjectCategories", "101_ObjectCategories/"))
        annotations = work / "Annotations.tar"
        _pack(annotations, {"Annotations/airplanes/annotation_0001.mat": b"x"})
        _pack(out / "caltech-101.zip", {
            "caltech-101/101_ObjectCategories.tar.gz": inner.read_bytes(),
            "caltech-101/Annotations.tar": annotations.read_bytes(),
            "caltech-101/show_annotation.m": b"% matlab\n",
        })  # fmt: skip
    elif name == "food101":
        files = _under(ddir, "images", "food-101/images/")
        files["food-101/meta/classes.txt"] = "".join(s + "\n" for s, _ in classes(name, n_classes)).encode()
        files["food-101/README.txt"] = b"Food-101\n"
        files["food-101/license_agreement.txt"] = b"terms\n"
        _pack(out / "food-101.tar.gz", files)
    elif name == "fgvc_aircraft":
        files = _under(ddir, "", "fgvc-aircraft-2013b/data/")
        files["fgvc-aircraft-2013b/README.html"] = b"<html></html>"
        files["fgvc-aircraft-2013b/evaluation.m"] = b"% matlab\n"
        _pack(out / "fgvc-aircraft-2013b.tar.gz", files)
    elif name == "sun397":
        files = _under(ddir, "SUN397", "SUN397/")
        files["SUN397/ClassName.txt"] = "".join(s + "\n" for s, _ in classes(name, n_classes)).encode()
        files["SUN397/README.txt"] = b"SUN397\n"
        _pack(out / "SUN397.tar.gz", files)
    elif name == "ucf101":
        _pack(out / "UCF-101-midframes.zip", _under(ddir, "UCF-101-midframes", "UCF-101-midframes/"))
    elif name == "stanford_cars":
        _pack(out / "cars_train.tgz", _under(ddir, "cars_train", "cars_train/"))
        _pack(out / "cars_test.tgz", _under(ddir, "cars_test", "cars_test/"))
        _pack(out / "car_devkit.tgz", {"devkit/cars_meta.mat": b"x", "devkit/README.txt": b"devkit\n"})
        (out / "cars_test_annos_withlabels.mat").write_bytes(b"MATLAB 5.0 MAT-file, test labels")
    else:
        raise ValueError(f"no upstream layout for {name!r}")
    return ddir


def build_folder_tree(root: Path, names=("red_fox", "snowy owl", "blue_jay"), per_class: int = 12) -> Path:
    """An ImageFolder tree ``root/<class>/<n>.jpg`` (a dozen images per class by default) for ``dataset=folder``."""
    for label, name in enumerate(names):
        for i in range(per_class):
            _write_image(Path(root) / name / f"{i:03d}.jpg", label)
    return Path(root)
