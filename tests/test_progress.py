"""Progress where no terminal is attached, and the debug group's quick runs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import tiny_train_config
from hydra import compose, initialize_config_dir

from poetry_vae.cli import CONFIG_DIR
from poetry_vae.train import train


def test_plain_progress_lines_without_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train(tiny_train_config(tmp_path / "run", tmp_path / "cache", "trainer.max_epochs=3",
                            "trainer.limit_val_batches=1", "evaluation.iw_every_n_val=2",
                            "+callbacks.plain_progress._target_=poetry_vae.progress.PlainProgress",
                            "+callbacks.plain_progress.interval_s=0"))
    out = capsys.readouterr().out.splitlines()  # pytest's captured stdout is not a terminal
    steps = [line for line in out if line.startswith("step ")]
    assert len(steps) == 12 and all(key in steps[-1] for key in ("epoch 2", "loss", "kl", "beta", "poems/s"))
    validations = [line for line in out if line.startswith("validation after epoch")]
    assert len(validations) == 3 and all("kl" in line for line in validations)
    # the IW bound where it was computed (2nd epoch, the last), never an older epoch's value in between
    assert ["iw_nll/char" in line for line in validations] == [False, True, True]


def test_plain_progress_reports_time_left_under_max_time(tmp_path: Path, capsys) -> None:
    train(tiny_train_config(tmp_path / "run", tmp_path / "cache", "trainer.max_epochs=1",
                            "trainer.max_time=00:00:05:00", "trainer.limit_val_batches=1",
                            "+callbacks.plain_progress._target_=poetry_vae.progress.PlainProgress",
                            "+callbacks.plain_progress.interval_s=0"))
    steps = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert steps and " left 0:04:" in steps[-1]


@pytest.mark.parametrize("option", ["fdr", "limit", "overfit", "tiny"])
def test_debug_options_compose(option: str) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"debug={option}"], return_hydra_config=True)
    assert cfg.init_embeddings == "random" and cfg.evaluation.iw_samples_test == 2
    assert "debug" in cfg.hydra.run.dir  # debug runs never land in (or clash with) a real run's directory


def test_debug_overfit_drives_the_training_loss_towards_zero(tmp_path: Path) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["debug=overfit", f"paths.output_dir={tmp_path}",
                                          f"paths.cache_dir={tmp_path}", "logger=csv", "torch_threads=2"])
    train(cfg)
    (metrics,) = tmp_path.glob("csv/version_*/metrics.csv")
    rec = [float(row["train/rec"]) for row in csv.DictReader(metrics.open(encoding="utf-8")) if row.get("train/rec")]
    assert rec[0] > 100 and rec[-1] < 0.02 * rec[0]  # memorised: what a working model and objective must do


def test_debug_fast_dev_run_trains_validates_and_tests(tmp_path: Path) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["debug=fdr", f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}",
                                          "trainer.precision=32-true", "torch_threads=1"])
    metrics = train(cfg)
    assert "test/iw_nll_char" in metrics and metrics["test/iw_nll_char"] > 0
    assert not list(tmp_path.rglob("*.ckpt"))  # fast_dev_run writes no checkpoint, as Lightning says
