"""Training end to end on tiny models: determinism, resume equivalence, checkpoints, config errors."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_config
from omegaconf import DictConfig
from pytorch_lightning.loggers import WandbLogger

from poetry_vae.checkpoint import load_checkpoint, read_checkpoint
from poetry_vae.cli import ConfigError, check_overrides
from poetry_vae.errors import CheckpointError
from poetry_vae.layout import is_format_valid
from poetry_vae.train import train


def make_cfg(out: Path, cache: Path, *overrides: str) -> DictConfig:
    return tiny_train_config(out, cache, "anneal=linear", "anneal.warmup_steps=6", "objective.word_dropout=0.2",
                             *overrides)


def train_losses(out: Path) -> list[tuple[int, float, float]]:
    """(step, train/loss, train/beta) rows from the CSV logger (all versions: one per resume), in step order."""
    rows = []
    for path in sorted((out / "csv").glob("version_*/metrics.csv")):
        with open(path, encoding="utf-8") as handle:
            rows += [row for row in csv.DictReader(handle) if row.get("train/loss")]
    return sorted((int(r["step"]), float(r["train/loss"]), float(r["train/beta"])) for r in rows)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_resume_equals_uninterrupted_and_same_seed_same_losses(tmp_path: Path, cache: Path) -> None:
    straight = tmp_path / "straight"
    train(make_cfg(straight, cache, "trainer.max_epochs=2"))  # 32 poems / batch 8 = 4 steps an epoch
    again = tmp_path / "again"
    train(make_cfg(again, cache, "trainer.max_epochs=2"))
    resumed = tmp_path / "resumed"
    train(make_cfg(resumed, cache, "trainer.max_epochs=1"))
    assert read_checkpoint(resumed / "checkpoints" / "last.ckpt")["global_step"] == 4
    train(make_cfg(resumed, cache, "trainer.max_epochs=2", "ckpt_path=last"))

    expected = train_losses(straight)
    assert [step for step, _, _ in expected] == list(range(8))
    assert train_losses(again) == expected  # same seed, same config: same losses
    got = train_losses(resumed)
    assert [s for s, _, _ in got] == list(range(8))
    for (_, loss_a, beta_a), (_, loss_b, beta_b) in zip(expected, got, strict=True):
        assert beta_b == pytest.approx(beta_a, abs=1e-7)  # the β schedule continues where it stopped
        assert loss_b == pytest.approx(loss_a, rel=1e-5)
    assert expected[0][2] == 0.0 and expected[-1][2] == 1.0  # linear warm-up over 6 steps, really used


def test_checkpoint_loads_weights_only_and_matches_module(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    metrics = train(make_cfg(out, cache, "trainer.max_epochs=1", "test_after_fit=true"))
    for key in ("val/iw_nll_char", "val/kl", "val/active_units", "val/mi", "test/iw_ppl", "test/elbo"):
        assert key in metrics
    assert metrics["test/iw_nll"] <= -metrics["test/elbo"] + 1.0  # IW bound at least as tight as the ELBO
    path = out / "checkpoints" / "last.ckpt"
    raw = torch.load(path, weights_only=True)  # plain hyper-parameters only
    assert raw["hyper_parameters"]["vocab"]["tokens"][:4] == ["<pad>", "<s>", "</s>", "<unk>"]
    loaded = load_checkpoint(path)
    assert not loaded.model.training and loaded.model.cfg.latent_dim == 8
    state = {k.removeprefix("model."): v for k, v in raw["state_dict"].items()}
    for name, tensor in loaded.model.state_dict().items():
        assert torch.equal(tensor, state[name])
    best = list((out / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1


def test_training_on_the_importance_weighted_bound(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "iw"
    metrics = train(tiny_train_config(out, cache, "trainer.max_epochs=1", "objective.iw_samples=3"))
    losses = train_losses(out)
    assert [step for step, _, _ in losses] == list(range(4)) and all(math.isfinite(loss) for _, loss, _ in losses)
    assert math.isfinite(metrics["val/iw_nll_char"])
    with pytest.raises(ConfigError, match="iw_samples"):
        check_overrides("train", ["objective.iw_samples=2", "objective.free_bits=1"])


def test_existing_run_is_not_overwritten(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    train(make_cfg(out, cache, "trainer.max_steps=1", "trainer.limit_val_batches=0"))
    before = (out / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(CheckpointError, match=r"already holds checkpoints.*ckpt_path=last"):
        train(make_cfg(out, cache, "trainer.max_steps=1"))
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == before


@pytest.mark.parametrize("changed", ["model.latent_dim=4", "objective.bag_of_words=1.0"])
def test_resume_with_another_model_is_one_line(tmp_path: Path, cache: Path, changed: str) -> None:
    out = tmp_path / "run"
    train(make_cfg(out, cache, "trainer.max_steps=1", "trainer.limit_val_batches=0"))
    before = (out / "checkpoints" / "last.ckpt").read_bytes()
    with pytest.raises(CheckpointError, match=r"trained with another model or objective .*config.yaml") as error:
        train(make_cfg(out, cache, "trainer.max_steps=2", "ckpt_path=last", changed))
    assert "\n" not in str(error.value)
    assert (out / "checkpoints" / "last.ckpt").read_bytes() == before


class Foreign:
    pass


def test_bad_checkpoints_give_one_line_errors(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    train(make_cfg(out, cache, "trainer.max_steps=1", "trainer.limit_val_batches=0"))
    good = (out / "checkpoints" / "last.ckpt").read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good[: len(good) // 2])
    bare = tmp_path / "bare.ckpt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), bare)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"object": Foreign()}, pickled)
    cases = {
        tmp_path / "missing.ckpt": "not found",
        truncated: "truncated or corrupt",
        bare: "not a poetry_vae checkpoint",
        pickled: "unsafe to unpickle",
    }
    for path, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as error:
            load_checkpoint(path)
        assert "\n" not in str(error.value) and str(path) in str(error.value)


@pytest.mark.parametrize(
    ("args", "named"),
    [(["no_such_key=1"], "no_such_key"), (["model=nope"], "unknown model 'nope'"),
     (["anneal=linear,nope", "-m"], "nope")],
)
def test_bad_config_is_one_line_naming_the_key(args: list[str], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as error:
        check_overrides("train", args)
    assert "\n" not in str(error.value)
    check_overrides("train", ["anneal=linear,cyclical", "objective.word_dropout=0,0.25", "-m"])  # a valid sweep


def test_cli_bad_key_exit_status_and_single_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "poetry_vae.train", "model.no_such_option=3", f"paths.output_root={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [lines[-1]] and "no_such_option" in lines[-1] and lines[-1].startswith("error:")


def test_default_callbacks_and_loggers_write_samples_and_wandb_offline(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    summaries: list[dict] = []
    finalize = WandbLogger.finalize

    def capture_summary(self: WandbLogger, status: str) -> None:  # the run's summary just before it closes
        summaries.append(dict(self.experiment.summary))
        finalize(self, status)

    monkeypatch.setattr(WandbLogger, "finalize", capture_summary)
    out = tmp_path / "run"
    train(make_cfg(out, cache, "trainer.max_epochs=1", "callbacks=default", "logger=default", "run_name=t",
                         "callbacks.throughput.window_size=2"))
    rows = [json.loads(line) for line in (out / "samples" / "epoch_000.jsonl").read_text("utf-8").splitlines()]
    kinds = [row["kind"] for row in rows]
    assert kinds.count("prior") == 8 and kinds.count("reconstruction") == 4
    assert all(is_format_valid(row["poem"]) for row in rows)
    header = (out / "csv" / "version_0" / "metrics.csv").read_text("utf-8").splitlines()[0].split(",")
    assert {"train/device/samples_per_sec", "lr-Adam", "val/iw_nll_char", "val/active_units", "val/mi"} <= set(header)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))  # offline: a local run folder, nothing sent
    expected = {"train/loss", "train/kl", "train/beta", "val/rec", "val/kl", "val/elbo", "val/iw_nll_char",
                "val/active_units", "val/mi", "lr-Adam", "samples/poems"}
    assert summaries and expected <= set(summaries[-1])


def _validation_rows(out: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted((out / "csv").glob("version_*/metrics.csv")):
        with open(path, encoding="utf-8") as handle:
            rows += [row for row in csv.DictReader(handle) if row.get("val/elbo")]
    return rows


@pytest.mark.parametrize("stop", ["max_epochs", "max_time"])
def test_iw_bound_every_n_validations_and_always_the_last(tmp_path: Path, cache: Path, stop: str) -> None:
    if stop == "max_epochs":  # every 2nd epoch (1, 3) and the last (4)
        train(make_cfg(tmp_path, cache, "trainer.max_epochs=5", "evaluation.iw_every_n_val=2"))
        expected = [False, True, False, True, True]
    else:  # a time budget ends the run mid-way: its last validation still has the bound, no other does
        train(make_cfg(tmp_path, cache, "trainer.max_epochs=1000", "trainer.max_time=00:00:00:03",
                       "evaluation.iw_every_n_val=1000"))
        expected = None
    rows = _validation_rows(tmp_path)
    has_iw = [bool(row.get("val/iw_nll_char")) for row in rows]
    if expected is None:
        assert len(rows) >= 3 and has_iw == [False] * (len(rows) - 1) + [True]
    else:
        assert has_iw == expected
    assert all(float(row["val/elbo"]) < 0 for row in rows)  # the checkpoint's score is there every epoch
