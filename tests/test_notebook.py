"""The checkpoint-sampling notebook runs top to bottom (through nbmake) on a real, tiny checkpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from poetry_vae.checkpoint import shipped_model

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


def _checkpoint_cells() -> str:
    """The notebook's own code up to the cell that opens the checkpoint (parameters, imports, choice, load)."""
    cells = [cell for cell in nbformat.read(NOTEBOOK, as_version=4).cells if cell.cell_type == "code"]
    opening = next(i for i, cell in enumerate(cells) if "load_checkpoint(ckpt_path)" in cell.source)
    return "\n\n".join(cell.source for cell in cells[: opening + 1])


def test_notebook_without_a_checkpoint_opens_the_shipped_model(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.delenv("POETRY_VAE_CKPT", raising=False)
    monkeypatch.chdir(tmp_path)  # a folder with no outputs/: nothing to find, nothing needed
    namespace: dict = {}
    exec(compile(_checkpoint_cells(), str(NOTEBOOK), "exec"), namespace)
    assert namespace["ckpt_path"] == shipped_model() and namespace["model"].cfg.use_latent


def test_notebook_reads_a_run_dir_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.symlink_to(shipped_model())
    monkeypatch.setenv("POETRY_VAE_CKPT", str(tmp_path / "run"))
    namespace: dict = {}
    exec(compile(_checkpoint_cells(), str(NOTEBOOK), "exec"), namespace)
    assert namespace["ckpt_path"] == last
