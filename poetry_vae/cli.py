"""The command lines' shared shell: Hydra entry points whose mistakes are one line.

The config is composed once before Hydra runs, so a wrong key or group is one line that names it (Hydra itself
reports such mistakes over several lines, with a hint to set HYDRA_FULL_ERROR); 汉字 values are quoted for
Hydra's grammar; expected errors raised by a job print ``error: ...`` and exit with status 2.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from poetry_vae.errors import PoetryVAEError
from poetry_vae.schema import CHECKS, ConfigError

T = TypeVar("T")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "conf"
# Flags of Hydra's command line that take a value: with these the user drives Hydra directly, we step aside.
_EXPERT_FLAGS = ("--config-path", "-cp", "--config-dir", "-cd", "--config-name", "-cn", "--cfg", "-c",
                 "--package", "-p", "--info", "-i", "--experimental-rerun", "--help", "-h", "--hydra-help")


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
                composed.append(compose(config_name, overrides=overrides, return_hydra_config=True))
    except (HydraException, OmegaConfBaseException) as error:
        raise ConfigError(f"bad config override: {_one_line(str(error))}") from None
    finally:
        GlobalHydra.instance().clear()
    for cfg in composed:
        validate(config_name, cfg)
    return composed[0] if len(composed) == 1 and not ({"-m", "--multirun"} & set(args)) else None


def validate(config_name: str, cfg: DictConfig) -> None:
    """Types and ranges of every key (see :mod:`poetry_vae.schema`)."""
    check = CHECKS.get(config_name)
    if check is None:
        return
    try:
        check(cfg)
    except OmegaConfBaseException as error:  # an interpolation that does not resolve
        raise ConfigError(f"bad config value: {_one_line(str(error))}") from None


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

    def main() -> None:
        sys.argv[1:] = quote_unicode_values(sys.argv[1:])
        try:
            single = check_overrides(config_name, sys.argv[1:])
            if single is not None and precheck is not None:
                sys.argv += precheck(single) or []
        except PoetryVAEError as error:
            fail(str(error), getattr(error, "exit_code", 2))
        hydra_main()

    return main


def fail(message: str, exit_code: int = 2) -> NoReturn:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(exit_code)
