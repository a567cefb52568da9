"""Writing a file so that a reader or a crash never sees half of it: the one atomic write every layer uses."""
from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically and durably: a temporary file beside it, fsync, rename over ``path``, fsync
    of the folder. After a crash ``path`` holds the old content or the new, never a mix; a leftover temporary file
    (``.NAME.tmpPID``) is harmless."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
