"""Hydra multirun x Lightning DDP on CPU: 2 jobs x 2 processes, one sweep directory, no duplicate runs, no hang.

Plain ``ddp`` re-launches the command line, so this runs the CLI in a subprocess (inside pytest it would
re-launch pytest itself).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import TINY_TRAIN_OVERRIDES


def test_multirun_with_ddp_runs_each_job_once(tmp_path: Path) -> None:
    args = [*TINY_TRAIN_OVERRIDES, "data.limit_train_poems=64", "data.batch_size=16", "trainer.max_epochs=1",
            "trainer.limit_val_batches=1", f"paths.cache_dir={tmp_path / 'cache'}"]
    command = [sys.executable, "-m", "poetry_vae.train", "-m", *args, "trainer=ddp", "trainer.devices=2",
               "trainer.accelerator=cpu", "objective.word_dropout=0,0.25", f"paths.multirun_root={tmp_path / 'mr'}",
               "run_name=sweep"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sweeps = list((tmp_path / "mr" / "sweep").iterdir())
    assert len(sweeps) == 1  # children did not start sweeps of their own
    jobs = sorted(p.name for p in sweeps[0].iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job in jobs:
        run = sweeps[0] / job
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]  # one training run per job
        assert (run / "train_ddp_process_1.log").is_file()  # rank 1 ran inside this job's directory
        overrides = (run / ".hydra" / "overrides.yaml").read_text("utf-8")
        assert f"objective.word_dropout={'0' if job == '0' else '0.25'}" in overrides
