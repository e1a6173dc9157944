"""The checkpoint-sampling notebook runs top to bottom (through nbmake) on a real, tiny checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "sample_checkpoint.ipynb"


def test_sampling_notebook_executes(tiny_checkpoint: Path, tmp_path: Path) -> None:
    env = {**os.environ, "POETRY_VAE_CKPT": str(tiny_checkpoint), "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--nbmake", "--nbmake-timeout=300", "-p", "no:cacheprovider",
         "--override-ini=addopts=", str(NOTEBOOK)],
        capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 passed" in result.stdout


def test_notebook_without_a_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "POETRY_VAE_CKPT"}
    (tmp_path / "conf").mkdir()  # a project root with no outputs/ yet; the kernel starts in the notebook's folder
    copy = tmp_path / "notebooks" / NOTEBOOK.name
    copy.parent.mkdir()
    copy.write_bytes(NOTEBOOK.read_bytes())
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--nbmake", "--nbmake-timeout=120", "-p", "no:cacheprovider",
         "--override-ini=addopts=", str(copy)],
        capture_output=True, text=True, timeout=300, env={**env, "MPLBACKEND": "Agg"}, cwd=tmp_path,
    )
    assert result.returncode != 0
    assert "no checkpoint found under outputs/: train one with `make train`" in result.stdout
