"""Relative paths given to training mean the same place from any shell folder: the project root (where conf/ is)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def anchored(path: str | Path) -> Path:
    """``path`` itself when absolute (or ``~``), else the same path under the project root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path
