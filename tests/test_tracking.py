"""wandb tracking, read back from the offline run files: one run per sweep job, flat config, resume = same run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import tiny_train_config
from wandb_records import read_run

from poetry_vae.train import train


def _runs(directory: Path, count: int, timeout_s: float = 60.0) -> list[dict]:
    """The offline runs under ``directory``, read once ``count`` of them are whole: wandb's service may still be
    writing a run's file after ``finish()`` has returned (seen on a loaded machine)."""
    deadline = time.monotonic() + timeout_s
    while True:
        runs = [read_run(f) for f in sorted(directory.glob("wandb/offline-run-*/run-*.wandb"))]
        if (len(runs) >= count and all(run["exited"] for run in runs)) or time.monotonic() > deadline:
            return runs
        time.sleep(0.2)


def test_each_sweep_job_is_its_own_wandb_run(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "poetry_vae.train", "-m", "debug=tiny", "logger=default", "run_name=sw",
         "objective.word_dropout=0,0.25", "trainer.max_steps=3", "trainer.limit_val_batches=1",
         f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "anonymous setting" not in result.stderr  # wandb's warning for the anonymous=None Lightning passed
    runs = {job: _runs(sweep / job, 1) for job in ("0", "1")}
    assert all(len(found) == 1 for found in runs.values()), runs  # no job logs into another job's run
    first, second = runs["0"][0], runs["1"][0]
    assert first["id"] != second["id"]
    assert first["name"].startswith("sw#0") and second["name"].startswith("sw#1")
    assert "objective.word_dropout=0.25" in second["name"]
    assert first["group"] == second["group"] == "sw"
    assert first["config"]["objective.word_dropout"] == 0 and second["config"]["objective.word_dropout"] == 0.25
    assert first["config"]["model.latent_dim"] == 8  # flat keys: dashboards filter and group by them
    for run in (first, second):
        steps = [row for row in run["history"] if "train/loss" in row]
        assert steps and all(row["train/loss"] > 0 for row in steps)


def test_resumed_run_continues_its_wandb_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = ("logger=default", "trainer.limit_val_batches=1")
    train(tiny_train_config(out, cache, *common, "trainer.max_epochs=1"))
    train(tiny_train_config(out, cache, *common, "trainer.max_epochs=2", "ckpt_path=last"))
    runs = _runs(out, 2)
    assert len(runs) == 2 and runs[0]["id"] == runs[1]["id"]  # one run id: one curve on the dashboard
    steps = sorted(row["trainer/global_step"] for run in runs for row in run["history"]
                   if "train/loss" in row and "trainer/global_step" in row)
    assert steps and steps[-1] >= 4
