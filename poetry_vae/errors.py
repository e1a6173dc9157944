"""User-facing errors: one line that names the problem and the fix, never a deep traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


class PoetryVAEError(Exception):
    """An expected mistake in the user's input (file, prompt, config). Its message is the whole story."""


class CorpusError(PoetryVAEError):
    """A corpus or vocabulary file that is missing or malformed."""


class CheckpointError(PoetryVAEError):
    """A checkpoint that is missing, truncated, corrupt or not one of ours."""


class PromptError(PoetryVAEError):
    """A generation request that cannot be satisfied (bad prompt, impossible constraint)."""


def exit_on_user_error(func: F) -> F:
    """Wrap a command-line entry point so expected mistakes print one line and exit with status 2."""

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return func(*args, **kwargs)
        except PoetryVAEError as error:
            print(f"error: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
