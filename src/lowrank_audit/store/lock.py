"""One writer per output folder: an advisory lock held while a sweep or an audit writes there."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from ..errors import AuditError

LOCK_FILE = ".lowrank-audit.lock"


class OutputLock:
    """flock on `<out>/.lowrank-audit.lock`; the kernel releases it when the process dies, even by SIGKILL."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AuditError(
                f"another lowrank-audit process (pid {holder}) is writing to {self.path.parent}; "
                "wait for it to finish or choose another --out."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
