"""Claims: one process at a time works on a job, however many copies of a sweep run at once.

Two copies of one sweep (two terminals, a requeued SLURM job, a second launcher) share its work: a
job is claimed with an exclusive, non-blocking ``flock`` on ``<sweep>/.claims/<config hash>.lock``
before it runs, and a process that cannot claim a job leaves it to the one that holds it. The
operating system drops the lock when its process dies (however it dies), so the claim of a killed
process is taken over by the next run without any staleness rule, and nothing is left to clean up.
The lock file is removed by its holder on release; a process that locked a file just removed (the
path now names another file, or none) lets go and tries again, so two holders never coexist.

``flock`` is advisory and local to a machine on some network file systems (NFS before v4 without
lock forwarding); where ``fcntl`` does not exist (Windows) every claim succeeds, as before.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["claim", "claim_path"]


def claim_path(directory: Path, name: str) -> Path:
    """The lock file of ``name`` (a job's config hash, a prompt-set run) under ``directory``."""
    return Path(directory) / ".claims" / f"{name}.lock"


@contextlib.contextmanager
def claim(path: Path):
    """Yield True while this process holds the lock file ``path`` (created with its parents), False
    when another live process holds it; released (and removed) on exit."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        yield True
        return
    path = Path(path)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the directory was just removed by a releasing holder
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:  # removed by the holder we waited for: lock the new file instead
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for people looking at the directory
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # before the lock is dropped: a waiter that locks the old file retries
        os.close(fd)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # the last claim gone: no empty directory left behind
