"""Sweeps through Hydra plugins: a 2-trial Optuna search, and the SLURM launcher path via submitit's local executor
(including a requeue that resumes from the job's own checkpoint)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from conftest import TINY_TRAIN_OVERRIDES

from poetry_vae.checkpoint import read_checkpoint
from poetry_vae.cli import check_overrides


def run_train(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "poetry_vae.train", *args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def tiny(tmp_path: Path) -> list[str]:
    return [*TINY_TRAIN_OVERRIDES, "data.limit_train_poems=64", "data.batch_size=16", "trainer.limit_val_batches=1",
            f"paths.cache_dir={tmp_path / 'cache'}", f"paths.multirun_root={tmp_path / 'mr'}"]


def test_two_trial_optuna_search_returns_the_objective(tmp_path: Path) -> None:
    run_train("hparams_search=optuna", "hydra.sweeper.n_trials=2", "trainer.max_epochs=1", *tiny(tmp_path))
    (sweep,) = (tmp_path / "mr" / "optuna").iterdir()
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text("utf-8"))
    assert set(results["best_params"]) == {"objective.word_dropout", "objective.free_bits", "optimizer.lr", "anneal"}
    assert 0.0 < results["best_value"] < 10.0  # validation IW-NLL per character, in nats


def test_submitit_local_launcher_and_requeue_resume(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "mr" / "fixed"
    args = [*tiny(tmp_path), "hydra/launcher=local", f"hydra.sweep.dir={sweep_dir}", "ckpt_path=last"]
    run_train("-m", *args, "trainer.max_epochs=1")
    last = sweep_dir / "0" / "checkpoints" / "last.ckpt"
    first = read_checkpoint(last)["global_step"]
    assert first == 4 and list((sweep_dir / ".submitit").iterdir())
    run_train("-m", *args, "trainer.max_epochs=2")  # as a requeued job: same job directory, resumes
    assert read_checkpoint(last)["global_step"] == 2 * first
    assert sorted(p.name for p in (sweep_dir / "0" / "csv").iterdir()) == ["version_0", "version_1"]


def test_a_config_that_sweeps_is_not_prechecked_as_one_run() -> None:
    """hparams_search=optuna sets hydra.mode=MULTIRUN itself: its trials run in the sweep's directories, so the
    single-run precheck (which locks the run directory) must not run, or it leaves outputs/<run>/.run.lock behind."""
    assert check_overrides("train", ["hparams_search=optuna", "debug=tiny"]) is None
    assert check_overrides("train", ["debug=tiny"]) is not None  # one run: prechecked
