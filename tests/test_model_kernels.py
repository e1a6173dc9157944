"""The model's hand-rolled kernels against the library functions they stand in for: the same values and
gradients (target_log_softmax), the same law (dropout)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import poetry_vae.model.target_log_softmax as target_module
from poetry_vae.model.dropout import Dropout, dropout
from poetry_vae.model.target_log_softmax import target_log_softmax


@pytest.mark.parametrize("rows_a_block", [7, 256])  # several blocks, the last one short; one block
def test_target_log_softmax_is_log_softmax_gathered(monkeypatch, rows_a_block):
    monkeypatch.setattr(target_module, "ROWS", rows_a_block)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 300, generator=g, dtype=torch.double) * 3
    target = torch.randint(0, 300, (50,), generator=g)
    assert torch.autograd.gradcheck(lambda x: target_log_softmax(x, target), (logits.requires_grad_(),))
    fast, slow = logits.float().detach().requires_grad_(), logits.float().detach().requires_grad_()
    weights = torch.randn(50, generator=g)
    (target_log_softmax(fast, target) * weights).sum().backward()
    expected = F.log_softmax(slow, 1).gather(1, target.unsqueeze(1)).squeeze(1)
    (expected * weights).sum().backward()
    torch.testing.assert_close(target_log_softmax(fast.detach(), target), expected.detach())
    torch.testing.assert_close(fast.grad, slow.grad)


def test_target_log_softmax_of_bf16_logits_is_fp32():
    """Under bf16 autocast the logits arrive in bf16: normalised in fp32 (as autocast runs log_softmax), with a
    bf16 gradient for them."""
    logits = (torch.randn(40, 100) * 3).bfloat16().requires_grad_()
    target = torch.randint(0, 100, (40,))
    out = target_log_softmax(logits, target)
    out.sum().backward()
    expected = F.log_softmax(logits.detach().float(), 1).gather(1, target.unsqueeze(1)).squeeze(1)
    assert out.dtype == torch.float32 and logits.grad.dtype == torch.bfloat16
    torch.testing.assert_close(out, expected)


def test_dropout_keeps_nn_dropouts_law():
    """Each element survives with probability 1 - p, scaled by 1 / (1 - p); the gradient goes through the same
    mask; eval mode and p = 0 leave the input as it is."""
    x = torch.ones(400, 500, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, 0.3, training=True)
    kept = y != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)
    layer = Dropout(0.5).eval()
    assert layer(x) is x and dropout(x, 0.0, training=True) is x
    assert dropout(x.detach().bfloat16(), 0.5, training=True).dtype == torch.bfloat16


def test_adaptive_target_log_probs_are_the_layers_own():
    """The adaptive softmax's target log-probs by target_log_softmax are the layer's own output, and so are their
    gradients for the input and every weight (targets at each cluster's edges included)."""
    from poetry_vae.model.decoder import adaptive_target_log_probs

    torch.manual_seed(0)
    layer = torch.nn.AdaptiveLogSoftmaxWithLoss(32, 400, [50, 200], div_value=4.0)
    hidden = torch.randn(300, 32)
    target = torch.randint(400, (300,))
    target[:5] = torch.tensor([0, 49, 50, 199, 399])
    ours, theirs = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    weights = torch.randn(300)
    fast = adaptive_target_log_probs(layer, ours, target)
    grads = torch.autograd.grad((fast * weights).sum(), [ours, *layer.parameters()])
    slow = layer(theirs, target).output
    expected = torch.autograd.grad((slow * weights).sum(), [theirs, *layer.parameters()])
    torch.testing.assert_close(fast, slow)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)
