"""Each default has one home: the dataclasses of poetry_vae.config_nodes, which conf/ composes from."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from poetry_vae.cli import CONFIG_DIR
from poetry_vae.config_nodes import (
    MODEL_DEFAULTS,
    NOT_COMPOSED,
    OBJECTIVE_DEFAULTS,
    EvaluateKeys,
    SampleKeys,
    TrainKeys,
    defaults_of,
)
from poetry_vae.model.config import ModelConfig
from poetry_vae.objective import ObjectiveConfig


def _compose(name: str, *overrides: str) -> dict[str, Any]:
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return OmegaConf.to_container(compose(name, overrides=list(overrides)))  # type: ignore[return-value]


def test_the_defaults_compose_from_the_dataclasses() -> None:
    train = _compose("train")
    assert train["model"] == MODEL_DEFAULTS and train["objective"] == OBJECTIVE_DEFAULTS
    assert {key: train[key] for key in defaults_of(TrainKeys)} == defaults_of(TrainKeys)
    sample = _compose("sample")
    assert {key: sample[key] for key in defaults_of(SampleKeys)} == defaults_of(SampleKeys)
    evaluate = _compose("evaluate", "ckpt_path=x.ckpt")
    assert evaluate == {**defaults_of(EvaluateKeys), "ckpt_path": "x.ckpt"}


def test_the_model_node_holds_every_field_but_those_it_leaves_out() -> None:
    fields = [f.name for f in dataclasses.fields(ModelConfig)]
    assert list(MODEL_DEFAULTS) == [name for name in fields if name not in NOT_COMPOSED]
    assert list(OBJECTIVE_DEFAULTS) == [f.name for f in dataclasses.fields(ObjectiveConfig)]


@pytest.mark.parametrize("path", sorted([*(CONFIG_DIR / "model").glob("*.yaml"),
                                         *(CONFIG_DIR / "objective").glob("*.yaml")]), ids=lambda p: p.stem)
def test_a_group_option_lists_only_what_differs_from_the_dataclass(path) -> None:
    own = {key: value for key, value in (yaml.safe_load(path.read_text("utf-8")) or {}).items() if key != "defaults"}
    defaults = MODEL_DEFAULTS if path.parent.name == "model" else OBJECTIVE_DEFAULTS
    assert {key: value for key, value in own.items() if defaults.get(key) == value} == {}
