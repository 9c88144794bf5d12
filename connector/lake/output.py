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

Locks (:meth:`Output.acquire_lock`) are leases in files created only if absent: see
:mod:`connector.lake.locks`.

Before a run spends anything, :meth:`Output.check_writable` proves the location takes a file (a
missing directory whose parent exists is created). A write that fails mid-run because the disk
is full (or over quota, or failing) becomes :class:`OutputWriteError` through
:func:`write_failure`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from connector.crashpoints import crashpoint, write_fault
from connector.errors import ConfigError, OutputWriteError
from connector.lake.locks import DEFAULT_LEASE_SECONDS, Lock, acquire_lock
from connector.redact import redact

TMP_DIR = "_tmp"
_URL_SCHEMES_LOCAL = ("", "file")
# A write that fails with one of these is the storage's fault, not the data's: (errno, what
# Python or Arrow says, the words of the one-line error).
_WRITE_FAILURES = (
    (errno.ENOSPC, "No space left on device", "no space left on"),
    (errno.EDQUOT, "Disk quota exceeded", "disk quota exceeded on"),
    (errno.EIO, "Input/output error", "I/O error writing to"),
)


def write_failure(exc: BaseException, where: str) -> OutputWriteError | None:
    """The :class:`OutputWriteError` for a write to ``where`` that failed with ``exc`` (a full
    disk, a quota, an I/O error), or None when ``exc`` is not such a failure."""
    if not isinstance(exc, OSError):
        return None
    text = str(exc)
    for code, words, what in _WRITE_FAILURES:
        if exc.errno == code or words in text:
            return OutputWriteError(
                f"{what} {where} ({exc.strerror or words}): nothing partial was committed; free "
                "space and run again, a rerun resumes from the last commit"
            )
    return None


def _clean_rel(rel: str) -> str:
    """Normalise a path relative to the output root; refuse anything that escapes it."""
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ConfigError(f"path {rel!r} leaves the output directory")
    return "/".join(parts)


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

    def _age_seconds(self, rel: str) -> float | None:
        """Seconds since ``rel`` was last written, or None if unknown (stale-lock checks)."""
        return None

    def check_writable(self) -> None:
        """Prove a file can be written here, before anything is spent; :class:`ConfigError`
        (one line, naming the location and what to fix) if not."""
        raise NotImplementedError

    def acquire_lock(
        self,
        rel: str,
        owner_info: Mapping[str, Any],
        *,
        now: Callable[[], datetime] | None = None,
        lease: float = DEFAULT_LEASE_SECONDS,
    ) -> Lock:
        """Take the lock file ``rel`` or raise :class:`LockError` naming who holds it.

        ``owner_info`` is stored in the lock (e.g. ``module`` and ``run_id``) with the pid, the
        host name, the start time and the lease's expiry (``lease`` seconds ahead; see
        :meth:`Lock.keep_renewed`). An expired lease, or a lock of a dead pid on this host, is
        taken over.
        """
        return acquire_lock(self, _clean_rel(rel), owner_info, now, lease=lease)


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


def _remove_scratch(scratch_root: Path, prefix: str) -> list[str]:
    """Remove the files under ``scratch_root`` whose relative name starts with ``prefix``."""
    removed: list[str] = []
    for dirpath, _dirs, files in os.walk(scratch_root):
        for name in files:
            rel = Path(dirpath, name).relative_to(scratch_root).as_posix()
            if rel.startswith(prefix):
                with contextlib.suppress(FileNotFoundError):
                    Path(dirpath, name).unlink()
                removed.append(rel)
    return sorted(removed)


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
            write_fault(str(tmp))
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
        write_fault(str(src))
        with open(src, "rb+") as handle:
            os.fsync(handle.fileno())
        try:
            self._install(rel, src)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # the scratch file is on another filesystem
                raise
            self._install(rel, self._staged_copy(rel, src))
            src.unlink()

    def _staged_copy(self, rel: str, src: Path) -> Path:
        """An fsynced copy of ``src`` under ``DIR/_tmp/``, for a scratch file on another disk."""
        staged = self.tmp_path(f"{_clean_rel(rel)}.{uuid.uuid4().hex}.tmp")
        shutil.copyfile(src, staged)
        _fsync_path(staged)
        return staged

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
        write_fault(str(local_tmp_paths[0]))
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
            os.replace(self._staged_copy(rel, src), dest)
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
        return _remove_scratch(self.path / TMP_DIR, prefix)

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

    def check_writable(self) -> None:
        """The directory exists (or is created: its parent must exist) and takes a file."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise ConfigError(f"the output {path} is a file, not a directory: name a directory")
        if not path.exists():
            if not path.parent.is_dir():
                raise ConfigError(
                    f"the output {path} cannot be created: its parent {path.parent} does not "
                    "exist (or is not a directory); create it first"
                )
            try:
                path.mkdir(exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"the output {path} cannot be created in {path.parent} "
                    f"({exc.strerror or exc}): choose a writable location"
                ) from None
        probe = path / TMP_DIR / f".write-check-{uuid.uuid4().hex}"
        try:
            probe.parent.mkdir(exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"the output {path} is not writable ({exc.strerror or exc}): choose a writable "
                "location or fix its permissions"
            ) from None


class FsspecOutput(Output):
    """An output on any fsspec filesystem (object stores in particular)."""

    def __init__(self, url: str) -> None:
        from fsspec.core import url_to_fs

        self.url = url.rstrip("/")
        # The URL as given: a bare "memory://" stripped of its slashes would name a local path.
        self.fs, base = url_to_fs(url)
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
        write_fault(self._abs(rel))
        self.fs.pipe_file(self._abs(rel), data)

    def write_file_atomic(self, rel: str, local_tmp_path: Path) -> None:
        """Upload the finished local file to ``rel`` (the object appears once complete)."""
        write_fault(self._abs(rel))
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
        return _remove_scratch(self.scratch, prefix)

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

    def check_writable(self) -> None:
        """One small object written and removed under the output (and the local scratch dir)."""
        if self.fs.isfile(self.base):
            raise ConfigError(f"the output {self.url} is an object, not a prefix: name a prefix")
        probe = self._abs(f"{TMP_DIR}/.write-check-{uuid.uuid4().hex}")
        try:
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except Exception as exc:
            # Each fsspec backend raises its own errors (botocore's, gcsfs's, …): any of them
            # here means the location cannot be used, said in one line with its own words.
            raise ConfigError(
                f"the output {self.url} is not writable: {type(exc).__name__}: "
                f"{redact(str(exc)).splitlines()[0] if str(exc) else 'no detail'}; check the "
                "bucket name, the storage credentials and the network"
            ) from None
        try:
            self.scratch.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"the local scratch directory {self.scratch} cannot be created "
                f"({exc.strerror or exc}): set TMPDIR to a writable directory"
            ) from None
