"""Highway layers (Srivastava et al. 2015): y = g * act(W_h x) + (1 - g) * x, g = sigmoid(W_g x)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Highway(nn.Module):
    def __init__(
        self,
        size: int,
        num_layers: int,
        activation: Callable[[Tensor], Tensor] = F.relu,
        gate_bias: float = -1.0,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.gate_bias = gate_bias
        self.transform = nn.ModuleList(nn.Linear(size, size) for _ in range(num_layers))
        self.gate = nn.ModuleList(nn.Linear(size, size) for _ in range(num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Negative gate bias: each layer starts close to the identity (carry), as in the paper."""
        for gate in self.gate:
            nn.init.constant_(gate.bias, self.gate_bias)

    def forward(self, x: Tensor) -> Tensor:
        for transform, gate in zip(self.transform, self.gate, strict=True):
            g = torch.sigmoid(gate(x))
            x = g * self.activation(transform(x)) + (1.0 - g) * x
        return x
