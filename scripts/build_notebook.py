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

Everything you may change is in the parameters cell below (papermill can set it: `papermill -p CKPT_PATH ...`):
the checkpoint (`CKPT_PATH`, else the `POETRY_VAE_CKPT` environment variable: a `.ckpt` file or a run dir, whose
`checkpoints/last.ckpt` is opened, or a shipped name such as `poet_qijue`; with neither, the shipped `poet`, so it
runs before any training) and the two poems to interpolate between. Works for 五绝 and 七绝 checkpoints alike (the
form comes from the checkpoint)."""),
    ("code", """# parameters (papermill-style: this cell is tagged `parameters`)
CKPT_PATH = None  # a checkpoint, a run dir or a shipped name (poet_qijue), or None: $POETRY_VAE_CKPT, else poet
POEM_A = None  # the homotopy's two endpoints (poems in the checkpoint's form); None: two test poems
POEM_B = None
HOMOTOPY_STEPS = 7
N_RECONSTRUCT = 8  # test poems in the reconstruction table
THEME = "月"  # steering: a shipped theme (月 秋 春 别 酒 山 雪 花 雨 江) or marker characters
STRENGTHS = (None, 0.0, 1.0, 3.0)  # None = unsteered; else exemplars pushed this many prior std devs further
ANALOGY = None  # three poems [a, b, c]: decode z_b - z_a + z_c; None: three test poems""", ["parameters"]),
    ("code", """import os
import random
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from poetry_vae.checkpoint import load_checkpoint, resolve_checkpoint
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.errors import PoetryVAEError
from poetry_vae.layout import render
from poetry_vae.generation import DecodeRequest, generate, homotopy, nearest, sample_prior
from poetry_vae.generation.latent_ops import encode_texts
from poetry_vae.metrics.latent_use import (
    char_accuracy,
    greedy_decode,
    homotopy_stats,
    poem_chars,
    posterior_means,
    prior_diversity,
)
from poetry_vae.metrics.poetry import poetry_report, sentence_bleu
from poetry_vae.plots import latent_map, read_metrics, training_curves

ckpt_path = resolve_checkpoint(CKPT_PATH or os.environ.get("POETRY_VAE_CKPT") or None)  # None: the shipped model
ckpt = load_checkpoint(ckpt_path)
model, vocab = ckpt.model, ckpt.vocab
form = {key: int(ckpt.data_hparams.get(key, default)) for key, default in (("line_length", 5), ("num_lines", 4))}
print(f"{ckpt_path}: step {ckpt.global_step}, {len(vocab)} characters, {form['line_length']}-character lines, "
      f"latent {model.cfg.latent_dim}-d, {'VAE' if model.cfg.use_latent else 'LM baseline'}")"""),
    ("code", """generator = torch.Generator().manual_seed(0)
datamodule = QuatrainDataModule.for_checkpoint(ckpt.data_hparams, vocab, f"checkpoint {ckpt_path}")
test, train = datamodule.poems["test"], datamodule.poems["train"]


def request(**kwargs):
    return DecodeRequest(**form, **kwargs)  # the checkpoint's form (五言 or 七言)


def show(poems):
    for p in poems:
        held = " ".join(k for k, ok in p.constraints.items() if ok)
        print(f"{p.text}  log p {p.log_prob:7.1f}  {held} {p.pattern or ''}")"""),
    ("md", """## Training curves, read from the run's `metrics.csv` (every resume's version, in step order)

The loss panel compares like with like: the negative ELBO per character (reconstruction + KL, no β, no free bits)
on the training batches and on the validation split, with the validation importance-weighted NLL (a tighter bound
on the same likelihood) beside them. `python -m poetry_vae.plot <run dir>` draws the same figure as a PNG."""),
    ("code", """run_dir = Path(ckpt_path).resolve().parent.parent
try:
    rows = read_metrics(run_dir)
except PoetryVAEError as error:  # the shipped model, or a run logged without the csv logger
    print(f"no training curves for this checkpoint: {error}")
else:
    fig = training_curves(rows, title=str(run_dir))
    print(f"{len(rows)} logged rows from {run_dir}")"""),
    ("md", "## Prior samples with each decoding strategy, then rhyming (平水韵) in a standard tone pattern"),
    ("code", """n = 4
z = sample_prior(model, n, generator)
for strategy in ("greedy", "sample", "top_k", "top_p", "beam"):
    print(f"-- {strategy}")
    show(generate(model, vocab, z, request(strategy=strategy, temperature=0.8), generator, num_poems=n))
print("-- top_p + rhyme=pingshui + tone=auto")
show(generate(model, vocab, z, request(strategy="top_p", temperature=0.8, rhyme="pingshui", tone="auto"),
              generator, num_poems=n))"""),
    ("md", """## Regulated and unregulated verse, from the prior's two halves

A prior fitted by verse (`python -m poetry_vae.fit_prior ... by_verse=true`; the shipped models' are) holds the codes
of poems that fit a regulated tone pattern (近体) in one half and the rest (古绝) in the other. The code fixes a poem's
pattern, so drawing from one half writes that verse with no constraint on the decoder (`sample verse=regulated`)."""),
    ("code", """verses = model.prior.fitted_verses() if model.cfg.use_latent else ()
if not verses:
    print("this checkpoint's prior was not fitted by verse: python -m poetry_vae.fit_prior ckpt_path=<it> "
          "out=<new file> components=8 by_verse=true")
for verse in verses:
    poems = generate(model, vocab, sample_prior(model, 100, generator, verse), request(strategy="top_p"), generator)
    fit = poetry_report([p.lines for p in poems], line_length=form["line_length"])["tone_fit_rate"]
    print(f"-- verse={verse}: {fit:.0%} of 100 poems fit a regulated tone pattern; the first three")
    show(poems[:3])"""),
    ("md", "## Acrostic (藏头) and first-line continuation, with beam search"),
    ("code", """z = sample_prior(model, 3, generator)
# the acrostic's characters must be in the checkpoint's vocabulary: 春夏秋冬 if it has them, else the first
# characters of a test poem's lines that it has
firsts = ["".join(line[0] for line in p.lines) for p in test]
acrostic = next((chars for chars in ["春夏秋冬", *firsts] if all(char in vocab for char in chars)), None)
if acrostic is None:
    print("no acrostic example: the vocabulary lacks 春夏秋冬 and every test poem's first characters")
else:
    print(f"-- acrostic {acrostic}")
    show(generate(model, vocab, z, request(strategy="beam", beam_size=5, acrostic=acrostic, rhyme="pingshui"),
                  num_poems=3))
first_line = next(p.lines[0] for p in test if all(char in vocab for char in p.lines[0]))  # the model's form
show(generate(model, vocab, z, request(strategy="top_p", first_line=first_line, tone="auto", rhyme="pingshui"),
              generator, num_poems=3))"""),
    ("md", """## What the latent does

Greedy decoding throughout, so every difference between outputs comes from z. First a reconstruction table: test
poems decoded from their posterior means, with the characters right position by position (the LM baseline has no
z: its one greedy poem stands for every reconstruction)."""),
    ("code", """inputs = [poem_chars(p.lines) for p in random.Random(0).sample(test, min(N_RECONSTRUCT, len(test)))]
z = posterior_means(model, vocab, inputs) if model.cfg.use_latent else None
m = form["line_length"]
outputs = [poem_chars(p) for p in (greedy_decode(model, vocab, z, line_length=m) if z is not None
                                   else greedy_decode(model, vocab, None, line_length=m) * len(inputs))]
width = len(inputs[0]) + 2
print(f"{'input':<{width}}{'output':<{width}}chars right  BLEU-2")
for x, y in zip(inputs, outputs):
    right = sum(a == b for a, b in zip(x, y))
    print(f"{x:<{width}}{y:<{width}}{right:>5}/{len(x)}    {sentence_bleu(y, [x], max_n=2):.2f}")
print(f"chars right over the table: {char_accuracy(outputs, inputs):.1%}")"""),
    ("md", "Interpolation: a homotopy between the two poems set in the parameters cell (`POEM_A`, `POEM_B`), along "
           "a straight line and along the sphere (slerp), side by side; then the summary measures on a sample of the "
           "test split (`python -m poetry_vae.evaluate` computes them on all of it)."),
    ("code", """if model.cfg.use_latent:
    known = [p for p in test if all(char in vocab for char in p.text)]  # prompts may hold no <unk> character
    a = POEM_A or render(known[0].lines)
    b = POEM_B or render(known[1].lines)
    greedy = request(strategy="greedy")
    line = homotopy(model, vocab, a, b, steps=HOMOTOPY_STEPS, request=greedy)
    sphere = homotopy(model, vocab, a, b, steps=HOMOTOPY_STEPS, request=greedy, spherical=True)
    print(f"from {a}\\nto   {b}\\n")
    print(f"{'t':<6}{'linear':<{width + 6}}slerp")
    for i, (p, q) in enumerate(zip(line, sphere)):
        print(f"{i / (HOMOTOPY_STEPS - 1):<6.2f}{p.text:<{width + 6}}{q.text}")
    ends = sum(x != y for x, y in zip(poem_chars(line[0].lines), poem_chars(line[-1].lines)))
    print(f"\\n{len({p.text for p in line})} distinct poems of {len(line)}; the endpoint decodes differ in "
          f"{ends} of {len(poem_chars(line[0].lines))} characters")
sample = [list(p.lines) for p in test[:200]]
print(homotopy_stats(model, vocab, sample, pairs=20, steps=HOMOTOPY_STEPS))
print(prior_diversity(model, vocab, n=100, line_length=form["line_length"]))"""),
    ("md", "## The latent map: test-set posterior means, coloured by dynasty; nearest training poems"),
    ("code", """if model.cfg.use_latent:  # rare characters become <unk>, as in training
    mu_test = posterior_means(model, vocab, [p.lines for p in test])
    fig = latent_map(mu_test, [p.dynasty for p in test])
    mu_train = posterior_means(model, vocab, [p.lines for p in train])
    for i in nearest(sample_prior(model, 1, generator)[0], mu_train, k=3).tolist():
        print("nearest training poem:", "，".join(train[i].lines))"""),
    ("md", """## Steering through the latent

A theme's direction is the mean posterior code of the training poems that carry one of its marker characters minus
that of the others (computed once per checkpoint and cached). The default method, `exemplars`, decodes the codes of
the themed training poems that lie furthest along it, pushed `strength` standard deviations further and kept at
their own norm; no character is forced. `python -m poetry_vae.sample mode=steer theme=月` does
the same from the command line, and `make steer-report` measures it and the other methods."""),
    ("code", """from poetry_vae.generation.steering import THEMES, analogy_code, latent_bank, resolve_theme, steering
from poetry_vae.plots import theme_map

if model.cfg.use_latent:
    bank = latent_bank(ckpt)
    theme = resolve_theme(THEME, vocab)
    for strength in STRENGTHS:
        g = torch.Generator().manual_seed(0)
        z = sample_prior(model, 200, g)
        if strength is not None:
            z = steering(bank, theme, strength=strength).move(z, g)
        many = generate(model, vocab, z, request(strategy="top_p"), g)
        hit = sum(theme.marks(p.text) for p in many) / len(many)
        label = "unsteered" if strength is None else f"strength {strength:g}"
        print(f"-- {label}: a marker of {theme.markers} in {hit:.0%} of 200 poems")
        show(many[:3])
    usable = {}
    for name in THEMES:
        try:
            usable[name] = steering(bank, resolve_theme(name, vocab)).direction
        except PoetryVAEError as error:  # a theme too rare in this checkpoint's training poems
            print(f"{name}: {error}")
    fig = theme_map(usable)"""),
    ("md", "Latent arithmetic (Bowman et al.): a is to b as c is to ?, decoded greedily from z_b − z_a + z_c."),
    ("code", """if model.cfg.use_latent:
    known = [render(p.lines) for p in test if all(char in vocab for char in p.text)]
    a, b, c = ANALOGY or known[2:5]
    mu, _ = encode_texts(model, vocab, [a, b, c], form["line_length"], form["num_lines"])
    print(f"a: {a}\\nb: {b}\\nc: {c}")
    show(generate(model, vocab, analogy_code(mu), request(strategy="greedy")))"""),
    ("md", "## Poetry metrics beside the human test split (same number of poems)"),
    ("code", """n = min(200, len(test))
z = sample_prior(model, n, generator)
ours = generate(model, vocab, z, request(strategy="top_p", temperature=0.8), generator, num_poems=n)
human = random.Random(0).sample([list(p.lines) for p in test], n)
train_lines = [list(p.lines) for p in train]
for label, poems in (("generated", [p.lines for p in ours]), ("human", human)):
    report = poetry_report(poems, train_lines, line_length=form["line_length"])
    print(f"{label:>9}: " + ", ".join(f"{k} {v:.3f}" for k, v in report.items()))"""),
]


def main() -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = []
    for kind, src, *tags in CELLS:
        cell = nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src)
        if tags:
            cell.metadata["tags"] = list(tags[0])
        nb.cells.append(cell)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
