"""The consumed-voucher state file, written atomically: temp file (0600) → fsync → rename → fsync directory.

A reader (or a restart after SIGKILL at any instant) sees either the previous complete file or the new one,
never a torn one. Temp files left by a killed writer are removed on the next start.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from pathlib import Path

__all__ = ["read", "remove_stale_temps", "write_atomic"]

_counter = itertools.count()


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably; the file ends up with mode 0600."""
    directory = path.parent
    tmp = directory / f"{_temp_prefix(path)}{os.getpid()}.{next(_counter)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist yet."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def remove_stale_temps(path: Path) -> int:
    """Delete temp files of earlier (killed) writers; returns how many."""
    n = 0
    if not path.parent.is_dir():
        return 0
    for p in path.parent.glob(_temp_prefix(path) + "*.tmp"):
        with contextlib.suppress(OSError):
            p.unlink()
            n += 1
    return n
