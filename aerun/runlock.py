"""One writer per run folder: an OS file lock that a second writer is refused on, naming the holder.

The lock is `flock` on `<folder>/.lock`, which the kernel releases when the
holding process ends in any way, `kill -9` included, so a crashed run never
leaves a stale lock behind. The file keeps the holder's process id and host, for
the message a second writer gets. Readers (`aerun eval`, `aerun plot`) take no
lock: checkpoints are replaced atomically, so they see the last complete one.
"""

from __future__ import annotations

import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from aerun.errors import EnvironmentFailure

LOCK = ".lock"


class RunBusy(EnvironmentFailure):
    """Another process holds the folder's lock."""


def holder(path: Path) -> str:
    try:
        pid, _, host = path.read_text().strip().partition(" ")
    except OSError:
        return "another process"
    if not pid.isdigit():
        return "another process"
    return f"process {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")


@contextmanager
def hold(folder: Path, what: str = "trained") -> Iterator[None]:
    """Hold `folder`'s lock for the block; raise RunBusy naming the holder when another process has it."""
    folder = Path(folder)
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunBusy(f"{folder} is being {what} by {holder(path)}; wait for it to end (or stop it), then run "
                      "this command again: two writers would interleave its files") from None
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, so no second process can race on re-creating it
