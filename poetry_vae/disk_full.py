"""A full disk ends a run with one line: the path that could not be written and the last complete checkpoint."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from poetry_vae.errors import PoetryVAEError

NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(PoetryVAEError):
    """A write failed for want of space (or quota)."""


def last_complete_checkpoint(checkpoints: Path) -> Path | None:
    """last.ckpt (what ckpt_path=last resumes), else the newest other checkpoint. Any that exists is whole:
    checkpoints are written to a temporary sibling and renamed (poetry_vae.checkpoint_io)."""
    if (checkpoints / "last.ckpt").is_file():
        return checkpoints / "last.ckpt"
    found = [path for path in checkpoints.glob("*.ckpt") if not path.name.startswith(".")]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def first_out_of_space(error: BaseException | None) -> OSError | None:
    """The earliest out-of-space error behind ``error``: a later one may come from cleaning up after it."""
    found = None
    while error is not None:
        if isinstance(error, OSError) and error.errno in NO_SPACE:
            found = error
        error = error.__context__
    return found


@contextmanager
def one_line_when_full(run_dir: Path) -> Iterator[None]:
    """Turn an out-of-space error anywhere in the block into a :class:`DiskFullError`."""
    try:
        yield
    except Exception as error:
        full = first_out_of_space(error)
        if full is None:
            raise
        target = full.filename or f"a file in {run_dir}"
        last = last_complete_checkpoint(run_dir / "checkpoints")
        kept = (f"the last complete checkpoint is {last} (free some space, then resume with ckpt_path=last)"
                if last is not None else "no checkpoint was completed yet (free some space and start again)")
        reason = os.strerror(full.errno or errno.ENOSPC).lower()
        raise DiskFullError(f"cannot write {target}: {reason}; {kept}") from None
