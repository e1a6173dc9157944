"""Write notebooks/sample_checkpoint.ipynb from the cells below (kept as code so reviews see plain diffs)."""

from __future__ import annotations

from pathlib import Path

import nbformat

OUT = Path(__file__).resolve().parents[1] / "notebooks" / "sample_checkpoint.ipynb"

CELLS = [
    ("md", """# Sampling from a poetry_vae checkpoint

Load a checkpoint written by `python -m poetry_vae.train`, write poems from the prior (free and under rhyme /
tone / acrostic constraints), reconstruct and interpolate real poems, map the test set's latent codes and
compare poetry metrics with the human test split.

The checkpoint is a parameter: `CKPT_PATH` below, or the `POETRY_VAE_CKPT` environment variable; by default
the one `make train` writes (`outputs/make_train/checkpoints/last.ckpt`), else the newest
`outputs/*/checkpoints/last.ckpt`."""),
    ("code", """import os
import random
from pathlib import Path

import torch

from poetry_vae.checkpoint import load_checkpoint
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.generation import DecodeRequest, generate, homotopy, nearest, reconstruct, sample_prior
from poetry_vae.metrics.poetry import poetry_report
from poetry_vae.plots import latent_map

CKPT_PATH = None  # parameter: a checkpoint path, or None for the default below

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
    ("md", "## Reconstruction and Bowman's homotopy (needs a VAE checkpoint)"),
    ("code", """a = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
b = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
if model.cfg.use_latent:
    show(reconstruct(model, vocab, [a, b]))
    print()
    show(homotopy(model, vocab, a, b, steps=7))"""),
    ("md", "## The latent map: test-set posterior means, coloured by dynasty; nearest training poems"),
    ("code", """datamodule = QuatrainDataModule(**ckpt.data_hparams)  # the checkpoint's own split and vocabulary
datamodule.prepare()
test, train = datamodule.poems["test"], datamodule.poems["train"]


@torch.no_grad()
def posterior_means(poems):  # rare characters become <unk>, as in training
    return model.encode(torch.tensor([vocab.encode(p.text) for p in poems]))[0]


if model.cfg.use_latent:
    mu_test = posterior_means(test)
    fig = latent_map(mu_test, [p.dynasty for p in test])
    mu_train = posterior_means(train)
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
