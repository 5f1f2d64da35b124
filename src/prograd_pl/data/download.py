"""``prograd-pl data download``: fetch, verify and unpack a dataset's files into the layout its reader expects.

Each file of the dataset's manifest (:mod:`prograd_pl.data.manifest`) goes through the same steps, under a lock
file so that a second download of the same file stops with one sentence instead of writing beside the first:

1. download to ``<dataset folder>/<name>.part``, resuming an earlier partial download with an HTTP Range request;
2. check the size and the published checksum (MD5/SHA-256), then rename to ``<name>``;
3. unpack the archive's members into a staging folder, then move them into place; only then write the marker
   ``<dataset folder>/.prograd/<name>.json``, and delete the archive.

A file is finished only when its marker exists: an interrupted download leaves a ``.part`` (resumed next time),
an interrupted unpacking leaves the staging folder (cleared next time), never something that looks complete.
An archive placed by hand at ``<dataset folder>/<name>`` is checked and unpacked the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import socket
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..atomic import atomic_open
from .base import DatasetError
from .manifest import MANIFESTS, DatasetManifest, Members, Remote

STATE_DIR = ".prograd"  # markers, locks and staging folders, inside each dataset folder
CHUNK = 1 << 20
USER_AGENT = "prograd-pl (https://github.com/; dataset download)"


class DownloadError(DatasetError):
    """A download, check or unpacking that failed; the message is one sentence naming the file."""


@dataclass
class Outcome:
    """What happened to one file."""

    remote: Remote
    status: str  # present | fetched | copied | missing (no source: by hand or --mirror) | skipped (optional, failed)
    detail: str = ""


def marker_path(dataset_dir: Path, name: str) -> Path:
    return Path(dataset_dir) / STATE_DIR / f"{name}.json"


def is_finished(dataset_dir: Path, remote: Remote) -> bool:
    """The file's marker exists and everything it recorded is still in place."""
    path = marker_path(dataset_dir, remote.name)
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    entries = marker.get("entries") or [remote.name]
    return all((Path(dataset_dir) / e).exists() for e in entries)


def _write_marker(dataset_dir: Path, remote: Remote, source: str, entries: list[str], digests: dict) -> None:
    record = {
        "name": remote.name,
        "source": source,
        "entries": entries,
        "finished_at": time.time(),
        **digests,
    }
    with atomic_open(marker_path(dataset_dir, remote.name), "w") as fh:
        json.dump(record, fh, indent=1)


# ---- locking ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (released by the OS if the process dies); a second holder fails at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    try:
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no flock (Windows): no protection against a concurrent download
            pass
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise DownloadError(
                f"another download of {what} is running ({holder}, lock {path}); let it finish, then run the "
                "command again."
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        yield
    finally:
        fh.close()


# ---- fetching -----------------------------------------------------------------------------------------------
def source_url(remote: Remote, folder: str, mirror: str | None) -> str | None:
    """Where ``remote`` is fetched from: ``<mirror>/<folder>/<name>`` with a mirror (a URL or a local folder),
    else its original URL (None when it has none)."""
    if mirror:
        base = mirror if "://" in mirror else Path(mirror).expanduser().absolute().as_uri()
        return f"{base.rstrip('/')}/{urllib.parse.quote(folder)}/{urllib.parse.quote(remote.name)}"
    return remote.url


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def download(
    url: str, part: Path, timeout: float = 60.0, report: Callable[[str], None] | None = None
) -> None:
    """Download ``url`` into ``part``, continuing from its current length with an HTTP Range request.

    Raises DownloadError (one sentence) when the source cannot be reached or the transfer stops before the end;
    what arrived stays in ``part`` for the next attempt.
    """
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    name = part.name.removesuffix(".part")
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to fetch: the part is complete (checked next)
            return
        raise DownloadError(
            f"{url} answered HTTP {err.code} ({err.reason}); {name} was not downloaded."
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(
            f"cannot reach {url} ({reason}); check the network, or fetch {name} through --mirror URL."
        ) from None
    with resp:
        status = getattr(resp, "status", 200)
        content_range = resp.headers.get("Content-Range", "")
        resumed = have > 0 and status == 206 and content_range.startswith(f"bytes {have}-")
        if not resumed:
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        got = have
        if report and resumed:
            report(f"  resuming {name} at {_human(have)}")
        last = time.monotonic()
        try:
            with open(part, "ab" if resumed else "wb") as out:
                while True:
                    block = resp.read(CHUNK)
                    if not block:
                        break
                    out.write(block)
                    got += len(block)
                    if report and time.monotonic() - last > 5:
                        last = time.monotonic()
                        report(f"  {name}: {_human(got)}" + (f" of {_human(total)}" if total else ""))
        except (OSError, http.client.HTTPException) as err:
            reason = type(err).__name__ if not str(err) else str(err).splitlines()[0]
            raise DownloadError(
                f"the download of {name} stopped at {got} of {total if total is not None else '?'} bytes "
                f"({reason}); run the command again to resume it."
            ) from None
    if total is not None and got < total:
        raise DownloadError(
            f"the download of {name} stopped at {got} of {total} bytes (the connection closed); run the command "
            "again to resume it."
        )


def file_digests(path: Path) -> dict[str, str]:
    """MD5 and SHA-256 of a file, in one pass."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def verify(path: Path, remote: Remote) -> dict[str, str]:
    """Check size and published checksums of ``path``; returns its digests. Raises DownloadError on a mismatch."""
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise DownloadError(f"{path} has {size} bytes, expected {remote.size}.")
    digests = file_digests(path)
    for algo in ("md5", "sha256"):
        want = getattr(remote, algo)
        if want and digests[algo] != want.lower():
            source = f" (published by {remote.checksum_source})" if remote.checksum_source else ""
            raise DownloadError(f"the {algo.upper()} of {path} is {digests[algo]}, expected {want}{source}.")
    return digests


# ---- unpacking ----------------------------------------------------------------------------------------------
class DamagedArchive(DownloadError):
    """An archive that cannot be read to its end."""


def _target(member: str, members: Members) -> str | None:
    """Destination (relative to the staging folder) of an archive member, or None to skip it."""
    name = member.replace("\\", "/").lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    for prefix, dest in members:
        if prefix and not (name.startswith(prefix) or name == prefix.rstrip("/")):
            continue
        rel = dest + name[len(prefix) :] if name.startswith(prefix) else dest.rstrip("/")
        parts = [p for p in rel.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            return None
        return "/".join(parts)
    return None


def _write_member(src: IO[bytes], dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        shutil.copyfileobj(src, out, CHUNK)


def unpack_members(archive: Path, members: Members, staging: Path, display: str) -> int:
    """Copy the regular files of ``archive`` (tar in any compression, or zip) that ``members`` selects into
    ``staging``; links and special files are skipped. Returns the number of files written."""
    count = 0
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    rel = _target(info.filename, members)
                    if rel is None:
                        continue
                    if info.is_dir():
                        (staging / rel).mkdir(parents=True, exist_ok=True)
                        continue
                    with zf.open(info) as src:
                        _write_member(src, staging / rel)
                    count += 1
        else:
            with tarfile.open(archive, "r:*") as tf:
                for info in tf:
                    rel = _target(info.name, members)
                    if rel is None:
                        continue
                    if info.isdir():
                        (staging / rel).mkdir(parents=True, exist_ok=True)
                    elif info.isfile():
                        src = tf.extractfile(info)
                        if src is not None:
                            with src:
                                _write_member(src, staging / rel)
                            count += 1
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DamagedArchive(f"the archive {display} is damaged or truncated ({reason}).") from None
    return count


def _extract_inner(archive: Path, member: str, dest: Path, display: str) -> bool:
    """Copy one member of an archive (an archive inside it) to ``dest``; False if it is not there."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                if member not in zf.namelist():
                    return False
                with zf.open(member) as src:
                    _write_member(src, dest)
                return True
        with tarfile.open(archive, "r:*") as tf:
            try:
                info = tf.getmember(member)
            except KeyError:
                return False
            src = tf.extractfile(info)
            if src is None:
                return False
            with src:
                _write_member(src, dest)
            return True
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DamagedArchive(f"the archive {display} is damaged or truncated ({reason}).") from None


def unpack(archive: Path, remote: Remote, dataset_dir: Path) -> list[str]:
    """Unpack ``archive`` into ``dataset_dir`` through a staging folder; returns the top-level entries placed.

    The entries an archive owns (e.g. ``images/``) replace earlier copies of themselves, so a rerun after an
    interrupted unpacking starts clean.
    """
    staging = dataset_dir / STATE_DIR / f"staging-{remote.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        count = unpack_members(archive, remote.members, staging, str(archive)) if remote.members else 0
        for member, members in remote.inner:
            inner = staging.parent / f"inner-{Path(member).name}"
            try:
                if not _extract_inner(archive, member, inner, str(archive)):
                    raise DamagedArchive(
                        f"the archive {archive} has no member {member}; it is not {remote.name}."
                    )
                count += unpack_members(inner, members, staging, f"{member} inside {archive}")
            finally:
                inner.unlink(missing_ok=True)
        if count == 0:
            wanted = ", ".join(p for p, _ in remote.members) or ", ".join(m for m, _ in remote.inner)
            raise DamagedArchive(
                f"the archive {archive} holds no files under {wanted}; it is not {remote.name}."
            )
        entries = sorted(os.listdir(staging))
        for entry in entries:
            dest = dataset_dir / entry
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(staging / entry, dest)
        return entries
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# ---- one file, one dataset ----------------------------------------------------------------------------------
def _check_plain(path: Path) -> None:
    """A split or class-name JSON must parse (no checksum is published for them)."""
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise DownloadError(f"{path} is not valid JSON ({str(err).splitlines()[0]}).") from None


def obtain(
    remote: Remote,
    manifest: DatasetManifest,
    data_root: Path,
    mirror: str | None = None,
    keep_archives: bool = False,
    timeout: float = 60.0,
    report: Callable[[str], None] | None = None,
) -> Outcome:
    """Bring one file of ``manifest`` into ``data_root/<folder>``: already there, copied from a sibling dataset,
    downloaded, or missing (no source; the caller says where to get it)."""
    dataset_dir = Path(data_root) / manifest.folder
    if is_finished(dataset_dir, remote):
        return Outcome(remote, "present")
    final = dataset_dir / remote.name
    with file_lock(dataset_dir / STATE_DIR / f"{remote.name}.lock", str(final)):
        if is_finished(dataset_dir, remote):  # finished by the holder of the lock before us
            return Outcome(remote, "present")
        if not remote.is_archive and final.is_file():  # placed by hand (or by an older install)
            digests = verify(final, remote)
            _check_plain(final)
            _write_marker(dataset_dir, remote, "found in place", [remote.name], digests)
            return Outcome(remote, "present", "found in place")
        if (
            not final.exists()
        ):  # a sibling's copy first (the ImageNet variants' classnames.txt), mirror or not
            for rel in remote.copy_from:
                src = Path(data_root) / rel
                if src.is_file() and src.resolve() != final.resolve():
                    with open(src, "rb") as fh, atomic_open(final, "wb") as out:
                        shutil.copyfileobj(fh, out)
                    _write_marker(
                        dataset_dir, remote, f"copied from {src}", [remote.name], file_digests(final)
                    )
                    return Outcome(remote, "copied", str(src))
        hand_placed = final.is_file()
        source = "placed by hand" if hand_placed else source_url(remote, manifest.folder, mirror)
        if source is None:
            return Outcome(remote, "missing")
        if not hand_placed:
            part = final.with_name(final.name + ".part")
            if report:
                report(f"  fetching {remote.name} from {source}")
            download(source, part, timeout=timeout, report=report)
            try:
                digests = verify(part, remote)
                if not remote.is_archive:
                    _check_plain(part)
            except DownloadError as err:
                part.unlink(missing_ok=True)  # wrong bytes: resuming them would never succeed
                raise DownloadError(
                    f"{str(err).rstrip('.')}; deleted the download, run again to fetch it anew."
                ) from None
            os.replace(part, final)
        else:
            digests = verify(final, remote)
        if not remote.is_archive:
            _write_marker(dataset_dir, remote, source, [remote.name], digests)
            return Outcome(remote, "fetched", source)
        if report:
            report(f"  unpacking {remote.name}")
        try:
            entries = unpack(final, remote, dataset_dir)
        except DamagedArchive as err:
            if hand_placed:
                raise DownloadError(
                    f"{str(err).rstrip('.')}; replace {final} with a complete copy."
                ) from None
            final.unlink(missing_ok=True)
            raise DownloadError(
                f"{str(err).rstrip('.')}; deleted it, run again to download it anew."
            ) from None
        _write_marker(dataset_dir, remote, source, entries, digests)
        if not keep_archives:
            final.unlink(missing_ok=True)
        return Outcome(remote, "fetched", source)


def how_to_get(remote: Remote, manifest: DatasetManifest, data_root: Path) -> str:
    """One line: what to get by hand and where to put it."""
    dest = Path(data_root) / manifest.folder / remote.name
    checksum = f" (MD5 {remote.md5})" if remote.md5 else ""
    then = (
        f" (checked and unpacked by the next `prograd-pl data download {manifest.name}`)"
        if remote.is_archive
        else ""
    )
    return f"  {remote.name}{checksum}: get it from {remote.get_it or 'a mirror'} and put it at {dest}{then}"


def download_dataset(
    manifest: DatasetManifest,
    data_root: Path,
    mirror: str | None = None,
    keep_archives: bool = False,
    timeout: float = 60.0,
    out: Callable[[str], None] = print,
) -> list[Outcome]:
    """Fetch every file of ``manifest``; returns one outcome per file. Raises DownloadError on the first failure,
    and when a required file has no source, after listing what to get and where to put it."""
    outcomes = []
    for remote in manifest.files:
        try:
            outcome = obtain(remote, manifest, data_root, mirror, keep_archives, timeout, report=out)
        except DownloadError as err:
            if remote.required or "another download of" in str(err):
                raise
            out(f"  skipped the optional {remote.name}: {err}")  # the reader does not need it
            outcome = Outcome(remote, "skipped", str(err))
        outcomes.append(outcome)
    missing = [o.remote for o in outcomes if o.status == "missing"]
    if missing:
        out(f"{manifest.name}: {len(missing)} file(s) have no live original source; get them by hand (or pass "
            "--mirror URL):")  # fmt: skip
        for remote in missing:
            out(how_to_get(remote, manifest, data_root))
    required = [r for r in missing if r.required]
    if required:
        names = ", ".join(r.name for r in required)
        hint = ""
        if any(r.name.startswith("split_zhou_") for r in required):
            hint = f" (or write a generated split, not the paper's: prograd-pl data prepare {manifest.name} --make-split)"
        raise DownloadError(f"{manifest.name} is incomplete: {names} must be fetched as listed above{hint}.")
    return outcomes


def manifest_of(name: str) -> DatasetManifest:
    if name not in MANIFESTS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of: {', '.join(MANIFESTS)}, all.")
    return MANIFESTS[name]


def main(argv: list[str]) -> int:
    """``prograd-pl data download <dataset>|all [--mirror URL] [--data-root PATH] [--keep-archives]``."""
    import argparse

    from .check import check_dataset
    from .registry import get_dataset_info

    p = argparse.ArgumentParser(
        prog="prograd-pl data download",
        description="Download, verify and unpack datasets into the layout the readers expect "
        "(`prograd-pl data list` shows sources, sizes and licences).",
    )
    p.add_argument("dataset", help="a dataset name or 'all'")
    p.add_argument("--mirror", default=None, help="base URL (or folder) serving <dataset folder>/<file name>")
    p.add_argument("--data-root", default=os.environ.get("PROGRAD_DATA") or "data", type=Path)
    p.add_argument("--keep-archives", action="store_true", help="keep the archives after unpacking")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds without data before giving up")
    args = p.parse_args(argv)
    names = [n for n in MANIFESTS if n != "imagenet"] if args.dataset == "all" else [args.dataset]
    failed = 0
    for name in names:
        try:
            manifest = manifest_of(name)
            if not manifest.files:
                raise DownloadError(f"{name} cannot be downloaded: {manifest.note}.")
            print(f"{name} -> {args.data_root / manifest.folder}")
            download_dataset(manifest, args.data_root, args.mirror, args.keep_archives, args.timeout)
            ok, report = check_dataset(get_dataset_info(name), args.data_root.absolute())
            print(f"{name}: {report}")
            failed += not ok
        except DatasetError as err:
            print(f"prograd_pl: error: {err}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0
