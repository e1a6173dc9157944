"""The command lines' shared shell: Hydra entry points whose mistakes are one line.

The config is composed once before Hydra runs, so a wrong key or group is one line that names it (Hydra itself
reports such mistakes over several lines, with a hint to set HYDRA_FULL_ERROR); 汉字 values are quoted for
Hydra's grammar; expected errors raised by a job print ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import string
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn, TypeVar

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from poetry_vae.errors import PoetryVAEError
from poetry_vae.recorded_rows import ROWS, command
from poetry_vae.schema import CHECKS, ConfigError

T = TypeVar("T")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
# Flags of Hydra's command line that take a value: with these the user drives Hydra directly, we step aside.
_EXPERT_FLAGS = ("--config-path", "-cp", "--config-dir", "-cd", "--config-name", "-cn", "--cfg", "-c",
                 "--package", "-p", "--info", "-i", "--experimental-rerun", "--help", "-h", "--hydra-help")
# Hydra's flags that only print the config (with their value, if they take one): the overrides beside them are
# checked as for a run, so `--cfg job trainer.max_epochs=abc` is the same one-line error as the run would be.
_PRINT_FLAGS = {"--cfg": True, "-c": True, "--package": True, "-p": True, "--resolve": False}


_KEY_VALUE = re.compile(r"^([\w.+~/@-]+)=(.*)$", re.DOTALL)


def quote_unicode_values(args: list[str]) -> list[str]:
    """Quote non-ASCII values (Hydra's override grammar rejects bare 汉字): ``first_line=白日依山尽`` works as typed.

    A list value ``poems=[诗一,诗二]`` gets each item quoted; already quoted values pass through.
    """
    quoted = []
    for arg in args:
        match = _KEY_VALUE.match(arg)
        value = match.group(2) if match else ""
        if not match or value.isascii() or value[:1] in ("'", '"'):
            quoted.append(arg)
            continue
        if value.startswith("[") and value.endswith("]"):
            value = "[" + ",".join(_quote(item) for item in _list_items(value[1:-1])) + "]"
        else:
            value = _quote(value)
        quoted.append(f"{match.group(1)}={value}")
    return quoted


def _list_items(inner: str) -> list[str]:
    """The items of a list value, split on commas outside quotes: ``'床前明月光,疑是地上霜…'`` stays one item,
    as in Hydra's own grammar."""
    items: list[str] = []
    current: list[str] = []
    quote = ""  # the quote character we are inside, if any
    chars = iter(inner)
    for char in chars:
        if char == "," and not quote:
            items.append("".join(current))
            current = []
            continue
        current.append(char)
        if quote and char == "\\":
            current.append(next(chars, ""))  # an escaped character, e.g. a quote inside the quotes
        elif char in ("'", '"') and (not quote or char == quote):
            quote = "" if quote else char
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def _quote(item: str) -> str:
    if item[:1] in ("'", '"'):
        return item
    return hydra_value(item)


def hydra_value(text: str) -> str:
    """``text`` as one quoted value of Hydra's override grammar (a path may hold spaces, commas or quotes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _one_line(message: str) -> str:
    """Hydra's multi-line messages, folded: options listed after a colon, stack-trace hints dropped."""
    kept: list[str] = []
    for raw in message.splitlines():
        line = raw.strip()
        if line.startswith(("Config search path", "full_key", "object_type", "Set the environment")):
            if line.startswith("Config search path"):
                break
            continue
        if line:
            kept.append(line)
    return " ".join(kept)


def split_print_flags(args: list[str]) -> tuple[list[str], bool]:
    """The overrides among ``args`` without Hydra's printing flags and their values (``--cfg job``, ``-p model``,
    ``--resolve``), and whether any was given (then nothing runs: no run directory is checked or locked)."""
    rest: list[str] = []
    printing = skip_value = False
    for arg in args:
        if skip_value:
            skip_value = False
            continue
        name = arg.split("=")[0]
        if name in _PRINT_FLAGS:
            printing = True
            skip_value = _PRINT_FLAGS[name] and "=" not in arg
            continue
        rest.append(arg)
    return rest, printing


def sweep_variants(args: list[str], limit: int = 64) -> list[list[str]] | None:
    """Override lists that cover every value of every sweep once (others at their first value).

    None when Hydra's expert flags are in use: then Hydra alone checks the command line.
    """
    if any(arg.split("=")[0] in _EXPERT_FLAGS for arg in args):
        return None
    overrides = [arg for arg in args if arg not in ("-m", "--multirun")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise ConfigError(f"cannot parse override: {_one_line(str(error))}") from None
    choices: list[list[str]] = []
    for override in parsed:
        if not override.is_sweep_override():
            choices.append([override.input_line])
            continue
        try:
            values = list(override.sweep_string_iterator())
        except HydraException:
            continue  # interval sweeps (for optimisers) cannot be enumerated: Hydra checks their key
        choices.append([f"{override.get_key_element()}={value}" for value in values] or [override.input_line])
    first = [options[0] for options in choices]
    variants = [first]
    for i, options in enumerate(choices):
        variants += [[*first[:i], option, *first[i + 1 :]] for option in options[1:]]
    return variants[:limit]


def check_overrides(config_name: str, args: list[str]) -> DictConfig | None:
    """Raise :class:`ConfigError` (one line) if ``args`` would not compose with ``conf/<config_name>.yaml``, or
    give a key a value of the wrong type or range. Returns the composed config of a single run (None for a
    sweep, or when Hydra's own flags are in use)."""
    variants = sweep_variants(args)
    if variants is None:
        return None
    composed = []
    GlobalHydra.instance().clear()  # a composition left over in this process (tests, notebooks) would clash
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            for overrides in variants:
                try:
                    composed.append(compose(config_name, overrides=overrides, return_hydra_config=True))
                except (HydraException, OmegaConfBaseException) as error:
                    hint = explain_unknown(config_name, overrides)  # a typo is far likelier than a new key
                    raise ConfigError(hint or f"bad config override: {_one_line(str(error))}") from None
    finally:
        GlobalHydra.instance().clear()
    for cfg in composed:
        validate(config_name, cfg)
    multirun = bool({"-m", "--multirun"} & set(args)) or any(_is_multirun(cfg) for cfg in composed)
    return composed[0] if len(composed) == 1 and not multirun else None


def _is_multirun(cfg: DictConfig) -> bool:
    """A config that asks for a sweep itself (``hydra.mode: MULTIRUN``, as ``hparams_search=optuna`` does): its
    jobs run in the sweep's directories, never in the single run's, which a precheck must therefore not lock."""
    return OmegaConf.select(cfg, "hydra.mode", default=None) == RunMode.MULTIRUN


def number_at_least(low: float, kind: Callable[[str], float] = float) -> Callable[[str], float]:
    """An argparse ``type=``: a finite number of ``kind`` (int or float) >= ``low``; argparse prints the reason in
    its one-line error (the scripts' options, as the schema checks the commands' keys)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            expected = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r}: expected {expected}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text}: expected a finite number")
        if value < low:
            raise argparse.ArgumentTypeError(f"{text}: expected a value >= {low:g}")
        return value

    return parse


def closest(word: str, options: Iterable[str]) -> list[str]:
    """The (at most three) options spelled most like ``word``, closest first; an option far behind the closest is
    left out (``max_epoch`` names ``max_epochs`` alone, not ``max_steps`` too)."""
    matches = difflib.get_close_matches(word, sorted(set(options)), n=3, cutoff=0.6)
    ratios = [difflib.SequenceMatcher(None, match, word).ratio() for match in matches]
    return [match for match, ratio in zip(matches, ratios, strict=True) if ratio >= ratios[0] - 0.1]


def did_you_mean(names: list[str]) -> str:
    """``did you mean 'a'?``, ``did you mean 'a' or 'b'?``, ``did you mean 'a', 'b' or 'c'?``."""
    quoted = [f"'{name}'" for name in names]
    return f"did you mean {' or '.join([', '.join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)}?"


def group_options(group: str) -> list[str]:
    """A config group's options: the files in conf/<group>/ as they are now (no list kept by hand)."""
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def explain_unknown(config_name: str, overrides: list[str]) -> str | None:
    """One line for the commonest mistakes Hydra cannot compose, an unknown group option or an unknown key, with
    the closest names; None when neither is the cause (Hydra's own message is shown then).

    Called inside an initialised Hydra (it composes the config again to see which keys and groups exist)."""
    try:
        changes = [o for o in OverridesParser.create().parse_overrides(overrides)
                   if o.type == OverrideType.CHANGE and o.package is None and not o.key_or_group.startswith("hydra")]
        base = compose(config_name, overrides=[], return_hydra_config=True).hydra.runtime.choices
        groups = [str(group) for group in base if not str(group).startswith("hydra")]
        for override in changes:
            if override.key_or_group in groups and (hint := _unknown_option(override)):
                return hint
        cfg = compose(config_name, overrides=[o.input_line for o in changes if o.key_or_group in groups],
                      return_hydra_config=True)
        chosen = {group: cfg.hydra.runtime.choices[group] for group in groups}
        for override in changes:
            if override.key_or_group not in groups and (hint := _unknown_key(override.key_or_group, cfg, chosen)):
                return hint
    except (HydraException, OmegaConfBaseException):
        pass  # the mistake is elsewhere: Hydra's message says where
    return None


def _unknown_option(override: Override) -> str | None:
    """``unknown experiment 'x': did you mean ...`` when a group is given an option that has no file."""
    group, option = override.key_or_group, override.value()
    options = group_options(group)
    if not isinstance(option, str) or option in options:
        return None
    if group == "experiment" and option in ROWS:  # a row of docs/ whose preset was folded into a command
        return f"experiment={option} is no longer a preset: train its row with {command(option)}"
    names = closest(option, options)
    return f"unknown {group} {option!r}: {did_you_mean(names) if names else 'the options are ' + ', '.join(options)}"


def _unknown_key(key: str, cfg: DictConfig, chosen: dict[str, str | None]) -> str | None:
    """``unknown key 'a.b': did you mean 'a.c'?`` for the first part of a dotted key that the config lacks
    (``chosen``: each group's option, which decides what keys its node has)."""
    parts = key.split(".")
    node: object = cfg
    for depth, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return None  # a key below a plain value: Hydra's message explains that
        if part not in node.keys():  # noqa: SIM118 (`in node` is False for a key whose value is ???)
            known = [str(name) for name in node if depth or name != "hydra"] + (list(chosen) if depth == 0 else [])
            names = [".".join([*parts[:depth], name, *parts[depth + 1 :]]) for name in closest(part, known)]
            return f"unknown key {key!r}: {did_you_mean(names) if names else _no_such_key(parts[:depth], chosen)}"
        node = OmegaConf.select(node, part, throw_on_missing=False, throw_on_resolution_failure=False)
    return None


def _no_such_key(parent: list[str], chosen: dict[str, str | None]) -> str:
    """Where a key with no close name was looked for: the config, a node, or a group's chosen option."""
    if not parent:
        return "the config has no key named like it (+key=value adds one)"
    where = ".".join(parent)
    if len(parent) == 1 and chosen.get(where):
        where = f"{where}={chosen[where]}"
    return f"{where} has no key named like it"


def validate(config_name: str, cfg: DictConfig) -> None:
    """Types and ranges of every key (see :mod:`poetry_vae.schema`)."""
    check = CHECKS.get(config_name)
    if check is None:
        return
    try:
        check(cfg)
    except OmegaConfBaseException as error:  # an interpolation that does not resolve
        raise ConfigError(f"bad config value: {_one_line(str(error))}") from None


def short_help(config_name: str) -> str | None:
    """The command's help (its ``hydra.help.template``) with the config groups and their options listed from conf/
    now, wrapped; None when the template shows the composed config ($CONFIG: Hydra renders that one)."""
    template = OmegaConf.select(OmegaConf.load(CONFIG_DIR / f"{config_name}.yaml"), "hydra.help.template")
    if not isinstance(template, str) or "$CONFIG" in template:
        return None
    return string.Template(template).safe_substitute(APP_CONFIG_GROUPS=format_groups())


def format_groups(width: int = 100) -> str:
    """``  group          option, option, ...`` for every group in conf/ (Hydra's own groups aside)."""
    groups = sorted(path.name for path in CONFIG_DIR.iterdir() if path.is_dir() and path.name != "hydra")
    lines = [textwrap.fill(", ".join(group_options(group)), width, initial_indent=f"  {group:<16}",
                           subsequent_indent=" " * 18, break_on_hyphens=False, break_long_words=False)
             for group in groups if group_options(group)]
    return "\n".join(lines)


def hydra_command(
    config_name: str, job: Callable[[DictConfig], T], precheck: Callable[[DictConfig], list[str] | None] | None = None
) -> Callable[[], None]:
    """``main()`` of a command: ``job(cfg)`` run by Hydra on ``conf/<config_name>.yaml``.

    ``precheck(cfg)`` sees a single run's composed config (with its ``hydra`` node) before Hydra writes anything,
    so a refused run leaves no trace (Hydra writes ``.hydra/`` into the run directory before the job starts); the
    overrides it returns are added to the command line Hydra runs. An error's ``exit_code`` (default 2) is the
    process's exit status.
    """

    @hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=config_name)
    def hydra_main(cfg: DictConfig) -> T:
        try:
            validate(config_name, cfg)  # again per job: a sweep's jobs are composed by Hydra
            return job(cfg)  # its return value is what a Hydra sweeper optimises
        except PoetryVAEError as error:
            fail(str(error), getattr(error, "exit_code", 2))
        except OSError as error:  # a file the system refused (a full disk, a read-only place): one line, no traceback
            where = f" {error.filename}" if error.filename else ""
            fail(f"could not read or write{where}: {error.strerror or error}; free some space or choose another path")

    def main() -> None:
        sys.argv[1:] = quote_unicode_values(sys.argv[1:])
        if {"--help", "-h"} & set(sys.argv[1:]) and (text := short_help(config_name)) is not None:
            print(text)  # read from conf/ without composing: instant, and the group lists wrapped
            return
        # The config is composed here, then by hydra_main again, on purpose: Hydra's own message for a wrong key,
        # group or value is several lines that end in a HYDRA_FULL_ERROR hint, and it writes .hydra/ into the run
        # directory before a job starts. Composing first makes a mistake one line with the closest names, checks
        # every job of a sweep before the first one runs, and gives precheck a run's config while nothing is
        # written yet. Composing twice costs a fraction of a second and gives the same config both times.
        try:
            overrides, printing = split_print_flags(sys.argv[1:])
            single = check_overrides(config_name, overrides)
            if single is not None and precheck is not None and not printing:
                sys.argv += precheck(single) or []
        except PoetryVAEError as error:
            fail(str(error), getattr(error, "exit_code", 2))
        hydra_main()

    return main


def fail(message: str, exit_code: int = 2) -> NoReturn:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(exit_code)
