"""Rows recorded under docs/ whose presets are no longer shipped (poetry_vae/recorded_rows.py): each is one command
(a preset plus overrides, or overrides alone) that composes exactly the config its preset composed, most are one
point of a sweep in conf/hparams_search/, and every page naming one gives its command.

tests/data/recorded_presets.json holds what each old preset composed, as its differences from the default
composition (`python -m poetry_vae.train --cfg job` with no overrides), recorded before the presets were folded
into those commands. Comparing differences from the defaults keeps the check exact while a later change to a
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

from poetry_vae.cli import CONFIG_DIR, check_overrides
from poetry_vae.model.config import ModelConfig
from poetry_vae.objective import ObjectiveConfig
from poetry_vae.recorded_rows import ROWS, command
from poetry_vae.schema import ConfigError

ROOT = CONFIG_DIR.parent
RECORDED = json.loads((Path(__file__).parent / "data" / "recorded_presets.json").read_text("utf-8"))
IGNORED = {"tags"}  # a label, not a setting of the run


def overrides(name: str) -> list[str]:
    return [*(part.strip("'") for part in ROWS[name][0].split()), f"run_name={name}"]


def filled(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` with the model's and the objective's dataclass defaults filled in where the YAML leaves a key out
    (what the run builds: a preset that writes a default out changes nothing)."""
    defaults = {"model": ModelConfig, "objective": ObjectiveConfig}
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


def test_a_recorded_row_given_as_a_preset_gets_its_command() -> None:
    with pytest.raises(ConfigError) as error:
        check_overrides("train", ["experiment=bnvae_wd0"])
    assert str(error.value) == ("experiment=bnvae_wd0 is no longer a preset: train its row with "
                                "python -m poetry_vae.train experiment=bnvae objective.word_dropout=0.0 "
                                "run_name=bnvae_wd0")
