"""Writes a reader never sees half done: one file, several files together, a run folder's lock, and the
temporaries that killed writes leave behind.

Every temporary capsviz makes is named `.NAME.capsviz-PID-XXXX.tmp` beside its destination, so that
the next write command into that folder knows whose it is: one whose process is gone (or that is
older than STALE_TMP_SECONDS) is removed, or, for files staged together whose renames had begun,
finished (`clean_stale`).

    atomic_write("runs/a/log.json", data)
    replace_together({Path("out/a.safetensors"): weights, Path("out/a.json"): card})
    with exclusive(Path("runs/a"), "--out"):
        ...  # no other process writes this run meanwhile
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: the lock falls back to an exclusive create
    fcntl = None

STALE_TMP_SECONDS = 600  # no capsviz write takes this long: an older temporary belongs to a killed one
MARK = "capsviz"
MANIFEST = ".capsviz-manifest.json"  # in a staging folder: every file was staged; the renames may have begun
LOCK = ".capsviz.lock"
_OURS = re.compile(rf"\.{MARK}-(\d+)-\w+\.tmp$")


class FolderBusyError(ValueError):
    """Another live process holds the folder's lock; the message names it."""


def _temporary_prefix(name: str) -> str:
    return f".{name}.{MARK}-{os.getpid()}-"


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file + fsync + rename: readers see old or new, never half."""
    path = Path(path)
    try:
        _replace(path, data)
    except OSError as exc:  # a full disk, say: the message names the file, whose old version is untouched
        said = f"{exc.strerror or exc} while writing {path}; it was not replaced"
        raise (OSError(exc.errno, said) if exc.errno is not None else OSError(said)) from None


def _replace(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(path.parent, names=(path.name,))
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        _write_fd(fd, data, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_fd(fd: int, data: bytes, name: str) -> None:
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(name, 0o666 & ~umask)  # mkstemp makes 0600; an output is an ordinary file


def replace_together(files: dict[Path, bytes]) -> None:
    """Stage every file in one folder beside them (fsynced, with a manifest), then rename each into place.

    A failure while staging (a full disk) replaces nothing and names the file; one while renaming says
    what was already replaced. A process killed between renames leaves the staging folder, which the
    next `clean_stale` of that folder finishes, unless a target has changed since.
    """
    targets = [Path(p) for p in files]
    folder = targets[0].parent
    folder.mkdir(parents=True, exist_ok=True)
    clean_stale(folder, names=[p.name for p in targets])
    staged = Path(tempfile.mkdtemp(prefix=_temporary_prefix(targets[0].name), suffix=".tmp", dir=folder))
    try:
        for target, data in files.items():
            _stage(staged / Path(target).name, data, target)
        manifest = [{"name": p.name, "sha256": hashlib.sha256(files[p]).hexdigest()} for p in targets]
        _stage(staged / MANIFEST, json.dumps(manifest).encode(), staged / MANIFEST)
        done: list[str] = []
        for target in targets:
            try:
                os.replace(staged / target.name, target)
            except OSError as exc:
                already = f"; already replaced: {', '.join(done)}" if done else "; nothing was replaced"
                raise OSError(exc.errno, f"{exc.strerror or exc} while replacing {target}{already}") from None
            done.append(str(target))
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _stage(path: Path, data: bytes, target: Path) -> None:
    try:
        _write_fd(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), data, str(path))
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror or exc} while writing {target}; nothing was replaced") from None


def clean_stale(folder: Path, names: tuple[str, ...] | list[str] = ()) -> None:
    """Remove the temporaries of killed writes in `folder` (finishing a staged set whose renames began).

    Only names capsviz makes are touched: `.*.capsviz-PID-*.tmp` whose process is gone or that are older
    than STALE_TMP_SECONDS, and (as older versions named them) `.NAME.*.tmp` for NAME in `names` once
    they are that old.
    """
    cutoff = time.time() - STALE_TMP_SECONDS
    candidates = set(folder.glob(f".*.{MARK}-*.tmp"))
    for name in names:
        candidates |= set(folder.glob(f".{glob.escape(name)}.*.tmp"))
    for path in candidates:
        ours = _OURS.search(path.name)
        try:
            old = path.stat().st_mtime < cutoff
            if old or (ours is not None and not _alive(int(ours.group(1)))):
                _finish(path) if path.is_dir() else path.unlink()
        except OSError:
            pass  # another writer's, or already gone


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name != "posix":
        return True  # a write of this process, or no safe way to ask (old ones still go by age)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, as another user's
    return True


def _finish(staged: Path) -> None:
    """A killed writer's staging folder: rename what is left if its manifest says all was staged and the
    files already renamed are still the ones staged; then remove it."""
    try:
        manifest = json.loads((staged / MANIFEST).read_text())
        entries = [(staged.parent / e["name"], e["sha256"]) for e in manifest]
    except (OSError, ValueError, TypeError, KeyError):
        entries = []  # killed while staging: nothing was replaced
    left = [target for target, _ in entries if (staged / target.name).is_file()]
    renamed = [(target, sha) for target, sha in entries if target not in left]
    if entries and left and all(_sha256(target) == sha for target, sha in renamed):
        for target in left:
            os.replace(staged / target.name, target)
    shutil.rmtree(staged, ignore_errors=True)


def _sha256(path: Path) -> str | None:
    try:
        return sha256_of(path)
    except OSError:
        return None


def sha256_of(path: str | os.PathLike) -> str:
    """A file's sha256, read in 1 MiB blocks (a checkpoint is 30 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def not_regular(path: str | os.PathLike) -> str | None:
    """Why `path` is not a regular file to read (missing, a folder, a FIFO, a device), or None. A FIFO would
    block its opening, /dev/zero never end a read."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        return str(exc)
    return None if stat.S_ISREG(mode) else f"{os.fspath(path)!r} is not a regular file"


def sha256_cached(path: str | os.PathLike) -> str | None:
    """`sha256_of`, hashed again only when the file is replaced or rewritten (another inode, time or size); None
    for a file that cannot be read. For the page, which asks on every rerun."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the path
        return None
    if not stat.S_ISREG(status.st_mode):  # a FIFO would block the read, /dev/zero never end it
        return None
    return _sha256_keyed(str(Path(path).resolve()), status.st_ino, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=16)
def _sha256_keyed(path: str, inode: int, mtime_ns: int, size: int) -> str | None:
    return _sha256(Path(path))


@contextlib.contextmanager
def exclusive(folder: Path, option: str) -> Iterator[None]:
    """Hold `folder`'s lock file for the block: a second process is refused with a message naming the
    holder. The lock of a killed process is taken over (the kernel released its flock)."""
    path = folder / LOCK
    fd = _lock(path, option) if fcntl is not None else _create_lock(path, option)
    try:
        os.ftruncate(fd, 0)
        since = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode())
        yield
    finally:
        path.unlink(missing_ok=True)  # before closing: a waiter that opened this file then retries
        os.close(fd)


def _lock(path: Path, option: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(fd)
            os.close(fd)
            message = f"{option} {path.parent} is in use by {holder}; wait for it, or pick another {option}"
            raise FolderBusyError(message) from None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder removed it between this open and this lock: take the new one


def _create_lock(path: Path, option: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        with open(path, "rb") as handle:
            holder = _holder(handle.fileno())
        raise FolderBusyError(
            f"{option} {path.parent} is in use by {holder}; if that process is gone, delete {path}"
        ) from None


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        record = json.loads(os.read(fd, 4096))
        return f"process {int(record['pid'])} on {record['host']} (since {record['since']})"
    except (OSError, ValueError, TypeError, KeyError):
        return "another process"


def read_capped(path: str | os.PathLike, limit: int) -> bytes:
    """A small file's bytes. Raises ValueError for one that is not a regular file (a link to /dev/zero, a FIFO:
    never read forever, and opening a FIFO does not wait for a writer) or holds more than `limit` bytes, and
    OSError (FileNotFoundError too) as open does."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a folder opens too
            raise ValueError("it is not a regular file")
        chunks, size = [], 0
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):  # one byte more tells a file over it
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError(f"it is over {limit:,} bytes")
    return b"".join(chunks)
