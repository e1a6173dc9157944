"""Every key the commands compose, with its type and default, written once: dataclasses registered in Hydra's
ConfigStore as nodes that conf/ lists in its defaults lists, so a YAML file holds only what differs from them.

- ``model/base``: :class:`~poetry_vae.model.ModelConfig`'s fields, less :data:`NOT_COMPOSED` (conf/model/vae.yaml)
- ``objective/base``: :class:`~poetry_vae.objective.ObjectiveConfig` (conf/objective/elbo.yaml)
- ``train_keys``: :class:`TrainKeys`, with ``evaluation``: :class:`Evaluation` (conf/train.yaml)
- ``sample_keys``: :class:`SampleKeys`, and ``decode_request``: the fields of
  :class:`~poetry_vae.generation.DecodeRequest` but its form's (conf/sample.yaml)
- ``evaluate_keys``: :class:`EvaluateKeys` (conf/evaluate.yaml)
- ``fit_prior_keys``: :class:`FitPriorKeys` (conf/fit_prior.yaml)
- ``fuse_lm_keys``: :class:`FuseLmKeys` (conf/fuse_lm.yaml)

The nodes are plain (a mapping of the defaults), not typed: a typed node would convert values at composition
(``2`` becomes ``2.0`` in a float field, which changes what a config prints and records), refuse others in a
message of several lines, and cannot say ``Literal``. :mod:`poetry_vae.schema` checks the composed values against
these dataclasses' annotations and ranges instead, one line a mistake. A field's ``metadata`` may hold
``at_least``, the smallest value it accepts, and ``at_most``, the largest.

Importing this module registers the nodes; :mod:`poetry_vae.schema` imports it, so every command (and anything
that imports :mod:`poetry_vae.cli`) has them. Compose conf/ by hand only after importing one of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from hydra.core.config_store import ConfigStore

from poetry_vae.generation.request import REQUEST_FIELDS, DecodeRequest
from poetry_vae.model.config import ModelConfig
from poetry_vae.objective import ObjectiveConfig


def at_least(low: float) -> dict[str, Any]:
    """A field's range: values below ``low`` are refused (null passes where the type allows it)."""
    return {"at_least": low}


def between(low: float, high: float) -> dict[str, Any]:
    """A field's range: values outside [``low``, ``high``] are refused (null passes where the type allows it)."""
    return {"at_least": low, "at_most": high}


SEED_RANGE = between(0, 2**32 - 1)  # what seed_everything (numpy) accepts


@dataclass
class Evaluation:
    """conf/train.yaml's ``evaluation`` node."""

    iw_samples_val: int = field(default=10, metadata=at_least(1))  # importance samples per poem, validation IW-NLL
    # the final test number (Burda et al. use 5000; 500 is stable to ~0.01 nats/char)
    iw_samples_test: int = field(default=500, metadata=at_least(1))
    iw_chunk: int = field(default=50, metadata=at_least(1))
    # the IW bound every n-th validation (and always the last): K decoder passes are most of a VAE's validation;
    # the best checkpoint is chosen by the ELBO, computed every time
    iw_every_n_val: int = field(default=1, metadata=at_least(1))


@dataclass
class TrainKeys:
    """conf/train.yaml's own keys (its groups are checked against what they instantiate)."""

    run_name: str = "default"  # outputs/<run_name>/ holds the config, logs and checkpoints of a run
    tags: list[str] = field(default_factory=list)  # labels of a preset; `report` marks the rows `make report` trains
    seed: int = field(default=0, metadata=SEED_RANGE)  # same seed + same config => same losses on CPU
    ckpt_path: str | None = None  # "last" resumes outputs/<run_name>/checkpoints/last.ckpt (fresh start if absent)
    # fine-tune: a checkpoint whose weights and vocabulary start this run (fresh optimiser, step 0, this run's β
    # schedule); ignored when resuming with ckpt_path
    init_from: str | None = None
    test_after_fit: bool = True  # evaluate the best checkpoint on the test split when training ends
    optimized_metric: str = "val/iw_nll_char"  # what a sweeper minimises (returned by the train function)
    torch_threads: int | None = field(default=None, metadata=at_least(1))  # intra-op threads; null: torch's default
    init_embeddings: Literal["word2vec", "random"] = "word2vec"  # word2vec (the training split's, cached) | random
    evaluation: Evaluation = field(default_factory=Evaluation)


@dataclass
class SampleKeys:
    """conf/sample.yaml, beside the decoding keys of :class:`~poetry_vae.generation.DecodeRequest`."""

    ckpt_path: str | None = None  # null: the shipped poet; a shipped name, a run dir, its checkpoints/, a .ckpt
    mode: Literal["prior", "reconstruct", "interpolate", "steer", "analogy"] = "prior"
    n: int = field(default=10, metadata=at_least(1))  # poems to write (prior, steer); decoded 1,024 at a time
    # input poems for reconstruct (any number), interpolate (2) and analogy (3: a:b::c:?); quote one written with
    # ASCII commas whole: "poems=['床前明月光,疑是地上霜.举头望明月,低头思故乡.']"
    poems: list[str] = field(default_factory=list)
    steps: int = field(default=5, metadata=at_least(2))  # interpolate: poems along the line, endpoints included
    spherical: bool = False  # interpolate: slerp instead of a straight line
    theme: str | None = None  # steer: a shipped theme (月 秋 春 别 酒 山 雪 花 雨 江) or marker characters
    # steer: null = the method's default; exemplars, mean_diff, shell: prior standard deviations moved along the
    # theme; neighbors: 0 (the prior) .. 1 (a themed training poem's code)
    strength: float | None = None
    # themed poems' codes pushed along the theme | the attribute vector kept on the prior's shell | the attribute
    # vector | around themed codes
    steer_method: Literal["exemplars", "shell", "mean_diff", "neighbors"] = "exemplars"
    # prior, steer: codes of one verse only, from a prior fitted by verse (fit_prior by_verse=true, as the shipped
    # models' are) and, steering, the theme's poems of that verse: regulated (近体, fits a regulated tone pattern) |
    # unregulated (古绝); null = either, as in the data
    verse: Literal["regulated", "unregulated"] | None = None
    seed: int = field(default=0, metadata=SEED_RANGE)  # same seed, same poems
    device: str = "cpu"
    out: str | None = None  # JSONL file, streamed and written whole or not at all; null = print only
    report: bool = False  # also print poetry metrics beside the same metrics on human test-split poems


@dataclass
class EvaluateKeys:
    """conf/evaluate.yaml."""

    ckpt_path: str = "???"  # required
    split: Literal["val", "test"] = "test"
    # importance samples per poem (Burda et al. 2016); 500 is stable to ~0.01 nats/char
    iw_samples: int = field(default=500, metadata=at_least(1))
    iw_chunk: int = field(default=50, metadata=at_least(1))
    seed: int = field(default=0, metadata=SEED_RANGE)
    device: str = "cpu"  # cpu | cuda | cuda:<index>
    torch_threads: int | None = field(default=None, metadata=at_least(1))
    out: str | None = None  # JSON file with the metrics (written whole or not at all)
    # what the latent does (greedy decoding, poetry_vae.metrics.latent_use): reconstruction of every poem of the
    # split from its posterior mean, homotopies between random pairs of its poems, greedy samples from the prior
    latent_measures: bool = True
    homotopy_pairs: int = field(default=100, metadata=at_least(1))  # one pair is a measure; pairs are averaged
    homotopy_steps: int = field(default=7, metadata=at_least(2))  # poems along each walk, endpoints included
    prior_samples: int = field(default=500, metadata=at_least(2))  # distinct-2 and self-BLEU need two poems


@dataclass
class FitPriorKeys:
    """conf/fit_prior.yaml."""

    ckpt_path: str = "???"  # required: a trained VAE (a run's checkpoint, or poet for the shipped one)
    out: str = "???"  # required: the new checkpoint (a new file: an existing one is never replaced)
    # 1: one Gaussian, moment-matched (exact); > 1: a mixture fitted by EM to codes drawn from the posteriors
    components: int = field(default=1, metadata=at_least(1))
    # half the components fitted to the codes of the training poems that fit a regulated tone pattern, half to the
    # rest (components even), so that `sample verse=regulated` can draw from the one half
    by_verse: bool = False
    # false: the codes of the 五绝 training poems alone, for a model pretrained on a wider corpus (data=wuyan's
    # blocks), so that its prior draws quatrains' codes; true: all the poems it was trained on
    with_pretraining: bool = True
    seed: int = field(default=0, metadata=SEED_RANGE)  # of those draws
    batch_size: int = field(default=512, metadata=at_least(1))  # poems encoded at once
    torch_threads: int | None = field(default=None, metadata=at_least(1))


@dataclass
class FuseLmKeys:
    """conf/fuse_lm.yaml."""

    ckpt_path: str = "???"  # required: a trained VAE (a run's checkpoint, or poet for the shipped one)
    lm: str = "poet_lm"  # a language model trained with the VAE's decoder sizes and vocabulary (its reference)
    out: str = "???"  # required: the new checkpoint (a new file: an existing one is never replaced)


# ModelConfig's fields that the model node leaves out: the vocabulary's (its size and special ids, set from the data),
# and two that a preset or the command line adds when it uses them (their defaults are off), as
# `+model.num_forms=4`: a node holding them would refuse that `+` and print a key more in every config.
NOT_COMPOSED = ("vocab_size", "num_forms", "bn_gamma", "pad_id", "bos_id", "eos_id", "unk_id")


def defaults_of(cls: type, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The defaults of a dataclass's fields as plain YAML values (tuples as lists, nested dataclasses as mappings),
    in the fields' order."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in leave_out:
            continue
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            raise TypeError(f"{cls.__name__}.{f.name} has no default: leave it out of the node")
        out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return defaults_of(type(value))
    return list(value) if isinstance(value, tuple) else value


MODEL_DEFAULTS = defaults_of(ModelConfig, NOT_COMPOSED)
OBJECTIVE_DEFAULTS = defaults_of(ObjectiveConfig)
# the sample command's decoding keys, from DecodeRequest alone (its form fields come from the checkpoint)
REQUEST_DEFAULTS: dict[str, Any] = {name: _plain(getattr(DecodeRequest(), name)) for name in REQUEST_FIELDS}

_store = ConfigStore.instance()
_store.store(group="model", name="base", node=MODEL_DEFAULTS)
_store.store(group="objective", name="base", node=OBJECTIVE_DEFAULTS)
_store.store(name="train_keys", node=defaults_of(TrainKeys))
_store.store(name="sample_keys", node=defaults_of(SampleKeys))
_store.store(name="decode_request", node=REQUEST_DEFAULTS)
_store.store(name="evaluate_keys", node=defaults_of(EvaluateKeys))
_store.store(name="fit_prior_keys", node=defaults_of(FitPriorKeys))
_store.store(name="fuse_lm_keys", node=defaults_of(FuseLmKeys))
