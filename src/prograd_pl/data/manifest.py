"""Where every file of every dataset comes from: one :class:`Remote` per file, grouped per dataset.

URLs are the original sources (those torchvision's dataset classes use where torchvision has one); checksums are
the published ones (torchvision's MD5s) and ``None`` where nothing is published. Files without a live original
source (Stanford Cars, the UCF101 middle frames, CoOp's ``split_zhou_*.json`` files, which live on Google Drive)
have ``url=None``: they come only from a mirror (``--mirror``), laid out as ``<mirror>/<dataset folder>/<name>``,
or by hand (``get_it`` says from where).

Archives name which of their members go where: ``members`` maps a member-path prefix in the archive to a
destination prefix under the dataset folder (members under no prefix are skipped); ``inner`` names archives inside
the archive that are unpacked in turn with their own ``members``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Members = tuple[tuple[str, str], ...]

COOP_PAGE = "CoOp's DATASETS.md (github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md)"
TORCHVISION = "torchvision.datasets"


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view"


@dataclass(frozen=True)
class Remote:
    """One file of a dataset: where it comes from, how it is checked, where its content goes."""

    name: str  # file name as published; also its name on a mirror (<mirror>/<folder>/<name>)
    url: str | None  # original source; None: no live original (mirror or by hand)
    md5: str | None = None  # published checksum (see checksum_source); None: none published
    sha256: str | None = None
    size: int | None = None  # exact size in bytes where published
    checksum_source: str = ""  # who publishes the checksum ("" = no published checksum)
    get_it: str = ""  # where a person finds the file when there is no live url
    members: Members = ()  # archive: (member prefix, destination prefix); () = a plain file kept as <name>
    inner: tuple[tuple[str, Members], ...] = ()  # archives inside this archive, unpacked in turn
    required: bool = True  # the reader needs it (else: optional extra, e.g. annotations)
    copy_from: tuple[str, ...] = ()  # local sources tried first, relative to the data root

    @property
    def is_archive(self) -> bool:
        return bool(self.members or self.inner)

    def destinations(self) -> list[str]:
        """Top-level entries this file creates in the dataset folder (an archive's destinations, or its name)."""
        if not self.is_archive:
            return [self.name]
        prefixes = [dest for _, dest in self.members] + [d for _, ms in self.inner for _, d in ms]
        return sorted({p.strip("/").split("/")[0] for p in prefixes if p.strip("/")})


@dataclass(frozen=True)
class DatasetManifest:
    """All files of one dataset, with the facts a user needs before downloading it."""

    name: str  # registry name (dataset=...)
    folder: str  # folder under the data root
    homepage: str
    licence: str
    approx_size: str  # human-readable download size, "" when not known
    files: tuple[Remote, ...] = field(default_factory=tuple)
    note: str = ""

    @property
    def downloadable(self) -> bool:
        """Every required file has a live original source (or is copied from a sibling dataset)."""
        return all(f.url is not None or f.copy_from for f in self.files if f.required)


def _split(name: str, drive_id: str) -> Remote:
    return Remote(name, None, get_it=f"{COOP_PAGE}, Google Drive link {_drive(drive_id)}")


_IMAGENET_CLASSNAMES = Remote(
    "classnames.txt",
    None,
    get_it=f"{COOP_PAGE}, Google Drive link {_drive('1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF')}, or "
    "`prograd-pl data prepare imagenet --from <ILSVRC folder>`, which writes it",
    copy_from=("imagenet/classnames.txt", "imagenet-sketch/classnames.txt", "imagenetv2/classnames.txt",
               "imagenet-adversarial/classnames.txt", "imagenet-rendition/classnames.txt"),
)  # fmt: skip

_VGG = "https://www.robots.ox.ac.uk/~vgg/data"
_CARS = "https://ai.stanford.edu/~jkrause"

MANIFESTS: dict[str, DatasetManifest] = {
    m.name: m
    for m in (
        DatasetManifest(
            "imagenet",
            "imagenet",
            "https://image-net.org",
            "ImageNet terms of access (non-commercial research)",
            "about 150 GB",
            files=(),
            note="not downloadable (registration needed): get ILSVRC-2012 train/val from image-net.org, then "
            "`prograd-pl data prepare imagenet --from <folder with train/ and val/>`",
        ),
        DatasetManifest(
            "caltech101",
            "caltech-101",
            "https://data.caltech.edu/records/mzrjq-6wc02",
            "CC BY 4.0",
            "about 130 MB",
            files=(
                Remote(
                    "caltech-101.zip",
                    "https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
                    md5="3138e1922a9193bfa496528edbbc45d0",
                    checksum_source=f"{TORCHVISION}.Caltech101",
                    inner=(
                        (
                            "caltech-101/101_ObjectCategories.tar.gz",
                            (("101_ObjectCategories/", "101_ObjectCategories/"),),
                        ),
                    ),
                ),
                _split("split_zhou_Caltech101.json", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
            ),
        ),  # fmt: skip
        DatasetManifest(
            "oxford_pets",
            "oxford_pets",
            f"{_VGG}/pets/",
            "CC BY-SA 4.0",
            "about 800 MB",
            files=(
                Remote(
                    "images.tar.gz",
                    f"{_VGG}/pets/data/images.tar.gz",
                    md5="5c4f3ee8e5d25df40f4fd59a7f44e54c",
                    checksum_source=f"{TORCHVISION}.OxfordIIITPet",
                    members=(("images/", "images/"),),
                ),
                Remote(
                    "annotations.tar.gz",
                    f"{_VGG}/pets/data/annotations.tar.gz",
                    md5="95a8c909bbe2e81eed6a22bccdf3f68f",
                    checksum_source=f"{TORCHVISION}.OxfordIIITPet",
                    members=(("annotations/", "annotations/"),),
                    required=False,
                ),
                _split("split_zhou_OxfordPets.json", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
            ),
        ),  # fmt: skip
        DatasetManifest(
            "stanford_cars",
            "stanford_cars",
            f"{_CARS}/cars/car_dataset.html",
            "ImageNet terms of use (non-commercial research)",
            "about 1.9 GB",
            files=(
                Remote(
                    "cars_train.tgz",
                    None,
                    md5="065e5b463ae28d29e77c1b4b166cfe61",
                    checksum_source=f"{TORCHVISION}.StanfordCars (up to 0.15)",
                    get_it=f"the original {_CARS}/car196/cars_train.tgz is offline; a copy with this MD5",
                    members=(("cars_train/", "cars_train/"),),
                ),
                Remote(
                    "cars_test.tgz",
                    None,
                    md5="4ce7ebf6a94d07f1952d94dd34c4d501",
                    checksum_source=f"{TORCHVISION}.StanfordCars (up to 0.15)",
                    get_it=f"the original {_CARS}/car196/cars_test.tgz is offline; a copy with this MD5",
                    members=(("cars_test/", "cars_test/"),),
                ),
                Remote(
                    "car_devkit.tgz",
                    None,
                    md5="c3b158d763b6e2245038c8ad08e45376",
                    checksum_source=f"{TORCHVISION}.StanfordCars (up to 0.15)",
                    get_it=f"the original {_CARS}/cars/car_devkit.tgz is offline; a copy with this MD5",
                    members=(("devkit/", "devkit/"),),
                    required=False,
                ),
                Remote(
                    "cars_test_annos_withlabels.mat",
                    None,
                    md5="b0a2b23655a3edd16d84508592a98d10",
                    checksum_source=f"{TORCHVISION}.StanfordCars (up to 0.15)",
                    get_it=f"the original {_CARS}/car196/cars_test_annos_withlabels.mat is offline; a copy "
                    "with this MD5",
                    required=False,
                ),
                _split("split_zhou_StanfordCars.json", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
            ),
            note="the original site no longer serves the files: use --mirror or place them by hand",
        ),  # fmt: skip
        DatasetManifest(
            "oxford_flowers",
            "oxford_flowers",
            f"{_VGG}/flowers/102/",
            "not stated (research use)",
            "about 330 MB",
            files=(
                Remote(
                    "102flowers.tgz",
                    f"{_VGG}/flowers/102/102flowers.tgz",
                    md5="52808999861908f626f3c1f4e79d11fa",
                    checksum_source=f"{TORCHVISION}.Flowers102",
                    members=(("jpg/", "jpg/"),),
                ),
                Remote(
                    "imagelabels.mat",
                    f"{_VGG}/flowers/102/imagelabels.mat",
                    md5="e0620be6f572b9609742df49c70aed4d",
                    checksum_source=f"{TORCHVISION}.Flowers102",
                    required=False,
                ),
                Remote(
                    "cat_to_name.json",
                    None,
                    get_it=f"{COOP_PAGE}, Google Drive link {_drive('1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0')}",
                    required=False,
                ),
                _split("split_zhou_OxfordFlowers.json", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
            ),
        ),  # fmt: skip
        DatasetManifest(
            "food101",
            "food-101",
            "https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
            "images under foodspotting.com's terms (see the archive's license_agreement.txt)",
            "about 5 GB",
            files=(
                Remote(
                    "food-101.tar.gz",
                    "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
                    md5="85eeb15f3717b99a5da872d97d918f87",
                    checksum_source=f"{TORCHVISION}.Food101",
                    members=(("food-101/", ""),),
                ),
                _split("split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
            ),
        ),  # fmt: skip
        DatasetManifest(
            "fgvc_aircraft",
            "fgvc_aircraft",
            f"{_VGG}/fgvc-aircraft/",
            "non-commercial research use only",
            "about 2.6 GB",
            files=(
                Remote(
                    "fgvc-aircraft-2013b.tar.gz",
                    f"{_VGG}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                    checksum_source="",
                    members=(("fgvc-aircraft-2013b/data/", ""),),
                ),
            ),
            note="no published checksum (torchvision.datasets.FGVCAircraft has none): the archive is checked by "
            "unpacking it",
        ),  # fmt: skip
        DatasetManifest(
            "sun397",
            "sun397",
            "https://vision.princeton.edu/projects/2010/SUN/",
            "not stated (research use)",
            "about 37 GB",
            files=(
                Remote(
                    "SUN397.tar.gz",
                    "http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                    md5="8ca2778205c41d23104230ba66911c7a",
                    checksum_source=f"{TORCHVISION}.SUN397",
                    members=(("SUN397/", "SUN397/"),),
                ),
                _split("split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
            ),
        ),  # fmt: skip
        DatasetManifest(
            "dtd",
            "dtd",
            f"{_VGG}/dtd/",
            "not stated (research use)",
            "about 600 MB",
            files=(
                Remote(
                    "dtd-r1.0.1.tar.gz",
                    f"{_VGG}/dtd/download/dtd-r1.0.1.tar.gz",
                    md5="fff73e5086ae6bdbea199a49dfb8a4c1",
                    checksum_source=f"{TORCHVISION}.DTD",
                    members=(("dtd/images/", "images/"), ("dtd/labels/", "labels/"), ("dtd/imdb/", "imdb/")),
                ),
                _split("split_zhou_DescribableTextures.json", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
            ),
        ),  # fmt: skip
        DatasetManifest(
            "eurosat",
            "eurosat",
            "https://github.com/phelber/EuroSAT",
            "MIT",
            "about 90 MB",
            files=(
                Remote(
                    "EuroSAT.zip",
                    "https://huggingface.co/datasets/torchgeo/eurosat/resolve/"
                    "c877bcd43f099cd0196738f714544e355477f3fd/EuroSAT.zip",
                    md5="c8fa014336c82ac7804f0398fcb19387",
                    checksum_source=f"{TORCHVISION}.EuroSAT",
                    members=(("2750/", "2750/"),),
                ),
                _split("split_zhou_EuroSAT.json", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
            ),
        ),  # fmt: skip
        DatasetManifest(
            "ucf101",
            "ucf101",
            "https://www.crcv.ucf.edu/data/UCF101.php",
            "not stated (research use)",
            "",
            files=(
                Remote(
                    "UCF-101-midframes.zip",
                    None,
                    get_it=f"{COOP_PAGE}, Google Drive link {_drive('10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O')}",
                    members=(("UCF-101-midframes/", "UCF-101-midframes/"),),
                ),
                _split("split_zhou_UCF101.json", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
            ),
            note="CoOp's middle frames of the UCF101 videos exist only on Google Drive: use --mirror or place them "
            "by hand",
        ),  # fmt: skip
        DatasetManifest(
            "imagenetv2",
            "imagenetv2",
            "https://github.com/modestyachts/ImageNetV2",
            "MIT (repository)",
            "about 1.2 GB",
            files=(
                Remote(
                    "imagenetv2-matched-frequency.tar.gz",
                    "https://huggingface.co/datasets/vaishaal/ImageNetV2/"
                    "resolve/main/imagenetv2-matched-frequency.tar.gz",
                    members=(
                        (
                            "imagenetv2-matched-frequency-format-val/",
                            "imagenetv2-matched-frequency-format-val/",
                        ),
                    ),
                ),
                _IMAGENET_CLASSNAMES,
            ),
        ),  # fmt: skip
        DatasetManifest(
            "imagenet_sketch",
            "imagenet-sketch",
            "https://github.com/HaohanWang/ImageNet-Sketch",
            "MIT (repository)",
            "about 8 GB",
            files=(
                Remote(
                    "ImageNet-Sketch.zip",
                    # the authors' copy on the Hugging Face hub (also on Google Drive, id 1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA)
                    "https://huggingface.co/datasets/songweig/imagenet_sketch/resolve/main/data/ImageNet-Sketch.zip",
                    get_it="the ImageNet-Sketch page (github.com/HaohanWang/ImageNet-Sketch: Google Drive "
                    f"{_drive('1Mj0i5HBthqH1p_yeXzsg22gZduvgoNeA')} or Kaggle)",
                    members=(("sketch/", "images/"),),
                ),
                _IMAGENET_CLASSNAMES,
            ),
        ),  # fmt: skip
        DatasetManifest(
            "imagenet_a",
            "imagenet-adversarial",
            "https://github.com/hendrycks/natural-adv-examples",
            "MIT (repository)",
            "about 700 MB",
            files=(
                Remote(
                    "imagenet-a.tar",
                    "https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
                    members=(("imagenet-a/", "imagenet-a/"),),
                ),
                _IMAGENET_CLASSNAMES,
            ),
        ),  # fmt: skip
        DatasetManifest(
            "imagenet_r",
            "imagenet-rendition",
            "https://github.com/hendrycks/imagenet-r",
            "MIT (repository)",
            "about 2.1 GB",
            files=(
                Remote(
                    "imagenet-r.tar",
                    "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
                    members=(("imagenet-r/", "imagenet-r/"),),
                ),
                _IMAGENET_CLASSNAMES,
            ),
        ),  # fmt: skip
    )
}
"""The manifest of every real dataset, in the registry's order."""
