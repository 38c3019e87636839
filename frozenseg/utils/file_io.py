"""Writing files so that a reader never sees a half-written one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator

__all__ = ["atomic_write"]


def _umask() -> int:
    """The process's file-creation mask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary file next to ``path``; a clean exit renames it onto ``path``.

    The rename is atomic on POSIX, so a reader (or a resumed run) sees either no file, the old
    file or the complete new one, never a torn one. On an exception the temporary file is removed
    and ``path`` is left as it was. The parent directory is created when missing; the file gets
    the permissions ``open()`` would give it (0666 minus the umask).

    Args:
        path: destination file.
        mode: ``"wb"`` (binary) or ``"w"`` (text).
        encoding: text encoding for ``mode="w"`` (default UTF-8).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports mode 'w' or 'wb', not {mode!r}.")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix="-" + os.path.basename(path))
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give what open() would give
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
            yield f
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
