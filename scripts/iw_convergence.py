"""How far a VAE's importance-weighted bound is from the likelihood it bounds: one draw of many codes a poem from
q(z|x), then the bound at growing K, each K over as many disjoint blocks of codes as the draw holds (the spread of
the blocks says how much one estimate at that K varies). The bound rises with K towards log p(x); where it has
flattened, a better proposal cannot buy much more, and what separates the model from another is the model.

    python scripts/iw_convergence.py --ckpt poet --poems 100 --max-k 10000
"""

from __future__ import annotations

import argparse
import math

import torch
from vae_study import open_vae

from poetry_vae.metrics.latent import iw_log_weights

STEPS = (1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000)  # the K reported, up to --max-k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="poet", help="a shipped name, a run directory or a .ckpt")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--poems", type=int, default=100, help="the split's first poems")
    parser.add_argument("--max-k", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    loaded, model, datamodule = open_vae(args.ckpt, "bound to test (its likelihood is exact)")
    split = {name: tensor[: args.poems] for name, tensor in datamodule.tensors[args.split].items()}
    positions = int((split["target"] != loaded.vocab.pad_id).sum())
    weights = iw_log_weights(model, split["tokens"], split["dec_in"], split["target"], args.max_k, chunk=20,
                             generator=torch.Generator().manual_seed(args.seed), max_rows=20_000)
    print(f"{len(split['target'])} {args.split} poems, {positions} positions, {args.max_k} codes a poem")
    print(f"ELBO           {-float(weights.mean(0).sum()) / positions:.4f} nats/char")
    for k in sorted({k for k in STEPS if k <= args.max_k} | {args.max_k}):
        blocks = weights[: args.max_k // k * k].view(-1, k, weights.size(1))
        bounds = (torch.logsumexp(blocks, dim=1) - math.log(k)).sum(1) / positions  # one bound a block
        spread = f"  sd {float(bounds.std()):.4f} over {len(bounds)} blocks" if len(bounds) > 1 else ""
        print(f"K = {k:<6d}     {-float(bounds.mean()):.4f} nats/char{spread}")

if __name__ == "__main__":
    main()
