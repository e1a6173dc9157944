import pytest
import torch

from poetry_vae.errors import PoetryVAEError
from poetry_vae.model import Highway, ModelConfig, PoemModel
from poetry_vae.model.dropout import Dropout

V, T = 50, 20
OUTPUTS = ["softmax", "adaptive"]


def tiny(output_layer: str = "softmax", **kw) -> PoemModel:
    torch.manual_seed(0)
    base = dict(vocab_size=V, embed_dim=16, encoder_hidden=16, latent_dim=8, decoder_hidden=16)
    base.update(output_layer=output_layer, adaptive_cutoffs=(10, 30), dropout=0.3)
    return PoemModel(ModelConfig(**(base | kw)))


def batch(b: int = 4, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, V, (b, T), generator=g)
    dec_in = torch.cat([torch.full((b, 1), 1), tokens], dim=1)
    target = torch.cat([tokens, torch.full((b, 1), 2)], dim=1)
    return tokens, dec_in, target


@pytest.mark.parametrize("output_layer", OUTPUTS)
def test_shapes(output_layer: str) -> None:
    model = tiny(output_layer)
    out = model(*batch())
    assert out.rec.shape == (4,) and out.kl.shape == (4, 8)
    assert out.mu.shape == out.logvar.shape == out.z.shape == (4, 8)
    assert (out.rec > 0).all() and (out.kl >= 0).all()


def test_several_codes_a_poem_score_each_poem_under_each_code() -> None:
    model = tiny("adaptive", line_length=4, rhyme_dim=4, num_forms=2).eval()
    tokens, dec_in, target = batch(b=3, seed=2)
    form = torch.tensor([0, 1, 1])
    torch.manual_seed(5)
    out = model(tokens, dec_in, target, form=form, samples=4)
    assert out.rec.shape == (12,) and out.z.shape == (12, 8) and out.mu.shape == out.kl[:, :8].shape == (3, 8)
    for k in range(4):  # block k holds code k of every poem, each scored as that poem
        z = out.z[3 * k : 3 * (k + 1)]
        rec = -model.token_log_probs(dec_in, target, z, form=form).sum(dim=1)
        assert torch.allclose(out.rec[3 * k : 3 * (k + 1)], rec, atol=1e-5)
    # one code a poem draws exactly what it drew before the option
    torch.manual_seed(5)
    one = model(tokens, dec_in, target, form=form)
    torch.manual_seed(5)
    mu, logvar = model.encode(tokens, form)
    assert torch.equal(one.z, model.reparameterize(mu, logvar))


@pytest.mark.parametrize("output_layer", OUTPUTS)
def test_step_log_probs_normalised(output_layer: str) -> None:
    model = tiny(output_layer).eval()
    z = torch.randn(3, 8)
    logp, (h, c) = model.step(torch.tensor([1, 5, 7]), model.initial_state(z, 3), z)
    assert logp.shape == (3, V) and h.shape == c.shape == (2, 3, 16)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3))


@pytest.mark.parametrize("output_layer", OUTPUTS)
def test_eval_deterministic_train_stochastic(output_layer: str) -> None:
    model = tiny(output_layer)
    _, dec_in, target = batch()
    z = torch.randn(4, 8)
    model.eval()
    a, b = model.token_log_probs(dec_in, target, z), model.token_log_probs(dec_in, target, z)
    assert torch.equal(a, b)
    mu1, _ = model.encode(batch()[0])
    mu2, _ = model.encode(batch()[0])
    assert torch.equal(mu1, mu2)
    model.train()
    assert not torch.equal(model.token_log_probs(dec_in, target, z), model.token_log_probs(dec_in, target, z))


@pytest.mark.parametrize("use_latent", [True, False])
def test_no_state_between_calls_and_batch_independent(use_latent: bool) -> None:
    model = tiny(use_latent=use_latent).eval()
    tokens, dec_in, target = batch(5)
    z = torch.randn(5, 8) if use_latent else None
    full = model.token_log_probs(dec_in, target, z)
    model.token_log_probs(*batch(5, seed=9)[1:], z)  # an unrelated call in between
    torch.testing.assert_close(model.token_log_probs(dec_in, target, z), full)
    alone = model.token_log_probs(dec_in[:1], target[:1], None if z is None else z[:1])
    torch.testing.assert_close(alone, full[:1], atol=1e-5, rtol=1e-5)
    if use_latent:
        torch.testing.assert_close(model.encode(tokens[:1])[0], model.encode(tokens)[0][:1], atol=1e-5, rtol=0)


def test_highway_gate_bias_and_identity_start() -> None:
    hw = Highway(16, 2)
    for gate in hw.gate:
        assert torch.all(gate.bias == -1.0)
    assert tiny().highway.gate[0].bias.eq(-1.0).all()


def test_encoder_has_bias_and_dropout_lm_has_no_encoder() -> None:
    model = tiny()
    assert model.encoder.lstm.bias and model.encoder.lstm.bias_ih_l0 is not None
    assert model.decoder.lstm.bias and model.decoder.lstm.dropout == pytest.approx(0.3)
    assert any(isinstance(m, Dropout) and m.p == pytest.approx(0.3) for m in model.encoder.modules())
    assert any(isinstance(m, Dropout) and m.p == pytest.approx(0.3) for m in model.decoder.modules())
    lm = tiny(use_latent=False)
    assert lm.encoder is None and not any("encoder" in n for n, _ in lm.named_parameters())
    assert lm.num_parameters() < model.num_parameters()
    out = lm(*batch())
    assert out.kl.shape == (4, 0) and out.mu is None and out.z is None


@pytest.mark.parametrize("output_layer", OUTPUTS)
def test_token_log_probs_sum_is_rec(output_layer: str) -> None:
    model = tiny(output_layer).eval()
    tokens, dec_in, target = batch()
    torch.manual_seed(3)
    out = model(tokens, dec_in, target)
    torch.testing.assert_close(-model.token_log_probs(dec_in, target, out.z).sum(1), out.rec)


def test_pad_targets_score_zero_and_padded_encoder() -> None:
    model = tiny().eval()
    tokens, dec_in, target = batch()
    target[0, 15:], dec_in[0, 16:], tokens[0, 15:] = 0, 0, 0
    logp = model.token_log_probs(dec_in, target, torch.randn(4, 8))
    assert (logp[0, 15:] == 0).all() and (logp[0, :15] < 0).all()
    mu_padded, _ = model.encode(tokens)
    torch.testing.assert_close(mu_padded[0], model.encode(tokens[:1, :15])[0][0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("output_layer", OUTPUTS)
@pytest.mark.parametrize("z_to_initial_state,z_to_every_input,z_to_output,position_codes",
                         [(True, True, False, 0), (True, False, False, 0), (False, True, False, 0),
                          (False, False, True, 0), (True, True, True, 5), (False, False, False, 40)])
def test_step_reproduces_teacher_forcing(output_layer: str, z_to_initial_state: bool, z_to_every_input: bool,
                                         z_to_output: bool, position_codes: int) -> None:
    model = tiny(output_layer, z_to_initial_state=z_to_initial_state, z_to_every_input=z_to_every_input,
                 z_to_output=z_to_output, position_codes=position_codes, position_code_dim=6).eval()
    _, dec_in, target = batch(3)
    z = torch.randn(3, 8)
    forced = model.token_log_probs(dec_in, target, z)
    state, stepped = model.initial_state(z, 3), []
    for t in range(dec_in.size(1)):
        logp, state = model.step(dec_in[:, t], state, z, position=t)
        stepped.append(logp.gather(1, target[:, t : t + 1]).squeeze(1))
    torch.testing.assert_close(torch.stack(stepped, 1), forced, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("output_layer", OUTPUTS)
def test_overfits_random_poems(output_layer: str) -> None:
    model = tiny(output_layer, dropout=0.0, latent_dim=16, embed_dim=32, decoder_hidden=64, encoder_hidden=32)
    data = batch(32, seed=5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        out = model(*data)
        loss = out.rec.mean() + 0.1 * out.kl.sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = out.rec.mean().item() if first is None else first
    assert out.rec.mean().item() < 0.3 * first


def test_word_dropout_replaces_decoder_inputs_only_when_asked() -> None:
    model = tiny(dropout=0.0).eval()
    _, dec_in, target = batch()
    z = torch.randn(4, 8)
    clean = model.token_log_probs(dec_in, target, z)
    all_unk = dec_in.clone()
    all_unk[:, 1:] = 3
    expected = model.token_log_probs(all_unk, target, z)
    dropped = model.token_log_probs(dec_in, target, z, word_dropout_rate=1.0)
    torch.testing.assert_close(dropped, expected)
    assert not torch.allclose(dropped, clean)
    torch.testing.assert_close(model.token_log_probs(dec_in, target, z, word_dropout_rate=0.0), clean)


def test_load_embeddings_and_config_roundtrip() -> None:
    model = tiny()
    m = torch.randn(V, 16)
    model.load_embeddings(m)
    assert torch.equal(model.embed.weight, m)
    with pytest.raises(ValueError, match=r"\(50, 16\)"):
        model.load_embeddings(torch.randn(V, 15))
    cfg = model.cfg
    d = cfg.to_dict()
    assert d["adaptive_cutoffs"] == [10, 30] and ModelConfig.from_dict(d) == cfg
    with pytest.raises(PoetryVAEError, match="bogus"):
        ModelConfig.from_dict(d | {"bogus": 1})
    with pytest.raises(PoetryVAEError, match="output_layer"):
        ModelConfig(vocab_size=V, output_layer="sparsemax")


def test_adaptive_cutoffs_clipped_to_vocab() -> None:
    model = tiny("adaptive", adaptive_cutoffs=(1000, 3000))
    assert model.decoder.out.cutoffs == [V // 2, V]
    model = tiny("adaptive", adaptive_cutoffs=(10, 3000))
    assert model.decoder.out.cutoffs == [10, V]


@pytest.mark.parametrize("layers", [1, 2])
def test_unpacked_encoder_matches_packing(layers: int) -> None:
    """The branch-free path that torch.compile traces gives the packed LSTM's final states."""
    model = tiny(encoder_layers=layers).eval()
    tokens, _, _ = batch()
    tokens[0, 15:], tokens[2, 6:] = 0, 0
    lengths = (tokens != 0).sum(dim=1)
    emb = model._embed(tokens)
    with torch.no_grad():
        eager_mu, _ = model.encoder(emb, lengths)
        traced = model.encoder.unpacked(emb, lengths)
        torch.testing.assert_close(model.encoder.to_mu(traced), eager_mu, atol=1e-5, rtol=0)
        full = torch.full_like(lengths, tokens.size(1))
        unpadded = model.encoder._final(model.encoder.lstm(emb)[1][0])
        torch.testing.assert_close(model.encoder.unpacked(emb, full), unpadded)


def test_encode_compiles_without_graph_breaks(monkeypatch: pytest.MonkeyPatch) -> None:
    """No break on the padding check (Dynamo skips LSTMs unless ``allow_rnn``, which the compiled run sets)."""
    monkeypatch.setattr(torch._dynamo.config, "allow_rnn", True)
    model = tiny().eval()
    tokens, _, _ = batch()
    tokens[1, 12:] = 0
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(model.encode)(tokens)
    assert explanation.graph_break_count == 0, explanation.break_reasons


def test_form_conditioning_changes_the_decoder_and_defaults_to_jueju() -> None:
    model = tiny(dropout=0.0, num_forms=4).eval()
    _, dec_in, target = batch()
    z = torch.randn(4, 8)
    jueju = model.token_log_probs(dec_in, target, z, form=torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(model.token_log_probs(dec_in, target, z), jueju)  # no form given = jueju
    with torch.no_grad():
        model.form_embed.weight.normal_()
    gushi = model.token_log_probs(dec_in, target, z, form=torch.full((4,), 3, dtype=torch.long))
    assert not torch.allclose(gushi, model.token_log_probs(dec_in, target, z))
    state = model.initial_state(z, 4)
    step, _ = model.step(dec_in[:, 0], state, z, torch.full((4,), 3, dtype=torch.long))
    torch.testing.assert_close(step.gather(1, target[:, :1]).squeeze(1), gushi[:, 0])


@pytest.mark.parametrize("output_layer", OUTPUTS)
@pytest.mark.parametrize("z_to_output,position_codes", [(False, 0), (True, 0), (True, 6), (False, 6)])
def test_trains_under_bf16_autocast(output_layer: str, z_to_output: bool, position_codes: int) -> None:
    """trainer.precision=auto picks bf16-mixed where it pays: every decoder layout must train under it (with
    BN-VAE's batch norm z stays float32 under autocast while the LSTM's output is bfloat16)."""
    model = tiny(output_layer, z_to_output=z_to_output, bn_gamma=0.7, position_codes=position_codes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*batch(4), word_dropout_rate=0.25)
        loss = out.rec.mean() + out.kl.sum(1).mean()
    loss.backward()
    assert loss.isfinite() and all(p.grad is None or p.grad.isfinite().all() for p in model.parameters())


@pytest.mark.parametrize("output_layer", OUTPUTS)
def test_position_code_t_reaches_step_t_only(output_layer: str) -> None:
    """Step t reads code t: changing what z says at position 3 changes the distribution at step 3 and nowhere
    else (the codes feed the output layer, not the recurrence); steps past the last code read zeros."""
    model = tiny(output_layer, position_codes=6, position_code_dim=4).eval()
    _, dec_in, target = batch(3)
    z = torch.randn(3, 8)
    before = model.token_log_probs(dec_in, target, z)
    with torch.no_grad():
        model.decoder.z_to_positions.bias[3 * 4 : 4 * 4] += 3.0  # code 3's rows
    changed = (model.token_log_probs(dec_in, target, z) - before).abs().amax(dim=0) > 1e-6
    assert changed.tolist() == [t == 3 for t in range(dec_in.size(1))]
    codes = model.decoder.position_codes(z, 3)
    assert codes.shape == (3, 7, 4) and not codes[:, 6].any()
    for t in range(8):  # one step's code alone, as the decoding stepper makes it: the same
        torch.testing.assert_close(model.decoder.position_code(z, 3, t), codes[:, min(t, 6)])


def test_position_codes_config_is_checked() -> None:
    with pytest.raises(PoetryVAEError, match="position_codes=-1 must be >= 0"):
        ModelConfig(vocab_size=50, position_codes=-1)


@pytest.mark.parametrize("output_layer", OUTPUTS)
def test_lm_learns_a_fixed_code_per_position(output_layer: str) -> None:
    """The LM baseline with position codes: one learned code per step (no z), stepped exactly as teacher forced."""
    model = tiny(output_layer, use_latent=False, z_to_initial_state=False, z_to_every_input=False,
                 position_codes=5, position_code_dim=4).eval()  # fmt: skip
    assert model.decoder.z_to_positions is None and model.decoder.position_table.shape == (20,)
    with torch.no_grad():
        model.decoder.position_table.normal_()
    _, dec_in, target = batch(3)
    forced = model.token_log_probs(dec_in, target)
    state, stepped = model.initial_state(None, 3), []
    for t in range(dec_in.size(1)):
        logp, state = model.step(dec_in[:, t], state, None, position=t)
        stepped.append(logp.gather(1, target[:, t : t + 1]).squeeze(1))
    torch.testing.assert_close(torch.stack(stepped, 1), forced, atol=1e-5, rtol=1e-5)
    codes = model.decoder.position_codes(None, 3)  # made once, every row's
    assert codes.shape == (3, 6, 4) and (codes == codes[:1]).all() and not codes[:, 5].any()
    for t in range(7):
        torch.testing.assert_close(model.decoder.position_code(None, 3, t), codes[:, min(t, 5)])
    model.train()
    model.token_log_probs(dec_in, target).sum().backward()
    assert model.decoder.position_table.grad.abs().sum() > 0  # the broadcast codes still train the table


def test_encoding_in_batches_is_encoding_at_once_in_eval_mode() -> None:
    model = tiny(num_forms=2, bn_gamma=0.7)  # BN-VAE: eval mode reads the running statistics
    tokens, _, _ = batch(b=7)
    form = torch.tensor([0, 1, 1, 0, 1, 0, 0])
    model.train()
    mu, logvar = model.encode_in_batches(tokens, form, batch_size=3)
    assert model.training  # the caller's mode is restored
    model.eval()
    with torch.no_grad():
        whole_mu, whole_logvar = model.encode(tokens, form)
    torch.testing.assert_close(mu, whole_mu)
    torch.testing.assert_close(logvar, whole_logvar)
    assert not mu.requires_grad
