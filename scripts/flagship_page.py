"""Write the flagship's page: its test row beside the LM reference of the same data and time, the poetry of its
unconstrained and constrained samples beside human poems, the learned-rhyme curve, and unselected examples.

    python scripts/flagship_page.py --vae outputs/poet_finetune --lm outputs/poet_lm_finetune \\
        --curves outputs/poet outputs/poet_finetune outputs/poet_lm outputs/poet_lm_finetune --out docs/flagship.md
    python scripts/flagship_page.py --vae outputs/poet_qijue_refit --lm outputs/poet_qijue_lm \\
        --names poet_qijue poet_qijue_lm --curves outputs/poet_qijue outputs/poet_qijue_lm --out docs/flagship_qijue.md

    python scripts/flagship_page.py --vae poetry_vae/resources/poet.pt --lm <the LM reference's checkpoint> \\
        --figure flagship.png --notes <the hand-written part> --out docs/flagship.md

Each run directory's best checkpoint (by saved validation ELBO), or a checkpoint file as it is, is evaluated on its
corpus's test split (the 五绝 or the 七绝, read from the checkpoint) with K = 500 (``python -m poetry_vae.evaluate``,
run as a command so the numbers are the command's own). ``--figure`` names a learned-rhyme figure already beside
the page (drawn from runs no longer at hand) instead of ``--curves``.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from poetry_vae.atomic import atomic_write, atomic_write_text
from poetry_vae.checkpoint import LoadedCheckpoint, load_checkpoint
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.generation.decoding import generate, sample_prior
from poetry_vae.generation.request import DecodeRequest
from poetry_vae.layout import render
from poetry_vae.metrics.latent_use import homotopy_pairs, homotopy_walks, posterior_means
from poetry_vae.metrics.poetry import poetry_report
from poetry_vae.runs import best_checkpoint

SAMPLING = {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "precision": "fp32"}
CONSTRAINED = {**SAMPLING, "rhyme": "pingshui", "tone": "auto"}
LATENT_ROW = ("test/iw_nll_char", "test/iw_ppl", "test/kl", "test/active_units", "test/mi", "test/recon_char_acc",
              "test/recon_bleu2", "test/homotopy_distinct", "test/homotopy_endpoint_diff", "test/prior_distinct_2")


def evaluate(ckpt: Path, iw_samples: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "metrics.json"
        subprocess.run([sys.executable, "-m", "poetry_vae.evaluate", f"ckpt_path={ckpt}", f"iw_samples={iw_samples}",
                        f"out={out}"], check=True, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text(encoding="utf-8"))["metrics"]


def load(ckpt: Path) -> tuple[LoadedCheckpoint, QuatrainDataModule]:
    loaded = load_checkpoint(ckpt)
    return loaded, QuatrainDataModule.for_checkpoint(loaded.data_hparams, loaded.vocab, f"checkpoint {ckpt}")


def sample(loaded: LoadedCheckpoint, n: int, request: dict, seed: int, verse: str | None = None) -> list[list[str]]:
    """``n`` poems from the prior (``verse``: from that verse's half of a prior fitted by verse), in the
    checkpoint's own form (5- or 7-character lines)."""
    generator = torch.Generator().manual_seed(seed)
    z = sample_prior(loaded.model, n, generator, verse)
    form = DecodeRequest(**request, **loaded.form)
    return [p.lines for p in generate(loaded.model, loaded.vocab, z, form, generator, num_poems=n)]


def poetry_table(runs: dict[str, Path], n: int, seed: int) -> tuple[dict[str, dict[str, float]], dict[str, list]]:
    rows: dict[str, dict[str, float]] = {}
    examples: dict[str, list] = {}
    for name, ckpt in runs.items():
        loaded, datamodule = load(ckpt)
        width = loaded.form["line_length"]
        train = [list(p.lines) for p in datamodule.poems["train"]]
        if "human test split" not in rows:
            human = random.Random(seed).sample([list(p.lines) for p in datamodule.poems["test"]], n)
            rows["human test split"] = poetry_report(human, train, line_length=width)
        for label, request in (("", SAMPLING), (" +rhyme+tone", CONSTRAINED)):
            poems = sample(loaded, n, request, seed)
            rows[name + label] = poetry_report(poems, train, line_length=width)
            examples[name + label] = [render(p) for p in poems[:10]]
    return rows, examples


def reconstructions(ckpt: Path, count: int, seed: int) -> list[tuple[str, str, int]]:
    """``count`` test poems drawn with ``random.Random(seed)`` among those with every character in the vocabulary
    (unselected otherwise), each with its greedy decode from the posterior mean and the characters in place."""
    loaded, datamodule = load(ckpt)
    known = [list(p.lines) for p in datamodule.poems["test"] if all(c in loaded.vocab for c in "".join(p.lines))]
    chosen = random.Random(seed).sample(known, min(count, len(known)))
    with torch.no_grad():
        mu = posterior_means(loaded.model, loaded.vocab, chosen)
    request = DecodeRequest(strategy="greedy", line_length=len(chosen[0][0]), precision="fp32")
    decoded = generate(loaded.model, loaded.vocab, mu, request)
    rows = []
    for poem, out in zip(chosen, decoded, strict=True):
        same = sum(a == b for a, b in zip("".join(poem), "".join(out.lines), strict=True))
        rows.append((render(poem), out.text, same))
    return rows


def homotopies(ckpt: Path, count: int, seed: int, steps: int = 7) -> list[list[str]]:
    loaded, datamodule = load(ckpt)
    poems = [list(p.lines) for p in datamodule.poems["test"]]
    width = len(poems[0][0])
    walks = homotopy_walks(loaded.model, loaded.vocab, poems, pairs=count, steps=steps, seed=seed)
    pairs = homotopy_pairs(len(poems), count, seed)
    out = []
    for (a, b), walk in zip(pairs, walks, strict=True):
        lines = [render([t[i:i + width] for i in range(0, len(t), width)]) for t in walk]
        out.append([render(poems[a]), *lines, render(poems[b])])
    return out


def read_curve(run: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted((run / "csv").glob("version_*/metrics.csv")):
        with open(path, encoding="utf-8") as handle:
            rows += [r for r in csv.DictReader(handle) if r.get("val/rhyme_rate")]
    return rows


def rhyme_figure(curves: dict[str, list[Path]], out: Path) -> None:
    """Learned rhyme along training: each model's pretraining then fine-tuning, on one step axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, runs in curves.items():
        offset, steps, rate, mass = 0, [], [], []
        for run in runs:
            rows = read_curve(run)
            steps += [offset + int(r["step"]) for r in rows]
            rate += [float(r["val/rhyme_rate"]) for r in rows]
            mass += [float(r["val/rhyme_mass"]) for r in rows]
            offset = steps[-1] if steps else offset
        axes[0].plot(steps, rate, label=name)
        axes[1].plot(steps, mass, label=name)
    axes[0].axhline(0.85, color="grey", linestyle="--", label="human quatrains (this checker)")
    axes[0].set(title="unconstrained samples that rhyme (lines 2 & 4)", xlabel="step", ylim=(0, 1))
    axes[1].set(title="probability on a rhyming last character", xlabel="step", ylim=(0, 1))
    for ax in axes:
        ax.legend(loc="lower right")
    fig.tight_layout()
    atomic_write(out, functools.partial(fig.savefig, dpi=100))


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(result: dict, figure: str | None) -> str:
    form, chars, k = result["form"], result["chars"], result["iw_samples"]
    head = ["run", "step", "IW-NLL/char", "ppl", "KL", "AU", "MI", "recon", "BLEU-2", "homotopy",
            f"endpoints/{chars}", "prior distinct-2"]
    lines = [f"## Test split ({form}, K = {k}, best checkpoint by validation ELBO)", "",
             "| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name, row in result["test"].items():
        values = [row.get(k) for k in LATENT_ROW]
        cells = [f"{row['global_step']:,.0f}", _fmt(values[0]), _fmt(values[1], 1), _fmt(values[2], 1),
                 _fmt(values[3], 0), _fmt(values[4], 2), f"{100 * (values[5] or 0):.1f}%", _fmt(values[6]),
                 _fmt(values[7], 2), _fmt(values[8], 1), _fmt(values[9])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    poetry_head = ["poems", "rhyme", "tone fit", "distinct-2", "self-BLEU", "copied lines"]
    lines += ["", "## Poems from the prior (500 each, top-p 0.9, T 0.8; constrained: `rhyme=pingshui tone=auto`)", "",
              "| " + " | ".join(poetry_head) + " |", "|---" + "|---:" * (len(poetry_head) - 1) + "|"]
    for name, row in result["poetry"].items():
        cells = [_fmt(row["rhyme_rate"]), _fmt(row["tone_fit_rate"]), _fmt(row["distinct_2"]),
                 _fmt(row["self_bleu"]), f"{100 * row.get('copied_line_rate', 0):.1f}%"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if figure:
        lines += ["", "## Learned rhyme along training (each model's stages on one step axis)", "",
                  f"![learned rhyme]({figure})"]
    for name, poems in result["examples"].items():
        lines += ["", f"## Ten unselected poems: {name}", ""] + [f"    {p}" for p in poems]
    lines += ["", "## Ten reconstructions (greedy from the posterior mean; characters in place)", ""]
    lines += [f"    {a} → {b} ({same}/{chars})" for a, b, same in result["reconstructions"]]
    lines += ["", "## Two homotopies (greedy, 7 steps between two test poems' posterior means)", ""]
    for walk in result["homotopies"]:
        lines += [f"    {p}" for p in walk] + [""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", type=Path, required=True)
    parser.add_argument("--lm", type=Path, required=True)
    parser.add_argument("--curves", type=Path, nargs="*", default=[])
    parser.add_argument("--figure", help="an existing learned-rhyme figure beside the page (instead of --curves)")
    parser.add_argument("--out", type=Path, default=Path("docs/flagship.md"))
    parser.add_argument("--notes", type=Path, help="markdown written above the generated sections")
    parser.add_argument("--iw-samples", type=int, default=500)
    parser.add_argument("--poems", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--names", nargs=2, default=["poet", "poet_lm"], help="the VAE's and the LM's row names")
    args = parser.parse_args()
    vae, lm = f"{args.names[0]} (VAE)", f"{args.names[1]} (LM reference)"
    ckpts = {name: path if path.is_file() else best_checkpoint(path) for name, path in ((vae, args.vae), (lm, args.lm))}
    width = load_checkpoint(ckpts[vae]).form["line_length"]
    rows = {name: evaluate(ckpt, args.iw_samples) for name, ckpt in ckpts.items()}
    poetry, examples = poetry_table(ckpts, args.poems, args.seed)
    result = {
        "checkpoints": {name: str(path) for name, path in ckpts.items()},
        "form": {5: "五绝", 7: "七绝"}[width], "chars": 4 * width, "iw_samples": args.iw_samples,
        "test": {name: {k: rows[name].get(k) for k in LATENT_ROW} | {"global_step": rows[name]["global_step"]}
                 for name in rows},
        "poetry": poetry,
        "examples": examples,
        "reconstructions": reconstructions(ckpts[vae], 10, args.seed),
        "homotopies": homotopies(ckpts[vae], 2, args.seed),
    }
    figure = args.out.with_suffix(".png")
    if args.curves:
        groups: dict[str, list[Path]] = {}
        for run in args.curves:
            groups.setdefault("LM reference" if "_lm" in run.name else "VAE", []).append(run)
        rhyme_figure(groups, figure)
    notes = args.notes.read_text(encoding="utf-8") if args.notes else ""
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(result, ensure_ascii=False, indent=1))
    atomic_write_text(args.out, notes + markdown(result, figure.name if args.curves else args.figure))
    print(f"wrote {args.out} and {args.out.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
