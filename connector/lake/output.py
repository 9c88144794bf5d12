"""Where the output goes: a local directory or an fsspec URL, with atomic file commits and locks.

Every file becomes visible only once it is complete:

* **Local paths** (and ``file://``): the bytes are written to ``DIR/_tmp/``, flushed and fsynced,
  then ``os.replace``-d into place (one filesystem, so the rename is atomic) and the directory is
  fsynced so the rename survives a power cut. Many files at once (:meth:`Output.prepare_files`,
  :meth:`Output.place_file`, :meth:`Output.finish_placing`) are made durable together: one
  ``syncfs`` of the output's filesystem before the renames and one after (on Linux; elsewhere the
  files and then their directories are fsynced by a small thread pool), instead of two fsyncs per
  file.
* **Object stores** (``s3://``, ``gs://``, ``abfs://``, ``memory://``…, through fsspec): an object
  PUT is atomic, so the file is built in a local scratch file and uploaded to its final key only
  once it is complete. Nothing is written to the bucket before that.

Locks (:meth:`Output.acquire_lock`) are files created only if absent. Locally that is
``O_CREAT | O_EXCL``; a lock whose owner ran on this host and whose pid is no longer alive is
stale and is taken over with a warning. On object stores the lock is created with fsspec's
exclusive mode (``"xb"``, a conditional ``If-None-Match: *`` PUT on S3) and read back to check it
is ours. Caveat: a store or fsspec backend without exclusive create gets a best-effort lock (check,
then write, then read back), which two processes starting within the same instant could both pass.
Locks held by another host are never broken automatically: delete the lock file by hand once you
know that run is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from connector.crashpoints import crashpoint
from connector.errors import ConfigError, LockError

log = logging.getLogger(__name__)

TMP_DIR = "_tmp"
# A lock file that cannot be parsed and is older than this is taken for a crash between creating
# and writing it; younger, it may belong to a process that is writing it right now.
UNREADABLE_LOCK_GRACE_SECONDS = 60.0
_URL_SCHEMES_LOCAL = ("", "file")


def _clean_rel(rel: str) -> str:
    """Normalise a path relative to the output root; refuse anything that escapes it."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ConfigError(f"path {rel!r} leaves the output directory")
    return "/".join(parts)


def pid_alive(pid: int) -> bool:
    """Whether a process with ``pid`` exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    """A held lock; :meth:`release` (or leaving the ``with`` block) removes the lock file."""

    def __init__(self, output: Output, rel: str, info: Mapping[str, Any]) -> None:
        self.output = output
        self.rel = rel
        self.info = dict(info)
        self.released = False

    @property
    def location(self) -> str:
        """Where the lock file is, for messages."""
        return self.output.describe(self.rel)

    def release(self) -> None:
        """Remove the lock file if it is still ours (idempotent)."""
        if self.released:
            return
        self.released = True
        current = _parse_lock(self.output.read_bytes(self.rel))
        if current is not None and current.get("token") != self.info.get("token"):
            log.warning("lock %s is no longer ours; left in place", self.location)
            return
        self.output.delete(self.rel)

    def __enter__(self) -> Lock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _parse_lock(data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class Output:
    """The root of an extract's output: a local directory or an fsspec URL.

    Paths given to the methods are relative to the root and use ``/``.
    """

    root: str

    @staticmethod
    def open(url_or_path: str | os.PathLike[str]) -> Output:
        """Open ``url_or_path``: local paths and ``file://`` directly, other URLs through fsspec."""
        text = os.fspath(url_or_path)
        scheme = text.split("://", 1)[0] if "://" in text else ""
        if scheme in _URL_SCHEMES_LOCAL:
            return LocalOutput(Path(text.split("://", 1)[1] if scheme else text))
        return FsspecOutput(text)

    # The interface; see the two implementations.
    def describe(self, rel: str) -> str:
        """A human-readable location of ``rel`` for messages."""
        raise NotImplementedError

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` so that readers see the old file or the whole new one."""
        raise NotImplementedError

    def write_file_atomic(self, rel: str, local_tmp_path: Path) -> None:
        """Move (or upload) the finished local file ``local_tmp_path`` to ``rel``, atomically."""
        raise NotImplementedError

    def prepare_files(self, local_tmp_paths: Sequence[Path]) -> None:
        """Make finished scratch files durable together, before :meth:`place_file` moves them.

        Committing many files: ``prepare_files`` (all), then :meth:`place_file` (each), then
        :meth:`finish_placing` (all). Each file is visible whole or not at all, as with
        :meth:`write_file_atomic`, and every one is durable once ``finish_placing`` returns.
        """

    def place_file(self, rel: str, local_tmp_path: Path) -> None:
        """Move (or upload) a file passed to :meth:`prepare_files` to ``rel``, atomically."""
        self.write_file_atomic(rel, local_tmp_path)

    def finish_placing(self, rels: Sequence[str]) -> None:
        """Make the moves of :meth:`place_file` durable (for ``rels``, the paths placed)."""

    def read_bytes(self, rel: str) -> bytes | None:
        """The contents of ``rel``, or None if it does not exist."""
        raise NotImplementedError

    def list_files(self, rel_dir: str, suffix: str = "") -> list[str]:
        """Every file under ``rel_dir`` (recursive) whose name ends with ``suffix``, sorted."""
        raise NotImplementedError

    def delete(self, rel: str) -> None:
        """Remove ``rel``; a missing file is not an error."""
        raise NotImplementedError

    def exists(self, rel: str) -> bool:
        """Whether ``rel`` exists."""
        raise NotImplementedError

    def tmp_path(self, name: str) -> Path:
        """A local scratch path for building a file (parents created; the file is not)."""
        raise NotImplementedError

    def sweep_tmp(self, prefix: str) -> list[str]:
        """Remove scratch files whose name (relative to the scratch dir) starts with ``prefix``.

        Used by the next run to clean what a killed run left behind; call it under the lock that
        owns ``prefix``. Returns the names removed.
        """
        raise NotImplementedError

    def _create_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` with ``data`` only if it does not exist; False if it exists."""
        raise NotImplementedError

    def acquire_lock(
        self,
        rel: str,
        owner_info: Mapping[str, Any],
        *,
        now: Callable[[], datetime] | None = None,
    ) -> Lock:
        """Take the lock file ``rel`` or raise :class:`LockError` naming who holds it.

        ``owner_info`` is stored in the lock (e.g. ``module`` and ``run_id``) with the pid, the
        host name and the start time. A stale lock (same host, pid not alive) is taken over.
        """
        rel = _clean_rel(rel)
        clock = now or (lambda: datetime.now(timezone.utc))
        info = {
            **owner_info,
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "started_at": clock().isoformat(),
            "token": uuid.uuid4().hex,
        }
        payload = json.dumps(info, indent=2).encode("utf-8")
        for _ in range(3):
            if self._create_exclusive(rel, payload):
                held = _parse_lock(self.read_bytes(rel))
                if held is not None and held.get("token") == info["token"]:
                    return Lock(self, rel, info)
                # A store without exclusive create let another process overwrite our lock.
                raise self._held_error(rel, held or {}, owner_info)
            held = _parse_lock(self.read_bytes(rel))
            if held is None:
                continue  # released between our attempt and the read: try again
            if not self._is_stale(rel, held):
                raise self._held_error(rel, held, owner_info)
            log.warning(
                "taking over stale lock %s (pid %s on %s is not running)",
                self.describe(rel),
                held.get("pid", "?"),
                held.get("hostname", "?"),
            )
            self._break_stale(rel, held)
        raise LockError(f"could not take the lock {self.describe(rel)}: it keeps changing")

    def _is_stale(self, rel: str, held: Mapping[str, Any]) -> bool:
        if not held:
            age = self._age_seconds(rel)
            return age is not None and age > UNREADABLE_LOCK_GRACE_SECONDS
        if held.get("hostname") != socket.gethostname():
            return False
        pid = held.get("pid")
        return isinstance(pid, int) and not pid_alive(pid)

    def _age_seconds(self, rel: str) -> float | None:
        return None

    def _break_stale(self, rel: str, held: Mapping[str, Any]) -> None:
        # Two processes may find the same stale lock: only the one that takes the "breaker" lock
        # removes it, and only if it still holds the same content, so a fresh lock is never lost.
        breaker = rel + ".break"
        if not self._create_exclusive(breaker, b"{}"):
            age = self._age_seconds(breaker)
            if age is not None and age > UNREADABLE_LOCK_GRACE_SECONDS:
                self.delete(breaker)
            return
        try:
            if _parse_lock(self.read_bytes(rel)) == held:
                self.delete(rel)
        finally:
            self.delete(breaker)

    def _held_error(
        self, rel: str, held: Mapping[str, Any], owner_info: Mapping[str, Any]
    ) -> LockError:
        module = owner_info.get("module") or held.get("module") or rel
        if not held:
            who = "a process that is still writing the lock file"
        else:
            who = (
                f"pid {held.get('pid', '?')} on {held.get('hostname', '?')} "
                f"(run {held.get('run_id', '?')}, since {held.get('started_at', '?')})"
            )
        return LockError(
            f"{module} is being extracted into this output by {who}; lock file "
            f"{self.describe(rel)}. If that run is gone, delete the lock file."
        )


def _fsync_dir(path: Path) -> None:
    # Directory fsync makes the rename durable; not every platform allows opening a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int
    return func


# Linux's syncfs(2) writes back one filesystem and waits for it (data, metadata, the journal):
# one call makes thousands of new files durable, where an fsync each costs a journal commit each.
_SYNCFS = _load_syncfs()
_FSYNC_THREADS = 8


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_all(paths: Iterable[Path], *, dirs: bool = False) -> None:
    """Fsync every path, several at a time (the waits overlap)."""
    work = list(paths)
    if not work:
        return
    fsync: Callable[[Path], None] = _fsync_dir if dirs else _fsync_path
    if len(work) == 1:
        fsync(work[0])
        return
    with ThreadPoolExecutor(max_workers=min(_FSYNC_THREADS, len(work))) as pool:
        list(pool.map(fsync, work))


class LocalOutput(Output):
    """An output directory on the local filesystem."""

    def __init__(self, root: Path) -> None:
        self.path = Path(root).absolute()
        self.root = str(self.path)

    def _abs(self, rel: str) -> Path:
        return self.path / _clean_rel(rel)

    def describe(self, rel: str) -> str:
        """The absolute path of ``rel``."""
        return str(self._abs(rel))

    def tmp_path(self, name: str) -> Path:
        """A path under ``DIR/_tmp/`` (same filesystem as the output, so renames are atomic)."""
        path = self.path / TMP_DIR / _clean_rel(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _install(self, rel: str, src: Path) -> None:
        dest = self._abs(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        _fsync_dir(dest.parent)

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """Write to a scratch file, fsync it, rename it over ``rel``, fsync the directory."""
        tmp = self.tmp_path(f"{_clean_rel(rel)}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            crashpoint("output_atomic_tmp_written")
            self._install(rel, tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def write_file_atomic(self, rel: str, local_tmp_path: Path) -> None:
        """Fsync the finished file and rename it to ``rel`` (copied first if on another disk)."""
        src = Path(local_tmp_path)
        with open(src, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            self._install(rel, src)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # the scratch file is on another filesystem
                raise
            staged = self.tmp_path(f"{_clean_rel(rel)}.{uuid.uuid4().hex}.tmp")
            shutil.copyfile(src, staged)
            with open(staged, "rb+") as handle:
                os.fsync(handle.fileno())
            self._install(rel, staged)
            src.unlink()

    def _syncfs(self) -> bool:
        """One ``syncfs`` of the output's filesystem; False where that is not available."""
        if _SYNCFS is None:
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            if _SYNCFS(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(self.path))
        finally:
            os.close(fd)
        return True

    def prepare_files(self, local_tmp_paths: Sequence[Path]) -> None:
        """Make the scratch files durable: one ``syncfs``, else an fsync each (in parallel)."""
        if not local_tmp_paths:
            return
        paths = [Path(p) for p in local_tmp_paths]
        if any(not p.is_relative_to(self.path) for p in paths) or not self._syncfs():
            _fsync_all(paths)

    def place_file(self, rel: str, local_tmp_path: Path) -> None:
        """Rename a prepared file to ``rel`` (durable after :meth:`finish_placing`)."""
        src = Path(local_tmp_path)
        dest = self._abs(rel)
        try:
            try:
                os.replace(src, dest)
            except FileNotFoundError:
                # Most renames go to a directory that exists; create it only when it does not.
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # the scratch file is on another filesystem
                raise
            staged = self.tmp_path(f"{_clean_rel(rel)}.{uuid.uuid4().hex}.tmp")
            shutil.copyfile(src, staged)
            _fsync_path(staged)
            os.replace(staged, dest)
            src.unlink()

    def finish_placing(self, rels: Sequence[str]) -> None:
        """Make the renames durable: one ``syncfs``, else each directory touched fsynced once."""
        if not rels or self._syncfs():
            return
        dirs: set[Path] = set()
        for rel in rels:
            parent = self._abs(rel).parent
            # New partition directories were created too: their parents need the entries.
            while parent not in dirs and parent != self.path.parent:
                dirs.add(parent)
                if parent == self.path:
                    break
                parent = parent.parent
        _fsync_all(sorted(dirs), dirs=True)

    def read_bytes(self, rel: str) -> bytes | None:
        """The file's bytes, or None if it does not exist."""
        try:
            return self._abs(rel).read_bytes()
        except FileNotFoundError:
            return None

    def list_files(self, rel_dir: str, suffix: str = "") -> list[str]:
        """Files under ``rel_dir`` (recursive), as paths relative to the root."""
        base = self._abs(rel_dir)
        found: list[str] = []
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                if name.endswith(suffix):
                    found.append(Path(dirpath, name).relative_to(self.path).as_posix())
        return sorted(found)

    def delete(self, rel: str) -> None:
        """Remove the file if present."""
        with contextlib.suppress(FileNotFoundError):
            self._abs(rel).unlink()

    def exists(self, rel: str) -> bool:
        """Whether the file or directory exists."""
        return self._abs(rel).exists()

    def sweep_tmp(self, prefix: str) -> list[str]:
        """Remove files under ``DIR/_tmp/`` whose relative name starts with ``prefix``."""
        tmp_root = self.path / TMP_DIR
        removed: list[str] = []
        for dirpath, _dirs, files in os.walk(tmp_root):
            for name in files:
                rel = Path(dirpath, name).relative_to(tmp_root).as_posix()
                if rel.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        Path(dirpath, name).unlink()
                    removed.append(rel)
        return sorted(removed)

    def _create_exclusive(self, rel: str, data: bytes) -> bool:
        path = self._abs(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return True

    def _age_seconds(self, rel: str) -> float | None:
        try:
            return time.time() - self._abs(rel).stat().st_mtime
        except FileNotFoundError:
            return None


class FsspecOutput(Output):
    """An output on any fsspec filesystem (object stores in particular)."""

    def __init__(self, url: str) -> None:
        from fsspec.core import url_to_fs

        self.url = url.rstrip("/")
        self.fs, base = url_to_fs(self.url)
        self.base = str(base).rstrip("/")
        self.root = self.url
        digest = hashlib.sha256(self.url.encode("utf-8")).hexdigest()[:16]
        # A fixed scratch dir per output URL, so the next run can sweep what a killed run left.
        self.scratch = Path(tempfile.gettempdir()) / f"zoho-crm-connector-{digest}"

    def _abs(self, rel: str) -> str:
        clean = _clean_rel(rel)
        return f"{self.base}/{clean}" if clean else self.base

    def describe(self, rel: str) -> str:
        """The URL of ``rel``."""
        clean = _clean_rel(rel)
        return f"{self.url}/{clean}" if clean else self.url

    def tmp_path(self, name: str) -> Path:
        """A local scratch path; the file is uploaded by :meth:`write_file_atomic`."""
        path = self.scratch / _clean_rel(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write_bytes_atomic(self, rel: str, data: bytes) -> None:
        """One PUT of the whole object: readers see the old object or the new one."""
        self.fs.pipe_file(self._abs(rel), data)

    def write_file_atomic(self, rel: str, local_tmp_path: Path) -> None:
        """Upload the finished local file to ``rel`` (the object appears once complete)."""
        self.fs.put_file(str(local_tmp_path), self._abs(rel))
        Path(local_tmp_path).unlink(missing_ok=True)

    def read_bytes(self, rel: str) -> bytes | None:
        """The object's bytes, or None if it does not exist."""
        try:
            data = self.fs.cat_file(self._abs(rel))
        except FileNotFoundError:
            return None
        return bytes(data)

    def list_files(self, rel_dir: str, suffix: str = "") -> list[str]:
        """Objects under ``rel_dir`` (recursive), as paths relative to the root."""
        base = self._abs(rel_dir)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        prefix = self.base.lstrip("/") + "/"
        result = []
        for path in found:
            rel = str(path).lstrip("/")
            if rel.startswith(prefix):
                rel = rel[len(prefix) :]
            if rel.endswith(suffix):
                result.append(rel)
        return sorted(result)

    def delete(self, rel: str) -> None:
        """Remove the object if present."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._abs(rel))

    def exists(self, rel: str) -> bool:
        """Whether the object exists."""
        return bool(self.fs.exists(self._abs(rel)))

    def sweep_tmp(self, prefix: str) -> list[str]:
        """Remove local scratch files of this output whose name starts with ``prefix``."""
        removed: list[str] = []
        for dirpath, _dirs, files in os.walk(self.scratch):
            for name in files:
                rel = Path(dirpath, name).relative_to(self.scratch).as_posix()
                if rel.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        Path(dirpath, name).unlink()
                    removed.append(rel)
        return sorted(removed)

    def _create_exclusive(self, rel: str, data: bytes) -> bool:
        path = self._abs(rel)
        try:
            with self.fs.open(path, "xb") as handle:
                handle.write(data)
            return True
        except FileExistsError:
            return False
        except (ValueError, NotImplementedError, TypeError):
            pass
        # Best effort for backends without exclusive create; see the module docstring.
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, data)
        return True

    def _age_seconds(self, rel: str) -> float | None:
        try:
            modified = self.fs.modified(self._abs(rel))
        except (FileNotFoundError, NotImplementedError, OSError):
            return None
        if modified.tzinfo is None:
            modified = modified.replace(tzinfo=timezone.utc)
        return (datetime.now(timezone.utc) - modified).total_seconds()
