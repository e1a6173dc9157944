"""The commands talk: a run's lines land in its train.log and end with a summary, evaluate says what it is doing
and prints clean numbers, a mistyped key or option gets "did you mean", and train has its own short --help."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import tiny_train_config

from poetry_vae.cli import CONFIG_DIR, check_overrides, split_print_flags
from poetry_vae.evaluate import format_metric
from poetry_vae.progress import _not_an_advert, best_validation, neg_elbo_per_char, quiet_lightning
from poetry_vae.schema import ConfigError
from poetry_vae.train import resolve_ckpt_path, resume_line, train

ROOT = CONFIG_DIR.parent
EXPERIMENTS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))
VALIDATION = re.compile(r"validation after epoch (\d+) \(step \d+\): iw_nll/char ([\d.]+)")


def _command(module: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", f"poetry_vae.{module}", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def _summary_rows(text: str) -> dict[str, str]:
    """The summary's rows (``  label  value``) after its ``summary:`` line, by label."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.endswith("summary:"))
    rows = {}
    for line in lines[start + 1 :]:
        match = re.search(r"  (\S.*?)  +(\S.*)$", line)
        if not match:
            break
        rows[match.group(1)] = match.group(2)
    return rows


# ---- a run's log and its summary ----


@pytest.mark.parametrize(
    ("extra", "printed"),
    [
        ([], True),  # debug=tiny: no progress bar, no PlainProgress: the run prints its validation lines itself
        (["+callbacks.plain_progress._target_=poetry_vae.progress.PlainProgress",
          "+callbacks.plain_progress.interval_s=1000"], True),  # PlainProgress prints them (once, not twice)
        (["trainer.enable_progress_bar=true"], False),  # a progress bar shows them: train.log alone has them
    ],
)
def test_train_log_holds_the_runs_lines_and_its_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        extra: list[str], printed: bool) -> None:
    out = tmp_path / "run"
    train(tiny_train_config(out, tmp_path / "cache", "trainer.max_epochs=2", "trainer.limit_val_batches=1", *extra))
    stdout = capsys.readouterr().out
    log = (out / "train.log").read_text("utf-8")
    assert len(VALIDATION.findall(log)) == 2  # each validation once
    assert len(VALIDATION.findall(stdout)) == (2 if printed else 0)
    assert "`Trainer.fit` stopped: `max_epochs=2` reached." in log  # Lightning's rank-zero notice
    assert log.count("summary:") == 1 and stdout.count("summary:") == 1
    rows = _summary_rows(stdout)
    assert rows == _summary_rows(log)
    assert rows["steps"].startswith("8 in 2 epochs")
    best = min(float(value) for _, value in VALIDATION.findall(log))
    assert float(rows["best val IW-NLL"].split()[0]) == pytest.approx(best, abs=1e-3)
    assert "K=2" in rows["best val IW-NLL"] and rows["final KL"].endswith("(validation after epoch 1)")
    assert Path(rows["best checkpoint"]).is_file() and rows["best checkpoint"].startswith(str(out))
    assert rows["last checkpoint"] == str(out / "checkpoints" / "last.ckpt") and Path(rows["last checkpoint"]).is_file()
    assert rows["run directory"] == str(out)


def test_summary_of_a_run_without_validation_or_checkpoints(tmp_path: Path, capsys) -> None:
    train(tiny_train_config(tmp_path / "run", tmp_path / "cache", "trainer.max_steps=2", "trainer.limit_val_batches=0",
                            "~callbacks.model_checkpoint", "~callbacks.last_checkpoint",
                            "+trainer.enable_checkpointing=false", "test_after_fit=true"))
    rows = _summary_rows(capsys.readouterr().out)
    assert rows["steps"].startswith("2 in 1 epoch (")
    assert rows["validation"] == "none ran"
    assert re.fullmatch(r"[\d.]+ nats \(last training batch\)", rows["final KL"])
    assert re.fullmatch(r"[\d.]+ nats/char \(perplexity [\d.]+, K=2\)", rows["test IW-NLL"])
    assert rows["checkpoints"] == "none written" and not (tmp_path / "run" / "checkpoints").exists()


def test_model_summary_counts_flops_and_leaves_the_training_noise_alone(tmp_path: Path, capsys) -> None:
    losses = {}
    for shown in (False, True):
        out = tmp_path / f"summary_{shown}"
        metrics = train(tiny_train_config(out, tmp_path / "cache", "trainer.max_steps=2", "trainer.limit_val_batches=0",
                                          f"trainer.enable_model_summary={shown}", "test_after_fit=false"))
        losses[shown] = float(metrics["train/loss"])
        flops = re.search(r"Total FLOPs: ([\d.]+ ?[KMGT]?)", capsys.readouterr().out)
        assert (flops is not None) == shown
    assert flops.group(1).strip() not in ("0", "0.0")  # counted on the example poem, not Lightning's empty 0
    assert losses[True] == losses[False]  # the example's code is drawn from a forked RNG


def test_summary_falls_back_to_the_elbo_per_character() -> None:
    # 20 positions: rec 100 nats = 5 nats/char; -ELBO = rec + KL = 105 nats = 5.25 nats/char
    plain = {"val/rec": 100.0, "val/nll_char": 5.0, "val/elbo": -105.0, "val/kl": 5.0, "epoch": 0, "step": 4}
    assert neg_elbo_per_char(plain) == pytest.approx(5.25)
    worse = {**plain, "val/elbo": -110.0, "epoch": 1}
    label, value = best_validation([worse, plain], samples=10)
    assert label == "best val -ELBO" and value.startswith("5.2500 nats/char") and "after epoch 0" in value
    assert "no IW bound computed" in value
    with_iw = {**worse, "val/iw_nll_char": 5.1}
    label, value = best_validation([plain, with_iw], samples=10)  # an IW bound wins wherever one was computed
    assert label == "best val IW-NLL" and value.startswith("5.1000 nats/char") and "K=10" in value


@pytest.mark.slow
def test_debug_tiny_cli_run_writes_train_log_and_prints_a_summary(tmp_path: Path) -> None:
    result = _command("train", "debug=tiny", "trainer.max_epochs=2", f"paths.output_root={tmp_path / 'outputs'}",
                      f"paths.cache_dir={tmp_path / 'cache'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (log_file,) = (tmp_path / "outputs" / "debug").glob("*/train.log")
    log = log_file.read_text("utf-8")
    assert len(VALIDATION.findall(log)) == 2 and len(VALIDATION.findall(result.stdout)) == 2
    assert "GPU available" in log and "`Trainer.fit` stopped" in log  # Lightning's notices, through Hydra's file
    rows = _summary_rows(result.stdout)
    assert rows == _summary_rows(log) and log.count("summary:") == 1
    assert {"steps", "best val IW-NLL", "final KL", "best checkpoint", "last checkpoint"} <= set(rows)
    assert Path(rows["last checkpoint"]).is_file() and rows["run directory"] == str(log_file.parent)


# ---- evaluate ----


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("global_step", 4695.0, "4695"),
        ("iw_samples", 500.0, "500"),
        ("test/active_units", 32.0, "32"),
        ("test/iw_nll_char", 6.116432, "6.1164"),
        ("test/iw_ppl", 452.9311, "452.93"),
        ("test/elbo", -128.4449, "-128.44"),
        ("test/iw_ppl", 12345.67, "12345.7"),
        ("test/recon_char_acc", 0.04321, "0.0432"),
    ],
)
def test_evaluate_formats_counts_as_integers_and_metrics_with_sensible_digits(name: str, value: float,
                                                                              shown: str) -> None:
    assert format_metric(name, value) == shown


@pytest.mark.slow
def test_evaluate_talks_and_prints_clean_numbers(tiny_checkpoint: Path) -> None:
    result = _command("evaluate", f"ckpt_path={tiny_checkpoint}", "iw_samples=3", "homotopy_pairs=3",
                      "prior_samples=4")
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert not re.search(r"warning|deprecat", output, re.IGNORECASE), output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"loading {tiny_checkpoint}")
    assert re.match(r"IW bound over [\d,]+ test poems with K=3 samples", lines[1])
    assert lines[2].startswith("latent measures: reconstructing") and re.match(r"done in \d+ s$", lines[3])
    metrics = dict(line.split() for line in lines[4:])
    assert re.fullmatch(r"\d+", metrics["global_step"]) and metrics["iw_samples"] == "3"
    assert re.fullmatch(r"\d+", metrics["test/active_units"])
    assert all(re.fullmatch(r"-?\d+(\.\d{1,4})?", value) for value in metrics.values()), metrics


# ---- did you mean ----


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("sample", ["stratgy=greedy"], "unknown key 'stratgy': did you mean 'strategy'?"),
        ("train", ["trainer.max_epoch=3"], "unknown key 'trainer.max_epoch': did you mean 'trainer.max_epochs'?"),
        ("train", ["experiment=poet_finetun"], "unknown experiment 'poet_finetun': did you mean 'poet_finetune'?"),
        ("train", ["model=vea"], "unknown model 'vea': did you mean 'vae'?"),
        ("train", ["modle=vae"], "unknown key 'modle': did you mean 'model'?"),
        ("train", ["debug=tiny", "trainr.max_epochs=3"],
         "unknown key 'trainr.max_epochs': did you mean 'trainer.max_epochs'?"),
        ("train", ["debug=tinyy"], "unknown debug 'tinyy': did you mean 'tiny'?"),
        ("train", ["anneal.cycles=2"], "unknown key 'anneal.cycles': anneal=logistic has no key named like it"),
        ("train", ["-m", "seed=1,2", "experiment=bnvae,poet_finetun"],
         "unknown experiment 'poet_finetun': did you mean 'poet_finetune'?"),  # every job of a sweep
        ("evaluate", ["ckpt_path=x.ckpt", "iw_sample=3"], "unknown key 'iw_sample': did you mean 'iw_samples'?"),
    ],
)
def test_a_typo_gets_did_you_mean(command: str, args: list[str], expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_overrides(command, args)
    assert str(error.value) == expected


def test_an_option_like_none_lists_them_all() -> None:
    with pytest.raises(ConfigError) as error:
        check_overrides("train", ["experiment=zzzz"])
    message = str(error.value)
    assert message.startswith("unknown experiment 'zzzz': the options are ") and "\n" not in message
    assert message.split("the options are ")[1].split(", ") == EXPERIMENTS


@pytest.mark.parametrize(
    ("command", "arg", "expected"),
    [
        ("sample", "stratgy=greedy", "error: unknown key 'stratgy': did you mean 'strategy'?"),
        ("train", "trainer.max_epoch=3", "error: unknown key 'trainer.max_epoch': did you mean 'trainer.max_epochs'?"),
        ("train", "experiment=poet_finetun",
         "error: unknown experiment 'poet_finetun': did you mean 'poet_finetune'?"),
    ],
)
def test_the_command_line_says_it_in_one_line(command: str, arg: str, expected: str) -> None:
    result = _command(command, arg)
    assert result.returncode == 2
    assert result.stderr.strip() == expected and result.stdout == ""


# ---- --help and --cfg ----


def test_train_help_is_short_and_lists_every_experiment() -> None:
    result = _command("train", "--help")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) < 60 and "Configuration groups" not in result.stdout  # not Hydra's dump
    start = next(i for i, line in enumerate(lines) if line.startswith("  experiment "))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" " * 18))  # wrapped lines
    listed = " ".join([lines[start].split(maxsplit=1)[1], *(line.strip() for line in lines[start + 1 : end])])
    listed = listed.split(", ")
    assert listed == EXPERIMENTS
    for group in ("anneal", "model", "trainer", "debug", "data"):
        assert any(line.split()[:1] == [group] for line in lines), group
    assert sum(line.lstrip().startswith("python -m poetry_vae.train") for line in lines) >= 4
    assert "== Most used keys ==" in result.stdout and "run_name=" in result.stdout


def test_print_flags_are_set_apart_from_the_overrides() -> None:
    args = ["--cfg", "job", "a=1", "-p", "model", "--resolve", "--cfg=all", "b=2"]
    assert split_print_flags(args) == (["a=1", "b=2"], True)
    assert split_print_flags(["a=1"]) == (["a=1"], False)


def test_cfg_job_is_type_checked(tmp_path: Path) -> None:
    result = _command("train", "--cfg", "job", "trainer.max_epochs=abc")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == "error: trainer.max_epochs='abc': expected an integer or null"


def test_cfg_job_prints_a_run_that_could_not_start(tmp_path: Path) -> None:
    # printing the config of a run whose directory holds checkpoints: no refusal, no lock, nothing written
    run = tmp_path / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not read")
    result = _command("train", "--cfg", "job", "run_name=r", f"paths.output_root={tmp_path}",
                      "trainer.max_epochs=3")
    assert result.returncode == 0, result.stderr
    assert "max_epochs: 3" in result.stdout
    assert sorted(path.name for path in run.iterdir()) == ["checkpoints"]


def test_lightning_s_adverts_and_false_alarms_are_dropped_not_its_notices(caplog: pytest.LogCaptureFixture) -> None:
    from pytorch_lightning.utilities.rank_zero import rank_zero_info

    quiet_lightning()
    quiet_lightning()  # twice: one filter
    notices = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    assert notices.filters.count(_not_an_advert) == 1
    with caplog.at_level(logging.INFO, logger="pytorch_lightning"):
        rank_zero_info("💡 Tip: For seamless cloud logging and experiment tracking, try installing litlogger")
        rank_zero_info("GPU available: False, used: False")
    assert [record.getMessage() for record in caplog.records] == ["GPU available: False, used: False"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_lightning()  # filters put first again, ahead of the "default" one
        warnings.warn("Precision bf16-mixed is not supported by the model summary.  Estimated model size in MB will "
                      "not be accurate. Using 32 bits instead.", UserWarning, stacklevel=1)
        for monitor in ("val/elbo", "val/typo"):  # ours is logged at every validation: missing only before one
            warnings.warn(f"`ModelCheckpoint(monitor='{monitor}')` could not find the monitored key in the returned "
                          "metrics: ['train/loss']. HINT: Did you call `log(...)`?", UserWarning, stacklevel=1)
    assert [str(warning.message)[:37] for warning in caught] == ["`ModelCheckpoint(monitor='val/typo')`"]


def test_a_resumed_run_says_where_it_starts_and_when_its_time_is_spent() -> None:
    timer = {"Timer": {"time_elapsed": {"train": 519.3, "validate": 7.5}}}
    spent = resume_line({"global_step": 2715, "callbacks": timer}, "outputs/run/checkpoints/last.ckpt", "00:00:08:30")
    assert spent.startswith("resuming outputs/run/checkpoints/last.ckpt at step 2,715 (0:08:39 trained of "
                            "trainer.max_time=00:00:08:30): its time is spent")
    assert "pass a larger trainer.max_time" in spent and "\n" not in spent
    going = resume_line({"global_step": 10, "callbacks": timer}, "last.ckpt", "00:01:00:00")
    assert going == "resuming last.ckpt at step 10 (0:08:39 trained of trainer.max_time=00:01:00:00)"
    assert resume_line({"global_step": 10, "callbacks": {}}, "last.ckpt", None) == "resuming last.ckpt at step 10"


def test_a_fresh_start_is_said_once_not_by_every_ddp_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert resolve_ckpt_path("last", tmp_path) == (None, None)
    assert "starting a fresh run" in capsys.readouterr().err
    monkeypatch.setenv("LOCAL_RANK", "1")  # a process Lightning's DDP launched
    assert resolve_ckpt_path("last", tmp_path) == (None, None)
    assert capsys.readouterr().err == ""
