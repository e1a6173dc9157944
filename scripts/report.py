"""`make report`: train the standard experiments for one budget and write them up on a new page, never over another.

Each run is evaluated on the test split. The page, docs/results_<name>/results.md (with results.json and figures/),
starts with its title, date, budget and command, then holds the table (likelihood and what the latent does), the
curves (against steps and against wall-clock minutes), the latent map, a homotopy per VAE and sample poems; its
line is appended to docs/index.md.

    python scripts/report.py [--name 2026-12-02_15min] [--title "..."] [--budget-min 15]
                             [--experiments lm,cyclical_fb,li2019] [--prefix report_] [--parallel 2]
                             [--iw-samples 500] [--iw-every 3] [--homotopy-pairs 100] [--prior-samples 500]
                             [--docs-dir docs]

A page is never overwritten: if docs/results_<name>/ already holds anything the command stops with a one-line
error before training. The name defaults to the date and the budget (``<YYYY-MM-DD>_<budget>min``).
Training runs live in outputs/<prefix><experiment> and are resumable (ckpt_path=last): a run whose time budget is
spent is not trained again, so a report that stopped half-way resumes its runs when started again. Evaluation
results are cached next to each checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import random
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml

from poetry_vae.atomic import atomic_write, atomic_write_text
from poetry_vae.checkpoint import LoadedCheckpoint, load_checkpoint
from poetry_vae.cli import number_at_least
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.generation import DecodeRequest, generate, sample_prior
from poetry_vae.layout import render
from poetry_vae.metrics.latent_use import homotopy_pairs, homotopy_walks
from poetry_vae.metrics.poetry import poetry_report
from poetry_vae.plots import line_styles
from poetry_vae.progress import max_time_of, trained_seconds
from poetry_vae.runs import best_checkpoint

ROOT = Path(__file__).resolve().parents[1]

PRESETS = ROOT / "conf" / "experiment"


def preset_value(name: str, key: str) -> Any:
    """A top-level key of the preset ``name`` as Hydra composes it: its own value, else its parents' (the plain
    names in its defaults list, the last one first), else None."""
    data = yaml.safe_load((PRESETS / f"{name}.yaml").read_text("utf-8")) or {}
    if key in data:
        return data[key]
    parents = [entry for entry in data.get("defaults", []) if isinstance(entry, str) and entry != "_self_"]
    return next((value for parent in reversed(parents) if (value := preset_value(parent, key)) is not None), None)


def presets() -> list[str]:
    return sorted(path.stem for path in PRESETS.glob("*.yaml"))


def report_presets() -> tuple[str, ...]:
    """The presets tagged ``report`` (``tags: [report]``): the rows `make report` trains by default."""
    return tuple(name for name in presets() if "report" in (preset_value(name, "tags") or []))


# a preset's run: its last checkpoint, or its directory (its best checkpoint)
SOURCE = re.compile(r"\$\{paths\.output_root\}/([A-Za-z0-9_.-]+)(?:/checkpoints/last\.ckpt)?")


def fine_tuning_chains() -> dict[str, str]:
    """Each fine-tuning preset and the preset its ``init_from`` starts from (``${paths.output_root}/<preset>/...``)."""
    chains = {}
    for name in presets():
        match = SOURCE.fullmatch(str(preset_value(name, "init_from") or ""))
        if match and (PRESETS / f"{match.group(1)}.yaml").exists():
            chains[name] = match.group(1)
    return chains


EXPERIMENTS = report_presets()
# The targets a VAE is held to: likelihood no worse than the LM's while the latent does real work.
TARGETS = (("test/kl", 8.0, "KL ≥ 8"), ("test/active_units", 16, "AU ≥ 16"), ("test/mi", 4.0, "MI ≥ 4"),
           ("test/recon_char_acc", 0.30, "reconstruction ≥ 30%"), ("test/homotopy_distinct", 5.0, "homotopy ≥ 5/7"),
           ("test/homotopy_endpoint_diff", 16.0, "endpoints ≥ 16/20"),
           ("test/prior_distinct_2", 0.6, "prior distinct-2 ≥ 0.6"))
POETRY_COLUMNS = ("format_valid_rate", "rhyme_rate", "tone_fit_rate", "tone_position_rate", "distinct_1",
                  "distinct_2", "self_bleu", "copied_poem_rate", "copied_line_rate")


def sh(command: Sequence[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8") as handle:
        code = subprocess.run(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT).returncode
    if code:
        raise SystemExit(f"error: {' '.join(command[:4])} ... failed ({code}); see {log}")


def budget_spent(run: Path, budget_s: float) -> bool:
    """True if the run's last checkpoint says its training time (Lightning's Timer) reached the budget."""
    last = run / "checkpoints" / "last.ckpt"
    if not last.exists():
        return False
    return (trained_seconds(torch.load(last, weights_only=True)) or 0.0) >= 0.99 * budget_s


# A fine-tuned row spends PRETRAIN_SHARE of the budget pretraining (its source preset), the rest fine-tuning:
# pretraining + fine-tuning together get the same CPU minutes as every other row.
CHAINS = fine_tuning_chains()
PRETRAIN_SHARE = 0.7


def train(experiment: str, args: argparse.Namespace, budget_s: float | None = None) -> Path:
    """A row's run; a chained row first trains the stage it starts from (itself maybe chained) on its share."""
    budget_s = args.budget_min * 60 if budget_s is None else budget_s
    extra: list[str] = []
    if experiment in CHAINS:
        source = train(CHAINS[experiment], args, budget_s * PRETRAIN_SHARE)
        extra = [f"init_from={source / 'checkpoints' / 'last.ckpt'}"]
        budget_s *= 1 - PRETRAIN_SHARE
    return train_for(experiment, budget_s, args, extra)


def train_for(experiment: str, budget_s: float, args: argparse.Namespace, extra: Sequence[str] = ()) -> Path:
    run = ROOT / "outputs" / f"{args.prefix}{experiment}"
    if budget_spent(run, budget_s):
        return run  # resuming would still take one more step before Lightning's Timer stops it
    sh([sys.executable, "-m", "poetry_vae.train", f"experiment={experiment}", f"run_name={run.name}",
        f"trainer.max_time={max_time_of(budget_s)}", "trainer.max_epochs=1000", "torch_threads=1",
        "test_after_fit=false", "trainer.enable_progress_bar=false", "ckpt_path=last", f"seed={args.seed}",
        f"evaluation.iw_every_n_val={args.iw_every}", *extra], run / "report_train.log")
    return run


def uses_latent(run: Path) -> bool:
    data = torch.load(best_checkpoint(run), weights_only=True, map_location="cpu")
    return bool(data["hyper_parameters"]["model"].get("use_latent", True))


def evaluate(run: Path, args: argparse.Namespace) -> dict[str, float]:
    """Test metrics of the run's best checkpoint, cached beside it until the checkpoint or the sizes change."""
    ckpt = best_checkpoint(run)
    out = run / f"test_iw{args.iw_samples}_hp{args.homotopy_pairs}_ps{args.prior_samples}.json"
    if not out.exists() or out.stat().st_mtime < ckpt.stat().st_mtime:
        sh([sys.executable, "-m", "poetry_vae.evaluate", f"ckpt_path={ckpt}", f"iw_samples={args.iw_samples}",
            "split=test", "torch_threads=1", f"out={out}", f"seed={args.seed}", "latent_measures=true",
            f"homotopy_pairs={args.homotopy_pairs}", f"prior_samples={args.prior_samples}"], run / "report_eval.log")
    return json.loads(out.read_text("utf-8"))["metrics"]


def read_csv(run: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted((run / "csv").glob("version_*/metrics.csv")):
        with open(path, encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def series(rows: list[dict[str, str]], key: str) -> tuple[list[int], list[float]]:
    points = sorted({int(r["step"]): float(r[key]) for r in rows if r.get(key)}.items())
    return [s for s, _ in points], [v for _, v in points]


def timed_series(rows: list[dict[str, str]], key: str,
                 clock: str = "val/elapsed_min") -> tuple[list[float], list[float]]:
    """``key`` against training wall-clock minutes, from the rows that log both (the module logs the validation's
    minute beside its metrics, summed over resumes); empty for runs logged before the clock existed."""
    points = sorted((float(r[clock]), float(r[key])) for r in rows if r.get(clock) and r.get(key))
    return [m for m, _ in points], [v for _, v in points]


def training_speed(run: Path, rows: list[dict[str, str]], budget_s: float) -> float:
    """Poems per second of the wall-clock budget (training + its validation), from the step count."""
    hparams = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["datamodule_hyper_parameters"]
    steps = max(int(r["step"]) for r in rows)
    return steps * int(hparams["batch_size"]) / budget_s


def load_run(run: Path) -> tuple[LoadedCheckpoint, QuatrainDataModule]:
    """A run's best checkpoint and the split and vocabulary it was trained on."""
    ckpt = load_checkpoint(best_checkpoint(run))
    return ckpt, QuatrainDataModule.for_checkpoint(ckpt.data_hparams, ckpt.vocab, f"checkpoint {ckpt.path}")


def poetry_rows(runs: dict[str, Path], n: int, seed: int) -> tuple[dict[str, dict[str, float]], dict[str, list]]:
    reports: dict[str, dict[str, float]] = {}
    samples: dict[str, list] = {}
    human_done = False
    for name, run in runs.items():
        ckpt, datamodule = load_run(run)
        train_lines = [list(p.lines) for p in datamodule.poems["train"]]
        if not human_done:
            human = random.Random(seed).sample([list(p.lines) for p in datamodule.poems["test"]], n)
            reports["human test split"] = poetry_report(human, train_lines)
            human_done = True
        sampling = {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "precision": "fp32"}
        for label, request in (("", DecodeRequest(**sampling)),
                               (" +rhyme+tone", DecodeRequest(**sampling, rhyme="pingshui", tone="auto"))):
            generator = torch.Generator().manual_seed(seed)
            z = sample_prior(ckpt.model, n, generator)
            poems = generate(ckpt.model, ckpt.vocab, z, request, generator, num_poems=n)
            reports[name + label] = poetry_report([p.lines for p in poems], train_lines)
            samples[name + label] = [p.text for p in poems[:5]]
    return reports, samples


def legend_outside(ax: Any) -> None:
    """The legend to the right of the axes, in as many columns as keep it no taller than them: with 15+ runs
    it covers no curve."""
    rows = 18
    count = len(ax.get_legend_handles_labels()[1])
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=7,
              ncol=max(1, -(-count // rows)))


def plot_curves(curves: dict[str, list[dict[str, str]]], figures: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures.mkdir(parents=True, exist_ok=True)
    names = []
    for key, label, fname in (("val/iw_nll_char", "validation IW-NLL per character (K=10)", "val_iw_nll.png"),
                              ("val/kl", "validation KL per poem (nats)", "val_kl.png"),
                              ("train/beta", "β (KL weight)", "beta.png"),
                              ("val/active_units", "active units (of 128)", "active_units.png")):
        fig, ax = plt.subplots(figsize=(8.5, 3.6))
        for (name, rows), style in zip(curves.items(), line_styles(len(curves)), strict=True):
            steps, values = series(rows, key)
            if steps:
                ax.plot(steps, values, label=name, marker="." if key.startswith("val") else None, **style)
        ax.set_xlabel("optimiser step")
        ax.set_title(label)
        legend_outside(ax)
        fig.tight_layout()
        atomic_write(figures / fname, functools.partial(fig.savefig, dpi=110))
        plt.close(fig)
        names.append(fname)
    return names


def plot_quality_per_minute(curves: dict[str, list[dict[str, str]]], figures: Path,
                            fname: str = "val_iw_nll_minutes.png",
                            prefix_curves: dict[str, list[dict[str, str]]] | None = None) -> str | None:
    """Validation IW-NLL per character against training wall-clock minutes, one line per run (None if no run
    logged its clock)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = {name: timed_series(rows, "val/iw_nll_char") for name, rows in curves.items()}
    for name, source_rows in (prefix_curves or {}).items():  # a fine-tuned row: its pretraining minutes first
        before = timed_series(source_rows, "val/iw_nll_char")
        offset = before[0][-1] if before[0] else 0.0
        lines[name] = ([*before[0], *(m + offset for m in lines[name][0])], [*before[1], *lines[name][1]])
    lines = {name: xy for name, xy in lines.items() if xy[0]}
    if not lines:
        return None
    figures.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    for (name, (minutes, values)), style in zip(lines.items(), line_styles(len(lines)), strict=True):
        ax.plot(minutes, values, label=name, marker=".", **style)
    best = min(min(values) for _, values in lines.values())
    ax.set_ylim(best - 0.05, best + 1.2)  # an autoencoder phase (li2019, β = 0) would flatten every other curve
    ax.set_xlabel("training wall-clock minutes (one thread; validation included; fine-tuned rows: pretraining first)")
    ax.set_title("validation IW-NLL per character (K=10) against time")
    legend_outside(ax)
    fig.tight_layout()
    atomic_write(figures / fname, functools.partial(fig.savefig, dpi=110))
    plt.close(fig)
    return fname


def latent_figure(run: Path, figures: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from poetry_vae.plots import latent_map

    ckpt, datamodule = load_run(run)
    with torch.no_grad():
        mu, _ = ckpt.model.encode(datamodule.tensors["test"]["tokens"])
    fig = latent_map(mu, [p.dynasty for p in datamodule.poems["test"]], f"test-set posterior means ({run.name})")
    atomic_write(figures / "latent_map.png", functools.partial(fig.savefig, dpi=110))
    return "latent_map.png"


def homotopy_table(run: Path, seed: int, steps: int = 7) -> tuple[list[str], list[str]]:
    """One walk between two test poems picked by ``seed`` (the same pair for every run): the two human poems and
    the ``steps`` greedy decodes, rendered."""
    ckpt, datamodule = load_run(run)
    poems = [list(p.lines) for p in datamodule.poems["test"]]
    walk = homotopy_walks(ckpt.model, ckpt.vocab, poems, pairs=1, steps=steps, seed=seed)[0]
    a, b = homotopy_pairs(len(poems), 1, seed)[0]  # the pair homotopy_walks drew
    width = len(poems[a][0])
    return [render(poems[a]), render(poems[b])], [render([t[i:i + width] for i in range(0, len(t), width)])
                                                  for t in walk]


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


class Column(NamedTuple):
    """One metric of the main table, declared once: its key in a run's test metrics, its header and how its value
    is written. ``missing`` is what a run without the metric shows (None: every run has it)."""

    key: str
    header: str
    text: Callable[[float], str]
    missing: str | None = None

    def cell(self, metrics: dict[str, float]) -> str:
        if self.missing is None:
            return self.text(metrics[self.key])
        value = metrics.get(self.key)
        return self.missing if value is None else self.text(value)


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


# The main table's columns after the run's name, in order: likelihood, latent statistics, then what the latent does
# by greedy decoding (shown as "–" where a run has no such measure, e.g. the LM). A new metric is one line here.
COLUMNS = (
    Column("global_step", "steps", lambda v: str(int(v))),
    Column("poems_per_s", "poems/s", lambda v: f"{v:.0f}", missing="0"),
    Column("test/iw_nll_char", "test IW-NLL / char", fmt),
    Column("test/iw_ppl", "IW perplexity", lambda v: f"{v:.1f}"),
    Column("test/kl", "KL / poem", lambda v: f"{v:.2f}"),
    Column("test/mi", "MI", lambda v: f"{v:.2f}", missing="0.00"),
    Column("test/active_units", "active units", lambda v: str(int(v)), missing="0"),
    Column("test/elbo", "test ELBO / poem", lambda v: f"{v:.1f}"),
    Column("test/recon_char_acc", "recon chars", percent, missing="–"),
    Column("test/recon_bleu2", "recon BLEU-2", fmt, missing="–"),
    Column("test/recon_forced_acc", "forced chars", percent, missing="–"),
    Column("test/homotopy_distinct", "homotopy distinct / 7", lambda v: f"{v:.2f}", missing="–"),
    Column("test/homotopy_endpoint_diff", "endpoint diff / 20", lambda v: f"{v:.1f}", missing="–"),
    Column("test/prior_distinct_2", "prior distinct-2", fmt, missing="–"),
    Column("test/prior_self_bleu", "prior self-BLEU", fmt, missing="–"),
)


def main_table(table: dict[str, dict[str, float]], ranked: list[str]) -> list[str]:
    """The main table: one row per run, one cell per declared column (``COLUMNS``)."""
    lines = ["| run | " + " | ".join(column.header for column in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for name in ranked:
        lines.append(f"| {name} | " + " | ".join(column.cell(table[name]) for column in COLUMNS) + " |")
    return lines


def missed_targets(vae: dict[str, float], lm: dict[str, float]) -> list[str]:
    """The targets a VAE misses: IW-NLL no worse than the LM's, then each latent threshold."""
    missed = [] if vae["test/iw_nll_char"] <= lm["test/iw_nll_char"] else ["IW-NLL ≤ LM"]
    return missed + [label for key, floor, label in TARGETS if vae.get(key, 0.0) < floor]


def homotopy_section(walks: dict[str, list[str]], endpoints: list[str]) -> list[str]:
    lines = ["## Homotopies (greedy decoding at 7 evenly spaced points between the posterior means of two test "
             "poems, the same pair for every VAE)", "", f"From {endpoints[0]} to {endpoints[1]}", ""]
    for name, walk in walks.items():
        lines += [f"**{name}**", "", "| point | poem |", "|---:|---|"]
        lines += [f"| {i} | {t} |" for i, t in enumerate(walk)] + [""]
    return lines


def at_a_time(parallel: int) -> str:
    """How many runs trained side by side, in words."""
    return "one run at a time" if parallel == 1 else f"up to {parallel} runs at a time"


def budget_text(args: argparse.Namespace) -> str:
    """The page's budget line: minutes of training per run and how many ran at a time."""
    return (f"{args.budget_min:g} minutes of wall-clock training per run (one CPU thread each, "
            f"{at_a_time(args.parallel)})")


def page_header(args: argparse.Namespace) -> list[str]:
    """The lines a page starts with: its title (what it compares), then its date, budget and exact command."""
    return [f"# {args.title}", "", f"- **Date**: {args.date}", f"- **Budget**: {budget_text(args)}",
            f"- **Command**: `{args.command}`", ""]


def write_markdown(args: argparse.Namespace, table: dict[str, dict[str, float]], reports: dict[str, dict[str, float]],
                   samples: dict[str, list], figures: list[str], homotopies: tuple[list[str], dict[str, list[str]]],
                   best_vae: str | None, latent_vae: str | None) -> None:
    ranked = sorted(table, key=lambda name: table[name]["test/iw_nll_char"])
    # the VAEs are compared against the strongest language model in the table (no latent: no homotopy table)
    lm_name = next((name for name in ranked if name not in homotopies[1]), None)
    lm = table[lm_name] if lm_name is not None else None
    best = ranked[0]
    lines = [
        *page_header(args),
        f"Generated by `make report` on a {args.machine}. Every experiment trained for the same wall-clock budget "
        f"of **{args.budget_min:g} minutes** (one thread each, {at_a_time(args.parallel)}), seed "
        f"{args.seed}, **one seed per experiment** (no seed was picked among several). The test "
        "numbers use the whole test split, each run's best checkpoint by validation ELBO and K = "
        f"{args.iw_samples} importance samples per poem (the LM's value is its exact NLL). What the latent does, "
        "by greedy decoding (so differences come from z alone): reconstruction of every test poem from its "
        f"posterior mean (characters right position by position, BLEU-2); homotopies between {args.homotopy_pairs} "
        "random pairs of test poems (distinct poems among 7 points, characters that differ between the two endpoint "
        f"decodes; two random human poems differ in ~19 of 20); {args.prior_samples} greedy samples from the prior "
        "(distinct-2, self-BLEU). The LM has no z: one greedy poem stands for all of them.",
        *([f"Rows {', '.join(f'`{n}`' for n in table if n in CHAINS)} spend {PRETRAIN_SHARE:.0%} of the budget "
           "pretraining (the preset their `init_from` names, on the five-character blocks `data=wuyan`) and the rest "
           "fine-tuning on the 五绝: the same CPU minutes in all."] if any(n in CHAINS for n in table) else []),
        "",
        *main_table(table, ranked),
    ]
    lines.append("")
    if lm is not None:
        delta = table[best]["test/iw_nll_char"] - lm["test/iw_nll_char"]
        lines.append(f"**Best by test IW-NLL: `{best}`**" + (
            "." if best == lm_name else f", {abs(delta):.3f} nats/char below the best LM row `{lm_name}` "
            f"(perplexity {table[best]['test/iw_ppl']:.1f} vs {lm['test/iw_ppl']:.1f})."))
        vae_rows = (("Best VAE by test IW-NLL", best_vae), ("Best VAE that uses its latent", latent_vae))
        for label, name in vae_rows if best_vae is not None else ():  # a table of language models only: none
            vae = table[name]
            gap = vae["test/iw_nll_char"] - lm["test/iw_nll_char"]
            lines.append(f"{label}: `{name}`, {gap:+.3f} nats/char against `{lm_name}` (perplexity "
                         f"{vae['test/iw_ppl']:.1f} vs {lm['test/iw_ppl']:.1f}) with KL {vae['test/kl']:.2f} nats "
                         f"and {int(vae.get('test/active_units', 0))} active units.")
        lines.append(f"Targets (test IW-NLL ≤ `{lm_name}`'s, " + ", ".join(label for _, _, label in TARGETS) + "):")
        for name in ranked:
            if name in homotopies[1]:  # the VAEs (each has a homotopy table)
                missed = missed_targets(table[name], lm)
                lines.append(f"- `{name}`: " + ("all met." if not missed else "misses " + ", ".join(missed) + "."))
    lines += ["", "poems/s: optimiser steps × batch size / budget seconds (validation included); fine-tuned rows: "
              "their fine-tuning steps and seconds.", ""]
    lines += ["## Curves", ""] + [f"![{f}](figures/{f})" for f in figures] + [""]
    lines += ["## Poetry metrics", "",
              f"{args.poems} poems per row (top-p 0.9, temperature 0.8; `+rhyme+tone`: 平水韵 rhyme and tone=auto "
              f"masks); the human row is {args.poems} random test-split poems. Novelty counts copies of training "
              "poems and lines.", "",
              "| poems | " + " | ".join(c.replace("_rate", "").replace("_", " ") for c in POETRY_COLUMNS) + " |",
              "|---|" + "---:|" * len(POETRY_COLUMNS)]
    for name, report in reports.items():
        lines.append(f"| {name} | " + " | ".join(fmt(report[c]) for c in POETRY_COLUMNS) + " |")
    lines += ["", "## Sample poems (the first five of each row above, not selected)", ""]
    for name, texts in samples.items():
        lines += [f"**{name}**", ""] + [f"- {t}" for t in texts] + [""]
    lines += homotopy_section(homotopies[1], homotopies[0])
    atomic_write_text(args.out_dir / "results.md", "\n".join(lines) + "\n")


def parse_experiments(values: Sequence[str]) -> list[str]:
    """``["lm,li2019", "bnvae"]`` -> ``["lm", "li2019", "bnvae"]``; each must be a preset in conf/experiment/."""
    names = [name for value in values for name in value.split(",") if name]
    known = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SystemExit(f"error: --experiments {','.join(unknown) or '(none)'}: choose among {', '.join(known)}")
    return list(dict.fromkeys(names))


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def default_name(budget_min: float, day: date) -> str:
    """The page's name when none is given: the day and the budget, e.g. ``2026-12-02_15min``."""
    return f"{day.isoformat()}_{budget_min:g}min"


def page_dir(docs_dir: Path, name: str) -> Path:
    """The folder of the page called ``name``, ``<docs_dir>/results_<name>``, or a one-line error for a name that
    is not a plain folder name."""
    if not NAME.fullmatch(name):
        raise SystemExit(f"error: --name {name!r}: use letters, digits, '.', '_' and '-' only "
                         "(the page goes to docs/results_<name>/)")
    return docs_dir / f"results_{name}"


def relative(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it, else as given (results record no machine
    paths)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def refuse_existing(page: Path) -> None:
    """A one-line error if ``page`` already holds anything (a page, its results.json or figures): a report never
    overwrites one."""
    if page.exists() and (not page.is_dir() or any(page.iterdir())):
        raise SystemExit(f"error: {relative(page)} already exists and a report never overwrites a page: "
                         "name a new one with --name NAME (make report REPORT_NAME=NAME)")


def command_line(argv: Sequence[str]) -> str:
    """The command as it was run, with the script's path relative to the repository."""
    return shlex.join(["python", "scripts/report.py", *argv])


def default_title(budget_min: float, experiments: Sequence[str]) -> str:
    """What a page compares when no --title is given: the budget and the presets."""
    return f"{budget_min:g}-minute runs compared: " + ", ".join(f"`{name}`" for name in experiments)


def index_entry(args: argparse.Namespace) -> str:
    """The page's line in docs/index.md: its title (linked), date and budget."""
    return f"- [{args.title}](results_{args.name}/results.md) — {args.date}; {args.budget_min:g} minutes per run"


def add_to_index(index: Path, entry: str) -> None:
    """Append ``entry`` to the index, whose last section is the list of pages (nothing if there is no index)."""
    if index.exists():
        atomic_write_text(index, index.read_text("utf-8").rstrip("\n") + "\n" + entry + "\n")


def results_record(args: argparse.Namespace, metrics: dict[str, dict[str, float]],
                   reports: dict[str, dict[str, float]], walks: dict[str, list[str]]) -> str:
    """results.json: the arguments (paths relative to the repository), test metrics, poetry metrics, homotopies."""
    recorded = {**vars(args), "out_dir": relative(args.out_dir), "docs_dir": relative(args.docs_dir)}
    return json.dumps({"args": recorded, "test": metrics, "poetry": reports, "homotopies": walks}, indent=2,
                      ensure_ascii=False)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", help="the page's name: it goes to <docs-dir>/results_<name>/ and must not exist "
                                       "yet (default: <YYYY-MM-DD>_<budget>min)")
    parser.add_argument("--title", help="the page's first line, what it compares (default: the budget and presets)")
    parser.add_argument("--docs-dir", type=Path, default=ROOT / "docs", help="where the page's folder and index.md are")
    parser.add_argument("--budget-min", type=number_at_least(0.1), default=15.0, help="minutes of training per run")
    parser.add_argument("--prefix", default="report_")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS),
                        help="presets, comma- or space-separated (conf/experiment/*.yaml)")
    parser.add_argument("--parallel", type=number_at_least(1, int), default=2)
    parser.add_argument("--iw-samples", type=number_at_least(1, int), default=500)
    parser.add_argument("--iw-every", type=number_at_least(1, int), default=3,
                        help="validation IW bound every n-th epoch and at the last (the curves' resolution)")
    parser.add_argument("--homotopy-pairs", type=number_at_least(1, int), default=100)
    parser.add_argument("--prior-samples", type=number_at_least(1, int), default=500)
    parser.add_argument("--poems", type=number_at_least(1, int), default=500)
    parser.add_argument("--seed", type=number_at_least(0, int), default=0)
    parser.add_argument("--machine", default="2-core CPU (no GPU), torch 2.13 CPU build")
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace, argv: Sequence[str], today: date) -> argparse.Namespace:
    """Resolve the page's name, folder, title, date and command; refuse, before anything runs, a page that exists."""
    args.name = args.name or default_name(args.budget_min, today)
    args.out_dir = page_dir(args.docs_dir, args.name)
    refuse_existing(args.out_dir)
    args.experiments = parse_experiments(args.experiments)
    args.title = args.title or default_title(args.budget_min, args.experiments)
    args.date = today.isoformat()
    args.command = command_line(argv)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = prepare(parse_args(argv), argv, date.today())
    figures_dir = args.out_dir / "figures"

    with ThreadPoolExecutor(args.parallel) as pool:
        runs = dict(zip(args.experiments, pool.map(lambda e: train(e, args), args.experiments), strict=True))
        metrics = dict(zip(runs, pool.map(lambda r: evaluate(r, args), runs.values()), strict=True))
    curves = {name: read_csv(run) for name, run in runs.items()}
    for name, run in runs.items():
        share = 1 - PRETRAIN_SHARE if name in CHAINS else 1.0  # a fine-tuned row's own part of the budget
        metrics[name]["poems_per_s"] = training_speed(run, curves[name], args.budget_min * 60 * share)
    vaes = [name for name, run in runs.items() if uses_latent(run)]
    best_vae = min(vaes, key=lambda name: metrics[name]["test/iw_nll_char"], default=None)
    # The latent map and homotopy are only worth drawing for a model that uses its latent (KL >= 1 nat).
    in_use = [name for name in vaes if metrics[name]["test/kl"] >= 1.0] or vaes
    latent_vae = min(in_use, key=lambda name: metrics[name]["test/iw_nll_char"], default=None)
    reports, samples = poetry_rows(runs, args.poems, args.seed)
    pretrained = {name: read_csv(ROOT / "outputs" / f"{args.prefix}{CHAINS[name]}") for name in runs if name in CHAINS}
    refuse_existing(args.out_dir)  # another report may have taken the name while this one trained
    per_minute = plot_quality_per_minute(curves, figures_dir, prefix_curves=pretrained)
    figures = [*plot_curves(curves, figures_dir), *([per_minute] if per_minute else []),
               *([latent_figure(runs[latent_vae], figures_dir)] if latent_vae is not None else [])]
    walks = {name: homotopy_table(runs[name], args.seed) for name in vaes}
    endpoints = next(iter(walks.values()))[0] if walks else ["", ""]
    write_markdown(args, metrics, reports, samples, figures, (endpoints, {n: w for n, (_, w) in walks.items()}),
                   best_vae, latent_vae)
    atomic_write_text(args.out_dir / "results.json",
                      results_record(args, metrics, reports, {n: w for n, (_, w) in walks.items()}))
    add_to_index(args.docs_dir / "index.md", index_entry(args))
    print(f"wrote {relative(args.out_dir / 'results.md')}")


if __name__ == "__main__":
    main()
