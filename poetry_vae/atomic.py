"""Write files whole or not at all: into a temporary sibling, then an atomic rename."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from poetry_vae.errors import PoetryVAEError


def check_writable(path: str | Path, key: str = "out", example: str = "poems.jsonl") -> Path:
    """``path`` as a file we may write, or a one-line error (a directory, or a file where a folder must be);
    ``example`` names a file of the kind the command writes, for the hint."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise PoetryVAEError(f"{key}={path} is a directory: give a file path, e.g. {key}={path / example}")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise PoetryVAEError(f"{key}={path}: {blocking} is a file, not a folder; choose another path")
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` only if the block succeeds.

    The temporary name keeps ``path``'s suffixes (``np.save`` and gzip writers look at them).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{os.getpid()}.tmp.{path.name}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a temporary file that then replaces ``path`` whole."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
