"""`prograd-pl data download` against a loopback HTTP server started here, serving archives in the real upstream
layouts of ten datasets; failures (truncated archive, wrong checksum, a server dying mid-file, a concurrent download)
each end in one sentence with nothing half-written looking finished, and a rerun resumes.

Also `data prepare` (generated splits, ImageNet from ILSVRC folders), `data list`/`--help` and the packaged guide.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from data_trees import FOLDERS, UPSTREAM_NAMES, build_tree, build_upstream, tree_sizes

from prograd_pl.__main__ import cli
from prograd_pl.data import registry
from prograd_pl.data.check import check_dataset
from prograd_pl.data.download import STATE_DIR, DownloadError, download_dataset, file_lock, is_finished
from prograd_pl.data.manifest import MANIFESTS, DatasetManifest
from prograd_pl.data.registry import DATASETS, get_dataset_info, load_dataset

ROOT = Path(__file__).resolve().parents[1]


# ---- a loopback server with HTTP Range and scripted misbehaviour ----------------------------------------------
class Server:
    """Serves ``root`` on 127.0.0.1; ``die_after[path] = n`` closes the connection after n bytes of that file,
    ``delay[path] = s`` sleeps s seconds per 4 KB. Records each request's path and Range header."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.die_after: dict[str, int] = {}
        self.delay: dict[str, float] = {}
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                server.requests.append((self.path, self.headers.get("Range")))
                path = server.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                start = 0
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and rng.endswith("-"):
                    start = int(rng[6:-1])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                limit = server.die_after.pop(self.path, None)
                if limit is not None:
                    self.wfile.write(body[:limit])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                pause = server.delay.get(self.path, 0.0)
                for i in range(0, len(body), 4096):
                    self.wfile.write(body[i : i + 4096])
                    if pause:
                        time.sleep(pause)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path: Path):
    server = Server(tmp_path / "served")
    yield server
    server.close()


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def local_manifest(name: str, server: Server, drop_checksums: bool = False) -> DatasetManifest:
    """The real manifest of ``name`` with each file's URL on the loopback server; a published MD5 is replaced by the
    generated file's (the real one would not match the miniature), absent checksums stay absent."""
    real = MANIFESTS[name]
    files = []
    for f in real.files:
        path = server.root / real.folder / f.name
        if not path.is_file():
            if f.copy_from:  # copied from a sibling dataset, not downloaded
                files.append(f)
            continue
        files.append(replace(f, url=f"{server.url}/{real.folder}/{f.name}",
                             md5=None if (drop_checksums or f.md5 is None) else md5(path)))  # fmt: skip
    return replace(real, files=tuple(files))


def expect_tree_sizes(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setitem(registry.DATASETS, name, replace(DATASETS[name], n_classes=4, sizes=tree_sizes(name)))


def assert_nothing_finished(dataset_dir: Path, name: str) -> None:
    """No file of ``name`` looks finished: no markers, no unpacked image folders, no complete archive."""
    markers = list((dataset_dir / STATE_DIR).glob("*.json")) if (dataset_dir / STATE_DIR).is_dir() else []
    assert markers == []
    assert not list(dataset_dir.glob("*/*.jpg"))
    ok, _ = check_dataset(get_dataset_info(name), dataset_dir.parent)
    assert not ok


# ---- every dataset's upstream layout ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", UPSTREAM_NAMES)
def test_download_upstream_layouts(name: str, served: Server, tmp_path: Path, monkeypatch) -> None:
    """Fetch, verify, unpack into the reader's layout; `data check` passes and the reader reads the same data."""
    expected = build_upstream(name, served.root, tmp_path / "reference")
    data = tmp_path / "data"
    manifest = local_manifest(name, served)
    lines: list[str] = []
    outcomes = download_dataset(manifest, data, out=lines.append)
    assert all(o.status == "fetched" for o in outcomes), outcomes
    expect_tree_sizes(monkeypatch, name)
    ok, report = check_dataset(get_dataset_info(name), data)
    assert ok, report
    got, want = load_dataset(name, data), load_dataset(name, expected.parent)
    rel = lambda items, base: [(os.path.relpath(d.path, base), d.label, d.classname) for d in items]  # noqa: E731
    for split in ("train", "val", "test"):
        assert rel(getattr(got, split), data / FOLDERS[name]) == rel(getattr(want, split), expected)
    assert not any(
        p.suffix in (".gz", ".tgz", ".zip", ".tar", ".part") for p in (data / FOLDERS[name]).iterdir()
    )
    for f in manifest.files:
        assert is_finished(data / FOLDERS[name], f)
    # a rerun finds everything in place and fetches nothing
    before = len(served.requests)
    assert {o.status for o in download_dataset(manifest, data, out=lines.append)} == {"present"}
    assert len(served.requests) == before


def test_download_command_with_mirror(served: Server, tmp_path: Path, monkeypatch, capsys) -> None:
    """The real manifests through the command line: ucf101 (Google Drive only) and fgvc_aircraft (no published
    checksum) from a mirror; without a mirror the command lists what to get and where to put it."""
    for name in ("ucf101", "fgvc_aircraft"):
        build_upstream(name, served.root, tmp_path / "reference")
        expect_tree_sizes(monkeypatch, name)
    data = tmp_path / "data"
    assert cli(["data", "download", "ucf101", "--mirror", served.url, "--data-root", str(data)]) == 0
    assert "ucf101: complete: 4 classes" in capsys.readouterr().out
    assert cli(["data", "download", "ucf101", "--data-root", str(tmp_path / "other")]) == 1
    out, err = capsys.readouterr()
    dest = tmp_path / "other" / "ucf101"
    assert f"put it at {dest / 'UCF-101-midframes.zip'}" in out and "drive.google.com" in out
    assert f"put it at {dest / 'split_zhou_UCF101.json'}" in out
    assert err.strip().count("\n") == 0 and err.startswith("prograd_pl: error: ucf101 is incomplete")
    assert check_dataset(get_dataset_info("ucf101"), data)[0]
    # a mirror may be a local folder too
    assert (
        cli(["data", "download", "fgvc_aircraft", "--mirror", str(served.root), "--data-root", str(data)])
        == 0
    )
    assert check_dataset(get_dataset_info("fgvc_aircraft"), data)[0]


def test_command_line_download_subprocess(served: Server, tmp_path: Path) -> None:
    """`prograd-pl data download` as a user types it (the published class counts fail `data check`: exit 1,
    after the files are in place)."""
    build_upstream("ucf101", served.root, tmp_path / "reference")
    proc = subprocess.run(
        [sys.executable, "-m", "prograd_pl", "data", "download", "ucf101", "--mirror", served.url,
         "--data-root", str(tmp_path / "data")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "ucf101: incomplete: 4 classes, expected 101" in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / "data" / "ucf101" / "UCF-101-midframes").is_dir()


# ---- failures: one sentence each, nothing half-written looking finished -----------------------------------------
def _one_sentence(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text and text.endswith(".")
    return text


def test_truncated_archive(served: Server, tmp_path: Path) -> None:
    build_upstream("dtd", served.root, tmp_path / "reference")
    archive = served.root / "dtd" / "dtd-r1.0.1.tar.gz"
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # the server's copy is cut
    data = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        download_dataset(local_manifest("dtd", served, drop_checksums=True), data, out=lambda s: None)
    text = _one_sentence(info.value)
    assert "damaged or truncated" in text and "deleted it, run again" in text
    assert_nothing_finished(data / "dtd", "dtd")
    assert not (data / "dtd" / "dtd-r1.0.1.tar.gz").exists() and not list((data / "dtd").glob("*.part"))
    assert not list((data / "dtd" / STATE_DIR).glob("staging-*"))


def test_wrong_checksum(served: Server, tmp_path: Path) -> None:
    build_upstream("dtd", served.root, tmp_path / "reference")
    manifest = local_manifest("dtd", served)
    wrong = replace(manifest, files=(replace(manifest.files[0], md5="0" * 32), *manifest.files[1:]))
    data = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        download_dataset(wrong, data, out=lambda s: None)
    text = _one_sentence(info.value)
    assert "MD5" in text and "expected 00000000" in text and "torchvision.datasets.DTD" in text
    assert_nothing_finished(data / "dtd", "dtd")
    assert not list((data / "dtd").glob("dtd-r1.0.1.tar.gz*"))


def test_server_dies_mid_file_then_rerun_resumes(served: Server, tmp_path: Path, monkeypatch) -> None:
    build_upstream("eurosat", served.root, tmp_path / "reference")
    manifest = local_manifest("eurosat", served)
    path = f"/eurosat/{manifest.files[0].name}"
    size = (served.root / path.lstrip("/")).stat().st_size
    served.die_after[path] = size // 3
    data = tmp_path / "data"
    with pytest.raises(DownloadError) as info:
        download_dataset(manifest, data, out=lambda s: None)
    text = _one_sentence(info.value)
    assert f"stopped at {size // 3} of {size} bytes" in text and "run the command again to resume" in text
    part = data / "eurosat" / "EuroSAT.zip.part"
    assert part.stat().st_size == size // 3
    assert_nothing_finished(data / "eurosat", "eurosat")
    assert not (data / "eurosat" / "EuroSAT.zip").exists()
    # the rerun asks only for the rest, verifies the whole file and unpacks it
    download_dataset(manifest, data, out=lambda s: None)
    assert (path, f"bytes={size // 3}-") in served.requests
    expect_tree_sizes(monkeypatch, "eurosat")
    assert check_dataset(get_dataset_info("eurosat"), data)[0]
    assert not part.exists()


def test_concurrent_download_of_the_same_file(served: Server, tmp_path: Path, monkeypatch) -> None:
    """A second download while the first holds the file's lock stops at once with one sentence; the first one
    (another process) finishes normally."""
    build_upstream("ucf101", served.root, tmp_path / "reference")
    served.delay["/ucf101/UCF-101-midframes.zip"] = 0.3  # a few seconds in which the lock is held
    data = tmp_path / "data"
    first = subprocess.Popen(
        [sys.executable, "-m", "prograd_pl", "data", "download", "ucf101", "--mirror", served.url,
         "--data-root", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    part = data / "ucf101" / "UCF-101-midframes.zip.part"
    deadline = time.time() + 60
    while not part.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert part.exists(), first.communicate()
    manifest = MANIFESTS["ucf101"]
    with pytest.raises(DownloadError) as info:
        download_dataset(manifest, data, mirror=served.url, out=lambda s: None)
    text = _one_sentence(info.value)
    assert text.startswith("another download of") and "pid" in text and "let it finish" in text
    out, err = first.communicate(timeout=120)
    # the files are in place; only the published class count differs from the miniature's
    assert "ucf101: incomplete: 4 classes, expected 101" in out, out + err
    expect_tree_sizes(monkeypatch, "ucf101")
    assert check_dataset(get_dataset_info("ucf101"), data)[0]


def test_lock_is_released_when_the_holder_dies(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with file_lock(lock, "x"):
        with pytest.raises(DownloadError):
            with file_lock(lock, "x"):
                pass
    with file_lock(lock, "x"):  # released on exit (and by the OS when a process dies)
        pass


def test_hand_placed_files_are_checked_and_unpacked(served: Server, tmp_path: Path, monkeypatch) -> None:
    """No mirror: the archive and split placed by hand where the message said are verified and unpacked."""
    build_upstream("stanford_cars", served.root, tmp_path / "reference")
    data = tmp_path / "data"
    lines: list[str] = []
    with pytest.raises(DownloadError) as info:
        download_dataset(MANIFESTS["stanford_cars"], data, out=lines.append)
    assert "stanford_cars is incomplete" in _one_sentence(info.value)
    assert any("cars_train.tgz (MD5 065e5b463ae28d29e77c1b4b166cfe61)" in line for line in lines)
    for f in MANIFESTS["stanford_cars"].files:
        (data / "stanford_cars" / f.name).write_bytes((served.root / "stanford_cars" / f.name).read_bytes())
    manifest = replace(MANIFESTS["stanford_cars"], files=tuple(
        replace(f, md5=md5(served.root / "stanford_cars" / f.name) if f.md5 else None)
        for f in MANIFESTS["stanford_cars"].files))  # fmt: skip
    download_dataset(manifest, data, out=lines.append)
    expect_tree_sizes(monkeypatch, "stanford_cars")
    assert check_dataset(get_dataset_info("stanford_cars"), data)[0]
    # a hand-placed file with the wrong bytes is refused in one sentence
    with pytest.raises(DownloadError) as info:
        download_dataset(MANIFESTS["stanford_cars"], tmp_path / "bad", out=lines.append)
    (tmp_path / "bad" / "stanford_cars" / "cars_train.tgz").write_bytes(b"not the archive")
    with pytest.raises(DownloadError) as info:
        download_dataset(MANIFESTS["stanford_cars"], tmp_path / "bad", out=lines.append)
    assert "the MD5 of" in _one_sentence(info.value)


def test_optional_file_missing_on_the_mirror_is_skipped(served: Server, tmp_path: Path, monkeypatch) -> None:
    build_upstream("oxford_pets", served.root, tmp_path / "reference")
    (served.root / "oxford_pets" / "annotations.tar.gz").unlink()  # a mirror without the optional annotations
    real = MANIFESTS["oxford_pets"]
    images = served.root / "oxford_pets" / "images.tar.gz"
    manifest = replace(real, files=tuple(
        replace(f, md5=md5(images)) if f.name == images.name else f for f in real.files))  # fmt: skip
    lines: list[str] = []
    outcomes = download_dataset(manifest, tmp_path / "data", mirror=served.url, out=lines.append)
    statuses = {o.remote.name: o.status for o in outcomes}
    assert statuses == {"images.tar.gz": "fetched", "annotations.tar.gz": "skipped",
                        "split_zhou_OxfordPets.json": "fetched"}  # fmt: skip
    assert any("skipped the optional annotations.tar.gz" in line and "HTTP 404" in line for line in lines)
    expect_tree_sizes(monkeypatch, "oxford_pets")
    assert check_dataset(get_dataset_info("oxford_pets"), tmp_path / "data")[0]


def test_variant_classnames_copied_from_imagenet(served: Server, tmp_path: Path, monkeypatch) -> None:
    build_tree("imagenet_a", tmp_path / "reference")
    ref = tmp_path / "reference" / "imagenet-adversarial"
    from data_trees import _pack, _under

    _pack(served.root / "imagenet-adversarial" / "imagenet-a.tar", _under(ref, "imagenet-a", "imagenet-a/"))
    data = tmp_path / "data"
    (data / "imagenet").mkdir(parents=True)
    (data / "imagenet" / "classnames.txt").write_bytes((ref / "classnames.txt").read_bytes())
    outcomes = download_dataset(local_manifest("imagenet_a", served), data, out=lambda s: None)
    assert [o.status for o in outcomes] == ["fetched", "copied"]
    expect_tree_sizes(monkeypatch, "imagenet_a")
    assert check_dataset(get_dataset_info("imagenet_a"), data)[0]
    # ImageNet-Sketch's zip holds sketch/<wnid>/, which becomes images/<wnid>/
    build_tree("imagenet_sketch", tmp_path / "reference")
    sketch = tmp_path / "reference" / "imagenet-sketch"
    _pack(served.root / "imagenet-sketch" / "ImageNet-Sketch.zip", _under(sketch, "images", "sketch/"))
    download_dataset(local_manifest("imagenet_sketch", served), data, out=lambda s: None)
    expect_tree_sizes(monkeypatch, "imagenet_sketch")
    assert check_dataset(get_dataset_info("imagenet_sketch"), data)[0]


# ---- the manifest itself ---------------------------------------------------------------------------------------
def test_manifest_facts() -> None:
    assert set(MANIFESTS) == set(DATASETS)
    for m in MANIFESTS.values():
        for f in m.files:
            assert f.url is None or f.url.startswith(("http://", "https://"))
            assert (f.md5 is None) or (len(f.md5) == 32 and f.checksum_source), f.name
            assert f.url or f.get_it or f.copy_from, f"{m.name}/{f.name}: no source and no instructions"
    # no live original source: these come only through --mirror or by hand
    assert all(f.url is None for f in MANIFESTS["stanford_cars"].files)
    assert all(f.url is None for f in MANIFESTS["ucf101"].files)
    assert all(f.url is None for m in MANIFESTS.values() for f in m.files if f.name.startswith("split_zhou_"))
    assert MANIFESTS["dtd"].files[0].md5 == "fff73e5086ae6bdbea199a49dfb8a4c1"


# ---- data prepare -----------------------------------------------------------------------------------------------
def test_make_split_is_generated_marked_deterministic_and_read_on_request(tmp_path: Path, capsys) -> None:
    from conftest import compose

    from prograd_pl.app.identity import identity

    data = tmp_path / "data"
    build_tree("dtd", data, n_classes=4, per_class=(6, 3, 3))
    paper = (data / "dtd" / "split_zhou_DescribableTextures.json").read_bytes()
    assert cli(["data", "prepare", "dtd", "--make-split", "--data-root", str(data)]) == 0
    generated = data / "dtd" / "split_prograd_DescribableTextures.json"
    assert "not the paper's" in capsys.readouterr().out
    raw = json.loads(generated.read_text())
    assert raw["generated"]["paper_split"] is False and raw["generated"]["seed"] == 1
    sizes = [len(raw[k]) for k in ("train", "val", "test")]
    assert sizes == [24, 8, 16]  # 12 per class: 6/2/4 (50/20/30 %, rounded)
    first = generated.read_bytes()
    assert cli(["data", "prepare", "dtd", "--make-split", "--data-root", str(data)]) == 0
    assert generated.read_bytes() == first
    assert cli(["data", "prepare", "dtd", "--make-split", "--seed", "2", "--data-root", str(data)]) == 0
    assert generated.read_bytes() != first
    assert (data / "dtd" / "split_zhou_DescribableTextures.json").read_bytes() == paper

    splits = load_dataset("dtd", data, {"split": "generated"})
    assert len(splits.train) == 24 and splits.fewshot_dir.endswith(tuple("0123456789abcdef"))
    assert load_dataset("dtd", data, {"split": "paper"}).train != splits.train
    base = ["dataset=dtd", "model=tiny", f"data_root={data}", f"output_root={tmp_path / 'out'}"]
    paper_id, generated_id = identity(compose(base)), identity(compose([*base, "dataset.split=generated"]))
    assert paper_id["dataset"]["split_sha256"] == hashlib.sha256(paper).hexdigest()
    assert generated_id["dataset"]["split_sha256"] == hashlib.sha256(generated.read_bytes()).hexdigest()
    assert cli(["data", "prepare", "fgvc_aircraft", "--make-split", "--data-root", str(data)]) == 1
    assert "official" in capsys.readouterr().err


@pytest.mark.parametrize(
    "name", ["caltech101", "oxford_pets", "food101", "sun397", "dtd", "eurosat", "ucf101"]
)
def test_make_split_from_each_upstream_layout(name: str, tmp_path: Path) -> None:
    """Every image of the dataset's folders lands in exactly one split, under the dataset's final class names."""
    from data_trees import expected_classnames

    build_tree(name, tmp_path, n_classes=4, per_class=(6, 3, 3))
    assert cli(["data", "prepare", name, "--make-split", "--data-root", str(tmp_path)]) == 0
    splits = load_dataset(name, tmp_path, {"split": "generated"})
    paper = load_dataset(name, tmp_path)
    assert set(splits.classnames) == set(expected_classnames(name))
    every = sorted(d.path for d in [*splits.train, *splits.val, *splits.test])
    assert every == sorted(d.path for d in [*paper.train, *paper.val, *paper.test])
    assert [len(splits.train), len(splits.val), len(splits.test)] == [24, 8, 16]


def test_make_split_from_devkit_files(tmp_path: Path) -> None:
    """Stanford Cars (devkit .mat annotations) and Flowers (imagelabels.mat + cat_to_name.json)."""
    import numpy as np
    import scipy.io
    from data_trees import _write_image

    cars = tmp_path / "stanford_cars"
    (cars / "devkit").mkdir(parents=True)
    names = ["Tesla Model S Sedan 2012", "BMW M3 Coupe 2012"]
    scipy.io.savemat(cars / "devkit" / "cars_meta.mat", {"class_names": np.array(names, dtype=object)})
    for folder, annos in (("cars_train", cars / "devkit" / "cars_train_annos.mat"),
                          ("cars_test", cars / "cars_test_annos_withlabels.mat")):  # fmt: skip
        rows = []
        for i in range(10):
            _write_image(cars / folder / f"{i + 1:05d}.jpg", i % 2)
            rows.append((f"{i + 1:05d}.jpg", i % 2 + 1))
        scipy.io.savemat(annos, {"annotations": np.array(rows, dtype=[("fname", "O"), ("class", "O")])})
    flowers = tmp_path / "oxford_flowers"
    flowers.mkdir()
    scipy.io.savemat(flowers / "imagelabels.mat", {"labels": np.array([1, 2, 3] * 4)})
    (flowers / "cat_to_name.json").write_text(
        json.dumps({"1": "pink primrose", "2": "sweet pea", "3": "lotus"})
    )
    for i in range(12):
        _write_image(flowers / "jpg" / f"image_{i + 1:05d}.jpg", i % 3)
    for name in ("stanford_cars", "oxford_flowers"):
        assert cli(["data", "prepare", name, "--make-split", "--data-root", str(tmp_path)]) == 0
    cars_splits = load_dataset("stanford_cars", tmp_path, {"split": "generated"})
    assert cars_splits.classnames == ["2012 Tesla Model S Sedan", "2012 BMW M3 Coupe"]
    assert sum(map(len, (cars_splits.train, cars_splits.val, cars_splits.test))) == 20
    assert {d.path.split("/")[-2] for d in cars_splits.test} <= {"cars_train", "cars_test"}
    flower_splits = load_dataset("oxford_flowers", tmp_path, {"split": "generated"})
    assert flower_splits.classnames == ["pink primrose", "sweet pea", "lotus"]


def test_prepare_imagenet_from_ilsvrc_folders(tmp_path: Path, monkeypatch, capsys) -> None:
    from data_trees import _jpeg
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    src = tmp_path / "ILSVRC2012"
    wnids = [f"n{1000000 + 7 * i:08d}" for i in range(1000)]
    rows = ["ImageId,PredictionString"]
    for i, w in enumerate(wnids):
        (src / "train" / w).mkdir(parents=True)
        (src / "train" / w / f"{w}_1.JPEG").write_bytes(_jpeg(i % 7))
        name = f"ILSVRC2012_val_{i + 1:08d}"
        (src / "val").mkdir(exist_ok=True)
        (src / "val" / f"{name}.JPEG").write_bytes(_jpeg(i % 7))
        rows.append(f"{name},{w} 1 2 3 4")
    (src / "LOC_val_solution.csv").write_text("\n".join(rows) + "\n")
    data = tmp_path / "data"
    monkeypatch.setitem(registry.DATASETS, "imagenet", replace(DATASETS["imagenet"], sizes=(1000, 0, 1000)))
    assert cli(["data", "prepare", "imagenet", "--from", str(src), "--data-root", str(data)]) == 0
    assert "complete: 1000 classes" in capsys.readouterr().out
    lines = (data / "imagenet" / "classnames.txt").read_text().splitlines()
    assert lines[0] == f"{wnids[0]} {IMAGENET_CLASSNAMES[0]}" and len(lines) == 1000
    splits = load_dataset("imagenet", data)
    assert splits.classnames[:3] == list(IMAGENET_CLASSNAMES[:3]) and len(splits.test) == 1000


# ---- the guide in the package ------------------------------------------------------------------------------------
def test_guide_ships_with_the_package_and_the_commands_show_it(capsys) -> None:
    from prograd_pl.data.cli import guide_text

    assert "## Your own dataset" in guide_text() and "--mirror" in guide_text()
    assert (ROOT / "docs" / "DATASETS.md").read_text() == guide_text()
    assert cli(["data", "--help"]) == 0
    out = capsys.readouterr().out
    assert (
        "download <dataset>|all" in out and "dataset=folder dataset.path=<dir>" in out and "# Datasets" in out
    )
    assert cli(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "stanford_cars" in out and "CC BY-SA 4.0" in out
    assert cli(["data", "list", "dtd"]) == 0
    out = capsys.readouterr().out
    assert "fff73e5086ae6bdbea199a49dfb8a4c1" in out and "Oxford VGG textures page" in out
    assert cli(["data", "list", "fgvc_aircraft"]) == 0
    assert "no published checksum" in capsys.readouterr().out
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "data/DATASETS.md" in data["prograd_pl"]
