"""How far a VAE trails a language model on each split, the training poems included: its importance-weighted bound
and the LM's exact likelihood on the same poems, with the VAE's KL and its reconstruction term at the posterior
mean. A gap as wide on the training poems as on the test poems is not the code over-fitting them (naming one
of 15,080 training poems takes 9.6 nats; the flagship's code holds 58); it is what the model can do with a code.

    python scripts/split_gap.py --ckpt poet --lm poet_lm --poems 857
"""

from __future__ import annotations

import argparse
import math

import torch
from vae_study import open_vae

from poetry_vae.checkpoint import load_checkpoint, resolve_checkpoint
from poetry_vae.metrics.latent import iw_log_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="poet", help="the VAE: a shipped name, a run directory or a .ckpt")
    parser.add_argument("--lm", default="poet_lm", help="the language model, on the same vocabulary")
    parser.add_argument("--poems", type=int, default=857, help="each split's first poems")
    parser.add_argument("--iw-samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    loaded, vae, datamodule = open_vae(args.ckpt, "code to measure")
    lm_loaded = load_checkpoint(resolve_checkpoint(args.lm))
    if lm_loaded.vocab.to_dict() != loaded.vocab.to_dict():
        raise SystemExit(f"error: {args.lm} and {args.ckpt} have different vocabularies: give an LM trained alike")
    lm = lm_loaded.model.float().eval()
    pad = loaded.vocab.pad_id
    print(f"nats/char; the VAE's bound at K = {args.iw_samples}; the first {args.poems} poems of each split")
    print("split   VAE ELBO  VAE IW   LM      IW - LM   KL/poem  rec at mean")
    for split in ("train", "val", "test"):
        tensors = {name: tensor[: args.poems] for name, tensor in datamodule.tensors[split].items()}
        tokens, dec_in, target = tensors["tokens"], tensors["dec_in"], tensors["target"]
        positions = int((target != pad).sum())
        generator = torch.Generator().manual_seed(args.seed)
        with torch.no_grad():
            weights = iw_log_weights(vae, tokens, dec_in, target, args.iw_samples, chunk=10, generator=generator)
            mu, logvar = vae.encode(tokens)
            kl = float(vae.prior.kl(mu, logvar, vae.reparameterize(mu, logvar, generator)).sum()) / len(mu)
            rec_at_mean = -float(vae.token_log_probs(dec_in, target, mu).sum()) / positions
            lm_nll = -float(lm.token_log_probs(dec_in, target, None).sum()) / positions
        elbo = -float(weights.mean(0).sum()) / positions
        bound = -float((torch.logsumexp(weights, 0) - math.log(args.iw_samples)).sum()) / positions
        row = (f"{split:6s}  {elbo:.3f}     {bound:.3f}   {lm_nll:.3f}   {bound - lm_nll:+.3f}    {kl:5.1f}    "
               f"{rec_at_mean:.3f}")
        print(row)


if __name__ == "__main__":
    main()
