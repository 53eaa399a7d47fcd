"""Files a user hands us, read and written so that a bad one costs one clear line and loses nothing.

Reading (`read_user_file`, `load_json`): only a regular file is read (a FIFO, a device or a
directory is refused without blocking: the open is non-blocking and the type is checked on the
open descriptor), at most `limit` bytes (checked before and while reading), and JSON that nests
too deeply or is not UTF-8 is an error, never a traceback. A private file (a keys file) that
group or others may read is refused the way ssh refuses such a private key.

Writing (`atomic_write`): a temporary file in the same directory, written, fsynced, renamed over
the target, then the directory fsynced, so a crash at any instant leaves the old or the new
content, never a mix or nothing.

Locking (`hold_lock`): an exclusive `flock` on a lock file that is never renamed or deleted; the
kernel drops it when the holder dies, so a killed process leaves no stale lock.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tempfile
from pathlib import Path

from snn.errors import SnnError

MAX_JSON_DEPTH = 32


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_user_file(path: str | Path, limit: int, what: str, *, private: bool = False) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; SnnError (one line) otherwise.
    `private`: also refuse a file that group or others may read or write (chmod 600)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise SnnError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise SnnError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SnnError(f"{what} {path} is {_kind(st.st_mode)}, not a regular file: refused")
        if private and st.st_mode & 0o077:
            raise SnnError(f"{what} {path} has permissions {stat.S_IMODE(st.st_mode):04o}, which are too open: "
                           f"a private key file must not be accessible by others (chmod 600 {path})")
        if st.st_size > limit:
            raise SnnError(f"{what} {path} is {st.st_size} bytes, over the {limit}-byte limit: not a file snn wrote")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise SnnError(f"{what} {path} grew past the {limit}-byte limit while being read")
        return b"".join(chunks)
    except OSError as exc:
        raise SnnError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _depth(value, limit: int) -> bool:
    """Whether `value` nests no deeper than `limit` containers (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return False
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return True


def load_json(path: str | Path, limit: int, what: str, *, private: bool = False, hint: str = ""):
    """The decoded JSON of a regular file (see `read_user_file`); SnnError for anything that is
    not UTF-8 JSON nesting at most MAX_JSON_DEPTH deep. `hint` ends the message (what to do)."""
    raw = read_user_file(path, limit, what, private=private)
    tail = f"; {hint}" if hint else ""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SnnError(f"{what} {path} is not JSON{tail}") from None
    except RecursionError:
        raise SnnError(f"{what} {path} nests too deeply to be a file snn wrote{tail}") from None
    if not _depth(doc, MAX_JSON_DEPTH):
        raise SnnError(f"{what} {path} nests too deeply to be a file snn wrote{tail}")
    return doc


def strict_int(value, low: int, high: int) -> int | None:
    """`value` when it is a JSON integer (not a bool, float or string) in [low, high], else None."""
    if type(value) is not int or not low <= value <= high:
        return None
    return value


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, data: bytes, mode: int = 0o600) -> Path:
    """Replace `path` with `data` durably (temporary file, fsync, rename, directory fsync)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(path.parent)
    return path


class LockHeld(SnnError):
    """Another live process holds the lock."""


def hold_lock(path: str | Path, what: str, wait: bool = False) -> int:
    """An exclusive flock on `path` (created 0600 if absent; never renamed or deleted): the open
    descriptor, which holds the lock until it is closed or the process ends. LockHeld when another
    process holds it (its pid in the message when it wrote one); `wait` blocks instead."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0),
                     0o600)
    except OSError as exc:
        raise SnnError(f"cannot open the lock file {path} of {what}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError as exc:
        holder = b""
        try:
            holder = os.pread(fd, 32, 0).strip()
        except OSError:
            pass
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            pid = f" (pid {holder.decode('ascii', 'replace')})" if holder.isdigit() else ""
            raise LockHeld(f"{what} is in use by another process{pid}; one process at a time") from None
        raise SnnError(f"cannot lock {path}: {exc.strerror or exc}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:
        pass
    return fd


def release_lock(fd: int | None) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass
