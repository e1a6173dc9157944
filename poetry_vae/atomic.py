"""Write files whole or not at all: into a temporary sibling, then an atomic rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from poetry_vae.errors import PoetryVAEError

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
PICKLE_MAGIC = b"\x80"  # the legacy format starts with a pickle protocol opcode


def holds_saved_tensors(path: Path) -> bool:
    """Whether ``path`` is a file torch.save wrote (by its first bytes: a zip archive or a pickle)."""
    with open(path, "rb") as handle:
        magic = handle.read(len(ZIP_MAGIC))
    return magic == ZIP_MAGIC or magic[:1] == PICKLE_MAGIC


def check_writable(path: str | Path, key: str = "out", example: str = "poems.jsonl") -> Path:
    """``path`` as a file we may write, or a one-line error (a directory, a file where a folder must be, a model
    that a mistyped path would replace, a folder where nothing can be written); ``example`` names a file of the
    kind the command writes, for the hint."""
    if not str(path).strip():  # Path("") is the current folder
        raise PoetryVAEError(f"{key} is empty: give a file path, e.g. {key}={example}")
    path = Path(path).expanduser()
    if path.is_dir():
        raise PoetryVAEError(f"{key}={path} is a directory: give a file path, e.g. {key}={path / example}")
    if path.is_file() and holds_saved_tensors(path):
        raise PoetryVAEError(f"{key}={path} holds a saved model or tensors: choose another file (an output never "
                             f"replaces one), e.g. {key}={path.with_name(example)}")
    blocking = next((parent for parent in path.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        raise PoetryVAEError(f"{key}={path}: {blocking} is a file, not a folder; choose another path")
    if not _is_stream(path):  # a device or a pipe is written in place (atomic_path)
        _check_creatable(path, key)
    return path


def _is_stream(path: Path) -> bool:
    """An existing file that is not a regular one (/dev/null, a named pipe): written through, never replaced."""
    return path.exists() and not path.is_file() and not path.is_dir()


def _check_creatable(path: Path, key: str) -> None:
    """A file can be made where ``path``'s temporary sibling will be: tried with a probe in the nearest folder that
    exists, so that a read-only place fails now, in one line, rather than after the work."""
    target = path.resolve() if path.is_symlink() else path.absolute()  # a link's file is made by its target
    folder = next(parent for parent in target.parents if parent.exists())
    try:
        handle, probe = tempfile.mkstemp(prefix=".probe.", dir=folder)
    except OSError as error:
        message = f"{key}={path}: cannot write in {folder} ({error.strerror}); choose another path"
        raise PoetryVAEError(message) from None
    os.close(handle)
    os.unlink(probe)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` only if the block succeeds.

    The temporary name keeps ``path``'s suffixes (``np.save`` and gzip writers look at them). A symbolic link is
    written through (its target is replaced, the link kept); a device or a named pipe (``out=/dev/null``) is
    written in place, never replaced by a file.
    """
    path = Path(path)
    if _is_stream(path):
        with _naming(path):
            yield path
        return
    path = path.resolve() if path.is_symlink() else path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{os.getpid()}.tmp.{path.name}")
    try:
        with _naming(path):
            yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _naming(path: Path) -> Iterator[None]:
    """A write refused by the system (a full disk or device) names ``path`` when the writer's error names no file,
    so the command's one-line error says which."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a temporary file that then replaces ``path`` whole."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
