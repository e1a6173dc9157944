"""Relative paths given to training mean the same place from any shell folder: the project root (where conf/ is)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def anchored(path: str | Path) -> Path:
    """``path`` itself when absolute (or ``~``), else the same path under the project root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def shown_path(path: str | Path) -> str:
    """A path relative to the working directory where it lies below it, else its name: what provenance records
    (no machine paths)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return Path(path).name
