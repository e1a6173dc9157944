"""Which prior family to fit to a trained VAE's aggregate posterior: N(0, I), full-covariance Gaussians (one or a
mixture: what ``python -m poetry_vae.fit_prior components=<n>`` fits) or mixtures of diagonal ones (scikit-learn's
EM on codes drawn from the training poems' posteriors), each scored by the importance-weighted bound on validation
poems with the same codes and decoder passes (only log p(z) differs between rows).

    python scripts/prior_families.py --ckpt poet --val-poems 600 --iw-samples 100
"""

from __future__ import annotations

import argparse
import math

import torch
from sklearn.mixture import GaussianMixture

from poetry_vae.checkpoint import load_checkpoint, resolve_checkpoint
from poetry_vae.data.datamodule import QuatrainDataModule
from poetry_vae.model.prior import GaussianPrior, StandardPrior
from poetry_vae.objective import gaussian_log_density

FULL = (1, 4, 16, 64)  # components of the full-covariance mixtures (GaussianPrior, as fit_prior fits them)
DIAGONAL = (16, 64, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="poet")
    parser.add_argument("--val-poems", type=int, default=600)
    parser.add_argument("--iw-samples", type=int, default=100)
    parser.add_argument("--codes-per-poem", type=int, default=4, help="codes drawn from each posterior for EM")
    args = parser.parse_args()
    loaded = load_checkpoint(resolve_checkpoint(args.ckpt))
    model = loaded.model.float()
    datamodule = QuatrainDataModule.for_checkpoint(loaded.data_hparams, loaded.vocab, args.ckpt)
    datamodule.setup()
    generator = torch.Generator().manual_seed(0)
    train = datamodule.tensors["train"]
    mu, logvar = model.encode_in_batches(train["tokens"], train.get("form"), 512)
    priors = {"N(0, I)": StandardPrior(mu.shape[1]).log_prob}
    for size in FULL:
        prior = GaussianPrior(mu.shape[1], size)
        prior.fit(mu, logvar, torch.Generator().manual_seed(0), draws=args.codes_per_poem)
        priors[f"{size} full-covariance Gaussian{'s' if size > 1 else ''}"] = prior.log_prob
    codes = torch.cat([model.reparameterize(mu, logvar, generator) for _ in range(args.codes_per_poem)]).double()
    for size in DIAGONAL:
        mixture = GaussianMixture(size, covariance_type="diag", random_state=0, max_iter=200, reg_covar=1e-4)
        priors[f"{size} diagonal Gaussians"] = mixture_log_prob(mixture.fit(codes.numpy()))
    val = {name: tensor[: args.val_poems] for name, tensor in datamodule.tensors["val"].items()}
    positions = int((val["target"] != loaded.vocab.pad_id).sum())
    with torch.no_grad():
        post_mu, post_logvar = model.encode(val["tokens"], val.get("form"))
        z = model.reparameterize(post_mu.repeat(args.iw_samples, 1), post_logvar.repeat(args.iw_samples, 1),
                                 generator).view(args.iw_samples, *post_mu.shape)
        log_px = torch.stack([model.token_log_probs(val["dec_in"], val["target"], code).sum(1) for code in z])
        log_q = gaussian_log_density(z, post_mu, post_logvar)
    print(f"{len(post_mu)} validation poems, K = {args.iw_samples}; {len(mu):,} training poems' posteriors")
    for name, log_prior in priors.items():
        log_w = log_px + log_prior(z) - log_q
        nll = -float(torch.logsumexp(log_w, 0).sum() - len(post_mu) * math.log(args.iw_samples)) / positions
        print(f"{name:34s} IW-NLL/char {nll:.4f}  perplexity {math.exp(nll):6.1f}")


def mixture_log_prob(mixture: GaussianMixture):
    """A fitted mixture's log-density as a function of (..., Z) tensors."""
    def log_prob(z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(-1, z.shape[-1]).double().numpy()
        return torch.from_numpy(mixture.score_samples(flat)).float().view(z.shape[:-1])
    return log_prob


if __name__ == "__main__":
    main()
