"""A long run survives its faults: SIGTERM, a full disk, a bad max_epochs, a second run in its directory, paths
given from another folder. Each ends in one line, and nothing of an earlier run is lost."""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN_OVERRIDES, tiny_train_config
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from pytorch_lightning import Callback, LightningModule, Trainer

from poetry_vae import checkpoint_io, run_lock
from poetry_vae.checkpoint import load_checkpoint, read_checkpoint
from poetry_vae.cli import CONFIG_DIR
from poetry_vae.disk_full import DiskFullError
from poetry_vae.errors import CheckpointError
from poetry_vae.preemption import Terminated
from poetry_vae.project_paths import PROJECT_ROOT
from poetry_vae.schema import ConfigError
from poetry_vae.train import init_checkpoint, refuse_before_writing, train


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "poetry_vae.train", *TINY_TRAIN_OVERRIDES, *args]


def add_callback(monkeypatch: pytest.MonkeyPatch, callback: Callback) -> None:
    """Every Trainer that train() builds also runs ``callback``."""
    init = Trainer.__init__

    def with_callback(self: Trainer, *args: object, callbacks: list[Callback], **kwargs: object) -> None:
        init(self, *args, callbacks=[*callbacks, callback], **kwargs)

    monkeypatch.setattr(Trainer, "__init__", with_callback)


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def resumed_steps(run: Path) -> list[int]:
    """The training steps logged by the resumed run (the CSV logger's second version)."""
    rows = (run / "csv" / "version_1" / "metrics.csv").read_text("utf-8").splitlines()
    header = rows[0].split(",")
    return sorted({int(row.split(",")[header.index("step")]) for row in rows[1:]})


# --- SIGTERM ---------------------------------------------------------------------------------------------------


class SigtermAfterFirstCheckpoint(Callback):
    """Send this process SIGTERM once last.ckpt exists, as a scheduler preempting the job would."""

    def __init__(self, last: Path) -> None:
        self.last, self.sent_at_step = last, -1

    def on_train_batch_end(self, trainer: Trainer, *_: object) -> None:
        if self.sent_at_step < 0 and self.last.exists():
            self.sent_at_step = trainer.global_step
            os.kill(os.getpid(), signal.SIGTERM)  # Lightning's handler only sets a flag: training goes on to a stop


def test_sigterm_saves_last_ckpt_and_resume_continues(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    sender = SigtermAfterFirstCheckpoint(last)
    add_callback(monkeypatch, sender)
    with pytest.raises(Terminated, match=r"terminated by SIGTERM at epoch \d+, step \d+; checkpoint saved to") as error:
        train(tiny_train_config(out, cache, "trainer.max_epochs=50"))
    monkeypatch.undo()
    message = str(error.value)
    assert "\n" not in message and str(last) in message and "ckpt_path=last" in message
    assert Terminated.exit_code == 143
    saved = read_checkpoint(last)["global_step"]
    assert saved == sender.sent_at_step > 4  # where the signal found it, not the first epoch's checkpoint
    assert load_checkpoint(last).global_step == saved

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(tiny_train_config(out, cache, "trainer.max_epochs=2", "ckpt_path=last"))  # finish the cut epoch
    assert not [w for w in caught if "exists and is not empty" in str(w.message)]  # its own checkpoints/: no notice
    assert resumed_steps(out) == list(range(saved, 8))  # continues where it stopped, not from an earlier epoch
    assert read_checkpoint(last)["global_step"] == 8


@pytest.mark.slow
def test_sigterm_to_a_cli_run_exits_143_with_a_resumable_checkpoint(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    log = tmp_path / "stderr.txt"
    with open(log, "w", encoding="utf-8") as stderr_file:  # a file, not a pipe nobody reads while we wait
        process = subprocess.Popen(cli("trainer.max_epochs=1000", f"hydra.run.dir={run}", f"paths.cache_dir={cache}"),
                                   stdout=subprocess.DEVNULL, stderr=stderr_file, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 240
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert last.exists(), "no checkpoint before the deadline"
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = log.read_text("utf-8")
    assert process.returncode == 143, stderr[-2000:]
    final = stderr_lines(stderr)[-1]
    assert final.startswith("error: terminated by SIGTERM") and str(last) in final, stderr[-2000:]
    assert "Traceback" not in stderr
    saved = load_checkpoint(last).global_step
    epochs = read_checkpoint(last)["epoch"]

    train(tiny_train_config(run, cache, f"trainer.max_epochs={epochs + 2}", "ckpt_path=last"))
    assert resumed_steps(run)[0] == saved
    assert read_checkpoint(last)["global_step"] > saved


# --- a full disk ------------------------------------------------------------------------------------------------


def test_full_disk_is_one_line_and_keeps_the_previous_checkpoint(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    write = checkpoint_io.write_checkpoint_file
    calls: list[Path] = []

    def fills_up(checkpoint: dict, path: Path) -> None:
        calls.append(path)
        if len(calls) <= 2:  # the first validation's best and last checkpoints fit
            return write(checkpoint, path)
        path.write_bytes(b"PK\x03\x04 half a checkpoint")  # what a filling disk leaves behind
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_io, "write_checkpoint_file", fills_up)
    with pytest.raises(DiskFullError) as error:
        train(tiny_train_config(out, cache, "trainer.max_epochs=3"))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"cannot write {out / 'checkpoints'}/") and "no space left on device" in message
    assert f"the last complete checkpoint is {last} " in message and "ckpt_path=last" in message
    assert len(calls) == 3 and not calls[-1].exists()  # the half-written temporary file is gone
    assert load_checkpoint(last).global_step == 4  # the first epoch's checkpoint, whole
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]


# --- resuming with too few epochs -------------------------------------------------------------------------------


def run_config(run: Path, cache: Path, *overrides: str) -> DictConfig:
    """A train config with its hydra node (what the command line's precheck sees), running in ``run``."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[*TINY_TRAIN_OVERRIDES, f"hydra.run.dir={run}", f"paths.cache_dir={cache}",
                                           *overrides], return_hydra_config=True)


def test_resume_with_max_epochs_below_the_checkpoint_is_one_line(tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    train(tiny_train_config(out, cache, "trainer.max_epochs=3"))
    before = last.read_bytes()
    expected = re.escape(f"{last} has trained 3 epochs (step 12), more than trainer.max_epochs=2: "
                         "pass trainer.max_epochs=4 or more")
    with pytest.raises(CheckpointError, match=expected) as error:
        train(tiny_train_config(out, cache, "trainer.max_epochs=2", "ckpt_path=last"))
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match=expected):  # the command line refuses before writing anything
        refuse_before_writing(run_config(out, cache, "trainer.max_epochs=2", "ckpt_path=last"))
    assert last.read_bytes() == before and not (out / "csv" / "version_1").exists()
    train(tiny_train_config(out, cache, "trainer.max_epochs=4", "ckpt_path=last"))  # what the line says works
    assert read_checkpoint(last)["global_step"] == 16


# --- one run per directory --------------------------------------------------------------------------------------


def test_a_second_run_in_a_busy_directory_is_refused(tmp_path: Path, cache: Path) -> None:
    run = tmp_path / "outputs" / "busy"
    assert run_lock.acquire(run)  # as the first run, still training, holds it
    try:
        result = subprocess.run(cli(f"hydra.run.dir={run}", f"paths.cache_dir={cache}", "trainer.max_steps=1"),
                                capture_output=True, text=True, timeout=300, cwd=tmp_path)
    finally:
        run_lock.release(run)
    lines = stderr_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0] == (f"error: {run.resolve()} is in use by another run (pid {os.getpid()}): wait for it to "
                        "finish, or train elsewhere with run_name=<another name>")
    assert sorted(path.name for path in run.iterdir()) == [run_lock.LOCK_NAME]  # no .hydra/, no log: untouched


class CrashAfterProbingTheLock(Callback):
    """Ask another process whether the run directory is free, then crash the run."""

    def __init__(self, run: Path) -> None:
        self.run, self.refused = run, False

    def on_train_start(self, trainer: Trainer, module: LightningModule) -> None:
        probe = subprocess.run([sys.executable, "-c", "import sys; from poetry_vae import run_lock; "
                                "run_lock.check_free(sys.argv[1])", str(self.run)], capture_output=True, text=True)
        self.refused = probe.returncode != 0 and "is in use by another run" in probe.stderr
        raise RuntimeError("a crash mid-run")


def test_the_lock_is_held_while_training_and_released_after_an_error(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "run"
    crash = CrashAfterProbingTheLock(out)
    add_callback(monkeypatch, crash)
    with pytest.raises(RuntimeError, match="a crash mid-run"):
        train(tiny_train_config(out, cache, "trainer.max_steps=1"))
    assert crash.refused  # another process was refused while the run trained
    assert run_lock.acquire(out)  # and after the crash the directory is free again
    run_lock.release(out)


# --- paths ------------------------------------------------------------------------------------------------------


def test_relative_paths_start_at_the_project_root(tmp_path: Path, cache: Path) -> None:
    first = tmp_path / "first"
    train(tiny_train_config(first, cache, "trainer.max_steps=1", "trainer.limit_val_batches=0"))
    shell = tmp_path / "shell"  # the folder the command is typed in
    shell.mkdir()
    root = os.path.relpath(tmp_path / "runs", PROJECT_ROOT)
    init = os.path.relpath(first / "checkpoints" / "last.ckpt", PROJECT_ROOT)
    result = subprocess.run(cli(f"paths.output_root={root}", "run_name=tuned", f"init_from={init}",
                                f"paths.cache_dir={cache}", "trainer.max_steps=1", "trainer.limit_val_batches=1"),
                            capture_output=True, text=True, timeout=300, cwd=shell)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (tmp_path / "runs" / "debug").iterdir()  # debug runs live in <output root>/debug/<time>
    assert load_checkpoint(run / "checkpoints" / "last.ckpt").global_step == 1
    assert list(shell.iterdir()) == []


def test_missing_init_from_names_the_key(tmp_path: Path, cache: Path) -> None:
    for given, named in (("no/such.ckpt", PROJECT_ROOT / "no" / "such.ckpt"), (str(tmp_path / "x.ckpt"), None)):
        expected = "^" + re.escape(f"init_from={named or given} not found")
        with pytest.raises(CheckpointError, match=expected) as error:
            train(tiny_train_config(tmp_path / "run", cache, f"init_from={given}"))
        assert "ckpt_path" not in str(error.value)
        with pytest.raises(CheckpointError, match=expected):
            refuse_before_writing(run_config(tmp_path / "cli", cache, f"init_from={given}"))
    assert not (tmp_path / "cli").exists()


def test_init_from_a_file_that_is_no_checkpoint_is_refused_before_writing(tmp_path: Path, cache: Path) -> None:
    readme = PROJECT_ROOT / "README.md"
    with pytest.raises(CheckpointError, match=re.escape(f"{readme} is not a checkpoint")) as error:
        refuse_before_writing(run_config(tmp_path / "cli", cache, f"init_from={readme}"))
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match=re.escape(f"init_from={os.devnull} is not a file")):
        refuse_before_writing(run_config(tmp_path / "cli", cache, f"init_from={os.devnull}"))
    assert not (tmp_path / "cli").exists()  # no run directory, no lock, no .hydra/


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_asked_for_on_a_machine_without_one_is_refused_before_writing(tmp_path: Path, cache: Path) -> None:
    with pytest.raises(ConfigError, match=r"trainer.accelerator=gpu: no CUDA GPU is available .* use trainer=cpu"):
        refuse_before_writing(run_config(tmp_path / "cli", cache, "trainer=gpu"))
    assert not (tmp_path / "cli").exists()


def test_init_from_a_run_directory_means_its_best_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match="directory without checkpoints/") as error:
        init_checkpoint(str(run.parent))
    assert "\n" not in str(error.value)
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError, match="not found"):  # nothing saved yet
        init_checkpoint(str(run))
    torch.save({}, run / "checkpoints" / "last.ckpt")
    assert init_checkpoint(str(run)) == run / "checkpoints" / "last.ckpt"  # no best-*.ckpt: the last one
    for epoch, elbo in ((3, -130.0), (7, -125.0), (9, -128.0)):
        state = {"ModelCheckpoint{'monitor': 'val/elbo'}": {"monitor": "val/elbo", "current_score": torch.tensor(elbo)}}
        torch.save({"callbacks": state}, run / "checkpoints" / f"best-epoch{epoch:03d}.ckpt")
    assert init_checkpoint(str(run)) == run / "checkpoints" / "best-epoch007.ckpt"
