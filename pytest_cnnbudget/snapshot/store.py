"""The snapshot file: read within bounds, replaced atomically, locked for an update.

The file is replaced atomically, so an interrupted run leaves either the old file or the new one,
never a mix, and no temporary file; `replace_file` does the same for every other file a run
writes. A read-merge-write holds `locked()`, so two concurrent updates (xdist runs, two
terminals, CI jobs on one checkout) both land. The text itself, and the checks it is read
through, are format.py's.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from ..constants import DEFAULT_SNAPSHOT, UPDATE_COMMAND
from ..errors import SnapshotError, os_error_text
from ..results import SnapshotEntry
from .format import (
    FIX_HINT,
    MAX_SNAPSHOT_BYTES,
    check_entries,
    dumps,
    parse_document,
    parse_snapshot,
    quote,
)

try:
    import fcntl
except ImportError:  # Windows: no flock; updates proceed unlocked and the caller says so
    HAVE_FLOCK = False
else:
    HAVE_FLOCK = True

LOCK_TIMEOUT = 60.0  # seconds `locked()` waits for another update before giving up

# Linux can write the new text to a file with no name and give it one just before the rename, so
# even a kill -9 mid-write leaves nothing behind. It needs /proc to name the file. Tests set this
# to False to exercise the fallback (a named temporary file, removed on any exception).
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
USE_O_TMPFILE = bool(_O_TMPFILE) and os.path.isdir("/proc/self/fd")

# open(O_TMPFILE) where the file system (or a kernel before 3.11) cannot do it.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
# flock() where the file system has no locks: NFS without lockd, some FUSE and SMB mounts. EBADF
# too: Linux's NFS client emulates flock with a write lock on the whole file, which a folder,
# opened only for reading, cannot take (flock(2), "NFS details").
_NO_LOCKS = frozenset(
    {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS, errno.EBADF}
)


@dataclass(frozen=True)
class LockedSnapshot:
    """The snapshot as read under `locked()`; `held` is False where locks are unsupported."""

    entries: dict[str, SnapshotEntry]
    held: bool


# -- reading ------------------------------------------------------------------------------


def read_snapshot(path: Path) -> dict[str, SnapshotEntry]:
    """All entries of the file at `path`; an absent file is an empty snapshot."""
    return read_stored(path)[0]


def read_stored(path: Path) -> tuple[dict[str, SnapshotEntry], str | None]:
    """The entries of the file at `path` and the config it records as its writer (see
    format.parse_document); an absent file is an empty snapshot that records none."""
    try:
        data = _read_bounded(path)
    except FileNotFoundError:
        return {}, None
    except OSError as e:
        raise SnapshotError(
            f"{quote(str(path))}: cannot read the snapshot: {os_error_text(e)}"
        ) from e
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise SnapshotError(
            f"{quote(str(path))}: not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, "
            f"byte offset {e.start}); {FIX_HINT}"
        ) from e
    return parse_document(text, path)


def read_baseline(path: Path) -> dict[str, SnapshotEntry]:
    """A base branch's snapshot (--cnn-budget-baseline): read as the snapshot is, but a
    missing file is an error, and an empty one, what `git show` leaves when the base branch has
    no snapshot yet, holds no models."""
    shown = f"--cnn-budget-baseline {quote(str(path))}"
    try:
        data = _read_bounded(path)
    except FileNotFoundError:
        raise SnapshotError(
            f"{shown}: no such file; write it first, e.g. git show "
            f"origin/main:{DEFAULT_SNAPSHOT} > {quote(path.name)}"
        ) from None
    except OSError as e:
        raise SnapshotError(f"{shown}: cannot read it: {os_error_text(e)}") from e
    if not data.strip():
        return {}
    try:
        return parse_snapshot(data.decode("utf-8"), path)
    except UnicodeDecodeError as e:
        raise SnapshotError(f"{shown}: not UTF-8 text (byte offset {e.start})") from e
    except SnapshotError as e:
        raise SnapshotError(f"--cnn-budget-baseline: {e}") from e


def _read_bounded(path: Path) -> bytes:
    """The bytes of the regular file at `path`, refusing one over MAX_SNAPSHOT_BYTES unread."""
    # O_NONBLOCK: a FIFO in the snapshot's place would otherwise block open() forever. O_BINARY:
    # Windows would otherwise translate line ends.
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    with open(os.open(path, flags), "rb") as handle:
        info = os.fstat(handle.fileno())
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        if not stat.S_ISREG(info.st_mode):
            raise SnapshotError(f"{quote(str(path))}: cannot read the snapshot: not a file")
        # One byte past the bound as well: the file may have grown since fstat.
        data = handle.read(MAX_SNAPSHOT_BYTES + 1) if info.st_size <= MAX_SNAPSHOT_BYTES else b""
    if info.st_size > MAX_SNAPSHOT_BYTES or len(data) > MAX_SNAPSHOT_BYTES:
        raise SnapshotError(
            f"{quote(str(path))}: larger than {MAX_SNAPSHOT_BYTES // 2**20} MiB, far beyond "
            f"any snapshot pytest-cnnbudget writes; {FIX_HINT}"
        )
    return data


# -- writing ------------------------------------------------------------------------------


def write_snapshot(
    path: Path, entries: Mapping[str, SnapshotEntry], config: Path | None = None
) -> None:
    """Replace the file at `path` (or the file it links to) with `entries`, atomically;
    `config`, the config file whose snapshot it is, is recorded where it is not the
    `pyproject.toml` beside it (see `snapshot_owner`)."""
    shown = quote(str(path))
    try:
        # The same checks as reading: a file this writes must never be one it refuses to read.
        check_entries(entries)
    except SnapshotError as e:
        raise SnapshotError(f"{shown}: cannot write the snapshot: {e}") from e
    data = dumps(entries, _recorded(path, config)).encode("utf-8")
    if os.path.islink(path):
        shown = f"{shown} (a link to {quote(os.path.realpath(path))})"
    try:
        replace_file(path, data)
    except OSError as e:
        raise SnapshotError(f"{shown}: cannot write the snapshot: {os_error_text(e)}") from e


def snapshot_owner(path: Path, recorded: str | None) -> Path:
    """The config file a snapshot belongs to: the one it records, else the `pyproject.toml`
    beside it; both in the folder of the file itself, through any link, so that two configs
    reaching one file through links see the same owner."""
    folder = Path(os.path.realpath(path)).parent
    return Path(os.path.normpath(folder / (recorded or "pyproject.toml")))


def _recorded(path: Path, config: Path | None) -> str | None:
    """What a snapshot written for `config` records as its owner: None where that is the
    `pyproject.toml` beside it (the usual layout, and then the file says nothing new)."""
    if config is None:
        return None
    folder = Path(os.path.realpath(path)).parent
    config = Path(os.path.realpath(config))
    if config == folder / "pyproject.toml":
        return None
    return Path(os.path.relpath(config, folder)).as_posix()


def replace_file(path: Path, data: bytes) -> None:
    """Replace the file at `path` (or the file it links to) with `data`, atomically."""
    # Through a link, not over it: a file kept elsewhere and linked into the repo stays so.
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Keep the permissions a user gave the file; both temporary kinds start at 0600.
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    _remove_stale_temporaries(target)
    _replace(target, data, mode)


def _temporary_name(target: Path) -> tuple[str, str]:
    """Prefix and suffix of the temporary files of writes to `target`, stale ones included."""
    return f".{target.name}.", ".tmp"


def _remove_stale_temporaries(target: Path) -> None:
    """Remove what writes killed before this one left: the fallback's named files (an unnamed
    one only in the instant between naming and rename). The snapshot is written under
    `locked()`, and every other file by the one process that ends a run, so none belongs to a
    write still running. Best effort: a leftover must not stop the write."""
    prefix, suffix = _temporary_name(target)
    with suppress(OSError), os.scandir(target.parent) as folder:
        for item in folder:
            name = item.name
            if (
                name.startswith(prefix)
                and name.endswith(suffix)
                and len(name) > len(prefix + suffix)
            ):
                with suppress(OSError):
                    os.unlink(item.path)


def _replace(target: Path, data: bytes, mode: int) -> None:
    """Write `data` to a temporary file beside `target`, flush it to disk, rename it over."""
    fd, tmp = _open_temporary(target)
    unnamed = tmp is None
    try:
        try:
            _write_all(fd, data)
            if unnamed:
                os.fchmod(fd, mode)
            os.fsync(fd)
            if tmp is None:
                tmp = _name_unnamed(fd, target)
        finally:
            os.close(fd)  # before the rename: Windows cannot rename an open file
        if not unnamed:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        # Ctrl-C, a full disk, anything: the old file stays and no temporary one is left.
        if tmp is not None:
            with suppress(OSError):
                tmp.unlink()
        raise
    # The rename is durable only once the folder's entry is on disk too. Best effort: some file
    # systems (and Windows) cannot open or sync a folder.
    with suppress(OSError):
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _open_temporary(target: Path) -> tuple[int, Path | None]:
    """A file descriptor to write the new text to, and the temporary file's path; no path (None)
    when the file has no name yet, so that nothing is left however the process ends."""
    if USE_O_TMPFILE:
        try:
            return os.open(target.parent, _O_TMPFILE | os.O_WRONLY, 0o600), None
        except OSError as e:
            if e.errno not in _NO_TMPFILE:
                raise
    prefix, suffix = _temporary_name(target)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    return fd, Path(name)


def _name_unnamed(fd: int, target: Path) -> Path:
    """Give the O_TMPFILE file `fd` a temporary name beside `target`, for the rename."""
    prefix, suffix = _temporary_name(target)
    # With both folders the default, os.link calls link(2), which links the /proc entry itself
    # (EXDEV); a folder descriptor makes it linkat(2), which follows it to the file.
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        for _ in range(100):
            name = f"{prefix}{os.urandom(6).hex()}{suffix}"
            try:
                os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=folder, follow_symlinks=True)
            except FileExistsError:
                continue
            return target.parent / name
    finally:
        os.close(folder)
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(target.parent))


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written: it may write less (a signal, a file size limit)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- locking ------------------------------------------------------------------------------


@contextmanager
def locked(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[LockedSnapshot]:
    """Hold an exclusive lock for a read-merge-write of the snapshot at `path`; yields what is
    on disk now. Waits up to `timeout` seconds for another holder. Not reentrant."""
    shown = quote(str(path))
    # The folder the file (or the file it links to) is replaced in: two links to one file share
    # a lock, and no lock file is left in the user's repo.
    folder = Path(os.path.realpath(path)).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = _lock(folder, timeout, shown)
    except OSError as e:
        raise SnapshotError(f"{shown}: cannot lock {quote(str(folder))}: {os_error_text(e)}") from e
    try:
        yield LockedSnapshot(entries=read_snapshot(path), held=fd is not None)
    finally:
        if fd is not None:
            # Unlock before closing: a child forked meanwhile shares the lock, and would hold it
            # until it exits if only our descriptor were closed.
            with suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _lock(folder: Path, timeout: float, shown: str) -> int | None:
    """A descriptor of `folder` holding its exclusive flock; None where there are no locks."""
    if not HAVE_FLOCK:
        return None
    fd = os.open(folder, os.O_RDONLY)
    try:
        held = _acquire(fd, timeout)
    except BaseException:
        os.close(fd)
        raise
    if held is None:
        os.close(fd)
        return None
    if not held:
        os.close(fd)
        raise SnapshotError(
            f"{shown}: another {UPDATE_COMMAND} has held the lock on {quote(str(folder))} for "
            f"{timeout:g} s; let it finish, then re-run {UPDATE_COMMAND}"
        )
    return fd


def _acquire(fd: int, timeout: float) -> bool | None:
    """Poll for the lock until `timeout`: True once held, False on timeout, None if unsupported.
    Polling rather than a blocking flock, which no timeout can interrupt portably."""
    deadline = time.monotonic() + timeout
    pause = 0.001  # doubling to 50 ms: a quick hand-over, and little CPU over a long wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(2 * pause, 0.05)
        except OSError as e:
            if e.errno in _NO_LOCKS:
                return None
            raise
        else:
            return True
