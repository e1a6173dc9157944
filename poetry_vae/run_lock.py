"""One run per run directory at a time: an ``fcntl.flock`` on ``<run dir>/.run.lock``, held for the run's life.

The kernel drops the lock when its process exits, however it exits (an error, SIGKILL), so a crashed run never
leaves a stale lock. The lock file itself stays: deleting it could let two runs lock two different files.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from poetry_vae.errors import PoetryVAEError

LOCK_NAME = ".run.lock"
# Ranks > 0 of a distributed run share rank 0's directory (and its lock): set by Lightning's launcher, torchrun, srun.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")

_held: dict[Path, int] = {}  # run directory -> the open lock file this process holds


class RunDirectoryBusy(PoetryVAEError):
    """Another process is training in this run directory."""


def is_rank_zero() -> bool:
    return all(os.environ.get(name, "0") in ("", "0") for name in _RANK_VARIABLES)


def _refuse(directory: Path, handle: int) -> RunDirectoryBusy:
    os.lseek(handle, 0, os.SEEK_SET)
    pid = os.read(handle, 32).decode("ascii", "replace").strip()
    holder = f"another run (pid {pid})" if pid.isdigit() else "another run"
    return RunDirectoryBusy(
        f"{directory} is in use by {holder}: wait for it to finish, or train elsewhere with run_name=<another name>"
    )


def check_free(directory: str | Path) -> None:
    """Refuse if another process holds ``directory``'s lock; creates nothing (a refused run leaves no trace)."""
    directory = Path(directory).resolve()
    lock = directory / LOCK_NAME
    if directory in _held or not lock.is_file():
        return
    handle = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refuse(directory, handle) from None
    finally:
        os.close(handle)  # closing drops the probe's shared lock


def acquire(directory: str | Path) -> bool:
    """Take ``directory``'s lock for this process (creating the directory); False if this process holds it already."""
    directory = Path(directory).resolve()
    if directory in _held:
        return False
    directory.mkdir(parents=True, exist_ok=True)
    handle = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        error = _refuse(directory, handle)
        os.close(handle)
        raise error from None
    os.ftruncate(handle, 0)  # who holds it, for the message another run gets
    os.write(handle, f"{os.getpid()}\n".encode("ascii"))
    _held[directory] = handle
    return True


def release(directory: str | Path) -> None:
    handle = _held.pop(Path(directory).resolve(), None)
    if handle is not None:
        os.close(handle)  # closing the only descriptor of the open file drops the flock


@contextmanager
def run_directory_lock(directory: str | Path) -> Iterator[None]:
    """Hold ``directory``'s lock for the block (re-entrant: a lock this process already holds stays held after)."""
    taken = acquire(directory) if is_rank_zero() else False
    try:
        yield
    finally:
        if taken:
            release(directory)
