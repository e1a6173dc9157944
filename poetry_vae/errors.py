"""User-facing errors: one line that names the problem and the fix, never a deep traceback."""

from __future__ import annotations


class PoetryVAEError(Exception):
    """An expected mistake in the user's input (file, prompt, config). Its message is the whole story."""


class CorpusError(PoetryVAEError):
    """A corpus or vocabulary file that is missing or malformed."""


class CheckpointError(PoetryVAEError):
    """A checkpoint that is missing, truncated, corrupt or not one of ours."""


class PromptError(PoetryVAEError):
    """A generation request that cannot be satisfied (bad prompt, impossible constraint)."""
