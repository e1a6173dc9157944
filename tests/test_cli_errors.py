"""Every command refuses wrong types, ranges, paths and devices in one line, before anything is written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_train_config
from hydra import compose, initialize_config_dir

from poetry_vae.cli import CONFIG_DIR, check_overrides
from poetry_vae.errors import PoetryVAEError
from poetry_vae.evaluate import evaluate
from poetry_vae.sample import write_poems
from poetry_vae.schema import ConfigError


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("sample", ["n=abc"], "n='abc': expected an integer"),
        ("sample", ["n=0"], "n=0: expected a value >= 1"),
        ("sample", ["temperature=hot"], "temperature='hot': expected a number"),
        ("sample", ["seed=abc"], "seed='abc': expected an integer"),
        ("sample", ["mode=dream"], "mode='dream': expected one of prior, reconstruct, interpolate"),
        ("sample", ["poems=3"], "poems=3: expected a list"),
        ("sample", ["steps=1"], "steps=1: expected a value >= 2"),
        ("sample", ["no_repeat=maybe"], "no_repeat='maybe': expected true or false"),
        ("sample", ["verse=lushi"], "verse='lushi': expected one of regulated, unregulated, null"),
        ("evaluate", ["iw_samples=0"], "iw_samples=0: expected a value >= 1"),
        ("evaluate", ["iw_samples=abc"], "iw_samples='abc': expected an integer"),
        ("evaluate", ["split=train"], "split='train': expected one of val, test"),
        ("fit_prior", ["batch_size=0"], "batch_size=0: expected a value >= 1"),
        ("fit_prior", ["priors=3"], "unknown key 'priors'"),
        ("fit_prior", ["by_verse=maybe"], "by_verse='maybe': expected true or false"),
        ("fuse_lm", ["lms=poet_lm"], "unknown key 'lms'"),
        ("train", ["trainer.max_epochs=abc"], "trainer.max_epochs='abc': expected an integer or null"),
        ("train", ["trainer.precision=bf17"], "trainer.precision='bf17': expected one of"),
        ("train", ["data.batch_size=x"], "data.batch_size='x': expected an integer"),
        ("train", ["model.dropout=2"], "dropout=2 must be in [0, 1)"),
        ("train", ["model.latent_dim=big"], "model.latent_dim='big': expected an integer"),
        ("train", ["objective.free_bits=-1"], "objective.free_bits=-1: must be >= 0"),
        ("train", ["init_embeddings=glove"], "init_embeddings='glove': expected one of word2vec, random"),
        ("train", ["torch_threads=0"], "torch_threads=0: expected a value >= 1"),
        ("train", ["evaluation.iw_samples_test=0"], "evaluation.iw_samples_test=0: expected a value >= 1"),
        ("train", ["anneal=cyclical", "anneal.cycles=0"], "need total_steps, cycles >= 1"),
        ("train", ["seed=abc"], "seed='abc': expected an integer"),
        ("train", ["seed=-5"], "seed=-5: expected a value in [0, 4294967295]"),  # numpy's range, seed_everything's
        ("sample", ["seed=4294967296"], "seed=4294967296: expected a value in [0, 4294967295]"),
        ("evaluate", ["seed=-1"], "seed=-1: expected a value in [0, 4294967295]"),
        ("train", ["data.batch_size=0"], "data.batch_size=0: expected a value > 0"),
        ("train", ["data.val_fraction=0.6", "data.test_fraction=0.5"], "must stay below 1"),
        ("train", ["optimizer.lr=-1"], "optimizer.lr=-1: expected a value > 0"),
        ("train", ["optimizer.lr=abc"], "optimizer.lr='abc': expected a number"),
        ("train", ["trainer.max_epochs=-5"], "trainer.max_epochs=-5: expected a value >= 0, or -1 for no limit"),
        ("train", ["trainer.max_steps=-2"], "trainer.max_steps=-2: expected a value >= 0, or -1 for no limit"),
        ("train", ["trainer.max_time=abc"], "trainer.max_time='abc': expected DD:HH:MM:SS"),
        ("train", ["trainer.max_time=00:10:00"], "trainer.max_time='00:10:00': expected DD:HH:MM:SS"),
        ("train", ["anneal=linear", "anneal.warmup_steps=-5"], "anneal.warmup_steps=-5: expected a value >= 0"),
        ("train", ["-m", "seed=1,abc"], "seed='abc': expected an integer"),  # every job of a sweep is checked
        ("train", ["run_name=../../elsewhere"], "run_name='../../elsewhere': a run's name is a folder inside"),
        ("train", ["run_name=/tmp/run"], "run_name='/tmp/run': a run's name is a folder inside the outputs root"),
    ],
)
def test_wrong_type_or_range_is_one_line(command: str, args: list[str], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)) as error:
        check_overrides(command, ["ckpt_path=x.ckpt", *args] if command != "train" else args)
    assert "\n" not in str(error.value)


def test_every_shipped_config_passes_its_schema() -> None:
    for command in ("train", "sample", "evaluate", "fit_prior", "fuse_lm"):
        check_overrides(command, [] if command == "train" else ["ckpt_path=x.ckpt"])
    options = [f"{group.name}={path.stem}" for group in CONFIG_DIR.iterdir() if group.is_dir()
               and group.name not in ("hydra", "paths") for path in group.glob("*.yaml")]
    for option in options:  # every preset, debug mode and group option
        check_overrides("train", [option])


def _sample_cfg(*args: str):
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("sample", overrides=list(args))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["out={tmp}"], "is a directory: give a file path"),
        (["out={readme}/poems.jsonl"], "is a file, not a folder"),
        (["ckpt_path={readme}"], "is not a checkpoint (not a file written by torch.save)"),
        ([f"ckpt_path={os.devnull}"], f"checkpoint {os.devnull} is not a file: pass ckpt_path="),
        (["ckpt_path=''"], "ckpt_path is empty: pass a run dir"),
        (["device=cuda"], "no CUDA GPU is available on this machine; use device=cpu"),
        (["device=cpu:3"], "device=cpu:3: the CPU has no numbered devices; use device=cpu"),
        (["tone=qijue"], "choose auto or one of"),
        (["temperature=inf"], "temperature must be a finite number > 0 (1 = the model's own), got inf"),
        (["first_line=hello"], "'h' is not a Chinese character"),
        (["verse=regulated"], "prior was not fitted by verse; fit one with python -m poetry_vae.fit_prior"),
    ],
)
def test_sample_file_device_and_prompt_errors(tiny_checkpoint: Path, tmp_path: Path, args: list[str],
                                              expected: str) -> None:
    if "cuda" in args[0] and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    readme = Path(__file__).resolve().parents[1] / "README.md"
    filled = [arg.format(tmp=tmp_path, readme=readme) for arg in args]
    cfg = _sample_cfg(f"ckpt_path={tiny_checkpoint}", *filled)
    with pytest.raises(PoetryVAEError, match=re.escape(expected)) as error:
        write_poems(cfg)
    assert "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_evaluate_refuses_a_directory_as_output(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt_path={tiny_checkpoint}", f"out={tmp_path}"])
    with pytest.raises(PoetryVAEError, match="is a directory"):
        evaluate(cfg)


@pytest.mark.parametrize(("section", "expected"), [("objective", "unknown objective key"),
                                                   ("model", "unknown model config key")])
def test_evaluate_names_a_key_this_version_does_not_know(tiny_checkpoint: Path, tmp_path: Path, section: str,
                                                         expected: str) -> None:
    key = "from_a_later_version"
    raw = torch.load(tiny_checkpoint, weights_only=True)
    raw["hyper_parameters"][section] = {**(raw["hyper_parameters"].get(section) or {}), key: True}
    later = tmp_path / "later.ckpt"
    torch.save(raw, later)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt_path={later}", "iw_samples=2"])
    with pytest.raises(PoetryVAEError, match=rf"from another version \({expected}.*{key}") as error:
        evaluate(cfg)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("command", ["sample", "evaluate", "fit_prior", "fuse_lm"])
def test_each_command_has_its_own_help(command: str) -> None:
    result = subprocess.run([sys.executable, "-m", f"poetry_vae.{command}", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    assert "ckpt_path" in result.stdout and f"poetry_vae.{command}" in result.stdout
    assert "anneal:" not in result.stdout and "Configuration groups" not in result.stdout


def test_refused_run_leaves_the_earlier_record_untouched(tmp_path: Path) -> None:
    from poetry_vae.train import train

    out = tmp_path / "outputs" / "r"
    train(tiny_train_config(out, tmp_path / "cache", "trainer.max_steps=1", "trainer.limit_val_batches=1"))
    record = out / ".hydra" / "config.yaml"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text("the original run's config\n", encoding="utf-8")
    for extra in (["ckpt_path=/no/such.ckpt"], []):  # a bad checkpoint, or a fresh start over an existing run
        result = subprocess.run(
            [sys.executable, "-m", "poetry_vae.train", "run_name=r", f"paths.output_root={tmp_path / 'outputs'}",
             *extra],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.stderr
        assert record.read_text("utf-8") == "the original run's config\n"
        assert not (out / ".hydra" / "overrides.yaml").exists()
