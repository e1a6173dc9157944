"""`make report`: train the standard experiments for one budget, evaluate them on the test split, write
docs/results.md with the table, the curves, the latent map, a homotopy and sample poems.

    python scripts/report.py [--budget-min 15] [--prefix report_] [--parallel 2] [--iw-samples 500]

Training runs are resumable (ckpt_path=last): a run whose time budget is spent is not trained again, so a second
`make report` only re-evaluates what changed. Evaluation results are cached next to each checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from poetry_vae.atomic import atomic_write, atomic_write_text
from poetry_vae.checkpoint import LoadedCheckpoint, load_checkpoint
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.generation import DecodeRequest, generate, homotopy, sample_prior
from poetry_vae.metrics.poetry import poetry_report

ROOT = Path(__file__).resolve().parents[1]

EXPERIMENTS = ("lm", "vanilla", "bowman", "cyclical_fb")
DOCS = ROOT / "docs"
FIGURES = DOCS / "figures"
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
    timer = torch.load(last, weights_only=True)["callbacks"].get("Timer", {})
    return timer.get("time_elapsed", {}).get("train", 0.0) >= 0.99 * budget_s


def train(experiment: str, args: argparse.Namespace) -> Path:
    run = ROOT / "outputs" / f"{args.prefix}{experiment}"
    if budget_spent(run, args.budget_min * 60):
        return run  # resuming would still take one more step before Lightning's Timer stops it
    budget = time.strftime("%H:%M:%S", time.gmtime(args.budget_min * 60))
    sh([sys.executable, "-m", "poetry_vae.train", f"experiment={experiment}", f"run_name={run.name}",
        f"trainer.max_time=00:{budget}", "trainer.max_epochs=1000", "torch_threads=1", "test_after_fit=false",
        "trainer.enable_progress_bar=false", "ckpt_path=last", f"seed={args.seed}"], run / "report_train.log")
    return run


def best_checkpoint(run: Path) -> Path:
    best = sorted((run / "checkpoints").glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    return best[-1] if best else run / "checkpoints" / "last.ckpt"


def evaluate(run: Path, args: argparse.Namespace) -> dict[str, float]:
    ckpt = best_checkpoint(run)
    out = run / f"test_iw{args.iw_samples}.json"
    if not out.exists() or out.stat().st_mtime < ckpt.stat().st_mtime:
        sh([sys.executable, "-m", "poetry_vae.evaluate", f"ckpt_path={ckpt}", f"iw_samples={args.iw_samples}",
            "split=test", "torch_threads=1", f"out={out}", f"seed={args.seed}"], run / "report_eval.log")
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
        for label, request in (("", DecodeRequest(strategy="top_p", top_p=0.9, temperature=0.8)),
                               (" +rhyme+tone", DecodeRequest(strategy="top_p", top_p=0.9, temperature=0.8,
                                                              rhyme="pingshui", tone="auto"))):
            generator = torch.Generator().manual_seed(seed)
            z = sample_prior(ckpt.model, n, generator)
            poems = generate(ckpt.model, ckpt.vocab, z, request, generator, num_poems=n)
            reports[name + label] = poetry_report([p.lines for p in poems], train_lines)
            samples[name + label] = [p.text for p in poems[:5]]
    return reports, samples


def plot_curves(curves: dict[str, list[dict[str, str]]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    names = []
    for key, label, fname in (("val/iw_nll_char", "validation IW-NLL per character (K=10)", "val_iw_nll.png"),
                              ("val/kl", "validation KL per poem (nats)", "val_kl.png"),
                              ("train/beta", "β (KL weight)", "beta.png"),
                              ("val/active_units", "active units (of 128)", "active_units.png")):
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for name, rows in curves.items():
            steps, values = series(rows, key)
            if steps:
                ax.plot(steps, values, label=name, marker="." if key.startswith("val") else None)
        ax.set_xlabel("optimiser step")
        ax.set_title(label)
        ax.legend()
        fig.tight_layout()
        atomic_write(FIGURES / fname, functools.partial(fig.savefig, dpi=110))
        plt.close(fig)
        names.append(fname)
    return names


def latent_figure(run: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from poetry_vae.plots import latent_map

    ckpt, datamodule = load_run(run)
    with torch.no_grad():
        mu, _ = ckpt.model.encode(datamodule.tensors["test"]["tokens"])
    fig = latent_map(mu, [p.dynasty for p in datamodule.poems["test"]], f"test-set posterior means ({run.name})")
    atomic_write(FIGURES / "latent_map.png", functools.partial(fig.savefig, dpi=110))
    return "latent_map.png"


def homotopy_table(run: Path) -> list[str]:
    ckpt = load_checkpoint(best_checkpoint(run))
    a = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
    b = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"
    return [p.text for p in homotopy(ckpt.model, ckpt.vocab, a, b, steps=7)]


def fmt(value: float, digits: int = 3) -> str:
    return f"{value:.{digits}f}"


def write_markdown(args: argparse.Namespace, table: dict[str, dict[str, float]], reports: dict[str, dict[str, float]],
                   samples: dict[str, list], figures: list[str], homotopy_rows: list[str], best_vae: str,
                   latent_vae: str) -> None:
    lm = table.get("lm")
    ranked = sorted(table, key=lambda name: table[name]["test/iw_nll_char"])
    best = ranked[0]
    lines = [
        "# Results",
        "",
        f"Generated by `make report` (`python scripts/report.py --budget-min {args.budget_min} --iw-samples "
        f"{args.iw_samples} --seed {args.seed}`) on a {args.machine}. Every experiment trained for the same "
        f"wall-clock budget of **{args.budget_min} minutes** (one thread each, two runs side by side), seed "
        f"{args.seed}, one seed per experiment (no seed was picked among several). The test numbers use the whole "
        "test split, each run's best checkpoint by validation ELBO and K = "
        f"{args.iw_samples} importance samples per poem (the LM's value is its exact NLL).",
        "",
        "| run | steps | poems/s | test IW-NLL / char | IW perplexity | KL / poem | MI | active units | "
        "test ELBO / poem |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in ranked:
        m = table[name]
        lines.append(f"| {name} | {int(m['global_step'])} | {m['poems_per_s']:.0f} | {fmt(m['test/iw_nll_char'])} | "
                     f"{m['test/iw_ppl']:.1f} | {m['test/kl']:.2f} | {m.get('test/mi', 0.0):.2f} | "
                     f"{int(m.get('test/active_units', 0))} | {m['test/elbo']:.1f} |")
    lines.append("")
    if lm is not None:
        delta = table[best]["test/iw_nll_char"] - lm["test/iw_nll_char"]
        lines.append(f"**Best by test IW-NLL: `{best}`**" + (
            "." if best == "lm" else f", {abs(delta):.3f} nats/char below the LM baseline "
            f"(perplexity {table[best]['test/iw_ppl']:.1f} vs {lm['test/iw_ppl']:.1f})."))
        for label, name in (("Best VAE by test IW-NLL", best_vae), ("Best VAE that uses its latent", latent_vae)):
            vae = table[name]
            gap = vae["test/iw_nll_char"] - lm["test/iw_nll_char"]
            lines.append(f"{label}: `{name}`, {gap:+.3f} nats/char against the LM (perplexity "
                         f"{vae['test/iw_ppl']:.1f} vs {lm['test/iw_ppl']:.1f}) with KL {vae['test/kl']:.2f} nats "
                         f"and {int(vae.get('test/active_units', 0))} active units.")
        meets = [name for name in table if name != "lm" and table[name]["test/kl"] >= 3
                 and table[name].get("test/active_units", 0) >= 4
                 and table[name]["test/iw_nll_char"] <= lm["test/iw_nll_char"]]
        lines.append("Target (a VAE no worse than the LM while KL ≥ 3 nats and AU ≥ 4): "
                     + (f"met by {', '.join(meets)}." if meets else "not met by any run in this budget."))
    lines += ["", "poems/s: optimiser steps × batch size / budget seconds (validation included).", ""]
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
    lines += [f"## Homotopy ({latent_vae}, greedy decoding from 7 points between two posterior means)", ""]
    lines += [f"{i}. {t}" for i, t in enumerate(homotopy_rows)] + [""]
    atomic_write_text(DOCS / "results.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=15.0)
    parser.add_argument("--prefix", default="report_")
    parser.add_argument("--experiments", nargs="+", default=list(EXPERIMENTS))
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--iw-samples", type=int, default=500)
    parser.add_argument("--poems", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--machine", default="2-core CPU (no GPU), torch 2.13 CPU build")
    args = parser.parse_args()

    with ThreadPoolExecutor(args.parallel) as pool:
        runs = dict(zip(args.experiments, pool.map(lambda e: train(e, args), args.experiments), strict=True))
        metrics = dict(zip(runs, pool.map(lambda r: evaluate(r, args), runs.values()), strict=True))
    curves = {name: read_csv(run) for name, run in runs.items()}
    for name, run in runs.items():
        metrics[name]["poems_per_s"] = training_speed(run, curves[name], args.budget_min * 60)
    vaes = [name for name in runs if name != "lm"]
    best_vae = min(vaes, key=lambda name: metrics[name]["test/iw_nll_char"])
    # The latent map and homotopy are only worth drawing for a model that uses its latent (KL >= 1 nat).
    in_use = [name for name in vaes if metrics[name]["test/kl"] >= 1.0] or [best_vae]
    latent_vae = min(in_use, key=lambda name: metrics[name]["test/iw_nll_char"])
    reports, samples = poetry_rows(runs, args.poems, args.seed)
    figures = [*plot_curves(curves), latent_figure(runs[latent_vae])]
    write_markdown(args, metrics, reports, samples, figures, homotopy_table(runs[latent_vae]), best_vae, latent_vae)
    atomic_write_text(DOCS / "results.json", json.dumps({"args": vars(args), "test": metrics, "poetry": reports},
                                                         indent=2, ensure_ascii=False))
    print(f"wrote {DOCS / 'results.md'}")


if __name__ == "__main__":
    main()
