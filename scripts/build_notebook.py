"""Write notebooks/sample_checkpoint.ipynb from the cells below (kept as code so reviews see plain diffs)."""

from __future__ import annotations

from pathlib import Path

import nbformat

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "sample_checkpoint.ipynb"

CELLS = [
    ("md", """# Sampling from a poetry_vae checkpoint

Load a checkpoint written by `python -m poetry_vae.train`, write poems from the prior (free and under rhyme /
tone / acrostic constraints), measure what the latent code does (reconstruction of test poems, a homotopy between
two poems you pick, the same measures `python -m poetry_vae.evaluate` reports), map the test set's latent codes
and compare poetry metrics with the human test split.

The checkpoint is a parameter: `CKPT_PATH` below, or the `POETRY_VAE_CKPT` environment variable; by default
the one `make train` writes (`outputs/make_train/checkpoints/last.ckpt`), else the newest
`outputs/*/checkpoints/last.ckpt`."""),
    ("code", """import os
import random
from pathlib import Path

import torch

from poetry_vae.checkpoint import load_checkpoint
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.generation import DecodeRequest, generate, homotopy, nearest, sample_prior
from poetry_vae.metrics.latent_use import (
    char_accuracy,
    greedy_decode,
    homotopy_stats,
    poem_chars,
    posterior_means,
    prior_diversity,
)
from poetry_vae.metrics.poetry import poetry_report, sentence_bleu
from poetry_vae.plots import latent_map

# ---- parameters ----
CKPT_PATH = None  # a checkpoint path, or None for the default below
POEM_A = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"  # the homotopy's two endpoints (any 5x4 poems)
POEM_B = "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"
HOMOTOPY_STEPS = 7
N_RECONSTRUCT = 8  # test poems in the reconstruction table

root = Path.cwd() if (Path.cwd() / "conf").is_dir() else Path.cwd().parent
default = root / "outputs" / "make_train" / "checkpoints" / "last.ckpt"
found = sorted(root.glob("outputs/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
ckpt_path = CKPT_PATH or os.environ.get("POETRY_VAE_CKPT") or str(default if default.exists() else found[-1])
ckpt = load_checkpoint(ckpt_path)
model, vocab = ckpt.model, ckpt.vocab
print(f"{ckpt_path}: step {ckpt.global_step}, {len(vocab)} characters, latent {model.cfg.latent_dim}-d, "
      f"{'VAE' if model.cfg.use_latent else 'LM baseline'}")
generator = torch.Generator().manual_seed(0)


def show(poems):
    for p in poems:
        held = " ".join(k for k, ok in p.constraints.items() if ok)
        print(f"{p.text}  log p {p.log_prob:7.1f}  {held} {p.pattern or ''}")"""),
    ("md", "## Prior samples with each decoding strategy, then rhyming (平水韵) in a standard tone pattern"),
    ("code", """n = 4
z = sample_prior(model, n, generator)
for strategy in ("greedy", "sample", "top_k", "top_p", "beam"):
    print(f"-- {strategy}")
    show(generate(model, vocab, z, DecodeRequest(strategy=strategy, temperature=0.8), generator, num_poems=n))
print("-- top_p + rhyme=pingshui + tone=auto")
show(generate(model, vocab, z, DecodeRequest(strategy="top_p", temperature=0.8, rhyme="pingshui", tone="auto"),
              generator, num_poems=n))"""),
    ("md", "## Acrostic (藏头) and first-line continuation, with beam search"),
    ("code", """z = sample_prior(model, 3, generator)
show(generate(model, vocab, z, DecodeRequest(strategy="beam", beam_size=5, acrostic="春夏秋冬", rhyme="pingshui"),
              num_poems=3))
show(generate(model, vocab, z, DecodeRequest(strategy="top_p", first_line="白日依山尽", tone="auto",
                                             rhyme="pingshui"), generator, num_poems=3))"""),
    ("md", """## What the latent does

Greedy decoding throughout, so every difference between outputs comes from z. First a reconstruction table: test
poems decoded from their posterior means, with the characters right position by position (the LM baseline has no
z: its one greedy poem stands for every reconstruction)."""),
    ("code", """datamodule = QuatrainDataModule(**ckpt.data_hparams)  # the checkpoint's own split and vocabulary
datamodule.prepare()
test, train = datamodule.poems["test"], datamodule.poems["train"]

inputs = [poem_chars(p.lines) for p in random.Random(0).sample(test, min(N_RECONSTRUCT, len(test)))]
z = posterior_means(model, vocab, inputs) if model.cfg.use_latent else None
outputs = [poem_chars(p) for p in (greedy_decode(model, vocab, z) if z is not None
                                   else greedy_decode(model, vocab, None) * len(inputs))]
print(f"{'input':<22}{'output':<22}chars right  BLEU-2")
for x, y in zip(inputs, outputs):
    right = sum(a == b for a, b in zip(x, y))
    print(f"{x:<22}{y:<22}{right:>5}/{len(x)}    {sentence_bleu(y, [x], max_n=2):.2f}")
print(f"chars right over the table: {char_accuracy(outputs, inputs):.1%}")"""),
    ("md", "A homotopy between the two poems set in the parameters cell (`POEM_A`, `POEM_B`), then the summary "
           "measures on a sample of the test split (`python -m poetry_vae.evaluate` computes them on all of it)."),
    ("code", """if model.cfg.use_latent:
    walk = homotopy(model, vocab, POEM_A, POEM_B, steps=HOMOTOPY_STEPS)
    for i, p in enumerate(walk):
        print(f"{i}  {p.text}")
    print(f"{len({p.text for p in walk})} distinct poems of {len(walk)}; the endpoint decodes differ in "
          f"{sum(a != b for a, b in zip(poem_chars(walk[0].lines), poem_chars(walk[-1].lines)))} of 20 characters")
sample = [list(p.lines) for p in test[:200]]
print(homotopy_stats(model, vocab, sample, pairs=20, steps=HOMOTOPY_STEPS))
print(prior_diversity(model, vocab, n=100))"""),
    ("md", "## The latent map: test-set posterior means, coloured by dynasty; nearest training poems"),
    ("code", """if model.cfg.use_latent:  # rare characters become <unk>, as in training
    mu_test = posterior_means(model, vocab, [p.lines for p in test])
    fig = latent_map(mu_test, [p.dynasty for p in test])
    mu_train = posterior_means(model, vocab, [p.lines for p in train])
    for i in nearest(sample_prior(model, 1, generator)[0], mu_train, k=3).tolist():
        print("nearest training poem:", "，".join(train[i].lines))"""),
    ("md", "## Poetry metrics beside the human test split (same number of poems)"),
    ("code", """n = min(200, len(test))
z = sample_prior(model, n, generator)
ours = generate(model, vocab, z, DecodeRequest(strategy="top_p", temperature=0.8), generator, num_poems=n)
human = random.Random(0).sample([list(p.lines) for p in test], n)
train_lines = [list(p.lines) for p in train]
for label, poems in (("generated", [p.lines for p in ours]), ("human", human)):
    report = poetry_report(poems, train_lines)
    print(f"{label:>9}: " + ", ".join(f"{k} {v:.3f}" for k, v in report.items()))"""),
]


def main() -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
                for kind, src in CELLS]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
