"""Measure steering through the latent: for each theme and each way of steering, poems from prior draws moved
towards the theme against unsteered ones — how often a marker appears, how often a judge that never reads the
markers calls the poem themed, diversity, and fluency under the LM reference — and a hard baseline that forces a
marker by a constraint. Writes a page, its JSON and one figure (strength against hit rate and fluency).

    python scripts/steer_report.py --ckpt <vae run or .ckpt> --lm <LM run or .ckpt> [--out docs/steering/<name>.md]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from poetry_vae.atomic import atomic_write, atomic_write_text
from poetry_vae.checkpoint import LoadedCheckpoint, load_checkpoint, why_no_file
from poetry_vae.cli import number_at_least
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.errors import PoetryVAEError
from poetry_vae.generation.decoding import generate, sample_prior
from poetry_vae.generation.request import DecodeRequest
from poetry_vae.generation.steering import (
    DEFAULT_METHOD,
    DEFAULT_STRENGTH,
    Steering,
    Theme,
    latent_bank,
    resolve_theme,
    steering,
)
from poetry_vae.layout import as_written
from poetry_vae.metrics.fluency import nll_per_char
from poetry_vae.metrics.poetry import distinct_n
from poetry_vae.metrics.theme_judge import ThemeJudge
from poetry_vae.runs import best_checkpoint

SAMPLING = {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8}
CONSTRAINED = {**SAMPLING, "rhyme": "pingshui", "tone": "auto"}
STRENGTHS = {"exemplars": (0.0, 0.5, 1.0, 1.5, 2.0), "shell": (3.0, 5.0, 8.0), "mean_diff": (2.0, 4.0, 6.0),
             "neighbors": (0.9, 1.0)}
THEMES = "月秋春别酒山"


def checkpoint(path: str, option: str) -> Path:
    """A run directory's best checkpoint, or the file given."""
    given = Path(path)
    if given.is_dir():
        return best_checkpoint(given)
    if not given.is_file():
        raise PoetryVAEError(f"{option} {path} {why_no_file(given)}: give a run directory or a .ckpt/.pt file")
    return given


def models(ckpt: str, lm: str) -> tuple[Path, Path, LoadedCheckpoint, LoadedCheckpoint]:
    """The latent model and the LM reference that scores its poems, or a one-line error: a file that is no
    checkpoint, the two the wrong way round, or an LM of another vocabulary."""
    vae_path, lm_path = checkpoint(ckpt, "--ckpt"), checkpoint(lm, "--lm")
    vae, reference = load_checkpoint(vae_path), load_checkpoint(lm_path)
    if not vae.model.cfg.use_latent:
        raise PoetryVAEError(f"--ckpt {ckpt} is a language model: steering needs a latent code; give a VAE")
    if reference.model.cfg.use_latent:
        raise PoetryVAEError(f"--lm {lm} is a VAE: give the language model that scores fluency (its LM reference, "
                             "e.g. poetry_vae/resources/poet_lm.pt)")
    if reference.vocab.tokens != vae.vocab.tokens:
        raise PoetryVAEError(f"--lm {lm} has another vocabulary than --ckpt {ckpt}: give the VAE recipe's own LM "
                             "reference, trained on the same corpus")
    return vae_path, lm_path, vae, reference


def decode(ckpt: LoadedCheckpoint, n: int, request: dict, seed: int, steer: Steering | None = None) -> list[str]:
    generator = torch.Generator().manual_seed(seed)
    z = sample_prior(ckpt.model, n, generator)
    if steer is not None:
        z = steer.move(z, generator)
    return ["".join(poem.lines) for poem in generate(ckpt.model, ckpt.vocab, z, DecodeRequest(**request), generator,
                                                     num_poems=n)]


def hard_baseline(ckpt: LoadedCheckpoint, theme: Theme, n: int, seed: int) -> list[str]:
    """Unsteered prior draws with one marker forced by a constraint (``include``): the way to get a marker in
    every poem without a latent."""
    return decode(ckpt, n, {**SAMPLING, "include": theme.markers}, seed)


def measure(texts: list[str], theme: Theme, judge: ThemeJudge, lm: LoadedCheckpoint,
            known_lines: set[str]) -> dict[str, float]:
    lines = [[text[i : i + 5] for i in range(0, len(text), 5)] for text in texts]
    return {"hit": sum(theme.marks(t) for t in texts) / len(texts), "judge": float(judge.judge(texts).mean()),
            "distinct_2": distinct_n(lines, 2), "lm_nll": nll_per_char(lm.model, lm.vocab, texts),
            "copied": sum(line in known_lines for poem in lines for line in poem) / sum(map(len, lines))}


def steering_cost(ckpt: LoadedCheckpoint, theme: Theme, n: int, seed: int, repeats: int = 3) -> dict[str, float]:
    """Seconds to write ``n`` poems unsteered and steered (the bank read from its cache, the direction computed),
    side by side, best of ``repeats``."""
    plain, steered = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        decode(ckpt, n, SAMPLING, seed)
        plain.append(time.perf_counter() - start)
        start = time.perf_counter()
        decode(ckpt, n, SAMPLING, seed, steering(latent_bank(ckpt), theme))
        steered.append(time.perf_counter() - start)
    return {"unsteered_s": min(plain), "steered_s": min(steered), "ratio": min(steered) / min(plain)}


def figure(rows: list[dict], base: dict[str, dict], out: Path) -> None:
    """Strength against hit rate and fluency for the methods measured in prior standard deviations, and the
    trade-off every method faces: hit rate against distinct-2."""
    fig, (hit_ax, nll_ax, frontier_ax) = plt.subplots(1, 3, figsize=(15, 4.2))
    for method, style in (("exemplars", "o-"), ("shell", "s-"), ("mean_diff", "^--"), ("neighbors", "d:")):
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        strengths = sorted({r["strength"] for r in mine})
        means = {key: [statistics.mean(r[key] for r in mine if r["strength"] == s) for s in strengths]
                 for key in ("hit", "lm_nll", "distinct_2")}
        label = f"{method} (mean of {len({r['theme'] for r in mine})} themes)"
        frontier_ax.plot(means["distinct_2"], means["hit"], style, label=label)
        if method == "neighbors":  # its strength is a mixing weight, not standard deviations
            continue
        for ax, key in ((hit_ax, "hit"), (nll_ax, "lm_nll")):
            ax.plot(strengths, means[key], style, label=label)
    base_d2 = statistics.mean(b["distinct_2"] for b in base.values())
    frontier_ax.axvline(0.9 * base_d2, color="red", ls=":", label="unsteered distinct-2 − 10%")
    frontier_ax.axhline(0.6, color="grey", ls=":", label="hit 0.6")
    frontier_ax.set(xlabel="distinct-2", ylabel="marker hit rate", ylim=(0, 1))
    hit_ax.axhline(statistics.mean(b["hit"] for b in base.values()), color="grey", ls=":", label="unsteered")
    nll_ax.axhline(statistics.mean(b["lm_nll"] for b in base.values()), color="grey", ls=":", label="unsteered")
    nll_ax.axhline(statistics.mean(b["lm_nll"] for b in base.values()) * 1.05, color="red", ls=":",
                   label="unsteered + 5%")
    hit_ax.set(xlabel="strength", ylabel="marker hit rate", ylim=(0, 1))
    nll_ax.set(xlabel="strength", ylabel="LM reference NLL / char (nats)")
    for ax in (hit_ax, nll_ax, frontier_ax):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="the latent model: a run directory or a .ckpt/.pt")
    parser.add_argument("--lm", required=True, help="the LM reference that scores fluency")
    parser.add_argument("--themes", default=THEMES)
    parser.add_argument("--n", type=number_at_least(1, int), default=500)
    parser.add_argument("--seed", type=number_at_least(0, int), default=0)
    parser.add_argument("--out", default=f"docs/steering/{time.strftime('%Y-%m-%d')}.md")
    parser.add_argument("--command", default="make steer-report", help="the command named on the page")
    parser.add_argument("--cost-poems", type=number_at_least(1, int), default=2000,
                        help="poems timed for the cost of steering")
    args = parser.parse_args()
    if Path(args.out).exists():
        parser.exit(2, f"error: {args.out} exists: pass --out <a new page> (a report never overwrites another)\n")
    torch.set_num_threads(1)

    try:
        vae_path, lm_path, vae, lm = models(args.ckpt, args.lm)
    except PoetryVAEError as error:
        parser.exit(2, f"error: {error}\n")
    data = QuatrainDataModule.for_checkpoint(vae.data_hparams, vae.vocab, str(vae_path))
    train = [p.text for p in data.poems["train"]]
    test = [p.text for p in data.poems["test"]]
    bank = latent_bank(vae)
    known_lines = {text[i : i + 5] for text in [*bank.texts, *train] for i in range(0, len(text), 5)}
    unsteered = decode(vae, args.n, SAMPLING, args.seed)

    rows, base, judges, examples, hard, constraint_checks = [], {}, {}, {}, {}, {}
    for name in args.themes:
        theme = resolve_theme(name, vae.vocab)
        # trained on the bank's poems (the pretraining blocks too, whichever stage the checkpoint is): the same judge
        # for a pretrained and a fine-tuned checkpoint of one model
        judge = ThemeJudge.fit(theme, random.Random(args.seed).sample(bank.texts, min(len(bank.texts), 50_000)))
        judges[name] = judge.accuracy(test)
        base[name] = measure(unsteered, theme, judge, lm, known_lines)
        for method, strengths in STRENGTHS.items():
            for strength in strengths:
                steer = steering(bank, theme, method, strength)
                texts = decode(vae, args.n, SAMPLING, args.seed + 1, steer)
                rows.append({"theme": name, "method": method, "strength": strength,
                             **measure(texts, theme, judge, lm, known_lines)})
                if strength == DEFAULT_STRENGTH[method]:
                    examples.setdefault(name, {})[method] = texts[:10]
        forced = hard_baseline(vae, theme, args.n, args.seed + 2)
        hard[name] = measure(forced, theme, judge, lm, known_lines)
        default = steering(bank, theme)
        generator = torch.Generator().manual_seed(args.seed + 3)
        poems = generate(vae.model, vae.vocab, default.move(sample_prior(vae.model, args.n, generator), generator),
                         DecodeRequest(**CONSTRAINED), generator, num_poems=args.n)
        constraint_checks[name] = sum(all(p.constraints.values()) for p in poems) / len(poems)
        print(f"{name}: judge balanced accuracy {judges[name]['balanced_accuracy']:.3f}; unsteered hit "
              f"{base[name]['hit']:.3f}", flush=True)

    cost = steering_cost(vae, resolve_theme(args.themes[0], vae.vocab), args.cost_poems, args.seed)
    out = Path(args.out)
    figure_path = out.with_suffix(".png")
    figure(rows, base, figure_path)
    result = {"checkpoint": str(vae_path), "lm": str(lm_path), "n": args.n, "seed": args.seed,
              "sampling": SAMPLING, "rows": rows, "unsteered": base, "hard": hard, "judges": judges,
              "constraints_hold": constraint_checks, "cost": cost, "cost_poems": args.cost_poems,
              "default_method": DEFAULT_METHOD, "defaults": DEFAULT_STRENGTH, "bank_size": len(bank.texts)}
    atomic_write_text(out.with_suffix(".json"), json.dumps(result, ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(out, page(result, examples, unsteered, figure_path.name, args.command))
    print(f"wrote {out}, {out.with_suffix('.json')} and {figure_path}")


def measured_row(theme: str, way: str, strength: str, m: dict) -> str:
    return (f"| {theme} | {way} | {strength} | {m['hit']:.3f} | {m['judge']:.3f} | {m['distinct_2']:.3f} | "
            f"{m['lm_nll']:.3f} | {m['copied']:.3f} |")


def page(result: dict, examples: dict, unsteered: list[str], figure_name: str, command: str) -> str:
    rows, base, hard, judges = result["rows"], result["unsteered"], result["hard"], result["judges"]
    themes = list(base)
    title = f"# Steering through the latent: {len(themes)} themes, {result['n']} poems each"
    lines = [f"{title} ({time.strftime('%Y-%m-%d')})",
             "", f"`{command}` — checkpoint `{result['checkpoint']}`, fluency scored by `{result['lm']}`; "
             f"top-p {SAMPLING['top_p']}, T {SAMPLING['temperature']}; seed {result['seed']} (one seed). "
             f"Theme directions from {result['bank_size']:,} training poems' posterior means.", "",
             "## The judge (markers removed from what it reads; test split)", "",
             "| theme | markers | themed share of test poems | accuracy | balanced accuracy |",
             "|---|---|---:|---:|---:|"]
    for name in themes:
        j = judges[name]
        lines.append(f"| {name} | {resolve_theme(name).markers} | {j['themed_share']:.3f} | {j['accuracy']:.3f} | "
                     f"{j['balanced_accuracy']:.3f} |")
    lines += ["", "## Per theme and method", "",
              "hit = a marker anywhere in the poem; judge = the judge calls it themed; LM NLL = nats per character "
              "under the LM reference (lower is more fluent); copied = share of lines found verbatim in the "
              "training poems.", "",
              "| theme | method | strength | hit | judge | distinct-2 | LM NLL/char | copied |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name in themes:
        lines.append(measured_row(name, "unsteered", "—", base[name]))
        lines += [measured_row(name, r["method"], f"{r['strength']:g}", r) for r in rows if r["theme"] == name]
        lines.append(measured_row(name, "forced marker (include=)", "—", hard[name]))
    lines += ["", f"![strength against hit rate and fluency]({figure_name})", ""]
    cost = result["cost"]
    lines += [f"Steering cost: {cost['steered_s']:.2f} s against {cost['unsteered_s']:.2f} s for "
              f"{result['cost_poems']:,} poems "
              f"(×{cost['ratio']:.3f}, bank cached; best of 3, side by side). With `rhyme=pingshui tone=auto` on top "
              "of the default steering, poems meeting every constraint: "
              + ", ".join(f"{k} {v:.3f}" for k, v in result["constraints_hold"].items()) + ".", ""]
    lines += ["## Ten unselected poems", ""]
    for name in list(examples)[:3]:
        method = result["default_method"]
        lines += [f"**{name}**, steered (`{method}`, default strength) | unsteered", "", "| steered | unsteered |",
                  "|---|---|"]
        lines += [f"| {as_written(s)} | {as_written(u)} |"
                  for s, u in zip(examples[name][method], unsteered[:10], strict=True)]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
