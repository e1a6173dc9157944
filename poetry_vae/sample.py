"""Write poems from a checkpoint: ``python -m poetry_vae.sample [ckpt_path=<run dir>] [n=100 strategy=top_p ...]``.

Modes: ``prior`` (z from the model's prior: N(0, I) or a fitted one), ``reconstruct`` (decode given poems from their
posterior means) and ``interpolate`` (Bowman's homotopy between two given poems). No ``ckpt_path``: the model
shipped with the package.
Every option: ``--help`` (their defaults: :class:`~poetry_vae.config_nodes.SampleKeys` and ``DecodeRequest``).

Poems are decoded ``BATCH_SIZE`` at a time (beam search: ``BATCH_SIZE`` beams, a code's all in one batch), the
first ``SHOWN`` printed and every one streamed to ``out=``, so memory does not grow with ``n``. One seeded
generator runs through the batches: the same seed and ``n`` give the same poems, and runs with the same seed share
every whole batch they both decode (poems 0–1,023 are the same for every ``n`` >= 1,024; a run of fewer poems
decodes one smaller batch, which draws differently).
"""

from __future__ import annotations

import json
import random
import re
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NoReturn, TextIO

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from poetry_vae.atomic import atomic_path, check_writable
from poetry_vae.checkpoint import LoadedCheckpoint, load_checkpoint, resolve_checkpoint, shipped_model
from poetry_vae.cli import CONFIG_DIR, hydra_command
from poetry_vae.config_nodes import REQUEST_DEFAULTS, SampleKeys, defaults_of
from poetry_vae.data.variants import known_spellings
from poetry_vae.errors import PoetryVAEError, PromptError
from poetry_vae.generation.decoding import generate, sample_prior
from poetry_vae.generation.latent_ops import encode_texts, interpolate_at, path_weights, poem_ids, reconstruct
from poetry_vae.generation.request import REQUEST_FIELDS, SHAPE_FIELDS, DecodeRequest, GeneratedPoem
from poetry_vae.generation.steering import Steering, analogy_code, latent_bank, resolve_theme, steering
from poetry_vae.layout import as_written, written_chars
from poetry_vae.metrics.poetry import poetry_report

MODES = ("prior", "reconstruct", "interpolate", "steer", "analogy")
GREEDY_MODES = ("reconstruct", "interpolate", "analogy")  # a reconstruction or a homotopy is deterministic unless asked
BATCH_SIZE = 1024  # poems decoded at once: the decoder's memory is per batch, whatever n is
SHOWN = 20  # poems printed to the terminal; out= gets every one
REPORT_LIMIT = 10_000  # poems report=true measures (its human reference is at most the test split's ~1,600)
EXAMPLE_POEM = "床前明月光,疑是地上霜.举头望明月,低头思故乡."
# The strategies that read each decoding knob (the constraints and the other knobs apply to every strategy).
_DRAWING = ("sample", "top_k", "top_p", "top_k_top_p")
STRATEGY_KNOBS = {"temperature": _DRAWING, "top_k": ("top_k", "top_k_top_p"), "top_p": ("top_p", "top_k_top_p"),
                  "min_p": _DRAWING, "beam_size": ("beam",)}
# The modes that read each key, and what the others do instead.
MODE_KEYS = {
    "n": (("prior", "steer"), {"reconstruct": "it writes one poem per input poem",
                               "interpolate": "steps= sets the count",
                               "analogy": "it decodes the one code z_b - z_a + z_c"}),
    "poems": (("reconstruct", "interpolate", "analogy"), {"prior": "it decodes codes drawn from the prior",
                                                           "steer": "it decodes prior draws moved towards theme="}),
    "theme": (("steer",), {}),
    "strength": (("steer",), {}),
    "steer_method": (("steer",), {}),
    "steps": (("interpolate",), {}),
    "spherical": (("interpolate",), {}),
    "verse": (("prior", "steer"), {}),
}
_OVERRIDE_KEY = re.compile(r"^[~+]*([\w.]+)")


@dataclass
class Row:
    """One decoded poem and what it came from."""

    poem: GeneratedPoem
    input: str | None = None  # mode=reconstruct: the input poem, in the written form
    t: float | None = None  # mode=interpolate: the position on the path, 0.0 (poem a) to 1.0 (poem b)


@dataclass
class Job:
    """A checked command: what is decoded, how, and where it goes."""

    mode: str
    strategy: str
    total: int  # poems asked for
    seed: int
    checkpoint: Path
    inputs: list[str]  # the poems= in the written form (reconstruct, interpolate)
    out: Path | None
    report: bool
    verse: str | None = None  # prior, steer: the verse the codes were drawn from (None: either)


@dataclass
class Written:
    """What the command did."""

    decoded: int
    shown: list[Row]
    out: Path | None  # the file written whole, if any


def decode_request(cfg: DictConfig, form: dict[str, Any], strategy: str | None = None) -> DecodeRequest:
    """The request from the command line's decoding keys (``strategy`` in place of cfg's when given); the form's
    sizes from the checkpoint's data settings. Prompts are read as people type them (ASCII marks, spaces)."""
    values = {key: cfg[key] for key in REQUEST_FIELDS}
    if strategy is not None:
        values["strategy"] = strategy
    for key in ("first_line", "acrostic"):  # str(): Hydra parses digits as numbers
        if values[key] is not None:
            values[key] = written_chars(str(values[key]))
    sizes = {key: int(form[key]) for key in SHAPE_FIELDS if key in form}
    return DecodeRequest(**values, **sizes)


def write_poems(cfg: DictConfig) -> Written:
    """The whole job, without Hydra around it: check, load, decode in batches, print the first poems, stream."""
    if cfg.mode not in MODES:
        raise PromptError(f"mode={cfg.mode!r}: choose one of {', '.join(MODES)}")
    if cfg.mode in ("prior", "steer") and cfg.n < 1:
        raise PromptError(f"n={cfg.n}: ask for at least one poem")
    out = check_writable(cfg.out) if cfg.out else None  # before any work: a bad path must not cost the poems
    ckpt = load_checkpoint(resolve_checkpoint(cfg.ckpt_path), map_location=cfg.device)
    given = keys_given(cfg)
    strategy = chosen_strategy(cfg, given)
    request = respelled(decode_request(cfg, ckpt.data_hparams, strategy), ckpt)
    request.validate()
    inputs = input_poems(cfg, request, ckpt)
    verse = str(cfg.verse) if cfg.verse is not None and cfg.mode in ("prior", "steer") else None
    if verse is not None:
        check_verse(ckpt, verse)
    for warning in ignored_options(cfg, given, strategy):
        print(f"warning: {warning}", file=sys.stderr)
    print(opened(ckpt, cfg.ckpt_path))
    job = Job(str(cfg.mode), strategy, poem_count(cfg, inputs, request), int(cfg.seed), ckpt.path, inputs, out,
              bool(cfg.report), verse)
    generator = torch.Generator(device=cfg.device).manual_seed(job.seed)
    measured: list[list[str]] = []
    written = stream(decode_batches(cfg, ckpt, request, inputs, generator), job, measured)
    if job.report:
        show_report(measured, ckpt.data_hparams, job.seed)
    return written


# ---- what the command line asks for ----


def opened(ckpt: LoadedCheckpoint, asked: str | None) -> str:
    """One line saying which checkpoint writes the poems."""
    if asked is None or ckpt.path == shipped_model(str(asked)):
        return f"checkpoint: {ckpt.path} (a model shipped with the package; ckpt_path=<run dir> for your own)"
    return f"checkpoint: {ckpt.path} (step {ckpt.global_step:,})"


def command_line(cfg: DictConfig) -> list[str] | None:
    """The overrides the user typed, as Hydra recorded them; None for a config composed without Hydra's node."""
    if "hydra" in cfg:
        return list(cfg.hydra.overrides.task)
    if HydraConfig.initialized():
        return list(HydraConfig.get().overrides.task)
    return None


def keys_given(cfg: DictConfig) -> set[str]:
    """The keys the user set: those named on the command line, or (a config composed by hand, without Hydra's
    record) those whose value differs from its default."""
    overrides = command_line(cfg)
    if overrides is not None:
        return {match.group(1) for match in map(_OVERRIDE_KEY.match, overrides) if match}
    defaults = OmegaConf.merge(defaults_of(SampleKeys), REQUEST_DEFAULTS, OmegaConf.load(CONFIG_DIR / "sample.yaml"))
    return {str(key) for key in cfg if key in defaults and key != "hydra" and cfg[key] != defaults[key]}


def chosen_strategy(cfg: DictConfig, given: set[str]) -> str:
    """cfg's strategy, except greedy for a reconstruction or homotopy whose strategy the user did not set."""
    return "greedy" if cfg.mode in GREEDY_MODES and "strategy" not in given else str(cfg.strategy)


def ignored_options(cfg: DictConfig, given: set[str], strategy: str) -> list[str]:
    """One line for each key the user set that this strategy or mode does not read."""
    notes = []
    why = f" (mode={cfg.mode}'s default)" if "strategy" not in given and strategy != cfg.strategy else ""
    for key, users in STRATEGY_KNOBS.items():
        if key in given and strategy not in users:
            notes.append(f"{key}={_value(cfg[key])} is ignored: strategy={strategy}{why} does not use it "
                         f"(strategy={_either(users)} does)")
    for key, (modes, instead) in MODE_KEYS.items():
        if key in given and cfg.mode not in modes:
            reason = instead.get(str(cfg.mode), f"only mode={_either(modes)} uses it")
            notes.append(f"{key}={_value(cfg[key])} is ignored in mode={cfg.mode}: {reason}")
    return notes


def _value(value: Any) -> str:
    """A value as it is typed on the command line (a list of poems by its length)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, ListConfig | list):
        return f"[{len(value)} poem{'' if len(value) == 1 else 's'}]"
    return str(value)


def _either(names: tuple[str, ...]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return " or ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else names[0]


def respelled(request: DecodeRequest, ckpt: LoadedCheckpoint) -> DecodeRequest:
    """The prompts (first_line, acrostic, include) with variant characters written as the model's vocabulary
    writes them: 隐 or 隠, whichever it knows (see data/variants.py)."""
    prompts = {key: known_spellings(value, ckpt.vocab) for key in ("first_line", "acrostic", "include")
               if isinstance(value := getattr(request, key), str)}
    return replace(request, **prompts)


def input_poems(cfg: DictConfig, request: DecodeRequest, ckpt: LoadedCheckpoint) -> list[str]:
    """The poems= of reconstruct and interpolate in the written form, checked (shape, count, characters) before
    any poem is decoded."""
    if cfg.mode in ("prior", "steer"):
        return []
    texts = [str(text) for text in cfg.poems]
    if cfg.mode == "reconstruct" and not texts:
        raise PromptError(f"mode=reconstruct needs poems=[...], e.g. \"poems=['{EXAMPLE_POEM}']\"")
    poems = [known_spellings(written_poem(text, i, len(texts), request), ckpt.vocab) for i, text in enumerate(texts)]
    if cfg.mode == "interpolate" and len(poems) != 2:
        raise PromptError(f"mode=interpolate needs exactly 2 poems=[a,b], got {len(poems)}")
    if cfg.mode == "analogy" and len(poems) != 3:
        raise PromptError(f"mode=analogy needs exactly 3 poems=[a,b,c] (a is to b as c is to ?), got {len(poems)}")
    for i, poem in enumerate(poems):
        try:
            poem_ids(ckpt.vocab, poem, request.line_length, request.num_lines)
        except PromptError as error:
            raise PromptError(f"poems[{i}]: {error}") from None
    return poems


def written_poem(text: str, index: int, count: int, request: DecodeRequest) -> str:
    """One input poem in the written form, or a one-line error (with the quoting hint when a poem was probably
    split at its ASCII commas)."""
    poem = as_written(text, request.line_length, request.num_lines)
    if poem is not None:
        return poem
    size = request.line_length * request.num_lines
    hint = f"; a poem written with ASCII commas must be quoted whole: \"poems=['{EXAMPLE_POEM}']\"" if count > 1 else ""
    raise PromptError(f"poems[{index}]={text!r} has {len(written_chars(text))} characters; a poem here is "
                      f"{request.num_lines} lines of {request.line_length} ({size} characters){hint}")


def poem_count(cfg: DictConfig, inputs: list[str], request: DecodeRequest) -> int:
    codes = {"prior": int(cfg.n), "steer": int(cfg.n), "reconstruct": len(inputs), "interpolate": int(cfg.steps),
             "analogy": 1}[cfg.mode]
    return codes * per_code(request)


def per_code(request: DecodeRequest) -> int:
    """Poems decoded from each code: the decoding block's num_return_sequences (1 where there is no such key)."""
    return int(getattr(request, "num_return_sequences", 1))


# ---- decoding, a batch at a time ----


def decode_batches(cfg: DictConfig, ckpt: LoadedCheckpoint, request: DecodeRequest, inputs: list[str],
                   generator: torch.Generator) -> Iterator[list[Row]]:
    if cfg.mode == "prior":
        return prior_batches(ckpt, request, int(cfg.n), generator, cfg.verse)
    if cfg.mode == "reconstruct":
        return reconstruct_batches(ckpt, request, inputs, generator)
    if cfg.mode == "steer":
        return steered_batches(ckpt, request, theme_steering(cfg, ckpt), int(cfg.n), generator, cfg.verse)
    if cfg.mode == "analogy":
        return analogy_batches(ckpt, request, inputs, generator)
    return path_batches(ckpt, request, inputs, int(cfg.steps), bool(cfg.spherical), generator)


def check_verse(ckpt: LoadedCheckpoint, verse: str) -> None:
    """Before any decoding: a one-line error unless the model's prior was fitted by verse."""
    if not ckpt.model.cfg.use_latent:
        raise PromptError(f"verse={verse} needs a model with a latent code; this checkpoint is the language-model "
                          "baseline (use_latent=False)")
    ckpt.model.prior.check_verse(verse)


def code_batches(count: int, request: DecodeRequest) -> Iterator[slice]:
    """The codes of each batch: at most BATCH_SIZE rows decoded at once (a code's poems, or its beams), however
    many a code takes."""
    rows = request.beam_size if request.strategy == "beam" else per_code(request)
    size = max(1, BATCH_SIZE // rows)
    for start in range(0, count, size):
        yield slice(start, min(start + size, count))


def prior_batches(ckpt: LoadedCheckpoint, request: DecodeRequest, n: int, generator: torch.Generator,
                  verse: str | None = None) -> Iterator[list[Row]]:
    for codes in code_batches(n, request):
        size = codes.stop - codes.start
        z = sample_prior(ckpt.model, size, generator, verse)
        yield [Row(poem) for poem in generate(ckpt.model, ckpt.vocab, z, request, generator, num_poems=size)]


def theme_steering(cfg: DictConfig, ckpt: LoadedCheckpoint) -> Steering:
    """The theme's direction from the checkpoint's training poems (encoded once per checkpoint, then cached)."""
    if not ckpt.model.cfg.use_latent:
        raise PromptError("mode=steer needs a model with a latent code; this checkpoint is the language-model "
                          "baseline (use_latent=False)")
    theme = resolve_theme(cfg.theme, ckpt.vocab)
    bank = latent_bank(ckpt)
    steer = steering(bank, theme, str(cfg.steer_method), cfg.strength, cfg.verse, ckpt.form["line_length"])
    of_verse = f" ({cfg.verse})" if cfg.verse else ""
    print(f"theme {theme.name} (markers {theme.markers}): {steer.themed_count:,}{of_verse} of {steer.bank_size:,} "
          f"training poems; steer_method={steer.method} strength={steer.strength:g}")
    return steer


def steered_batches(ckpt: LoadedCheckpoint, request: DecodeRequest, steer: Steering, n: int,
                    generator: torch.Generator, verse: str | None = None) -> Iterator[list[Row]]:
    for codes in code_batches(n, request):
        size = codes.stop - codes.start
        z = steer.move(sample_prior(ckpt.model, size, generator, verse), generator)
        yield [Row(poem) for poem in generate(ckpt.model, ckpt.vocab, z, request, generator, num_poems=size)]


def analogy_batches(ckpt: LoadedCheckpoint, request: DecodeRequest, inputs: list[str],
                    generator: torch.Generator) -> Iterator[list[Row]]:
    """a : b :: c : ?, decoded from z_b - z_a + z_c (posterior means)."""
    mu, _ = encode_texts(ckpt.model, ckpt.vocab, inputs, request.line_length, request.num_lines)
    question = f"{inputs[0]} : {inputs[1]} :: {inputs[2]} : ?"
    yield [Row(poem, input=question) for poem in generate(ckpt.model, ckpt.vocab, analogy_code(mu), request,
                                                         generator)]


def reconstruct_batches(ckpt: LoadedCheckpoint, request: DecodeRequest, inputs: list[str],
                        generator: torch.Generator) -> Iterator[list[Row]]:
    k = per_code(request)
    for codes in code_batches(len(inputs), request):
        chunk = inputs[codes]
        poems = reconstruct(ckpt.model, ckpt.vocab, chunk, request, generator)
        yield [Row(poem, input=chunk[i // k]) for i, poem in enumerate(poems)]  # a code's k poems side by side


def path_batches(ckpt: LoadedCheckpoint, request: DecodeRequest, inputs: list[str], steps: int, spherical: bool,
                 generator: torch.Generator) -> Iterator[list[Row]]:
    """Bowman's homotopy between the two inputs, in batches of steps along the path (as latent_ops.homotopy)."""
    mu, _ = encode_texts(ckpt.model, ckpt.vocab, inputs, request.line_length, request.num_lines)
    weights = path_weights(steps, mu.dtype, mu.device)
    k = per_code(request)
    for codes in code_batches(steps, request):
        w = weights[codes]
        poems = generate(ckpt.model, ckpt.vocab, interpolate_at(mu[0], mu[1], w, spherical), request, generator)
        ts = w.tolist()
        yield [Row(poem, t=ts[i // k]) for i, poem in enumerate(poems)]


# ---- output: the first poems printed, every poem streamed to out= ----


def needed(job: Job) -> int:
    """Poems the outputs use: all of them for out=, else those printed (and measured, for report=true)."""
    if job.out is not None:
        return job.total
    return min(job.total, REPORT_LIMIT if job.report else SHOWN)


def stream(batches: Iterator[list[Row]], job: Job, measured: list[list[str]]) -> Written:
    """Print the first poems as soon as they are decoded and write every poem to out= (whole or not at all);
    ``measured`` collects the lines report=true measures. Ctrl-C or SIGTERM leaves no file behind."""
    shown: list[Row] = []
    decoded = 0
    try:
        with output_file(job.out) as sink, sigterm_as_interrupt():
            for batch in batches:
                rows = batch[: needed(job) - decoded]
                if sink is not None:
                    sink.writelines(json.dumps(record(decoded + i, row, job), ensure_ascii=False) + "\n"
                                    for i, row in enumerate(rows))
                shown += rows[: SHOWN - len(shown)]
                if job.report:
                    measured.extend(row.poem.lines for row in rows[: REPORT_LIMIT - len(measured)])
                first, decoded = decoded == 0, decoded + len(rows)
                if first:  # the first batch holds every printed poem (BATCH_SIZE >= SHOWN): print them now
                    show(shown, job)
                    announce(decoded, job)
                if decoded >= needed(job):
                    break
    except KeyboardInterrupt:
        where = f"; {job.out} was not written" if job.out else ""
        raise PoetryVAEError(f"interrupted after {decoded:,} of {job.total:,} poems{where}") from None
    except OSError as error:  # a full disk, a device that refuses writes: the file is left as it was
        if job.out is None:
            raise
        raise PoetryVAEError(f"could not write out={job.out} ({error.strerror}) after {decoded:,} of "
                             f"{job.total:,} poems; free some space or choose another path") from None
    summarise(decoded, shown, job)
    return Written(decoded, shown, job.out)


@contextmanager
def output_file(out: Path | None) -> Iterator[TextIO | None]:
    """A handle on a temporary sibling of ``out`` that replaces it only once every poem is in (None: no file)."""
    if out is None:
        yield None
        return
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as handle:  # closed before the rename
        yield handle


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler's kill, a timeout) unwinds like Ctrl-C, so the temporary file is removed."""
    if threading.current_thread() is not threading.main_thread():  # signals can only be handled there
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def announce(decoded: int, job: Job) -> None:
    """Say that a long write goes on after the printed poems."""
    if job.out is not None and job.total > decoded:
        print(f"writing {job.total:,} poems to {job.out} ...", flush=True)


def summarise(decoded: int, shown: list[Row], job: Job) -> None:
    """Where the poems that were not printed went."""
    if job.out is not None:
        print(f"wrote {decoded:,} poems to {job.out}")
    elif job.total > len(shown):
        print(f"{job.total - len(shown):,} more poems not shown: pass out=poems.jsonl to write all {job.total:,}")


def record(index: int, row: Row, job: Job) -> dict[str, Any]:
    """One JSONL line: the poem, what it came from (``input`` or ``t``) and how it was made."""
    poem = row.poem
    fields = {"index": index, "text": poem.text, "lines": poem.lines, "log_prob": round(poem.log_prob, 4),
              "constraints": poem.constraints, "pattern": poem.pattern}
    if row.input is not None:
        fields["input"] = row.input
    if row.t is not None:
        fields["t"] = round(row.t, 6)
    if job.verse is not None:
        fields["verse"] = job.verse
    return {**fields, "mode": job.mode, "strategy": job.strategy, "seed": job.seed, "checkpoint": str(job.checkpoint)}


def show(rows: list[Row], job: Job) -> None:
    """The printed poems as a table: a reconstruction beside its input, a homotopy's poems with their t."""
    count = f"{job.total:,} poems" if len(rows) == job.total else f"the first {len(rows)} of {job.total:,} poems"
    caption = f"t=0: {job.inputs[0]}\nt=1: {job.inputs[1]}" if job.mode == "interpolate" else None
    table = Table(title=f"{count} · mode={job.mode} · strategy={job.strategy}", caption=caption, show_lines=False)
    table.add_column("#", justify="right")
    if job.mode == "interpolate":
        table.add_column("t", justify="right")
    if job.mode == "analogy":
        caption = "\n".join(f"{name}: {poem}" for name, poem in zip("abc", job.inputs, strict=True))
        table.caption = caption + "\ndecoded from z_b - z_a + z_c"
    if job.mode == "reconstruct":
        table.add_column("input", no_wrap=True, min_width=48)  # 24 full-width characters
    table.add_column("reconstruction" if job.mode == "reconstruct" else "poem", no_wrap=True, min_width=48)
    table.add_column("log p", justify="right")
    table.add_column("constraints")
    for i, row in enumerate(rows):
        poem = row.poem
        held = " ".join(f"{name}{'✓' if ok else '✗'}" for name, ok in poem.constraints.items())
        source = ([f"{row.t:.2f}"] if row.t is not None else
                  [row.input] if row.input is not None and job.mode == "reconstruct" else [])
        table.add_row(str(i), *source, poem.text, f"{poem.log_prob:.1f}",
                      held + (f" {poem.pattern}" if poem.pattern else ""))
    width = 150 if job.mode == "reconstruct" else 100
    Console(width=max(width, Console().width)).print(table)
    sys.stdout.flush()


def show_report(poems: list[list[str]], data_hparams: dict[str, Any], seed: int) -> None:
    """Poetry metrics of these poems (their lines) beside the same metrics on as many human poems from the test
    split."""
    from poetry_vae.data.datamodule import QuatrainDataModule  # Lightning is needed only for this report

    datamodule = QuatrainDataModule(**data_hparams)
    datamodule.load()  # the checkpoint's own split; texts only, so no vocabulary is built
    test = [list(p.lines) for p in datamodule.poems["test"]]
    human = random.Random(seed).sample(test, min(len(poems), len(test)))
    train = [list(p.lines) for p in datamodule.poems["train"]]
    form = int(data_hparams.get("line_length", 5))
    rows = {"generated": poetry_report(poems, train, line_length=form),
            "human test split": poetry_report(human, train, line_length=form)}
    table = Table(title=f"poetry metrics (human row: {len(human)} random test-split poems; 平水韵)")
    table.add_column("")
    names = list(rows["generated"])
    for name in names:
        table.add_column(name.replace("_rate", "").replace("_", " "), justify="right")
    for label, report in rows.items():
        table.add_row(label, *(f"{report[name]:.3f}" if name != "n_poems" else f"{report[name]:.0f}" for name in names))
    Console(width=max(160, Console().width)).print(table)


main = hydra_command("sample", write_poems)

if __name__ == "__main__":
    main()
