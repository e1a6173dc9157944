"""The poems of a model's prior over several draws, with their spread: rhyme, tone fit, distinct-2 and copied lines
of ``--draws`` draws of ``--poems`` poems (seeds 0, 1, ...; the flagship page's sampler: top-p 0.9, T 0.8, fp32),
as mean ± standard error. One draw of 500 varies by ±0.03 in tone fit, so targets near the human row need ten.
With ``--verse`` (a prior fitted by verse: ``fit_prior by_verse=true``), a row for each verse's half as well.

    python scripts/prior_draws.py --ckpt poet --draws 10 --verse any regulated unregulated
"""

from __future__ import annotations

import argparse
import statistics

import torch
from flagship_page import SAMPLING, load, sample

from poetry_vae.checkpoint import resolve_checkpoint
from poetry_vae.metrics.poetry import poetry_report

MEASURES = ("rhyme_rate", "tone_fit_rate", "distinct_2", "copied_line_rate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default="poet", help="a shipped name, a run directory or a .ckpt")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--poems", type=int, default=500, help="poems a draw")
    parser.add_argument("--verse", nargs="*", default=["any"], help="any (the whole prior), regulated, unregulated")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded, datamodule = load(resolve_checkpoint(args.ckpt))
    train = [list(poem.lines) for poem in datamodule.poems["train"]]
    width = loaded.form["line_length"]
    print(f"| prior | {' | '.join(MEASURES)} |\n|---|{'---:|' * len(MEASURES)}")
    for verse in args.verse:
        reports = [poetry_report(sample(loaded, args.poems, SAMPLING, seed, None if verse == "any" else verse),
                                 train, line_length=width) for seed in range(args.draws)]
        cells = []
        for measure in MEASURES:
            values = [report[measure] for report in reports]
            spread = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} ± {spread:.3f}")
        print(f"| {verse} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
