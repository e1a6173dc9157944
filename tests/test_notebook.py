"""The checkpoint-sampling notebook runs top to bottom on a real (tiny) checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "sample_checkpoint.ipynb"


def test_sampling_notebook_executes(tiny_checkpoint: Path, monkeypatch) -> None:
    monkeypatch.setenv("POETRY_VAE_CKPT", str(tiny_checkpoint))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    resources = {"metadata": {"path": str(NOTEBOOK.parent)}}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources).execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs)
    assert "step 4" in outputs and "nearest training poem" in outputs and "human:" in outputs
    assert os.environ["POETRY_VAE_CKPT"] in outputs
