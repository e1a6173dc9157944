"""Decoding, side by side: this checkout against another copy of the project (an earlier commit's source tree).

    python -m benchmarks.decoding_side_by_side OTHER_TREE [--n 2000] [--repeats 3]

Each tree runs in its own processes (one thread, the shipped model, fp32): once a set of seeded requests that
exercise every decoding option (their poems and log-probs must be identical in both trees), then ``--repeats``
rounds that each time writing ``--n`` poems with rhyme and tone constraints under top-p in either tree, in
turn, so that a change in the machine's load hits both alike. Prints the outputs' agreement and the speed
ratio (this tree's best time / the other's). Make OTHER_TREE with e.g.
``git archive <commit> | tar -x -C <folder>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parents[1]

# Requests whose outputs must agree between the trees (every option, alone and together).
CASES: list[dict[str, Any]] = [
    {"strategy": "greedy"},
    {"strategy": "sample"},
    {"strategy": "top_k", "top_k": 20},
    {"strategy": "top_p"},
    {"strategy": "top_k_top_p", "top_k": 30, "min_p": 0.05},
    {"strategy": "top_p", "min_p": 0.1},
    {"strategy": "top_p", "rhyme": "pingshui", "tone": "auto"},
    {"strategy": "top_p", "rhyme": "xinyun", "rhyme_first_line": True},
    {"strategy": "top_p", "tone": "zeqi", "strict_tone": True},
    {"strategy": "top_p", "rhyme": "pingshui", "tone": "auto", "no_repeat": True},
    {"strategy": "top_p", "first_line": "白日依山尽", "rhyme": "pingshui"},
    {"strategy": "top_p", "acrostic": "春夏秋冬", "no_repeat": True, "rhyme": "pingshui"},
    {"strategy": "top_p", "no_repeat_ngram_size": 1, "repetition_penalty": 1.3},
    {"strategy": "greedy", "repetition_penalty": 1.5, "no_repeat_ngram_size": 2},
    {"strategy": "beam", "beam_size": 4, "rhyme": "pingshui", "tone": "auto"},
    {"strategy": "beam", "beam_size": 4, "num_return_sequences": 2, "repetition_penalty": 1.2, "no_repeat": True},
    {"strategy": "top_p", "num_return_sequences": 3, "acrostic": "山水花月", "no_repeat_ngram_size": 2},
]
TIMED = {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8, "rhyme": "pingshui", "tone": "auto"}


def worker(tree: Path, n: int, timed: bool) -> dict[str, Any]:
    sys.path.insert(0, str(tree))
    import torch

    torch.set_num_threads(1)
    from poetry_vae.checkpoint import load_checkpoint, shipped_model
    from poetry_vae.generation import DecodeRequest, generate, sample_prior

    ckpt = load_checkpoint(shipped_model())
    model, vocab = ckpt.model, ckpt.vocab
    sizes = {"line_length": model.cfg.line_length or 5, "precision": "fp32"}

    def request(**kwargs: Any) -> Any:
        return DecodeRequest(**{"temperature": 1.0, **kwargs, **sizes})

    if timed:
        z = sample_prior(model, n, torch.Generator().manual_seed(0))
        generate(model, vocab, z[:64], request(**TIMED), torch.Generator().manual_seed(0))  # warm the caches
        start = time.perf_counter()
        generate(model, vocab, z, request(**TIMED), torch.Generator().manual_seed(0))
        return {"seconds": time.perf_counter() - start}
    digest = hashlib.sha256()
    for i, case in enumerate(CASES):
        z = sample_prior(model, 48, torch.Generator().manual_seed(i))
        poems = generate(model, vocab, z, request(**case), torch.Generator().manual_seed(100 + i))
        for poem in poems:
            digest.update(f"{poem.text}|{poem.log_prob:.5f}|{poem.pattern}|{sorted(poem.constraints.items())}".encode())
    return {"module": sys.modules["poetry_vae"].__file__, "digest": digest.hexdigest()}


def run_tree(tree: Path, n: int, timed: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.decoding_side_by_side", str(tree), "--worker", "--n", str(n)]
    command += ["--timed"] if timed else []
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(command, cwd=HERE, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: the worker for {tree} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="another copy of the project's source tree")
    parser.add_argument("--n", type=int, default=2000, help="poems in the timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per tree (the best counts)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--timed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.other, args.n, args.timed)))
        return
    trees = {"other": args.other.resolve(), "this": HERE}
    other, this = (run_tree(tree, args.n, timed=False) for tree in trees.values())
    times: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():
            times[name].append(run_tree(tree, args.n, timed=True)["seconds"])
    other["seconds"], this["seconds"] = min(times["other"]), min(times["this"])
    same = other["digest"] == this["digest"]
    print(f"other: {other['module']}\nthis: {this['module']}")
    print(f"outputs of {len(CASES)} seeded requests: {'identical' if same else 'DIFFERENT'}")
    print(f"{args.n} poems, rhyme + tone, top_p, 1 thread: other {other['seconds']:.2f} s, "
          f"this {this['seconds']:.2f} s, ratio {this['seconds'] / other['seconds']:.3f}")  # fmt: skip
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
