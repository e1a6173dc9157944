"""Which direction to steer along: the mean difference (the default) against discriminative directions fitted to
the same bank of posterior means, a norm-keeping move and sampling from the themed poems' own code distribution.

    python scripts/steer_directions.py --themes 月 秋 山 --n 300

Prints, per theme and way, the marker hit rate, the judge's success rate and distinct-2 of ``--n`` steered
prior samples (top-p 0.9, T 0.8, seed 0), from the shipped model unless ``--ckpt`` says otherwise. An
experiment, not a report: nothing is written.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable

import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.linear_model import LogisticRegression
from torch import Tensor

from poetry_vae.checkpoint import load_checkpoint, shipped_model
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.generation import DecodeRequest, generate, sample_prior
from poetry_vae.generation.steering import latent_bank, resolve_theme, steering
from poetry_vae.metrics.poetry import distinct_n
from poetry_vae.metrics.theme_judge import ThemeJudge

SAMPLING = DecodeRequest(strategy="top_p", top_p=0.9, temperature=0.8)


def unit(vector: Tensor) -> Tensor:
    return vector / vector.norm()


def ways(bank_mu: Tensor, themed: Tensor) -> dict[str, Callable[[Tensor, float], Tensor]]:
    """name -> (prior draws, strength) -> steered codes."""
    x, y = bank_mu.numpy(), themed.numpy()
    mean_diff = unit(bank_mu[themed].mean(0) - bank_mu[~themed].mean(0))
    lda = unit(torch.tensor(LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(x, y).coef_[0]).float())
    logistic = unit(torch.tensor(LogisticRegression(max_iter=2000, class_weight="balanced").fit(x, y).coef_[0]).float())
    centre = bank_mu[themed].mean(0)
    spread = torch.linalg.cholesky(torch.cov(bank_mu[themed].T) + 1e-4 * torch.eye(bank_mu.shape[1]))

    def norm_kept(eps: Tensor, s: float) -> Tensor:
        moved = eps + s * mean_diff
        return moved * (eps.norm(dim=1, keepdim=True) / moved.norm(dim=1, keepdim=True))

    return {
        "mean_diff": lambda eps, s: eps + s * mean_diff,
        "lda": lambda eps, s: eps + s * lda,
        "logistic": lambda eps, s: eps + s * logistic,
        "norm_kept": norm_kept,
        "themed_gaussian": lambda eps, s: centre + eps @ spread.T + (s - 2) * mean_diff,  # s=2: the themed codes
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None, help="a .ckpt/.pt with a latent (default: the shipped model)")
    parser.add_argument("--themes", nargs="+", default=["月", "秋", "山"])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--strengths", type=float, nargs="+", default=[2.0, 3.0, 4.0, 5.0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    vae = load_checkpoint(args.ckpt or shipped_model())
    data = QuatrainDataModule.for_checkpoint(vae.data_hparams, vae.vocab, str(vae.path))
    train = [poem.text for poem in data.poems["train"]]
    bank = latent_bank(vae)
    print("| theme | way | strength | hit | judge | distinct-2 |\n|---|---|---:|---:|---:|---:|")
    for name in args.themes:
        theme = resolve_theme(name, vae.vocab)
        steering(bank, theme)  # the same one-line error as the sample command for too rare a theme
        judge = ThemeJudge.fit(theme, random.Random(0).sample(train, min(len(train), 50_000)))
        for way, move in ways(bank.mu, bank.themed(theme)).items():
            for strength in args.strengths:
                generator = torch.Generator().manual_seed(0)
                z = move(sample_prior(vae.model, args.n, generator), strength)
                lines = [poem.lines for poem in generate(vae.model, vae.vocab, z, SAMPLING, generator)]
                texts = ["".join(poem) for poem in lines]
                hit = sum(theme.marks(t) for t in texts) / len(texts)
                print(f"| {name} | {way} | {strength:g} | {hit:.3f} | {float(judge.judge(texts).mean()):.3f} | "
                      f"{distinct_n(lines, 2):.3f} |", flush=True)


if __name__ == "__main__":
    main()
