"""Whether a VAE's code carries the poem's tone pattern: codes drawn from the posteriors of the training poems that
fit a regulated pattern and of those that do not, each decoded with the flagship page's sampler (top-p 0.9, T 0.8),
then the tone fit and rhyme rate of each group's poems. If the two groups decode far apart, the share of regulated
poems a VAE writes from its prior is the share its prior gives the regulated poems' codes: the data's.

    python scripts/tone_by_code.py --ckpt poet --poems 500 --draws 3
"""

from __future__ import annotations

import argparse
import random

import torch
from vae_study import open_vae

from poetry_vae.generation.decoding import generate
from poetry_vae.generation.request import DecodeRequest
from poetry_vae.metrics.latent_use import poem_chars
from poetry_vae.metrics.poetry import rhyme_rate, tone_compliance

SAMPLING = {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "precision": "fp32"}  # the flagship page's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="poet", help="a shipped name, a run directory or a .ckpt")
    parser.add_argument("--poems", type=int, default=500, help="source poems a group and draw")
    parser.add_argument("--draws", type=int, default=3, help="draws (seeds 0, 1, ...)")
    args = parser.parse_args()
    loaded, model, datamodule = open_vae(args.ckpt, "code to read")
    train = [list(p.lines) for p in datamodule.poems["train"]]
    known = [p for p in train if all(c in loaded.vocab for c in "".join(p))]
    regulated = [tone_compliance([p])["fit_rate"] == 1.0 for p in known]
    groups = {"regulated": [p for p, r in zip(known, regulated, strict=True) if r],
              "unregulated": [p for p, r in zip(known, regulated, strict=True) if not r]}
    print(f"{len(known):,} training poems in the vocabulary, {sum(regulated) / len(known):.3f} of them regulated")
    request = DecodeRequest(**SAMPLING, **loaded.form)
    for name, group in groups.items():
        rows = []
        for seed in range(args.draws):
            chosen = random.Random(seed).sample(group, min(args.poems, len(group)))
            ids = torch.tensor([loaded.vocab.encode(poem_chars(p)) for p in chosen])
            mu, logvar = model.encode_in_batches(ids)
            generator = torch.Generator().manual_seed(seed)
            poems = [p.lines for p in generate(model, loaded.vocab, model.reparameterize(mu, logvar, generator),
                                               request, generator)]
            rows.append(f"tone fit {tone_compliance(poems)['fit_rate']:.3f}, rhyme {rhyme_rate(poems):.3f}")
        print(f"codes of {name} poems, decoded: " + "; ".join(rows))


if __name__ == "__main__":
    main()
