"""The shipped models: each opens by name, loads without unpickling, is small and half precision, and says how
it was made (the command and commit inside it, its composed config and its section in POET_SOURCE.md beside it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from poetry_vae.checkpoint import load_checkpoint, resolve_checkpoint, shipped_names

RESOURCES = Path(__file__).resolve().parents[1] / "poetry_vae" / "resources"
MODELS = sorted(RESOURCES.glob("*.pt"))
MAX_BYTES = 16 * 2**20


def test_every_shipped_model_is_listed_by_name() -> None:
    assert sorted(shipped_names()) == sorted(path.stem for path in MODELS) and "poet" in shipped_names()


@pytest.mark.parametrize("path", MODELS, ids=lambda path: path.stem)
def test_a_shipped_model_is_small_safe_and_says_how_it_was_made(path: Path) -> None:
    assert path.stat().st_size <= MAX_BYTES
    raw = torch.load(path, weights_only=True)  # plain tensors and types only
    weights = {name: tensor for name, tensor in raw["state_dict"].items() if tensor.is_floating_point()}
    # half precision, but for a fitted prior's weights, means and Cholesky factors (float32, at most 64 KB)
    assert {tensor.dtype for name, tensor in weights.items() if not name.startswith("model.prior.")} == {torch.float16}
    assert sum(weights[name].numel() for name in weights if name.startswith("model.prior.")) <= 16 * 2**10
    provenance = raw["provenance"]
    assert provenance["command"].startswith("python -m poetry_vae.train experiment=")
    assert len(provenance["commit"]) >= 7 and provenance["source"].startswith("outputs/")
    assert (RESOURCES / f"{path.stem}.config.yaml").is_file()
    assert f"`{path.name}`" in (RESOURCES / "POET_SOURCE.md").read_text(encoding="utf-8")
    assert resolve_checkpoint(path.stem) == path
    assert load_checkpoint(path).form["line_length"] in (5, 7)
