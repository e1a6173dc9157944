"""scripts/slim_checkpoint.py records where its source lies relative to the repository, never a machine path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def slim(source: str, out: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "scripts/slim_checkpoint.py"), source, str(out),
                           "--command", "python -m poetry_vae.train experiment=x", "--commit", "0" * 40],
                          cwd=cwd, env=env, capture_output=True, text=True)


def test_a_run_linked_in_from_elsewhere_is_recorded_by_its_path_in_the_repository(tiny_checkpoint, tmp_path) -> None:
    repo, elsewhere = tmp_path / "repo", tmp_path / "elsewhere"
    (repo / "outputs").mkdir(parents=True)
    elsewhere.mkdir()
    (elsewhere / "last.ckpt").write_bytes(Path(tiny_checkpoint).read_bytes())
    (repo / "outputs" / "run").symlink_to(elsewhere)
    done = slim("outputs/run/last.ckpt", tmp_path / "small.pt", repo)
    assert done.returncode == 0, done.stderr
    provenance = torch.load(tmp_path / "small.pt", weights_only=True)["provenance"]
    assert provenance["source"] == "outputs/run/last.ckpt"

    refused = slim(str(elsewhere / "last.ckpt"), tmp_path / "other.pt", repo)
    assert refused.returncode != 0 and "outside the repository" in refused.stderr
    assert not (tmp_path / "other.pt").exists()
