"""Typed configs: every key a user can set is checked for type and range before a job starts.

A node with a ``_target_`` is checked against the annotations of what it instantiates (the DataModule, the
β schedule, Lightning's Trainer, ...); ``model``, ``objective`` and the commands' own keys against the dataclasses
that give them their defaults (:mod:`poetry_vae.config_nodes`), with their ranges (a field's ``at_least``) and
the rules across fields that the dataclasses' own checks enforce. A mistake is one line naming the key, the value
and what is expected. (The composed nodes are plain, not typed, for these one-line messages: see
:mod:`poetry_vae.config_nodes`.)
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import pathlib
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Literal

from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from poetry_vae.config_nodes import EvaluateKeys, Evaluation, FitPriorKeys, FuseLmKeys, SampleKeys, TrainKeys
from poetry_vae.errors import PoetryVAEError
from poetry_vae.generation.request import KNOB_FIELDS, REQUEST_FIELDS, DecodeRequest
from poetry_vae.model.config import ModelConfig
from poetry_vae.objective import ObjectiveConfig


class ConfigError(PoetryVAEError):
    """A config key with a value of the wrong type or out of range, or a key that does not exist."""


# ---- checking one value against an annotation ----

_SIMPLE = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
_PATH_TYPES = (pathlib.Path, os.PathLike)
_SIMPLE.update(dict.fromkeys(_PATH_TYPES, "a path"))


def _literals(annotation: Any) -> list[Any]:
    """Every option of a Literal, or of a union of Literals (and None); [] if anything else is allowed."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return list(typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [_literals(a) if a is not type(None) else [None] for a in typing.get_args(annotation)]
        return [] if any(not part for part in parts) else [option for part in parts for option in part]
    return []


def _describe(annotation: Any) -> str:
    options = _literals(annotation)
    if options:
        return "one of " + ", ".join(dict.fromkeys("null" if o is None else str(o) for o in options))
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in typing.get_args(annotation)))
    if origin in (list, tuple) or annotation in (list, tuple):
        return "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    return _SIMPLE.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _understood(annotation: Any) -> bool:
    """Whether a YAML value can be judged against ``annotation`` (forward references and type variables can't)."""
    return not isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar))


def matches(value: Any, annotation: Any) -> bool:
    """True if a plain YAML value fits ``annotation`` (an int is a valid float; a bool is not an int)."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return any(value == option and type(value) is type(option) for option in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple) or annotation in (list, tuple):
        items = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(matches(v, items[0]) for v in value) if items else \
            isinstance(value, (list, tuple))
    if origin is dict or annotation is dict:
        return isinstance(value, Mapping)
    if annotation in _PATH_TYPES:
        return isinstance(value, str)
    # any other class (a Tensor, an Accelerator, a Callable): a YAML scalar cannot be one; a node can build one
    return not isinstance(value, (str, int, float, bool)) and value is not None


def _shown(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def check_keys(node: Mapping[str, Any], hints: Mapping[str, Any], where: str,
               checks: Mapping[str, tuple[Callable[[Any], bool], str]] | None = None,
               known: set[str] | None = None) -> None:
    """Each key of ``node`` against its annotation in ``hints`` and its range check; unknown keys are errors
    when ``known`` is given."""
    for key, value in node.items():
        name = f"{where}{key}"
        if key.startswith("_"):
            continue
        if key not in hints:
            if known is not None and key not in known:
                raise ConfigError(f"{name} is not a setting here: remove it or check its spelling")
            continue
        annotation = hints[key]
        if _understood(annotation) and not matches(value, annotation):
            raise ConfigError(f"{name}={_shown(value)}: expected {_describe(annotation)}")
        check = (checks or {}).get(key)
        if check and matches(value, int | float) and not check[0](value):
            raise ConfigError(f"{name}={_shown(value)}: expected a value {check[1]}")


def _dataclass_hints(cls: type) -> tuple[dict[str, Any], dict[str, tuple[Callable[[Any], bool], str]]]:
    """A dataclass's annotations, and a range check for each field whose metadata holds ``at_least`` (and maybe
    ``at_most``)."""
    hints = typing.get_type_hints(cls)
    checks = {f.name: _range_check(f.metadata["at_least"], f.metadata.get("at_most"))
              for f in dataclasses.fields(cls) if "at_least" in f.metadata}
    return hints, checks


def _range_check(low: float, high: float | None = None) -> tuple[Callable[[Any], bool], str]:
    if high is None:
        return (lambda value: value is None or value >= low), f">= {low}"
    return (lambda value: value is None or low <= value <= high), f"in [{low}, {high}]"


def _target_hints(target: str) -> dict[str, Any]:
    """Annotations of the callable a node instantiates (its class's ``__init__``); {} where they cannot be read."""
    try:
        obj = get_object(target)
        function = obj.__init__ if inspect.isclass(obj) else obj
        return typing.get_type_hints(function)
    except Exception:  # an annotation we cannot resolve: Hydra still reports a wrong key at instantiation
        return {}


_UNRESOLVED = object()


def _plain(node: Any) -> Any:
    """Plain values of a config, resolved one by one: a value that cannot resolve yet (``${hydra:...}`` outside a
    job, ``???``) is left out rather than failing the whole check."""
    if isinstance(node, DictConfig):
        out = {}
        for key in node:
            if key == "hydra" or OmegaConf.is_missing(node, key):
                continue
            try:
                value = _plain(node[key])
            except OmegaConfBaseException:
                continue
            if value is not _UNRESOLVED:
                out[str(key)] = value
        return out
    if isinstance(node, ListConfig):
        return [_plain(item) for item in node]
    return node


def check_target_nodes(node: Mapping[str, Any], where: str) -> None:
    """Every ``_target_`` node below ``node`` against the signature of its target."""
    if "_target_" in node:
        check_keys(node, _target_hints(str(node["_target_"])), where)
    for key, value in node.items():
        if isinstance(value, Mapping):
            check_target_nodes(value, f"{where}{key}.")


def _run(check: Callable[[], object], where: str) -> None:
    """Ranges that the target's own constructor enforces, reported under ``where``."""
    try:
        check()
    except PoetryVAEError as error:
        raise ConfigError(str(error)) from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: {error}") from None


# Ranges of the keys in `_target_` nodes, which their annotations cannot say (checked before anything is built).
_POSITIVE = {"data": ("batch_size", "eval_batch_size", "min_count", "line_length", "num_lines", "word2vec_epochs",
                      "word2vec_window", "limit_train_poems"),
             "optimizer": ("lr",), "trainer": ("devices", "num_nodes", "log_every_n_steps", "accumulate_grad_batches")}
_NON_NEGATIVE = {"data": ("num_workers", "val_fraction", "test_fraction"), "optimizer": ("weight_decay",),
                 "trainer": ("gradient_clip_val", "num_sanity_val_steps"),
                 "anneal": ("warmup_steps", "total_steps", "x0", "k", "max_value", "start_value")}


_DURATION = re.compile(r"\d+:\d+:\d+:\d+")  # Lightning's Timer duration: days, hours, minutes, seconds


def _check_run_name(run_name: Any) -> None:
    """A run's name is a folder inside the outputs (or a sweep's) root: a path out of it (absolute, or through ..)
    would put a run, and its checkpoints, anywhere on the disk."""
    if not isinstance(run_name, str):
        return
    parts = pathlib.PurePath(run_name).parts
    if not run_name.strip() or pathlib.PurePath(run_name).is_absolute() or ".." in parts:
        raise ConfigError(f"run_name={run_name!r}: a run's name is a folder inside the outputs root, not a path out of "
                          "it; give a plain name, e.g. run_name=my_run (paths.output_root=<folder> moves the root)")


def _check_ranges(plain: Mapping[str, Any]) -> None:
    nodes = {group: node for group, node in plain.items() if isinstance(node, Mapping)}
    for zero_allowed, table in ((False, _POSITIVE), (True, _NON_NEGATIVE)):
        for group, keys in table.items():
            for key in keys:
                value = nodes.get(group, {}).get(key)
                if matches(value, int | float) and (value < 0 or (value == 0 and not zero_allowed)):
                    raise ConfigError(f"{group}.{key}={value}: expected a value {'>=' if zero_allowed else '>'} 0")
    for key in ("max_epochs", "max_steps"):  # Lightning's counts: -1 is no limit
        value = nodes.get("trainer", {}).get(key)
        if matches(value, int) and value < -1:
            raise ConfigError(f"trainer.{key}={value}: expected a value >= 0, or -1 for no limit")
    max_time = nodes.get("trainer", {}).get("max_time")
    if isinstance(max_time, str) and not _DURATION.fullmatch(max_time):
        raise ConfigError(f"trainer.max_time={max_time!r}: expected DD:HH:MM:SS, e.g. trainer.max_time=00:00:15:00 "
                          "(15 minutes), or null for no limit")
    data = nodes.get("data", {})
    fractions = [data.get(key) for key in ("val_fraction", "test_fraction")]
    if all(matches(f, int | float) for f in fractions) and sum(fractions) >= 1:
        raise ConfigError(f"data.val_fraction + data.test_fraction = {sum(fractions):g}: must stay below 1 "
                          "(the rest is the training split)")


def check_train_config(cfg: DictConfig) -> None:
    plain: dict[str, Any] = _plain(cfg)
    own = {key: value for key, value in plain.items() if not isinstance(value, Mapping)}
    hints, checks = _dataclass_hints(TrainKeys)
    check_keys(own, hints, "", checks)
    hints, checks = _dataclass_hints(Evaluation)
    check_keys(plain.get("evaluation") or {}, hints, "evaluation.", checks, known=set(hints))
    model = plain.get("model") or {}
    model_hints = typing.get_type_hints(ModelConfig)
    check_keys(model, model_hints, "model.", known=set(model_hints))
    _run(lambda: ModelConfig.from_dict({**model, "vocab_size": 10}), "model")
    objective = plain.get("objective") or {}
    objective_hints = typing.get_type_hints(ObjectiveConfig)
    check_keys(objective, objective_hints, "objective.", known=set(objective_hints))
    _run(lambda: ObjectiveConfig(**objective), "objective")
    if isinstance(plain.get("trainer"), Mapping) and plain["trainer"].get("precision") == "auto":
        plain["trainer"] = {key: value for key, value in plain["trainer"].items() if key != "precision"}  # ours
    for group in ("data", "anneal", "optimizer", "scheduler", "trainer", "logger", "callbacks"):
        if isinstance(plain.get(group), Mapping):
            check_target_nodes(plain[group], f"{group}.")
    _check_ranges(plain)
    _check_run_name(plain.get("run_name"))
    anneal = plain.get("anneal")
    if isinstance(anneal, Mapping) and "_target_" in anneal:
        schedule = {key: value for key, value in anneal.items() if not key.startswith("_")}
        _run(lambda: get_object(anneal["_target_"])(**schedule), "anneal")


def check_sample_config(cfg: DictConfig) -> None:
    plain = _plain(cfg)
    hints, checks = _dataclass_hints(SampleKeys)
    request_hints = typing.get_type_hints(DecodeRequest)
    hints.update({key: request_hints[key] for key in REQUEST_FIELDS})
    check_keys(plain, hints, "", checks, known=set(hints))
    # the decoding knobs' ranges, before a checkpoint is loaded (the rest needs the checkpoint's form)
    knobs = {key: plain[key] for key in KNOB_FIELDS if key in plain}
    _run(lambda: DecodeRequest(**knobs).validate_knobs(), "sample")


def check_evaluate_config(cfg: DictConfig) -> None:
    plain = _plain(cfg)
    hints, checks = _dataclass_hints(EvaluateKeys)
    check_keys(plain, hints, "", checks, known=set(hints))


def check_fit_prior_config(cfg: DictConfig) -> None:
    plain = _plain(cfg)
    hints, checks = _dataclass_hints(FitPriorKeys)
    check_keys(plain, hints, "", checks, known=set(hints))


def check_fuse_lm_config(cfg: DictConfig) -> None:
    plain = _plain(cfg)
    hints, checks = _dataclass_hints(FuseLmKeys)
    check_keys(plain, hints, "", checks, known=set(hints))


CHECKS: dict[str, Callable[[DictConfig], None]] = {
    "train": check_train_config,
    "sample": check_sample_config,
    "evaluate": check_evaluate_config,
    "fit_prior": check_fit_prior_config,
    "fuse_lm": check_fuse_lm_config,
}
