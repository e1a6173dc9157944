"""The three recipes against posterior collapse, by their mechanisms: Li et al.'s autoencoder phase and decoder
reset, BN-VAE's KL floor, He et al.'s aggressive encoder-only updates and when they stop."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import TINY_POEMS, tiny_train_config

from poetry_vae.checkpoint import read_checkpoint
from poetry_vae.data.vocab import Vocabulary
from poetry_vae.errors import PoetryVAEError
from poetry_vae.lit_module import PoemModule
from poetry_vae.model import Decoder, ModelConfig, PoemModel
from poetry_vae.objective import (
    LinearBeta,
    ObjectiveConfig,
    aggressive_stays_on,
    bag_of_words_nll,
    gaussian_kl,
    inner_loop_should_stop,
)
from poetry_vae.train import train
from poetry_vae.training import AggressiveEncoder, DecoderReset, recipe_callbacks

TINY_MODEL = {"embed_dim": 16, "encoder_hidden": 16, "latent_dim": 8, "decoder_hidden": 16, "decoder_layers": 1,
              "highway_layers": 1, "dropout": 0.2, "output_layer": "softmax"}


def tiny_module(**objective) -> tuple[PoemModule, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    vocab = Vocabulary.build(TINY_POEMS)
    module = PoemModule(model=TINY_MODEL, vocab=vocab.to_dict(), objective=objective)
    tokens = torch.tensor([vocab.encode(p.replace("，", "").replace("。", "")) for p in TINY_POEMS])
    bos = torch.full((len(TINY_POEMS), 1), vocab.bos_id)
    batch = {"tokens": tokens, "dec_in": torch.cat([bos, tokens], 1),
             "target": torch.cat([tokens, torch.full_like(bos, vocab.eos_id)], 1)}
    return module, batch


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


# ---- configuration ----


def test_autoencoder_phase_then_schedule_restarts() -> None:
    objective = ObjectiveConfig(ae_steps=100)
    schedule = LinearBeta(warmup_steps=50)
    assert [objective.beta(schedule, s) for s in (0, 99)] == [0.0, 0.0]
    assert objective.beta(schedule, 100) == 0.0  # the schedule starts at its own step 0
    assert objective.beta(schedule, 125) == pytest.approx(0.5)
    assert objective.beta(schedule, 10**6) == pytest.approx(1.0)
    assert ObjectiveConfig().beta(schedule, 25) == pytest.approx(0.5)  # no AE phase: the schedule as it was


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"ae_steps": -1}, "objective.ae_steps"),
    ({"reset_decoder": True}, "objective.reset_decoder"),
    ({"aggressive_max_inner": 0}, "objective.aggressive_max_inner"),
    ({"aggressive_check_every": 0}, "objective.aggressive_check_every"),
    ({"aggressive_max_steps": -5}, "objective.aggressive_max_steps"),
    ({"bag_of_words": -1.0}, "objective.bag_of_words"),
])
def test_bad_recipe_values_are_one_line_errors(kwargs: dict, named: str) -> None:
    with pytest.raises(PoetryVAEError, match=named) as error:
        ObjectiveConfig(**kwargs)
    assert "\n" not in str(error.value)
    with pytest.raises(PoetryVAEError, match="bn_gamma"):
        ModelConfig(vocab_size=10, bn_gamma=-0.1)


# ---- the bag-of-words loss (Zhao et al. 2017) ----


def test_bag_of_words_nll_scores_each_real_character_once() -> None:
    tokens = torch.tensor([[5, 6, 6, 0], [7, 0, 0, 0]])  # pad id 0
    uniform = torch.zeros(2, 10)
    assert bag_of_words_nll(uniform, tokens, pad_id=0).tolist() == pytest.approx([3 * math.log(10), math.log(10)])
    peaked = torch.full((2, 10), -30.0)
    peaked[0, 6] = peaked[1, 7] = 30.0
    nll = bag_of_words_nll(peaked, tokens, pad_id=0)
    assert nll[1] < 1e-6 and nll[0].item() == pytest.approx(60.0, abs=1e-3)  # 5 is 60 nats below 6


def test_bag_of_words_loss_is_added_and_trains_the_encoder() -> None:
    plain, batch = tiny_module(bag_of_words=0.0)
    with_bow, _ = tiny_module(bag_of_words=0.5)
    assert plain.bow_head is None and with_bow.bow_head is not None
    torch.manual_seed(1)
    terms, _ = with_bow.loss_terms(batch)
    torch.manual_seed(1)
    elbo, _ = plain.loss_terms(batch)  # same weights (same seed) and same z draw
    assert terms["loss"].item() == pytest.approx(elbo["loss"].item() + 0.5 * terms["bow"].item(), rel=1e-5)
    terms["loss"].backward()
    assert with_bow.bow_head.weight.grad.abs().sum() > 0
    assert with_bow.model.encoder.to_mu.weight.grad.abs().sum() > 0
    with pytest.raises(PoetryVAEError, match="bag_of_words"):
        PoemModule(model={**TINY_MODEL, "use_latent": False}, vocab=with_bow.vocab.to_dict(),
                      objective={"bag_of_words": 1.0})


def test_bag_of_words_loss_puts_the_poem_into_z() -> None:
    """The mechanism: trained alike, the bag-of-words run keeps far more information in q(z|x) (KL per poem)."""
    kls = {}
    for weight in (0.0, 1.0):
        module, batch = tiny_module(bag_of_words=weight)
        optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
        for _ in range(60):
            optimizer.zero_grad()
            module.loss_terms(batch)[0]["loss"].backward()
            optimizer.step()
        module.eval()
        with torch.no_grad():
            mu, logvar = module.model.encode(batch["tokens"])
        kls[weight] = gaussian_kl(mu, logvar).sum(dim=1).mean().item()
    assert kls[1.0] > 2 * kls[0.0] + 1.0, kls


# ---- BN-VAE ----


def test_batch_norm_on_mu_puts_a_floor_under_the_batch_kl() -> None:
    gamma = 0.7
    torch.manual_seed(0)
    model = PoemModel(ModelConfig(vocab_size=60, **TINY_MODEL, bn_gamma=gamma))
    with torch.no_grad():
        model.encoder.mu_shift.copy_(torch.linspace(-0.5, 0.5, 8))
    assert not any(p is model.encoder.mu_bn for p in model.parameters())  # γ is fixed, not learned
    assert "encoder.mu_shift" in dict(model.named_parameters())
    tokens = torch.randint(4, 60, (64, 20), generator=torch.Generator().manual_seed(1))
    model.train()
    raw = model.encoder.to_mu  # the pre-normalisation means, to know each dimension's batch variance
    captured: list[torch.Tensor] = []
    handle = raw.register_forward_hook(lambda _m, _i, out: captured.append(out.detach()))
    mu, logvar = model.encode(tokens)
    handle.remove()
    var = captured[0].var(dim=0, unbiased=False)
    eps = model.encoder.mu_bn.eps
    shift = model.encoder.mu_shift.detach()
    # E_batch[mu_j^2] = γ² v/(v+eps) + b_j²: the paper's bound, with BN's eps made explicit
    torch.testing.assert_close(mu.pow(2).mean(0), gamma**2 * var / (var + eps) + shift**2, rtol=1e-4, atol=1e-5)
    floor = 0.5 * (gamma**2 * var / (var + eps) + shift**2)
    assert (gaussian_kl(mu, logvar).mean(0) >= floor - 1e-5).all()
    assert gaussian_kl(mu, logvar).sum(1).mean() >= 0.5 * gamma**2 * 8 * 0.99


def test_batch_norm_floor_holds_when_the_encoder_shrinks_its_means() -> None:
    """The escape seen in a 10-minute run: pre-BN means with variance ~1e-8 (under BatchNorm's usual eps 1e-5)
    made the floor vanish (train KL 0.01 nats). The floor must hold at any such scale."""
    gamma = 0.7
    torch.manual_seed(0)
    model = PoemModel(ModelConfig(vocab_size=60, **TINY_MODEL, bn_gamma=gamma)).train()
    with torch.no_grad():
        model.encoder.to_mu.weight.mul_(1e-4)
        model.encoder.to_mu.bias.zero_()
    tokens = torch.randint(4, 60, (64, 20), generator=torch.Generator().manual_seed(1))
    mu, logvar = model.encode(tokens)
    assert mu.pow(2).mean(0).min() > 0.9 * gamma**2  # with eps 1e-5 this was ~1e-4 * γ²
    assert gaussian_kl(mu, logvar).sum(1).mean() >= 0.5 * gamma**2 * 8 * 0.9


def test_batch_norm_eval_uses_running_stats_and_is_per_poem() -> None:
    torch.manual_seed(0)
    model = PoemModel(ModelConfig(vocab_size=60, **TINY_MODEL, bn_gamma=0.5))
    tokens = torch.randint(4, 60, (16, 20), generator=torch.Generator().manual_seed(2))
    model.train()
    model.encode(tokens)
    assert int(model.encoder.mu_bn.num_batches_tracked) == 1
    model.encode(tokens[:1])  # one poem in training mode: running statistics, no error, nothing tracked
    assert int(model.encoder.mu_bn.num_batches_tracked) == 1
    model.eval()
    mu_batch, _ = model.encode(tokens)
    mu_alone, _ = model.encode(tokens[3:4])
    torch.testing.assert_close(mu_batch[3:4], mu_alone)  # eval: q(z|x) of a poem does not depend on its batch


# ---- Li et al. 2019: decoder reset ----


def test_reset_decoder_equals_fresh_init_and_leaves_encoder_and_rng() -> None:
    module, batch = tiny_module(ae_steps=3, reset_decoder=True)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.training_step(batch, 0).backward()
    optimizer.step()
    before = snapshot(module.model)
    rng = torch.get_rng_state()
    recipe = DecoderReset(ae_steps=3)  # built after the module, as train.py does: the run's seed
    recipe.reset(module, [optimizer])
    assert torch.equal(torch.get_rng_state(), rng)  # the training noise stream is untouched
    assert recipe.seed == 0
    torch.manual_seed(recipe.seed)
    fresh = Decoder(module.model.cfg).state_dict()
    after = snapshot(module.model)
    for name, tensor in after.items():
        if name.startswith("decoder."):
            assert torch.equal(tensor, fresh[name.removeprefix("decoder.")]), name
            assert not torch.equal(tensor, before[name]), name
        else:  # encoder, shared embedding and highway keep their trained values
            assert torch.equal(tensor, before[name]), name
    decoder_params = set(module.model.decoder.parameters())
    assert not any(p in optimizer.state for p in decoder_params)  # Adam restarts the decoder's moments
    assert all(p in optimizer.state for p in module.model.encoder.parameters())
    assert recipe.done and recipe.state_dict() == {"done": True, "seed": 0}


def read_rows(out: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted((out / "csv").glob("version_*/metrics.csv")):
        with open(path, encoding="utf-8") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def decoder_state(path: Path) -> dict[str, torch.Tensor]:
    state = read_checkpoint(path)["state_dict"]
    return {k.removeprefix("model.decoder."): v for k, v in state.items() if k.startswith("model.decoder.")}


def test_li2019_resets_once_at_the_boundary_across_resume(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    li = ("objective.ae_steps=4", "objective.reset_decoder=true", "anneal=linear", "anneal.warmup_steps=2")
    straight = tmp_path / "straight"
    train(tiny_train_config(straight, cache, *li, "trainer.max_epochs=2"))  # 4 steps an epoch
    resumed = tmp_path / "resumed"
    train(tiny_train_config(resumed, cache, *li, "trainer.max_epochs=1"))  # stops at the boundary
    at_boundary = read_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert at_boundary["global_step"] == 4 and at_boundary["decoder_reset"]["done"] is False
    train(tiny_train_config(resumed, cache, *li, "trainer.max_epochs=2", "ckpt_path=last"))
    assert read_checkpoint(resumed / "checkpoints" / "last.ckpt")["decoder_reset"]["done"] is True

    def losses(out: Path) -> list[tuple[int, float, float]]:
        return sorted((int(r["step"]), float(r["train/loss"]), float(r["train/beta"]))
                      for r in read_rows(out) if r.get("train/loss"))

    expected = losses(straight)
    assert [b for _, _, b in expected] == [0.0] * 5 + [0.5, 1.0, 1.0]  # AE phase, then linear from 0
    assert expected[4][1] > expected[3][1] + 2.0  # a fresh decoder forgets what 4 steps taught it
    got = losses(resumed)
    assert [s for s, _, _ in got] == list(range(8))
    for (_, loss_a, _), (_, loss_b, _) in zip(expected, got, strict=True):
        assert loss_b == pytest.approx(loss_a, rel=1e-5)  # reset once, at the same step, to the same decoder
    for name, tensor in decoder_state(straight / "checkpoints" / "last.ckpt").items():
        torch.testing.assert_close(tensor, decoder_state(resumed / "checkpoints" / "last.ckpt")[name])


# ---- He et al. 2019: aggressive mode ----


def test_inner_loop_stop_rule() -> None:
    assert not inner_loop_should_stop([])
    assert not inner_loop_should_stop([5.0])
    assert not inner_loop_should_stop([5.0, 4.0, 3.5])
    assert inner_loop_should_stop([5.0, 4.0, 4.0])  # no improvement
    assert inner_loop_should_stop([5.0, 4.0, 4.2])


def test_aggressive_mode_ends_when_mi_stops_rising() -> None:
    assert aggressive_stays_on([], step=0)
    assert aggressive_stays_on([0.5], step=100)
    assert aggressive_stays_on([0.5, 0.9, 1.4], step=100)
    assert not aggressive_stays_on([0.5, 0.9, 0.9], step=100)  # not above the previous value
    assert not aggressive_stays_on([0.5, 0.9, 0.7], step=100)
    assert aggressive_stays_on([0.5, 0.9], step=99, max_steps=100)
    assert not aggressive_stays_on([0.5, 0.9], step=100, max_steps=100)


def test_inner_updates_move_the_encoder_only() -> None:
    module, batch = tiny_module(aggressive=True, aggressive_max_inner=6, aggressive_check_every=2)
    [recipe] = recipe_callbacks(module.objective, has_encoder=True)
    module.train()
    before = snapshot(module.model)
    draws = []

    def next_batch() -> dict[str, torch.Tensor]:
        draws.append(1)
        return {k: v[torch.randperm(len(v), generator=torch.Generator().manual_seed(len(draws)))]
                for k, v in batch.items()}

    done = recipe.inner_updates(module, batch, next_batch)
    assert 2 <= done <= 6 and len(draws) == done - 1  # the first batch is given; none is drawn after the last update
    after = snapshot(module.model)
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    assert changed and all(name.startswith("encoder.") for name in changed), changed
    assert all(p.grad is None for p in module.parameters())  # nothing left behind for the outer step
    # the outer step in aggressive mode trains the decoder side only: q(z|x) gets no gradient
    terms, _ = module.loss_terms(batch, encoder_grad=False)
    terms["loss"].backward()
    assert all(p.grad is None for p in module.model.encoder.parameters())
    assert module.model.decoder.out.weight.grad is not None


def test_aggressive_run_switches_off_when_mi_stops_rising_and_resumes(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    aggressive = ("objective.aggressive=true", "objective.aggressive_max_inner=3", "objective.aggressive_check_every=1",
                  "trainer.limit_train_batches=2", "trainer.limit_val_batches=1")
    out = tmp_path / "run"
    train(tiny_train_config(out, cache, *aggressive, "trainer.max_epochs=2"))
    train(tiny_train_config(out, cache, *aggressive, "trainer.max_epochs=4", "ckpt_path=last"))
    state = read_checkpoint(out / "checkpoints" / "last.ckpt")["aggressive"]
    rows = read_rows(out)
    logged_mi = [float(r["val/mi"]) for r in sorted(rows, key=lambda r: int(r["step"])) if r.get("val/mi")]
    flags = [float(r["val/aggressive"]) for r in sorted(rows, key=lambda r: int(r["step"])) if r.get("val/aggressive")]
    assert len(logged_mi) == 4  # one validation per epoch, across the resume
    # the history holds the MI of every validation while the mode was on, carried across the resume
    assert state["mi_history"] == pytest.approx(logged_mi[: len(state["mi_history"])])
    for k, flag in enumerate(flags):
        history = logged_mi[: k + 1]
        on = all(aggressive_stays_on(history[: j + 1], 0) for j in range(len(history)))
        assert flag == float(on)
    assert state["on"] == bool(flags[-1])
    inner = [float(r["train/inner_steps"]) for r in rows if r.get("train/inner_steps")]
    assert inner[0] >= 1 and all(0 <= n <= 3 for n in inner)
    assert all(n == 0 for n, r in zip(inner, [r for r in rows if r.get("train/inner_steps")], strict=True)
               if r["train/aggressive"] == "0.0")


# ---- checkpoints from before the recipes were callbacks ----

DATA = Path(__file__).parent / "data"


def test_a_checkpoint_from_before_the_recipe_callbacks_resumes_as_it_would_have(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/data/legacy_recipes_v1.pt holds both recipes' state under the module-era top-level keys, cut at the
    end of the autoencoder phase (reset not yet done, aggressive mode on): resumed now, the run continues exactly as
    the code that wrote it ran the same config straight through (see the .expected.json's provenance). That code
    drew its dropout masks with torch's own dropout (same law, other random numbers), so it does here too."""
    import poetry_vae.model.dropout as model_dropout

    monkeypatch.setattr(model_dropout, "dropout", torch.nn.functional.dropout)
    expected = json.loads((DATA / "legacy_recipes_v1.expected.json").read_text(encoding="utf-8"))
    legacy = read_checkpoint(DATA / "legacy_recipes_v1.pt")
    assert legacy["global_step"] == 2 and legacy["decoder_reset"]["done"] is False and legacy["aggressive"]["on"]
    assert not legacy["callbacks"]
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copyfile(DATA / "legacy_recipes_v1.pt", out / "checkpoints" / "last.ckpt")
    train(tiny_train_config(out, tmp_path / "cache", *expected["overrides"], "trainer.max_epochs=4",
                            "ckpt_path=last"))
    rows = read_rows(out)
    got_train = {r["step"]: r for r in rows if r.get("train/loss")}
    got_val = {r["step"]: r for r in rows if r.get("val/elbo")}
    assert sorted(got_train, key=int) == [str(s) for s in range(2, 8)]
    for step, values in expected["train"].items():
        if int(step) >= 2:
            for name, value in values.items():
                assert float(got_train[step][name]) == pytest.approx(value, rel=1e-5), (step, name)
    assert sorted(got_val, key=int) == ["3", "5", "7"]
    for step, row in got_val.items():
        for name, value in expected["val"][step].items():
            assert float(row[name]) == pytest.approx(value, rel=1e-4, abs=1e-6), (step, name)
    resumed = read_checkpoint(out / "checkpoints" / "last.ckpt")
    assert resumed["callbacks"]["DecoderReset"] == {"done": True, "seed": 0}
    state = resumed["callbacks"]["AggressiveEncoder"]
    assert state["on"] is False and state["mi_history"] == pytest.approx([expected["val"][s]["val/mi"] for s in "13"])
    assert resumed["decoder_reset"] == resumed["callbacks"]["DecoderReset"]  # still where older code reads it


def test_the_objective_picks_the_recipe_callbacks() -> None:
    assert recipe_callbacks(ObjectiveConfig(), has_encoder=True) == []
    assert recipe_callbacks(ObjectiveConfig(ae_steps=5), has_encoder=True) == []  # β = 0 only: no callback needed
    reset, aggressive = recipe_callbacks(ObjectiveConfig(ae_steps=5, reset_decoder=True, aggressive=True,
                                                         aggressive_max_inner=7), has_encoder=True, seed=3)
    assert isinstance(reset, DecoderReset) and (reset.ae_steps, reset.seed) == (5, 3)
    assert isinstance(aggressive, AggressiveEncoder) and aggressive.max_inner == 7 and aggressive.on
    [lm] = recipe_callbacks(ObjectiveConfig(aggressive=True), has_encoder=False)
    assert not lm.on  # no encoder to update: logged as off, as before


# ---- refitting the proposal q(z|x) against a frozen model ----


@pytest.mark.parametrize("side", ["encoder", "decoder"])
def test_a_refit_moves_only_its_side_with_the_rest_as_evaluated(side: str) -> None:
    """The refitted side trains; the rest runs as evaluated (no dropout) and keeps its weights, so a decoder refit
    reads every poem's code as the evaluation does."""
    module, batch = tiny_module(**{f"refit_{side}": True})
    module.train()
    other = "decoder" if side == "encoder" else "encoder"
    assert getattr(module.model, side).training and not getattr(module.model, other).training
    optimizer = module.configure_optimizers()
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    owned = module.model.encoder_parameters() if side == "encoder" else module.model.decoder.parameters()
    assert trained == {id(p) for p in owned}
    before = snapshot(module.model)
    for _ in range(3):
        optimizer.zero_grad()
        module.loss_terms(batch)[0]["loss"].backward()
        optimizer.step()
    after = snapshot(module.model)
    changed = {name for name in after if not torch.equal(after[name], before[name])}
    assert changed and all(name.startswith(f"{side}.") for name in changed), changed


def test_refit_encoder_lowers_the_elbo_gap_of_a_fixed_model() -> None:
    """The mechanism: with the decoder fixed, training q alone on the ELBO raises it (log p(x) does not move)."""
    module, batch = tiny_module(refit_encoder=True)
    module.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        start = module.loss_terms(batch)[0]["loss"].item()
    optimizer = torch.optim.Adam(module.model.encoder_parameters(), lr=1e-2)
    module.train()
    for _ in range(80):
        optimizer.zero_grad()
        module.loss_terms(batch)[0]["loss"].backward()
        optimizer.step()
    module.eval()
    with torch.no_grad():
        torch.manual_seed(3)
        end = module.loss_terms(batch)[0]["loss"].item()
    assert end < start - 0.1, (start, end)  # deterministic: 103.42 -> 103.17 when written


@pytest.mark.parametrize("objective", [{"refit_encoder": True, "free_bits": 2.0},
                                       {"refit_encoder": True, "word_dropout": 0.5},
                                       {"refit_encoder": True, "aggressive": True}])
def test_refit_encoder_refuses_a_training_only_objective(objective: dict) -> None:
    with pytest.raises(PoetryVAEError, match=r"refit_encoder=true .*free_bits=0") as error:
        ObjectiveConfig(**objective)
    assert "\n" not in str(error.value)


def test_refit_encoder_needs_a_latent() -> None:
    vocab = Vocabulary.build(TINY_POEMS)
    with pytest.raises(PoetryVAEError, match="refit_encoder=true needs a model with a latent"):
        PoemModule(model={**TINY_MODEL, "use_latent": False}, vocab=vocab.to_dict(), objective={"refit_encoder": True})


# ---- refitting the decoder on the codes of a frozen encoder ----


def test_refit_decoder_raises_the_elbo_at_a_fixed_kl() -> None:
    """The mechanism: with q fixed the KL cannot move, and training the decoder alone raises the ELBO through the
    reconstruction term only."""
    module, batch = tiny_module(refit_decoder=True)

    def terms() -> dict[str, float]:
        module.eval()
        with torch.no_grad():
            torch.manual_seed(3)
            return {name: value.item() for name, value in module.loss_terms(batch)[0].items()}

    start = terms()
    optimizer = torch.optim.Adam(module.model.decoder.parameters(), lr=1e-2)
    module.train()
    for _ in range(40):
        optimizer.zero_grad()
        module.loss_terms(batch)[0]["loss"].backward()
        optimizer.step()
    end = terms()
    assert end["kl"] == pytest.approx(start["kl"], abs=1e-5)
    assert end["rec"] < start["rec"] - 1.0, (start, end)


@pytest.mark.parametrize("objective", [{"refit_decoder": True, "free_bits": 2.0},
                                       {"refit_decoder": True, "aggressive": True},
                                       {"refit_decoder": True, "bag_of_words": 0.5}])
def test_refit_decoder_refuses_terms_that_act_on_the_code(objective: dict) -> None:
    with pytest.raises(PoetryVAEError, match=r"refit_decoder=true .*free_bits=0") as error:
        ObjectiveConfig(**objective)
    assert "\n" not in str(error.value)


def test_refit_decoder_and_encoder_together_are_refused() -> None:
    with pytest.raises(PoetryVAEError, match="choose one"):
        ObjectiveConfig(refit_encoder=True, refit_decoder=True)


def test_refit_decoder_needs_a_latent() -> None:
    vocab = Vocabulary.build(TINY_POEMS)
    with pytest.raises(PoetryVAEError, match="refit_decoder=true needs a model with a latent"):
        PoemModule(model={**TINY_MODEL, "use_latent": False}, vocab=vocab.to_dict(), objective={"refit_decoder": True})
