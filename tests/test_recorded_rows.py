"""Rows recorded under docs/ whose presets are no longer shipped: each is one command (a preset plus overrides, or
overrides alone) that composes exactly the config its preset composed, and most are one point of a sweep in
conf/hparams_search/.

tests/data/recorded_presets.json holds what each old preset composed, as its differences from the default
composition (`python -m poetry_vae.train --cfg job` with no overrides), recorded before the presets were folded
into the commands below. Comparing differences from the defaults keeps the check exact while a later change to a
default (one that moves every run alike) does not break it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from poetry_vae.cli import CONFIG_DIR
from poetry_vae.model.config import VAEConfig
from poetry_vae.objective import ObjectiveConfig

ROOT = CONFIG_DIR.parent
RECORDED = json.loads((Path(__file__).parent / "data" / "recorded_presets.json").read_text("utf-8"))
IGNORED = {"tags"}  # a label, not a setting of the run

# old preset -> (the command's overrides that reproduce it, the sweep in conf/hparams_search/ holding it or None)
ROWS: dict[str, tuple[str, str | None]] = {
    "lm_h256": ("experiment=lm model.decoder_hidden=256", "lm_decoder"),
    "lm_h512": ("experiment=lm model.decoder_hidden=512", "lm_decoder"),
    "lm_pos": ("experiment=lm model.position_codes=40", "lm_decoder"),
    "lm_original": ("experiment=lm model.output_layer=softmax data.batch_size=32 trainer.precision=32-true", None),
    "bnvae_wd0": ("experiment=bnvae objective.word_dropout=0.0", "bnvae_decoder"),
    "bnvae_wd0_skip": ("experiment=bnvae objective.word_dropout=0.0 model.z_to_output=true", "bnvae_decoder"),
    "bnvae_bow": ("experiment=bnvae objective.bag_of_words=1.0", "bnvae_decoder"),
    "bnvae_bow_skip": ("experiment=bnvae objective.word_dropout=0.0 model.z_to_output=true objective.bag_of_words=1.0",
                       "bnvae_decoder"),
    "bnvae_z64": ("experiment=bnvae model.latent_dim=64", "bnvae_size"),
    "bnvae_h256": ("experiment=bnvae model.decoder_hidden=256", "bnvae_size"),
    "bnvae_e64": ("experiment=bnvae model.encoder_hidden=64", "bnvae_size"),
    "bnvae_high_kl": ("experiment=bnvae model.bn_gamma=1.0 objective.word_dropout=0.5", "bnvae_kl"),
    "bnvae_kl36_bow": ("experiment=bnvae model.bn_gamma=1.5 objective.word_dropout=0.5 model.z_to_output=true "
                       "objective.bag_of_words=1.0", "bnvae_kl"),
    "bnvae_kl64_bow": ("experiment=bnvae model.bn_gamma=2.0 objective.word_dropout=0.5 model.z_to_output=true "
                       "objective.bag_of_words=1.0", "bnvae_kl"),
    "bnvae_pos": ("experiment=bnvae objective.word_dropout=0.0 model.z_to_output=true model.position_codes=40",
                  "position_codes"),
    "bnvae_kl36_pos": ("experiment=bnvae model.bn_gamma=1.5 model.z_to_output=true model.position_codes=40",
                       "position_codes"),
    "fb32_pos": ("experiment=bnvae model.bn_gamma=0.0 objective.free_bits=1.0 objective.word_dropout=0.0 "
                 "model.z_to_output=true model.position_codes=40", "position_codes"),
    "fb64_pos": ("experiment=bnvae model.bn_gamma=0.0 objective.free_bits=2.0 objective.word_dropout=0.0 "
                 "model.z_to_output=true model.position_codes=40", "position_codes"),
    "wuyan_fb64_pos": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 model.z_to_output=true "
                       "model.position_codes=40 objective.free_bits=2.0 trainer.val_check_interval=0.2",
                       "wuyan_latent"),
    "wuyan_fb64_pos_wd50": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 model.z_to_output=true "
                            "model.position_codes=40 objective.free_bits=2.0 objective.word_dropout=0.5 "
                            "trainer.val_check_interval=0.2", "wuyan_latent"),
    "wuyan_fb64_pos_wd75": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 model.z_to_output=true "
                            "model.position_codes=40 objective.free_bits=2.0 objective.word_dropout=0.75 "
                            "trainer.val_check_interval=0.2", "wuyan_latent"),
    "wuyan_fb128_pos_wd50": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 model.z_to_output=true "
                             "model.position_codes=40 objective.free_bits=4.0 objective.word_dropout=0.5 "
                             "trainer.val_check_interval=0.2", "wuyan_latent"),
    "wuyan_z128_pos_wd50": ("data=wuyan anneal=constant model.latent_dim=128 +model.num_forms=4 model.z_to_output=true "
                            "model.position_codes=40 objective.free_bits=1.0 objective.word_dropout=0.5 "
                            "trainer.val_check_interval=0.2", None),
    "wuyan_fb64_pos_wd50_div1": ("data=wuyan anneal=constant model.latent_dim=32 +model.num_forms=4 "
                                 "model.z_to_output=true model.position_codes=40 objective.free_bits=2.0 "
                                 "objective.word_dropout=0.5 model.adaptive_div_value=1.0 "
                                 "trainer.val_check_interval=0.2", None),
    "pretrain_lm": ("experiment=lm data=wuyan +model.num_forms=4", None),
    "finetune_lm": ("experiment=lm data.vocab_from=wuyan +model.num_forms=4 "
                    "'init_from=${paths.output_root}/pretrain_lm/checkpoints/last.ckpt'", None),
    "pretrain_bnvae": ("experiment=bnvae data=wuyan +model.num_forms=4", None),
    "finetune_bnvae": ("experiment=bnvae data.vocab_from=wuyan +model.num_forms=4 "
                       "'init_from=${paths.output_root}/pretrain_bnvae/checkpoints/last.ckpt'", None),
}


def command(name: str) -> str:
    """The command line that trains the row ``name`` again, in its old output directory."""
    return f"python -m poetry_vae.train {ROWS[name][0]} run_name={name}"


def overrides(name: str) -> list[str]:
    return [*(part.strip("'") for part in ROWS[name][0].split()), f"run_name={name}"]


def filled(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the model's and the objective's dataclass defaults filled in where the YAML leaves a key out
    (what the run builds: a preset that writes a default out changes nothing)."""
    defaults = {"model": VAEConfig, "objective": ObjectiveConfig}
    return {**cfg, **{node: {**{f.name: f.default for f in dataclasses.fields(cls)
                                 if f.default is not dataclasses.MISSING}, **cfg[node]}
                      for node, cls in defaults.items()}}


def flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        return {key: value for k, v in node.items() for key, value in flat(v, f"{prefix}{k}.").items()}
    return {prefix[:-1]: node}


def composed(args: list[str]) -> dict[str, Any]:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return flat(filled(OmegaConf.to_container(compose("train", overrides=args), resolve=False)))


def differences(cfg: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """``cfg``'s keys whose values differ from ``base``'s (``"<absent>"`` for a key ``cfg`` lacks)."""
    keys = (set(cfg) | set(base)) - IGNORED
    return {k: cfg.get(k, "<absent>") for k in sorted(keys) if cfg.get(k, "<absent>") != base.get(k, "<absent>")}


@pytest.fixture(scope="module")
def defaults() -> dict[str, Any]:
    return composed([])


def test_every_recorded_preset_has_a_command() -> None:
    shipped = {path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml")}
    assert set(ROWS) == set(RECORDED)
    assert not set(ROWS) & shipped  # a shipped preset is its own command


@pytest.mark.parametrize("name", sorted(ROWS))
def test_the_command_composes_what_the_preset_did(name: str, defaults: dict[str, Any]) -> None:
    assert differences(composed(overrides(name)), defaults) == RECORDED[name]


@functools.cache
def sweep_grid(sweep: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """Every point of the sweep's grid (key -> value text) with what it composes, as differences from the defaults
    (run name aside: a sweep names its jobs)."""
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        params = compose("train", overrides=[f"hparams_search={sweep}"], return_hydra_config=True).hydra.sweeper.params
    grid = {key: str(values).split(",") for key, values in params.items()}
    base = composed([])
    points = [dict(zip(grid, point, strict=True)) for point in itertools.product(*grid.values())]
    return [(point, differences(composed([f"hparams_search={sweep}", *(f"{k}={v}" for k, v in point.items())]),
                                base)) for point in points]


@pytest.mark.parametrize("name", sorted(name for name, (_, sweep) in ROWS.items() if sweep))
def test_the_row_is_a_point_of_its_sweep(name: str) -> None:
    """Exactly one point of the sweep's grid composes what the row's preset did."""
    sweep = ROWS[name][1] or ""
    wanted = {k: v for k, v in RECORDED[name].items() if k != "run_name"}
    matches = [point for point, diff in sweep_grid(sweep)
               if {k: v for k, v in diff.items() if k != "run_name"} == wanted]
    assert len(matches) == 1, f"{name}: {len(matches)} points of hparams_search={sweep} match"


def test_each_sweep_is_a_multirun_a_user_can_start() -> None:
    for path in sorted((CONFIG_DIR / "hparams_search").glob("*.yaml")):
        text = path.read_text("utf-8")
        assert text.startswith("# @package _global_\n# "), f"{path.name}: starts with a line saying what it sweeps"
        assert f"hparams_search={path.stem}" in text, f"{path.name}: its comment gives the command"
        assert yaml.safe_load(text)["hydra"]["mode"] == "MULTIRUN"


DOC_PAGES = sorted([*(ROOT / "docs").glob("*.md"), *(ROOT / "docs").glob("*/*.md")])


@pytest.mark.parametrize("page", DOC_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_a_page_naming_a_recorded_row_gives_its_command(page: Path) -> None:
    text = page.read_text("utf-8")
    named = [name for name in ROWS if re.search(rf"(?<![\w/]){re.escape(name)}(?![\w/])", text)]
    missing = [name for name in named if command(name) not in text]
    assert not missing, f"{page.relative_to(ROOT)} names {', '.join(missing)} without the command that trains it now"
