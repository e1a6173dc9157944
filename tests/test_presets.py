"""Every shipped experiment preset composes and builds its module and data module (a broken preset fails here)."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from poetry_vae.checkpoint import load_checkpoint
from poetry_vae.cli import CONFIG_DIR
from poetry_vae.errors import CheckpointError
from poetry_vae.train import build_module, model_overrides, start_from, starting_vocabulary

PRESETS = sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))


def readme_presets() -> set[str]:
    """The presets the README's table of experiments names (its first column)."""
    text = (CONFIG_DIR.parent / "README.md").read_text("utf-8")
    table = text[text.index("| preset | what it is |"):].split("\n\n")[0]
    return {name for row in table.splitlines()[2:] for name in re.findall(r"`([^`]+)`", row.split(" | ")[0])}


def test_the_readme_lists_exactly_the_shipped_presets() -> None:
    assert readme_presets() == set(PRESETS)


def parents(preset: str) -> list[str]:
    """The presets ``preset`` inherits from (the plain names in its defaults list)."""
    defaults = yaml.safe_load((CONFIG_DIR / "experiment" / f"{preset}.yaml").read_text("utf-8")).get("defaults", [])
    return [entry for entry in defaults if isinstance(entry, str) and entry != "_self_"]


@pytest.mark.parametrize("preset", PRESETS)
def test_a_preset_says_what_it_is_for_and_inherits_shallowly(preset: str) -> None:
    lines = (CONFIG_DIR / "experiment" / f"{preset}.yaml").read_text("utf-8").splitlines()
    assert lines[0] == "# @package _global_" and lines[1].startswith("# ") and len(lines[1]) > 20
    depth, current = 0, preset
    while parents(current):
        (current,) = parents(current)
        depth += 1
    assert depth <= 2, f"{preset} inherits {depth} levels deep"


@functools.cache
def datamodule_for(data_yaml: str) -> Any:
    """One data module per distinct data config: many presets share a corpus, and the blocks corpus (data=wuyan)
    takes seconds to read."""
    return instantiate(OmegaConf.create(data_yaml))


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_builds_module_and_data(preset: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    cache = tmp_path_factory.getbasetemp() / "preset-cache"  # shared, so equal data configs compare equal
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={preset}", "init_embeddings=random",
                                          f"paths.cache_dir={cache}", "data.limit_train_poems=64"])
    assert cfg.run_name  # every preset names its runs
    datamodule = datamodule_for(OmegaConf.to_yaml(cfg.data, resolve=True))
    module = build_module(cfg, datamodule)
    assert module.model.cfg.use_latent == (cfg.model.use_latent)
    assert module.objective.free_bits == cfg.objective.free_bits
    assert module.beta_schedule(10**6) == pytest.approx(1.0)  # every schedule ends at β = 1
    batch = next(iter(datamodule.train_dataloader()))
    assert module.training_step(batch, 0).isfinite()


def test_make_train_fine_tunes_the_shipped_flagship(tmp_path: Path) -> None:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        base = compose("train", overrides=["experiment=poet_finetune"])
        cfg = compose("train", overrides=["experiment=make_train", f"paths.cache_dir={tmp_path}",
                                          "data.limit_train_poems=64"])
    # the recipe's model, with the prior the shipped model's last stage fitted (poetry_vae.fit_prior) and the
    # language model beside its decoder (poetry_vae.fuse_lm)
    plain = {**cfg.model, "prior": "standard", "prior_components": 1, "lm_fusion": False, "fusion_by_cluster": False}
    assert cfg.anneal == base.anneal and plain == base.model
    assert cfg.model.prior == "gaussian" and cfg.model.prior_components == 8 and cfg.model.lm_fusion
    # the recipe's data and model, trained on the plain ELBO (free bits and word dropout off)
    assert {**cfg.objective, "free_bits": 2.0, "word_dropout": 0.5} == base.objective
    assert cfg.objective.iw_samples == 1 and base.objective.free_bits == 2.0
    assert cfg.trainer.max_time == "00:00:08:30" and cfg.run_name == "make_train"
    root = CONFIG_DIR.parent
    init = load_checkpoint(root / cfg.init_from)  # shipped, weights_only, half precision
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule, starting_vocabulary(datamodule, None, init))
    start_from(module, init)  # the shipped weights fit make_train's model config
    # and it is the shipped model's, field for field (a fusion by cluster, say, changes no weight's shape)
    assert model_overrides(init.model.cfg, module.model.cfg) == []
    torch.testing.assert_close(module.model.embed.weight, init.model.embed.weight)
    torch.testing.assert_close(module.model.prior.scale_trils, init.model.prior.scale_trils)  # the fitted prior too
    torch.testing.assert_close(module.model.lm.embed.weight, init.model.lm.embed.weight)  # and the language model
    assert not torch.equal(init.model.prior.scale_trils[0], torch.eye(init.model.cfg.latent_dim))
    assert module.vocab.tokens == init.vocab.tokens


def test_a_checkpoint_that_does_not_fit_names_the_overrides_that_would(tmp_path: Path) -> None:
    """Fine-tuning the shipped flagship with other sizes is refused in one line that says which model.<field>=
    overrides give the sizes it was trained with."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=make_train", f"paths.cache_dir={tmp_path}",
                                          "data.limit_train_poems=64", "model.decoder_hidden=48", "model.place_dim=8"])
    init = load_checkpoint(CONFIG_DIR.parent / cfg.init_from)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg, datamodule, starting_vocabulary(datamodule, None, init))
    with pytest.raises(CheckpointError) as error:
        start_from(module, init)
    message = str(error.value)
    trained = init.model.cfg
    assert f"model.decoder_hidden={trained.decoder_hidden}" in message
    assert f"model.place_dim={trained.place_dim}" in message
    assert "\n" not in message and "model.latent_dim" not in message  # only what differs


def test_sampling_a_checkpoint_needs_no_lightning(tiny_checkpoint: Path) -> None:
    """As nanoGPT's sample.py: the model is rebuilt from the checkpoint with torch alone."""
    code = (
        "import sys\n"
        "from poetry_vae.sample import load_checkpoint, generate, sample_prior\n"
        f"ckpt = load_checkpoint({str(tiny_checkpoint)!r})\n"
        "poems = generate(ckpt.model, ckpt.vocab, sample_prior(ckpt.model, 3), num_poems=3)\n"
        "assert len(poems) == 3\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pytorch_lightning', 'lightning'))\n"
        "print('LIGHTNING', loaded[:3])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LIGHTNING []" in result.stdout
